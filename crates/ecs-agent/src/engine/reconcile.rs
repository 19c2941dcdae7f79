//! The engine's decisions, as pure functions of a task's state: which
//! container transitions to make next, whether dependencies allow them, how
//! task statuses follow container statuses, and what the backend must be
//! told (docs/engine.md §3.4, §4, §5, §13.1). No I/O here, so every rule
//! can be tested with generated inputs.

use super::status::{ContainerStatus, HealthStatus, TaskStatus};
use super::task::{DependencyCondition, DependencySpec, ResourceStatus, Task};
use crate::docker::Observation;
use crate::secrets::SecretsState;
use crate::state_change::{ContainerStateChange, NetworkBinding, TaskStateChange};

/// The Docker work behind a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    ResolveManifest,
    Pull,
    Create,
    Start,
    Stop,
}

/// One container transition to make now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub container: usize,
    pub target: ContainerStatus,
    /// `None` when the transition needs no Docker call (a container that
    /// never started is simply marked STOPPED).
    pub action: Option<Action>,
}

/// What a progress pass should do for one task.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub steps: Vec<Step>,
    /// Containers that can never start because of a dependency, with why.
    pub dependency_failures: Vec<(usize, String)>,
    /// Some container waits on another container's progress, or on a
    /// volume being provisioned.
    pub blocked: bool,
    /// Task volumes to provision now (indices into `task.volumes`).
    pub volumes: Vec<usize>,
    /// Fetch the task's secrets and environment files now.
    pub fetch_secrets: bool,
}

/// Every dependency of container `index`: its `dependsOn`, plus those that
/// `volumesFrom` (CREATE) and `links` (START) imply.
pub fn dependencies(task: &Task, index: usize) -> Vec<DependencySpec> {
    let spec = &task.containers[index].spec;
    let mut deps = spec.depends_on.clone();
    for v in &spec.volumes_from {
        deps.push(DependencySpec {
            container_name: v.source_container.clone(),
            condition: DependencyCondition::Create,
        });
    }
    for link in &spec.links {
        let name = link.split(':').next().unwrap_or(link);
        deps.push(DependencySpec {
            container_name: name.to_string(),
            condition: DependencyCondition::Start,
        });
    }
    deps
}

/// Checks, when a task is first added, that its dependencies can ever be
/// satisfied: every named container exists, HEALTHY targets have a health
/// check, links are well formed, and there is no cycle (docs/engine.md §5.2).
pub fn validate_dependencies(task: &Task) -> Result<(), String> {
    let n = task.containers.len();
    let mut edges: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, c) in task.containers.iter().enumerate() {
        for link in &c.spec.links {
            if link.matches(':').count() > 1 {
                return Err(format!("invalid link {link:?}"));
            }
        }
        for dep in dependencies(task, i) {
            let Some(j) = task.container_index(&dep.container_name) else {
                return Err(format!(
                    "container {:?} depends on unknown container {:?}",
                    c.spec.name, dep.container_name
                ));
            };
            if j == i {
                return Err(format!("container {:?} depends on itself", c.spec.name));
            }
            if dep.condition == DependencyCondition::Healthy
                && !task.containers[j].spec.docker_health_check
            {
                return Err(format!(
                    "container {:?} waits for {:?} to be HEALTHY, but it has no health check",
                    c.spec.name, dep.container_name
                ));
            }
            edges[i].push(j);
        }
    }
    // Kahn's algorithm: containers whose dependencies are all placed can be
    // placed; anything left over sits on a cycle.
    let mut placed = vec![false; n];
    let mut progress = true;
    while progress {
        progress = false;
        for i in 0..n {
            if !placed[i] && edges[i].iter().all(|&j| placed[j]) {
                placed[i] = true;
                progress = true;
            }
        }
    }
    match placed.iter().position(|p| !p) {
        None => Ok(()),
        Some(i) => Err(format!(
            "dependency cycle involving container {:?}",
            task.containers[i].spec.name
        )),
    }
}

enum DependencyState {
    Satisfied,
    Waiting,
    Failed(String),
}

fn check_dependency(task: &Task, dep: &DependencySpec, now_ms: i64) -> DependencyState {
    let Some(j) = task.container_index(&dep.container_name) else {
        return DependencyState::Failed(format!(
            "dependency container {:?} does not exist",
            dep.container_name
        ));
    };
    let d = &task.containers[j];
    let name = &dep.container_name;
    let timed_out = matches!(
        dep.condition,
        DependencyCondition::Complete | DependencyCondition::Success | DependencyCondition::Healthy
    ) && d.spec.start_timeout_secs > 0
        && d.known_status < ContainerStatus::Stopped
        && d.started_at_ms.is_some_and(|started| {
            now_ms > started + i64::try_from(d.spec.start_timeout_secs * 1000).unwrap_or(i64::MAX)
        });
    if timed_out {
        return DependencyState::Failed(format!(
            "dependency container {name:?} did not reach the {:?} condition within its start timeout",
            dep.condition
        ));
    }
    if dep.condition == DependencyCondition::Success
        && d.known_status == ContainerStatus::Stopped
        && d.exit_code != Some(0)
    {
        return DependencyState::Failed(format!(
            "dependency container {name:?} exited with code {:?}, not 0",
            d.exit_code
        ));
    }
    if d.known_status < ContainerStatus::Running
        && d.desired_status == ContainerStatus::Stopped
        && d.applied_status.is_none()
        && dep.condition != DependencyCondition::Create
    {
        return DependencyState::Failed(format!(
            "dependency container {name:?} has not started and will not start"
        ));
    }
    let satisfied = match dep.condition {
        DependencyCondition::Create => d.known_status >= ContainerStatus::Created,
        DependencyCondition::Start => {
            d.known_status == ContainerStatus::Stopped || d.known_status == d.steady_state()
        }
        DependencyCondition::Complete => {
            d.known_status == ContainerStatus::Stopped && d.exit_code.is_some()
        }
        DependencyCondition::Success => {
            d.known_status == ContainerStatus::Stopped && d.exit_code == Some(0)
        }
        DependencyCondition::Healthy => {
            d.spec.docker_health_check && d.health == HealthStatus::Healthy
        }
    };
    if satisfied {
        DependencyState::Satisfied
    } else {
        DependencyState::Waiting
    }
}

/// Whether some other container that exists in Docker (or is being
/// created) and has not stopped depends on `index`: a container stops only
/// after those that depend on it (reverse start order). Containers that
/// were never created impose no order, so tasks stopped before they ran
/// (a dependency cycle, say) stop at once.
fn has_running_dependents(task: &Task, index: usize) -> bool {
    let name = &task.containers[index].spec.name;
    task.containers.iter().enumerate().any(|(i, c)| {
        i != index
            && c.known_status < ContainerStatus::Stopped
            && (c.known_status >= ContainerStatus::Created || c.applied_status.is_some())
            && dependencies(task, i)
                .iter()
                .any(|d| &d.container_name == name)
    })
}

/// Whether some container of `task` is still to be created: what its
/// secrets are fetched for, and kept for.
pub fn awaits_create(task: &Task) -> bool {
    task.containers.iter().any(|c| {
        c.docker_id.is_none()
            && c.known_status < ContainerStatus::Created
            && c.desired_status > c.known_status
            && c.desired_status < ContainerStatus::Stopped
    })
}

/// The next transitions for every container of `task` (docs/engine.md §4.3).
pub fn plan(task: &Task, now_ms: i64) -> Plan {
    let mut plan = Plan::default();
    if task.desired_status < TaskStatus::Stopped {
        plan.volumes = task
            .volumes
            .iter()
            .enumerate()
            .filter(|(_, v)| v.status == ResourceStatus::None && !v.in_flight)
            .map(|(i, _)| i)
            .collect();
    }
    let secrets_needed = crate::secrets::needed(&task.spec);
    let secrets_ready = matches!(task.secrets, SecretsState::Ready(_));
    plan.fetch_secrets = secrets_needed
        && task.secrets == SecretsState::Missing
        && task.desired_status < TaskStatus::Stopped
        && awaits_create(task);
    for (i, c) in task.containers.iter().enumerate() {
        if c.applied_status.is_some() || c.known_status >= c.desired_status {
            continue;
        }
        if c.desired_status == ContainerStatus::Stopped {
            if has_running_dependents(task, i) {
                plan.blocked = true;
                continue;
            }
            let action = matches!(
                c.known_status,
                ContainerStatus::Running | ContainerStatus::ResourcesProvisioned
            )
            .then_some(Action::Stop);
            plan.steps.push(Step {
                container: i,
                target: ContainerStatus::Stopped,
                action,
            });
            continue;
        }
        let target = c.known_status.next();
        // Before the manifest is resolved every ordering dependency counts
        // as satisfied; after it, a container waits before pulling.
        if c.known_status > ContainerStatus::None {
            let mut waiting = false;
            let mut failed = None;
            for dep in dependencies(task, i) {
                match check_dependency(task, &dep, now_ms) {
                    DependencyState::Satisfied => {}
                    DependencyState::Waiting => waiting = true,
                    DependencyState::Failed(why) => {
                        failed = Some(why);
                        break;
                    }
                }
            }
            if let Some(why) = failed {
                plan.dependency_failures.push((i, why));
                continue;
            }
            if waiting {
                plan.blocked = true;
                continue;
            }
        }
        // The volumes a container mounts exist before its image is pulled
        // (docs/engine.md §4.3, §9).
        if target == ContainerStatus::Pulled && !mounted_volumes_ready(task, i) {
            plan.blocked = true;
            continue;
        }
        // No container is created before the task's secrets are in hand
        // (docs/aws-services.md §3); their arrival wakes the task.
        if target == ContainerStatus::Created && secrets_needed && !secrets_ready {
            continue;
        }
        let action = match target {
            ContainerStatus::ManifestPulled => Action::ResolveManifest,
            ContainerStatus::Pulled => Action::Pull,
            ContainerStatus::Created => Action::Create,
            _ => Action::Start,
        };
        plan.steps.push(Step {
            container: i,
            target,
            action: Some(action),
        });
    }
    plan
}

/// Whether a container that just exited with `exit_code` should be
/// restarted in place under its restart policy (docs/engine.md §6.3): the
/// policy is on, the container is not being stopped, the code is not
/// ignored, and the container ran for at least `restartAttemptPeriod`
/// since it last (re)started.
pub fn should_restart(c: &super::task::Container, exit_code: Option<i64>, now_ms: i64) -> bool {
    let Some(policy) = c.spec.restart_policy.as_ref().filter(|p| p.enabled) else {
        return false;
    };
    let Some(code) = exit_code else {
        return false;
    };
    if c.desired_status == ContainerStatus::Stopped
        || c.known_status != ContainerStatus::Running
        || policy.ignored_exit_codes.contains(&code)
    {
        return false;
    }
    let since = c.last_restart_at_ms.max(c.started_at_ms).unwrap_or(0);
    let period_ms =
        i64::try_from(policy.restart_attempt_period_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    now_ms.saturating_sub(since) >= period_ms
}

/// Whether every agent-provisioned volume container `index` mounts exists.
fn mounted_volumes_ready(task: &Task, index: usize) -> bool {
    task.containers[index].spec.mount_points.iter().all(|m| {
        task.volume(&m.source_volume)
            .is_none_or(|v| v.status == ResourceStatus::Created)
    })
}

/// Checks, when a task is first added, that its volumes can be set up
/// (docs/engine.md §9): a task-scoped Docker volume cannot be autoprovisioned.
pub fn validate_volumes(task: &Task) -> Result<(), String> {
    match task.volumes.iter().find(|v| !v.shared && v.autoprovision) {
        Some(v) => Err(format!(
            "task scoped volume {:?} could not be autoprovisioned",
            v.name
        )),
        None => Ok(()),
    }
}

/// Raises the task's known status from its containers (docs/engine.md
/// §3.4); returns whether it changed. It never moves backwards, and a task
/// with an exited essential container only reports STOPPED once all its
/// containers stopped.
pub fn update_known_status(task: &mut Task, now_ms: i64) -> bool {
    let Some(lowest) = task.containers.iter().min_by_key(|c| c.known_status) else {
        return false;
    };
    let essential_stopped = task
        .containers
        .iter()
        .any(|c| c.spec.essential && c.known_status == ContainerStatus::Stopped);
    if lowest.known_status == lowest.steady_state() && essential_stopped {
        return false;
    }
    let new = task
        .containers
        .iter()
        .map(|c| c.known_status.task_status())
        .min()
        .unwrap_or(TaskStatus::None);
    if new > task.known_status {
        task.known_status = new;
        task.known_status_time_ms = now_ms;
        true
    } else {
        false
    }
}

/// An essential container that stopped, or will, stops the whole task.
pub fn update_desired_status(task: &mut Task) {
    let essential_down = task.containers.iter().any(|c| {
        c.spec.essential
            && (c.known_status == ContainerStatus::Stopped
                || c.desired_status == ContainerStatus::Stopped)
    });
    if essential_down {
        task.raise_desired_status(TaskStatus::Stopped);
    }
}

/// The bindings to report for a container: single ports as they are,
/// ports of a `containerPortRange` merged into one entry per range, bind
/// address and protocol; `::` bindings left out when `exclude_ipv6`.
pub fn network_bindings(c: &super::task::Container, exclude_ipv6: bool) -> Vec<NetworkBinding> {
    let mut singles = Vec::new();
    // (range index, bind ip, protocol) → (lowest, highest) host port seen.
    let mut ranges: Vec<(usize, String, super::task::Protocol, u16, u16)> = Vec::new();
    for b in &c.port_bindings {
        if exclude_ipv6 && b.bind_ip == "::" {
            continue;
        }
        match c
            .assigned_ranges
            .iter()
            .position(|r| r.contains(b.container_port, b.protocol))
        {
            None => singles.push(NetworkBinding {
                bind_ip: b.bind_ip.clone(),
                protocol: b.protocol,
                container_port: Some(b.container_port),
                host_port: Some(b.host_port),
                container_port_range: None,
                host_port_range: None,
            }),
            Some(i) => match ranges
                .iter_mut()
                .find(|(ri, ip, proto, _, _)| *ri == i && *ip == b.bind_ip && *proto == b.protocol)
            {
                Some(entry) => {
                    entry.3 = entry.3.min(b.host_port);
                    entry.4 = entry.4.max(b.host_port);
                }
                None => ranges.push((i, b.bind_ip.clone(), b.protocol, b.host_port, b.host_port)),
            },
        }
    }
    for (i, bind_ip, protocol, low, high) in ranges {
        let r = &c.assigned_ranges[i];
        singles.push(NetworkBinding {
            bind_ip,
            protocol,
            container_port: None,
            host_port: None,
            container_port_range: Some(format!("{}-{}", r.container_start, r.container_end)),
            host_port_range: Some(format!("{low}-{high}")),
        });
    }
    singles
}

/// Whether a container change is worth telling the backend
/// (docs/engine.md §13.1).
fn container_reportable(status: ContainerStatus, has_digest: bool) -> bool {
    matches!(status, ContainerStatus::Running | ContainerStatus::Stopped)
        || (status == ContainerStatus::ManifestPulled && has_digest)
}

/// The report the task owes the backend now, if any, marking what it
/// covers as reported. The caller stores the report in the same
/// transaction as the task.
pub fn take_report(task: &mut Task, exclude_ipv6: bool) -> Option<TaskStateChange> {
    let mut containers = Vec::new();
    for c in &mut task.containers {
        let status = match c.known_status {
            // Pulled/Created are not reported; a digest found at
            // MANIFEST_PULLED is, as PENDING.
            ContainerStatus::Pulled | ContainerStatus::Created => ContainerStatus::ManifestPulled,
            ContainerStatus::ResourcesProvisioned => ContainerStatus::Running,
            other => other,
        };
        if status <= c.reported_status || !container_reportable(status, c.image_digest.is_some()) {
            continue;
        }
        c.reported_status = status;
        containers.push(ContainerStateChange {
            container_name: c.spec.name.clone(),
            runtime_id: c.docker_id.clone(),
            status: status.backend_string().to_string(),
            exit_code: if status == ContainerStatus::Stopped {
                c.exit_code
            } else {
                None
            },
            reason: c.reason.clone(),
            image_digest: c.image_digest.clone(),
            network_bindings: network_bindings(c, exclude_ipv6),
        });
    }
    let any_digest = task.containers.iter().any(|c| c.image_digest.is_some());
    let task_reportable = match task.known_status {
        TaskStatus::Running | TaskStatus::Stopped => true,
        TaskStatus::ManifestPulled | TaskStatus::Created => any_digest,
        TaskStatus::None => false,
    };
    let task_changed = task_reportable && task.known_status > task.reported_status;
    if !task_changed && containers.is_empty() {
        return None;
    }
    if task_changed {
        task.reported_status = task.known_status;
    }
    let status = task.known_status;
    Some(TaskStateChange {
        task_arn: task.arn().to_string(),
        status: status.backend_string().to_string(),
        reason: if status == TaskStatus::Stopped {
            task.terminal_reason.clone().unwrap_or_default()
        } else {
            String::new()
        },
        containers,
        pull_started_at_ms: task.pull_started_at_ms,
        pull_stopped_at_ms: task.pull_stopped_at_ms,
        execution_stopped_at_ms: task.execution_stopped_at_ms,
    })
}

/// How a Docker action ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// `image`: the local image, when the step inspected it.
    ManifestResolved {
        digest: Option<String>,
        image: Option<crate::docker::ImageInfo>,
    },
    /// The image is available; `pull_started_ms` is set when a pull was
    /// actually made (a cached image under `prefer-cached` needs none).
    Pulled {
        pull_started_ms: Option<i64>,
        /// The image as Docker has it afterwards, when it could be read.
        image: Option<crate::docker::ImageInfo>,
    },
    /// A pull was made, from `pull_started_ms`, and failed.
    PullFailed {
        error: String,
        pull_started_ms: i64,
    },
    Created {
        docker_id: String,
    },
    /// Started or stopped, with what inspect said afterwards if it answered.
    Done(Option<Observation>),
    /// `<ErrorName>: <message>`; `gone` when Docker says the container does
    /// not exist.
    Failed {
        error: String,
        gone: bool,
    },
}

/// What the engine must do after an outcome or observation was applied.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Effect {
    /// The container is running although it was already STOPPED: stop it
    /// again (docs/engine.md §11.4).
    pub stop_again: bool,
    /// A stop failed while Docker still knows the container: try again later.
    pub retry: bool,
}

/// Applies the result of the action that moved container `index` toward
/// `target` (docs/engine.md §6.1). `pull_failure_stops_task` is true for the
/// `always` and `once` pull behaviours.
pub fn apply_outcome(
    task: &mut Task,
    index: usize,
    target: ContainerStatus,
    outcome: Outcome,
    pull_failure_stops_task: bool,
    now_ms: i64,
) -> Effect {
    let mut effect = Effect::default();
    task.containers[index].applied_status = None;
    match (target, outcome) {
        (ContainerStatus::ManifestPulled, Outcome::ManifestResolved { digest, image }) => {
            let c = &mut task.containers[index];
            c.local_image = image;
            if c.image_digest.is_none() {
                c.image_digest = digest;
            }
            raise_known(task, index, ContainerStatus::ManifestPulled, now_ms);
        }
        (
            ContainerStatus::Pulled,
            Outcome::Pulled {
                pull_started_ms,
                image,
            },
        ) => {
            task.containers[index].local_image = image;
            if let Some(started) = pull_started_ms {
                task.pull_started_at_ms.get_or_insert(started);
                task.pull_stopped_at_ms = Some(now_ms);
            }
            raise_known(task, index, ContainerStatus::Pulled, now_ms);
        }
        (ContainerStatus::Created, Outcome::Created { docker_id }) => {
            let c = &mut task.containers[index];
            c.docker_id = Some(docker_id);
            // Only the steps up to the create need it.
            c.local_image = None;
            raise_known(task, index, ContainerStatus::Created, now_ms);
        }
        (ContainerStatus::Running, Outcome::Done(observation)) => {
            if let Some(o) = observation {
                effect = apply_observation(task, index, Some(&o), now_ms);
            }
            // Docker accepted the start, whatever a late inspect said.
            raise_known(task, index, ContainerStatus::Running, now_ms);
        }
        (ContainerStatus::Stopped, Outcome::Done(observation)) => {
            if let Some(o) = observation {
                apply_observation(task, index, Some(&o), now_ms);
            }
            raise_known(task, index, ContainerStatus::Stopped, now_ms);
        }
        (ContainerStatus::ManifestPulled, Outcome::Failed { error, .. }) => {
            image_failed(task, index, target, error, pull_failure_stops_task, now_ms);
        }
        (ContainerStatus::Pulled, Outcome::Failed { error, .. }) => {
            task.pull_started_at_ms.get_or_insert(now_ms);
            task.pull_stopped_at_ms = Some(now_ms);
            image_failed(task, index, target, error, pull_failure_stops_task, now_ms);
        }
        (
            ContainerStatus::Pulled,
            Outcome::PullFailed {
                error,
                pull_started_ms,
            },
        ) => {
            task.pull_started_at_ms.get_or_insert(pull_started_ms);
            task.pull_stopped_at_ms = Some(now_ms);
            image_failed(task, index, target, error, pull_failure_stops_task, now_ms);
        }
        (ContainerStatus::Created | ContainerStatus::Running, Outcome::Failed { error, .. }) => {
            let c = &mut task.containers[index];
            c.set_reason(error);
            c.desired_status = ContainerStatus::Stopped;
        }
        (ContainerStatus::Stopped, Outcome::Failed { gone, error }) => {
            if gone {
                raise_known(task, index, ContainerStatus::Stopped, now_ms);
            } else {
                tracing_error(task, index, &error);
                effect.retry = true;
            }
        }
        (target, outcome) => {
            // An outcome that does not belong to the action: keep state, but
            // make the mismatch visible.
            tracing::warn!(
                task = task.arn(),
                ?target,
                ?outcome,
                "unexpected action outcome"
            );
        }
    }
    effect
}

/// A failed digest lookup or pull. It stops the task only under the
/// `always` and `once` behaviours; otherwise the cached image (if any) is
/// used, and the create fails without one.
fn image_failed(
    task: &mut Task,
    index: usize,
    target: ContainerStatus,
    error: String,
    pull_failure_stops_task: bool,
    now_ms: i64,
) {
    if pull_failure_stops_task || target == ContainerStatus::Pulled {
        task.containers[index].set_reason(error.clone());
    }
    if pull_failure_stops_task {
        task.set_terminal_reason(error);
        task.raise_desired_status(TaskStatus::Stopped);
    }
    raise_known(task, index, target, now_ms);
}

fn tracing_error(task: &Task, index: usize, error: &str) {
    tracing::warn!(
        task = task.arn(),
        container = task.containers[index].spec.name,
        error,
        "stopping container failed; will retry"
    );
}

/// Known status only moves forward; reaching the in-flight target clears it.
fn raise_known(task: &mut Task, index: usize, status: ContainerStatus, now_ms: i64) {
    let essential;
    {
        let c = &mut task.containers[index];
        if status <= c.known_status {
            return;
        }
        c.known_status = status;
        if c.applied_status.is_some_and(|a| a <= status) {
            c.applied_status = None;
        }
        essential = c.spec.essential;
    }
    if status == ContainerStatus::Stopped && essential {
        task.execution_stopped_at_ms.get_or_insert(now_ms);
    }
}

/// Whether a Docker event (its `action`) may tell the engine something about
/// container `c` that it does not know or will not learn anyway, and so is
/// worth an inspect (docs/engine.md §11.1). An event that announces the
/// state the container is known to be in, or the one the agent's own action
/// in flight is bringing it to (whose outcome is inspected when the call
/// returns), is not: skipping those halves Docker's work per launch and stop.
pub fn event_is_news(c: &super::task::Container, action: &str) -> bool {
    let known_or_underway = |s: ContainerStatus| c.known_status == s || c.applied_status == Some(s);
    match action {
        // The agent created it: its ID is known only from its own create.
        "create" => false,
        "start" => !known_or_underway(ContainerStatus::Running),
        // A stop's outcome is inspected after the container has exited.
        "stop" | "die" => !known_or_underway(ContainerStatus::Stopped),
        _ => true,
    }
}

/// Applies what Docker says about a container (from inspect after an event,
/// a periodic check, or restart reconciliation). `None` means Docker has no
/// such container any more (docs/engine.md §11.2, §12).
pub fn apply_observation(
    task: &mut Task,
    index: usize,
    observation: Option<&Observation>,
    now_ms: i64,
) -> Effect {
    let mut effect = Effect::default();
    let Some(o) = observation else {
        let c = &mut task.containers[index];
        if c.known_status >= ContainerStatus::Created && c.known_status < ContainerStatus::Stopped {
            c.set_reason("ContainerVanishedError: No container matching saved ID found");
            raise_known(task, index, ContainerStatus::Stopped, now_ms);
        }
        return effect;
    };
    {
        let c = &mut task.containers[index];
        if c.docker_id.is_none() && !o.docker_id.is_empty() {
            c.docker_id = Some(o.docker_id.clone());
        }
        if c.started_at_ms.is_none() {
            c.started_at_ms = o.started_at_ms;
        }
        c.pid = o.pid;
        if o.finished_at_ms.is_some() {
            c.finished_at_ms = o.finished_at_ms;
        }
        if c.port_bindings.is_empty() {
            c.port_bindings = o.port_bindings.clone();
        }
        if c.spec.docker_health_check {
            if let Some(h) = o.health.filter(|h| *h != c.health) {
                c.health = h;
                c.health_since_ms = Some(now_ms);
            }
        }
        if o.status == ContainerStatus::Running && c.known_status == ContainerStatus::Stopped {
            effect.stop_again = true;
        }
        if o.status == ContainerStatus::Stopped && c.known_status < ContainerStatus::Stopped {
            if o.exit_code.is_some() {
                c.exit_code = o.exit_code;
            }
            if let Some(error) = &o.error {
                c.set_reason(error.clone());
            }
        }
    }
    raise_known(task, index, o.status, now_ms);
    effect
}

#[cfg(test)]
mod tests;
