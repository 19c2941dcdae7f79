//! The Docker create request for one container: the agent's own base
//! `Config`/`HostConfig`, the backend's pre-rendered `dockerConfig` laid over
//! it with Go decoding semantics, then the agent's labels (docs/engine.md
//! §7).

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::labels;
use super::task::{NetworkMode, Task, VolumeSpec};

/// Why a create request could not be built; reported as the container's
/// reason with the error name the Go agent uses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CreateConfigError {
    #[error("DockerClientConfigError: {0}")]
    Config(String),
    #[error("HostConfigError: {0}")]
    HostConfig(String),
}

/// What the builder needs besides the task.
pub struct CreateContext<'a> {
    pub cluster: &'a str,
    pub region: &'a str,
    /// Env entries (`K=V`) of the image, to avoid overriding its region.
    pub image_env: &'a [String],
    /// `ECS_DISABLE_PRIVILEGED=true`: refuse privileged containers.
    pub privileged_disabled: bool,
    /// `ECS_AVAILABLE_LOGGING_DRIVERS`: the only log drivers allowed.
    pub logging_drivers: &'a [String],
    /// Variables the agent adds last (the metadata file's path).
    pub extra_env: &'a [(String, String)],
    /// Host bind mounts the agent adds (`host:container[:opts]`).
    pub extra_binds: &'a [String],
    /// The task's cgroup (docs/engine.md §7.7), which wins over the
    /// backend's.
    pub cgroup_parent: Option<&'a str>,
    /// The container's share of its task's secrets and environment files
    /// (docs/aws-services.md §3).
    pub secrets: Option<&'a crate::secrets::ContainerSecrets>,
}

/// The log option through which the awslogs driver in dockerd gets the
/// execution role's credentials from the agent's credentials endpoint.
pub const AWSLOGS_CREDENTIALS_ENDPOINT: &str = "awslogs-credentials-endpoint";

/// Where containers reach the agent's task endpoints (through the host's
/// NAT rules).
pub const TASK_ENDPOINT_HOST: &str = "169.254.170.2";

/// Docker name for a container: `ecs-<family>-<version>-<name>-<20 hex>`.
pub fn docker_name(task: &Task, container_name: &str) -> String {
    let sanitise = |s: &str| -> String {
        s.chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect()
    };
    let suffix: [u8; 10] = rand::random();
    format!(
        "ecs-{}-{}-{}-{}",
        sanitise(&task.spec.family),
        sanitise(&task.spec.version),
        sanitise(container_name),
        hex::encode(suffix)
    )
}

/// Builds the `ContainerCreateBody` JSON for `task.containers[index]`.
pub fn build(
    task: &Task,
    index: usize,
    ctx: &CreateContext<'_>,
) -> Result<Value, CreateConfigError> {
    let container = &task.containers[index];
    let spec = &container.spec;

    // Secrets win over `environment`; environment files fill in only what
    // is still unset, earlier files first (docs/aws-services.md §4).
    let mut env: BTreeMap<String, String> = spec.environment.clone();
    if let Some(secrets) = ctx.secrets {
        env.extend(secrets.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        for file in &secrets.env_files {
            for (k, v) in file {
                env.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
    }
    let image_has = |k: &str| ctx.image_env.iter().any(|e| e.split('=').next() == Some(k));
    let region_set = ["AWS_REGION", "AWS_DEFAULT_REGION"]
        .iter()
        .any(|k| env.contains_key(*k) || image_has(k));
    if !region_set && !ctx.region.is_empty() {
        env.insert("AWS_REGION".into(), ctx.region.into());
        env.insert("AWS_DEFAULT_REGION".into(), ctx.region.into());
    }
    // Task metadata and credentials (docs/engine.md §7.4):
    // these win over whatever the task definition says.
    let endpoint = format!("http://{TASK_ENDPOINT_HOST}");
    let id = &container.endpoint_id;
    env.insert(
        "ECS_CONTAINER_METADATA_URI".into(),
        format!("{endpoint}/v3/{id}"),
    );
    env.insert(
        "ECS_CONTAINER_METADATA_URI_V4".into(),
        format!("{endpoint}/v4/{id}"),
    );
    env.insert("ECS_AGENT_URI".into(), format!("{endpoint}/api/{id}"));
    if let Some(creds) = &task.spec.task_role_credentials_id {
        env.insert(
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI".into(),
            format!("/v2/credentials/{creds}"),
        );
    }
    for (k, v) in ctx.extra_env {
        env.insert(k.clone(), v.clone());
    }

    let mut exposed = Map::new();
    let mut port_bindings = Map::new();
    let mut bind = |container_port: u16, protocol: &str, host_port: Option<u16>| {
        let key = format!("{container_port}/{protocol}");
        exposed.insert(key.clone(), json!({}));
        let host_port = host_port.map(|p| p.to_string()).unwrap_or_default();
        if let Value::Array(list) = port_bindings.entry(key).or_insert_with(|| json!([])) {
            list.push(json!({ "HostPort": host_port }));
        }
    };
    for p in spec
        .port_mappings
        .iter()
        .filter(|p| p.container_port_range.is_none())
    {
        // Dynamic ports were chosen by the agent before the create.
        let host_port = if p.host_port != 0 {
            Some(p.host_port)
        } else {
            container
                .assigned_ports
                .iter()
                .find(|a| a.container_port == p.container_port && a.protocol == p.protocol)
                .map(|a| a.host_port)
        };
        bind(p.container_port, p.protocol.as_str(), host_port);
    }
    for r in &container.assigned_ranges {
        for port in r.container_start..=r.container_end {
            bind(port, r.protocol.as_str(), Some(r.host_port(port)));
        }
    }

    let mut config = Map::new();
    config.insert("Image".into(), json!(spec.image));
    if let Some(cmd) = &spec.command {
        config.insert("Cmd".into(), json!(cmd));
    }
    if let Some(ep) = &spec.entry_point {
        config.insert("Entrypoint".into(), json!(ep));
    }
    config.insert(
        "Env".into(),
        json!(env
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()),
    );
    if !exposed.is_empty() {
        config.insert("ExposedPorts".into(), Value::Object(exposed));
    }
    config.insert("Labels".into(), json!({}));

    let mut host = Map::new();
    let mut all_binds = binds(task, index)?;
    all_binds.extend(ctx.extra_binds.iter().cloned());
    host.insert("Binds".into(), json!(all_binds));
    if !port_bindings.is_empty() {
        host.insert("PortBindings".into(), Value::Object(port_bindings));
    }
    let links = links(task, index)?;
    if !links.is_empty() {
        host.insert("Links".into(), json!(links));
    }
    let volumes_from = volumes_from(task, index)?;
    if !volumes_from.is_empty() {
        host.insert("VolumesFrom".into(), json!(volumes_from));
    }
    if spec.memory_mib > 0 {
        let bytes = i64::from(spec.memory_mib) * 1024 * 1024;
        host.insert("Memory".into(), json!(bytes.max(4 * 1024 * 1024)));
    }
    // Docker turns 0 shares into 1024; the agent's floor is 2.
    host.insert("CpuShares".into(), json!(spec.cpu.clamp(2, 262_144)));
    host.insert(
        "NetworkMode".into(),
        json!(match task.spec.network_mode {
            NetworkMode::Bridge | NetworkMode::Awsvpc => "bridge",
            NetworkMode::Host => "host",
            NetworkMode::None => "none",
        }),
    );

    let mut config = Value::Object(config);
    let mut host = Value::Object(host);
    if let Some(text) = &spec.docker_config {
        let overlay = parse_overlay(text, "config")?;
        merge(&mut config, overlay, Shape::Config);
    }
    if let Some(text) = &spec.docker_host_config {
        let overlay = parse_overlay(text, "hostConfig")?;
        merge(&mut host, overlay, Shape::HostConfig);
    }
    if ctx.privileged_disabled && host.get("Privileged") == Some(&Value::Bool(true)) {
        return Err(CreateConfigError::Config(format!(
            "container {:?} is privileged, but privileged containers are disabled on this instance (ECS_DISABLE_PRIVILEGED=true)",
            spec.name
        )));
    }
    if let Some(driver) = host
        .get("LogConfig")
        .and_then(|l| l.get("Type"))
        .and_then(Value::as_str)
        .filter(|d| !d.is_empty())
    {
        if !ctx.logging_drivers.iter().any(|d| d == driver) {
            return Err(CreateConfigError::Config(format!(
                "container {:?} uses log driver {driver:?}, which this instance does not offer (ECS_AVAILABLE_LOGGING_DRIVERS: {})",
                spec.name,
                ctx.logging_drivers.join(", ")
            )));
        }
    }
    log_options(task, index, ctx, &mut host)?;
    if spec.docker_health_check && config.get("Healthcheck").is_none_or(Value::is_null) {
        return Err(CreateConfigError::Config(format!(
            "container {:?} has a docker health check type but no Healthcheck configuration",
            spec.name
        )));
    }

    // The agent's labels always win over the overlay's.
    let labels = config
        .as_object_mut()
        .map(|c| c.entry("Labels").or_insert_with(|| json!({})));
    if let Some(labels) = labels {
        if !labels.is_object() {
            *labels = json!({});
        }
        if let Value::Object(map) = labels {
            for (k, v) in labels::for_container(task, &spec.name, ctx.cluster) {
                map.insert(k.to_string(), json!(v));
            }
        }
    }

    if let (Some(parent), Value::Object(h)) = (ctx.cgroup_parent, &mut host) {
        h.insert("CgroupParent".into(), json!(parent));
    }
    if let Value::Object(map) = &mut config {
        map.insert("HostConfig".into(), host);
    }
    Ok(config)
}

/// The log options the agent adds to the backend's `LogConfig`: secrets
/// whose target is the log driver, and, under `logsAuthStrategy:
/// ExecutionRole`, where the driver gets the execution role's credentials
/// (docs/aws-services.md §5). A container without a log driver gets none.
fn log_options(
    task: &Task,
    index: usize,
    ctx: &CreateContext<'_>,
    host: &mut Value,
) -> Result<(), CreateConfigError> {
    let spec = &task.containers[index].spec;
    let mut added: Vec<(String, String)> = Vec::new();
    if spec.logs_auth_execution_role {
        let id = task
            .spec
            .execution_role_credentials_id
            .as_deref()
            .ok_or_else(|| {
                CreateConfigError::HostConfig("No execution credentials set for the task".into())
            })?;
        added.push((
            AWSLOGS_CREDENTIALS_ENDPOINT.into(),
            format!("/v2/credentials/{id}"),
        ));
    }
    if let Some(secrets) = ctx.secrets {
        added.extend(
            secrets
                .log_options
                .iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (k.clone(), v.clone())),
        );
    }
    if added.is_empty() {
        return Ok(());
    }
    let Some(log) = host.get_mut("LogConfig").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    if log
        .get("Type")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Ok(());
    }
    let options = log.entry("Config").or_insert_with(|| json!({}));
    if !options.is_object() {
        *options = json!({});
    }
    if let Value::Object(options) = options {
        for (k, v) in added {
            options.insert(k, json!(v));
        }
    }
    Ok(())
}

fn parse_overlay(text: &str, what: &str) -> Result<Value, CreateConfigError> {
    match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(CreateConfigError::Config(format!(
            "dockerConfig.{what} is not a JSON object"
        ))),
        Err(e) => Err(CreateConfigError::Config(format!(
            "unable to decode dockerConfig.{what}: {e}"
        ))),
    }
}

fn binds(task: &Task, index: usize) -> Result<Vec<String>, CreateConfigError> {
    let spec = &task.containers[index].spec;
    let mut binds = Vec::new();
    for m in &spec.mount_points {
        if m.source_volume.is_empty() || m.container_path.is_empty() {
            return Err(CreateConfigError::HostConfig(format!(
                "mount point of container {:?} needs a source volume and a container path",
                spec.name
            )));
        }
        let volume = task
            .spec
            .volumes
            .iter()
            .find(|v| v.name() == m.source_volume)
            .ok_or_else(|| {
                CreateConfigError::HostConfig(format!(
                    "unable to resolve volume {:?} of container {:?}",
                    m.source_volume, spec.name
                ))
            })?;
        let source = match (volume, task.volume(&m.source_volume)) {
            (
                VolumeSpec::Host {
                    source_path: Some(path),
                    ..
                },
                _,
            ) => path.clone(),
            (_, Some(resource)) => resource.docker_name.clone(),
            (other, None) => {
                return Err(CreateConfigError::HostConfig(format!(
                    "volume {:?}: this kind of volume is not supported yet",
                    other.name()
                )))
            }
        };
        let mut bind = format!("{source}:{}", m.container_path);
        if m.read_only {
            bind.push_str(":ro");
        }
        binds.push(bind);
    }
    Ok(binds)
}

fn docker_name_of(task: &Task, name: &str, what: &str) -> Result<String, CreateConfigError> {
    task.containers
        .iter()
        .find(|c| c.spec.name == name)
        .and_then(|c| c.docker_name.clone())
        .ok_or_else(|| {
            CreateConfigError::HostConfig(format!("{what} target {name:?} has no container"))
        })
}

fn links(task: &Task, index: usize) -> Result<Vec<String>, CreateConfigError> {
    if task.spec.network_mode != NetworkMode::Bridge {
        return Ok(Vec::new());
    }
    task.containers[index]
        .spec
        .links
        .iter()
        .map(|link| {
            let (name, alias) = link.split_once(':').unwrap_or((link, link));
            Ok(format!("{}:{alias}", docker_name_of(task, name, "link")?))
        })
        .collect()
}

fn volumes_from(task: &Task, index: usize) -> Result<Vec<String>, CreateConfigError> {
    task.containers[index]
        .spec
        .volumes_from
        .iter()
        .map(|v| {
            let name = docker_name_of(task, &v.source_container, "volumesFrom")?;
            Ok(if v.read_only {
                format!("{name}:ro")
            } else {
                name
            })
        })
        .collect()
}

/// Which Docker object a JSON object is, for key matching.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Config,
    HostConfig,
    /// A struct-like nested object (Healthcheck, LogConfig, Ulimit, …).
    Struct,
    /// A free-form map (Labels, Sysctls, …): keys are user data.
    Map,
}

/// Canonical Docker names of the `Config` fields the backend may send.
const CONFIG_KEYS: &[&str] = &[
    "Hostname",
    "Domainname",
    "User",
    "AttachStdin",
    "AttachStdout",
    "AttachStderr",
    "ExposedPorts",
    "Tty",
    "OpenStdin",
    "StdinOnce",
    "Env",
    "Cmd",
    "Healthcheck",
    "ArgsEscaped",
    "Image",
    "Volumes",
    "WorkingDir",
    "Entrypoint",
    "NetworkDisabled",
    "MacAddress",
    "OnBuild",
    "Labels",
    "StopSignal",
    "StopTimeout",
    "Shell",
];

/// Canonical Docker names of the `HostConfig` fields the backend may send.
const HOST_CONFIG_KEYS: &[&str] = &[
    "CpuShares",
    "Memory",
    "CgroupParent",
    "BlkioWeight",
    "BlkioWeightDevice",
    "BlkioDeviceReadBps",
    "BlkioDeviceWriteBps",
    "BlkioDeviceReadIOps",
    "BlkioDeviceWriteIOps",
    "CpuPeriod",
    "CpuQuota",
    "CpuRealtimePeriod",
    "CpuRealtimeRuntime",
    "CpusetCpus",
    "CpusetMems",
    "Devices",
    "DeviceCgroupRules",
    "DeviceRequests",
    "KernelMemory",
    "KernelMemoryTCP",
    "MemoryReservation",
    "MemorySwap",
    "MemorySwappiness",
    "NanoCpus",
    "OomKillDisable",
    "Init",
    "PidsLimit",
    "Ulimits",
    "CpuCount",
    "CpuPercent",
    "IOMaximumIOps",
    "IOMaximumBandwidth",
    "Binds",
    "ContainerIDFile",
    "LogConfig",
    "NetworkMode",
    "PortBindings",
    "RestartPolicy",
    "AutoRemove",
    "VolumeDriver",
    "VolumesFrom",
    "Mounts",
    "CapAdd",
    "CapDrop",
    "CgroupnsMode",
    "Dns",
    "DnsOptions",
    "DnsSearch",
    "ExtraHosts",
    "GroupAdd",
    "IpcMode",
    "Cgroup",
    "Links",
    "OomScoreAdj",
    "PidMode",
    "Privileged",
    "PublishAllPorts",
    "ReadonlyRootfs",
    "SecurityOpt",
    "StorageOpt",
    "Tmpfs",
    "UTSMode",
    "UsernsMode",
    "ShmSize",
    "Sysctls",
    "Runtime",
    "Isolation",
    "MaskedPaths",
    "ReadonlyPaths",
];

/// Field names of the struct-like nested objects.
const NESTED_KEYS: &[&str] = &[
    // Healthcheck
    "Test",
    "Interval",
    "Timeout",
    "StartPeriod",
    "StartInterval",
    "Retries",
    // LogConfig
    "Type",
    "Config",
    // Ulimit
    "Name",
    "Soft",
    "Hard",
    // Device
    "PathOnHost",
    "PathInContainer",
    "CgroupPermissions",
    // RestartPolicy
    "MaximumRetryCount",
];

const MAP_FIELDS: &[&str] = &[
    "Labels",
    "Sysctls",
    "Tmpfs",
    "StorageOpt",
    "ExposedPorts",
    "Volumes",
    "PortBindings",
];

fn canonical(key: &str, shape: Shape) -> &str {
    let table: &[&'static str] = match shape {
        Shape::Config => CONFIG_KEYS,
        Shape::HostConfig => HOST_CONFIG_KEYS,
        Shape::Struct => NESTED_KEYS,
        Shape::Map => return key,
    };
    table
        .iter()
        .copied()
        .find(|k| k.eq_ignore_ascii_case(key))
        .unwrap_or(key)
}

fn child_shape(parent: Shape, key: &str) -> Shape {
    if parent == Shape::Map {
        return Shape::Map;
    }
    // LogConfig.Config holds driver options: free-form.
    if MAP_FIELDS.contains(&key) || (parent == Shape::Struct && key == "Config") {
        Shape::Map
    } else {
        Shape::Struct
    }
}

/// Lays `overlay` over `base` as Go's JSON decoder does when decoding into a
/// pre-filled struct: keys match case-insensitively, objects merge key by
/// key, arrays and scalars replace, `null` clears.
fn merge(base: &mut Value, overlay: Value, shape: Shape) {
    let (Value::Object(base_map), Value::Object(overlay_map)) = (&mut *base, overlay) else {
        return;
    };
    for (key, value) in overlay_map {
        let name = canonical(&key, shape).to_string();
        // A base key spelled differently is the same field.
        let existing = base_map
            .keys()
            .find(|k| shape != Shape::Map && k.eq_ignore_ascii_case(&name))
            .cloned()
            .unwrap_or_else(|| name.clone());
        match (base_map.get_mut(&existing), value) {
            (Some(slot @ Value::Object(_)), v @ Value::Object(_)) => {
                merge(slot, v, child_shape(shape, &name))
            }
            (_, v) => {
                base_map.remove(&existing);
                let child = child_shape(shape, &name);
                base_map.insert(name, canonicalize(v, child));
            }
        }
    }
}

/// Renames the keys of a value the base did not have, so nested objects
/// get Docker's spelling too.
fn canonicalize(value: Value, shape: Shape) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let name = canonical(&k, shape).to_string();
                    let child = child_shape(shape, &name);
                    (name, canonicalize(v, child))
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|item| canonicalize(item, shape))
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests;
