//! `CreateService`, `UpdateService`, `DeleteService`, `DescribeServices`,
//! `ListServices`. The calls change the service record; the service
//! scheduler (crate::services) then starts and stops its tasks.

use super::{clusters, paginate, task_definitions, ApiError};
use crate::clock;
use crate::placement;
use crate::services::{self, ACTIVE, DAEMON, DRAINING, INACTIVE, REPLICA};
use crate::store::{ServiceRecord, State};
use crate::Context;
use ecs_model::ecs_api::{
    CreateServiceRequest, DeleteServiceRequest, DeploymentCircuitBreaker, DeploymentConfiguration,
    DeploymentController, DescribeServicesRequest, DescribeServicesResponse, ListServicesRequest,
    ListServicesResponse, PlacementConstraint, PlacementStrategy, Service, ServiceResponse,
    TaskDefinition, UpdateServiceRequest,
};

/// The most tasks a service may ask for (ECS's quota per service).
const MAX_DESIRED_COUNT: i64 = 5000;

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::InvalidParameter(message.into())
}

fn not_found() -> ApiError {
    ApiError::ServiceNotFound("Service not found.".to_owned())
}

fn not_active() -> ApiError {
    ApiError::ServiceNotActive("Service was not ACTIVE.".to_owned())
}

/// Up to 255 letters, digits, hyphens and underscores, as ECS allows.
fn valid_service_name(name: &str) -> bool {
    (1..=255).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The service name in a name or an ARN (`…:service/cluster/name` or the
/// old `…:service/name`).
fn service_name(param: &str) -> &str {
    let text = param.trim();
    if text.starts_with("arn:") {
        text.rsplit('/').next().unwrap_or(text)
    } else {
        text
    }
}

/// Members the plane cannot act on, refused by name rather than ignored.
fn refuse_unsupported(
    load_balancers: Option<&Vec<serde_json::Value>>,
    service_registries: Option<&Vec<serde_json::Value>>,
    capacity_providers: Option<&Vec<serde_json::Value>>,
    network_configuration: Option<&serde_json::Value>,
) -> Result<(), ApiError> {
    let given = |list: Option<&Vec<serde_json::Value>>| list.is_some_and(|l| !l.is_empty());
    if given(load_balancers) {
        return Err(invalid("Load balancers are not supported by ecs-local."));
    }
    if given(service_registries) {
        return Err(invalid(
            "Service registries (Cloud Map) are not supported by ecs-local.",
        ));
    }
    if given(capacity_providers) {
        return Err(invalid(
            "Capacity provider strategies are not supported by ecs-local.",
        ));
    }
    if network_configuration.is_some_and(|n| !n.is_null()) {
        return Err(invalid(
            "networkConfiguration (awsvpc) is not supported by ecs-local.",
        ));
    }
    Ok(())
}

fn check_propagate_tags(value: Option<&str>) -> Result<(), ApiError> {
    match value {
        None | Some("SERVICE" | "TASK_DEFINITION" | "NONE") => Ok(()),
        Some(other) => Err(invalid(format!(
            "Invalid propagateTags '{other}'; use SERVICE, TASK_DEFINITION or NONE."
        ))),
    }
}

/// The deployment configuration with ECS's defaults filled in, checked.
fn deployment_configuration(
    given: Option<&DeploymentConfiguration>,
    strategy: &str,
) -> Result<DeploymentConfiguration, ApiError> {
    let (min_default, max_default) = services::default_percents(strategy);
    let mut config = given.cloned().unwrap_or_default();
    let min = *config.minimum_healthy_percent.get_or_insert(min_default);
    let max = *config.maximum_percent.get_or_insert(max_default);
    config
        .deployment_circuit_breaker
        .get_or_insert(DeploymentCircuitBreaker::default());
    if !(0..=100).contains(&min) {
        return Err(invalid("minimumHealthyPercent must be between 0 and 100."));
    }
    if strategy == DAEMON && max != 100 {
        return Err(invalid(
            "maximumPercent must be 100 for a service with the DAEMON scheduling strategy.",
        ));
    }
    if !(100..=200).contains(&max) {
        return Err(invalid("maximumPercent must be between 100 and 200."));
    }
    if config.strategy.as_deref().is_some_and(|s| s != "ROLLING") {
        return Err(invalid(
            "Only the ROLLING deployment strategy is supported by ecs-local.",
        ));
    }
    Ok(config)
}

fn check_placement(
    constraints: Option<&[PlacementConstraint]>,
    strategies: Option<&[PlacementStrategy]>,
    scheduling: &str,
) -> Result<(), ApiError> {
    placement::constraints(constraints.unwrap_or_default()).map_err(invalid)?;
    let strategies = strategies.unwrap_or_default();
    if scheduling == DAEMON && !strategies.is_empty() {
        return Err(invalid(
            "Placement strategies are not supported with the DAEMON scheduling strategy.",
        ));
    }
    placement::strategies(strategies).map_err(invalid)?;
    Ok(())
}

/// The task definition a service names; ECS runs only ACTIVE ones.
fn definition<'a>(state: &'a State, param: &str) -> Result<&'a TaskDefinition, ApiError> {
    let definition = task_definitions::find(state, param)
        .ok_or_else(|| ApiError::Client("TaskDefinition not found.".to_owned()))?;
    if definition.status.as_deref() != Some("ACTIVE") {
        return Err(ApiError::Client("TaskDefinition is inactive.".to_owned()));
    }
    if definition.network_mode.as_deref() == Some("awsvpc") {
        return Err(invalid(
            "Tasks with networkMode awsvpc are not supported by ecs-local (no ENIs to attach).",
        ));
    }
    Ok(definition)
}

/// What DescribeServices and the other calls show: tags only when asked.
pub(super) fn view(record: &ServiceRecord, with_tags: bool) -> Service {
    let mut service = record.service.clone();
    if !with_tags {
        service.tags = None;
    }
    service
}

pub(super) fn create(
    ctx: &Context,
    req: CreateServiceRequest,
) -> Result<ServiceResponse, ApiError> {
    let name = req.service_name.trim().to_owned();
    if !valid_service_name(&name) {
        return Err(invalid(
            "serviceName must be 1 to 255 letters, numbers, hyphens and underscores.",
        ));
    }
    refuse_unsupported(
        req.load_balancers.as_ref(),
        req.service_registries.as_ref(),
        req.capacity_provider_strategy.as_ref(),
        req.network_configuration.as_ref(),
    )?;
    if req.service_connect_configuration.is_some() {
        return Err(invalid("Service Connect is not supported by ecs-local."));
    }
    if req.launch_type.as_deref().is_some_and(|l| l != "EC2") {
        return Err(invalid(format!(
            "Launch type {} is not supported by ecs-local; use EC2.",
            req.launch_type.as_deref().unwrap_or_default()
        )));
    }
    let scheduling = req
        .scheduling_strategy
        .clone()
        .unwrap_or_else(|| REPLICA.to_owned());
    if scheduling != REPLICA && scheduling != DAEMON {
        return Err(invalid(format!(
            "Invalid schedulingStrategy '{scheduling}'; use REPLICA or DAEMON."
        )));
    }
    let desired = match (scheduling.as_str(), req.desired_count) {
        (DAEMON, _) => 0,
        (_, Some(n)) if !(0..=MAX_DESIRED_COUNT).contains(&n) => {
            return Err(invalid(format!(
                "desiredCount must be between 0 and {MAX_DESIRED_COUNT}."
            )))
        }
        (_, Some(n)) => n,
        (_, None) => 1,
    };
    let controller = req
        .deployment_controller
        .clone()
        .unwrap_or(DeploymentController {
            controller_type: Some("ECS".to_owned()),
        });
    if controller
        .controller_type
        .as_deref()
        .is_some_and(|t| t != "ECS")
    {
        return Err(invalid(
            "Only the ECS deployment controller is supported by ecs-local.",
        ));
    }
    let config = deployment_configuration(req.deployment_configuration.as_ref(), &scheduling)?;
    check_placement(
        req.placement_constraints.as_deref(),
        req.placement_strategy.as_deref(),
        &scheduling,
    )?;
    check_propagate_tags(req.propagate_tags.as_deref())?;
    super::tags::validate_optional(req.tags.as_deref())?;
    let task_definition = req
        .task_definition
        .clone()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| invalid("taskDefinition is required."))?;
    let client_token = req.client_token.clone().filter(|t| !t.is_empty());
    let service = ctx.store.update(|st| {
        let cluster = clusters::require(st, req.cluster.as_deref())?.name.clone();
        let key = ServiceRecord::key(&cluster, &name);
        if let Some(existing) = st.services.get(&key) {
            let same_call = client_token.is_some() && existing.client_token == client_token;
            match existing.status() {
                INACTIVE => {}
                ACTIVE if same_call => return Ok(view(existing, true)),
                _ => {
                    return Err(invalid("Creation of service was not idempotent."));
                }
            }
        }
        let definition_arn = definition(st, &task_definition)?
            .task_definition_arn
            .clone()
            .unwrap_or_default();
        let now = clock::epoch_seconds();
        let mut record = ServiceRecord {
            cluster: cluster.clone(),
            name: name.clone(),
            service: Service {
                service_arn: Some(ctx.arns.service(&cluster, &name)),
                service_name: Some(name.clone()),
                cluster_arn: Some(ctx.arns.cluster(&cluster)),
                load_balancers: Some(Vec::new()),
                service_registries: Some(Vec::new()),
                status: Some(ACTIVE.to_owned()),
                desired_count: desired,
                launch_type: Some("EC2".to_owned()),
                deployment_configuration: Some(config),
                events: Some(Vec::new()),
                created_at: Some(now),
                placement_constraints: Some(req.placement_constraints.clone().unwrap_or_default()),
                placement_strategy: Some(req.placement_strategy.clone().unwrap_or_default()),
                health_check_grace_period_seconds: req.health_check_grace_period_seconds,
                scheduling_strategy: Some(scheduling.clone()),
                deployment_controller: Some(controller),
                tags: Some(req.tags.clone().unwrap_or_default()),
                created_by: Some(format!("arn:aws:iam::{}:root", ctx.arns.account())),
                enable_ecs_managed_tags: Some(req.enable_ecs_managed_tags.unwrap_or(false)),
                propagate_tags: Some(
                    req.propagate_tags
                        .clone()
                        .unwrap_or_else(|| "NONE".to_owned()),
                ),
                enable_execute_command: Some(req.enable_execute_command.unwrap_or(false)),
                role_arn: req.role.clone(),
                ..Service::default()
            },
            stable_task_definition: None,
            client_token: client_token.clone(),
            steady: false,
        };
        services::start_deployment(&mut record, &definition_arn, now);
        let view = view(&record, true);
        st.services.insert(key, record);
        Ok::<_, ApiError>(view)
    })?;
    tracing::info!(
        service = service.service_arn.as_deref().unwrap_or_default(),
        desired_count = service.desired_count,
        "service created"
    );
    ctx.wake_services();
    Ok(ServiceResponse {
        service: Some(service),
    })
}

pub(super) fn update(
    ctx: &Context,
    req: UpdateServiceRequest,
) -> Result<ServiceResponse, ApiError> {
    refuse_unsupported(
        req.load_balancers.as_ref(),
        req.service_registries.as_ref(),
        req.capacity_provider_strategy.as_ref(),
        req.network_configuration.as_ref(),
    )?;
    if req.service_connect_configuration.is_some() {
        return Err(invalid("Service Connect is not supported by ecs-local."));
    }
    check_propagate_tags(req.propagate_tags.as_deref())?;
    if req
        .desired_count
        .is_some_and(|n| !(0..=MAX_DESIRED_COUNT).contains(&n))
    {
        return Err(invalid(format!(
            "desiredCount must be between 0 and {MAX_DESIRED_COUNT}."
        )));
    }
    let service = ctx.store.update(|st| {
        let cluster = clusters::require(st, req.cluster.as_deref())?.name.clone();
        let key = ServiceRecord::key(&cluster, service_name(&req.service));
        let record = st.services.get(&key).ok_or_else(not_found)?;
        if record.status() != ACTIVE {
            return Err(not_active());
        }
        let scheduling = record
            .service
            .scheduling_strategy
            .clone()
            .unwrap_or_else(|| REPLICA.to_owned());
        if scheduling == DAEMON && req.desired_count.is_some() {
            return Err(invalid(
                "desiredCount cannot be set for a service with the DAEMON scheduling strategy.",
            ));
        }
        let new_definition = match req.task_definition.as_deref().filter(|t| !t.is_empty()) {
            Some(param) => Some(
                definition(st, param)?
                    .task_definition_arn
                    .clone()
                    .unwrap_or_default(),
            ),
            None => None,
        };
        let config = match &req.deployment_configuration {
            Some(given) => Some(deployment_configuration(Some(given), &scheduling)?),
            None => None,
        };
        check_placement(
            req.placement_constraints.as_deref(),
            req.placement_strategy.as_deref(),
            &scheduling,
        )?;
        let now = clock::epoch_seconds();
        let Some(record) = st.services.get_mut(&key) else {
            return Err(not_found());
        };
        let mut redeploy = req.force_new_deployment == Some(true);
        if let Some(n) = req.desired_count {
            record.service.desired_count = n;
            record.steady = false;
        }
        if let Some(config) = config {
            record.service.deployment_configuration = Some(config);
        }
        if let Some(constraints) = &req.placement_constraints {
            record.service.placement_constraints = Some(constraints.clone());
            redeploy = true;
        }
        if let Some(strategies) = &req.placement_strategy {
            record.service.placement_strategy = Some(strategies.clone());
            redeploy = true;
        }
        if let Some(seconds) = req.health_check_grace_period_seconds {
            record.service.health_check_grace_period_seconds = Some(seconds);
        }
        if let Some(enable) = req.enable_execute_command {
            record.service.enable_execute_command = Some(enable);
        }
        if let Some(enable) = req.enable_ecs_managed_tags {
            record.service.enable_ecs_managed_tags = Some(enable);
        }
        if let Some(propagate) = &req.propagate_tags {
            record.service.propagate_tags = Some(propagate.clone());
        }
        let current = record.service.task_definition.clone().unwrap_or_default();
        let next = new_definition.unwrap_or_else(|| current.clone());
        if redeploy || next != current {
            services::start_deployment(record, &next, now);
        } else if let Some(primary) = record
            .service
            .deployments
            .as_mut()
            .and_then(|d| d.first_mut())
        {
            primary.desired_count = record.service.desired_count;
            primary.updated_at = Some(now);
        }
        Ok::<_, ApiError>(view(record, true))
    })?;
    tracing::info!(
        service = service.service_arn.as_deref().unwrap_or_default(),
        desired_count = service.desired_count,
        task_definition = service.task_definition.as_deref().unwrap_or_default(),
        "service updated"
    );
    ctx.wake_services();
    Ok(ServiceResponse {
        service: Some(service),
    })
}

pub(super) fn delete(
    ctx: &Context,
    req: DeleteServiceRequest,
) -> Result<ServiceResponse, ApiError> {
    let service = ctx.store.update(|st| {
        let cluster = clusters::require(st, req.cluster.as_deref())?.name.clone();
        let key = ServiceRecord::key(&cluster, service_name(&req.service));
        let record = st.services.get_mut(&key).ok_or_else(not_found)?;
        match record.status() {
            ACTIVE => {}
            DRAINING => return Ok(view(record, true)),
            _ => return Err(not_active()),
        }
        let replica = record.service.scheduling_strategy.as_deref() != Some(DAEMON);
        if replica && record.service.desired_count > 0 && req.force != Some(true) {
            return Err(invalid(
                "The service cannot be stopped while it is scaled above 0.",
            ));
        }
        record.service.status = Some(DRAINING.to_owned());
        record.service.desired_count = 0;
        record.steady = false;
        Ok::<_, ApiError>(view(record, true))
    })?;
    tracing::info!(
        service = service.service_arn.as_deref().unwrap_or_default(),
        "service deleted (draining)"
    );
    ctx.wake_services();
    Ok(ServiceResponse {
        service: Some(service),
    })
}

pub(super) fn describe(
    ctx: &Context,
    req: DescribeServicesRequest,
) -> Result<DescribeServicesResponse, ApiError> {
    if req.services.is_empty() || req.services.len() > 10 {
        return Err(invalid("services must name between 1 and 10 services."));
    }
    let with_tags = super::includes_tags(&req.include);
    ctx.store.read(|st| {
        let cluster = clusters::require(st, req.cluster.as_deref())?.name.clone();
        let mut out = DescribeServicesResponse::default();
        for param in &req.services {
            let name = service_name(param);
            match st.services.get(&ServiceRecord::key(&cluster, name)) {
                Some(record) => out.services.push(view(record, with_tags)),
                None => out
                    .failures
                    .push(super::missing(param, || ctx.arns.service(&cluster, name))),
            }
        }
        Ok(out)
    })
}

pub(super) fn list(
    ctx: &Context,
    req: ListServicesRequest,
) -> Result<ListServicesResponse, ApiError> {
    let arns = ctx.store.read(|st| {
        let cluster = clusters::require(st, req.cluster.as_deref())?.name.clone();
        let arns: Vec<String> = st
            .services
            .values()
            .filter(|s| s.cluster == cluster && s.status() != INACTIVE)
            .filter(|s| {
                req.launch_type
                    .as_deref()
                    .is_none_or(|l| s.service.launch_type.as_deref() == Some(l))
            })
            .filter(|s| {
                req.scheduling_strategy
                    .as_deref()
                    .is_none_or(|l| s.service.scheduling_strategy.as_deref() == Some(l))
            })
            .filter_map(|s| s.service.service_arn.clone())
            .collect();
        Ok::<_, ApiError>(arns)
    })?;
    let (service_arns, next_token) = paginate(arns, req.next_token.as_deref(), req.max_results)?;
    Ok(ListServicesResponse {
        service_arns,
        next_token,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_and_arns_name_services() {
        assert!(valid_service_name("web_1-a"));
        assert!(!valid_service_name(""));
        assert!(!valid_service_name("a b"));
        assert!(!valid_service_name(&"x".repeat(256)));
        assert_eq!(service_name("web"), "web");
        assert_eq!(
            service_name("arn:aws:ecs:us-east-1:000000000000:service/default/web"),
            "web"
        );
        assert_eq!(
            service_name("arn:aws:ecs:us-east-1:000000000000:service/web"),
            "web"
        );
    }

    #[test]
    fn deployment_configuration_gets_defaults_and_limits() {
        let c = deployment_configuration(None, REPLICA).unwrap();
        assert_eq!(
            (c.minimum_healthy_percent, c.maximum_percent),
            (Some(100), Some(200))
        );
        assert_eq!(
            c.deployment_circuit_breaker,
            Some(DeploymentCircuitBreaker::default())
        );
        let d = deployment_configuration(None, DAEMON).unwrap();
        assert_eq!(
            (d.minimum_healthy_percent, d.maximum_percent),
            (Some(0), Some(100))
        );
        let bad = |min, max, strategy| {
            deployment_configuration(
                Some(&DeploymentConfiguration {
                    minimum_healthy_percent: Some(min),
                    maximum_percent: Some(max),
                    ..DeploymentConfiguration::default()
                }),
                strategy,
            )
            .is_err()
        };
        assert!(bad(101, 200, REPLICA));
        assert!(bad(-1, 200, REPLICA));
        assert!(bad(50, 90, REPLICA));
        assert!(bad(0, 200, DAEMON));
        assert!(!bad(50, 150, REPLICA));
    }
}
