//! Task placement: what a task needs (CPU, memory, static host ports,
//! instance attributes), what each container instance has left, and which
//! instance gets the task.

use crate::attributes;
use crate::query;
use crate::render;
use crate::store::{InstanceRecord, State};
use ecs_model::ecs_api::{
    Attribute, PlacementConstraint, PlacementStrategy, Resource, TaskDefinition, TaskOverride,
};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// What a task holds on its instance while it is not STOPPED.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Demand {
    /// CPU units (1024 = one vCPU).
    pub cpu: i64,
    /// MiB.
    pub memory: i64,
    #[serde(default)]
    pub tcp_ports: Vec<u16>,
    #[serde(default)]
    pub udp_ports: Vec<u16>,
}

/// Why a task does not fit on an instance; [`Shortfall::reason`] is the
/// `reason` of a RunTask failure, as ECS words it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shortfall {
    /// The instance's agent is not connected.
    Agent,
    /// The instance lacks an attribute the task needs (its name). Checked
    /// before resources, as ECS filters instances by attributes first.
    Attribute(String),
    /// A `memberOf` constraint's expression does not hold for the instance.
    MemberOf,
    /// A `distinctInstance` constraint: a task of the group runs there.
    DistinctInstance,
    Cpu,
    Memory,
    Ports,
    PortsUdp,
}

impl Shortfall {
    pub fn reason(&self) -> &'static str {
        match self {
            Shortfall::Agent => "AGENT",
            Shortfall::Attribute(_) => "ATTRIBUTE",
            Shortfall::MemberOf => "MemberOf placement constraint unsatisfied.",
            Shortfall::DistinctInstance => "DistinctInstance placement constraint unsatisfied.",
            Shortfall::Cpu => "RESOURCE:CPU",
            Shortfall::Memory => "RESOURCE:MEMORY",
            Shortfall::Ports => "RESOURCE:PORTS",
            Shortfall::PortsUdp => "RESOURCE:PORTS_UDP",
        }
    }

    /// The `detail` of the RunTask failure: the missing attribute's name.
    pub fn detail(&self) -> Option<String> {
        match self {
            Shortfall::Attribute(name) => Some(format!("Missing attribute: {name}")),
            _ => None,
        }
    }
}

/// Most placement constraints per task or service, as ECS allows.
const MAX_CONSTRAINTS: usize = 10;
/// Most placement strategies, as ECS allows.
const MAX_STRATEGIES: usize = 5;

/// A placement constraint of RunTask or a service.
#[derive(Debug, Clone, PartialEq)]
pub enum Constraint {
    DistinctInstance,
    MemberOf(query::Expression),
}

/// The resource `binpack` packs by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackBy {
    Cpu,
    Memory,
}

/// What `spread` spreads over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpreadOver {
    /// `instanceId` or `host`.
    Instance,
    /// `attribute:<name>`: the attribute's values.
    Attribute(String),
}

/// A placement strategy; several apply in order, each narrowing the
/// instances the previous ones left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Strategy {
    Binpack(PackBy),
    Spread(SpreadOver),
    Random,
}

/// Reads the API's placement constraints; the error is the message of an
/// InvalidParameterException.
pub fn constraints(given: &[PlacementConstraint]) -> Result<Vec<Constraint>, String> {
    if given.len() > MAX_CONSTRAINTS {
        return Err(format!(
            "A maximum of {MAX_CONSTRAINTS} placement constraints may be specified."
        ));
    }
    given
        .iter()
        .map(|c| {
            let expression = c.expression.as_deref().filter(|e| !e.trim().is_empty());
            match (c.constraint_type.as_deref(), expression) {
                (Some("distinctInstance"), None) => Ok(Constraint::DistinctInstance),
                (Some("distinctInstance"), Some(_)) => Err(
                    "Expressions are not supported for the distinctInstance placement constraint."
                        .to_owned(),
                ),
                (Some("memberOf"), Some(text)) => query::parse(text)
                    .map(Constraint::MemberOf)
                    .map_err(|e| format!("Invalid memberOf expression: {e}")),
                (Some("memberOf"), None) => Err(
                    "An expression is required for the memberOf placement constraint.".to_owned(),
                ),
                (other, _) => Err(format!(
                    "Invalid placement constraint type '{}'; use distinctInstance or memberOf.",
                    other.unwrap_or_default()
                )),
            }
        })
        .collect()
}

/// Reads the API's placement strategies; the error is the message of an
/// InvalidParameterException.
pub fn strategies(given: &[PlacementStrategy]) -> Result<Vec<Strategy>, String> {
    if given.len() > MAX_STRATEGIES {
        return Err(format!(
            "A maximum of {MAX_STRATEGIES} placement strategies may be specified."
        ));
    }
    given
        .iter()
        .map(|s| {
            let field = s.field.as_deref().filter(|f| !f.is_empty());
            match (s.strategy_type.as_deref(), field) {
                (Some("random"), None) => Ok(Strategy::Random),
                (Some("random"), Some(_)) => {
                    Err("The random placement strategy takes no field.".to_owned())
                }
                (Some("binpack"), Some(f)) if f.eq_ignore_ascii_case("cpu") => {
                    Ok(Strategy::Binpack(PackBy::Cpu))
                }
                (Some("binpack"), Some(f)) if f.eq_ignore_ascii_case("memory") => {
                    Ok(Strategy::Binpack(PackBy::Memory))
                }
                (Some("binpack"), _) => {
                    Err("The binpack placement strategy needs the field cpu or memory.".to_owned())
                }
                (Some("spread"), Some(f))
                    if f.eq_ignore_ascii_case("instanceId") || f.eq_ignore_ascii_case("host") =>
                {
                    Ok(Strategy::Spread(SpreadOver::Instance))
                }
                (Some("spread"), Some(f)) => match f.strip_prefix("attribute:") {
                    Some(name) if !name.is_empty() => {
                        Ok(Strategy::Spread(SpreadOver::Attribute(name.to_owned())))
                    }
                    _ => Err(format!(
                        "Invalid spread field '{f}'; use instanceId, host or attribute:<name>."
                    )),
                },
                (Some("spread"), None) => {
                    Err("The spread placement strategy needs a field.".to_owned())
                }
                (other, _) => Err(format!(
                    "Invalid placement strategy type '{}'; use random, spread or binpack.",
                    other.unwrap_or_default()
                )),
            }
        })
        .collect()
}

/// One task to place.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub demand: &'a Demand,
    /// Attributes the instance must have ([`required_attributes`]).
    pub required: &'a [String],
    /// The task's group (`family:<name>`, `service:<name>` or RunTask's
    /// `group`): what `distinctInstance` and `spread` count.
    pub group: &'a str,
    pub constraints: &'a [Constraint],
    /// None: the instance with the most memory left wins.
    pub strategies: &'a [Strategy],
}

/// The instance attributes (named in [`crate::attributes`]) a task of
/// `definition` needs, each once, in this order:
///
/// * a task role (`has_task_role`): `task-iam-role`, plus
///   `task-iam-role-network-host` in the `host` network mode;
/// * for each container, what its rendered payload asks of the agent (see
///   [`render::auth_members`]; `has_execution_role` after RunTask
///   overrides): the attribute of its log driver
///   (`logging-driver.<driver>`), `execution-role-awslogs` for
///   `logsAuthStrategy` `ExecutionRole`, `secrets.{ssm,asm}.environment-variables`
///   for its `secrets`, `secrets.{ssm,asm}.bootstrap.log-driver` for its
///   `logConfiguration.secretOptions`, `env-files.s3` for
///   `environmentFiles`, `private-registry-authentication.secretsmanager`
///   for `repositoryCredentials`, and `ecr-auth` for an image in Amazon
///   ECR (plus `execution-role-ecr-pull` when pulled with the execution
///   role).
pub fn required_attributes(
    definition: &TaskDefinition,
    has_task_role: bool,
    has_execution_role: bool,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut need = |name: &str| {
        if !out.iter().any(|a| a == name) {
            out.push(name.to_owned());
        }
    };
    if has_task_role {
        need(attributes::TASK_IAM_ROLE);
        if definition.network_mode.as_deref() == Some("host") {
            need(attributes::TASK_IAM_ROLE_NETWORK_HOST);
        }
    }
    // Neither the region nor the endpoint override changes what is needed.
    let settings = render::Settings::default();
    for c in &definition.container_definitions {
        if let Some(driver) = c
            .log_configuration
            .as_ref()
            .and_then(|l| l.log_driver.as_deref())
            .filter(|d| !d.is_empty())
        {
            need(&attributes::logging_driver(driver));
        }
        let auth = render::auth_members(c, has_execution_role, &settings);
        if auth.logs_auth_strategy.as_deref() == Some(render::LOGS_AUTH_EXECUTION_ROLE) {
            need(attributes::EXECUTION_ROLE_AWSLOGS);
        }
        for secret in &auth.secrets {
            let asm = secret.provider.as_deref() == Some(render::SECRET_PROVIDER_ASM);
            let log_driver = secret.target.as_deref() == Some(render::SECRET_TARGET_LOG_DRIVER);
            need(match (log_driver, asm) {
                (false, false) => attributes::SECRETS_SSM_ENVIRONMENT_VARIABLES,
                (false, true) => attributes::SECRETS_ASM_ENVIRONMENT_VARIABLES,
                (true, false) => attributes::SECRETS_SSM_LOG_DRIVER,
                (true, true) => attributes::SECRETS_ASM_LOG_DRIVER,
            });
        }
        if !auth.environment_files.is_empty() {
            need(attributes::ENV_FILES_S3);
        }
        if let Some(registry) = &auth.registry_authentication {
            match registry.r#type.as_deref() {
                Some(render::REGISTRY_AUTH_ASM) => {
                    need(attributes::PRIVATE_REGISTRY_AUTHENTICATION_ASM);
                }
                Some(render::REGISTRY_AUTH_ECR) => {
                    need(attributes::ECR_AUTH);
                    let with_role = registry
                        .ecr_auth_data
                        .as_ref()
                        .and_then(|e| e.use_execution_role)
                        == Some(true);
                    if with_role {
                        need(attributes::EXECUTION_ROLE_ECR_PULL);
                    }
                }
                _ => {}
            }
        }
    }
    out
}

/// What one instance has left, and what placement constraints and
/// strategies look at.
#[derive(Debug, Clone, PartialEq)]
pub struct Capacity {
    pub instance_id: String,
    pub instance_arn: String,
    pub ec2_instance_id: Option<String>,
    pub agent_connected: bool,
    pub agent_version: Option<String>,
    pub registered_at: f64,
    pub cpu: i64,
    pub memory: i64,
    pub tcp_taken: BTreeSet<u16>,
    pub udp_taken: BTreeSet<u16>,
    /// The agent's attributes with the custom ones laid over them.
    pub attributes: Vec<Attribute>,
    /// The group of each task on it that is not STOPPED.
    pub groups: Vec<String>,
    /// How many of them are RUNNING (the `runningTasksCount` of
    /// DescribeContainerInstances and of cluster queries).
    pub running: i64,
}

impl Capacity {
    /// Registered resources minus what the non-STOPPED tasks on it hold.
    pub fn of(state: &State, instance: &InstanceRecord) -> Self {
        let mut capacity = Self::registered(instance);
        for task in state.tasks_on(&instance.id) {
            capacity.hold(task);
        }
        capacity
    }

    /// [`Capacity::of`] for many instances, in one pass over the tasks
    /// rather than one per instance.
    pub fn of_all<'a>(
        state: &State,
        instances: impl IntoIterator<Item = &'a InstanceRecord>,
    ) -> Vec<Self> {
        let mut out: Vec<Self> = instances.into_iter().map(Self::registered).collect();
        let index: std::collections::HashMap<&str, usize> = out
            .iter()
            .enumerate()
            .map(|(i, c)| (c.instance_id.as_str(), i))
            .collect();
        let mut holds: Vec<(usize, &crate::store::TaskRecord)> = Vec::new();
        for task in state.tasks.values() {
            if let Some(&i) = task.instance_id.as_deref().and_then(|id| index.get(id)) {
                holds.push((i, task));
            }
        }
        for (i, task) in holds {
            out[i].hold(task);
        }
        out
    }

    /// What a task holds while it is not STOPPED.
    fn hold(&mut self, task: &crate::store::TaskRecord) {
        if task.is_stopped() {
            return;
        }
        self.take(&task.demand, task.task.group.as_deref().unwrap_or_default());
        if task.last_status() == "RUNNING" {
            self.running += 1;
        }
    }

    /// What the instance registered, before any task.
    fn registered(instance: &InstanceRecord) -> Self {
        Capacity {
            instance_id: instance.id.clone(),
            instance_arn: instance.arn.clone(),
            ec2_instance_id: instance.ec2_instance_id.clone(),
            agent_connected: instance.agent_connected,
            agent_version: instance
                .version_info
                .as_ref()
                .and_then(|v| v.agent_version.clone()),
            registered_at: instance.registered_at,
            cpu: integer_resource(&instance.registered_resources, "CPU"),
            memory: integer_resource(&instance.registered_resources, "MEMORY"),
            tcp_taken: port_resource(&instance.registered_resources, "PORTS"),
            udp_taken: port_resource(&instance.registered_resources, "PORTS_UDP"),
            attributes: instance.all_attributes(),
            groups: Vec::new(),
            running: 0,
        }
    }

    /// What a cluster query sees of this instance.
    pub fn facts<'a>(&'a self, groups: &'a [&'a str]) -> query::InstanceFacts<'a> {
        query::InstanceFacts {
            ec2_instance_id: self.ec2_instance_id.as_deref(),
            agent_connected: self.agent_connected,
            agent_version: self.agent_version.as_deref(),
            registered_at: self.registered_at,
            running_tasks_count: self.running,
            attributes: &self.attributes,
            task_groups: groups,
        }
    }

    /// The value of an attribute, `None` when it is missing or has none.
    fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|a| a.name == name)
            .and_then(|a| a.value.as_deref())
    }

    fn tasks_of(&self, group: &str) -> usize {
        self.groups.iter().filter(|g| *g == group).count()
    }

    fn shortfall(&self, request: &Request<'_>) -> Option<Shortfall> {
        if !self.agent_connected {
            return Some(Shortfall::Agent);
        }
        if let Some(missing) = request
            .required
            .iter()
            .find(|name| !self.attributes.iter().any(|a| &a.name == *name))
        {
            return Some(Shortfall::Attribute(missing.clone()));
        }
        for constraint in request.constraints {
            match constraint {
                Constraint::DistinctInstance if self.tasks_of(request.group) > 0 => {
                    return Some(Shortfall::DistinctInstance);
                }
                Constraint::MemberOf(expression) => {
                    let groups: Vec<&str> = self.groups.iter().map(String::as_str).collect();
                    if !expression.matches(&self.facts(&groups)) {
                        return Some(Shortfall::MemberOf);
                    }
                }
                Constraint::DistinctInstance => {}
            }
        }
        let demand = request.demand;
        if demand.cpu > self.cpu {
            return Some(Shortfall::Cpu);
        }
        if demand.memory > self.memory {
            return Some(Shortfall::Memory);
        }
        if demand.tcp_ports.iter().any(|p| self.tcp_taken.contains(p)) {
            return Some(Shortfall::Ports);
        }
        if demand.udp_ports.iter().any(|p| self.udp_taken.contains(p)) {
            return Some(Shortfall::PortsUdp);
        }
        None
    }

    fn take(&mut self, demand: &Demand, group: &str) {
        self.cpu = self.cpu.saturating_sub(demand.cpu);
        self.memory = self.memory.saturating_sub(demand.memory);
        self.tcp_taken.extend(demand.tcp_ports.iter().copied());
        self.udp_taken.extend(demand.udp_ports.iter().copied());
        self.groups.push(group.to_owned());
    }

    /// The remaining resources in the shape of the registered ones.
    pub fn remaining_resources(&self, registered: &[Resource]) -> Vec<Resource> {
        let ports = |set: &BTreeSet<u16>| Some(set.iter().map(u16::to_string).collect());
        let mut out: Vec<Resource> = registered
            .iter()
            .map(|r| {
                let mut r = r.clone();
                match r.name.as_deref() {
                    Some("CPU") => r.integer_value = Some(self.cpu),
                    Some("MEMORY") => r.integer_value = Some(self.memory),
                    Some("PORTS") => r.string_set_value = ports(&self.tcp_taken),
                    Some("PORTS_UDP") => r.string_set_value = ports(&self.udp_taken),
                    _ => {}
                }
                r
            })
            .collect();
        for (name, set) in [("PORTS", &self.tcp_taken), ("PORTS_UDP", &self.udp_taken)] {
            let present = out.iter().any(|r| r.name.as_deref() == Some(name));
            if !present && !set.is_empty() {
                out.push(Resource {
                    name: Some(name.to_owned()),
                    resource_type: Some("STRINGSET".to_owned()),
                    string_set_value: ports(set),
                    ..Resource::default()
                });
            }
        }
        out
    }
}

fn integer_resource(resources: &[Resource], name: &str) -> i64 {
    resources
        .iter()
        .find(|r| r.name.as_deref() == Some(name))
        .and_then(|r| {
            r.integer_value
                .or(r.long_value)
                .or(r.double_value.map(|d| d as i64))
        })
        .unwrap_or(0)
}

fn port_resource(resources: &[Resource], name: &str) -> BTreeSet<u16> {
    resources
        .iter()
        .filter(|r| r.name.as_deref() == Some(name))
        .flat_map(|r| r.string_set_value.iter().flatten())
        .filter_map(|p| p.trim().parse().ok())
        .collect()
}

/// Places one task. The instances it fits on (agent connected, required
/// attributes, constraints, then resources) are narrowed by each strategy
/// in turn; of those left, the one with the most memory left wins (ties go
/// to the first). Its capacity is then reduced by the demand. When it fits
/// nowhere, every instance's shortfall is returned.
pub fn place(
    capacities: &mut [Capacity],
    request: &Request<'_>,
) -> Result<usize, Vec<(String, Shortfall)>> {
    let mut fitting = Vec::new();
    let mut shortfalls = Vec::new();
    for (index, capacity) in capacities.iter().enumerate() {
        match capacity.shortfall(request) {
            Some(shortfall) => shortfalls.push((capacity.instance_arn.clone(), shortfall)),
            None => fitting.push(index),
        }
    }
    if fitting.is_empty() {
        return Err(shortfalls);
    }
    for strategy in request.strategies {
        fitting = narrow(capacities, fitting, strategy, request.group);
    }
    let mut best = fitting[0];
    for &index in &fitting[1..] {
        if capacities[index].memory > capacities[best].memory {
            best = index;
        }
    }
    capacities[best].take(request.demand, request.group);
    Ok(best)
}

/// The candidates one strategy prefers (never none of them).
fn narrow(
    capacities: &[Capacity],
    candidates: Vec<usize>,
    strategy: &Strategy,
    group: &str,
) -> Vec<usize> {
    let keep_least = |score: &dyn Fn(usize) -> i64| {
        let least = candidates.iter().map(|&i| score(i)).min();
        candidates
            .iter()
            .copied()
            .filter(|&i| Some(score(i)) == least)
            .collect::<Vec<_>>()
    };
    match strategy {
        Strategy::Random => {
            let pick = rand::rng().random_range(0..candidates.len());
            vec![candidates[pick]]
        }
        Strategy::Binpack(PackBy::Cpu) => keep_least(&|i| capacities[i].cpu),
        Strategy::Binpack(PackBy::Memory) => keep_least(&|i| capacities[i].memory),
        Strategy::Spread(SpreadOver::Instance) => {
            keep_least(&|i| i64::try_from(capacities[i].tasks_of(group)).unwrap_or(i64::MAX))
        }
        Strategy::Spread(SpreadOver::Attribute(name)) => {
            // Tasks of the group per value, over every instance given (not
            // only the candidates), as the spread is over the cluster.
            let mut per_value: BTreeMap<Option<&str>, usize> = BTreeMap::new();
            for capacity in capacities {
                *per_value.entry(capacity.attribute(name)).or_default() += capacity.tasks_of(group);
            }
            keep_least(&|i| {
                let count = per_value
                    .get(&capacities[i].attribute(name))
                    .copied()
                    .unwrap_or(0);
                i64::try_from(count).unwrap_or(i64::MAX)
            })
        }
    }
}

/// Task-level CPU as units: `"256"`, `"1 vCPU"`, `".5 vcpu"`.
pub fn parse_task_cpu(text: &str) -> Option<i64> {
    parse_with_unit(text, &[("vcpu", 1024.0)])
}

/// Task-level memory as MiB: `"512"`, `"1 GB"`, `"2gb"`, `"512 MiB"`.
pub fn parse_task_memory(text: &str) -> Option<i64> {
    parse_with_unit(
        text,
        &[("gib", 1024.0), ("gb", 1024.0), ("mib", 1.0), ("mb", 1.0)],
    )
}

fn parse_with_unit(text: &str, units: &[(&str, f64)]) -> Option<i64> {
    let lower = text.trim().to_ascii_lowercase();
    if let Ok(plain) = lower.parse::<i64>() {
        return (plain >= 0).then_some(plain);
    }
    for (unit, factor) in units {
        if let Some(number) = lower.strip_suffix(unit) {
            let value: f64 = number.trim().parse().ok()?;
            if !value.is_finite() || value < 0.0 {
                return None;
            }
            return Some((value * factor).round() as i64);
        }
    }
    None
}

/// What a task of `definition` with `overrides` needs: the task-level CPU
/// and memory when set, else the sum over its containers (memory, or
/// memoryReservation when there is no hard limit); plus its static host
/// ports (host network mode: every container port).
pub fn demand(definition: &TaskDefinition, overrides: Option<&TaskOverride>) -> Demand {
    let container_override = |name: Option<&str>| {
        overrides
            .and_then(|o| o.container_overrides.as_ref())
            .and_then(|list| {
                list.iter()
                    .find(|c| c.name.as_deref() == name && name.is_some())
            })
    };
    let host_mode = definition.network_mode.as_deref() == Some("host");
    let mut demand = Demand::default();
    let mut container_cpu = 0;
    let mut container_memory = 0;
    for container in &definition.container_definitions {
        let ov = container_override(container.name.as_deref());
        container_cpu = i64::saturating_add(
            container_cpu,
            ov.and_then(|o| o.cpu).or(container.cpu).unwrap_or(0),
        );
        let hard = ov.and_then(|o| o.memory).or(container.memory);
        let soft = ov
            .and_then(|o| o.memory_reservation)
            .or(container.memory_reservation);
        container_memory = i64::saturating_add(container_memory, hard.or(soft).unwrap_or(0));
        for mapping in container.port_mappings.iter().flatten() {
            let static_port = if host_mode {
                mapping.container_port
            } else {
                mapping.host_port.filter(|p| *p > 0)
            };
            let Some(port) = static_port.and_then(|p| u16::try_from(p).ok()) else {
                continue;
            };
            if mapping.protocol.as_deref() == Some("udp") {
                demand.udp_ports.push(port);
            } else {
                demand.tcp_ports.push(port);
            }
        }
    }
    let task_cpu = overrides
        .and_then(|o| o.cpu.as_deref())
        .or(definition.cpu.as_deref())
        .and_then(parse_task_cpu);
    let task_memory = overrides
        .and_then(|o| o.memory.as_deref())
        .or(definition.memory.as_deref())
        .and_then(parse_task_memory);
    demand.cpu = task_cpu.unwrap_or(container_cpu);
    demand.memory = task_memory.unwrap_or(container_memory);
    demand
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use ecs_model::ecs_api::{ContainerDefinition, ContainerOverride, PortMapping};
    use serde_json::json;

    fn capacity(id: &str, cpu: i64, memory: i64, tcp: &[u16]) -> Capacity {
        Capacity {
            instance_id: id.into(),
            instance_arn: format!("arn:{id}"),
            cpu,
            memory,
            tcp_taken: tcp.iter().copied().collect(),
            udp_taken: BTreeSet::new(),
            attributes: Vec::new(),
            groups: Vec::new(),
            running: 0,
            ec2_instance_id: None,
            agent_connected: true,
            agent_version: None,
            registered_at: 0.0,
        }
    }

    fn grant(capacity: &mut Capacity, name: impl Into<String>) {
        capacity.attributes.push(Attribute {
            name: name.into(),
            ..Attribute::default()
        });
    }

    /// A request with no constraints or strategies, in group `g`.
    fn simple<'a>(demand: &'a Demand, required: &'a [String]) -> Request<'a> {
        Request {
            demand,
            required,
            group: "g",
            constraints: &[],
            strategies: &[],
        }
    }

    const NONE: &[String] = &[];

    fn definition(v: serde_json::Value) -> TaskDefinition {
        serde_json::from_value(v).unwrap()
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn need(cpu: i64, memory: i64, tcp: &[u16]) -> Demand {
        Demand {
            cpu,
            memory,
            tcp_ports: tcp.to_vec(),
            udp_ports: vec![],
        }
    }

    #[test]
    fn places_on_the_instance_with_most_memory_and_takes_capacity() {
        let mut caps = vec![
            capacity("a", 1024, 512, &[]),
            capacity("b", 1024, 1024, &[]),
        ];
        assert_eq!(place(&mut caps, &simple(&need(100, 600, &[]), NONE)), Ok(1));
        assert_eq!(caps[1].memory, 424);
        assert_eq!(place(&mut caps, &simple(&need(100, 500, &[]), NONE)), Ok(0));
        let err = place(&mut caps, &simple(&need(100, 500, &[]), NONE)).unwrap_err();
        assert_eq!(err.len(), 2);
        assert!(err.iter().all(|(_, s)| *s == Shortfall::Memory));
    }

    #[test]
    fn reports_cpu_and_port_shortfalls() {
        let mut caps = vec![capacity("a", 100, 4096, &[22, 8080])];
        assert_eq!(
            place(&mut caps, &simple(&need(200, 1, &[]), NONE)).unwrap_err()[0].1,
            Shortfall::Cpu
        );
        assert_eq!(
            place(&mut caps, &simple(&need(10, 1, &[8080]), NONE)).unwrap_err()[0].1,
            Shortfall::Ports
        );
        assert_eq!(
            place(&mut caps, &simple(&need(10, 1, &[8081]), NONE)),
            Ok(0)
        );
        assert_eq!(
            place(&mut caps, &simple(&need(10, 1, &[8081]), NONE)).unwrap_err()[0].1,
            Shortfall::Ports
        );
    }

    #[test]
    fn task_roles_need_the_iam_attributes_before_resources() {
        let bridge_def = definition(json!({"family": "f", "containerDefinitions": []}));
        let host_def =
            definition(json!({"family": "f", "networkMode": "host", "containerDefinitions": []}));
        assert!(required_attributes(&host_def, false, false).is_empty());
        assert!(required_attributes(&host_def, false, true).is_empty());
        let bridge = required_attributes(&bridge_def, true, false);
        assert_eq!(bridge, names(&[attributes::TASK_IAM_ROLE]));
        let host = required_attributes(&host_def, true, false);
        assert_eq!(
            host,
            names(&[
                attributes::TASK_IAM_ROLE,
                attributes::TASK_IAM_ROLE_NETWORK_HOST
            ])
        );

        let mut plain = capacity("plain", 4096, 4096, &[]);
        let mut role = capacity("role", 1024, 1024, &[]);
        grant(&mut role, attributes::TASK_IAM_ROLE.to_owned());
        // No instance has the attributes: ATTRIBUTE, even where resources
        // are short too.
        let mut caps = vec![plain.clone()];
        let err = place(&mut caps, &simple(&need(8192, 1, &[]), &host)).unwrap_err();
        assert_eq!(
            err,
            vec![(
                "arn:plain".to_owned(),
                Shortfall::Attribute(attributes::TASK_IAM_ROLE.to_owned())
            )]
        );
        assert_eq!(err[0].1.reason(), "ATTRIBUTE");
        assert_eq!(
            err[0].1.detail().as_deref(),
            Some("Missing attribute: com.amazonaws.ecs.capability.task-iam-role")
        );
        // The instance with the attribute wins over one with more memory.
        let mut caps = vec![plain.clone(), role.clone()];
        assert_eq!(place(&mut caps, &simple(&need(1, 1, &[]), &bridge)), Ok(1));
        let err = place(&mut caps, &simple(&need(1, 1, &[]), &host)).unwrap_err();
        assert_eq!(
            err[1].1,
            Shortfall::Attribute(attributes::TASK_IAM_ROLE_NETWORK_HOST.to_owned())
        );
        grant(&mut role, attributes::TASK_IAM_ROLE_NETWORK_HOST.to_owned());
        grant(&mut plain, attributes::TASK_IAM_ROLE.to_owned());
        let mut caps = vec![plain, role];
        assert_eq!(place(&mut caps, &simple(&need(1, 1, &[]), &host)), Ok(1));
        // Without a role, the most memory wins as before.
        assert_eq!(place(&mut caps, &simple(&need(1, 1, &[]), NONE)), Ok(0));
    }

    const ECR_IMAGE: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/app:1";

    /// What a one-container task needs, with or without an execution role.
    fn needs(container: serde_json::Value, execution_role: bool) -> Vec<String> {
        let def = definition(json!({"family": "f", "containerDefinitions": [container]}));
        required_attributes(&def, false, execution_role)
    }

    #[test]
    fn secrets_need_the_capability_of_their_store_and_target() {
        let ssm_env = json!({"name": "A", "valueFrom": "/app/a"});
        let ssm_arn_env = json!({"name": "B",
            "valueFrom": "arn:aws:ssm:eu-west-1:123456789012:parameter/app/b"});
        let asm_env = json!({"name": "C",
            "valueFrom": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:c-AbCdEf"});
        let container = |secrets: serde_json::Value, options: serde_json::Value| {
            json!({"name": "app", "image": "busybox", "secrets": secrets,
                   "logConfiguration": {"logDriver": "splunk", "secretOptions": options}})
        };
        let splunk = attributes::logging_driver("splunk");
        assert_eq!(
            needs(container(json!([]), json!([])), true),
            vec![splunk.clone()]
        );
        assert_eq!(
            needs(container(json!([ssm_env, ssm_arn_env]), json!([])), true),
            names(&[&splunk, attributes::SECRETS_SSM_ENVIRONMENT_VARIABLES])
        );
        assert_eq!(
            needs(container(json!([asm_env]), json!([])), true),
            names(&[&splunk, attributes::SECRETS_ASM_ENVIRONMENT_VARIABLES])
        );
        assert_eq!(
            needs(container(json!([]), json!([ssm_env])), true),
            names(&[&splunk, attributes::SECRETS_SSM_LOG_DRIVER])
        );
        assert_eq!(
            needs(container(json!([]), json!([asm_env])), true),
            names(&[&splunk, attributes::SECRETS_ASM_LOG_DRIVER])
        );
        assert_eq!(
            needs(
                container(json!([ssm_env, asm_env]), json!([asm_env, ssm_env])),
                true
            ),
            names(&[
                &splunk,
                attributes::SECRETS_SSM_ENVIRONMENT_VARIABLES,
                attributes::SECRETS_ASM_ENVIRONMENT_VARIABLES,
                attributes::SECRETS_ASM_LOG_DRIVER,
                attributes::SECRETS_SSM_LOG_DRIVER,
            ])
        );
    }

    #[test]
    fn environment_files_and_private_registries_need_their_capabilities() {
        let files = json!({"name": "app", "image": "busybox",
            "environmentFiles": [{"value": "arn:aws:s3:::bucket/app.env", "type": "s3"}]});
        assert_eq!(needs(files, true), names(&[attributes::ENV_FILES_S3]));
        let no_files = json!({"name": "app", "image": "busybox", "environmentFiles": []});
        assert!(needs(no_files, true).is_empty());
        let private = json!({"name": "app", "image": "registry.example.com/app",
            "repositoryCredentials": {"credentialsParameter":
                "arn:aws:secretsmanager:eu-west-1:123456789012:secret:reg-AbCdEf"}});
        assert_eq!(
            needs(private, true),
            names(&[attributes::PRIVATE_REGISTRY_AUTHENTICATION_ASM])
        );
        // Secrets Manager credentials win over ECR for an ECR image.
        let private_ecr = json!({"name": "app", "image": ECR_IMAGE,
            "repositoryCredentials": {"credentialsParameter": "reg"}});
        assert_eq!(
            needs(private_ecr, true),
            names(&[attributes::PRIVATE_REGISTRY_AUTHENTICATION_ASM])
        );
    }

    #[test]
    fn ecr_images_and_awslogs_need_the_execution_role_capabilities_only_with_one() {
        let ecr = json!({"name": "app", "image": ECR_IMAGE});
        assert_eq!(needs(ecr.clone(), false), names(&[attributes::ECR_AUTH]));
        assert_eq!(
            needs(ecr, true),
            names(&[attributes::ECR_AUTH, attributes::EXECUTION_ROLE_ECR_PULL])
        );
        assert!(needs(json!({"name": "app", "image": "busybox"}), true).is_empty());
        let awslogs = json!({"name": "app", "image": "busybox",
            "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": "g"}}});
        let driver = attributes::logging_driver("awslogs");
        assert_eq!(
            driver,
            "com.amazonaws.ecs.capability.logging-driver.awslogs"
        );
        assert_eq!(needs(awslogs.clone(), false), vec![driver.clone()]);
        assert_eq!(
            needs(awslogs, true),
            names(&[&driver, attributes::EXECUTION_ROLE_AWSLOGS])
        );
    }

    #[test]
    fn every_container_counts_and_each_attribute_is_asked_once() {
        let def = definition(json!({
            "family": "f", "networkMode": "host", "executionRoleArn": "arn:aws:iam::1:role/x",
            "containerDefinitions": [
                {"name": "a", "image": ECR_IMAGE,
                 "logConfiguration": {"logDriver": "json-file"}},
                {"name": "b", "image": ECR_IMAGE,
                 "logConfiguration": {"logDriver": "json-file"},
                 "secrets": [{"name": "S", "valueFrom": "s"}]}
            ]
        }));
        assert_eq!(
            required_attributes(&def, true, true),
            names(&[
                attributes::TASK_IAM_ROLE,
                attributes::TASK_IAM_ROLE_NETWORK_HOST,
                &attributes::logging_driver("json-file"),
                attributes::ECR_AUTH,
                attributes::EXECUTION_ROLE_ECR_PULL,
                attributes::SECRETS_SSM_ENVIRONMENT_VARIABLES,
            ])
        );
    }

    #[test]
    fn a_missing_capability_is_an_attribute_shortfall_naming_it() {
        let required = needs(
            json!({"name": "app", "image": "busybox",
                   "secrets": [{"name": "S", "valueFrom": "/p"}],
                   "logConfiguration": {"logDriver": "syslog"}}),
            true,
        );
        let mut bare = capacity("bare", 4096, 4096, &[]);
        grant(&mut bare, attributes::logging_driver("json-file"));
        let mut able = capacity("able", 1024, 1024, &[]);
        for name in &required {
            grant(&mut able, name.clone());
        }
        let mut caps = vec![bare.clone()];
        let err = place(&mut caps, &simple(&need(1, 1, &[]), &required)).unwrap_err();
        assert_eq!(err[0].1.reason(), "ATTRIBUTE");
        assert_eq!(
            err[0].1.detail().as_deref(),
            Some("Missing attribute: com.amazonaws.ecs.capability.logging-driver.syslog")
        );
        grant(&mut bare, attributes::logging_driver("syslog"));
        let mut caps = vec![bare.clone()];
        let err = place(&mut caps, &simple(&need(1, 1, &[]), &required)).unwrap_err();
        assert_eq!(
            err[0].1,
            Shortfall::Attribute(attributes::SECRETS_SSM_ENVIRONMENT_VARIABLES.to_owned())
        );
        let mut caps = vec![bare, able];
        assert_eq!(
            place(&mut caps, &simple(&need(1, 1, &[]), &required)),
            Ok(1)
        );
    }

    #[test]
    fn parses_task_sizes() {
        assert_eq!(parse_task_cpu("256"), Some(256));
        assert_eq!(parse_task_cpu("1 vCPU"), Some(1024));
        assert_eq!(parse_task_cpu(".5 vcpu"), Some(512));
        assert_eq!(parse_task_cpu("lots"), None);
        assert_eq!(parse_task_memory("512"), Some(512));
        assert_eq!(parse_task_memory("2 GB"), Some(2048));
        assert_eq!(parse_task_memory("-1"), None);
    }

    #[test]
    fn demand_sums_containers_and_honours_overrides() {
        let def = TaskDefinition {
            container_definitions: vec![
                ContainerDefinition {
                    name: Some("a".into()),
                    cpu: Some(128),
                    memory: Some(256),
                    port_mappings: Some(vec![
                        PortMapping {
                            container_port: Some(80),
                            host_port: Some(8080),
                            ..Default::default()
                        },
                        PortMapping {
                            container_port: Some(81),
                            host_port: Some(0),
                            ..Default::default()
                        },
                        PortMapping {
                            container_port: Some(53),
                            host_port: Some(53),
                            protocol: Some("udp".into()),
                            ..Default::default()
                        },
                    ]),
                    ..Default::default()
                },
                ContainerDefinition {
                    name: Some("b".into()),
                    memory_reservation: Some(64),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        assert_eq!(
            demand(&def, None),
            Demand {
                cpu: 128,
                memory: 320,
                tcp_ports: vec![8080],
                udp_ports: vec![53]
            }
        );
        let overrides = TaskOverride {
            container_overrides: Some(vec![ContainerOverride {
                name: Some("b".into()),
                memory: Some(100),
                cpu: Some(10),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let d = demand(&def, Some(&overrides));
        assert_eq!((d.cpu, d.memory), (138, 356));

        let mut task_level = def.clone();
        task_level.cpu = Some("1 vCPU".into());
        task_level.memory = Some("1024".into());
        task_level.network_mode = Some("host".into());
        let d = demand(&task_level, None);
        assert_eq!((d.cpu, d.memory), (1024, 1024));
        assert_eq!(d.tcp_ports, vec![80, 81]);
    }

    fn set(capacity: &mut Capacity, name: &str, value: &str) {
        capacity.attributes.push(Attribute {
            name: name.to_owned(),
            value: Some(value.to_owned()),
            ..Attribute::default()
        });
    }

    fn with_tasks(mut capacity: Capacity, groups: &[&str]) -> Capacity {
        capacity.groups = names(groups);
        capacity
    }

    fn request<'a>(
        demand: &'a Demand,
        constraints: &'a [Constraint],
        strategies: &'a [Strategy],
    ) -> Request<'a> {
        Request {
            constraints,
            strategies,
            ..simple(demand, NONE)
        }
    }

    /// Places `count` tasks one after the other; the index of each.
    fn place_all(caps: &mut [Capacity], request: &Request<'_>, count: usize) -> Vec<usize> {
        (0..count).map(|_| place(caps, request).unwrap()).collect()
    }

    fn refused_by(caps: &[Capacity], shortfall: Shortfall) -> Vec<(String, Shortfall)> {
        caps.iter()
            .map(|c| (c.instance_arn.clone(), shortfall.clone()))
            .collect()
    }

    fn member_of(text: &str) -> Constraint {
        Constraint::MemberOf(query::parse(text).unwrap())
    }

    #[test]
    fn distinct_instance_refuses_instances_running_the_group_including_this_calls_tasks() {
        let mut caps = vec![
            with_tasks(capacity("a", 1024, 4096, &[]), &["g"]),
            with_tasks(capacity("b", 1024, 2048, &[]), &["other"]),
            capacity("c", 1024, 1024, &[]),
        ];
        let distinct = [Constraint::DistinctInstance];
        let demand = need(1, 1, &[]);
        let req = request(&demand, &distinct, &[]);
        // "a" has the most memory but already runs a task of "g"; a task of
        // another group on "b" does not count.
        assert_eq!(place(&mut caps, &req), Ok(1));
        assert_eq!(place(&mut caps, &req), Ok(2));
        let err = place(&mut caps, &req).unwrap_err();
        assert_eq!(err, refused_by(&caps, Shortfall::DistinctInstance));
        assert_eq!(
            err[0].1.reason(),
            "DistinctInstance placement constraint unsatisfied."
        );
        // Another group is free to go anywhere.
        let other = Request { group: "h", ..req };
        assert_eq!(place(&mut caps, &other), Ok(0));
    }

    #[test]
    fn member_of_places_only_where_the_attribute_expression_holds() {
        let mut dev = capacity("dev", 1024, 4096, &[]);
        set(&mut dev, "stack", "dev");
        let mut prod = capacity("prod", 1024, 1024, &[]);
        set(&mut prod, "stack", "prod");
        let bare = capacity("bare", 1024, 8192, &[]);
        let mut caps = vec![dev, prod, bare];

        let on_prod = [member_of("attribute:stack == prod")];
        let demand = need(1, 600, &[]);
        let req = request(&demand, &on_prod, &[]);
        assert_eq!(place(&mut caps, &req), Ok(1));
        // The constraint is checked before resources: the others say
        // MemberOf although they have the memory, "prod" says MEMORY.
        assert_eq!(
            place(&mut caps, &req).unwrap_err(),
            vec![
                ("arn:dev".to_owned(), Shortfall::MemberOf),
                ("arn:prod".to_owned(), Shortfall::Memory),
                ("arn:bare".to_owned(), Shortfall::MemberOf),
            ]
        );

        let nowhere = [member_of("attribute:stack == nope")];
        let err = place(&mut caps, &request(&need(1, 1, &[]), &nowhere, &[])).unwrap_err();
        assert_eq!(err, refused_by(&caps, Shortfall::MemberOf));
        assert_eq!(
            err[0].1.reason(),
            "MemberOf placement constraint unsatisfied."
        );

        // A missing attribute passes `!=` and task groups are visible.
        let not_prod = [member_of(
            "attribute:stack != prod and not(task:group == g)",
        )];
        let demand = need(1, 1, &[]);
        let req = request(&demand, &not_prod, &[]);
        assert_eq!(place(&mut caps, &req), Ok(2));
        assert_eq!(place(&mut caps, &req), Ok(0));
        assert_eq!(
            place(&mut caps, &req).unwrap_err(),
            refused_by(&caps, Shortfall::MemberOf)
        );
    }

    #[test]
    fn binpack_memory_picks_the_fullest_instance_that_still_fits() {
        let mut caps = vec![
            capacity("roomy", 1024, 4096, &[]),
            capacity("half", 1024, 1024, &[]),
            capacity("small", 1024, 512, &[]),
        ];
        let pack = [Strategy::Binpack(PackBy::Memory)];
        // "small" is the fullest but 600 does not fit there.
        assert_eq!(
            place(&mut caps, &request(&need(1, 600, &[]), &[], &pack)),
            Ok(1)
        );
        assert_eq!(caps[1].memory, 424);
        assert_eq!(
            place(&mut caps, &request(&need(1, 400, &[]), &[], &pack)),
            Ok(1)
        );
        assert_eq!(caps[1].memory, 24);
        assert_eq!(
            place(&mut caps, &request(&need(1, 400, &[]), &[], &pack)),
            Ok(2)
        );
        assert_eq!(
            place(&mut caps, &request(&need(1, 400, &[]), &[], &pack)),
            Ok(0)
        );
        assert_eq!(
            caps.iter().map(|c| c.memory).collect::<Vec<_>>(),
            vec![3696, 24, 112]
        );
    }

    #[test]
    fn binpack_cpu_picks_the_instance_with_the_least_cpu_left_that_fits() {
        let mut caps = vec![
            capacity("big", 4096, 8000, &[]),
            capacity("mid", 1024, 2000, &[]),
            capacity("tiny", 256, 9000, &[]),
        ];
        let pack = [Strategy::Binpack(PackBy::Cpu)];
        let demand = need(512, 1, &[]);
        let req = request(&demand, &[], &pack);
        // Without the strategy "big" (most memory of those that fit) wins.
        assert_eq!(
            place(&mut caps.clone(), &simple(&need(512, 1, &[]), NONE)),
            Ok(0)
        );
        assert_eq!(place_all(&mut caps, &req, 3), vec![1, 1, 0]);
        assert_eq!(
            caps.iter().map(|c| c.cpu).collect::<Vec<_>>(),
            vec![3584, 0, 256]
        );
    }

    #[test]
    fn spread_over_instances_counts_only_the_requests_group() {
        let mut caps = vec![
            with_tasks(capacity("a", 1024, 4000, &[]), &["other", "other", "other"]),
            with_tasks(capacity("b", 1024, 3000, &[]), &["g"]),
            capacity("c", 1024, 2000, &[]),
        ];
        let spread = [Strategy::Spread(SpreadOver::Instance)];
        let demand = need(1, 100, &[]);
        let req = request(&demand, &[], &spread);
        // Ties between the least loaded go to the most memory left.
        assert_eq!(place_all(&mut caps, &req, 5), vec![0, 2, 0, 1, 2]);
        assert_eq!(
            caps.iter().map(|c| c.tasks_of("g")).collect::<Vec<_>>(),
            vec![2, 2, 2]
        );
        assert_eq!(caps[0].tasks_of("other"), 3);
    }

    #[test]
    fn spread_over_an_attribute_alternates_between_its_values() {
        let mut caps = vec![
            capacity("a1", 1024, 1000, &[]),
            capacity("a2", 1024, 1000, &[]),
            capacity("b1", 1024, 1000, &[]),
        ];
        set(&mut caps[0], "zone", "a");
        set(&mut caps[1], "zone", "a");
        set(&mut caps[2], "zone", "b");
        let spread = [Strategy::Spread(SpreadOver::Attribute("zone".into()))];
        let demand = need(1, 100, &[]);
        let req = request(&demand, &[], &spread);
        let placed = place_all(&mut caps, &req, 6);
        let zones: Vec<&str> = placed
            .iter()
            .map(|&i| caps[i].attribute("zone").unwrap())
            .collect();
        assert_eq!(zones, ["a", "b", "a", "b", "a", "b"]);
        // Within zone a, the task goes where more memory is left.
        assert_eq!(placed, vec![0, 2, 1, 2, 0, 2]);
    }

    #[test]
    fn strategies_apply_in_the_order_given() {
        let fresh = || {
            let mut caps = vec![
                capacity("a-big", 1024, 4000, &[]),
                capacity("a-small", 1024, 1000, &[]),
                capacity("b-mid", 1024, 2000, &[]),
                capacity("b-big", 1024, 3000, &[]),
            ];
            for (cap, zone) in caps.iter_mut().zip(["a", "a", "b", "b"]) {
                set(cap, "zone", zone);
            }
            caps
        };
        let demand = need(1, 500, &[]);
        let spread_then_pack = [
            Strategy::Spread(SpreadOver::Attribute("zone".into())),
            Strategy::Binpack(PackBy::Memory),
        ];
        let mut caps = fresh();
        let placed = place_all(&mut caps, &request(&demand, &[], &spread_then_pack), 4);
        assert_eq!(placed, vec![1, 2, 1, 2]);
        assert_eq!(caps[1].memory, 0);

        // Packing first leaves the spread only the fullest instance.
        let pack_then_spread = [
            Strategy::Binpack(PackBy::Memory),
            Strategy::Spread(SpreadOver::Attribute("zone".into())),
        ];
        let mut caps = fresh();
        let placed = place_all(&mut caps, &request(&demand, &[], &pack_then_spread), 3);
        assert_eq!(placed, vec![1, 1, 2]);
    }

    #[test]
    fn random_only_ever_picks_a_fitting_instance() {
        let mut disconnected = capacity("disconnected", 1024, 4096, &[]);
        disconnected.agent_connected = false;
        let caps = vec![
            capacity("small", 1024, 100, &[]),
            capacity("fits-1", 1024, 1000, &[]),
            disconnected,
            capacity("port-taken", 1024, 4096, &[80]),
            capacity("fits-2", 1024, 1000, &[]),
        ];
        let random = [Strategy::Random];
        let demand = need(1, 500, &[80]);
        let req = request(&demand, &[], &random);
        let mut picked = BTreeSet::new();
        for _ in 0..200 {
            picked.insert(place(&mut caps.clone(), &req).unwrap());
        }
        // Both fitting instances turn up: the chance that 200 fair draws
        // all miss one of them is 2^-199.
        assert_eq!(picked, BTreeSet::from([1, 4]));
        let mut caps = caps;
        assert_eq!(place_all(&mut caps, &req, 2).len(), 2);
        assert_eq!(
            place(&mut caps, &req).unwrap_err(),
            vec![
                ("arn:small".to_owned(), Shortfall::Memory),
                ("arn:fits-1".to_owned(), Shortfall::Ports),
                ("arn:disconnected".to_owned(), Shortfall::Agent),
                ("arn:port-taken".to_owned(), Shortfall::Ports),
                ("arn:fits-2".to_owned(), Shortfall::Ports),
            ]
        );
    }

    #[test]
    fn a_disconnected_agent_is_the_reason_before_any_other() {
        let mut lost = with_tasks(capacity("lost", 10, 10, &[8080]), &["g"]);
        lost.agent_connected = false;
        lost.udp_taken.insert(53);
        let mut caps = vec![lost];
        let required = names(&[attributes::TASK_IAM_ROLE]);
        let constraints = [Constraint::DistinctInstance, member_of("attribute:x == y")];
        let mut demand = need(4096, 4096, &[8080]);
        demand.udp_ports = vec![53];
        let req = Request {
            demand: &demand,
            required: &required,
            group: "g",
            constraints: &constraints,
            strategies: &[],
        };
        let err = place(&mut caps, &req).unwrap_err();
        assert_eq!(err, vec![("arn:lost".to_owned(), Shortfall::Agent)]);
        assert_eq!(err[0].1.reason(), "AGENT");
        assert_eq!(err[0].1.detail(), None);
        caps[0].agent_connected = true;
        assert_eq!(
            place(&mut caps, &req).unwrap_err()[0].1,
            Shortfall::Attribute(attributes::TASK_IAM_ROLE.to_owned())
        );
    }

    #[test]
    fn a_udp_port_clash_is_a_ports_udp_shortfall() {
        let mut dns = capacity("dns", 1024, 1024, &[]);
        dns.udp_taken.insert(53);
        let mut caps = vec![dns];
        let udp = |port: u16| Demand {
            udp_ports: vec![port],
            ..need(1, 1, &[])
        };
        let err = place(&mut caps, &simple(&udp(53), NONE)).unwrap_err();
        assert_eq!(err, vec![("arn:dns".to_owned(), Shortfall::PortsUdp)]);
        assert_eq!(err[0].1.reason(), "RESOURCE:PORTS_UDP");
        // TCP 53 is another port.
        assert_eq!(place(&mut caps, &simple(&need(1, 1, &[53]), NONE)), Ok(0));
        assert_eq!(place(&mut caps, &simple(&udp(5353), NONE)), Ok(0));
        assert_eq!(
            place(&mut caps, &simple(&udp(5353), NONE)).unwrap_err()[0].1,
            Shortfall::PortsUdp
        );
        assert_eq!(caps[0].udp_taken, BTreeSet::from([53, 5353]));
    }

    fn constraint(kind: Option<&str>, expression: Option<&str>) -> PlacementConstraint {
        PlacementConstraint {
            constraint_type: kind.map(str::to_owned),
            expression: expression.map(str::to_owned),
        }
    }

    fn strategy(kind: Option<&str>, field: Option<&str>) -> PlacementStrategy {
        PlacementStrategy {
            strategy_type: kind.map(str::to_owned),
            field: field.map(str::to_owned),
        }
    }

    #[test]
    fn constraints_are_read_or_refused_with_a_message() {
        assert_eq!(
            constraints(&[
                constraint(Some("distinctInstance"), None),
                constraint(Some("distinctInstance"), Some(" ")),
                constraint(Some("memberOf"), Some("attribute:stack == prod")),
            ]),
            Ok(vec![
                Constraint::DistinctInstance,
                Constraint::DistinctInstance,
                member_of("attribute:stack == prod"),
            ])
        );
        let refused = |given: PlacementConstraint| constraints(&[given]).unwrap_err();
        let no_expression = "An expression is required for the memberOf placement constraint.";
        assert_eq!(refused(constraint(Some("memberOf"), None)), no_expression);
        assert_eq!(
            refused(constraint(Some("memberOf"), Some("  "))),
            no_expression
        );
        assert_eq!(
            refused(constraint(
                Some("distinctInstance"),
                Some("attribute:a == b")
            )),
            "Expressions are not supported for the distinctInstance placement constraint."
        );
        assert_eq!(
            refused(constraint(Some("sameInstance"), None)),
            "Invalid placement constraint type 'sameInstance'; use distinctInstance or memberOf."
        );
        assert_eq!(
            refused(constraint(None, Some("attribute:a == b"))),
            "Invalid placement constraint type ''; use distinctInstance or memberOf."
        );
        assert_eq!(
            refused(constraint(Some("memberOf"), Some("attribute:stack =="))),
            "Invalid memberOf expression: Invalid expression: missing a value after '==' at the end of the expression"
        );
        assert_eq!(
            refused(constraint(Some("memberOf"), Some("color == red"))),
            "Invalid memberOf expression: Invalid expression: unknown subject 'color' at position 0"
        );
        // One bad constraint refuses them all.
        assert!(constraints(&[
            constraint(Some("distinctInstance"), None),
            constraint(Some("memberOf"), None),
        ])
        .is_err());

        let ten = vec![constraint(Some("distinctInstance"), None); MAX_CONSTRAINTS];
        assert_eq!(constraints(&ten).unwrap().len(), 10);
        let eleven = vec![constraint(Some("distinctInstance"), None); MAX_CONSTRAINTS + 1];
        assert_eq!(
            constraints(&eleven).unwrap_err(),
            "A maximum of 10 placement constraints may be specified."
        );
    }

    #[test]
    fn strategies_are_read_or_refused_with_a_message() {
        assert_eq!(
            strategies(&[
                strategy(Some("binpack"), Some("CPU")),
                strategy(Some("binpack"), Some("memory")),
                strategy(Some("spread"), Some("instanceId")),
                strategy(Some("spread"), Some("host")),
                strategy(Some("spread"), Some("attribute:ecs.availability-zone")),
            ]),
            Ok(vec![
                Strategy::Binpack(PackBy::Cpu),
                Strategy::Binpack(PackBy::Memory),
                Strategy::Spread(SpreadOver::Instance),
                Strategy::Spread(SpreadOver::Instance),
                Strategy::Spread(SpreadOver::Attribute("ecs.availability-zone".to_owned())),
            ])
        );
        assert_eq!(
            strategies(&[
                strategy(Some("random"), None),
                strategy(Some("random"), Some(""))
            ]),
            Ok(vec![Strategy::Random, Strategy::Random])
        );
        let refused = |given: PlacementStrategy| strategies(&[given]).unwrap_err();
        let binpack = "The binpack placement strategy needs the field cpu or memory.";
        assert_eq!(refused(strategy(Some("binpack"), Some("disk"))), binpack);
        assert_eq!(refused(strategy(Some("binpack"), None)), binpack);
        assert_eq!(
            refused(strategy(Some("spread"), None)),
            "The spread placement strategy needs a field."
        );
        assert_eq!(
            refused(strategy(Some("spread"), Some("attribute:"))),
            "Invalid spread field 'attribute:'; use instanceId, host or attribute:<name>."
        );
        assert_eq!(
            refused(strategy(Some("spread"), Some("zone"))),
            "Invalid spread field 'zone'; use instanceId, host or attribute:<name>."
        );
        assert_eq!(
            refused(strategy(Some("random"), Some("instanceId"))),
            "The random placement strategy takes no field."
        );
        assert_eq!(
            refused(strategy(Some("pack"), Some("cpu"))),
            "Invalid placement strategy type 'pack'; use random, spread or binpack."
        );

        let five = vec![strategy(Some("random"), None); MAX_STRATEGIES];
        assert_eq!(strategies(&five).unwrap().len(), 5);
        let six = vec![strategy(Some("random"), None); MAX_STRATEGIES + 1];
        assert_eq!(
            strategies(&six).unwrap_err(),
            "A maximum of 5 placement strategies may be specified."
        );
    }
}
