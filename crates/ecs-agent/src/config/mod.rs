//! The agent's configuration record: built from the environment, then the JSON
//! config file, then built-in defaults, with the Go agent's precedence and
//! "zero means unset" rules (docs/endpoints.md §1.1, §1.2).
//!
//! Loading is pure: it reads an [`Env`] snapshot and the file's text, and
//! returns the record plus the warnings to log once logging is up. Region
//! discovery through instance metadata happens later, at start-up.

mod file;
mod unsupported;
pub mod value;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

pub use file::FileConfig;
use value::GoDuration;

const DEFAULT_CONFIG_FILE: &str = "/etc/ecs_container_agent/config.json";
pub const DEFAULT_CLUSTER: &str = "default";
const DEFAULT_RESERVED_PORTS: [u16; 5] = [22, 2375, 2376, 51678, 51679];
const PROMETHEUS_PORT: u16 = 51680;
const DEFAULT_PORT_RANGE: (u16, u16) = (49153, 65535);
const DEFAULT_CGROUP_PATH: &str = "/sys/fs/cgroup";
const DEFAULT_CNI_PLUGINS_PATH: &str = "/amazon-ecs-cni-plugins";
const DEFAULT_NVIDIA_RUNTIME: &str = "nvidia";
const DEFAULT_NUM_NON_ECS_CONTAINERS_PER_CYCLE: u32 = 5;

const SECOND: i64 = 1_000_000_000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;

const DEFAULT_POLLING_METRICS_WAIT: GoDuration = GoDuration(10 * SECOND);
const DEFAULT_MANIFEST_PULL_TIMEOUT: GoDuration = GoDuration(MINUTE);
const DEFAULT_NON_ECS_IMAGE_MINIMUM_AGE: GoDuration = GoDuration(HOUR);
const DEFAULT_CGROUP_CPU_PERIOD: GoDuration = GoDuration(100_000_000);

/// The logging drivers the Go agent knows; any other name is fatal.
pub const KNOWN_LOGGING_DRIVERS: [&str; 11] = [
    "json-file",
    "syslog",
    "journald",
    "gelf",
    "fluentd",
    "awslogs",
    "splunk",
    "logentries",
    "sumologic",
    "none",
    "awsfirelens",
];

/// A snapshot of the process environment, so loading is testable without
/// touching the real one.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: HashMap<String, String>,
}

impl Env {
    pub fn from_process() -> Self {
        Self {
            vars: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        }
    }

    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// The raw value; an empty variable counts as absent everywhere.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

/// `ECS_IMAGE_PULL_BEHAVIOR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImagePullBehavior {
    #[default]
    Default,
    Always,
    Once,
    PreferCached,
}

/// Engine-wide registry credentials (`ECS_ENGINE_AUTH_DATA`); never printed.
#[derive(Clone, PartialEq)]
pub struct EngineAuthData(pub serde_json::Value);

impl fmt::Debug for EngineAuthData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Every setting the agent reads, resolved to its effective value. Some
/// are parsed but not acted on yet; [`Config::unsupported_settings`] names
/// those the user changed from their defaults.
#[derive(Debug, Clone)]
pub struct Config {
    // Cluster, region, registration, identity.
    pub cluster: String,
    pub aws_region: Option<String>,
    pub api_endpoint: Option<String>,
    pub instance_attributes: BTreeMap<String, String>,
    pub container_instance_tags: BTreeMap<String, String>,
    pub propagate_tags_from_ec2: bool,
    pub external: bool,
    pub no_iid: bool,
    pub reserved_ports: Vec<u16>,
    pub reserved_ports_udp: Vec<u16>,
    pub reserved_memory_mib: u16,
    pub warm_pools_check: bool,
    pub spot_instance_draining: bool,
    pub detailed_os_family: Option<String>,
    pub updates_enabled: bool,
    pub update_download_dir: Option<String>,
    pub disable_metrics: bool,
    pub poll_metrics: bool,
    pub polling_metrics_wait: GoDuration,
    pub runtime_stats: bool,
    // Docker engine, images, containers.
    pub docker_endpoint: String,
    pub engine_auth_type: Option<String>,
    pub engine_auth_data: Option<EngineAuthData>,
    pub available_logging_drivers: Vec<String>,
    pub privileged_disabled: bool,
    pub selinux_capable: bool,
    pub apparmor_capable: bool,
    pub disable_docker_health_check: bool,
    pub docker_stop_timeout: GoDuration,
    pub container_start_timeout: GoDuration,
    pub container_create_timeout: GoDuration,
    pub manifest_pull_timeout: GoDuration,
    pub image_pull_inactivity_timeout: GoDuration,
    pub image_pull_timeout: GoDuration,
    pub image_pull_behavior: ImagePullBehavior,
    pub dependent_containers_pull_upfront: bool,
    pub shared_volume_match_full_config: bool,
    pub volume_plugin_capabilities: Vec<String>,
    pub nvidia_runtime: String,
    pub gpu_support: bool,
    pub inferentia_support: bool,
    pub firelens_async: bool,
    pub exclude_ipv6_port_binding: bool,
    pub dynamic_host_port_range: (u16, u16),
    // Task lifecycle and cleanup.
    pub task_cleanup_wait: GoDuration,
    pub task_cleanup_wait_jitter: GoDuration,
    pub image_cleanup_disabled: bool,
    pub image_cleanup_interval: GoDuration,
    pub minimum_image_deletion_age: GoDuration,
    pub non_ecs_minimum_image_deletion_age: GoDuration,
    pub num_images_to_delete_per_cycle: u32,
    pub num_non_ecs_containers_to_delete_per_cycle: u32,
    pub delete_non_ecs_images: bool,
    pub image_cleanup_exclusion_list: Vec<String>,
    // Cgroups and resources.
    pub task_cpu_mem_limit: Bool3,
    pub cgroup_path: String,
    pub cgroup_cpu_period: GoDuration,
    pub task_pids_limit: u32,
    pub propagate_task_memory_limit_cgroupv2: bool,
    // Task networking (awsvpc) is not implemented; the switches are read so
    // that bad values are refused as the Go agent does, and changed ones
    // warned about.
    pub task_eni_enabled: bool,
    pub cni_plugins_path: String,
    pub awsvpc_block_imds: bool,
    pub awsvpc_additional_local_routes: Vec<String>,
    // IAM roles, credentials, audit.
    pub task_iam_role_enabled: bool,
    pub task_iam_role_enabled_for_network_host: bool,
    pub override_awslogs_execution_role: bool,
    pub credentials_audit_log_file: String,
    pub credentials_audit_log_disabled: bool,
    // State and files.
    pub data_dir: PathBuf,
    pub checkpoint: bool,
    /// `ECS_HOST_DATA_DIR`: set only for an agent that runs in a container,
    /// where the paths it gives Docker are not its own (the Go agent's
    /// default `/var/lib/ecs` is not applied: on the host, this agent's
    /// paths are the host's; docs/endpoints.md §11).
    pub data_dir_on_host: Option<PathBuf>,
    // Local endpoints.
    pub task_metadata_steady_state_rate: u32,
    pub task_metadata_burst_rate: u32,
    pub task_metadata_az_disabled: bool,
    pub container_metadata_enabled: bool,
    pub ebsta_supported: bool,
    // Command-line only.
    pub accept_insecure_cert: bool,
}

/// A three-state boolean, for settings whose default depends on whether
/// the user said anything at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bool3 {
    NotSet,
    Enabled,
    Disabled,
}

impl Bool3 {
    pub fn from_option(v: Option<bool>) -> Self {
        match v {
            None => Bool3::NotSet,
            Some(true) => Bool3::Enabled,
            Some(false) => Bool3::Disabled,
        }
    }

    pub fn enabled_or(self, default: bool) -> bool {
        match self {
            Bool3::NotSet => default,
            Bool3::Enabled => true,
            Bool3::Disabled => false,
        }
    }
}

/// Why the configuration cannot be used: the agent exits 1.
#[derive(Debug, thiserror::Error)]
#[error("Error loading config: {}", .0.join("; "))]
pub struct ConfigError(pub Vec<String>);

/// A loaded configuration and the warnings found while loading it.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

impl Config {
    /// Loads from the environment and the config file it names.
    pub fn load(env: &Env) -> Result<Loaded, ConfigError> {
        let path = env
            .get("ECS_AGENT_CONFIG_FILE_PATH")
            .unwrap_or(DEFAULT_CONFIG_FILE);
        let file = FileConfig::load(Path::new(path)).map_err(|e| ConfigError(vec![e]))?;
        Self::from_sources(env, &file, read_kernel_port_range())
    }

    /// The effective cluster name: registration uses `default` when none
    /// is configured.
    pub fn cluster_or_default(&self) -> &str {
        if self.cluster.is_empty() {
            DEFAULT_CLUSTER
        } else {
            &self.cluster
        }
    }

    pub fn from_sources(
        env: &Env,
        file: &FileConfig,
        kernel_port_range: Option<(u16, u16)>,
    ) -> Result<Loaded, ConfigError> {
        let mut l = Loader {
            env,
            file,
            warnings: Vec::new(),
            errors: Vec::new(),
        };

        let mut cluster = l.string_trimmed("ECS_CLUSTER", "Cluster");
        if cluster.is_none() {
            if let Some(arn) = l.file_string("ClusterArn") {
                l.warn("Deprecated config key ClusterArn used; use Cluster instead".into());
                cluster = Some(arn.trim().to_string());
            }
        }
        let external = l.bool3("ECS_EXTERNAL", "External").unwrap_or(false);
        let aws_region = l.string_trimmed("AWS_DEFAULT_REGION", "AWSRegion");
        if external && env.get("AWS_DEFAULT_REGION").is_none() {
            l.fatal("AWS_DEFAULT_REGION must be set in the environment in external mode".into());
        }
        let no_iid = external || l.file_plain_bool("NoIID");

        let prometheus_metrics = l.env_plain_bool("ECS_ENABLE_PROMETHEUS_METRICS", false);
        let mut reserved_ports = l
            .ports("ECS_RESERVED_PORTS", "ReservedPorts")
            .unwrap_or_else(|| DEFAULT_RESERVED_PORTS.to_vec());
        if prometheus_metrics {
            reserved_ports.push(PROMETHEUS_PORT);
        }
        let reserved_ports_udp = l
            .ports("ECS_RESERVED_PORTS_UDP", "ReservedPortsUDP")
            .unwrap_or_default();

        let docker_stop_timeout = l.clamped_duration(
            "ECS_CONTAINER_STOP_TIMEOUT",
            "DockerStopTimeout",
            SECOND,
            30 * SECOND,
        );
        if docker_stop_timeout.0 < SECOND {
            l.fatal(format!(
                "Invalid docker stop timeout {}ns: must be at least 1s",
                docker_stop_timeout.0
            ));
        }
        let container_start_timeout = l.clamped_duration(
            "ECS_CONTAINER_START_TIMEOUT",
            "ContainerStartTimeout",
            45 * SECOND,
            3 * MINUTE,
        );
        if container_start_timeout.0 < 45 * SECOND {
            l.fatal(format!(
                "Invalid container start timeout {}ns: must be at least 45s",
                container_start_timeout.0
            ));
        }

        let available_logging_drivers = l
            .strings("ECS_AVAILABLE_LOGGING_DRIVERS", "AvailableLoggingDrivers")
            .unwrap_or_else(|| vec!["json-file".to_string(), "none".to_string()]);
        let unknown: Vec<&str> = available_logging_drivers
            .iter()
            .map(String::as_str)
            .filter(|d| !KNOWN_LOGGING_DRIVERS.contains(d))
            .collect();
        if !unknown.is_empty() {
            l.fatal(format!(
                "Invalid logging drivers: {} (ECS_AVAILABLE_LOGGING_DRIVERS)",
                unknown.join(", ")
            ));
        }

        let task_cleanup_wait = match l.duration(
            "ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION",
            "TaskCleanupWaitDuration",
        ) {
            Some(d) if d.0 < SECOND => {
                l.warn(format!(
                    "Invalid value for task cleanup duration {}ns, will be overridden with the default value: 3h",
                    d.0
                ));
                GoDuration(3 * HOUR)
            }
            Some(d) => d,
            None => GoDuration(3 * HOUR),
        };
        let image_cleanup_interval = match l
            .duration("ECS_IMAGE_CLEANUP_INTERVAL", "ImageCleanupInterval")
        {
            Some(d) if d.0 < 10 * MINUTE => {
                l.warn(format!(
                    "Invalid value for image cleanup duration {}ns, will be overridden with the default value: 30m",
                    d.0
                ));
                GoDuration(30 * MINUTE)
            }
            Some(d) => d,
            None => GoDuration(30 * MINUTE),
        };
        let num_images_to_delete_per_cycle = match l.integer(
            "ECS_NUM_IMAGES_DELETE_PER_CYCLE",
            "NumImagesToDeletePerCycle",
            false,
        ) {
            Some(n) if n < 1 => {
                l.warn(format!(
                    "Invalid value for number of images to delete for image cleanup {n}, will be overridden with the default value: 5"
                ));
                5
            }
            Some(n) => u32::try_from(n).unwrap_or(u32::MAX),
            None => 5,
        };
        let num_non_ecs_containers_to_delete_per_cycle = l
            .integer(
                "NONECS_NUM_CONTAINERS_DELETE_PER_CYCLE",
                "NumNonECSContainersToDeletePerCycle",
                false,
            )
            .map(|n| u32::try_from(n.max(0)).unwrap_or(u32::MAX))
            .unwrap_or(DEFAULT_NUM_NON_ECS_CONTAINERS_PER_CYCLE);

        let (task_metadata_steady_state_rate, task_metadata_burst_rate) = l.metadata_rps_limit();

        let polling_metrics_wait = l
            .duration(
                "ECS_POLLING_METRICS_WAIT_DURATION",
                "PollingMetricsWaitDuration",
            )
            .unwrap_or(DEFAULT_POLLING_METRICS_WAIT);
        let poll_metrics = l.bool3("ECS_POLL_METRICS", "PollMetrics").unwrap_or(false);
        let polling_metrics_wait = if poll_metrics {
            if polling_metrics_wait.0 < 5 * SECOND {
                l.warn("Polling metrics wait duration below the minimum 5s; using 5s".into());
                GoDuration(5 * SECOND)
            } else if polling_metrics_wait.0 > 20 * SECOND {
                l.warn("Polling metrics wait duration above the maximum 20s; using 20s".into());
                GoDuration(20 * SECOND)
            } else {
                polling_metrics_wait
            }
        } else {
            polling_metrics_wait
        };

        let dynamic_host_port_range = match env.get("ECS_DYNAMIC_HOST_PORT_RANGE") {
            Some(text) => match value::port_range(text) {
                Ok(r) => Some(r),
                Err(e) => {
                    l.warn(format!(
                        "Invalid dynamicHostPortRange value from config: {text}, err: {e}"
                    ));
                    None
                }
            },
            None => l
                .file_string("DynamicHostPortRange")
                .and_then(|t| value::port_range(&t).ok()),
        }
        .or(kernel_port_range)
        .unwrap_or(DEFAULT_PORT_RANGE);

        let data_dir_env = env.get("ECS_DATADIR").map(str::to_string);
        let data_dir = data_dir_env
            .clone()
            .or_else(|| l.file_string("DataDir"))
            .unwrap_or_else(|| "/data/".to_string());
        let checkpoint = match l.bool3_env("ECS_CHECKPOINT") {
            Some(v) => v,
            None if data_dir_env.is_some() => true,
            None => l.file_bool3("Checkpoint").unwrap_or(false),
        };

        let image_pull_behavior = match env.get("ECS_IMAGE_PULL_BEHAVIOR") {
            Some("always") => ImagePullBehavior::Always,
            Some("once") => ImagePullBehavior::Once,
            Some("prefer-cached") => ImagePullBehavior::PreferCached,
            Some(_) => ImagePullBehavior::Default,
            None => match l.file_integer("ImagePullBehavior") {
                Some(1) => ImagePullBehavior::Always,
                Some(2) => ImagePullBehavior::Once,
                Some(3) => ImagePullBehavior::PreferCached,
                _ => ImagePullBehavior::Default,
            },
        };

        let propagate_tags_from_ec2 = match env.get("ECS_CONTAINER_INSTANCE_PROPAGATE_TAGS_FROM") {
            Some(v) => v == "ec2_instance",
            None => l.file_integer("ContainerInstancePropagateTagsFrom") == Some(1),
        };

        let cgroup_cpu_period = match l.duration("ECS_CGROUP_CPU_PERIOD", "CgroupCPUPeriod") {
            Some(d) if (8_000_000..=100_000_000).contains(&d.0) => d,
            Some(d) => {
                l.warn(format!(
                    "CPU Period duration value: {}ns for Environment Variable ECS_CGROUP_CPU_PERIOD is not within [8ms, 100ms], using default value instead",
                    d.0
                ));
                DEFAULT_CGROUP_CPU_PERIOD
            }
            None => DEFAULT_CGROUP_CPU_PERIOD,
        };
        let task_pids_limit = match l.integer("ECS_TASK_PIDS_LIMIT", "TaskPidsLimit", true) {
            Some(n) if (1..=4_194_304).contains(&n) => u32::try_from(n).unwrap_or(0),
            Some(n) => {
                l.warn(format!(
                    "Invalid value for ECS_TASK_PIDS_LIMIT: {n}, must be within [1, 4194304]"
                ));
                0
            }
            None => 0,
        };

        let reserved_memory_mib = match env.get("ECS_RESERVED_MEMORY") {
            Some(text) => match text.parse::<u16>() {
                Ok(v) => Some(v),
                Err(e) => {
                    l.warn(format!(
                        "Invalid format for \"ECS_RESERVED_MEMORY\" environment variable; expected unsigned integer. err {e}"
                    ));
                    None
                }
            },
            None => None,
        }
        .filter(|v| *v != 0)
        .or_else(|| {
            l.file_integer("ReservedMemory")
                .and_then(|v| u16::try_from(v).ok())
        })
        .unwrap_or(0);

        let instance_attributes = l
            .strict_map("ECS_INSTANCE_ATTRIBUTES", "InstanceAttributes")
            .unwrap_or_default();
        let container_instance_tags = l
            .strict_map("ECS_CONTAINER_INSTANCE_TAGS", "ContainerInstanceTags")
            .unwrap_or_default();
        let awsvpc_additional_local_routes = match env.get("ECS_AWSVPC_ADDITIONAL_LOCAL_ROUTES")
        {
            Some(text) => serde_json::from_str::<Vec<String>>(text).unwrap_or_else(|_| {
                l.fatal(format!(
                    "Invalid format for ECS_AWSVPC_ADDITIONAL_LOCAL_ROUTES, expected a json array of CIDRs: {text}"
                ));
                Vec::new()
            }),
            None => Vec::new(),
        };

        let engine_auth_data = env
            .get("ECS_ENGINE_AUTH_DATA")
            .map(|t| {
                serde_json::from_str(t).unwrap_or_else(|_| serde_json::Value::String(t.to_string()))
            })
            .or_else(|| file.raw("EngineAuthData"))
            .map(EngineAuthData);

        let config = Config {
            cluster: cluster.unwrap_or_default(),
            aws_region,
            api_endpoint: l.string_trimmed("ECS_BACKEND_HOST", "APIEndpoint"),
            instance_attributes,
            container_instance_tags,
            propagate_tags_from_ec2,
            external,
            no_iid,
            reserved_ports,
            reserved_ports_udp,
            reserved_memory_mib,
            warm_pools_check: l
                .bool3("ECS_WARM_POOLS_CHECK", "WarmPoolsSupport")
                .unwrap_or(false),
            spot_instance_draining: l
                .bool3(
                    "ECS_ENABLE_SPOT_INSTANCE_DRAINING",
                    "SpotInstanceDrainingEnabled",
                )
                .unwrap_or(false),
            detailed_os_family: env.get("ECS_DETAILED_OS_FAMILY").map(str::to_string),
            updates_enabled: l
                .bool3("ECS_UPDATES_ENABLED", "UpdatesEnabled")
                .unwrap_or(false),
            update_download_dir: l.string("ECS_UPDATE_DOWNLOAD_DIR", "UpdateDownloadDir"),
            disable_metrics: l
                .bool3("ECS_DISABLE_METRICS", "DisableMetrics")
                .unwrap_or(false),
            poll_metrics,
            polling_metrics_wait,
            runtime_stats: l
                .bool3("ECS_ENABLE_RUNTIME_STATS", "EnableRuntimeStats")
                .unwrap_or(false),
            docker_endpoint: l
                .string("DOCKER_HOST", "DockerEndpoint")
                .unwrap_or_else(|| "unix:///var/run/docker.sock".to_string()),
            engine_auth_type: l.string_trimmed("ECS_ENGINE_AUTH_TYPE", "EngineAuthType"),
            engine_auth_data,
            available_logging_drivers,
            privileged_disabled: l
                .bool3("ECS_DISABLE_PRIVILEGED", "PrivilegedDisabled")
                .unwrap_or(false),
            selinux_capable: l
                .bool3("ECS_SELINUX_CAPABLE", "SELinuxCapable")
                .unwrap_or(false),
            apparmor_capable: l
                .bool3("ECS_APPARMOR_CAPABLE", "AppArmorCapable")
                .unwrap_or(false),
            disable_docker_health_check: l
                .bool3(
                    "ECS_DISABLE_DOCKER_HEALTH_CHECK",
                    "DisableDockerHealthCheck",
                )
                .unwrap_or(false),
            docker_stop_timeout,
            container_start_timeout,
            container_create_timeout: l.clamped_duration(
                "ECS_CONTAINER_CREATE_TIMEOUT",
                "ContainerCreateTimeout",
                MINUTE,
                4 * MINUTE,
            ),
            manifest_pull_timeout: l.clamped_duration(
                "ECS_MANIFEST_PULL_TIMEOUT",
                "ManifestPullTimeout",
                30 * SECOND,
                DEFAULT_MANIFEST_PULL_TIMEOUT.0,
            ),
            image_pull_inactivity_timeout: {
                let d = l.clamped_duration(
                    "ECS_IMAGE_PULL_INACTIVITY_TIMEOUT",
                    "ImagePullInactivityTimeout",
                    MINUTE,
                    MINUTE,
                );
                if d.0 < MINUTE {
                    l.warn("Image pull inactivity timeout below 1m; using 1m".into());
                    GoDuration(MINUTE)
                } else {
                    d
                }
            },
            image_pull_timeout: l
                .duration("ECS_IMAGE_PULL_TIMEOUT", "ImagePullTimeout")
                .unwrap_or(GoDuration(2 * HOUR)),
            image_pull_behavior,
            dependent_containers_pull_upfront: l
                .bool3(
                    "ECS_PULL_DEPENDENT_CONTAINERS_UPFRONT",
                    "DependentContainersPullUpfront",
                )
                .unwrap_or(false),
            shared_volume_match_full_config: l
                .bool3(
                    "ECS_SHARED_VOLUME_MATCH_FULL_CONFIG",
                    "SharedVolumeMatchFullConfig",
                )
                .unwrap_or(false),
            volume_plugin_capabilities: l
                .strings("ECS_VOLUME_PLUGIN_CAPABILITIES", "VolumePluginCapabilities")
                .unwrap_or_default(),
            nvidia_runtime: l
                .string_trimmed("ECS_NVIDIA_RUNTIME", "NvidiaRuntime")
                .unwrap_or_else(|| DEFAULT_NVIDIA_RUNTIME.to_string()),
            gpu_support: l.plain_bool("ECS_ENABLE_GPU_SUPPORT", "GPUSupportEnabled", false),
            inferentia_support: l.plain_bool(
                "ECS_ENABLE_INF_SUPPORT",
                "InferentiaSupportEnabled",
                false,
            ),
            firelens_async: l
                .bool3("ECS_ENABLE_FIRELENS_ASYNC", "FirelensAsyncEnabled")
                .unwrap_or(true),
            exclude_ipv6_port_binding: l
                .bool3(
                    "ECS_EXCLUDE_IPV6_PORTBINDING",
                    "ShouldExcludeIPv6PortBinding",
                )
                .unwrap_or(true),
            dynamic_host_port_range,
            task_cleanup_wait,
            task_cleanup_wait_jitter: l
                .duration(
                    "ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION_JITTER",
                    "TaskCleanupWaitDurationJitter",
                )
                .unwrap_or(GoDuration::ZERO),
            image_cleanup_disabled: l
                .bool3("ECS_DISABLE_IMAGE_CLEANUP", "ImageCleanupDisabled")
                .unwrap_or(false),
            image_cleanup_interval,
            minimum_image_deletion_age: l
                .duration("ECS_IMAGE_MINIMUM_CLEANUP_AGE", "MinimumImageDeletionAge")
                .unwrap_or(GoDuration(HOUR)),
            non_ecs_minimum_image_deletion_age: l
                .duration(
                    "NON_ECS_IMAGE_MINIMUM_CLEANUP_AGE",
                    "NonECSMinimumImageDeletionAge",
                )
                .unwrap_or(DEFAULT_NON_ECS_IMAGE_MINIMUM_AGE),
            num_images_to_delete_per_cycle,
            num_non_ecs_containers_to_delete_per_cycle,
            delete_non_ecs_images: l
                .bool3(
                    "ECS_ENABLE_UNTRACKED_IMAGE_CLEANUP",
                    "DeleteNonECSImagesEnabled",
                )
                .unwrap_or(false),
            image_cleanup_exclusion_list: match env.get("ECS_EXCLUDE_UNTRACKED_IMAGE") {
                Some(text) => text.split(',').map(str::to_string).collect(),
                None => l
                    .file_strings("ImageCleanupExclusionList")
                    .unwrap_or_default(),
            },
            task_cpu_mem_limit: Bool3::from_option(
                l.bool3("ECS_ENABLE_TASK_CPU_MEM_LIMIT", "TaskCPUMemLimit"),
            ),
            cgroup_path: l
                .string("ECS_CGROUP_PATH", "CgroupPath")
                .unwrap_or_else(|| DEFAULT_CGROUP_PATH.to_string()),
            cgroup_cpu_period,
            task_pids_limit,
            propagate_task_memory_limit_cgroupv2: l
                .bool3(
                    "ECS_PROPAGATE_TASK_MEMORY_LIMIT_CGROUPV2",
                    "PropagateTaskMemoryLimitCgroupV2",
                )
                .unwrap_or(false),
            task_eni_enabled: l
                .bool3("ECS_ENABLE_TASK_ENI", "TaskENIEnabled")
                .unwrap_or(false),
            cni_plugins_path: l
                .string("ECS_CNI_PLUGINS_PATH", "CNIPluginsPath")
                .unwrap_or_else(|| DEFAULT_CNI_PLUGINS_PATH.to_string()),
            awsvpc_block_imds: l
                .bool3("ECS_AWSVPC_BLOCK_IMDS", "AWSVPCBlockInstanceMetdata")
                .unwrap_or(false),
            awsvpc_additional_local_routes,
            task_iam_role_enabled: l
                .bool3("ECS_ENABLE_TASK_IAM_ROLE", "TaskIAMRoleEnabled")
                .unwrap_or(false),
            task_iam_role_enabled_for_network_host: l.plain_bool(
                "ECS_ENABLE_TASK_IAM_ROLE_NETWORK_HOST",
                "TaskIAMRoleEnabledForNetworkHost",
                false,
            ),
            override_awslogs_execution_role: l
                .bool3(
                    "ECS_ENABLE_AWSLOGS_EXECUTIONROLE_OVERRIDE",
                    "OverrideAWSLogsExecutionRole",
                )
                .unwrap_or(false),
            credentials_audit_log_file: l
                .string("ECS_AUDIT_LOGFILE", "CredentialsAuditLogFile")
                // The Go agent's `/log/audit.log` is this file seen from
                // inside its container; this agent runs on the host.
                .unwrap_or_else(|| "/var/log/ecs/audit.log".to_string()),
            credentials_audit_log_disabled: l.plain_bool(
                "ECS_AUDIT_LOGFILE_DISABLED",
                "CredentialsAuditLogDisabled",
                false,
            ),
            data_dir: PathBuf::from(data_dir),
            checkpoint,
            data_dir_on_host: l
                .string("ECS_HOST_DATA_DIR", "DataDirOnHost")
                .map(PathBuf::from),
            task_metadata_steady_state_rate,
            task_metadata_burst_rate,
            task_metadata_az_disabled: l.plain_bool(
                "ECS_DISABLE_TASK_METADATA_AZ",
                "TaskMetadataAZDisabled",
                false,
            ),
            container_metadata_enabled: l
                .bool3("ECS_ENABLE_CONTAINER_METADATA", "ContainerMetadataEnabled")
                .unwrap_or(false),
            ebsta_supported: l.plain_bool("ECS_EBSTA_SUPPORTED", "EBSTASupportEnabled", true),
            accept_insecure_cert: false,
        };

        if l.errors.is_empty() {
            Ok(Loaded {
                config,
                warnings: l.warnings,
            })
        } else {
            Err(ConfigError(l.errors))
        }
    }
}

/// `/proc/sys/net/ipv4/ip_local_port_range` holds "start<ws>end".
fn read_kernel_port_range() -> Option<(u16, u16)> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut parts = text.split_whitespace().map(|p| p.parse::<u16>().ok());
    let (start, end) = (parts.next()??, parts.next()??);
    (start > 0 && start <= end).then_some((start, end))
}

/// One pass over the sources, collecting warnings and fatal errors.
struct Loader<'a> {
    env: &'a Env,
    file: &'a FileConfig,
    warnings: Vec<String>,
    errors: Vec<String>,
}

impl Loader<'_> {
    fn warn(&mut self, message: String) {
        self.warnings.push(message);
    }

    fn fatal(&mut self, message: String) {
        self.errors.push(message);
    }

    /// Runs a file getter, turning a type error into a fatal error.
    fn file_value<T>(
        &mut self,
        get: impl FnOnce(&FileConfig) -> Result<Option<T>, file::FileTypeError>,
    ) -> Option<T> {
        match get(self.file) {
            Ok(v) => v,
            Err(e) => {
                self.fatal(e.to_string());
                None
            }
        }
    }

    fn file_string(&mut self, key: &str) -> Option<String> {
        self.file_value(|f| f.string(key))
    }

    fn file_bool3(&mut self, key: &str) -> Option<bool> {
        self.file_value(|f| f.bool3(key))
    }

    fn file_plain_bool(&mut self, key: &str) -> bool {
        self.file_value(|f| f.plain_bool(key)).unwrap_or(false)
    }

    fn file_integer(&mut self, key: &str) -> Option<i64> {
        self.file_value(|f| f.integer(key))
    }

    fn file_strings(&mut self, key: &str) -> Option<Vec<String>> {
        self.file_value(|f| f.strings(key))
    }

    fn string(&mut self, var: &str, key: &str) -> Option<String> {
        match self.env.get(var) {
            Some(v) => Some(v.to_string()),
            None => self.file_string(key),
        }
    }

    /// Trimming happens after the merge, so a blank value still wins over
    /// the file (and is then empty, i.e. unset).
    fn string_trimmed(&mut self, var: &str, key: &str) -> Option<String> {
        self.string(var, key)
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    }

    fn bool3_env(&mut self, var: &str) -> Option<bool> {
        let raw = self.env.get(var)?.trim();
        if raw.is_empty() {
            return None;
        }
        match value::go_bool(raw) {
            Ok(b) => Some(b),
            Err(_) => {
                self.warn(format!("Invalid format for \"{var}\", expected a boolean"));
                None
            }
        }
    }

    fn bool3(&mut self, var: &str, key: &str) -> Option<bool> {
        match self.bool3_env(var) {
            Some(v) => Some(v),
            None => self.file_bool3(key),
        }
    }

    /// Plain bools: an invalid value means the default (the Go agent says
    /// nothing; a warning helps), and a `false` from the environment lets
    /// the file's `true` win.
    fn plain_bool(&mut self, var: &str, key: &str, default: bool) -> bool {
        let env_value = match self.env.get(var) {
            None => None,
            Some(raw) => match value::go_bool(raw.trim()) {
                Ok(v) => Some(v),
                Err(_) => {
                    self.warn(format!(
                        "Invalid format for \"{var}\", expected a boolean; using the default"
                    ));
                    None
                }
            },
        };
        match env_value {
            Some(true) => true,
            Some(false) => self.file_value(|f| f.plain_bool(key)).unwrap_or(false),
            None => self.file_value(|f| f.plain_bool(key)).unwrap_or(default),
        }
    }

    fn env_plain_bool(&mut self, var: &str, default: bool) -> bool {
        self.env
            .get(var)
            .and_then(|raw| value::go_bool(raw.trim()).ok())
            .unwrap_or(default)
    }

    fn env_duration(&mut self, var: &str) -> Option<GoDuration> {
        let raw = self.env.get(var)?;
        match value::go_duration(raw) {
            Ok(GoDuration::ZERO) => None,
            Ok(d) => Some(d),
            Err(e) => {
                self.warn(format!(
                    "Could not parse duration value: {raw} for Environment Variable {var} : {e}"
                ));
                None
            }
        }
    }

    fn duration(&mut self, var: &str, key: &str) -> Option<GoDuration> {
        match self.env_duration(var) {
            Some(d) => Some(d),
            None => self.file_value(|f| f.duration(key)),
        }
    }

    /// Environment values below `minimum` are raised to it with a warning;
    /// file values are checked by the caller where the Go agent does.
    fn clamped_duration(&mut self, var: &str, key: &str, minimum: i64, default: i64) -> GoDuration {
        let from_env = match self.env_duration(var) {
            Some(d) if d.0 < minimum => {
                self.warn(format!(
                    "Discarded invalid value for {var}, parsed as: {}ns; using the minimum",
                    d.0
                ));
                Some(GoDuration(minimum))
            }
            other => other,
        };
        from_env
            .or_else(|| self.file_value(|f| f.duration(key)))
            .unwrap_or(GoDuration(default))
    }

    fn integer(&mut self, var: &str, key: &str, trim: bool) -> Option<i64> {
        match self.env.get(var) {
            Some(raw) => {
                let text = if trim { raw.trim() } else { raw };
                match text.parse::<i64>() {
                    Ok(0) => self.file_value(|f| f.integer(key)),
                    Ok(v) => Some(v),
                    Err(e) => {
                        self.warn(format!(
                            "Invalid format for \"{var}\" environment variable; expected integer. err {e}"
                        ));
                        self.file_value(|f| f.integer(key))
                    }
                }
            }
            None => self.file_value(|f| f.integer(key)),
        }
    }

    fn ports(&mut self, var: &str, key: &str) -> Option<Vec<u16>> {
        let from_env = match self.env.get(var) {
            Some(raw) => match value::port_list(raw) {
                Ok(list) => Some(list),
                Err(e) => {
                    self.warn(format!(
                        "Invalid format for \"{var}\" environment variable; expected a JSON array like [1,2,3]. err {e}"
                    ));
                    None
                }
            },
            None => None,
        }
        .filter(|l| !l.is_empty());
        from_env.or_else(|| self.file_value(|f| f.ports(key)))
    }

    fn strings(&mut self, var: &str, key: &str) -> Option<Vec<String>> {
        let from_env = match self.env.get(var) {
            Some(raw) => match value::first_json_value::<Vec<String>>(raw) {
                Ok(list) => Some(list),
                Err(e) => {
                    self.warn(format!(
                        "Invalid format for \"{var}\" environment variable; expected a JSON array like [\"a\",\"b\"]. err {e}"
                    ));
                    None
                }
            },
            None => None,
        }
        .filter(|l| !l.is_empty());
        from_env.or_else(|| self.file_value(|f| f.strings(key)))
    }

    fn strict_map(&mut self, var: &str, key: &str) -> Option<BTreeMap<String, String>> {
        let from_env = match self.env.get(var) {
            Some(raw) => match value::string_map(raw) {
                Ok(map) => Some(map),
                Err(e) => {
                    self.fatal(format!(
                        "Invalid format for {var}. Expected a json hash: {e}"
                    ));
                    None
                }
            },
            None => None,
        }
        .filter(|m| !m.is_empty());
        from_env.or_else(|| self.file_value(|f| f.string_map(key)))
    }

    /// `ECS_TASK_METADATA_RPS_LIMIT` is `rate,burst`; anything unusable
    /// means the defaults 40,60.
    fn metadata_rps_limit(&mut self) -> (u32, u32) {
        const DEFAULTS: (u32, u32) = (40, 60);
        let Some(raw) = self.env.get("ECS_TASK_METADATA_RPS_LIMIT") else {
            let rate = self.file_integer("TaskMetadataSteadyStateRate");
            let burst = self.file_integer("TaskMetadataBurstRate");
            return match (rate, burst) {
                (Some(r), Some(b)) if r > 0 && b > 0 => (
                    u32::try_from(r).unwrap_or(DEFAULTS.0),
                    u32::try_from(b).unwrap_or(DEFAULTS.1),
                ),
                (None, None) => DEFAULTS,
                _ => {
                    self.warn("Invalid values for task metadata rate limits; using 40,60".into());
                    DEFAULTS
                }
            };
        };
        let parts: Vec<&str> = raw.split(',').collect();
        let parsed = match parts.as_slice() {
            [rate, burst] => rate
                .trim()
                .parse::<i64>()
                .ok()
                .zip(burst.trim().parse::<i64>().ok()),
            _ => None,
        };
        match parsed {
            Some((r, b)) if r > 0 && b > 0 => (
                u32::try_from(r).unwrap_or(DEFAULTS.0),
                u32::try_from(b).unwrap_or(DEFAULTS.1),
            ),
            _ => {
                self.warn(
                    "Invalid format for \"ECS_TASK_METADATA_RPS_LIMIT\", expected: \"rateLimit,burst\"".into(),
                );
                DEFAULTS
            }
        }
    }
}

#[cfg(test)]
mod tests;
