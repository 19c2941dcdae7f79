//! Rendering a stored task (its definition plus RunTask overrides) into the
//! ACS `Task` an agent runs: the payload members the agent reads directly,
//! and the Docker options pre-rendered into `dockerConfig` JSON strings the
//! way the ECS backend does (docs/engine.md §7, §9).
//!
//! What a container has the agent fetch from AWS is rendered as ECS sends
//! it (see [`auth_members`]): `secrets` (SSM Parameter Store or Secrets
//! Manager, as environment variables or as log driver options),
//! `environmentFiles`, `registryAuthentication` (Secrets Manager
//! `repositoryCredentials`, or Amazon ECR for an image in an ECR registry)
//! and `logsAuthStrategy`. Placement asks for the capabilities these need
//! (`crate::placement::required_attributes`).

use crate::arn::ACCOUNT_ID;
use crate::placement::{parse_task_cpu, parse_task_memory};
use crate::store::TaskRecord;
use ecs_model::acs;
use ecs_model::ecs_api::{ContainerDefinition, ContainerOverride, TaskDefinition, Volume};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// Docker API version the rendered `dockerConfig` fragments are written for.
pub const DOCKER_CONFIG_VERSION: &str = "1.17";

const MIB: i64 = 1024 * 1024;
const NANOS_PER_SECOND: i64 = 1_000_000_000;

/// ECS defaults for health check members the user left out (seconds).
const HEALTH_INTERVAL: i64 = 30;
const HEALTH_TIMEOUT: i64 = 5;
const HEALTH_RETRIES: i64 = 3;
const HEALTH_START_PERIOD: i64 = 0;

/// `secrets[].provider` of a secret in SSM Parameter Store.
pub const SECRET_PROVIDER_SSM: &str = "ssm";
/// `secrets[].provider` of a secret in Secrets Manager.
pub const SECRET_PROVIDER_ASM: &str = "asm";
/// `secrets[].type` of a secret the agent puts into the environment.
pub const SECRET_TYPE_ENVIRONMENT_VARIABLE: &str = "ENVIRONMENT_VARIABLE";
/// `secrets[].target` of a container `secrets` entry.
pub const SECRET_TARGET_CONTAINER: &str = "CONTAINER";
/// `secrets[].target` of a `logConfiguration.secretOptions` entry.
pub const SECRET_TARGET_LOG_DRIVER: &str = "LOG_DRIVER";
/// `registryAuthentication.type` for Amazon ECR.
pub const REGISTRY_AUTH_ECR: &str = "ecr";
/// `registryAuthentication.type` for Secrets Manager credentials.
pub const REGISTRY_AUTH_ASM: &str = "asm";
/// `logsAuthStrategy` that has the agent give `awslogs` the execution
/// role's credentials (through `awslogs-credentials-endpoint`).
pub const LOGS_AUTH_EXECUTION_ROLE: &str = "ExecutionRole";

/// What the plane's configuration adds to every rendered task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The plane's region: where secrets and registry credentials given by
    /// name rather than by ARN are looked up.
    pub region: String,
    /// Sent as `ecrAuthData.endpointOverride`, so that agents ask this
    /// endpoint for ECR credentials; none leaves the member out.
    pub ecr_endpoint_override: Option<String>,
}

impl Default for Settings {
    /// The plane's defaults: region `us-east-1`, no ECR endpoint override.
    fn default() -> Self {
        Self {
            region: "us-east-1".to_owned(),
            ecr_endpoint_override: None,
        }
    }
}

/// The payload task for `record`, whose definition is `definition`.
pub fn task(definition: &TaskDefinition, record: &TaskRecord, settings: &Settings) -> acs::Task {
    let overrides = record.task.overrides.as_ref();
    let network_mode = definition
        .network_mode
        .clone()
        .unwrap_or_else(|| "bridge".to_owned());
    let task_cpu = overrides
        .and_then(|o| o.cpu.as_deref())
        .or(definition.cpu.as_deref())
        .and_then(parse_task_cpu);
    let task_memory = overrides
        .and_then(|o| o.memory.as_deref())
        .or(definition.memory.as_deref())
        .and_then(parse_task_memory);
    let container_override = |name: &str| -> Option<&ContainerOverride> {
        overrides?
            .container_overrides
            .as_ref()?
            .iter()
            .find(|o| o.name.as_deref() == Some(name))
    };
    let container_arn = |name: &str| {
        record
            .task
            .containers
            .iter()
            .flatten()
            .find(|c| c.name.as_deref() == Some(name))
            .and_then(|c| c.container_arn.clone())
    };
    let task_id = record.arn().rsplit('/').next().unwrap_or_default();
    let containers = definition
        .container_definitions
        .iter()
        .map(|c| {
            let name = c.name.as_deref().unwrap_or_default();
            let mut rendered = container(c, container_override(name), definition, task_id);
            rendered.container_arn = container_arn(name);
            let auth = auth_members(c, record.execution_role_arn.is_some(), settings);
            rendered.secrets = Some(auth.secrets).filter(|s| !s.is_empty());
            rendered.environment_files = Some(auth.environment_files).filter(|f| !f.is_empty());
            rendered.registry_authentication = auth.registry_authentication;
            rendered.logs_auth_strategy = auth.logs_auth_strategy;
            rendered
        })
        .collect();
    acs::Task {
        arn: Some(record.arn().to_owned()),
        family: Some(record.family.clone()),
        version: Some(record.revision.to_string()),
        desired_status: Some(record.desired_status().to_owned()),
        network_mode: Some(network_mode),
        launch_type: Some("EC2".to_owned()),
        task_definition_account_id: Some(ACCOUNT_ID.to_owned()),
        group: record.task.group.clone(),
        cpu: task_cpu.map(|units| units as f64 / 1024.0),
        memory: task_memory,
        pid_mode: definition.pid_mode.clone(),
        ipc_mode: definition.ipc_mode.clone(),
        volumes: Some(definition.volumes.iter().flatten().map(volume).collect()),
        containers: Some(containers),
        ..acs::Task::default()
    }
}

/// Converts a member kept untyped in a task definition into its ACS shape,
/// dropping it if the shapes disagree.
fn from_extra<T: serde::de::DeserializeOwned>(extra: &Map<String, Value>, key: &str) -> Option<T> {
    serde_json::from_value(extra.get(key)?.clone()).ok()
}

/// A `{name, valueFrom}` entry of a container's `secrets` or of its
/// `logConfiguration.secretOptions`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SecretRef {
    name: Option<String>,
    value_from: Option<String>,
}

/// A container's `repositoryCredentials`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RepositoryCredentials {
    credentials_parameter: Option<String>,
}

/// The service and region of an ARN
/// (`arn:<partition>:<service>:<region>:<account>:<resource>`).
fn arn_service_and_region(value: &str) -> Option<(&str, &str)> {
    let mut parts = value.splitn(6, ':');
    if parts.next()? != "arn" {
        return None;
    }
    let _partition = parts.next()?;
    let service = parts.next()?;
    let region = parts.next()?;
    let _account = parts.next()?;
    let _resource = parts.next()?;
    Some((service, region))
}

/// The region of a secret or parameter: the one in its ARN, else the
/// plane's (a name alone is looked up in the plane's region).
pub fn region_of(value_from: &str, plane_region: &str) -> String {
    arn_service_and_region(value_from)
        .map(|(_, region)| region)
        .filter(|region| !region.is_empty())
        .unwrap_or(plane_region)
        .to_owned()
}

/// `asm` for a Secrets Manager ARN
/// (`arn:<partition>:secretsmanager:<region>:<account>:secret:…`), else
/// `ssm` (a parameter name, or an `arn:…:ssm:…:parameter/…` ARN).
pub fn secret_provider(value_from: &str) -> &'static str {
    match arn_service_and_region(value_from) {
        Some(("secretsmanager", _)) => SECRET_PROVIDER_ASM,
        _ => SECRET_PROVIDER_SSM,
    }
}

/// An Amazon ECR registry an image is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcrRegistry {
    /// The 12-digit account ID.
    pub registry_id: String,
    pub region: String,
}

/// The ECR registry of `image`, when its registry host is
/// `<account>.dkr.ecr.<region>.amazonaws.com` (or `dkr.ecr-fips.`, or the
/// `.amazonaws.com.cn` suffix), without a port.
pub fn ecr_registry(image: &str) -> Option<EcrRegistry> {
    let (host, _repository) = image.split_once('/')?;
    let rest = host
        .strip_suffix(".amazonaws.com")
        .or_else(|| host.strip_suffix(".amazonaws.com.cn"))?;
    let (account, rest) = rest.split_once('.')?;
    let region = rest
        .strip_prefix("dkr.ecr.")
        .or_else(|| rest.strip_prefix("dkr.ecr-fips."))?;
    let account_ok = account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
    let region_ok = !region.is_empty()
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    (account_ok && region_ok).then(|| EcrRegistry {
        registry_id: account.to_owned(),
        region: region.to_owned(),
    })
}

/// The members of a rendered container that name what the agent fetches
/// from AWS for it, as the ECS backend sends them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuthMembers {
    /// The container's `secrets` (target `CONTAINER`, type
    /// `ENVIRONMENT_VARIABLE`), then its `logConfiguration.secretOptions`
    /// (target `LOG_DRIVER`, no type: the agent puts every secret of type
    /// `ENVIRONMENT_VARIABLE` into the environment).
    pub secrets: Vec<acs::Secret>,
    /// `environmentFiles`, as given.
    pub environment_files: Vec<acs::EnvironmentFile>,
    /// Secrets Manager for `repositoryCredentials`, else Amazon ECR for an
    /// image in an ECR registry, else none.
    pub registry_authentication: Option<acs::RegistryAuthenticationData>,
    /// `ExecutionRole` for an `awslogs` container of a task with an
    /// execution role.
    pub logs_auth_strategy: Option<String>,
}

/// The [`AuthMembers`] of container `c` of a task that has an execution
/// role or not (after RunTask overrides).
pub fn auth_members(
    c: &ContainerDefinition,
    has_execution_role: bool,
    settings: &Settings,
) -> AuthMembers {
    let secret = |s: SecretRef, target: &str, r#type: Option<&str>| {
        let value_from = s.value_from?;
        Some(acs::Secret {
            name: Some(s.name?),
            provider: Some(secret_provider(&value_from).to_owned()),
            region: Some(region_of(&value_from, &settings.region)),
            target: Some(target.to_owned()),
            r#type: r#type.map(str::to_owned),
            value_from: Some(value_from),
            container_path: None,
        })
    };
    let mut secrets: Vec<acs::Secret> = from_extra::<Vec<SecretRef>>(&c.extra, "secrets")
        .into_iter()
        .flatten()
        .filter_map(|s| {
            secret(
                s,
                SECRET_TARGET_CONTAINER,
                Some(SECRET_TYPE_ENVIRONMENT_VARIABLE),
            )
        })
        .collect();
    let log = c.log_configuration.as_ref();
    secrets.extend(
        log.and_then(|l| from_extra::<Vec<SecretRef>>(&l.extra, "secretOptions"))
            .into_iter()
            .flatten()
            .filter_map(|s| secret(s, SECRET_TARGET_LOG_DRIVER, None)),
    );
    let environment_files = from_extra(&c.extra, "environmentFiles").unwrap_or_default();
    let credentials_parameter =
        from_extra::<RepositoryCredentials>(&c.extra, "repositoryCredentials")
            .and_then(|r| r.credentials_parameter)
            .filter(|p| !p.is_empty());
    let registry_authentication = if let Some(parameter) = credentials_parameter {
        Some(acs::RegistryAuthenticationData {
            r#type: Some(REGISTRY_AUTH_ASM.to_owned()),
            asm_auth_data: Some(acs::ASMAuthData {
                region: Some(region_of(&parameter, &settings.region)),
                credentials_parameter: Some(parameter),
            }),
            ecr_auth_data: None,
        })
    } else {
        c.image
            .as_deref()
            .and_then(ecr_registry)
            .map(|registry| acs::RegistryAuthenticationData {
                r#type: Some(REGISTRY_AUTH_ECR.to_owned()),
                ecr_auth_data: Some(acs::ECRAuthData {
                    registry_id: Some(registry.registry_id),
                    region: Some(registry.region),
                    use_execution_role: Some(has_execution_role),
                    endpoint_override: settings.ecr_endpoint_override.clone(),
                }),
                asm_auth_data: None,
            })
    };
    let awslogs = log.and_then(|l| l.log_driver.as_deref()) == Some("awslogs");
    AuthMembers {
        secrets,
        environment_files,
        registry_authentication,
        logs_auth_strategy: (has_execution_role && awslogs)
            .then(|| LOGS_AUTH_EXECUTION_ROLE.to_owned()),
    }
}

fn volume(v: &Volume) -> acs::Volume {
    let mut out = acs::Volume {
        name: v.name.clone(),
        ..acs::Volume::default()
    };
    if let Some(docker) = &v.docker_volume_configuration {
        out.r#type = Some("docker".to_owned());
        out.docker_volume_configuration = Some(acs::DockerVolumeConfiguration {
            scope: Some(docker.scope.clone().unwrap_or_else(|| "task".to_owned())),
            autoprovision: docker.autoprovision,
            driver: docker.driver.clone(),
            driver_opts: docker.driver_opts.clone(),
            labels: docker.labels.clone(),
        });
    } else if v.extra.contains_key("efsVolumeConfiguration") {
        out.r#type = Some("efs".to_owned());
        out.efs_volume_configuration = from_extra(&v.extra, "efsVolumeConfiguration");
    } else if v
        .extra
        .contains_key("fsxWindowsFileServerVolumeConfiguration")
    {
        out.r#type = Some("fsxWindowsFileServer".to_owned());
        out.fsx_windows_file_server_volume_configuration =
            from_extra(&v.extra, "fsxWindowsFileServerVolumeConfiguration");
    } else {
        // A volume with no configuration is an agent-managed scratch volume.
        out.r#type = Some("host".to_owned());
        out.host = Some(acs::HostVolumeProperties {
            source_path: v.host.as_ref().and_then(|h| h.source_path.clone()),
        });
    }
    out
}

fn container(
    c: &ContainerDefinition,
    ov: Option<&ContainerOverride>,
    definition: &TaskDefinition,
    task_id: &str,
) -> acs::Container {
    let host_mode = definition.network_mode.as_deref() == Some("host");
    let mut environment: BTreeMap<String, String> = BTreeMap::new();
    let pairs = c.environment.iter().flatten().chain(
        ov.and_then(|o| o.environment.as_ref())
            .into_iter()
            .flatten(),
    );
    for pair in pairs {
        if let Some(name) = &pair.name {
            environment.insert(name.clone(), pair.value.clone().unwrap_or_default());
        }
    }
    let port_mappings = c
        .port_mappings
        .iter()
        .flatten()
        .map(|pm| acs::PortMapping {
            container_port: pm.container_port,
            container_port_range: pm.container_port_range.clone(),
            host_port: pm.container_port.map(|port| {
                if host_mode {
                    port
                } else {
                    pm.host_port.unwrap_or(0)
                }
            }),
            protocol: Some(pm.protocol.clone().unwrap_or_else(|| "tcp".to_owned())),
        })
        .collect();
    let overrides = match ov.and_then(|o| o.command.as_ref()) {
        Some(command) => json!({ "command": command }).to_string(),
        None => "{}".to_owned(),
    };
    let memory_reservation = ov
        .and_then(|o| o.memory_reservation)
        .or(c.memory_reservation);
    let memory = ov.and_then(|o| o.memory).or(c.memory);
    acs::Container {
        name: c.name.clone(),
        image: c.image.clone(),
        cpu: Some(ov.and_then(|o| o.cpu).or(c.cpu).unwrap_or(0)),
        memory,
        essential: Some(c.essential.unwrap_or(true)),
        command: c.command.clone(),
        entry_point: c.entry_point.clone(),
        environment: Some(environment),
        port_mappings: Some(port_mappings),
        mount_points: Some(
            c.mount_points
                .iter()
                .flatten()
                .map(|m| acs::MountPoint {
                    container_path: m.container_path.clone(),
                    read_only: Some(m.read_only.unwrap_or(false)),
                    source_volume: m.source_volume.clone(),
                })
                .collect(),
        ),
        volumes_from: Some(
            c.volumes_from
                .iter()
                .flatten()
                .map(|v| acs::VolumeFrom {
                    source_container: v.source_container.clone(),
                    read_only: Some(v.read_only.unwrap_or(false)),
                })
                .collect(),
        ),
        links: Some(c.links.clone().unwrap_or_default()),
        depends_on: c.depends_on.as_ref().map(|deps| {
            deps.iter()
                .map(|d| acs::ContainerDependency {
                    condition: d.condition.clone(),
                    container_name: d.container_name.clone(),
                })
                .collect()
        }),
        start_timeout: c.start_timeout,
        stop_timeout: c.stop_timeout,
        restart_policy: c.restart_policy.as_ref().map(|p| acs::RestartPolicy {
            enabled: p.enabled,
            ignored_exit_codes: p.ignored_exit_codes.clone(),
            // ECS's default when the definition gives none.
            restart_attempt_period: p.restart_attempt_period.or(Some(300)),
        }),
        health_check_type: c.health_check.as_ref().map(|_| "docker".to_owned()),
        overrides: Some(Value::String(overrides)),
        docker_config: Some(acs::DockerConfig {
            version: Some(DOCKER_CONFIG_VERSION.to_owned()),
            config: Some(Value::Object(docker_config(c)).to_string()),
            host_config: Some(
                Value::Object(docker_host_config(
                    c,
                    definition,
                    task_id,
                    memory,
                    memory_reservation,
                ))
                .to_string(),
            ),
        }),
        ..acs::Container::default()
    }
}

/// `awslogs-stream-prefix` is ECS's, not Docker's: ECS turns it into the
/// stream `<prefix>/<container name>/<task ID>` (unless the definition
/// names a stream itself), and Docker never sees the prefix.
pub fn awslogs_stream(options: &mut BTreeMap<String, String>, container: &str, task_id: &str) {
    if let Some(prefix) = options.remove("awslogs-stream-prefix") {
        options
            .entry("awslogs-stream".to_owned())
            .or_insert_with(|| format!("{prefix}/{container}/{task_id}"));
    }
}

fn put<T: Into<Value>>(map: &mut Map<String, Value>, key: &str, value: Option<T>) {
    if let Some(value) = value {
        map.insert(key.to_owned(), value.into());
    }
}

/// Docker `Config` fields rendered from the container definition.
pub fn docker_config(c: &ContainerDefinition) -> Map<String, Value> {
    let mut m = Map::new();
    put(&mut m, "User", c.user.clone());
    put(&mut m, "WorkingDir", c.working_directory.clone());
    put(&mut m, "Hostname", c.hostname.clone());
    if let Some(labels) = &c.docker_labels {
        m.insert("Labels".to_owned(), json!(labels));
    }
    if let Some(hc) = &c.health_check {
        m.insert(
            "Healthcheck".to_owned(),
            json!({
                "Test": hc.command.clone().unwrap_or_default(),
                "Interval": hc.interval.unwrap_or(HEALTH_INTERVAL).saturating_mul(NANOS_PER_SECOND),
                "Timeout": hc.timeout.unwrap_or(HEALTH_TIMEOUT).saturating_mul(NANOS_PER_SECOND),
                "Retries": hc.retries.unwrap_or(HEALTH_RETRIES),
                "StartPeriod": hc.start_period.unwrap_or(HEALTH_START_PERIOD).saturating_mul(NANOS_PER_SECOND),
            }),
        );
    }
    put(&mut m, "Tty", c.pseudo_terminal);
    put(&mut m, "OpenStdin", c.interactive);
    put(&mut m, "NetworkDisabled", c.disable_networking);
    m
}

fn cgroup_permissions(permissions: Option<&Vec<String>>) -> String {
    let Some(list) = permissions.filter(|l| !l.is_empty()) else {
        return "rwm".to_owned();
    };
    let mut out = String::new();
    for (word, letter) in [("read", 'r'), ("write", 'w'), ("mknod", 'm')] {
        if list.iter().any(|p| p == word) {
            out.push(letter);
        }
    }
    out
}

/// Docker `HostConfig` fields rendered from the container definition and
/// its task (whose ID names awslogs streams). `memory` and
/// `memory_reservation` are MiB, after overrides.
pub fn docker_host_config(
    c: &ContainerDefinition,
    definition: &TaskDefinition,
    task_id: &str,
    memory: Option<i64>,
    memory_reservation: Option<i64>,
) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(
        "NetworkMode".to_owned(),
        json!(definition.network_mode.as_deref().unwrap_or("bridge")),
    );
    put(&mut m, "Privileged", c.privileged);
    put(&mut m, "ReadonlyRootfs", c.readonly_root_filesystem);
    put(&mut m, "Dns", c.dns_servers.clone());
    put(&mut m, "DnsSearch", c.dns_search_domains.clone());
    if let Some(hosts) = &c.extra_hosts {
        let entries: Vec<String> = hosts
            .iter()
            .map(|h| {
                format!(
                    "{}:{}",
                    h.hostname.as_deref().unwrap_or_default(),
                    h.ip_address.as_deref().unwrap_or_default()
                )
            })
            .collect();
        m.insert("ExtraHosts".to_owned(), json!(entries));
    }
    put(&mut m, "SecurityOpt", c.docker_security_options.clone());
    if let Some(ulimits) = &c.ulimits {
        let entries: Vec<Value> = ulimits
            .iter()
            .map(|u| json!({"Name": u.name, "Soft": u.soft_limit, "Hard": u.hard_limit}))
            .collect();
        m.insert("Ulimits".to_owned(), Value::Array(entries));
    }
    // `secretOptions` stay out: the agent adds them to the log options once
    // it has fetched them (they travel as `LOG_DRIVER` secrets).
    if let Some(log) = &c.log_configuration {
        let mut options = log.options.clone().unwrap_or_default();
        if log.log_driver.as_deref() == Some("awslogs") {
            awslogs_stream(&mut options, c.name.as_deref().unwrap_or_default(), task_id);
        }
        m.insert(
            "LogConfig".to_owned(),
            json!({"Type": log.log_driver, "Config": options}),
        );
    }
    put(
        &mut m,
        "MemoryReservation",
        memory_reservation.map(|mib| mib.saturating_mul(MIB)),
    );
    if let Some(lp) = &c.linux_parameters {
        if let Some(caps) = &lp.capabilities {
            put(&mut m, "CapAdd", caps.add.clone());
            put(&mut m, "CapDrop", caps.drop.clone());
        }
        if let Some(devices) = &lp.devices {
            let entries: Vec<Value> = devices
                .iter()
                .map(|d| {
                    json!({
                        "PathOnHost": d.host_path,
                        "PathInContainer": d.container_path.clone().or_else(|| d.host_path.clone()),
                        "CgroupPermissions": cgroup_permissions(d.permissions.as_ref()),
                    })
                })
                .collect();
            m.insert("Devices".to_owned(), Value::Array(entries));
        }
        put(&mut m, "Init", lp.init_process_enabled);
        put(
            &mut m,
            "ShmSize",
            lp.shared_memory_size.map(|mib| mib.saturating_mul(MIB)),
        );
        if let Some(tmpfs) = &lp.tmpfs {
            let mut mounts = Map::new();
            for t in tmpfs {
                let mut spec = format!("size={}m", t.size.unwrap_or(0));
                for opt in t.mount_options.iter().flatten() {
                    spec.push(',');
                    spec.push_str(opt);
                }
                mounts.insert(t.container_path.clone().unwrap_or_default(), json!(spec));
            }
            m.insert("Tmpfs".to_owned(), Value::Object(mounts));
        }
        if let Some(swap) = lp.max_swap {
            // Docker's MemorySwap is memory plus swap; without a hard limit
            // Docker cannot apply it, so it is left to the instance default.
            if let Some(hard) = memory {
                let total = if swap < 0 {
                    -1
                } else {
                    hard.saturating_add(swap).saturating_mul(MIB)
                };
                m.insert("MemorySwap".to_owned(), json!(total));
            }
            m.insert(
                "MemorySwappiness".to_owned(),
                json!(lp.swappiness.unwrap_or(60)),
            );
        } else {
            put(&mut m, "MemorySwappiness", lp.swappiness);
        }
    }
    if let Some(controls) = &c.system_controls {
        let mut sysctls = Map::new();
        for s in controls {
            if let Some(ns) = &s.namespace {
                sysctls.insert(ns.clone(), json!(s.value.clone().unwrap_or_default()));
            }
        }
        m.insert("Sysctls".to_owned(), Value::Object(sysctls));
    }
    // `task` namespaces need the agent's pause container; the agent does
    // that from the task's pidMode/ipcMode, so only the Docker-native
    // values are rendered here.
    if let Some(pid) = definition.pid_mode.as_deref().filter(|p| *p == "host") {
        m.insert("PidMode".to_owned(), json!(pid));
    }
    if let Some(ipc) = definition
        .ipc_mode
        .as_deref()
        .filter(|p| *p == "host" || *p == "none")
    {
        m.insert("IpcMode".to_owned(), json!(ipc));
    }
    m
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::arn::ArnBuilder;
    use crate::lifecycle::{new_task, TaskSpec};
    use crate::store::{InstanceRecord, State};
    use ecs_model::ecs_api::{KeyValuePair, TaskOverride};

    fn definition(v: Value) -> TaskDefinition {
        serde_json::from_value(v).unwrap()
    }

    fn record_for(def: &TaskDefinition, overrides: Option<TaskOverride>) -> TaskRecord {
        let arns = ArnBuilder::new("us-east-1");
        let mut st = State::default();
        let family = def.family.clone().unwrap();
        st.task_definitions
            .insert(family.clone(), vec![def.clone()]);
        st.instances.insert(
            "i1".into(),
            InstanceRecord {
                id: "i1".into(),
                arn: arns.container_instance("default", "i1"),
                cluster: "default".into(),
                ec2_instance_id: None,
                attributes: vec![],
                custom_attributes: Vec::new(),
                registered_resources: vec![],
                status: "ACTIVE".into(),
                agent_connected: true,
                version_info: None,
                registered_at: 0.0,
                version: 1,
                tags: None,
                agent_update: None,
            },
        );
        let spec = TaskSpec {
            task_arn: arns.task("default", "0123"),
            cluster: "default".into(),
            family,
            revision: 1,
            instance_id: "i1".into(),
            overrides,
            ..Default::default()
        };
        new_task(&arns, &st, spec, 1.0).unwrap()
    }

    fn parse(text: &Option<String>) -> Value {
        serde_json::from_str(text.as_deref().unwrap()).unwrap()
    }

    #[test]
    fn renders_the_task_level_members() {
        let def = definition(json!({
            "family": "web", "revision": 1, "cpu": "256", "memory": "512",
            "pidMode": "host",
            "containerDefinitions": [{"name": "app", "image": "nginx"}],
            "volumes": [
                {"name": "data", "host": {"sourcePath": "/srv/data"}},
                {"name": "scratch", "host": {}},
                {"name": "bare"},
                {"name": "named", "dockerVolumeConfiguration": {"driver": "local", "autoprovision": true, "scope": "shared", "labels": {"a": "b"}}}
            ]
        }));
        let record = record_for(&def, None);
        let t = task(&def, &record, &Settings::default());
        assert_eq!(
            t.arn.as_deref(),
            Some("arn:aws:ecs:us-east-1:000000000000:task/default/0123")
        );
        assert_eq!(t.version.as_deref(), Some("1"));
        assert_eq!(t.desired_status.as_deref(), Some("RUNNING"));
        assert_eq!(t.network_mode.as_deref(), Some("bridge"));
        assert_eq!(t.launch_type.as_deref(), Some("EC2"));
        assert_eq!(
            t.task_definition_account_id.as_deref(),
            Some("000000000000")
        );
        assert_eq!(t.cpu, Some(0.25));
        assert_eq!(t.memory, Some(512));
        let volumes = serde_json::to_value(t.volumes.unwrap()).unwrap();
        assert_eq!(
            volumes,
            json!([
                {"name": "data", "type": "host", "host": {"sourcePath": "/srv/data"}},
                {"name": "scratch", "type": "host", "host": {}},
                {"name": "bare", "type": "host", "host": {}},
                {"name": "named", "type": "docker", "dockerVolumeConfiguration": {
                    "scope": "shared", "autoprovision": true, "driver": "local", "labels": {"a": "b"}}}
            ])
        );
        let c = &t.containers.unwrap()[0];
        assert_eq!(
            parse(&c.docker_config.as_ref().unwrap().host_config)["PidMode"],
            "host"
        );
        assert!(c
            .container_arn
            .as_deref()
            .unwrap()
            .contains(":container/default/0123/"));
    }

    #[test]
    fn renders_container_members_and_overrides() {
        let def = definition(json!({
            "family": "web", "revision": 1,
            "containerDefinitions": [{
                "name": "app", "image": "nginx", "cpu": 128, "memoryReservation": 64,
                "command": ["nginx"], "entryPoint": ["/entry"],
                "environment": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                "portMappings": [
                    {"containerPort": 80, "hostPort": 8080},
                    {"containerPort": 81},
                    {"containerPort": 53, "hostPort": 5353, "protocol": "udp"},
                    {"containerPortRange": "9000-9010"}
                ],
                "dependsOn": [{"containerName": "side", "condition": "START"}],
                "links": ["side:s"], "stopTimeout": 5,
                "healthCheck": {"command": ["CMD-SHELL", "true"], "interval": 10}
            }, {"name": "side", "image": "busybox", "memory": 32, "essential": false}]
        }));
        let overrides = TaskOverride {
            container_overrides: Some(vec![ContainerOverride {
                name: Some("app".into()),
                command: Some(vec!["sh".into(), "-c".into(), "sleep 1".into()]),
                environment: Some(vec![KeyValuePair {
                    name: Some("B".into()),
                    value: Some("override".into()),
                }]),
                memory: Some(100),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let record = record_for(&def, Some(overrides));
        let t = task(&def, &record, &Settings::default());
        let containers = t.containers.unwrap();
        let app = serde_json::to_value(&containers[0]).unwrap();
        assert_eq!(app["cpu"], 128);
        assert_eq!(app["memory"], 100);
        assert_eq!(app["essential"], true);
        assert_eq!(app["command"], json!(["nginx"]));
        assert_eq!(app["entryPoint"], json!(["/entry"]));
        assert_eq!(app["environment"], json!({"A": "1", "B": "override"}));
        assert_eq!(
            app["portMappings"],
            json!([
                {"containerPort": 80, "hostPort": 8080, "protocol": "tcp"},
                {"containerPort": 81, "hostPort": 0, "protocol": "tcp"},
                {"containerPort": 53, "hostPort": 5353, "protocol": "udp"},
                {"containerPortRange": "9000-9010", "protocol": "tcp"}
            ])
        );
        assert_eq!(
            app["dependsOn"],
            json!([{"condition": "START", "containerName": "side"}])
        );
        assert_eq!(app["links"], json!(["side:s"]));
        assert_eq!(app["stopTimeout"], 5);
        assert_eq!(app["healthCheckType"], "docker");
        let overrides: Value = serde_json::from_str(app["overrides"].as_str().unwrap()).unwrap();
        assert_eq!(overrides, json!({"command": ["sh", "-c", "sleep 1"]}));
        assert_eq!(app["dockerConfig"]["version"], "1.17");
        let config: Value =
            serde_json::from_str(app["dockerConfig"]["config"].as_str().unwrap()).unwrap();
        assert_eq!(
            config["Healthcheck"],
            json!({"Test": ["CMD-SHELL", "true"], "Interval": 10_000_000_000_i64,
                   "Timeout": 5_000_000_000_i64, "Retries": 3, "StartPeriod": 0})
        );
        let host: Value =
            serde_json::from_str(app["dockerConfig"]["hostConfig"].as_str().unwrap()).unwrap();
        assert_eq!(
            host,
            json!({"NetworkMode": "bridge", "MemoryReservation": 64 * MIB})
        );

        let side = serde_json::to_value(&containers[1]).unwrap();
        assert_eq!(side["essential"], false);
        assert_eq!(side["overrides"], "{}");
        assert_eq!(side["memory"], 32);
        assert!(side.get("healthCheckType").is_none());
        assert_eq!(side["dockerConfig"]["config"], "{}");
    }

    #[test]
    fn host_network_mode_uses_container_ports_as_host_ports() {
        let def = definition(json!({
            "family": "web", "revision": 1, "networkMode": "host",
            "containerDefinitions": [{"name": "app", "image": "nginx", "memory": 64,
                "portMappings": [{"containerPort": 80}]}]
        }));
        let t = task(&def, &record_for(&def, None), &Settings::default());
        let app = serde_json::to_value(&t.containers.unwrap()[0]).unwrap();
        assert_eq!(app["portMappings"][0]["hostPort"], 80);
        let host: Value =
            serde_json::from_str(app["dockerConfig"]["hostConfig"].as_str().unwrap()).unwrap();
        assert_eq!(host["NetworkMode"], "host");
    }

    #[test]
    fn renders_docker_options() {
        let c: ContainerDefinition = serde_json::from_value(json!({
            "name": "app", "image": "x", "memory": 256,
            "user": "1000:1000", "workingDirectory": "/w", "hostname": "h",
            "dockerLabels": {"l": "v"}, "pseudoTerminal": true, "interactive": true,
            "disableNetworking": false, "privileged": true, "readonlyRootFilesystem": true,
            "dnsServers": ["1.1.1.1"], "dnsSearchDomains": ["example.com"],
            "extraHosts": [{"hostname": "db", "ipAddress": "10.0.0.2"}],
            "dockerSecurityOptions": ["no-new-privileges"],
            "ulimits": [{"name": "nofile", "softLimit": 1024, "hardLimit": 2048}],
            "logConfiguration": {"logDriver": "json-file", "options": {"max-size": "10m"}},
            "systemControls": [{"namespace": "net.core.somaxconn", "value": "1024"}],
            "linuxParameters": {
                "capabilities": {"add": ["NET_ADMIN"], "drop": ["MKNOD"]},
                "devices": [{"hostPath": "/dev/fuse", "permissions": ["read", "write"]}],
                "initProcessEnabled": true, "sharedMemorySize": 64,
                "tmpfs": [{"containerPath": "/run", "size": 16, "mountOptions": ["noexec"]}],
                "maxSwap": 128, "swappiness": 10
            }
        }))
        .unwrap();
        let def = definition(json!({"family": "f", "ipcMode": "host", "containerDefinitions": []}));
        assert_eq!(
            Value::Object(docker_config(&c)),
            json!({"User": "1000:1000", "WorkingDir": "/w", "Hostname": "h", "Labels": {"l": "v"},
                   "Tty": true, "OpenStdin": true, "NetworkDisabled": false})
        );
        assert_eq!(
            Value::Object(docker_host_config(&c, &def, "t1", Some(256), None)),
            json!({
                "NetworkMode": "bridge", "Privileged": true, "ReadonlyRootfs": true,
                "Dns": ["1.1.1.1"], "DnsSearch": ["example.com"], "ExtraHosts": ["db:10.0.0.2"],
                "SecurityOpt": ["no-new-privileges"],
                "Ulimits": [{"Name": "nofile", "Soft": 1024, "Hard": 2048}],
                "LogConfig": {"Type": "json-file", "Config": {"max-size": "10m"}},
                "CapAdd": ["NET_ADMIN"], "CapDrop": ["MKNOD"],
                "Devices": [{"PathOnHost": "/dev/fuse", "PathInContainer": "/dev/fuse", "CgroupPermissions": "rw"}],
                "Init": true, "ShmSize": 64 * MIB, "Tmpfs": {"/run": "size=16m,noexec"},
                "MemorySwap": (256 + 128) * MIB, "MemorySwappiness": 10,
                "Sysctls": {"net.core.somaxconn": "1024"}, "IpcMode": "host"
            })
        );
    }

    #[test]
    fn stop_payload_carries_the_same_body_with_desired_stopped() {
        let def = definition(json!({
            "family": "web", "revision": 1,
            "containerDefinitions": [{"name": "app", "image": "nginx", "memory": 64}]
        }));
        let mut record = record_for(&def, None);
        let running = task(&def, &record, &Settings::default());
        record.task.desired_status = Some("STOPPED".into());
        let stopping = task(&def, &record, &Settings::default());
        assert_eq!(stopping.desired_status.as_deref(), Some("STOPPED"));
        assert_eq!(stopping.containers, running.containers);
    }

    /// The rendered containers of a task of `def` (with `overrides`),
    /// rendered with `settings`, as JSON.
    fn containers_json(
        def: &TaskDefinition,
        overrides: Option<TaskOverride>,
        settings: &Settings,
    ) -> Vec<Value> {
        let t = task(def, &record_for(def, overrides), settings);
        t.containers
            .unwrap()
            .iter()
            .map(|c| serde_json::to_value(c).unwrap())
            .collect()
    }

    fn in_region(region: &str) -> Settings {
        Settings {
            region: region.to_owned(),
            ecr_endpoint_override: None,
        }
    }

    const EXECUTION_ROLE: &str = "arn:aws:iam::000000000000:role/exec";
    const ASM_SECRET: &str = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-AbCdEf";
    const SSM_ARN: &str = "arn:aws:ssm:ap-south-1:123456789012:parameter/app/token";

    #[test]
    fn secrets_become_environment_and_log_driver_secrets_with_provider_and_region() {
        let def = definition(json!({
            "family": "web", "revision": 1, "executionRoleArn": EXECUTION_ROLE,
            "containerDefinitions": [{
                "name": "app", "image": "nginx", "memory": 64,
                "secrets": [
                    {"name": "PLAIN", "valueFrom": "/app/plain"},
                    {"name": "TOKEN", "valueFrom": SSM_ARN},
                    {"name": "DB", "valueFrom": ASM_SECRET}
                ],
                "logConfiguration": {
                    "logDriver": "splunk", "options": {"splunk-url": "https://s"},
                    "secretOptions": [
                        {"name": "splunk-token", "valueFrom": ASM_SECRET},
                        {"name": "splunk-extra", "valueFrom": "extra"}
                    ]
                }
            }]
        }));
        let app = &containers_json(&def, None, &in_region("eu-central-1"))[0];
        assert_eq!(
            app["secrets"],
            json!([
                {"name": "PLAIN", "valueFrom": "/app/plain", "provider": "ssm",
                 "region": "eu-central-1", "type": "ENVIRONMENT_VARIABLE", "target": "CONTAINER"},
                {"name": "TOKEN", "valueFrom": SSM_ARN, "provider": "ssm",
                 "region": "ap-south-1", "type": "ENVIRONMENT_VARIABLE", "target": "CONTAINER"},
                {"name": "DB", "valueFrom": ASM_SECRET, "provider": "asm",
                 "region": "eu-west-1", "type": "ENVIRONMENT_VARIABLE", "target": "CONTAINER"},
                {"name": "splunk-token", "valueFrom": ASM_SECRET, "provider": "asm",
                 "region": "eu-west-1", "target": "LOG_DRIVER"},
                {"name": "splunk-extra", "valueFrom": "extra", "provider": "ssm",
                 "region": "eu-central-1", "target": "LOG_DRIVER"}
            ])
        );
        // The secrets are not environment values, and the log options stay
        // without them.
        assert_eq!(app["environment"], json!({}));
        let host: Value =
            serde_json::from_str(app["dockerConfig"]["hostConfig"].as_str().unwrap()).unwrap();
        assert_eq!(
            host["LogConfig"],
            json!({"Type": "splunk", "Config": {"splunk-url": "https://s"}})
        );
        // Not awslogs: no logsAuthStrategy even with an execution role.
        assert!(app.get("logsAuthStrategy").is_none());
    }

    #[test]
    fn secret_providers_and_regions_come_from_the_arn() {
        assert_eq!(secret_provider(ASM_SECRET), SECRET_PROVIDER_ASM);
        assert_eq!(
            secret_provider("arn:aws-cn:secretsmanager:cn-north-1:1:secret:x:key::"),
            SECRET_PROVIDER_ASM
        );
        assert_eq!(secret_provider(SSM_ARN), SECRET_PROVIDER_SSM);
        assert_eq!(secret_provider("secretsmanager"), SECRET_PROVIDER_SSM);
        assert_eq!(secret_provider("/a/b"), SECRET_PROVIDER_SSM);
        assert_eq!(region_of(ASM_SECRET, "us-east-1"), "eu-west-1");
        assert_eq!(region_of(SSM_ARN, "us-east-1"), "ap-south-1");
        assert_eq!(region_of("name", "us-east-2"), "us-east-2");
        assert_eq!(region_of("arn:aws:ssm", "us-east-2"), "us-east-2");
        assert_eq!(
            region_of("arn:aws:s3:::bucket/key", "us-east-2"),
            "us-east-2"
        );
    }

    #[test]
    fn environment_files_are_passed_on_in_order() {
        let files = json!([
            {"value": "arn:aws:s3:::bucket/b.env", "type": "s3"},
            {"value": "arn:aws:s3:::bucket/a.env", "type": "s3"}
        ]);
        let def = definition(json!({
            "family": "web", "revision": 1,
            "containerDefinitions": [
                {"name": "app", "image": "nginx", "memory": 64, "environmentFiles": files},
                {"name": "side", "image": "nginx", "memory": 64}
            ]
        }));
        let containers = containers_json(&def, None, &Settings::default());
        assert_eq!(containers[0]["environmentFiles"], files);
        // A container without any of these members carries none of them.
        for member in [
            "environmentFiles",
            "secrets",
            "registryAuthentication",
            "logsAuthStrategy",
        ] {
            assert!(containers[1].get(member).is_none(), "{member}");
        }
    }

    #[test]
    fn repository_credentials_use_secrets_manager_auth() {
        let def = definition(json!({
            "family": "web", "revision": 1, "executionRoleArn": EXECUTION_ROLE,
            "containerDefinitions": [
                {"name": "arn", "image": "registry.example.com/app", "memory": 64,
                 "repositoryCredentials": {"credentialsParameter": ASM_SECRET}},
                {"name": "name", "image": "123456789012.dkr.ecr.us-west-2.amazonaws.com/app",
                 "memory": 64, "repositoryCredentials": {"credentialsParameter": "registry-login"}}
            ]
        }));
        let containers = containers_json(&def, None, &in_region("ca-central-1"));
        assert_eq!(
            containers[0]["registryAuthentication"],
            json!({"type": "asm", "asmAuthData": {
                "credentialsParameter": ASM_SECRET, "region": "eu-west-1"}})
        );
        // Also for an ECR image; a name is looked up in the plane's region.
        assert_eq!(
            containers[1]["registryAuthentication"],
            json!({"type": "asm", "asmAuthData": {
                "credentialsParameter": "registry-login", "region": "ca-central-1"}})
        );
    }

    #[test]
    fn ecr_images_get_ecr_auth_with_the_execution_role_when_the_task_has_one() {
        let image = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/app:1.2";
        let def = |role: Option<&str>| {
            let mut v = json!({
                "family": "web", "revision": 1,
                "containerDefinitions": [
                    {"name": "app", "image": image, "memory": 64},
                    {"name": "hub", "image": "nginx:latest", "memory": 64}
                ]
            });
            if let Some(role) = role {
                v["executionRoleArn"] = json!(role);
            }
            definition(v)
        };
        let without = containers_json(&def(None), None, &Settings::default());
        assert_eq!(
            without[0]["registryAuthentication"],
            json!({"type": "ecr", "ecrAuthData": {
                "registryId": "123456789012", "region": "eu-west-1", "useExecutionRole": false}})
        );
        assert!(without[1].get("registryAuthentication").is_none());
        let settings = Settings {
            region: "us-east-1".to_owned(),
            ecr_endpoint_override: Some("http://127.0.0.1:4566".to_owned()),
        };
        let with = containers_json(&def(Some(EXECUTION_ROLE)), None, &settings);
        assert_eq!(
            with[0]["registryAuthentication"],
            json!({"type": "ecr", "ecrAuthData": {
                "registryId": "123456789012", "region": "eu-west-1", "useExecutionRole": true,
                "endpointOverride": "http://127.0.0.1:4566"}})
        );
        // RunTask's executionRoleArn override counts too.
        let overrides = TaskOverride {
            execution_role_arn: Some(EXECUTION_ROLE.into()),
            ..Default::default()
        };
        let overridden = containers_json(&def(None), Some(overrides), &Settings::default());
        assert_eq!(
            overridden[0]["registryAuthentication"]["ecrAuthData"]["useExecutionRole"],
            true
        );
    }

    #[test]
    fn ecr_registries_are_recognised_by_their_host() {
        let ecr = |id: &str, region: &str| {
            Some(EcrRegistry {
                registry_id: id.to_owned(),
                region: region.to_owned(),
            })
        };
        assert_eq!(
            ecr_registry("123456789012.dkr.ecr.us-east-1.amazonaws.com/app"),
            ecr("123456789012", "us-east-1")
        );
        assert_eq!(
            ecr_registry("123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com/a/b@sha256:00"),
            ecr("123456789012", "us-gov-west-1")
        );
        assert_eq!(
            ecr_registry("210987654321.dkr.ecr.cn-north-1.amazonaws.com.cn/app:v1"),
            ecr("210987654321", "cn-north-1")
        );
        for other in [
            "nginx",
            "library/nginx:latest",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com:443/app",
            "12345678901.dkr.ecr.us-east-1.amazonaws.com/app",
            "12345678901a.dkr.ecr.us-east-1.amazonaws.com/app",
            "123456789012.dkr.ecr..amazonaws.com/app",
            "123456789012.dkr.ecr.us.east.amazonaws.com/app",
            "123456789012.ecr.us-east-1.amazonaws.com/app",
            "public.ecr.aws/nginx/nginx",
            "registry.example.com/123456789012.dkr.ecr.us-east-1.amazonaws.com/app",
        ] {
            assert_eq!(ecr_registry(other), None, "{other}");
        }
    }

    #[test]
    fn awslogs_authenticates_with_the_execution_role_when_there_is_one() {
        let def = |role: Option<&str>, driver: &str| {
            let mut v = json!({
                "family": "web", "revision": 1,
                "containerDefinitions": [{"name": "app", "image": "nginx", "memory": 64,
                    "logConfiguration": {"logDriver": driver, "options": {"awslogs-group": "g"}}}]
            });
            if let Some(role) = role {
                v["executionRoleArn"] = json!(role);
            }
            definition(v)
        };
        let app = |d: &TaskDefinition| containers_json(d, None, &Settings::default()).remove(0);
        assert_eq!(
            app(&def(Some(EXECUTION_ROLE), "awslogs"))["logsAuthStrategy"],
            "ExecutionRole"
        );
        assert!(app(&def(None, "awslogs")).get("logsAuthStrategy").is_none());
        assert!(app(&def(Some(EXECUTION_ROLE), "json-file"))
            .get("logsAuthStrategy")
            .is_none());
    }

    #[test]
    fn awslogs_stream_prefixes_become_ecs_stream_names() {
        let mut options: BTreeMap<String, String> =
            [("awslogs-group", "g"), ("awslogs-stream-prefix", "web")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
        awslogs_stream(&mut options, "app", "abc123");
        assert_eq!(options.get("awslogs-stream-prefix"), None);
        assert_eq!(options["awslogs-stream"], "web/app/abc123");
        assert_eq!(options["awslogs-group"], "g");
        // A stream the definition names wins; without a prefix nothing changes.
        let mut named: BTreeMap<String, String> =
            [("awslogs-stream", "mine"), ("awslogs-stream-prefix", "web")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
        awslogs_stream(&mut named, "app", "abc123");
        assert_eq!(named["awslogs-stream"], "mine");
        let mut plain = BTreeMap::new();
        awslogs_stream(&mut plain, "app", "abc123");
        assert!(plain.is_empty());
    }
}
