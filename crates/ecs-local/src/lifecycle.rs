//! Task lifecycle in the plane's state: creating a task from its
//! definition, stop requests, and the state changes agents report. Pure
//! functions over [`State`]; the API modules call them inside a store update.

use crate::arn::{self, ArnBuilder};
use crate::credentials::IssuedCredentials;
use crate::placement::{self, Demand};
use crate::store::{State, TaskRecord};
use ecs_model::ecs_api::{
    Container, ContainerOverride, ContainerStateChange, SubmitContainerStateChangeRequest,
    SubmitTaskStateChangeRequest, Tag, Task, TaskDefinition, TaskOverride,
};
use std::time::Duration;

/// What a new task is made of. The caller picks the ARN, so the same path
/// serves RunTask (fresh ids) and tests that replay recorded traffic.
#[derive(Debug, Clone, Default)]
pub struct TaskSpec {
    pub task_arn: String,
    /// Cluster name.
    pub cluster: String,
    pub family: String,
    pub revision: i64,
    /// Id of the instance the task is placed on.
    pub instance_id: String,
    pub overrides: Option<TaskOverride>,
    pub started_by: Option<String>,
    pub group: Option<String>,
    pub tags: Option<Vec<Tag>>,
    pub enable_execute_command: bool,
    /// The service starting it, if any.
    pub service: Option<String>,
}

/// Errors while creating a task.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("task definition {0}:{1} does not exist")]
    UnknownDefinition(String, i64),
    #[error("container instance {0} does not exist")]
    UnknownInstance(String),
    #[error("Override for container named {0} is not a container in the TaskDefinition.")]
    UnknownOverride(String),
}

/// Builds a PENDING task, desired RUNNING, from its definition. Does not
/// insert it.
pub fn new_task(
    arns: &ArnBuilder,
    state: &State,
    spec: TaskSpec,
    now: f64,
) -> Result<TaskRecord, SpecError> {
    let definition = state
        .task_definition(&spec.family, spec.revision)
        .ok_or_else(|| SpecError::UnknownDefinition(spec.family.clone(), spec.revision))?;
    let instance = state
        .instances
        .get(&spec.instance_id)
        .ok_or_else(|| SpecError::UnknownInstance(spec.instance_id.clone()))?;
    let given = spec
        .overrides
        .as_ref()
        .and_then(|o| o.container_overrides.clone())
        .unwrap_or_default();
    for o in &given {
        let name = o.name.as_deref().unwrap_or_default();
        if !definition
            .container_definitions
            .iter()
            .any(|c| c.name.as_deref() == Some(name))
        {
            return Err(SpecError::UnknownOverride(name.to_owned()));
        }
    }
    let demand: Demand = placement::demand(definition, spec.overrides.as_ref());
    let task_id = arn::resource_id(&spec.task_arn).to_owned();
    let arn_cluster = arn::cluster_of(&spec.task_arn)
        .unwrap_or(&spec.cluster)
        .to_owned();
    let find_override = |name: &str| given.iter().find(|o| o.name.as_deref() == Some(name));
    let containers: Vec<Container> = definition
        .container_definitions
        .iter()
        .map(|c| {
            let name = c.name.clone().unwrap_or_default();
            let ov = find_override(&name);
            Container {
                container_arn: Some(arns.container(
                    &arn_cluster,
                    &task_id,
                    &uuid::Uuid::new_v4().to_string(),
                )),
                task_arn: Some(spec.task_arn.clone()),
                name: Some(name),
                image: c.image.clone(),
                last_status: Some("PENDING".to_owned()),
                network_bindings: Some(vec![]),
                network_interfaces: Some(vec![]),
                health_status: Some("UNKNOWN".to_owned()),
                cpu: Some(ov.and_then(|o| o.cpu).or(c.cpu).unwrap_or(0).to_string()),
                memory: ov
                    .and_then(|o| o.memory)
                    .or(c.memory)
                    .map(|m| m.to_string()),
                memory_reservation: ov
                    .and_then(|o| o.memory_reservation)
                    .or(c.memory_reservation)
                    .map(|m| m.to_string()),
                ..Container::default()
            }
        })
        .collect();
    // ECS echoes an override entry for every container, named ones filled in.
    let container_overrides = definition
        .container_definitions
        .iter()
        .map(|c| {
            let name = c.name.clone().unwrap_or_default();
            find_override(&name).cloned().unwrap_or(ContainerOverride {
                name: Some(name),
                ..ContainerOverride::default()
            })
        })
        .collect();
    let (task_role_arn, execution_role_arn) = effective_roles(definition, spec.overrides.as_ref());
    let mut overrides = spec.overrides.clone().unwrap_or_default();
    overrides.container_overrides = Some(container_overrides);
    overrides
        .inference_accelerator_overrides
        .get_or_insert_with(Vec::new);
    let task = Task {
        attachments: Some(vec![]),
        attributes: Some(vec![]),
        // The zone the instance registered, else the plane's one zone.
        availability_zone: Some(
            instance
                .all_attributes()
                .into_iter()
                .find(|a| a.name == "ecs.availability-zone")
                .and_then(|a| a.value)
                .unwrap_or_else(|| format!("{}a", arns.region())),
        ),
        cluster_arn: Some(arns.cluster(&spec.cluster)),
        container_instance_arn: Some(instance.arn.clone()),
        containers: Some(containers),
        cpu: Some(demand.cpu.to_string()),
        memory: Some(demand.memory.to_string()),
        created_at: Some(now),
        desired_status: Some("RUNNING".to_owned()),
        enable_execute_command: Some(spec.enable_execute_command),
        group: Some(
            spec.group
                .clone()
                .unwrap_or_else(|| format!("family:{}", spec.family)),
        ),
        health_status: Some("UNKNOWN".to_owned()),
        last_status: Some("PENDING".to_owned()),
        launch_type: Some("EC2".to_owned()),
        overrides: Some(overrides),
        started_by: spec.started_by.clone(),
        tags: Some(spec.tags.clone().unwrap_or_default()),
        task_arn: Some(spec.task_arn.clone()),
        task_definition_arn: definition.task_definition_arn.clone(),
        version: Some(1),
        ..Task::default()
    };
    Ok(TaskRecord {
        id: task_id,
        cluster: spec.cluster,
        instance_id: Some(spec.instance_id),
        family: spec.family,
        revision: spec.revision,
        demand,
        task,
        sent: false,
        delivered_desired: None,
        stop_requested: false,
        stopped_unhealthy: false,
        client_token: None,
        service: spec.service,
        task_role_arn,
        execution_role_arn,
        task_role_credentials: None,
        execution_role_credentials: None,
    })
}

/// The task role and execution role a task runs with: RunTask's overrides
/// win over the task definition; empty strings count as none.
pub fn effective_roles(
    definition: &TaskDefinition,
    overrides: Option<&TaskOverride>,
) -> (Option<String>, Option<String>) {
    let pick = |over: Option<&String>, def: Option<&String>| {
        over.filter(|v| !v.is_empty())
            .or(def.filter(|v| !v.is_empty()))
            .cloned()
    };
    (
        pick(
            overrides.and_then(|o| o.task_role_arn.as_ref()),
            definition.task_role_arn.as_ref(),
        ),
        pick(
            overrides.and_then(|o| o.execution_role_arn.as_ref()),
            definition.execution_role_arn.as_ref(),
        ),
    )
}

/// Mints credentials for each role of the task that has none yet.
pub fn issue_credentials(task: &mut TaskRecord, now: f64, ttl: Duration) {
    if task.task_role_credentials.is_none() {
        if let Some(role) = &task.task_role_arn {
            task.task_role_credentials = Some(IssuedCredentials::mint(role, now, ttl));
        }
    }
    if task.execution_role_credentials.is_none() {
        if let Some(role) = &task.execution_role_arn {
            task.execution_role_credentials = Some(IssuedCredentials::mint(role, now, ttl));
        }
    }
}

/// Order of task and container statuses; state only moves forward.
fn rank(status: &str) -> u8 {
    match status {
        "PROVISIONING" => 1,
        "PENDING" | "MANIFEST_PULLED" => 2,
        "ACTIVATING" => 3,
        "RUNNING" => 4,
        "DEACTIVATING" | "STOPPING" => 5,
        "DEPROVISIONING" => 6,
        "STOPPED" => 7,
        _ => 0,
    }
}

/// Who asked for a task to stop: its `stopCode`.
pub const USER_INITIATED: &str = "UserInitiated";
pub const SERVICE_SCHEDULER_INITIATED: &str = "ServiceSchedulerInitiated";

/// StopTask, or the service scheduler: desired STOPPED, with the reason and
/// stop code given. A task no agent has acked yet is STOPPED at once, since
/// nothing may ever report it.
pub fn request_stop(task: &mut TaskRecord, reason: &str, stop_code: &str, now: f64) {
    if task.desired_status() == "STOPPED" {
        return;
    }
    task.stop_requested = true;
    task.task.desired_status = Some("STOPPED".to_owned());
    task.task.stopping_at = Some(now);
    task.task.stopped_reason = Some(reason.to_owned());
    task.task.stop_code = Some(stop_code.to_owned());
    task.touch();
    if task.delivered_desired.is_none() {
        set_stopped(task, now);
        if !task.sent {
            // No agent ever saw it: there is nothing to tell one.
            task.delivered_desired = Some("STOPPED".to_owned());
        }
    }
}

/// Stops a task without its agent (forced deregistration).
pub fn mark_stopped_without_agent(task: &mut TaskRecord, now: f64, reason: &str, stop_code: &str) {
    if task.is_stopped() {
        return;
    }
    task.task.desired_status = Some("STOPPED".to_owned());
    task.task.stopping_at.get_or_insert(now);
    task.task
        .stopped_reason
        .get_or_insert_with(|| reason.to_owned());
    task.task
        .stop_code
        .get_or_insert_with(|| stop_code.to_owned());
    set_stopped(task, now);
    task.delivered_desired = Some("STOPPED".to_owned());
    task.touch();
}

fn set_stopped(task: &mut TaskRecord, now: f64) {
    task.task.last_status = Some("STOPPED".to_owned());
    task.task.stopped_at.get_or_insert(now);
    for c in task.task.containers.iter_mut().flatten() {
        c.last_status = Some("STOPPED".to_owned());
    }
}

fn apply_container_change(task: &mut TaskRecord, change: &ContainerStateChange) -> bool {
    let name = change.container_name.as_deref().unwrap_or_default();
    let Some(container) = task
        .task
        .containers
        .iter_mut()
        .flatten()
        .find(|c| c.name.as_deref() == Some(name))
    else {
        tracing::warn!(
            task = task.arn(),
            container = name,
            "state change for an unknown container ignored"
        );
        return false;
    };
    if let Some(id) = &change.runtime_id {
        container.runtime_id = Some(id.clone());
    }
    if let Some(digest) = &change.image_digest {
        container.image_digest = Some(digest.clone());
    }
    if let Some(code) = change.exit_code {
        container.exit_code = Some(code);
    }
    if let Some(reason) = change.reason.as_ref().filter(|r| !r.is_empty()) {
        container.reason = Some(reason.clone());
    }
    if let Some(bindings) = &change.network_bindings {
        container.network_bindings = Some(bindings.clone());
    }
    if let Some(status) = &change.status {
        let current = container.last_status.as_deref().unwrap_or("PENDING");
        if rank(status) > rank(current) {
            container.last_status = Some(status.clone());
        }
    }
    true
}

/// What became of a state change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeOutcome {
    Applied,
    UnknownTask,
}

/// SubmitTaskStateChange: container fields update, the task's last status
/// only moves forward, and STOPPED fixes the reason and frees the task's
/// resources (they are counted only for tasks that are not STOPPED).
pub fn apply_task_state_change(
    state: &mut State,
    req: &SubmitTaskStateChangeRequest,
    now: f64,
) -> ChangeOutcome {
    let id = arn::resource_id(req.task.as_deref().unwrap_or_default()).to_owned();
    let Some((family, revision)) = state.tasks.get(&id).map(|t| (t.family.clone(), t.revision))
    else {
        return ChangeOutcome::UnknownTask;
    };
    let essentials: Vec<String> = state
        .task_definition(&family, revision)
        .map(|d| {
            d.container_definitions
                .iter()
                .filter(|c| c.essential != Some(false))
                .filter_map(|c| c.name.clone())
                .collect()
        })
        .unwrap_or_default();
    let Some(task) = state.tasks.get_mut(&id) else {
        return ChangeOutcome::UnknownTask;
    };
    for change in req.containers.iter().flatten() {
        apply_container_change(task, change);
    }
    if let Some(at) = req.pull_started_at {
        task.task.pull_started_at.get_or_insert(at);
    }
    if let Some(at) = req.pull_stopped_at {
        task.task.pull_stopped_at.get_or_insert(at);
    }
    let status = req.status.as_deref().unwrap_or_default();
    if rank(status) > rank(task.last_status()) {
        task.task.last_status = Some(status.to_owned());
        // A task reported STOPPED straight from PENDING never started.
        if rank(status) >= rank("RUNNING") && status != "STOPPED" {
            task.task.started_at.get_or_insert(now);
            task.task.connectivity = Some("CONNECTED".to_owned());
            task.task.connectivity_at.get_or_insert(now);
        }
        if status == "STOPPED" {
            finish_stop(task, req, &essentials, now);
        }
    }
    task.touch();
    ChangeOutcome::Applied
}

fn finish_stop(
    task: &mut TaskRecord,
    req: &SubmitTaskStateChangeRequest,
    essentials: &[String],
    now: f64,
) {
    task.task.stopped_at = Some(now);
    task.task.execution_stopped_at = Some(req.execution_stopped_at.unwrap_or(now));
    task.task.stopping_at.get_or_insert(now);
    task.task.desired_status = Some("STOPPED".to_owned());
    // The agent stopped it itself: there is no STOPPED payload to send.
    task.delivered_desired = Some("STOPPED".to_owned());
    let essential_exited = task.task.containers.iter().flatten().any(|c| {
        c.last_status.as_deref() == Some("STOPPED")
            && c.name.as_ref().is_some_and(|n| essentials.contains(n))
    });
    let agent_reason = req.reason.as_deref().filter(|r| !r.is_empty());
    if let Some(reason) = agent_reason {
        task.task.stopped_reason = Some(reason.to_owned());
        if !task.stop_requested {
            let code = if task.task.started_at.is_none() {
                "TaskFailedToStart"
            } else {
                "EssentialContainerExited"
            };
            task.task.stop_code = Some(code.to_owned());
        }
    } else if task.stop_requested {
        // Keep the StopTask reason and the UserInitiated code.
    } else if essential_exited {
        task.task.stopped_reason = Some("Essential container in task exited".to_owned());
        task.task.stop_code = Some("EssentialContainerExited".to_owned());
    } else {
        task.task.stopped_reason = Some("Task stopped".to_owned());
    }
}

/// SubmitContainerStateChange: one container's fields.
pub fn apply_container_state_change(
    state: &mut State,
    req: &SubmitContainerStateChangeRequest,
) -> ChangeOutcome {
    let id = arn::resource_id(req.task.as_deref().unwrap_or_default());
    let Some(task) = state.tasks.get_mut(id) else {
        return ChangeOutcome::UnknownTask;
    };
    let change = ContainerStateChange {
        container_name: req.container_name.clone(),
        runtime_id: req.runtime_id.clone(),
        status: req.status.clone(),
        exit_code: req.exit_code,
        reason: req.reason.clone(),
        network_bindings: req.network_bindings.clone(),
        image_digest: None,
    };
    if apply_container_change(task, &change) {
        task.touch();
    }
    ChangeOutcome::Applied
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::store::{ClusterRecord, InstanceRecord};
    use ecs_model::ecs_api::{ContainerDefinition, TaskDefinition};

    fn state() -> (ArnBuilder, State) {
        let arns = ArnBuilder::new("us-east-1");
        let mut st = State::default();
        st.clusters.insert(
            "default".into(),
            ClusterRecord {
                name: "default".into(),
                arn: arns.cluster("default"),
                status: "ACTIVE".into(),
                tags: None,
                settings: None,
                configuration: None,
            },
        );
        st.task_definitions.insert(
            "web".into(),
            vec![TaskDefinition {
                task_definition_arn: Some(arns.task_definition("web", 1)),
                family: Some("web".into()),
                revision: Some(1),
                container_definitions: vec![
                    ContainerDefinition {
                        name: Some("app".into()),
                        image: Some("nginx".into()),
                        memory: Some(64),
                        ..Default::default()
                    },
                    ContainerDefinition {
                        name: Some("side".into()),
                        image: Some("busybox".into()),
                        memory_reservation: Some(16),
                        essential: Some(false),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
        );
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
        (arns, st)
    }

    fn spec(arns: &ArnBuilder) -> TaskSpec {
        TaskSpec {
            task_arn: arns.task("default", "t1"),
            cluster: "default".into(),
            family: "web".into(),
            revision: 1,
            instance_id: "i1".into(),
            ..Default::default()
        }
    }

    fn change(status: &str, containers: Vec<(&str, &str)>) -> SubmitTaskStateChangeRequest {
        SubmitTaskStateChangeRequest {
            task: Some("t1".into()),
            status: Some(status.into()),
            reason: Some(String::new()),
            containers: Some(
                containers
                    .into_iter()
                    .map(|(n, s)| ContainerStateChange {
                        container_name: Some(n.into()),
                        status: Some(s.into()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn new_task_is_pending_with_string_sizes() {
        let (arns, st) = state();
        let t = new_task(&arns, &st, spec(&arns), 10.0).unwrap();
        assert_eq!(t.task.last_status.as_deref(), Some("PENDING"));
        assert_eq!(t.task.desired_status.as_deref(), Some("RUNNING"));
        assert_eq!(t.task.memory.as_deref(), Some("80"));
        assert_eq!(t.task.group.as_deref(), Some("family:web"));
        let containers = t.task.containers.as_ref().unwrap();
        assert_eq!(containers[0].memory.as_deref(), Some("64"));
        assert_eq!(containers[1].memory, None);
        assert_eq!(containers[1].memory_reservation.as_deref(), Some("16"));
        assert!(containers[0]
            .container_arn
            .as_deref()
            .unwrap()
            .starts_with("arn:aws:ecs:us-east-1:000000000000:container/default/t1/"));
        let overrides = t.task.overrides.as_ref().unwrap();
        assert_eq!(overrides.container_overrides.as_ref().unwrap().len(), 2);
    }

    #[test]
    fn roles_come_from_overrides_then_the_definition_and_get_credentials() {
        let (arns, mut st) = state();
        let def = &mut st.task_definitions.get_mut("web").unwrap()[0];
        def.task_role_arn = Some("arn:aws:iam::000000000000:role/def-task".into());
        def.execution_role_arn = Some("arn:aws:iam::000000000000:role/def-exec".into());
        let t = new_task(&arns, &st, spec(&arns), 10.0).unwrap();
        assert_eq!(
            t.task_role_arn.as_deref(),
            Some("arn:aws:iam::000000000000:role/def-task")
        );
        assert_eq!(
            t.execution_role_arn.as_deref(),
            Some("arn:aws:iam::000000000000:role/def-exec")
        );
        assert_eq!(t.task_role_credentials, None, "minted by the caller");

        let mut s = spec(&arns);
        s.overrides = Some(TaskOverride {
            task_role_arn: Some("arn:aws:iam::000000000000:role/override".into()),
            execution_role_arn: Some(String::new()),
            ..Default::default()
        });
        let mut t = new_task(&arns, &st, s, 10.0).unwrap();
        assert_eq!(
            t.task_role_arn.as_deref(),
            Some("arn:aws:iam::000000000000:role/override")
        );
        // An empty override does not remove the definition's role.
        assert_eq!(
            t.execution_role_arn.as_deref(),
            Some("arn:aws:iam::000000000000:role/def-exec")
        );
        // DescribeTasks shows the override.
        assert_eq!(
            t.task.overrides.as_ref().unwrap().task_role_arn.as_deref(),
            Some("arn:aws:iam::000000000000:role/override")
        );

        issue_credentials(&mut t, 10.0, Duration::from_secs(3600));
        let task_creds = t.task_role_credentials.clone().unwrap();
        let exec_creds = t.execution_role_credentials.clone().unwrap();
        assert_eq!(
            task_creds.credentials.role_arn.as_deref(),
            Some("arn:aws:iam::000000000000:role/override")
        );
        assert_eq!(
            exec_creds.credentials.role_arn.as_deref(),
            Some("arn:aws:iam::000000000000:role/def-exec")
        );
        assert_ne!(task_creds.credentials_id(), exec_creds.credentials_id());
        // Issuing again keeps what was issued.
        issue_credentials(&mut t, 20.0, Duration::from_secs(3600));
        assert_eq!(t.task_role_credentials, Some(task_creds));

        let (arns, st) = state();
        let mut plain = new_task(&arns, &st, spec(&arns), 10.0).unwrap();
        issue_credentials(&mut plain, 10.0, Duration::from_secs(3600));
        assert_eq!(plain.task_role_arn, None);
        assert_eq!(plain.task_role_credentials, None);
        assert_eq!(plain.execution_role_credentials, None);
    }

    #[test]
    fn unknown_override_is_refused() {
        let (arns, st) = state();
        let mut s = spec(&arns);
        s.overrides = Some(TaskOverride {
            container_overrides: Some(vec![ContainerOverride {
                name: Some("nope".into()),
                ..Default::default()
            }]),
            ..Default::default()
        });
        assert_eq!(
            new_task(&arns, &st, s, 0.0).unwrap_err(),
            SpecError::UnknownOverride("nope".into())
        );
    }

    #[test]
    fn status_moves_forward_and_stop_reason_follows_the_rules() {
        let (arns, mut st) = state();
        let t = new_task(&arns, &st, spec(&arns), 10.0).unwrap();
        st.tasks.insert(t.id.clone(), t);
        apply_task_state_change(&mut st, &change("RUNNING", vec![("app", "RUNNING")]), 11.0);
        assert_eq!(st.tasks["t1"].last_status(), "RUNNING");
        assert_eq!(st.tasks["t1"].task.started_at, Some(11.0));
        apply_task_state_change(&mut st, &change("PENDING", vec![("app", "PENDING")]), 12.0);
        assert_eq!(st.tasks["t1"].last_status(), "RUNNING");
        let c = &st.tasks["t1"].task.containers.as_ref().unwrap()[0];
        assert_eq!(c.last_status.as_deref(), Some("RUNNING"));
        apply_task_state_change(
            &mut st,
            &change("STOPPED", vec![("app", "STOPPED"), ("side", "STOPPED")]),
            13.0,
        );
        let t = &st.tasks["t1"];
        assert!(t.is_stopped());
        assert_eq!(t.desired_status(), "STOPPED");
        assert_eq!(
            t.task.stopped_reason.as_deref(),
            Some("Essential container in task exited")
        );
        assert_eq!(
            t.task.stop_code.as_deref(),
            Some("EssentialContainerExited")
        );
        assert!(!t.needs_delivery());
    }

    #[test]
    fn user_stop_reason_is_kept_and_agent_reason_wins() {
        let (arns, mut st) = state();
        let mut t = new_task(&arns, &st, spec(&arns), 10.0).unwrap();
        t.sent = true;
        t.delivered_desired = Some("RUNNING".into());
        st.tasks.insert(t.id.clone(), t);
        request_stop(st.tasks.get_mut("t1").unwrap(), "bye", USER_INITIATED, 12.0);
        assert_eq!(st.tasks["t1"].last_status(), "PENDING");
        assert!(st.tasks["t1"].needs_delivery());
        apply_task_state_change(&mut st, &change("STOPPED", vec![("app", "STOPPED")]), 13.0);
        assert_eq!(st.tasks["t1"].task.stopped_reason.as_deref(), Some("bye"));
        assert_eq!(
            st.tasks["t1"].task.stop_code.as_deref(),
            Some("UserInitiated")
        );

        let mut t = new_task(&arns, &st, spec(&arns), 10.0).unwrap();
        t.id = "t2".into();
        st.tasks.insert("t2".into(), t);
        let mut req = change("STOPPED", vec![]);
        req.task = Some("t2".into());
        req.reason = Some("CannotPullContainerError: nope".into());
        apply_task_state_change(&mut st, &req, 14.0);
        assert_eq!(
            st.tasks["t2"].task.stopped_reason.as_deref(),
            Some("CannotPullContainerError: nope")
        );
        assert_eq!(
            st.tasks["t2"].task.stop_code.as_deref(),
            Some("TaskFailedToStart")
        );
    }

    #[test]
    fn stopping_an_undelivered_task_stops_it_at_once() {
        let (arns, mut st) = state();
        let t = new_task(&arns, &st, spec(&arns), 10.0).unwrap();
        st.tasks.insert(t.id.clone(), t);
        request_stop(st.tasks.get_mut("t1").unwrap(), "bye", USER_INITIATED, 12.0);
        let t = &st.tasks["t1"];
        assert!(t.is_stopped());
        assert!(!t.needs_delivery());
        assert_eq!(t.task.stopped_at, Some(12.0));
    }

    #[test]
    fn unknown_task_is_reported() {
        let (_, mut st) = state();
        assert_eq!(
            apply_task_state_change(&mut st, &change("RUNNING", vec![]), 1.0),
            ChangeOutcome::UnknownTask
        );
    }
}
