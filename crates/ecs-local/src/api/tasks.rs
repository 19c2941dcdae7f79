//! `RunTask` (placement), `StartTask` (named instances), `StopTask`,
//! `DescribeTasks`, `ListTasks`.

use super::{clusters, paginate, task_definitions, ApiError};
use crate::arn;
use crate::clock;
use crate::launch::{self, Launch};
use crate::lifecycle;
use crate::placement::{self, Capacity};
use crate::store::State;
use crate::store::TaskRecord;
use crate::Context;
use ecs_model::ecs_api::{
    DescribeTasksRequest, DescribeTasksResponse, Failure, ListTasksRequest, ListTasksResponse,
    RunTaskRequest, RunTaskResponse, StartTaskRequest, StopTaskRequest, StopTaskResponse, Tag,
    TaskDefinition, TaskOverride,
};
use std::collections::BTreeSet;

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::InvalidParameter(message.into())
}

/// Overrides must not make a task need less than nothing.
fn validate_overrides(overrides: Option<&TaskOverride>) -> Result<(), ApiError> {
    let Some(o) = overrides else { return Ok(()) };
    if let Some(cpu) = o.cpu.as_deref() {
        if placement::parse_task_cpu(cpu).is_none_or(|v| v <= 0) {
            return Err(invalid(format!("Invalid 'cpu' override: '{cpu}'.")));
        }
    }
    if let Some(memory) = o.memory.as_deref() {
        if placement::parse_task_memory(memory).is_none_or(|v| v <= 0) {
            return Err(invalid(format!("Invalid 'memory' override: '{memory}'.")));
        }
    }
    for c in o.container_overrides.iter().flatten() {
        let name = c.name.as_deref().unwrap_or_default();
        if c.cpu.is_some_and(|v| v < 0)
            || c.memory.is_some_and(|v| v <= 0)
            || c.memory_reservation.is_some_and(|v| v <= 0)
        {
            return Err(invalid(format!(
                "Invalid cpu or memory override for container '{name}'."
            )));
        }
        if let (Some(hard), Some(soft)) = (c.memory, c.memory_reservation) {
            if hard < soft {
                return Err(invalid(format!(
                    "Invalid override for container '{name}': memory must be greater than or equal to memoryReservation."
                )));
            }
        }
    }
    Ok(())
}

/// What RunTask and StartTask both check before touching the state.
fn check_task_request(
    overrides: Option<&TaskOverride>,
    tags: Option<&[Tag]>,
    propagate_tags: Option<&str>,
    network_configuration: Option<&serde_json::Value>,
) -> Result<(), ApiError> {
    validate_overrides(overrides)?;
    super::tags::validate_optional(tags)?;
    match propagate_tags {
        None | Some("TASK_DEFINITION" | "NONE") => {}
        Some("SERVICE") => {
            return Err(invalid(
                "propagateTags SERVICE applies only to tasks a service starts.",
            ))
        }
        Some(other) => {
            return Err(invalid(format!(
                "Invalid propagateTags '{other}'; use TASK_DEFINITION or NONE."
            )))
        }
    }
    if network_configuration.is_some_and(|n| !n.is_null()) {
        return Err(invalid(
            "networkConfiguration (awsvpc) is not supported by ecs-local.",
        ));
    }
    Ok(())
}

/// The task definition a RunTask or StartTask names, and the tags its
/// tasks get (`propagateTags` TASK_DEFINITION adds the definition's).
fn definition_and_tags(
    st: &State,
    task_definition: &str,
    propagate_tags: Option<&str>,
    tags: Option<&[Tag]>,
) -> Result<(TaskDefinition, Option<Vec<Tag>>), ApiError> {
    let definition = task_definitions::find(st, task_definition)
        .cloned()
        .ok_or_else(|| ApiError::Client("TaskDefinition not found.".to_owned()))?;
    if definition.status.as_deref() == Some("DELETE_IN_PROGRESS") {
        return Err(ApiError::Client(
            "TaskDefinition is being deleted and cannot be run.".to_owned(),
        ));
    }
    if definition.network_mode.as_deref() == Some("awsvpc") {
        return Err(invalid(
            "Tasks with networkMode awsvpc are not supported by ecs-local (no ENIs to attach).",
        ));
    }
    let propagated: &[Tag] = match propagate_tags {
        Some("TASK_DEFINITION") => st.task_definition_tags(
            definition.family.as_deref().unwrap_or_default(),
            definition.revision.unwrap_or(0),
        ),
        _ => &[],
    };
    let tags = launch::task_tags(propagated, tags);
    Ok((definition, tags))
}

fn default_group(group: Option<&String>, definition: &TaskDefinition) -> String {
    group.filter(|g| !g.is_empty()).cloned().unwrap_or_else(|| {
        format!(
            "family:{}",
            definition.family.as_deref().unwrap_or_default()
        )
    })
}

fn spec_error(e: lifecycle::SpecError) -> ApiError {
    match e {
        lifecycle::SpecError::UnknownOverride(_) => invalid(e.to_string()),
        other => ApiError::Server(other.to_string()),
    }
}

/// Logs the tasks started and hands their instances' agents the payloads.
fn announce(ctx: &Context, response: &RunTaskResponse, instances: Vec<String>) {
    for task in &response.tasks {
        tracing::info!(
            task = task.task_arn.as_deref().unwrap_or_default(),
            container_instance = task.container_instance_arn.as_deref().unwrap_or_default(),
            "task placed"
        );
    }
    for instance_id in instances {
        ctx.acs.deliver(&instance_id);
    }
}

pub(super) fn run(ctx: &Context, req: RunTaskRequest) -> Result<RunTaskResponse, ApiError> {
    let count = req.count.unwrap_or(1);
    if !(1..=10).contains(&count) {
        return Err(invalid("count must be between 1 and 10."));
    }
    if let Some(launch_type) = req.launch_type.as_deref() {
        if launch_type != "EC2" {
            return Err(invalid(format!(
                "Launch type {launch_type} is not supported by ecs-local; use EC2."
            )));
        }
    }
    if req
        .capacity_provider_strategy
        .as_ref()
        .is_some_and(|s| !s.is_empty())
    {
        return Err(invalid(
            "Capacity provider strategies are not supported by ecs-local.",
        ));
    }
    check_task_request(
        req.overrides.as_ref(),
        req.tags.as_deref(),
        req.propagate_tags.as_deref(),
        req.network_configuration.as_ref(),
    )?;
    let constraints =
        placement::constraints(req.placement_constraints.as_deref().unwrap_or_default())
            .map_err(invalid)?;
    let strategies = placement::strategies(req.placement_strategy.as_deref().unwrap_or_default())
        .map_err(invalid)?;
    let client_token = req.client_token.as_deref().filter(|t| !t.is_empty());
    if client_token.is_some_and(|t| t.len() > 64) {
        return Err(invalid("clientToken must be at most 64 characters."));
    }
    let (response, instances) = ctx.store.update(|st| {
        let cluster = clusters::require(st, req.cluster.as_deref())?.name.clone();
        if let Some(token) = client_token {
            // The same token again gets the tasks the first call started.
            let earlier: Vec<_> = st
                .tasks
                .with_client_token(token)
                .into_iter()
                .filter(|t| t.cluster == cluster)
                .map(|t| t.task.clone())
                .collect();
            if !earlier.is_empty() {
                let response = RunTaskResponse {
                    tasks: earlier,
                    failures: Vec::new(),
                };
                return Ok((response, Vec::new()));
            }
        }
        let (definition, tags) = definition_and_tags(
            st,
            &req.task_definition,
            req.propagate_tags.as_deref(),
            req.tags.as_deref(),
        )?;
        let mut capacities = launch::capacities(st, &cluster);
        if capacities.is_empty() {
            return Err(invalid(
                "No Container Instances were found in your cluster.",
            ));
        }
        let plan = Launch {
            cluster: &cluster,
            definition: &definition,
            overrides: req.overrides.as_ref(),
            group: default_group(req.group.as_ref(), &definition),
            started_by: req.started_by.clone(),
            tags,
            enable_execute_command: req.enable_execute_command.unwrap_or(false),
            service: None,
            constraints: &constraints,
            strategies: &strategies,
        };
        let count = usize::try_from(count).unwrap_or(1);
        let launched = launch::launch(
            &ctx.arns,
            st,
            &mut capacities,
            &plan,
            count,
            clock::epoch_seconds(),
            ctx.credentials_ttl,
        )
        .map_err(spec_error)?;
        let mut response = RunTaskResponse::default();
        for id in &launched.tasks {
            if let Some(record) = st.tasks.get_mut(id) {
                record.client_token = client_token.map(str::to_owned);
                response.tasks.push(record.task.clone());
            }
        }
        response.failures = failures(launched.shortfalls);
        Ok((response, launched.instances))
    })?;
    announce(ctx, &response, instances);
    Ok(response)
}

/// StartTask: one task on each named instance, which must be ACTIVE and
/// have room; no constraints or strategies apply.
pub(super) fn start(ctx: &Context, req: StartTaskRequest) -> Result<RunTaskResponse, ApiError> {
    if req.container_instances.is_empty() || req.container_instances.len() > 10 {
        return Err(invalid(
            "containerInstances must name between 1 and 10 container instances.",
        ));
    }
    check_task_request(
        req.overrides.as_ref(),
        req.tags.as_deref(),
        req.propagate_tags.as_deref(),
        req.network_configuration.as_ref(),
    )?;
    let (response, instances) = ctx.store.update(|st| {
        let cluster = clusters::require(st, req.cluster.as_deref())?.name.clone();
        let (definition, tags) = definition_and_tags(
            st,
            &req.task_definition,
            req.propagate_tags.as_deref(),
            req.tags.as_deref(),
        )?;
        let plan = Launch {
            cluster: &cluster,
            definition: &definition,
            overrides: req.overrides.as_ref(),
            group: default_group(req.group.as_ref(), &definition),
            started_by: req.started_by.clone(),
            tags,
            enable_execute_command: req.enable_execute_command.unwrap_or(false),
            service: None,
            constraints: &[],
            strategies: &[],
        };
        let now = clock::epoch_seconds();
        let mut response = RunTaskResponse::default();
        let mut shortfalls = Vec::new();
        let mut instances = Vec::new();
        for param in &req.container_instances {
            let id = arn::resource_id(param);
            let instance = st.instances.get(id).filter(|i| i.cluster == cluster);
            let status = instance.map(|i| i.status.clone());
            match (instance, status.as_deref()) {
                (Some(instance), Some("ACTIVE")) => {
                    let mut capacity = vec![Capacity::of(st, instance)];
                    let launched = launch::launch(
                        &ctx.arns,
                        st,
                        &mut capacity,
                        &plan,
                        1,
                        now,
                        ctx.credentials_ttl,
                    )
                    .map_err(spec_error)?;
                    for id in &launched.tasks {
                        if let Some(record) = st.tasks.get(id) {
                            response.tasks.push(record.task.clone());
                        }
                    }
                    instances.extend(launched.instances);
                    shortfalls.extend(launched.shortfalls);
                }
                (Some(_), Some(other)) => response.failures.push(Failure {
                    arn: Some(param.clone()),
                    reason: Some(other.to_owned()),
                    detail: None,
                }),
                _ => response.failures.push(Failure {
                    arn: Some(param.clone()),
                    reason: Some("MISSING".to_owned()),
                    detail: None,
                }),
            }
        }
        response.failures.extend(failures(shortfalls));
        Ok::<_, ApiError>((response, instances))
    })?;
    announce(ctx, &response, instances);
    Ok(response)
}

/// RunTask's `failures`: each instance's reason once, however many tasks
/// it refused.
fn failures(shortfalls: Vec<Vec<(String, placement::Shortfall)>>) -> Vec<Failure> {
    let distinct: BTreeSet<(String, &'static str, Option<String>)> = shortfalls
        .into_iter()
        .flatten()
        .map(|(arn, shortfall)| (arn, shortfall.reason(), shortfall.detail()))
        .collect();
    distinct
        .into_iter()
        .map(|(arn, reason, detail)| Failure {
            arn: Some(arn),
            reason: Some(reason.to_owned()),
            detail,
        })
        .collect()
}

pub(super) fn stop(ctx: &Context, req: StopTaskRequest) -> Result<StopTaskResponse, ApiError> {
    let reason = req
        .reason
        .clone()
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "Task stopped by user".to_owned());
    let (task, instance_id) = ctx.store.update(|st| {
        let cluster = clusters::require(st, req.cluster.as_deref())?.name.clone();
        let id = arn::resource_id(&req.task).to_owned();
        let record = st
            .tasks
            .get_mut(&id)
            .filter(|t| t.cluster == cluster)
            .ok_or_else(|| invalid("The referenced task was not found."))?;
        lifecycle::request_stop(
            record,
            &reason,
            lifecycle::USER_INITIATED,
            clock::epoch_seconds(),
        );
        Ok::<_, ApiError>((record.task.clone(), record.instance_id.clone()))
    })?;
    tracing::info!(
        task = task.task_arn.as_deref().unwrap_or_default(),
        reason,
        "task stop requested"
    );
    if let Some(instance_id) = instance_id {
        ctx.acs.deliver(&instance_id);
    }
    Ok(StopTaskResponse { task: Some(task) })
}

pub(super) fn describe(
    ctx: &Context,
    req: DescribeTasksRequest,
) -> Result<DescribeTasksResponse, ApiError> {
    if req.tasks.is_empty() || req.tasks.len() > 100 {
        return Err(invalid("tasks must name between 1 and 100 tasks."));
    }
    let with_tags = super::includes_tags(&req.include);
    ctx.store.read(|st| {
        let cluster = clusters::require(st, req.cluster.as_deref())?.name.clone();
        let mut out = DescribeTasksResponse::default();
        for param in &req.tasks {
            let id = arn::resource_id(param);
            match st.tasks.get(id).filter(|t| t.cluster == cluster) {
                Some(record) => {
                    let mut task = record.task.clone();
                    if !with_tags {
                        // Tags only when asked for, as ECS answers.
                        task.tags = None;
                    }
                    out.tasks.push(task);
                }
                None => out
                    .failures
                    .push(super::missing(param, || ctx.arns.task(&cluster, id))),
            }
        }
        Ok(out)
    })
}

pub(super) fn list(ctx: &Context, req: ListTasksRequest) -> Result<ListTasksResponse, ApiError> {
    let desired = req.desired_status.as_deref().unwrap_or("RUNNING");
    if !["RUNNING", "PENDING", "STOPPED"].contains(&desired) {
        return Err(invalid(format!(
            "desiredStatus '{desired}' is not valid; use RUNNING, PENDING or STOPPED."
        )));
    }
    let arns = ctx.store.read(|st| {
        let cluster = clusters::require(st, req.cluster.as_deref())?.name.clone();
        let instance = req.container_instance.as_deref().map(arn::resource_id);
        let mut tasks: Vec<&TaskRecord> = st
            .tasks
            .values()
            .filter(|t| t.cluster == cluster)
            .filter(|t| instance.is_none() || t.instance_id.as_deref() == instance)
            .filter(|t| req.family.as_ref().is_none_or(|f| &t.family == f))
            .filter(|t| {
                req.started_by
                    .as_ref()
                    .is_none_or(|s| t.task.started_by.as_ref() == Some(s))
            })
            .filter(|t| {
                req.service_name
                    .as_deref()
                    .is_none_or(|name| t.service.as_deref() == Some(name))
            })
            .filter(|t| {
                req.launch_type
                    .as_deref()
                    .is_none_or(|l| t.task.launch_type.as_deref() == Some(l))
            })
            .filter(|t| match desired {
                "STOPPED" => t.desired_status() == "STOPPED",
                // ECS lists tasks that are meant to run (desired RUNNING,
                // including the ones still PENDING) under RUNNING.
                "RUNNING" => t.desired_status() != "STOPPED",
                _ => t.desired_status() == "PENDING",
            })
            .collect();
        tasks.sort_by(|a, b| {
            let at = a.task.created_at.unwrap_or(0.0);
            let bt = b.task.created_at.unwrap_or(0.0);
            at.total_cmp(&bt).then_with(|| a.id.cmp(&b.id))
        });
        // Only the page's ARNs are copied.
        let (page, next_token) = paginate(tasks, req.next_token.as_deref(), req.max_results)?;
        let arns: Vec<String> = page.into_iter().map(|t| t.arn().to_owned()).collect();
        Ok::<_, ApiError>((arns, next_token))
    })?;
    let (task_arns, next_token) = arns;
    Ok(ListTasksResponse {
        task_arns,
        next_token,
    })
}
