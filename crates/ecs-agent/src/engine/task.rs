//! The engine's task and container records: the validated definition taken
//! from an ACS payload, and the engine state the agent tracks and
//! checkpoints for each (docs/engine.md §2).

use std::collections::BTreeMap;

use ecs_model::acs;
use serde::{Deserialize, Serialize};

use super::status::{ContainerStatus, HealthStatus, TaskStatus};

/// Why an ACS task could not be turned into an engine task. The text is
/// reported to the backend as `UnrecogniedTaskError: Error loading task - …`
/// (the Go agent's spelling, which consumers may match on).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TaskParseError(pub String);

impl TaskParseError {
    pub fn reason(&self) -> String {
        format!("UnrecogniedTaskError: Error loading task - {}", self.0)
    }
}

/// Network mode of a task; `awsvpc` is accepted on the wire but not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    #[default]
    Bridge,
    Host,
    None,
    Awsvpc,
}

/// A task volume the containers can mount.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "volumeType")]
pub enum VolumeSpec {
    /// A host path bound into containers, or an agent-managed scratch
    /// volume when `source_path` is absent.
    Host {
        name: String,
        source_path: Option<String>,
    },
    /// A Docker volume (task- or shared-scoped).
    Docker {
        name: String,
        scope: Option<String>,
        autoprovision: bool,
        driver: Option<String>,
        driver_opts: BTreeMap<String, String>,
        labels: BTreeMap<String, String>,
    },
    /// Types that parse but whose drivers are not implemented yet (EFS,
    /// FSx, EBS, …): the task is accepted; mounting one fails at create.
    Unsupported { name: String, kind: String },
}

impl VolumeSpec {
    pub fn name(&self) -> &str {
        match self {
            VolumeSpec::Host { name, .. }
            | VolumeSpec::Docker { name, .. }
            | VolumeSpec::Unsupported { name, .. } => name,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMappingSpec {
    pub container_port: u16,
    /// 0 means "pick a host port".
    pub host_port: u16,
    pub protocol: Protocol,
    pub container_port_range: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MountPointSpec {
    pub source_volume: String,
    pub container_path: String,
    pub read_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeFromSpec {
    pub source_container: String,
    pub read_only: bool,
}

/// `dependsOn` conditions (docs/engine.md §5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DependencyCondition {
    Start,
    Complete,
    Success,
    Healthy,
    /// Derived from `volumesFrom`: the source must exist.
    Create,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DependencySpec {
    pub container_name: String,
    pub condition: DependencyCondition,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct RestartPolicySpec {
    pub enabled: bool,
    pub ignored_exit_codes: Vec<i64>,
    pub restart_attempt_period_secs: u64,
}

/// What the task definition says about one container, validated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    pub container_arn: Option<String>,
    /// After `overrides.command` replaced it.
    pub command: Option<Vec<String>>,
    pub entry_point: Option<Vec<String>>,
    pub environment: BTreeMap<String, String>,
    pub cpu: u32,
    /// Hard memory limit in MiB; 0 means none.
    pub memory_mib: u32,
    pub essential: bool,
    pub port_mappings: Vec<PortMappingSpec>,
    pub mount_points: Vec<MountPointSpec>,
    pub volumes_from: Vec<VolumeFromSpec>,
    pub links: Vec<String>,
    pub depends_on: Vec<DependencySpec>,
    /// The backend's pre-rendered Docker `Config` JSON (a string), laid over
    /// what the agent computes.
    pub docker_config: Option<String>,
    /// The backend's pre-rendered Docker `HostConfig` JSON (a string).
    pub docker_host_config: Option<String>,
    pub docker_api_version: Option<String>,
    pub docker_health_check: bool,
    pub start_timeout_secs: u64,
    pub stop_timeout_secs: u64,
    pub restart_policy: Option<RestartPolicySpec>,
    /// Secrets fetched before the container is created; the checkpoint
    /// keeps these references, never the values (docs/aws-services.md §3).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretSpec>,
    /// S3 ARNs of environment files, in the order given (earlier files
    /// win).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environment_files: Vec<String>,
    /// How to log in to the image's registry, when the payload says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_auth: Option<RegistryAuthSpec>,
    /// `logsAuthStrategy: ExecutionRole`: the log driver gets the
    /// execution role's credentials endpoint.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub logs_auth_execution_role: bool,
}

/// The service a secret is kept in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SecretProvider {
    /// SSM Parameter Store.
    Ssm,
    /// Secrets Manager.
    Asm,
}

/// Where a secret's value goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SecretTarget {
    /// A variable of the container's environment.
    Environment,
    /// An option of the container's log driver.
    LogDriver,
}

/// One `secrets` entry of a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretSpec {
    /// The variable or log option it becomes.
    pub name: String,
    pub value_from: String,
    pub provider: SecretProvider,
    /// The region to ask; the agent's own when the payload gives none.
    pub region: Option<String>,
    pub target: SecretTarget,
}

/// A container's `registryAuthentication`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum RegistryAuthSpec {
    /// An ECR token, asked for with the execution role or the instance's
    /// credentials.
    #[serde(rename_all = "camelCase")]
    Ecr {
        registry: crate::aws::ecr::Registry,
        use_execution_role: bool,
    },
    /// A user name and password kept in a Secrets Manager secret.
    #[serde(rename_all = "camelCase")]
    Asm {
        credentials_parameter: String,
        region: Option<String>,
    },
}

/// What the task definition says about the task, validated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskSpec {
    pub arn: String,
    pub family: String,
    pub version: String,
    pub network_mode: NetworkMode,
    pub volumes: Vec<VolumeSpec>,
    /// Task-level CPU in vCPU; 0 = unset.
    pub cpu: f64,
    /// Task-level memory in MiB; 0 = unset.
    pub memory_mib: u32,
    pub launch_type: Option<String>,
    pub service_name: Option<String>,
    pub group: Option<String>,
    pub pid_mode: Option<String>,
    pub ipc_mode: Option<String>,
    pub containers: Vec<ContainerSpec>,
    /// `credentialsId` of the task role's credentials, as the payload gave
    /// it; containers learn it through `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`.
    #[serde(default)]
    pub task_role_credentials_id: Option<String>,
    /// `credentialsId` of the execution role's credentials (never injected).
    #[serde(default)]
    pub execution_role_credentials_id: Option<String>,
}

impl TaskSpec {
    /// The last path segment of the ARN, used in container and volume names.
    pub fn task_id(&self) -> &str {
        task_id(&self.arn)
    }
}

/// The last `/` segment of a task ARN.
pub fn task_id(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

/// A task from a payload: its definition and the desired status asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct IncomingTask {
    pub spec: TaskSpec,
    pub desired_status: TaskStatus,
}

fn required<'a>(value: &'a Option<String>, what: &str) -> Result<&'a str, TaskParseError> {
    value
        .as_deref()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| TaskParseError(format!("missing {what}")))
}

fn non_negative(value: Option<i64>, what: &str) -> Result<u64, TaskParseError> {
    match value {
        None => Ok(0),
        Some(v) => u64::try_from(v).map_err(|_| TaskParseError(format!("negative {what}: {v}"))),
    }
}

fn port(value: i64, what: &str) -> Result<u16, TaskParseError> {
    u16::try_from(value).map_err(|_| TaskParseError(format!("invalid {what}: {value}")))
}

/// A task ARN must end in `task/<id>` or `task/<cluster>/<id>`.
fn valid_task_arn(arn: &str) -> bool {
    let Some(resource) = arn
        .strip_prefix("arn:")
        .and_then(|r| r.splitn(5, ':').nth(4))
    else {
        return false;
    };
    let parts: Vec<&str> = resource.split('/').collect();
    matches!(parts.as_slice(), ["task", id] | ["task", _, id] if !id.is_empty())
}

impl TryFrom<&acs::Task> for IncomingTask {
    type Error = TaskParseError;

    fn try_from(task: &acs::Task) -> Result<Self, TaskParseError> {
        let arn = required(&task.arn, "task arn")?;
        if !valid_task_arn(arn) {
            return Err(TaskParseError(format!("invalid task arn {arn:?}")));
        }
        let desired_text = required(&task.desired_status, "desiredStatus")?;
        let desired_status = TaskStatus::parse_desired(desired_text)
            .ok_or_else(|| TaskParseError(format!("invalid desiredStatus {desired_text:?}")))?;
        let network_mode = match task.network_mode.as_deref() {
            None | Some("") | Some("bridge") => NetworkMode::Bridge,
            Some("host") => NetworkMode::Host,
            Some("none") => NetworkMode::None,
            Some("awsvpc") => NetworkMode::Awsvpc,
            // The Go agent logs and leaves other values unset, which then
            // behaves like the default.
            Some(_) => NetworkMode::Bridge,
        };
        let volumes = task
            .volumes
            .iter()
            .flatten()
            .map(volume_spec)
            .collect::<Result<Vec<_>, _>>()?;
        if task.overrides.as_ref().is_some_and(|o| !overrides_ok(o)) {
            return Err(TaskParseError("invalid task overrides".into()));
        }
        let containers = task
            .containers
            .iter()
            .flatten()
            .map(container_spec)
            .collect::<Result<Vec<_>, _>>()?;
        if containers.is_empty() {
            return Err(TaskParseError("task has no containers".into()));
        }
        let mut names = std::collections::BTreeSet::new();
        for c in &containers {
            if !names.insert(c.name.as_str()) {
                return Err(TaskParseError(format!(
                    "duplicate container name {:?}",
                    c.name
                )));
            }
        }
        let cpu = task.cpu.unwrap_or(0.0);
        if !cpu.is_finite() || cpu < 0.0 {
            return Err(TaskParseError(format!("invalid task cpu {cpu}")));
        }
        let memory_mib = u32::try_from(task.memory.unwrap_or(0))
            .map_err(|_| TaskParseError("invalid task memory".into()))?;
        Ok(IncomingTask {
            spec: TaskSpec {
                arn: arn.to_string(),
                family: task.family.clone().unwrap_or_default(),
                version: task.version.clone().unwrap_or_default(),
                network_mode,
                volumes,
                cpu,
                memory_mib,
                launch_type: task.launch_type.clone(),
                service_name: task.service_name.clone(),
                group: task.group.clone(),
                pid_mode: task.pid_mode.clone(),
                ipc_mode: task.ipc_mode.clone(),
                containers,
                task_role_credentials_id: credentials_id(task.role_credentials.as_ref()),
                execution_role_credentials_id: credentials_id(
                    task.execution_role_credentials.as_ref(),
                ),
            },
            desired_status,
        })
    }
}

fn credentials_id(creds: Option<&acs::IAMRoleCredentials>) -> Option<String> {
    creds?.credentials_id.clone().filter(|id| !id.is_empty())
}

/// Task-level overrides are ignored, but must at least be JSON.
fn overrides_ok(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(s) => serde_json::from_str::<serde_json::Value>(s).is_ok(),
        _ => true,
    }
}

fn volume_spec(v: &acs::Volume) -> Result<VolumeSpec, TaskParseError> {
    let name = required(&v.name, "volume name")?.to_string();
    match v.r#type.as_deref().unwrap_or("host") {
        "host" => Ok(VolumeSpec::Host {
            source_path: v
                .host
                .as_ref()
                .and_then(|h| h.source_path.clone())
                .filter(|p| !p.is_empty()),
            name,
        }),
        "docker" => {
            let cfg = v.docker_volume_configuration.clone().unwrap_or_default();
            Ok(VolumeSpec::Docker {
                name,
                scope: cfg.scope,
                autoprovision: cfg.autoprovision.unwrap_or(false),
                driver: cfg.driver,
                driver_opts: cfg.driver_opts.unwrap_or_default(),
                labels: cfg.labels.unwrap_or_default(),
            })
        }
        kind @ ("efs" | "fsxWindowsFileServer" | "amazonebs" | "s3files") => {
            Ok(VolumeSpec::Unsupported {
                name,
                kind: kind.to_string(),
            })
        }
        other => Err(TaskParseError(format!(
            "volume {name:?}: unknown volume type {other:?}"
        ))),
    }
}

/// `overrides` may only carry `command` (docs/protocols.md §4.6); it arrives
/// as a JSON string, or occasionally as an object.
fn override_command(value: &serde_json::Value) -> Result<Option<Vec<String>>, TaskParseError> {
    let parsed;
    let object = match value {
        serde_json::Value::String(text) => {
            parsed = serde_json::from_str::<serde_json::Value>(text)
                .map_err(|e| TaskParseError(format!("invalid container overrides: {e}")))?;
            &parsed
        }
        other => other,
    };
    let serde_json::Value::Object(map) = object else {
        return Err(TaskParseError(
            "container overrides must be an object".into(),
        ));
    };
    for key in map.keys() {
        if !key.eq_ignore_ascii_case("command") {
            return Err(TaskParseError(format!(
                "unknown member {key:?} in container overrides"
            )));
        }
    }
    match map.iter().find(|(k, _)| k.eq_ignore_ascii_case("command")) {
        None | Some((_, serde_json::Value::Null)) => Ok(None),
        Some((_, command)) => serde_json::from_value(command.clone())
            .map(Some)
            .map_err(|_| TaskParseError("overrides command must be a list of strings".into())),
    }
}

fn container_spec(c: &acs::Container) -> Result<ContainerSpec, TaskParseError> {
    let name = required(&c.name, "container name")?.to_string();
    let image = required(&c.image, &format!("image of container {name:?}"))?.to_string();
    let mut command = c.command.clone();
    if let Some(overrides) = &c.overrides {
        if let Some(cmd) = override_command(overrides)? {
            command = Some(cmd);
        }
    }
    let port_mappings = c
        .port_mappings
        .iter()
        .flatten()
        .map(|p| {
            let protocol = match p.protocol.as_deref() {
                None | Some("") | Some("tcp") => Protocol::Tcp,
                Some("udp") => Protocol::Udp,
                Some(other) => {
                    return Err(TaskParseError(format!("invalid port protocol {other:?}")))
                }
            };
            Ok(PortMappingSpec {
                container_port: port(p.container_port.unwrap_or(0), "container port")?,
                host_port: port(p.host_port.unwrap_or(0), "host port")?,
                protocol,
                container_port_range: p.container_port_range.clone().filter(|r| !r.is_empty()),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mount_points = c
        .mount_points
        .iter()
        .flatten()
        .map(|m| MountPointSpec {
            source_volume: m.source_volume.clone().unwrap_or_default(),
            container_path: m.container_path.clone().unwrap_or_default(),
            read_only: m.read_only.unwrap_or(false),
        })
        .collect();
    let volumes_from = c
        .volumes_from
        .iter()
        .flatten()
        .map(|v| {
            Ok(VolumeFromSpec {
                source_container: required(&v.source_container, "volumesFrom sourceContainer")?
                    .to_string(),
                read_only: v.read_only.unwrap_or(false),
            })
        })
        .collect::<Result<Vec<_>, TaskParseError>>()?;
    let depends_on = c
        .depends_on
        .iter()
        .flatten()
        .map(|d| {
            let condition = match d.condition.as_deref() {
                Some("START") => DependencyCondition::Start,
                Some("COMPLETE") => DependencyCondition::Complete,
                Some("SUCCESS") => DependencyCondition::Success,
                Some("HEALTHY") => DependencyCondition::Healthy,
                other => {
                    return Err(TaskParseError(format!(
                        "invalid dependsOn condition {other:?}"
                    )))
                }
            };
            Ok(DependencySpec {
                container_name: required(&d.container_name, "dependsOn containerName")?.to_string(),
                condition,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let restart_policy = c.restart_policy.as_ref().map(|r| RestartPolicySpec {
        enabled: r.enabled.unwrap_or(false),
        ignored_exit_codes: r.ignored_exit_codes.clone().unwrap_or_default(),
        restart_attempt_period_secs: u64::try_from(r.restart_attempt_period.unwrap_or(0))
            .unwrap_or(0),
    });
    let docker = c.docker_config.clone().unwrap_or_default();
    let secrets = c
        .secrets
        .iter()
        .flatten()
        .map(|s| secret_spec(&name, s))
        .collect::<Result<Vec<_>, _>>()?;
    let environment_files = c
        .environment_files
        .iter()
        .flatten()
        .map(|f| match f.r#type.as_deref() {
            Some("s3") => Ok(required(&f.value, "environment file value")?.to_string()),
            other => Err(TaskParseError(format!(
                "environment file of container {name:?}: unsupported type {other:?}"
            ))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let registry_auth = registry_auth_spec(&name, c.registry_authentication.as_ref())?;
    Ok(ContainerSpec {
        secrets,
        environment_files,
        registry_auth,
        logs_auth_execution_role: c.logs_auth_strategy.as_deref() == Some("ExecutionRole"),
        cpu: u32::try_from(c.cpu.unwrap_or(0))
            .map_err(|_| TaskParseError(format!("invalid cpu for container {name:?}")))?,
        memory_mib: u32::try_from(c.memory.unwrap_or(0))
            .map_err(|_| TaskParseError(format!("invalid memory for container {name:?}")))?,
        image,
        container_arn: c.container_arn.clone(),
        command,
        entry_point: c.entry_point.clone().filter(|e| !e.is_empty()),
        environment: c.environment.clone().unwrap_or_default(),
        essential: c.essential.unwrap_or(false),
        port_mappings,
        mount_points,
        volumes_from,
        links: c.links.clone().unwrap_or_default(),
        depends_on,
        docker_config: docker.config.filter(|s| !s.is_empty()),
        docker_host_config: docker.host_config.filter(|s| !s.is_empty()),
        docker_api_version: docker.version,
        docker_health_check: c.health_check_type.as_deref() == Some("docker"),
        start_timeout_secs: non_negative(c.start_timeout, "startTimeout")?,
        stop_timeout_secs: non_negative(c.stop_timeout, "stopTimeout")?,
        restart_policy,
        name,
    })
}

fn secret_spec(container: &str, s: &acs::Secret) -> Result<SecretSpec, TaskParseError> {
    let name = required(&s.name, "secret name")?.to_string();
    let value_from = required(&s.value_from, "secret valueFrom")?.to_string();
    let provider = match s.provider.as_deref() {
        Some("ssm") => SecretProvider::Ssm,
        Some("asm") => SecretProvider::Asm,
        other => {
            return Err(TaskParseError(format!(
                "secret {name:?} of container {container:?}: unknown provider {other:?}"
            )))
        }
    };
    let target = if s.target.as_deref() == Some("LOG_DRIVER") {
        SecretTarget::LogDriver
    } else if s.r#type.as_deref() == Some("ENVIRONMENT_VARIABLE") {
        SecretTarget::Environment
    } else {
        return Err(TaskParseError(format!(
            "secret {name:?} of container {container:?}: unsupported type {:?} and target {:?}",
            s.r#type, s.target
        )));
    };
    Ok(SecretSpec {
        name,
        value_from,
        provider,
        region: s.region.clone().filter(|r| !r.is_empty()),
        target,
    })
}

fn registry_auth_spec(
    container: &str,
    auth: Option<&acs::RegistryAuthenticationData>,
) -> Result<Option<RegistryAuthSpec>, TaskParseError> {
    let Some(auth) = auth else {
        return Ok(None);
    };
    let what = |member: &str| format!("{member} of container {container:?}");
    match auth.r#type.as_deref() {
        None | Some("") => Ok(None),
        Some("ecr") => {
            let data = auth
                .ecr_auth_data
                .as_ref()
                .ok_or_else(|| TaskParseError(format!("missing {}", what("ecrAuthData"))))?;
            Ok(Some(RegistryAuthSpec::Ecr {
                registry: crate::aws::ecr::Registry {
                    registry_id: required(&data.registry_id, &what("ecrAuthData registryId"))?
                        .to_string(),
                    region: required(&data.region, &what("ecrAuthData region"))?.to_string(),
                    endpoint_override: data.endpoint_override.clone().filter(|e| !e.is_empty()),
                },
                use_execution_role: data.use_execution_role.unwrap_or(false),
            }))
        }
        Some("asm") => {
            let data = auth
                .asm_auth_data
                .as_ref()
                .ok_or_else(|| TaskParseError(format!("missing {}", what("asmAuthData"))))?;
            Ok(Some(RegistryAuthSpec::Asm {
                credentials_parameter: required(
                    &data.credentials_parameter,
                    &what("asmAuthData credentialsParameter"),
                )?
                .to_string(),
                region: data.region.clone().filter(|r| !r.is_empty()),
            }))
        }
        Some(other) => Err(TaskParseError(format!(
            "unknown registry authentication type {other:?} of container {container:?}"
        ))),
    }
}

/// A port binding Docker reported for a running container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortBinding {
    pub container_port: u16,
    pub host_port: u16,
    pub bind_ip: String,
    pub protocol: Protocol,
}

/// The engine's view of one container; checkpointed with its task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    pub spec: ContainerSpec,
    pub known_status: ContainerStatus,
    pub desired_status: ContainerStatus,
    /// The highest status already queued for reporting.
    pub reported_status: ContainerStatus,
    /// The target of the Docker action in flight, if any. Not persisted: an
    /// action interrupted by a restart is simply issued again.
    #[serde(skip)]
    pub applied_status: Option<ContainerStatus>,
    /// Name reserved (and persisted) before the create call, so a restart
    /// finds a container created just before the agent died.
    pub docker_name: Option<String>,
    pub docker_id: Option<String>,
    pub image_digest: Option<String>,
    /// The image as Docker had it when the manifest or pull step last
    /// inspected it, handed on so the next step need not ask again; gone
    /// once the container is created. Not persisted: after a restart the
    /// steps inspect the image themselves.
    #[serde(skip)]
    pub local_image: Option<crate::docker::ImageInfo>,
    /// The main process while the container runs (for the metrics
    /// collector). Not persisted: a restart inspects every container again.
    #[serde(skip)]
    pub pid: Option<u32>,
    pub exit_code: Option<i64>,
    /// `<ErrorName>: <message>` of the first failure, reported as `reason`.
    pub reason: Option<String>,
    pub port_bindings: Vec<PortBinding>,
    /// Host ports the agent chose for dynamic mappings, kept so a re-create
    /// after a restart asks for the same ones.
    #[serde(default)]
    pub assigned_ports: Vec<super::ports::AssignedPort>,
    /// Host port blocks chosen for `containerPortRange` mappings.
    #[serde(default)]
    pub assigned_ranges: Vec<super::ports::AssignedRange>,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
    /// Restarts made under the container's restart policy.
    #[serde(default)]
    pub restart_count: u32,
    #[serde(default)]
    pub last_restart_at_ms: Option<i64>,
    pub health: HealthStatus,
    /// When `health` last changed (ms since the epoch): TCS `statusSince`.
    #[serde(default)]
    pub health_since_ms: Option<i64>,
    /// The random ID in this container's task metadata URIs
    /// (docs/endpoints.md §8.1); kept across restarts.
    #[serde(default = "new_endpoint_id")]
    pub endpoint_id: String,
}

/// A fresh task metadata endpoint ID: a random (version 4) UUID.
pub fn new_endpoint_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl Container {
    pub fn new(spec: ContainerSpec) -> Self {
        Self {
            spec,
            known_status: ContainerStatus::None,
            desired_status: ContainerStatus::None,
            reported_status: ContainerStatus::None,
            applied_status: None,
            docker_name: None,
            docker_id: None,
            image_digest: None,
            local_image: None,
            pid: None,
            exit_code: None,
            reason: None,
            port_bindings: Vec::new(),
            assigned_ports: Vec::new(),
            assigned_ranges: Vec::new(),
            started_at_ms: None,
            finished_at_ms: None,
            restart_count: 0,
            last_restart_at_ms: None,
            health: HealthStatus::Unknown,
            health_since_ms: None,
            endpoint_id: new_endpoint_id(),
        }
    }

    /// The status a healthy container rests at.
    pub fn steady_state(&self) -> ContainerStatus {
        ContainerStatus::Running
    }

    /// Records the first failure only: it is the one the user needs.
    pub fn set_reason(&mut self, reason: impl Into<String>) {
        if self.reason.is_none() {
            self.reason = Some(reason.into());
        }
    }
}

/// The engine's view of one task; the unit of checkpointing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    pub spec: TaskSpec,
    pub containers: Vec<Container>,
    pub known_status: TaskStatus,
    pub known_status_time_ms: i64,
    pub desired_status: TaskStatus,
    /// The highest status already queued for reporting.
    pub reported_status: TaskStatus,
    pub pull_started_at_ms: Option<i64>,
    pub pull_stopped_at_ms: Option<i64>,
    pub execution_stopped_at_ms: Option<i64>,
    /// Why the task stopped, when the agent knows better than its containers.
    pub terminal_reason: Option<String>,
    /// Docker volumes the agent provisions for this task.
    #[serde(default)]
    pub volumes: Vec<VolumeResource>,
    /// The values of the task's secrets and environment files, in memory
    /// only (docs/aws-services.md §3).
    #[serde(skip)]
    pub secrets: crate::secrets::SecretsState,
}

/// Lifecycle of a task resource (docs/engine.md §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ResourceStatus {
    #[default]
    None,
    Created,
    Removed,
}

/// A Docker volume the agent creates (or, for shared volumes, finds) before
/// the containers that mount it can start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeResource {
    /// The task volume's name, as mount points refer to it.
    pub name: String,
    /// The Docker volume's name.
    pub docker_name: String,
    /// Shared volumes outlive the task; task volumes are removed with it.
    pub shared: bool,
    pub autoprovision: bool,
    pub driver: String,
    pub driver_opts: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub status: ResourceStatus,
    /// A provisioning call is in flight; not persisted, so a restart retries.
    #[serde(skip)]
    pub in_flight: bool,
}

impl VolumeResource {
    /// The Docker volumes a task needs: scratch (host volumes without a
    /// path) and task-scoped Docker volumes get a generated name
    /// `ecs-<family>-<version>-<volume>-<20 hex>`; shared ones use their name.
    fn for_task(spec: &TaskSpec) -> Vec<VolumeResource> {
        let generated = |volume: &str| {
            let suffix: [u8; 10] = rand::random();
            format!(
                "ecs-{}-{}-{}-{}",
                spec.family,
                spec.version,
                volume,
                hex::encode(suffix)
            )
        };
        spec.volumes
            .iter()
            .filter_map(|v| match v {
                VolumeSpec::Host {
                    name,
                    source_path: None,
                } => Some(VolumeResource {
                    docker_name: generated(name),
                    name: name.clone(),
                    shared: false,
                    autoprovision: false,
                    driver: "local".into(),
                    driver_opts: BTreeMap::new(),
                    labels: BTreeMap::new(),
                    status: ResourceStatus::None,
                    in_flight: false,
                }),
                VolumeSpec::Docker {
                    name,
                    scope,
                    autoprovision,
                    driver,
                    driver_opts,
                    labels,
                } => {
                    let shared = scope.as_deref() == Some("shared");
                    Some(VolumeResource {
                        docker_name: if shared {
                            name.clone()
                        } else {
                            generated(name)
                        },
                        name: name.clone(),
                        shared,
                        autoprovision: *autoprovision,
                        driver: driver.clone().unwrap_or_else(|| "local".into()),
                        driver_opts: driver_opts.clone(),
                        labels: labels.clone(),
                        status: ResourceStatus::None,
                        in_flight: false,
                    })
                }
                _ => None,
            })
            .collect()
    }
}

impl Task {
    pub fn new(incoming: IncomingTask, now_ms: i64) -> Self {
        let containers = incoming
            .spec
            .containers
            .iter()
            .cloned()
            .map(Container::new)
            .collect();
        let volumes = VolumeResource::for_task(&incoming.spec);
        let mut task = Self {
            spec: incoming.spec,
            containers,
            known_status: TaskStatus::None,
            known_status_time_ms: now_ms,
            desired_status: TaskStatus::None,
            reported_status: TaskStatus::None,
            pull_started_at_ms: None,
            pull_stopped_at_ms: None,
            execution_stopped_at_ms: None,
            terminal_reason: None,
            volumes,
            secrets: crate::secrets::SecretsState::Missing,
        };
        task.raise_desired_status(incoming.desired_status);
        task
    }

    pub fn arn(&self) -> &str {
        &self.spec.arn
    }

    /// Desired status only moves forward; the containers follow.
    pub fn raise_desired_status(&mut self, status: TaskStatus) -> bool {
        if status <= self.desired_status {
            return false;
        }
        self.desired_status = status;
        let container_target = status.container_status();
        for c in &mut self.containers {
            if c.desired_status < container_target {
                c.desired_status = container_target;
            }
        }
        true
    }

    pub fn set_terminal_reason(&mut self, reason: impl Into<String>) {
        if self.terminal_reason.is_none() {
            self.terminal_reason = Some(reason.into());
        }
    }

    pub fn volume(&self, name: &str) -> Option<&VolumeResource> {
        self.volumes.iter().find(|v| v.name == name)
    }

    pub fn container_index(&self, name: &str) -> Option<usize> {
        self.containers.iter().position(|c| c.spec.name == name)
    }
}

#[cfg(test)]
mod tests;
