//! `RegisterTaskDefinition` (with its validation), `DescribeTaskDefinition`,
//! and the rest of a definition's life as ECS has it: `DeregisterTaskDefinition`
//! (ACTIVE → INACTIVE; running tasks keep running and the revision can still
//! be described and run by revision), `DeleteTaskDefinitions` (INACTIVE →
//! DELETE_IN_PROGRESS), `ListTaskDefinitions` and
//! `ListTaskDefinitionFamilies`.

use super::ApiError;
use crate::arn::{self, ACCOUNT_ID};
use crate::clock;
use crate::lifecycle;
use crate::placement::{self, parse_task_cpu, parse_task_memory};
use crate::store::State;
use crate::Context;
use ecs_model::ecs_api::{
    Attribute, ContainerDefinition, DescribeTaskDefinitionRequest, DescribeTaskDefinitionResponse,
    RegisterTaskDefinitionRequest, RegisterTaskDefinitionResponse, TaskDefinition,
};
use std::collections::{BTreeSet, HashSet};

fn valid_name(name: &str) -> bool {
    (1..=255).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn client(message: impl Into<String>) -> ApiError {
    ApiError::Client(message.into())
}

/// Whether the definition may run on EC2, where every container needs a
/// memory limit unless the task has one.
fn targets_ec2(req: &RegisterTaskDefinitionRequest) -> bool {
    match &req.requires_compatibilities {
        None => true,
        Some(list) if list.is_empty() => true,
        Some(list) => list.iter().any(|c| c == "EC2" || c == "EXTERNAL"),
    }
}

fn parse_port_range(text: &str) -> Option<(u16, u16)> {
    let (a, b) = text.trim().split_once('-')?;
    let a: u16 = a.trim().parse().ok()?;
    let b: u16 = b.trim().parse().ok()?;
    (a >= 1 && a < b).then_some((a, b))
}

fn validate_container(
    c: &ContainerDefinition,
    names: &HashSet<&str>,
    volumes: &HashSet<&str>,
    network_mode: &str,
    needs_memory: bool,
    host_ports: &mut BTreeSet<(String, i64)>,
) -> Result<(), ApiError> {
    let name = c.name.as_deref().unwrap_or_default();
    if c.image.as_deref().is_none_or(|i| i.trim().is_empty()) {
        return Err(client("Container.image should not be null or empty."));
    }
    let invalid = |what: &str| client(format!("Invalid setting for container '{name}'. {what}"));
    if c.memory.is_some_and(|m| m <= 0) || c.memory_reservation.is_some_and(|m| m <= 0) {
        return Err(invalid(
            "'memory' and 'memoryReservation' must be positive.",
        ));
    }
    if c.cpu.is_some_and(|v| v < 0) {
        return Err(invalid("'cpu' must not be negative."));
    }
    if needs_memory && c.memory.is_none() && c.memory_reservation.is_none() {
        return Err(invalid(
            "At least one of 'memory' or 'memoryReservation' must be specified.",
        ));
    }
    if let (Some(hard), Some(soft)) = (c.memory, c.memory_reservation) {
        if hard < soft {
            return Err(invalid(
                "'memory' must be greater than or equal to 'memoryReservation'.",
            ));
        }
    }
    for pm in c.port_mappings.iter().flatten() {
        let protocol = pm.protocol.as_deref().unwrap_or("tcp");
        if protocol != "tcp" && protocol != "udp" {
            return Err(invalid(&format!(
                "Port mapping protocol '{protocol}' is not valid; use tcp or udp."
            )));
        }
        match (&pm.container_port_range, pm.container_port) {
            (Some(range), None) => {
                if parse_port_range(range).is_none() {
                    return Err(invalid(&format!(
                        "containerPortRange '{range}' is not a valid range such as 8000-8010."
                    )));
                }
                if pm.host_port.is_some_and(|p| p != 0) {
                    return Err(invalid(
                        "hostPort cannot be set together with containerPortRange.",
                    ));
                }
            }
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "A port mapping cannot have both containerPort and containerPortRange.",
                ))
            }
            (None, None) => {
                return Err(invalid(
                    "A port mapping needs a containerPort or a containerPortRange.",
                ))
            }
            (None, Some(port)) => {
                if !(1..=65535).contains(&port) {
                    return Err(invalid(&format!(
                        "containerPort {port} is not between 1 and 65535."
                    )));
                }
                let host = pm.host_port.unwrap_or(0);
                if !(0..=65535).contains(&host) {
                    return Err(invalid(&format!(
                        "hostPort {host} is not between 0 and 65535."
                    )));
                }
                let same_port_required = network_mode == "host" || network_mode == "awsvpc";
                if same_port_required && host != 0 && host != port {
                    return Err(invalid(&format!(
                        "When networkMode={network_mode}, hostPort must be empty or equal to containerPort."
                    )));
                }
                let static_port = if same_port_required { port } else { host };
                if static_port != 0 && !host_ports.insert((protocol.to_owned(), static_port)) {
                    return Err(invalid(&format!(
                        "Host port {static_port}/{protocol} is used more than once in this task definition."
                    )));
                }
            }
        }
    }
    for dep in c.depends_on.iter().flatten() {
        let target = dep.container_name.as_deref().unwrap_or_default();
        if !names.contains(target) {
            return Err(invalid(&format!(
                "It depends on container '{target}', which is not defined in this task definition."
            )));
        }
        if target == name {
            return Err(invalid("A container cannot depend on itself."));
        }
        let condition = dep.condition.as_deref().unwrap_or_default();
        if !["START", "COMPLETE", "SUCCESS", "HEALTHY"].contains(&condition) {
            return Err(invalid(&format!(
                "Dependency condition '{condition}' is not valid; use START, COMPLETE, SUCCESS or HEALTHY."
            )));
        }
    }
    for link in c.links.iter().flatten() {
        let target = link.split(':').next().unwrap_or_default();
        if !names.contains(target) {
            return Err(invalid(&format!(
                "It links to container '{target}', which is not defined in this task definition."
            )));
        }
    }
    for vf in c.volumes_from.iter().flatten() {
        let source = vf.source_container.as_deref().unwrap_or_default();
        if !names.contains(source) {
            return Err(invalid(&format!(
                "volumesFrom names container '{source}', which is not defined in this task definition."
            )));
        }
    }
    for mp in c.mount_points.iter().flatten() {
        let source = mp.source_volume.as_deref().unwrap_or_default();
        if !volumes.contains(source) {
            return Err(invalid(&format!(
                "Mount point source volume '{source}' is not defined in the task definition's volumes."
            )));
        }
        if mp.container_path.as_deref().is_none_or(str::is_empty) {
            return Err(invalid("A mount point needs a containerPath."));
        }
    }
    if let Some(period) = c
        .restart_policy
        .as_ref()
        .and_then(|p| p.restart_attempt_period)
    {
        if !(60..=1800).contains(&period) {
            return Err(invalid(
                "restartPolicy.restartAttemptPeriod must be between 60 and 1800 seconds.",
            ));
        }
    }
    if let Some(hc) = &c.health_check {
        if hc.command.as_ref().is_none_or(Vec::is_empty) {
            return Err(invalid("healthCheck.command must not be empty."));
        }
    }
    Ok(())
}

/// Checks a registration request the way ECS does, with ECS-style messages.
pub(crate) fn validate(req: &RegisterTaskDefinitionRequest) -> Result<(), ApiError> {
    let family = req.family.as_deref().unwrap_or_default();
    if family.is_empty() {
        return Err(client("Family must not be empty."));
    }
    if !valid_name(family) {
        return Err(client(
            "Family contains invalid characters. Up to 255 letters (uppercase and lowercase), numbers, hyphens, and underscores are allowed.",
        ));
    }
    let network_mode = req.network_mode.as_deref().unwrap_or("bridge");
    if !["bridge", "host", "awsvpc", "none"].contains(&network_mode) {
        return Err(client(format!(
            "Network mode '{network_mode}' is not valid. Valid values: bridge, host, awsvpc, none."
        )));
    }
    if let Some(pid) = req.pid_mode.as_deref() {
        if pid != "host" && pid != "task" {
            return Err(client(format!(
                "pidMode '{pid}' is not valid; use host or task."
            )));
        }
    }
    if let Some(ipc) = req.ipc_mode.as_deref() {
        if !["host", "task", "none"].contains(&ipc) {
            return Err(client(format!(
                "ipcMode '{ipc}' is not valid; use host, task or none."
            )));
        }
    }
    if let Some(cpu) = req.cpu.as_deref() {
        if parse_task_cpu(cpu).is_none_or(|v| v <= 0) {
            return Err(client(format!("Invalid 'cpu' setting for task: '{cpu}'.")));
        }
    }
    if let Some(memory) = req.memory.as_deref() {
        if parse_task_memory(memory).is_none_or(|v| v <= 0) {
            return Err(client(format!(
                "Invalid 'memory' setting for task: '{memory}'."
            )));
        }
    }
    let containers = req.container_definitions.as_deref().unwrap_or_default();
    if containers.is_empty() {
        return Err(client("Container list cannot be empty."));
    }
    let mut names = HashSet::new();
    for c in containers {
        let name = c.name.as_deref().unwrap_or_default();
        if name.is_empty() {
            return Err(client("Container.name should not be null or empty."));
        }
        if !valid_name(name) {
            return Err(client(format!(
                "Container name '{name}' is not valid. Up to 255 letters (uppercase and lowercase), numbers, hyphens, and underscores are allowed."
            )));
        }
        if !names.insert(name) {
            return Err(client(format!(
                "Container names must be unique within a task definition: '{name}' is used more than once."
            )));
        }
    }
    let mut volumes = HashSet::new();
    for v in req.volumes.iter().flatten() {
        let name = v.name.as_deref().unwrap_or_default();
        if name.is_empty() {
            return Err(client("Volume.name should not be null or empty."));
        }
        if !volumes.insert(name) {
            return Err(client(format!(
                "Volume names must be unique within a task definition: '{name}' is used more than once."
            )));
        }
    }
    let needs_memory = targets_ec2(req) && req.memory.is_none();
    let mut host_ports = BTreeSet::new();
    for c in containers {
        validate_container(
            c,
            &names,
            &volumes,
            network_mode,
            needs_memory,
            &mut host_ports,
        )?;
    }
    if containers.iter().all(|c| c.essential == Some(false)) {
        return Err(client(
            "A task definition must have at least one essential container.",
        ));
    }
    Ok(())
}

/// Adds the defaults ECS fills in on registration (the user's members are
/// all kept).
fn with_defaults(mut c: ContainerDefinition, network_mode: &str) -> ContainerDefinition {
    c.cpu.get_or_insert(0);
    c.essential.get_or_insert(true);
    c.environment.get_or_insert_with(Vec::new);
    c.mount_points.get_or_insert_with(Vec::new);
    c.volumes_from.get_or_insert_with(Vec::new);
    for pm in c.port_mappings.get_or_insert_with(Vec::new) {
        pm.protocol.get_or_insert_with(|| "tcp".to_owned());
        if network_mode == "host" || network_mode == "awsvpc" {
            if let Some(port) = pm.container_port {
                pm.host_port = Some(port);
            }
        }
    }
    c
}

/// The instance attributes ECS lists in `requiresAttributes` for what this
/// ecs-local understands: what placement asks for with the definition's own
/// roles (task role, logging drivers, secrets, environment files, registry
/// authentication; see `placement::required_attributes`).
fn requires_attributes(definition: &TaskDefinition) -> Vec<Attribute> {
    let (task_role, execution_role) = lifecycle::effective_roles(definition, None);
    placement::required_attributes(definition, task_role.is_some(), execution_role.is_some())
        .into_iter()
        .map(|name| Attribute {
            name: name.to_owned(),
            ..Attribute::default()
        })
        .collect()
}

pub(super) fn register(
    ctx: &Context,
    req: RegisterTaskDefinitionRequest,
) -> Result<RegisterTaskDefinitionResponse, ApiError> {
    validate(&req)?;
    super::tags::validate_optional(req.tags.as_deref())?;
    let tags = req.tags.clone();
    let definition = ctx.store.update(|st| {
        let family = req.family.clone().unwrap_or_default();
        let revisions = st.task_definitions.get_or_default(&family);
        let revision = i64::try_from(revisions.len()).unwrap_or(i64::MAX - 1) + 1;
        let network_mode = req.network_mode.as_deref().unwrap_or("bridge").to_owned();
        let mut compatibilities = vec!["EXTERNAL".to_owned(), "EC2".to_owned()];
        if req
            .requires_compatibilities
            .iter()
            .flatten()
            .any(|c| c == "FARGATE")
        {
            compatibilities.push("FARGATE".to_owned());
        }
        let mut definition = TaskDefinition {
            task_definition_arn: Some(ctx.arns.task_definition(&family, revision)),
            container_definitions: req
                .container_definitions
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(|c| with_defaults(c, &network_mode))
                .collect(),
            family: Some(family),
            task_role_arn: req.task_role_arn.clone(),
            execution_role_arn: req.execution_role_arn.clone(),
            network_mode: req.network_mode.clone(),
            revision: Some(revision),
            volumes: Some(req.volumes.clone().unwrap_or_default()),
            status: Some("ACTIVE".to_owned()),
            requires_attributes: None,
            compatibilities: Some(compatibilities),
            requires_compatibilities: req.requires_compatibilities.clone(),
            cpu: req.cpu.clone(),
            memory: req.memory.clone(),
            pid_mode: req.pid_mode.clone(),
            ipc_mode: req.ipc_mode.clone(),
            registered_at: Some(clock::epoch_seconds()),
            deregistered_at: None,
            registered_by: Some(format!("arn:aws:iam::{ACCOUNT_ID}:root")),
            extra: untyped_members(&req.extra),
        };
        definition.requires_attributes = Some(requires_attributes(&definition));
        revisions.push(definition.clone());
        if let Some(tags) = tags.clone().filter(|t| !t.is_empty()) {
            let key = format!(
                "{}:{revision}",
                definition.family.as_deref().unwrap_or_default()
            );
            st.task_definition_tags.insert(key, tags);
        }
        Ok::<_, ApiError>(definition)
    })?;
    tracing::info!(
        task_definition = definition
            .task_definition_arn
            .as_deref()
            .unwrap_or_default(),
        "task definition registered"
    );
    Ok(RegisterTaskDefinitionResponse {
        task_definition: Some(definition),
        tags,
    })
}

/// Members of a `TaskDefinition` the plane sets itself: a request that
/// names them is not echoed with them twice.
const PLANE_MEMBERS: [&str; 9] = [
    "taskDefinitionArn",
    "revision",
    "status",
    "requiresAttributes",
    "compatibilities",
    "registeredAt",
    "deregisteredAt",
    "registeredBy",
    "tags",
];

/// The request members `DescribeTaskDefinition` echoes as given: those
/// the model does not type, less the ones the plane sets.
fn untyped_members(extra: &ecs_model::ecs_api::Extra) -> ecs_model::ecs_api::Extra {
    extra
        .iter()
        .filter(|(k, _)| !PLANE_MEMBERS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Finds a task definition by `family`, `family:revision` or ARN. A family
/// alone means its latest ACTIVE revision.
pub(crate) fn find<'a>(state: &'a State, param: &str) -> Option<&'a TaskDefinition> {
    let reference = arn::task_definition_ref(param)?;
    match reference.revision {
        Some(revision) => state.task_definition(&reference.family, revision),
        None => state
            .task_definitions
            .get(&reference.family)?
            .iter()
            .rev()
            .find(|d| d.status.as_deref() == Some("ACTIVE")),
    }
}

pub(super) fn describe(
    ctx: &Context,
    req: DescribeTaskDefinitionRequest,
) -> Result<DescribeTaskDefinitionResponse, ApiError> {
    let with_tags = super::includes_tags(&req.include);
    let (definition, tags) = ctx
        .store
        .read(|st| {
            let definition = find(st, &req.task_definition)?.clone();
            let tags = st
                .task_definition_tags(
                    definition.family.as_deref().unwrap_or_default(),
                    definition.revision.unwrap_or(0),
                )
                .to_vec();
            Some((definition, tags))
        })
        .ok_or_else(|| client("Unable to describe task definition."))?;
    Ok(DescribeTaskDefinitionResponse {
        task_definition: Some(definition),
        // Only asked-for tags, as ECS answers.
        tags: with_tags.then_some(tags),
    })
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DeregisterRequest {
    task_definition: Option<String>,
}

/// A `family:revision` or ARN naming one revision exactly (a family alone
/// is refused: deregistering and deleting name revisions).
fn revision_of(state: &State, param: &str) -> Result<(String, usize), ApiError> {
    let reference = arn::task_definition_ref(param)
        .ok_or_else(|| ApiError::InvalidParameter(format!("Invalid revision {param:?}.")))?;
    let revision = reference.revision.ok_or_else(|| {
        ApiError::InvalidParameter(format!(
            "Invalid revision number. Number: {param}; a revision (family:revision) or an ARN is required."
        ))
    })?;
    state
        .task_definition(&reference.family, revision)
        .ok_or_else(|| client("The specified task definition does not exist."))?;
    let index = usize::try_from(revision - 1)
        .map_err(|_| client("The specified task definition does not exist."))?;
    Ok((reference.family, index))
}

pub(super) fn deregister(
    ctx: &Context,
    req: DeregisterRequest,
) -> Result<serde_json::Value, ApiError> {
    let param = req
        .task_definition
        .ok_or_else(|| ApiError::InvalidParameter("taskDefinition is required.".to_owned()))?;
    let definition = ctx.store.update(|st| {
        let (family, index) = revision_of(st, &param)?;
        let definition = st
            .task_definitions
            .get_mut(&family)
            .and_then(|revisions| revisions.get_mut(index))
            .ok_or_else(|| client("The specified task definition does not exist."))?;
        if definition.status.as_deref() == Some("ACTIVE") {
            definition.status = Some("INACTIVE".to_owned());
            definition.deregistered_at = Some(clock::epoch_seconds());
        }
        Ok::<_, ApiError>(definition.clone())
    })?;
    tracing::info!(task_definition = param, "task definition deregistered");
    Ok(serde_json::json!({ "taskDefinition": definition }))
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DeleteRequest {
    task_definitions: Option<Vec<String>>,
}

/// At most this many revisions per `DeleteTaskDefinitions` call, as ECS.
const DELETE_BATCH: usize = 10;

pub(super) fn delete(ctx: &Context, req: DeleteRequest) -> Result<serde_json::Value, ApiError> {
    let params = req.task_definitions.unwrap_or_default();
    if params.is_empty() || params.len() > DELETE_BATCH {
        return Err(ApiError::InvalidParameter(format!(
            "taskDefinitions must name 1 to {DELETE_BATCH} task definitions."
        )));
    }
    let (deleted, failures) = ctx.store.update(|st| {
        let mut deleted = Vec::new();
        let mut failures = Vec::new();
        for param in &params {
            let mut fail = |reason: &str| {
                failures.push(serde_json::json!({"arn": param, "reason": reason}));
            };
            let Ok((family, index)) = revision_of(st, param) else {
                fail("The specified task definition does not exist.");
                continue;
            };
            let Some(definition) = st
                .task_definitions
                .get_mut(&family)
                .and_then(|revisions| revisions.get_mut(index))
            else {
                fail("The specified task definition does not exist.");
                continue;
            };
            match definition.status.as_deref() {
                Some("ACTIVE") => fail(
                    "The specified task definition is still in ACTIVE status. Please deregister the target and try again.",
                ),
                _ => {
                    definition.status = Some("DELETE_IN_PROGRESS".to_owned());
                    deleted.push(definition.clone());
                }
            }
        }
        Ok::<_, ApiError>((deleted, failures))
    })?;
    Ok(serde_json::json!({ "taskDefinitions": deleted, "failures": failures }))
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ListRequest {
    family_prefix: Option<String>,
    status: Option<String>,
    sort: Option<String>,
    max_results: Option<i64>,
    next_token: Option<String>,
}

/// ARNs of the revisions with `status` (default ACTIVE), of the family
/// `familyPrefix` names exactly (as ECS reads it here), by family and
/// revision, ascending unless `sort` is DESC.
pub(super) fn list(ctx: &Context, req: ListRequest) -> Result<serde_json::Value, ApiError> {
    let status = req.status.unwrap_or_else(|| "ACTIVE".to_owned());
    if !["ACTIVE", "INACTIVE", "DELETE_IN_PROGRESS"].contains(&status.as_str()) {
        return Err(ApiError::InvalidParameter(format!(
            "Invalid status {status:?}: use ACTIVE, INACTIVE or DELETE_IN_PROGRESS."
        )));
    }
    let descending = match req.sort.as_deref() {
        None | Some("ASC") => false,
        Some("DESC") => true,
        Some(other) => {
            return Err(ApiError::InvalidParameter(format!(
                "Invalid sort {other:?}: use ASC or DESC."
            )))
        }
    };
    let mut arns: Vec<String> = ctx.store.read(|st| {
        st.task_definitions
            .iter()
            .filter(|(family, _)| req.family_prefix.as_ref().is_none_or(|f| f == *family))
            .flat_map(|(_, revisions)| revisions.iter())
            .filter(|d| d.status.as_deref() == Some(status.as_str()))
            .filter_map(|d| d.task_definition_arn.clone())
            .collect()
    });
    if descending {
        arns.reverse();
    }
    let (page, next_token) = super::paginate(arns, req.next_token.as_deref(), req.max_results)?;
    Ok(with_next_token(
        serde_json::json!({ "taskDefinitionArns": page }),
        next_token,
    ))
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ListFamiliesRequest {
    family_prefix: Option<String>,
    status: Option<String>,
    max_results: Option<i64>,
    next_token: Option<String>,
}

/// Family names starting with `familyPrefix`: with an ACTIVE revision
/// (`status` ACTIVE), with none (INACTIVE), or all (ALL, the default).
pub(super) fn list_families(
    ctx: &Context,
    req: ListFamiliesRequest,
) -> Result<serde_json::Value, ApiError> {
    let status = req.status.unwrap_or_else(|| "ALL".to_owned());
    if !["ACTIVE", "INACTIVE", "ALL"].contains(&status.as_str()) {
        return Err(ApiError::InvalidParameter(format!(
            "Invalid status {status:?}: use ACTIVE, INACTIVE or ALL."
        )));
    }
    let families: Vec<String> = ctx.store.read(|st| {
        st.task_definitions
            .iter()
            .filter(|(family, _)| {
                req.family_prefix
                    .as_ref()
                    .is_none_or(|p| family.starts_with(p.as_str()))
            })
            .filter(|(_, revisions)| {
                let active = revisions
                    .iter()
                    .any(|d| d.status.as_deref() == Some("ACTIVE"));
                match status.as_str() {
                    "ACTIVE" => active,
                    "INACTIVE" => !active,
                    _ => true,
                }
            })
            .map(|(family, _)| family.clone())
            .collect()
    });
    let (page, next_token) = super::paginate(families, req.next_token.as_deref(), req.max_results)?;
    Ok(with_next_token(
        serde_json::json!({ "families": page }),
        next_token,
    ))
}

/// `nextToken` is left out of the last page.
fn with_next_token(mut page: serde_json::Value, next_token: Option<String>) -> serde_json::Value {
    if let Some(token) = next_token {
        page["nextToken"] = serde_json::json!(token);
    }
    page
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn req(v: serde_json::Value) -> RegisterTaskDefinitionRequest {
        serde_json::from_value(v).unwrap()
    }

    fn message(v: serde_json::Value) -> String {
        match validate(&req(v)) {
            Err(ApiError::Client(m)) => m,
            other => panic!("expected a ClientException, got {other:?}"),
        }
    }

    #[test]
    fn accepts_a_plain_definition() {
        validate(&req(serde_json::json!({
            "family": "web",
            "containerDefinitions": [
                {"name": "a", "image": "nginx", "memory": 64,
                 "portMappings": [{"containerPort": 80, "hostPort": 8080}],
                 "dependsOn": [{"containerName": "b", "condition": "START"}],
                 "links": ["b:db"], "mountPoints": [{"sourceVolume": "v", "containerPath": "/v"}]},
                {"name": "b", "image": "redis", "memoryReservation": 32}
            ],
            "volumes": [{"name": "v", "host": {}}]
        })))
        .unwrap();
    }

    #[test]
    fn rejects_bad_definitions_with_clear_messages() {
        assert!(
            message(serde_json::json!({"family": "bad family", "containerDefinitions": []}))
                .contains("Family")
        );
        assert_eq!(
            message(serde_json::json!({"family": "f", "containerDefinitions": []})),
            "Container list cannot be empty."
        );
        assert_eq!(
            message(
                serde_json::json!({"family": "f", "containerDefinitions": [{"name": "a", "memory": 4}]})
            ),
            "Container.image should not be null or empty."
        );
        assert!(message(serde_json::json!({"family": "f", "containerDefinitions": [{"name": "a", "image": "x"}]}))
            .contains("At least one of 'memory' or 'memoryReservation'"));
        assert!(
            message(serde_json::json!({"family": "f", "containerDefinitions": [
            {"name": "a", "image": "x", "memory": 4}, {"name": "a", "image": "y", "memory": 4}]}))
            .contains("unique")
        );
        assert!(message(serde_json::json!({"family": "f", "containerDefinitions": [
            {"name": "a", "image": "x", "memory": 4, "dependsOn": [{"containerName": "zz", "condition": "START"}]}]}))
            .contains("'zz'"));
        assert!(
            message(serde_json::json!({"family": "f", "containerDefinitions": [
            {"name": "a", "image": "x", "memory": 4, "portMappings": [{"containerPort": 70000}]}]}))
            .contains("70000")
        );
        assert!(message(serde_json::json!({"family": "f", "containerDefinitions": [
            {"name": "a", "image": "x", "memory": 4, "portMappings": [{"containerPort": 80, "hostPort": 80}]},
            {"name": "b", "image": "x", "memory": 4, "portMappings": [{"containerPort": 81, "hostPort": 80}]}]}))
            .contains("more than once"));
        assert!(message(serde_json::json!({"family": "f", "networkMode": "host", "containerDefinitions": [
            {"name": "a", "image": "x", "memory": 4, "portMappings": [{"containerPort": 80, "hostPort": 81}]}]}))
            .contains("networkMode=host"));
    }

    #[test]
    fn restart_attempt_period_is_within_ecs_limits() {
        let with_period = |period: i64| {
            message(serde_json::json!({"family": "f", "containerDefinitions": [{
                "name": "c", "image": "i", "memory": 32,
                "restartPolicy": {"enabled": true, "restartAttemptPeriod": period}}]}))
        };
        assert!(with_period(59).contains("between 60 and 1800"));
        assert!(with_period(1801).contains("between 60 and 1800"));
        validate(&req(
            serde_json::json!({"family": "f", "containerDefinitions": [{
            "name": "c", "image": "i", "memory": 32,
            "restartPolicy": {"enabled": true, "restartAttemptPeriod": 60}}]}),
        ))
        .unwrap();
    }

    #[test]
    fn task_level_memory_satisfies_containers() {
        validate(&req(serde_json::json!({
            "family": "f", "memory": "512", "cpu": "256",
            "containerDefinitions": [{"name": "a", "image": "x"}]
        })))
        .unwrap();
    }

    #[test]
    fn requires_attributes_lists_what_placement_asks_for_with_the_definition_roles() {
        let def: TaskDefinition = serde_json::from_value(serde_json::json!({
            "family": "f", "executionRoleArn": "arn:aws:iam::000000000000:role/exec",
            "containerDefinitions": [{
                "name": "a", "image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/a",
                "memory": 32,
                "secrets": [{"name": "S", "valueFrom": "/s"}],
                "logConfiguration": {"logDriver": "awslogs"}
            }]
        }))
        .unwrap();
        let names: Vec<String> = requires_attributes(&def)
            .into_iter()
            .map(|a| a.name)
            .collect();
        assert_eq!(
            names,
            [
                "com.amazonaws.ecs.capability.logging-driver.awslogs",
                "ecs.capability.execution-role-awslogs",
                "ecs.capability.secrets.ssm.environment-variables",
                "com.amazonaws.ecs.capability.ecr-auth",
                "ecs.capability.execution-role-ecr-pull",
            ]
        );
    }
}
