//! `RegisterContainerInstance`, `DeregisterContainerInstance`,
//! `ListContainerInstances`, `DescribeContainerInstances`,
//! `UpdateContainerAgent`.

use super::{clusters, paginate, ApiError};
use crate::agent_update::{self, Refusal};
use crate::arn;
use crate::clock;
use crate::placement::Capacity;
use crate::store::{InstanceRecord, State};
use crate::Context;
use ecs_model::ecs_api::{
    Attribute, ContainerInstance, DeregisterContainerInstanceRequest,
    DeregisterContainerInstanceResponse, DescribeContainerInstancesRequest,
    DescribeContainerInstancesResponse, Failure, ListContainerInstancesRequest,
    ListContainerInstancesResponse, RegisterContainerInstanceRequest,
    RegisterContainerInstanceResponse, UpdateContainerAgentRequest, UpdateContainerAgentResponse,
};

/// The attribute that tells the agent its availability zone.
const AZ_ATTRIBUTE: &str = "ecs.availability-zone";

/// The API view of an instance, with remaining resources and task counts
/// computed from the state.
pub(crate) fn view(state: &State, record: &InstanceRecord) -> ContainerInstance {
    let capacity = Capacity::of(state, record);
    let count = |status: &str| {
        let n = state
            .tasks_on(&record.id)
            .filter(|t| t.last_status() == status)
            .count();
        i64::try_from(n).unwrap_or(i64::MAX)
    };
    ContainerInstance {
        container_instance_arn: Some(record.arn.clone()),
        ec2_instance_id: record.ec2_instance_id.clone(),
        version: Some(record.version),
        version_info: Some(record.version_info.clone().unwrap_or_default()),
        remaining_resources: Some(capacity.remaining_resources(&record.registered_resources)),
        registered_resources: Some(record.registered_resources.clone()),
        status: Some(record.status.clone()),
        agent_connected: Some(record.agent_connected),
        agent_update_status: record
            .agent_update
            .as_ref()
            .map(|u| u.status.as_str().to_owned()),
        running_tasks_count: Some(count("RUNNING")),
        pending_tasks_count: Some(count("PENDING")),
        attributes: Some(record.all_attributes()),
        registered_at: Some(record.registered_at),
        attachments: Some(vec![]),
        tags: Some(record.tags.clone().unwrap_or_default()),
        ..ContainerInstance::default()
    }
}

/// The EC2 instance id in an instance identity document, if it has one.
fn ec2_instance_id(document: Option<&str>) -> Option<String> {
    let doc: serde_json::Value = serde_json::from_str(document?).ok()?;
    doc.get("instanceId")?.as_str().map(str::to_owned)
}

pub(super) fn register(
    ctx: &Context,
    req: RegisterContainerInstanceRequest,
) -> Result<RegisterContainerInstanceResponse, ApiError> {
    super::tags::validate_optional(req.tags.as_deref())?;
    let mut attributes = req.attributes.clone().unwrap_or_default();
    if !attributes.iter().any(|a| a.name == AZ_ATTRIBUTE) {
        attributes.push(Attribute {
            name: AZ_ATTRIBUTE.to_owned(),
            value: Some(format!("{}a", ctx.arns.region())),
            ..Attribute::default()
        });
    }
    let instance = ctx.store.update(|st| {
        let cluster = clusters::require(st, req.cluster.as_deref())?.name.clone();
        let now = clock::epoch_seconds();
        // A restarted agent sends the ARN it saved; keep it, known or not.
        let (id, arn) = match req
            .container_instance_arn
            .as_deref()
            .filter(|a| !a.is_empty())
        {
            Some(given) => {
                let id = arn::resource_id(given).to_owned();
                let arn = if given.starts_with("arn:") {
                    given.to_owned()
                } else {
                    ctx.arns.container_instance(&cluster, &id)
                };
                (id, arn)
            }
            None => {
                let id = arn::new_id();
                let arn = ctx.arns.container_instance(&cluster, &id);
                (id, arn)
            }
        };
        let previous = st.instances.get(&id);
        let record = InstanceRecord {
            id: id.clone(),
            arn: previous.map(|p| p.arn.clone()).unwrap_or(arn),
            cluster,
            ec2_instance_id: ec2_instance_id(req.instance_identity_document.as_deref())
                .or_else(|| previous.and_then(|p| p.ec2_instance_id.clone())),
            attributes: attributes.clone(),
            custom_attributes: previous
                .map(|p| p.custom_attributes.clone())
                .unwrap_or_default(),
            registered_resources: req.total_resources.clone().unwrap_or_default(),
            // Draining outlasts an agent restart, as in ECS.
            status: if previous.is_some_and(|p| p.status == "DRAINING") {
                "DRAINING".to_owned()
            } else {
                "ACTIVE".to_owned()
            },
            agent_connected: previous.is_some_and(|p| p.agent_connected),
            version_info: req
                .version_info
                .clone()
                .or_else(|| previous.and_then(|p| p.version_info.clone())),
            registered_at: previous.map_or(now, |p| p.registered_at),
            version: previous.map_or(1, |p| p.version.saturating_add(1)),
            tags: req
                .tags
                .clone()
                .or_else(|| previous.and_then(|p| p.tags.clone())),
            // An agent re-registering after an update finds it here; its
            // ACS connection completes it (crate::agent_update).
            agent_update: previous.and_then(|p| p.agent_update.clone()),
        };
        let reregistered = previous.is_some();
        st.instances.insert(id, record.clone());
        Ok::<_, ApiError>((view(st, &record), reregistered))
    });
    let (instance, reregistered) = instance?;
    tracing::info!(
        container_instance = instance
            .container_instance_arn
            .as_deref()
            .unwrap_or_default(),
        reregistered,
        "container instance registered"
    );
    Ok(RegisterContainerInstanceResponse {
        container_instance: Some(instance),
    })
}

pub(super) fn deregister(
    ctx: &Context,
    req: DeregisterContainerInstanceRequest,
) -> Result<DeregisterContainerInstanceResponse, ApiError> {
    let force = req.force.unwrap_or(false);
    let (instance, id) = ctx.store.update(|st| {
        let cluster = clusters::require(st, req.cluster.as_deref())?.name.clone();
        let id = arn::resource_id(&req.container_instance).to_owned();
        let record = st
            .instances
            .get(&id)
            .filter(|i| i.cluster == cluster)
            .cloned()
            .ok_or_else(|| {
                ApiError::InvalidParameter("Container instance not found.".to_owned())
            })?;
        let active: Vec<String> = st
            .tasks_on(&id)
            .filter(|t| !t.is_stopped())
            .map(|t| t.id.clone())
            .collect();
        if !active.is_empty() && !force {
            return Err(ApiError::InvalidParameter(
                "Found tasks on the container instance that are not STOPPED. Stop them first, or deregister with force."
                    .to_owned(),
            ));
        }
        let now = clock::epoch_seconds();
        for task_id in active {
            if let Some(task) = st.tasks.get_mut(&task_id) {
                crate::lifecycle::mark_stopped_without_agent(
                    task,
                    now,
                    "Container instance deregistered",
                    "TerminationNotice",
                );
            }
        }
        let mut record = record;
        record.status = "INACTIVE".to_owned();
        record.agent_connected = false;
        record.version = record.version.saturating_add(1);
        st.instances.insert(id.clone(), record.clone());
        Ok::<_, ApiError>((view(st, &record), id))
    })?;
    ctx.acs.disconnect(&id, "container instance deregistered");
    ctx.wake_services();
    tracing::info!(container_instance = %id, force, "container instance deregistered");
    Ok(DeregisterContainerInstanceResponse {
        container_instance: Some(instance),
    })
}

/// Starts updating the instance's agent to the plane's bundle
/// (crate::agent_update): the answer shows `agentUpdateStatus` `PENDING`,
/// and the stage goes to the agent at once if it is connected.
pub(super) fn update_agent(
    ctx: &Context,
    req: UpdateContainerAgentRequest,
) -> Result<UpdateContainerAgentResponse, ApiError> {
    if req.container_instance.is_empty() {
        return Err(ApiError::InvalidParameter(
            "containerInstance is required.".to_owned(),
        ));
    }
    let (instance, id) = ctx.store.update(|st| {
        let cluster = clusters::require(st, req.cluster.as_deref())?.name.clone();
        let id = arn::resource_id(&req.container_instance).to_owned();
        let record = st
            .instances
            .get_mut(&id)
            .filter(|i| i.cluster == cluster)
            .ok_or_else(|| {
                ApiError::InvalidParameter("Container instance not found.".to_owned())
            })?;
        if record.status != "ACTIVE" {
            return Err(ApiError::Client(
                "The container instance is not ACTIVE.".to_owned(),
            ));
        }
        agent_update::start(record, ctx.agent_update.as_deref()).map_err(|refusal| match refusal {
            Refusal::NoBundle => ApiError::NoUpdateAvailable(
                "There is no update available for this container agent (ecs-local was started without --agent-update-bundle).".to_owned(),
            ),
            Refusal::AlreadyUpdated => ApiError::NoUpdateAvailable(
                "There is no update available for this container agent: it already runs the offered bundle.".to_owned(),
            ),
            Refusal::InProgress(status) => ApiError::UpdateInProgress(format!(
                "An agent update is already in progress on this container instance (agentUpdateStatus {}).",
                status.as_str()
            )),
        })?;
        let record = record.clone();
        Ok::<_, ApiError>((view(st, &record), id))
    })?;
    tracing::info!(container_instance = %id, "container agent update requested");
    ctx.acs.stage_update(&id);
    Ok(UpdateContainerAgentResponse {
        container_instance: Some(instance),
    })
}

pub(super) fn list(
    ctx: &Context,
    req: ListContainerInstancesRequest,
) -> Result<ListContainerInstancesResponse, ApiError> {
    let filter = match req.filter.as_deref().filter(|f| !f.trim().is_empty()) {
        Some(text) => Some(
            crate::query::parse(text)
                .map_err(|e| ApiError::InvalidParameter(e.message().to_owned()))?,
        ),
        None => None,
    };
    let arns = ctx.store.read(|st| {
        let cluster = clusters::require(st, req.cluster.as_deref())?.name.clone();
        Ok::<_, ApiError>(
            st.instances
                .values()
                .filter(|i| i.cluster == cluster)
                .filter(|i| match req.status.as_deref() {
                    Some(status) => i.status == status,
                    None => i.status == "ACTIVE" || i.status == "DRAINING",
                })
                .filter(|i| {
                    filter.as_ref().is_none_or(|expression| {
                        let capacity = Capacity::of(st, i);
                        let groups: Vec<&str> =
                            capacity.groups.iter().map(String::as_str).collect();
                        expression.matches(&capacity.facts(&groups))
                    })
                })
                .map(|i| i.arn.clone())
                .collect::<Vec<_>>(),
        )
    })?;
    let (container_instance_arns, next_token) =
        paginate(arns, req.next_token.as_deref(), req.max_results)?;
    Ok(ListContainerInstancesResponse {
        container_instance_arns,
        next_token,
    })
}

pub(super) fn describe(
    ctx: &Context,
    req: DescribeContainerInstancesRequest,
) -> Result<DescribeContainerInstancesResponse, ApiError> {
    if req.container_instances.is_empty() || req.container_instances.len() > 100 {
        return Err(ApiError::InvalidParameter(
            "containerInstances must name between 1 and 100 container instances.".to_owned(),
        ));
    }
    let with_tags = super::includes_tags(&req.include);
    ctx.store.read(|st| {
        let cluster = clusters::require(st, req.cluster.as_deref())?.name.clone();
        let mut out = DescribeContainerInstancesResponse::default();
        for param in &req.container_instances {
            let id = arn::resource_id(param);
            match st.instances.get(id).filter(|i| i.cluster == cluster) {
                Some(record) => {
                    let mut instance = view(st, record);
                    if !with_tags {
                        // Tags only when asked for, as ECS answers.
                        instance.tags = None;
                    }
                    out.container_instances.push(instance);
                }
                None => out.failures.push(super::missing(param, || {
                    ctx.arns.container_instance(&cluster, id)
                })),
            }
        }
        Ok(out)
    })
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct UpdateStateRequest {
    cluster: Option<String>,
    container_instances: Option<Vec<String>>,
    status: Option<String>,
}

/// At most this many instances per `UpdateContainerInstancesState` call.
const UPDATE_STATE_BATCH: usize = 10;

/// ACTIVE ↔ DRAINING. A draining instance gets no new tasks (placement only
/// considers ACTIVE instances); the service scheduler replaces its service
/// tasks elsewhere and then stops them, while other tasks keep running.
pub(super) fn update_state(
    ctx: &Context,
    req: UpdateStateRequest,
) -> Result<serde_json::Value, ApiError> {
    let status = req.status.unwrap_or_default();
    if status != "ACTIVE" && status != "DRAINING" {
        return Err(ApiError::InvalidParameter(format!(
            "Invalid status {status:?}: use ACTIVE or DRAINING."
        )));
    }
    let params = req.container_instances.unwrap_or_default();
    if params.is_empty() || params.len() > UPDATE_STATE_BATCH {
        return Err(ApiError::InvalidParameter(format!(
            "containerInstances must name 1 to {UPDATE_STATE_BATCH} container instances."
        )));
    }
    let (instances, failures) = ctx.store.update(|st| {
        let cluster = clusters::require(st, req.cluster.as_deref())?.name.clone();
        let mut changed = Vec::new();
        let mut failures = Vec::new();
        for param in &params {
            let id = arn::resource_id(param).to_owned();
            match st
                .instances
                .get_mut(&id)
                .filter(|i| i.cluster == cluster && i.status != "INACTIVE")
            {
                Some(record) => {
                    if record.status != status {
                        record.status = status.clone();
                        record.version = record.version.saturating_add(1);
                    }
                    changed.push(id);
                }
                None => failures.push(Failure {
                    arn: Some(param.clone()),
                    reason: Some("MISSING".to_owned()),
                    detail: None,
                }),
            }
        }
        let views: Vec<_> = changed
            .iter()
            .filter_map(|id| st.instances.get(id))
            .map(|record| view(st, record))
            .collect();
        Ok::<_, ApiError>((views, failures))
    })?;
    tracing::info!(status, instances = ?params, "container instance state updated");
    ctx.wake_services();
    Ok(serde_json::json!({ "containerInstances": instances, "failures": failures }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_instance_id_from_identity_document() {
        assert_eq!(
            ec2_instance_id(Some(r#"{"instanceId":"i-1","region":"x"}"#)).as_deref(),
            Some("i-1")
        );
        assert_eq!(ec2_instance_id(Some("not json")), None);
        assert_eq!(ec2_instance_id(None), None);
    }
}
