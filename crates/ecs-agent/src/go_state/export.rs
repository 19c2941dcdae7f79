//! The hand-back: this agent's checkpoint turned into the buckets of the Go
//! agent 1.105's `agent.db`, so that the Go agent started next on the data
//! directory reconnects as the same container instance and goes on
//! managing the tasks that run (docs/operations.md §12).
//!
//! [`to_go_buckets`] is pure: it takes what the store holds
//! ([`ExportState`]) and gives the keys and JSON values of every bucket, in
//! the shapes the Go agent writes itself (`model`). What the Go agent could
//! not take over faithfully is refused with an [`ExportError`] that says
//! what the operator can do; nothing is half exported.
//!
//! How the Go agent reads the file back shapes the choices below: it loads
//! `tasks`, then `containers` (each replaces the task's copy of that
//! container by name, and gives the Docker ID and name), then `images` and
//! `metadata`; it does not re-run its task set-up for loaded tasks, it only
//! inspects each known Docker container again and sends every status whose
//! `SentStatus` is lower than the known one.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;
use serde_json::{json, Value};

use super::bolt::Buckets;
use super::model::{
    keys, ms_to_time, GoContainer, GoDependsOn, GoDockerConfig, GoDockerContainer,
    GoDockerVolumeConfiguration, GoDockerVolumeResource, GoHostVolume, GoImage, GoImageState,
    GoMountPoint, GoNamedError, GoPortBinding, GoResources, GoRestartPolicy, GoTask, GoVolume,
    GoVolumeFrom, BUCKETS, ZERO_TIME,
};
use crate::engine::create_config::TASK_ENDPOINT_HOST;
use crate::engine::reconcile;
use crate::engine::status::{ContainerStatus, TaskStatus};
use crate::engine::task::{
    task_id, Container, DependencyCondition, NetworkMode, ResourceStatus, Task, VolumeResource,
    VolumeSpec,
};
use crate::images::ImageRecord;
use crate::store::QueuedChange;

/// The version written as `agent-version`. The Go agent compares it with
/// its own: an older one makes it pass every task through an old record
/// model first, which drops `credentialsID`, so the file must claim to be
/// from 1.105.0 itself.
pub const GO_AGENT_VERSION: &str = "1.105.0";

/// What the store holds, plus the few settings the Go agent will read from
/// the same configuration.
#[derive(Debug, Clone, Default)]
pub struct ExportState {
    pub cluster: Option<String>,
    pub container_instance_arn: Option<String>,
    pub ec2_instance_id: Option<String>,
    pub availability_zone: Option<String>,
    /// `Store::latest_seq`: -1 before any payload.
    pub latest_seq: i64,
    pub tasks: Vec<Task>,
    pub images: Vec<ImageRecord>,
    /// Reports not yet accepted by the backend.
    pub outbox: Vec<QueuedChange>,
    pub settings: ExportSettings,
}

#[derive(Debug, Clone, Default)]
pub struct ExportSettings {
    /// The region this agent gave containers as `AWS_REGION`.
    pub region: String,
    /// The cluster the Go agent will be configured with (`ECS_CLUSTER`, or
    /// `default`).
    pub configured_cluster: String,
    /// The task cgroup settings the Go agent will start with.
    pub cgroups: CgroupSettings,
}

/// What the Go agent puts in a task's `cgroup` resource, from its
/// configuration and the host.
#[derive(Debug, Clone)]
pub struct CgroupSettings {
    /// `ECS_ENABLE_TASK_CPU_MEM_LIMIT` (on unless set to false): the Go
    /// agent's `MemoryCPULimitsEnabled` for every task it accepts.
    pub enabled: bool,
    /// The host runs the unified hierarchy (cgroup v2): task cgroups are
    /// systemd slices `ecstasks-<task ID>.slice`, else `/ecs/<task ID>`.
    pub v2: bool,
    /// `ECS_CGROUP_PATH`.
    pub mount_path: String,
    /// `ECS_CGROUP_CPU_PERIOD`, in microseconds.
    pub cpu_period_us: u64,
    /// `ECS_TASK_PIDS_LIMIT`; 0 for none.
    pub pids_limit: u32,
}

impl Default for CgroupSettings {
    /// The Go agent's defaults on a cgroup v1 host.
    fn default() -> Self {
        CgroupSettings {
            enabled: true,
            v2: false,
            mount_path: "/sys/fs/cgroup".into(),
            cpu_period_us: 100_000,
            pids_limit: 0,
        }
    }
}

/// Why the state cannot be handed back as it is.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("the checkpoint holds no container instance ARN: this agent never registered, so there is no instance to hand back; start the Go agent on a data directory without this agent's checkpoint")]
    NotRegistered,
    #[error("the checkpoint is for cluster {saved:?} but the configured cluster is {configured:?}; the Go agent would refuse to start with it. Configure ECS_CLUSTER={saved} and run export-go-state again")]
    ClusterMismatch { saved: String, configured: String },
    #[error("task {task} is still changing ({detail}); wait until every task has settled (running, or stopped) and run export-go-state again")]
    InTransition { task: String, detail: String },
    #[error("task {task} cannot be handed back: {what}")]
    Unrepresentable { task: String, what: String },
    #[error("cannot encode a Go agent record: {0}")]
    Encoding(#[from] serde_json::Error),
}

impl ExportError {
    /// A refusal of the state itself (as opposed to a failure of this code).
    pub fn is_refusal(&self) -> bool {
        !matches!(self, ExportError::Encoding(_))
    }
}

/// How many records of each kind an export holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    pub tasks: usize,
    /// Containers with a Docker container (the `containers` bucket).
    pub containers: usize,
    pub images: usize,
}

impl Counts {
    pub fn of(buckets: &Buckets) -> Self {
        let len = |name: &str| buckets.get(name).map_or(0, BTreeMap::len);
        Counts {
            tasks: len("tasks"),
            containers: len("containers"),
            images: len("images"),
        }
    }
}

/// The Go agent's buckets for `state`.
pub fn to_go_buckets(state: &ExportState) -> Result<Buckets, ExportError> {
    let instance_arn = state
        .container_instance_arn
        .as_deref()
        .filter(|a| !a.is_empty())
        .ok_or(ExportError::NotRegistered)?;
    let cluster = state.cluster.clone().unwrap_or_default();
    if !cluster.is_empty() && cluster != state.settings.configured_cluster {
        return Err(ExportError::ClusterMismatch {
            saved: cluster,
            configured: state.settings.configured_cluster.clone(),
        });
    }

    let mut buckets: Buckets = BUCKETS
        .iter()
        .map(|b| (b.to_string(), BTreeMap::new()))
        .collect();
    let pending = Pending::from_outbox(&state.outbox);
    for task in &state.tasks {
        check_settled(task)?;
        let (go_task, docker) = go_task(task, state, &pending)?;
        let id = task_id(task.arn());
        put(&mut buckets, "tasks", id, &go_task)?;
        for (name, record) in docker {
            put(&mut buckets, "containers", &format!("{id}-{name}"), &record)?;
        }
    }
    for image in &state.images {
        put(&mut buckets, "images", &image.image_id, &go_image(image))?;
    }

    // The Go agent saves the sequence number as 0 before any payload; this
    // agent's -1 means the same.
    let seq = state.latest_seq.max(0).to_string();
    let meta = [
        (keys::AGENT_VERSION, GO_AGENT_VERSION.to_string()),
        (
            keys::AVAILABILITY_ZONE,
            state.availability_zone.clone().unwrap_or_default(),
        ),
        (keys::CLUSTER, cluster),
        (keys::CONTAINER_INSTANCE_ARN, instance_arn.to_string()),
        (
            keys::EC2_INSTANCE_ID,
            state.ec2_instance_id.clone().unwrap_or_default(),
        ),
        (keys::TASK_MANIFEST_SEQ_NUM, seq),
    ];
    for (key, value) in meta {
        // Metadata values are JSON strings, as the Go agent stores them.
        put(&mut buckets, "metadata", key, &value)?;
    }
    Ok(buckets)
}

fn put<T: Serialize>(
    buckets: &mut Buckets,
    bucket: &str,
    key: &str,
    value: &T,
) -> Result<(), ExportError> {
    let bytes = serde_json::to_vec(value)?;
    buckets
        .entry(bucket.to_string())
        .or_default()
        .insert(key.as_bytes().to_vec(), bytes);
    Ok(())
}

/// The Go agent takes over a task by inspecting its containers and going on
/// from their known statuses; it does not redo a transition this agent had
/// begun (a pull, a create, a stop in flight), so only settled tasks are
/// handed back: every container at its desired status, or stopped.
fn check_settled(task: &Task) -> Result<(), ExportError> {
    if task.known_status < task.desired_status && task.known_status != TaskStatus::Stopped {
        return Err(ExportError::InTransition {
            task: task.arn().to_string(),
            detail: format!(
                "known {}, desired {}",
                task.known_status.name(),
                task.desired_status.name()
            ),
        });
    }
    for c in &task.containers {
        if c.known_status < c.desired_status && c.known_status != ContainerStatus::Stopped {
            return Err(ExportError::InTransition {
                task: task.arn().to_string(),
                detail: format!(
                    "container {} known {}, desired {}",
                    c.spec.name,
                    c.known_status.name(),
                    c.desired_status.name()
                ),
            });
        }
    }
    Ok(())
}

fn resource_status(s: ResourceStatus) -> &'static str {
    match s {
        ResourceStatus::None => "NONE",
        ResourceStatus::Created => "CREATED",
        ResourceStatus::Removed => "REMOVED",
    }
}

/// The lowest backend status still waiting in the outbox, per task and per
/// container (backend strings ranked PENDING < RUNNING < STOPPED).
struct Pending {
    tasks: HashMap<String, u8>,
    containers: HashMap<(String, String), u8>,
}

fn backend_rank(status: &str) -> u8 {
    match status {
        "RUNNING" => 1,
        "STOPPED" => 2,
        // PENDING, and anything unexpected: the lowest, so that the Go
        // agent reports again rather than never.
        _ => 0,
    }
}

impl Pending {
    fn from_outbox(outbox: &[QueuedChange]) -> Self {
        let mut tasks: HashMap<String, u8> = HashMap::new();
        let mut containers: HashMap<(String, String), u8> = HashMap::new();
        for (_, change) in outbox {
            let rank = backend_rank(&change.status);
            tasks
                .entry(change.task_arn.clone())
                .and_modify(|r| *r = (*r).min(rank))
                .or_insert(rank);
            for c in &change.containers {
                let rank = backend_rank(&c.status);
                containers
                    .entry((change.task_arn.clone(), c.container_name.clone()))
                    .and_modify(|r| *r = (*r).min(rank))
                    .or_insert(rank);
            }
        }
        Pending { tasks, containers }
    }
}

// `SentStatus` is what the Go agent believes the backend has; on start it
// sends every known status above it. A report still in this agent's outbox
// has not been accepted, so the sent status is put just below the lowest
// pending one: the highest status the Go agent itself would have sent
// before it (MANIFEST_PULLED is what it reports as PENDING). A report that
// was in fact delivered may go out twice, which the backend accepts; none
// is lost. Without pending reports, everything this agent queued
// (`reported_status`) was delivered.

fn task_sent_status(task: &Task, pending: &Pending) -> TaskStatus {
    match pending.tasks.get(task.arn()) {
        None => task.reported_status,
        Some(0) => TaskStatus::None,
        Some(1) => TaskStatus::ManifestPulled.min(task.reported_status),
        Some(_) => TaskStatus::Running.min(task.reported_status),
    }
}

fn container_sent_status(task: &Task, c: &Container, pending: &Pending) -> ContainerStatus {
    let key = (task.arn().to_string(), c.spec.name.clone());
    match pending.containers.get(&key) {
        None => c.reported_status,
        Some(0) => ContainerStatus::None,
        Some(1) => ContainerStatus::ManifestPulled.min(c.reported_status),
        Some(_) => ContainerStatus::Running.min(c.reported_status),
    }
}

/// Go's `ServiceConnectConfig` as it sets it on every task it accepts
/// (Service Connect itself is on only when a container carries that name).
fn service_connect_config() -> Value {
    json!({
        "containerName": "service-connect",
        "runtimeConfig": {"adminSocketPath": "", "statsRequest": "", "drainRequest": ""},
        "networkConfig": {}
    })
}

fn opt_vec<T>(items: Vec<T>) -> Option<Vec<T>> {
    (!items.is_empty()).then_some(items)
}

fn opt_map(map: &BTreeMap<String, String>) -> Option<BTreeMap<String, String>> {
    (!map.is_empty()).then(|| map.clone())
}

fn time_of(ms: Option<i64>) -> String {
    match ms.filter(|m| *m > 0) {
        Some(ms) => ms_to_time(Some(ms)),
        None => ZERO_TIME.to_string(),
    }
}

/// Whether the Go agent would have made this task volume a `dockerVolume`
/// resource: scratch volumes and task-scoped Docker volumes always, shared
/// ones only when it had to provision them (autoprovision).
fn is_go_resource(v: &VolumeResource) -> bool {
    !v.shared || v.autoprovision
}

/// A task volume's Docker configuration as the Go agent keeps it, both in
/// `volumes` and in its `dockerVolume` resource. `mountPoint` is the name
/// Docker answered the create with, which is the volume's name.
fn docker_volume_config(v: &VolumeResource, scratch: bool) -> GoDockerVolumeConfiguration {
    let created = v.status == ResourceStatus::Created && is_go_resource(v);
    GoDockerVolumeConfiguration {
        scope: if v.shared { "shared" } else { "task" }.to_string(),
        autoprovision: v.autoprovision,
        mount_point: if created {
            v.docker_name.clone()
        } else {
            String::new()
        },
        driver: v.driver.clone(),
        // The Go agent makes empty maps for scratch volumes and keeps what
        // the payload had (usually nothing) for Docker volumes.
        driver_opts: if scratch {
            Some(v.driver_opts.clone())
        } else {
            opt_map(&v.driver_opts)
        },
        labels: if scratch {
            Some(v.labels.clone())
        } else {
            opt_map(&v.labels)
        },
        docker_volume_name: v.docker_name.clone(),
    }
}

fn go_task(
    task: &Task,
    state: &ExportState,
    pending: &Pending,
) -> Result<(GoTask, Vec<(String, GoDockerContainer)>), ExportError> {
    let spec = &task.spec;
    let unrepresentable = |what: String| ExportError::Unrepresentable {
        task: task.arn().to_string(),
        what,
    };
    let stopped = task.known_status == TaskStatus::Stopped;
    let cgroups = &state.settings.cgroups;
    let mounted: BTreeSet<&str> = spec
        .containers
        .iter()
        .flat_map(|c| c.mount_points.iter().map(|m| m.source_volume.as_str()))
        .collect();

    let mut volumes = Vec::new();
    let mut docker_resources = Vec::new();
    let mut scratch_resources = Vec::new();
    // The volumes that are Go resources, which the containers' PULLED
    // transitions wait on (`transition_dependencies`); the Docker ones in
    // the task's order, which that order follows.
    let mut scratch_names = BTreeSet::new();
    let mut docker_names = Vec::new();
    for v in &spec.volumes {
        match v {
            VolumeSpec::Host {
                name,
                source_path: Some(path),
            } => volumes.push(GoVolume {
                docker: None,
                host: Some(GoHostVolume {
                    source_path: path.clone(),
                    host_path: String::new(),
                }),
                name: name.clone(),
                kind: "host".into(),
                other: Default::default(),
            }),
            VolumeSpec::Host {
                name,
                source_path: None,
            } => {
                let resource = task.volume(name);
                volumes.push(GoVolume {
                    docker: None,
                    host: Some(GoHostVolume {
                        source_path: String::new(),
                        host_path: resource.map(|r| r.docker_name.clone()).unwrap_or_default(),
                    }),
                    name: name.clone(),
                    kind: "host".into(),
                    other: Default::default(),
                });
                // The Go agent provisions a scratch volume only when a
                // container mounts it.
                if resource.is_some() && mounted.contains(name.as_str()) {
                    scratch_names.insert(name.clone());
                }
            }
            VolumeSpec::Docker { name, .. } => {
                let Some(resource) = task.volume(name) else {
                    return Err(unrepresentable(format!(
                        "Docker volume {name:?} has no volume record"
                    )));
                };
                volumes.push(GoVolume {
                    docker: Some(docker_volume_config(resource, false)),
                    host: None,
                    name: name.clone(),
                    kind: "docker".into(),
                    other: Default::default(),
                });
                if is_go_resource(resource) {
                    docker_resources.push(volume_resource(resource, task, false));
                    docker_names.push(name.clone());
                }
            }
            VolumeSpec::Unsupported { name, kind } => {
                // This agent keeps no configuration for these types, and
                // only a volume nobody mounts can be in a task that runs.
                // The Go agent needs none of it for a task it only watches
                // and cleans up, so the volume is left out.
                if !stopped && mounted.contains(name.as_str()) {
                    return Err(unrepresentable(format!(
                        "volume {name:?} of type {kind:?} is mounted, and this agent keeps no {kind} configuration to hand over"
                    )));
                }
            }
        }
    }

    // The Go agent adds scratch volume resources before the Docker volume
    // ones, in the order the containers mount them.
    let mut seen = BTreeSet::new();
    for m in spec.containers.iter().flat_map(|c| &c.mount_points) {
        if scratch_names.contains(&m.source_volume) && seen.insert(m.source_volume.as_str()) {
            if let Some(r) = task.volume(&m.source_volume) {
                scratch_resources.push(volume_resource(r, task, true));
            }
        }
    }
    scratch_resources.append(&mut docker_resources);

    let mut containers = Vec::new();
    let mut docker = Vec::new();
    for (index, c) in task.containers.iter().enumerate() {
        let go = go_container(
            task,
            index,
            c,
            state,
            pending,
            &scratch_names,
            &docker_names,
        )?;
        if c.docker_id.is_some() || c.docker_name.is_some() {
            docker.push((
                c.spec.name.clone(),
                GoDockerContainer {
                    docker_id: c.docker_id.clone().unwrap_or_default(),
                    docker_name: c.docker_name.clone().unwrap_or_default(),
                    container: go.clone(),
                },
            ));
        } else if c.known_status >= ContainerStatus::Created
            && c.known_status != ContainerStatus::Stopped
        {
            return Err(unrepresentable(format!(
                "container {} is {} but has no Docker container",
                c.spec.name,
                c.known_status.name()
            )));
        }
        containers.push(go);
    }

    let go = GoTask {
        arn: spec.arn.clone(),
        family: spec.family.clone(),
        version: spec.version.clone(),
        service_name: spec.service_name.clone().unwrap_or_default(),
        group: spec.group.clone().unwrap_or_default(),
        containers,
        associations: Value::Null,
        resources: Some(GoResources {
            cgroup: cgroups
                .enabled
                .then(|| vec![cgroup_resource(task, cgroups)]),
            docker_volume: opt_vec(scratch_resources),
            other: Default::default(),
        }),
        volumes: opt_vec(volumes),
        cpu: spec.cpu,
        memory: i64::from(spec.memory_mib),
        desired_status: Some(task.desired_status.name().to_string()),
        known_status: Some(task.known_status.name().to_string()),
        known_time: time_of(Some(task.known_status_time_ms)),
        pull_started_at: time_of(task.pull_started_at_ms),
        pull_stopped_at: time_of(task.pull_stopped_at_ms),
        execution_stopped_at: time_of(task.execution_stopped_at_ms),
        sent_status: Some(task_sent_status(task, pending).name().to_string()),
        execution_credentials_id: spec
            .execution_role_credentials_id
            .clone()
            .unwrap_or_default(),
        credentials_id: spec.task_role_credentials_id.clone().unwrap_or_default(),
        eni: Value::Null,
        app_mesh: Value::Null,
        memory_cpu_limits_enabled: cgroups.enabled,
        platform_fields: json!({}),
        pid_mode: spec.pid_mode.clone().unwrap_or_default(),
        ipc_mode: spec.ipc_mode.clone().unwrap_or_default(),
        nvidia_runtime: String::new(),
        local_ip_address: String::new(),
        launch_type: spec.launch_type.clone().unwrap_or_default(),
        service_connect_config: service_connect_config(),
        service_connect_connection_draining: false,
        network_mode: match spec.network_mode {
            NetworkMode::Bridge => "bridge",
            NetworkMode::Host => "host",
            NetworkMode::None => "none",
            // This agent runs awsvpc tasks' containers on the bridge
            // network (it attaches no ENI), so the Go agent is told what
            // actually runs: its awsvpc handling would look for an ENI and
            // a pause container that do not exist.
            NetworkMode::Awsvpc => "bridge",
        }
        .to_string(),
        is_internal: false,
        network_namespace: String::new(),
        enable_fault_injection: false,
        default_ifname: String::new(),
        extra: Default::default(),
    };
    Ok((go, docker))
}

/// The Go agent wants a task's resources created while the task should
/// run, and removed once it should stop.
fn resource_desired(task: &Task) -> ResourceStatus {
    if task.desired_status == TaskStatus::Running {
        ResourceStatus::Created
    } else {
        ResourceStatus::Removed
    }
}

// The task cgroup. This agent puts no container in one (it creates none),
// yet every task is handed back with `MemoryCPULimitsEnabled` and the
// `cgroup` resource exactly as the Go agent would have given it under the
// same configuration, because that is what is safe for the Go agent:
//
// * It reads the flag when it creates a container (to set the cgroup
//   parent), which never happens again for these containers, and at
//   start-up, where one loaded task without it makes it turn task cgroups
//   off for its whole run (new tasks then get no task-level CPU and memory
//   limits, and the instance registers without `task-cpu-mem-limit`), or,
//   with `ECS_ENABLE_TASK_CPU_MEM_LIMIT=true`, refuse to start.
// * It uses the resource only when it cleans the task up: it removes the
//   cgroup, and a cgroup v1 directory that does not exist counts as
//   removed, a v2 slice that does not exist is a logged warning; the
//   cleanup goes on either way. A resource known CREATED is never created
//   again.
// * After a take-over from the Go agent, the containers do run in its
//   task cgroups, and this way the Go agent removes them at cleanup.
fn cgroup_resource(task: &Task, cgroups: &CgroupSettings) -> Value {
    let id = task_id(task.arn());
    let root = if cgroups.v2 {
        format!("ecstasks-{id}.slice")
    } else {
        format!("/ecs/{id}")
    };
    // The Go agent makes the cgroup before any container's PULLED.
    let made = task.containers.iter().any(|c| {
        c.docker_id.is_some()
            || c.docker_name.is_some()
            || (c.known_status >= ContainerStatus::Pulled
                && c.known_status != ContainerStatus::Stopped)
    });
    let known = if made {
        ResourceStatus::Created
    } else {
        ResourceStatus::None
    };
    json!({
        "cgroupRoot": root,
        "cgroupMountPath": cgroups.mount_path,
        "createdAt": ZERO_TIME,
        "desiredStatus": resource_status(resource_desired(task)),
        "knownStatus": resource_status(known),
        "resourceSpec": cgroup_spec(task, cgroups),
    })
}

/// The limits the Go agent gives a task cgroup: the task's CPU as a quota
/// over the CPU period, or else the containers' shares added up (each at
/// least 2, the sum at most 262144); the task's memory; the pids limit.
fn cgroup_spec(task: &Task, cgroups: &CgroupSettings) -> Value {
    let spec = &task.spec;
    let mut out = serde_json::Map::new();
    if spec.memory_mib > 0 {
        out.insert(
            "memory".into(),
            json!({"limit": i64::from(spec.memory_mib) * 1024 * 1024}),
        );
    }
    if spec.cpu > 0.0 {
        // Go converts the product to an integer by truncation.
        let quota = (spec.cpu * cgroups.cpu_period_us as f64) as i64;
        out.insert(
            "cpu".into(),
            json!({"quota": quota, "period": cgroups.cpu_period_us}),
        );
    } else {
        let shares: u64 = spec
            .containers
            .iter()
            .map(|c| u64::from(c.cpu.max(2)))
            .sum();
        out.insert("cpu".into(), json!({"shares": shares.min(262_144)}));
    }
    if cgroups.pids_limit > 0 {
        out.insert("pids".into(), json!({"limit": cgroups.pids_limit}));
    }
    Value::Object(out)
}

fn volume_resource(v: &VolumeResource, task: &Task, scratch: bool) -> GoDockerVolumeResource {
    let desired = resource_desired(task);
    GoDockerVolumeResource {
        name: v.name.clone(),
        configuration: docker_volume_config(v, scratch),
        created_at: ZERO_TIME.to_string(),
        desired_status: Some(resource_status(desired).to_string()),
        known_status: Some(resource_status(v.status).to_string()),
    }
}

fn condition(c: DependencyCondition) -> &'static str {
    match c {
        DependencyCondition::Start => "START",
        DependencyCondition::Complete => "COMPLETE",
        DependencyCondition::Success => "SUCCESS",
        DependencyCondition::Healthy => "HEALTHY",
        DependencyCondition::Create => "CREATE",
    }
}

/// What the Go agent builds when it accepts a task: each container's PULLED
/// transition waits on the task cgroup (when there is one), then on the
/// volume resources it mounts (scratch volumes, then Docker volumes in the
/// task's volume order, once per mount point). Its other entries are for
/// things this agent does not run: secrets, Firelens, awsvpc and namespace
/// pause containers, Service Connect.
fn transition_dependencies(
    c: &Container,
    cgroup: bool,
    scratch_names: &BTreeSet<String>,
    docker_names: &[String],
) -> Value {
    let mut names: Vec<&str> = Vec::new();
    if cgroup {
        names.push("cgroup");
    }
    for m in &c.spec.mount_points {
        if scratch_names.contains(&m.source_volume) {
            names.push(&m.source_volume);
        }
    }
    for volume in docker_names {
        for m in &c.spec.mount_points {
            if &m.source_volume == volume {
                names.push(volume);
            }
        }
    }
    if names.is_empty() {
        return json!({});
    }
    let deps: Vec<Value> = names
        .iter()
        .map(|n| json!({"Name": n, "RequiredStatus": 1}))
        .collect();
    json!({"PULLED": {"ContainerDependencies": null, "ResourceDependencies": deps}})
}

/// The environment the Go agent keeps for a container: the task
/// definition's, plus what it injects (docs/endpoints.md §8.1). It adds the
/// metadata and agent URIs and the credentials URI when it accepts the task,
/// so every container has them; the region when it creates the container,
/// unless the task definition sets one. (This agent also leaves the region
/// out when the image sets one; that is not recorded, so such a container
/// shows the region here. The Go agent only reads this map to create a
/// container, and these containers exist.)
fn environment(task: &Task, c: &Container, region: &str) -> BTreeMap<String, String> {
    let mut env = c.spec.environment.clone();
    let created = c.docker_id.is_some();
    let region_set = env.contains_key("AWS_REGION") || env.contains_key("AWS_DEFAULT_REGION");
    if created && !region_set && !region.is_empty() {
        env.insert("AWS_REGION".into(), region.into());
        env.insert("AWS_DEFAULT_REGION".into(), region.into());
    }
    if let Some(id) = &task.spec.task_role_credentials_id {
        env.insert(
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI".into(),
            format!("/v2/credentials/{id}"),
        );
    }
    let base = format!("http://{TASK_ENDPOINT_HOST}");
    let id = &c.endpoint_id;
    env.insert(
        "ECS_CONTAINER_METADATA_URI".into(),
        format!("{base}/v3/{id}"),
    );
    env.insert(
        "ECS_CONTAINER_METADATA_URI_V4".into(),
        format!("{base}/v4/{id}"),
    );
    env.insert("ECS_AGENT_URI".into(), format!("{base}/api/{id}"));
    env
}

/// `<Name>: <message>` back into the Go agent's named error.
fn applying_error(reason: &str) -> GoNamedError {
    match reason.split_once(": ") {
        Some((name, message)) if !name.is_empty() && !name.contains(' ') => GoNamedError {
            error: message.to_string(),
            name: name.to_string(),
        },
        // An unnamed error: the Go agent reports it as `UnknownError: …`.
        _ => GoNamedError {
            error: reason.to_string(),
            name: String::new(),
        },
    }
}

fn go_container(
    task: &Task,
    index: usize,
    c: &Container,
    state: &ExportState,
    pending: &Pending,
    scratch_names: &BTreeSet<String>,
    docker_names: &[String],
) -> Result<GoContainer, ExportError> {
    let spec = &c.spec;
    let created = c.docker_id.is_some();
    // Ports the Go agent records when it builds the create request: the
    // single container ports, and each `containerPortRange` with the host
    // block it chose; the STOPPED report it may still send uses them.
    let (port_set, range_map) = if created {
        let mut set = serde_json::Map::new();
        for p in spec.port_mappings.iter().filter(|p| p.container_port != 0) {
            set.insert(p.container_port.to_string(), json!({}));
        }
        let mut ranges = serde_json::Map::new();
        for r in &c.assigned_ranges {
            let key = spec
                .port_mappings
                .iter()
                .filter_map(|p| p.container_port_range.as_deref())
                .find(|text| {
                    text.split_once('-')
                        .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)))
                        == Some((r.container_start, r.container_end))
                })
                .map(str::to_string)
                .unwrap_or_else(|| format!("{}-{}", r.container_start, r.container_end));
            let host_end = r.host_port(r.container_end);
            ranges.insert(key, json!(format!("{}-{}", r.host_start, host_end)));
        }
        (Value::Object(set), Value::Object(ranges))
    } else {
        (Value::Null, Value::Null)
    };
    let has_range = spec
        .port_mappings
        .iter()
        .any(|p| p.container_port_range.is_some());

    let image_id = state
        .images
        .iter()
        .find(|i| i.names.iter().any(|n| n == &spec.image))
        .map(|i| i.image_id.clone())
        .unwrap_or_default();

    let restart_policy = spec.restart_policy.as_ref().map(|r| GoRestartPolicy {
        enabled: r.enabled,
        ignored_exit_codes: opt_vec(r.ignored_exit_codes.clone()),
        restart_attempt_period: r.restart_attempt_period_secs,
    });
    // The Go agent consults its restart tracker on every exit of a
    // container whose policy is enabled, and has none for a loaded task
    // unless the file holds it.
    let restart_tracker = match &restart_policy {
        Some(policy) if policy.enabled => {
            let mut tracker = serde_json::Map::new();
            if c.restart_count > 0 {
                tracker.insert("restartCount".into(), json!(c.restart_count));
            }
            tracker.insert("lastRestartAt".into(), json!(time_of(c.last_restart_at_ms)));
            tracker.insert("restartPolicy".into(), serde_json::to_value(policy)?);
            Value::Object(tracker)
        }
        _ => Value::Null,
    };

    Ok(GoContainer {
        name: spec.name.clone(),
        runtime_id: c.docker_id.clone().unwrap_or_default(),
        task_arn: task.arn().to_string(),
        depends_on: reconcile::dependencies(task, index)
            .into_iter()
            .map(|d| GoDependsOn {
                container_name: d.container_name,
                condition: condition(d.condition).to_string(),
            })
            .collect(),
        managed_agents: Value::Null,
        v3_endpoint_id: c.endpoint_id.clone(),
        image: spec.image.clone(),
        image_id,
        image_digest: c.image_digest.clone().unwrap_or_default(),
        command: spec.command.clone(),
        cpu: spec.cpu,
        gpu_ids: None,
        memory: spec.memory_mib,
        links: opt_vec(spec.links.clone()),
        firelens_configuration: Value::Null,
        volumes_from: opt_vec(
            spec.volumes_from
                .iter()
                .map(|v| GoVolumeFrom {
                    source_container: v.source_container.clone(),
                    read_only: v.read_only,
                })
                .collect(),
        ),
        mount_points: opt_vec(
            spec.mount_points
                .iter()
                .map(|m| GoMountPoint {
                    source_volume: m.source_volume.clone(),
                    container_path: m.container_path.clone(),
                    read_only: m.read_only,
                })
                .collect(),
        ),
        port_mappings: opt_vec(
            spec.port_mappings
                .iter()
                .map(|p| GoPortBinding {
                    container_port: p.container_port,
                    container_port_range: p.container_port_range.clone().unwrap_or_default(),
                    host_port: p.host_port,
                    bind_ip: String::new(),
                    protocol: p.protocol.as_str().to_string(),
                })
                .collect(),
        ),
        secrets: Value::Null,
        essential: spec.essential,
        entry_point: spec.entry_point.clone(),
        environment: Some(environment(task, c, &state.settings.region)),
        environment_files: Value::Null,
        // The command override is already folded into `Command`, which is
        // all the Go agent reads.
        overrides: json!({"command": null}),
        docker_config: GoDockerConfig {
            config: spec.docker_config.clone(),
            host_config: spec.docker_host_config.clone(),
            version: spec.docker_api_version.clone(),
        },
        credential_specs: Value::Null,
        registry_authentication: Value::Null,
        health_check_type: if spec.docker_health_check {
            "docker".into()
        } else {
            String::new()
        },
        logs_auth_strategy: String::new(),
        start_timeout: spec.start_timeout_secs,
        stop_timeout: spec.stop_timeout_secs,
        desired_status: Some(c.desired_status.name().to_string()),
        known_status: Some(c.known_status.name().to_string()),
        transition_dependency_set: transition_dependencies(
            c,
            state.settings.cgroups.enabled,
            scratch_names,
            docker_names,
        ),
        run_dependencies: Value::Null,
        is_internal: "NORMAL".into(),
        applying_error: c.reason.as_deref().map(applying_error),
        sent_status: Some(container_sent_status(task, c, pending).name().to_string()),
        // Makes the Go agent write the container metadata file again (when
        // enabled), in its own format, on start.
        metadata_file_updated: false,
        known_exit_code: c.exit_code,
        known_port_bindings: opt_vec(
            c.port_bindings
                .iter()
                .map(|b| GoPortBinding {
                    container_port: b.container_port,
                    container_port_range: String::new(),
                    host_port: b.host_port,
                    bind_ip: b.bind_ip.clone(),
                    protocol: b.protocol.as_str().to_string(),
                })
                .collect(),
        ),
        steady_state_status: None,
        container_arn: spec.container_arn.clone().unwrap_or_default(),
        container_torn_down: false,
        started_at: time_of(c.started_at_ms),
        container_has_port_range: has_range && created,
        container_port_set: port_set,
        container_port_range_map: range_map,
        restart_policy,
        restart_tracker,
        // The Go agent's stats carried across restarts; this agent keeps
        // none, and the Go agent starts from the zero value it decodes.
        restart_aggregation_data_for_stats: Value::Null,
        extra: Default::default(),
    })
}

fn go_image(image: &ImageRecord) -> GoImageState {
    GoImageState {
        image: GoImage {
            image_id: image.image_id.clone(),
            names: opt_vec(image.names.clone()),
            size: image.size,
        },
        pulled_at: time_of(Some(image.pulled_at_ms)),
        last_used_at: time_of(Some(image.last_used_at_ms)),
        pull_succeeded: image.pull_succeeded,
        // Which of AWS_REGION/AWS_DEFAULT_REGION the image sets; this agent
        // does not record it. The Go agent inspects the image again, and
        // refreshes this, before it creates any new container from it.
        managed_env_keys: json!({}),
    }
}

#[cfg(test)]
mod tests;
