//! Taking a host over from the Go agent (docs/operations.md §11): its
//! checkpoint's records become this agent's tasks, images and instance
//! metadata, or the whole take-over is refused, before anything changes,
//! naming what this agent cannot carry.

use std::collections::BTreeMap;

use serde_json::Value;

use super::bolt::Buckets;
use super::model::{
    self, time_to_ms, GoContainer, GoDockerContainer, GoImageState, GoTask, GoVolume,
};
use crate::engine::status::{ContainerStatus, HealthStatus, TaskStatus};
use crate::engine::task::{
    Container, ContainerSpec, DependencyCondition, DependencySpec, IncomingTask, MountPointSpec,
    NetworkMode, PortBinding, PortMappingSpec, Protocol, ResourceStatus, RestartPolicySpec, Task,
    TaskSpec, VolumeFromSpec, VolumeSpec,
};
use crate::images::ImageRecord;
use crate::store::{keys, Seed};

/// Why the Go agent's state cannot be taken over; every message says what
/// was not understood or not supported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

fn refuse(why: impl Into<String>) -> Refusal {
    Refusal(why.into())
}

/// What was taken over, for the one log line that says so.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Summary {
    pub cluster: String,
    pub instance_arn: String,
    pub tasks: usize,
    pub running_tasks: usize,
    pub containers: usize,
    pub images: usize,
}

/// The Go agent's state as this agent's checkpoint would start.
#[derive(Debug)]
pub struct Imported {
    pub seed: Seed,
    pub summary: Summary,
}

/// Turns the Go agent's buckets into a checkpoint seed. `cluster` is the
/// configured cluster: the Go agent's must be the same one.
pub fn import(buckets: &Buckets, cluster: &str) -> Result<Imported, Refusal> {
    for (name, bucket) in buckets {
        match name.as_str() {
            "containers" | "images" | "metadata" | "tasks" => {}
            // awsvpc ENIs and EBS volumes attached to the instance.
            "eniattachments" | "resattachments" if bucket.is_empty() => {}
            "eniattachments" | "resattachments" => {
                return Err(refuse(format!(
                    "its {name} bucket holds attachments (awsvpc network interfaces or EBS volumes), which this agent does not run"
                )))
            }
            other => return Err(refuse(format!("it holds a bucket {other:?} that the Go agent 1.105 does not write"))),
        }
    }
    let meta = metadata(buckets)?;
    let saved_cluster = meta.get(model::keys::CLUSTER).cloned().unwrap_or_default();
    if !saved_cluster.is_empty() && saved_cluster != cluster {
        return Err(refuse(format!(
            "it is for cluster {saved_cluster:?}, but the configured cluster is {cluster:?}; set ECS_CLUSTER={saved_cluster}"
        )));
    }
    let docker_entries = docker_containers(buckets)?;
    let mut tasks = Vec::new();
    for (key, value) in bucket(buckets, "tasks") {
        let go: GoTask = decode("tasks", key, value)?;
        tasks.push(task_from_go(go, &docker_entries)?);
    }
    // The Go agent refuses a container record whose task it did not load.
    if let Some((task_arn, name)) = docker_entries
        .keys()
        .find(|(arn, _)| !tasks.iter().any(|t| t.arn() == arn))
    {
        return Err(refuse(format!(
            "its containers record for {name:?} belongs to task {task_arn}, which it does not hold"
        )));
    }
    let mut images = Vec::new();
    for (key, value) in bucket(buckets, "images") {
        let go: GoImageState = decode("images", key, value)?;
        images.push(ImageRecord {
            image_id: go.image.image_id,
            names: go.image.names.unwrap_or_default(),
            size: go.image.size,
            pulled_at_ms: time_to_ms(&go.pulled_at).unwrap_or(0),
            last_used_at_ms: time_to_ms(&go.last_used_at).unwrap_or(0),
            pull_succeeded: go.pull_succeeded,
        });
    }
    let instance_arn = meta
        .get(model::keys::CONTAINER_INSTANCE_ARN)
        .cloned()
        .unwrap_or_default();
    if instance_arn.is_empty() && !tasks.is_empty() {
        return Err(refuse(
            "it has tasks but no container instance ARN to manage them under",
        ));
    }
    let mut seed_meta = Vec::new();
    let mut put = |ours: &'static str, theirs: &str| {
        if let Some(v) = meta.get(theirs).filter(|v| !v.is_empty()) {
            seed_meta.push((ours, v.clone()));
        }
    };
    put(keys::CLUSTER, model::keys::CLUSTER);
    put(
        keys::CONTAINER_INSTANCE_ARN,
        model::keys::CONTAINER_INSTANCE_ARN,
    );
    put(keys::EC2_INSTANCE_ID, model::keys::EC2_INSTANCE_ID);
    put(keys::AVAILABILITY_ZONE, model::keys::AVAILABILITY_ZONE);
    if let Some(seq) = meta.get(model::keys::TASK_MANIFEST_SEQ_NUM) {
        let seq: i64 = seq
            .parse()
            .map_err(|_| refuse(format!("its task-manifest-seq-num {seq:?} is not a number")))?;
        seed_meta.push((keys::TASK_MANIFEST_SEQ_NUM, seq.to_string()));
    }
    let summary = Summary {
        cluster: saved_cluster,
        instance_arn,
        tasks: tasks.len(),
        running_tasks: tasks
            .iter()
            .filter(|t| t.known_status == TaskStatus::Running)
            .count(),
        containers: tasks.iter().map(|t| t.containers.len()).sum(),
        images: images.len(),
    };
    Ok(Imported {
        seed: Seed {
            meta: seed_meta,
            tasks,
            images,
        },
        summary,
    })
}

fn bucket<'a>(
    buckets: &'a Buckets,
    name: &str,
) -> impl Iterator<Item = (&'a Vec<u8>, &'a Vec<u8>)> + 'a {
    buckets.get(name).into_iter().flatten()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn decode<T: serde::de::DeserializeOwned>(
    bucket: &str,
    key: &[u8],
    value: &[u8],
) -> Result<T, Refusal> {
    serde_json::from_slice(value).map_err(|e| {
        refuse(format!(
            "its {bucket} record {:?} is not in a shape this agent understands: {e}",
            text(key)
        ))
    })
}

fn metadata(buckets: &Buckets) -> Result<BTreeMap<String, String>, Refusal> {
    let mut out = BTreeMap::new();
    for (key, value) in bucket(buckets, "metadata") {
        let v: String = decode("metadata", key, value)?;
        out.insert(text(key), v);
    }
    Ok(out)
}

/// The `containers` bucket by `(task ARN, container name)`.
fn docker_containers(
    buckets: &Buckets,
) -> Result<BTreeMap<(String, String), GoDockerContainer>, Refusal> {
    let mut out = BTreeMap::new();
    for (key, value) in bucket(buckets, "containers") {
        let entry: GoDockerContainer = decode("containers", key, value)?;
        out.insert(
            (
                entry.container.task_arn.clone(),
                entry.container.name.clone(),
            ),
            entry,
        );
    }
    Ok(out)
}

/// A Go status string as this agent's status; the names are the same, plus
/// the Go agent's legacy spellings.
fn task_status(what: &str, value: Option<&str>) -> Result<TaskStatus, Refusal> {
    match value.unwrap_or("NONE") {
        "UNKNOWN" => Ok(TaskStatus::None),
        "DEAD" => Ok(TaskStatus::Stopped),
        s => serde_json::from_value(Value::String(s.into()))
            .map_err(|_| refuse(format!("{what} {s:?} is not a task status"))),
    }
}

fn container_status(what: &str, value: Option<&str>) -> Result<ContainerStatus, Refusal> {
    const LEGACY: [ContainerStatus; 7] = [
        ContainerStatus::None,
        ContainerStatus::ManifestPulled,
        ContainerStatus::Pulled,
        ContainerStatus::Created,
        ContainerStatus::Running,
        ContainerStatus::ResourcesProvisioned,
        ContainerStatus::Stopped,
    ];
    match value.unwrap_or("NONE") {
        "UNKNOWN" => Ok(ContainerStatus::None),
        "DEAD" => Ok(ContainerStatus::Stopped),
        s => match s.parse::<usize>() {
            Ok(n) if n < LEGACY.len() => Ok(LEGACY[n]),
            _ => serde_json::from_value(Value::String(s.into()))
                .map_err(|_| refuse(format!("{what} {s:?} is not a container status"))),
        },
    }
}

/// A value the Go agent writes as null (or empty) when the feature is not
/// used.
fn used(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        Value::String(s) => !s.is_empty(),
        Value::Bool(b) => *b,
        Value::Number(_) => true,
    }
}

fn unknown_members(what: &str, extra: &serde_json::Map<String, Value>) -> Result<(), Refusal> {
    match extra.iter().find(|(_, v)| used(v)) {
        Some((name, _)) => Err(refuse(format!(
            "{what} has a member {name:?} this agent does not know (written by a newer Go agent?)"
        ))),
        None => Ok(()),
    }
}

fn task_from_go(
    go: GoTask,
    docker_entries: &BTreeMap<(String, String), GoDockerContainer>,
) -> Result<Task, Refusal> {
    let what = format!("task {}", go.arn);
    let unsupported = |feature: &str| {
        refuse(format!(
            "{what} uses {feature}, which this agent does not run"
        ))
    };
    unknown_members(&what, &go.extra)?;
    if used(&go.eni) || !go.local_ip_address.is_empty() || !go.network_namespace.is_empty() {
        return Err(unsupported("awsvpc networking"));
    }
    if used(&go.associations) {
        return Err(unsupported("GPU or elastic inference associations"));
    }
    if !go.nvidia_runtime.is_empty() {
        return Err(unsupported("GPUs"));
    }
    if used(&go.app_mesh) {
        return Err(unsupported("App Mesh"));
    }
    if go.enable_fault_injection {
        return Err(unsupported("fault injection"));
    }
    if go.is_internal {
        return Err(unsupported("an agent-internal task"));
    }
    let service_connect = go
        .service_connect_config
        .get("containerName")
        .and_then(Value::as_str)
        .filter(|name| go.containers.iter().any(|c| c.name == *name));
    if service_connect.is_some() {
        return Err(unsupported("Service Connect"));
    }
    let network_mode = match go.network_mode.as_str() {
        "" | "bridge" => NetworkMode::Bridge,
        "host" => NetworkMode::Host,
        "none" => NetworkMode::None,
        "awsvpc" => return Err(unsupported("awsvpc networking")),
        other => return Err(refuse(format!("{what} has network mode {other:?}"))),
    };
    let resources = go.resources.clone().unwrap_or_default();
    if let Some((kind, _)) = resources.other.iter().find(|(_, v)| used(v)) {
        return Err(unsupported(&format!("task resources of kind {kind:?}")));
    }
    let volumes = go
        .volumes
        .iter()
        .flatten()
        .map(|v| volume_spec(&what, v))
        .collect::<Result<Vec<_>, _>>()?;
    let mut containers = Vec::new();
    for c in &go.containers {
        // The containers bucket holds the newer copy, as the Go agent reads it.
        let (c, docker) = match docker_entries.get(&(go.arn.clone(), c.name.clone())) {
            Some(entry) => (&entry.container, Some(entry)),
            None => (c, None),
        };
        containers.push(container_from_go(&what, c, docker)?);
    }
    let spec = TaskSpec {
        arn: go.arn.clone(),
        family: go.family.clone(),
        version: go.version.clone(),
        network_mode,
        volumes,
        cpu: go.cpu,
        memory_mib: u32::try_from(go.memory).unwrap_or(0),
        launch_type: Some(go.launch_type.clone()).filter(|s| !s.is_empty()),
        service_name: Some(go.service_name.clone()).filter(|s| !s.is_empty()),
        group: Some(go.group.clone()).filter(|s| !s.is_empty()),
        pid_mode: Some(go.pid_mode.clone()).filter(|s| !s.is_empty()),
        ipc_mode: Some(go.ipc_mode.clone()).filter(|s| !s.is_empty()),
        containers: containers.iter().map(|(spec, _)| spec.clone()).collect(),
        task_role_credentials_id: Some(go.credentials_id.clone()).filter(|s| !s.is_empty()),
        execution_role_credentials_id: Some(go.execution_credentials_id.clone())
            .filter(|s| !s.is_empty()),
    };
    let known_time = time_to_ms(&go.known_time).unwrap_or(0);
    let mut task = Task::new(
        IncomingTask {
            spec,
            desired_status: TaskStatus::None,
        },
        known_time,
    );
    task.known_status = task_status(&what, go.known_status.as_deref())?;
    task.desired_status = task_status(&what, go.desired_status.as_deref())?;
    task.reported_status = task_status(&what, go.sent_status.as_deref())?;
    task.pull_started_at_ms = time_to_ms(&go.pull_started_at);
    task.pull_stopped_at_ms = time_to_ms(&go.pull_stopped_at);
    task.execution_stopped_at_ms = time_to_ms(&go.execution_stopped_at);
    task.containers = containers.into_iter().map(|(_, c)| c).collect();
    // Agent-provisioned volumes keep the Docker names the Go agent gave them.
    for resource in resources.docker_volume.iter().flatten() {
        if let Some(v) = task.volumes.iter_mut().find(|v| v.name == resource.name) {
            v.docker_name = resource.configuration.docker_volume_name.clone();
            v.status = match resource.known_status.as_deref() {
                Some("CREATED") => ResourceStatus::Created,
                Some("REMOVED") => ResourceStatus::Removed,
                _ => ResourceStatus::None,
            };
        }
    }
    Ok(task)
}

fn volume_spec(what: &str, v: &GoVolume) -> Result<VolumeSpec, Refusal> {
    match v.kind.as_str() {
        "host" => Ok(VolumeSpec::Host {
            name: v.name.clone(),
            source_path: v
                .host
                .as_ref()
                .map(|h| h.source_path.clone())
                .filter(|p| !p.is_empty()),
        }),
        "docker" => {
            let c = v.docker.clone().unwrap_or_default();
            Ok(VolumeSpec::Docker {
                name: v.name.clone(),
                scope: Some(c.scope).filter(|s| !s.is_empty()),
                autoprovision: c.autoprovision,
                driver: Some(c.driver).filter(|s| !s.is_empty()),
                driver_opts: c.driver_opts.unwrap_or_default(),
                labels: c.labels.unwrap_or_default(),
            })
        }
        other => Err(refuse(format!(
            "{what} has a volume {:?} of type {other:?} (EFS, FSx, EBS, …), which this agent does not run",
            v.name
        ))),
    }
}

fn container_from_go(
    task: &str,
    c: &GoContainer,
    docker: Option<&GoDockerContainer>,
) -> Result<(ContainerSpec, Container), Refusal> {
    let what = format!("{task}, container {:?},", c.name);
    let unsupported = |feature: &str| {
        refuse(format!(
            "{what} uses {feature}, which this agent does not run"
        ))
    };
    unknown_members(&what, &c.extra)?;
    if c.is_internal != "NORMAL" && !c.is_internal.is_empty() {
        return Err(unsupported(&format!(
            "an agent-internal container ({})",
            c.is_internal
        )));
    }
    if used(&c.firelens_configuration) {
        return Err(unsupported("FireLens"));
    }
    if used(&c.secrets) {
        return Err(unsupported("secrets from SSM or Secrets Manager"));
    }
    if used(&c.environment_files) {
        return Err(unsupported("environment files"));
    }
    if c.gpu_ids.as_ref().is_some_and(|g| !g.is_empty()) {
        return Err(unsupported("GPUs"));
    }
    if used(&c.managed_agents) {
        return Err(unsupported("ECS Exec"));
    }
    if used(&c.credential_specs) {
        return Err(unsupported("credential specs"));
    }
    let known_status = container_status(&what, c.known_status.as_deref())?;
    if used(&c.registry_authentication) && known_status < ContainerStatus::Pulled {
        return Err(unsupported(
            "private registry authentication for an image not pulled yet",
        ));
    }
    let depends_on = c
        .depends_on
        .iter()
        .map(|d| {
            let condition = match d.condition.as_str() {
                "START" => DependencyCondition::Start,
                "COMPLETE" => DependencyCondition::Complete,
                "SUCCESS" => DependencyCondition::Success,
                "HEALTHY" => DependencyCondition::Healthy,
                other => {
                    return Err(refuse(format!(
                        "{what} has a dependsOn condition {other:?}"
                    )))
                }
            };
            Ok(DependencySpec {
                container_name: d.container_name.clone(),
                condition,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let protocol = |p: &str| -> Result<Protocol, Refusal> {
        match p {
            "" | "tcp" => Ok(Protocol::Tcp),
            "udp" => Ok(Protocol::Udp),
            other => Err(refuse(format!("{what} has a port protocol {other:?}"))),
        }
    };
    let port_mappings = c
        .port_mappings
        .iter()
        .flatten()
        .map(|p| {
            Ok(PortMappingSpec {
                container_port: p.container_port,
                host_port: p.host_port,
                protocol: protocol(&p.protocol)?,
                container_port_range: Some(p.container_port_range.clone())
                    .filter(|r| !r.is_empty()),
            })
        })
        .collect::<Result<Vec<_>, Refusal>>()?;
    let port_bindings = c
        .known_port_bindings
        .iter()
        .flatten()
        .map(|p| {
            Ok(PortBinding {
                container_port: p.container_port,
                host_port: p.host_port,
                bind_ip: p.bind_ip.clone(),
                protocol: protocol(&p.protocol)?,
            })
        })
        .collect::<Result<Vec<_>, Refusal>>()?;
    let spec = ContainerSpec {
        name: c.name.clone(),
        image: c.image.clone(),
        container_arn: Some(c.container_arn.clone()).filter(|s| !s.is_empty()),
        command: c.command.clone(),
        entry_point: c.entry_point.clone(),
        environment: c.environment.clone().unwrap_or_default(),
        cpu: c.cpu,
        memory_mib: c.memory,
        essential: c.essential,
        port_mappings,
        mount_points: c
            .mount_points
            .iter()
            .flatten()
            .map(|m| MountPointSpec {
                source_volume: m.source_volume.clone(),
                container_path: m.container_path.clone(),
                read_only: m.read_only,
            })
            .collect(),
        volumes_from: c
            .volumes_from
            .iter()
            .flatten()
            .map(|v| VolumeFromSpec {
                source_container: v.source_container.clone(),
                read_only: v.read_only,
            })
            .collect(),
        links: c.links.clone().unwrap_or_default(),
        depends_on,
        docker_config: c.docker_config.config.clone(),
        docker_host_config: c.docker_config.host_config.clone(),
        docker_api_version: c.docker_config.version.clone(),
        docker_health_check: c.health_check_type == "docker",
        start_timeout_secs: c.start_timeout,
        stop_timeout_secs: c.stop_timeout,
        restart_policy: c.restart_policy.as_ref().map(|r| RestartPolicySpec {
            enabled: r.enabled,
            ignored_exit_codes: r.ignored_exit_codes.clone().unwrap_or_default(),
            restart_attempt_period_secs: r.restart_attempt_period,
        }),
        // Containers with secrets or environment files were refused above;
        // one with a registry login is carried only once pulled, when the
        // login is no longer needed (docs/operations.md §11).
        secrets: Vec::new(),
        environment_files: Vec::new(),
        registry_auth: None,
        logs_auth_execution_role: false,
    };
    let mut container = Container::new(spec.clone());
    container.known_status = known_status;
    container.desired_status = container_status(&what, c.desired_status.as_deref())?;
    container.reported_status = container_status(&what, c.sent_status.as_deref())?;
    container.docker_id = docker
        .map(|d| d.docker_id.clone())
        .filter(|id| !id.is_empty())
        .or_else(|| Some(c.runtime_id.clone()).filter(|id| !id.is_empty()));
    container.docker_name = docker
        .map(|d| d.docker_name.clone())
        .filter(|n| !n.is_empty());
    container.image_digest = Some(c.image_digest.clone()).filter(|d| !d.is_empty());
    container.exit_code = c.known_exit_code;
    container.reason = c
        .applying_error
        .as_ref()
        .filter(|e| !e.error.is_empty() || !e.name.is_empty())
        .map(|e| format!("{}: {}", e.name, e.error));
    container.port_bindings = port_bindings;
    container.started_at_ms = time_to_ms(&c.started_at);
    container.health = HealthStatus::Unknown;
    if !c.v3_endpoint_id.is_empty() {
        // Containers the Go agent started know their metadata URIs by it.
        container.endpoint_id = c.v3_endpoint_id.clone();
    }
    Ok((spec, container))
}

#[cfg(test)]
mod tests;
