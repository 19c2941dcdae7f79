//! The service scheduler: keeps each service at its desired count of
//! healthy tasks, rolls a new deployment in within the service's
//! `minimumHealthyPercent` and `maximumPercent`, replaces tasks that stop
//! or sit on draining instances, trips the deployment circuit breaker (and
//! rolls back), and writes the service events ECS writes. Pure functions
//! over [`State`]; the plane runs [`reconcile`] inside a store update
//! whenever something a service depends on changes, and every second.
//! docs/ecs-local.md §4 describes the rules.

use crate::arn::{self, ArnBuilder};
use crate::launch::{self, Launch};
use crate::lifecycle::{self, SERVICE_SCHEDULER_INITIATED};
use crate::placement::{self, Capacity, Constraint, Shortfall, SpreadOver, Strategy};
use crate::store::{ServiceRecord, State, TaskRecord};
use ecs_model::ecs_api::{Deployment, ServiceEvent, Tag, TaskDefinition};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

pub const REPLICA: &str = "REPLICA";
pub const DAEMON: &str = "DAEMON";

/// Service statuses.
pub const ACTIVE: &str = "ACTIVE";
pub const DRAINING: &str = "DRAINING";
pub const INACTIVE: &str = "INACTIVE";

/// Deployment statuses and rollout states.
pub const PRIMARY: &str = "PRIMARY";
const IN_PROGRESS: &str = "IN_PROGRESS";
const COMPLETED: &str = "COMPLETED";
const FAILED: &str = "FAILED";

/// ECS keeps the latest 100 events of a service.
const MAX_EVENTS: usize = 100;

/// The same event is not written again within this time (a task that
/// cannot be placed would otherwise add one every pass).
const EVENT_REPEAT_SECS: f64 = 300.0;

/// After this many failed tasks in [`FAILURE_WINDOW_SECS`], launches wait
/// ([`launch_delay`]), as ECS throttles services whose tasks keep failing.
const FAILURES_BEFORE_THROTTLE: usize = 3;
const FAILURE_WINDOW_SECS: f64 = 900.0;

/// The stop reason of a task the scheduler stopped because its health
/// checks failed.
pub const UNHEALTHY_REASON: &str = "Task failed container health checks";

/// The stop codes of tasks that failed on their own (not stopped by a user
/// or the scheduler).
const FAILURE_CODES: [&str; 2] = ["TaskFailedToStart", "EssentialContainerExited"];

/// `minimumHealthyPercent` and `maximumPercent` when the service gives none:
/// ECS's defaults for each scheduling strategy.
pub fn default_percents(strategy: &str) -> (i64, i64) {
    if strategy == DAEMON {
        (0, 100)
    } else {
        (100, 200)
    }
}

/// A new deployment id: `ecs-svc/` and 19 digits, as ECS makes them.
pub fn new_deployment_id() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    let digits: String = (0..19)
        .map(|i| {
            let low = if i == 0 { 1 } else { 0 };
            char::from(b'0' + rng.random_range(low..10u8))
        })
        .collect();
    format!("ecs-svc/{digits}")
}

/// Makes `task_definition` the service's PRIMARY deployment; the one
/// before it turns ACTIVE and is drained by the scheduler. Returns the id.
pub fn start_deployment(service: &mut ServiceRecord, task_definition: &str, now: f64) -> String {
    let id = new_deployment_id();
    let deployments = service.service.deployments.get_or_insert_with(Vec::new);
    for d in deployments.iter_mut() {
        d.status = Some(ACTIVE.to_owned());
        d.updated_at = Some(now);
    }
    deployments.insert(
        0,
        Deployment {
            id: Some(id.clone()),
            status: Some(PRIMARY.to_owned()),
            task_definition: Some(task_definition.to_owned()),
            desired_count: service.service.desired_count,
            created_at: Some(now),
            updated_at: Some(now),
            launch_type: Some("EC2".to_owned()),
            rollout_state: Some(IN_PROGRESS.to_owned()),
            rollout_state_reason: Some(format!("ECS deployment {id} in progress.")),
            ..Deployment::default()
        },
    );
    service.service.task_definition = Some(task_definition.to_owned());
    service.steady = false;
    id
}

/// Adds an event, newest first, unless a recent one says the same.
pub fn add_event(service: &mut ServiceRecord, message: String, now: f64) {
    let events = service.service.events.get_or_insert_with(Vec::new);
    let repeated = events.iter().any(|e| {
        e.message.as_deref() == Some(message.as_str())
            && e.created_at.is_some_and(|at| now - at < EVENT_REPEAT_SECS)
    });
    if repeated {
        return;
    }
    events.insert(
        0,
        ServiceEvent {
            id: Some(uuid::Uuid::new_v4().to_string()),
            created_at: Some(now),
            message: Some(message),
        },
    );
    events.truncate(MAX_EVENTS);
}

/// What one pass changed, beyond the state itself.
#[derive(Debug, Default, PartialEq)]
pub struct Pass {
    /// Instances whose agents have payloads to get.
    pub deliver: BTreeSet<String>,
}

/// Brings every service one step closer to what it should be.
pub fn reconcile(arns: &ArnBuilder, state: &mut State, now: f64, ttl: Duration) -> Pass {
    let mut pass = Pass::default();
    let keys: Vec<String> = state
        .services
        .iter()
        .filter(|(_, s)| s.status() != INACTIVE)
        .map(|(k, _)| k.clone())
        .collect();
    for key in keys {
        reconcile_one(arns, state, &key, now, ttl, &mut pass);
    }
    pass
}

/// One live task of a service, as the scheduler sees it.
#[derive(Debug, Clone)]
struct Member {
    id: String,
    deployment: String,
    instance: Option<String>,
    running: bool,
    healthy: bool,
    /// Its health checks failed (`healthStatus` UNHEALTHY).
    unhealthy: bool,
    /// On an instance that is not ACTIVE (draining, deregistered, gone).
    displaced: bool,
    created_at: f64,
}

/// Whether a task of `definition` counts as healthy only once its task
/// health is HEALTHY: some essential container has a health check.
fn health_checked(definition: Option<&TaskDefinition>) -> bool {
    definition.is_some_and(|d| {
        d.container_definitions
            .iter()
            .any(|c| c.essential != Some(false) && c.health_check.is_some())
    })
}

fn members(state: &State, service: &ServiceRecord) -> Vec<Member> {
    let mut out: Vec<Member> = state
        .tasks
        .values()
        .filter(|t| t.cluster == service.cluster)
        .filter(|t| t.service.as_deref() == Some(service.name.as_str()))
        .filter(|t| t.desired_status() != "STOPPED" && !t.is_stopped())
        .map(|t| {
            let running = t.last_status() == "RUNNING";
            let checked = health_checked(state.task_definition(&t.family, t.revision));
            let health = t.task.health_status.as_deref();
            let healthy = running && (!checked || health == Some("HEALTHY"));
            let unhealthy = checked && health == Some("UNHEALTHY");
            let displaced = t
                .instance_id
                .as_ref()
                .and_then(|id| state.instances.get(id))
                .is_none_or(|i| i.status != ACTIVE);
            Member {
                id: t.id.clone(),
                deployment: t.task.started_by.clone().unwrap_or_default(),
                instance: t.instance_id.clone(),
                running,
                healthy,
                unhealthy,
                displaced,
                created_at: t.task.created_at.unwrap_or(0.0),
            }
        })
        .collect();
    out.sort_by(|a, b| a.created_at.total_cmp(&b.created_at).then(a.id.cmp(&b.id)));
    out
}

/// Tasks of a service's deployment that failed on their own, with when.
fn failures<'a>(
    state: &'a State,
    service: &'a ServiceRecord,
) -> impl Iterator<Item = &'a TaskRecord> + 'a {
    state.tasks.values().filter(move |t| {
        t.cluster == service.cluster
            && t.service.as_deref() == Some(service.name.as_str())
            && t.is_stopped()
            && (t.stopped_unhealthy
                || t.task
                    .stop_code
                    .as_deref()
                    .is_some_and(|c| FAILURE_CODES.contains(&c)))
    })
}

/// How long after its latest failure a service whose tasks keep failing
/// waits before starting more: none below [`FAILURES_BEFORE_THROTTLE`]
/// recent failures, then 10 s doubling per failure, at most 5 minutes.
fn launch_delay(state: &State, service: &ServiceRecord, now: f64) -> Option<f64> {
    let recent: Vec<f64> = failures(state, service)
        .filter_map(|t| t.task.stopped_at)
        .filter(|at| now - at < FAILURE_WINDOW_SECS)
        .collect();
    if recent.len() < FAILURES_BEFORE_THROTTLE {
        return None;
    }
    let latest = recent.iter().copied().fold(f64::MIN, f64::max);
    let doublings = (recent.len() - FAILURES_BEFORE_THROTTLE).min(5);
    let wait = (10.0 * f64::from(1u32 << doublings)).min(300.0);
    (now < latest + wait).then_some(latest + wait)
}

fn definition_of<'a>(state: &'a State, arn_or_ref: &str) -> Option<&'a TaskDefinition> {
    let reference = arn::task_definition_ref(arn_or_ref)?;
    state.task_definition(&reference.family, reference.revision?)
}

/// The placement strategies of a service: its own, else ECS's default
/// (spread over availability zones, then over instances).
fn service_strategies(service: &ServiceRecord) -> Vec<Strategy> {
    let given = service
        .service
        .placement_strategy
        .as_deref()
        .unwrap_or_default();
    match placement::strategies(given) {
        Ok(list) if !list.is_empty() => list,
        _ => vec![
            Strategy::Spread(SpreadOver::Attribute("ecs.availability-zone".to_owned())),
            Strategy::Spread(SpreadOver::Instance),
        ],
    }
}

fn service_constraints(service: &ServiceRecord) -> Vec<Constraint> {
    let given = service
        .service
        .placement_constraints
        .as_deref()
        .unwrap_or_default();
    // Checked when the service was created or updated.
    placement::constraints(given).unwrap_or_default()
}

fn task_word(n: usize) -> &'static str {
    if n == 1 {
        "task"
    } else {
        "tasks"
    }
}

/// `(task a) (task b)`.
fn task_list(ids: &[String]) -> String {
    ids.iter()
        .map(|id| format!("(task {id})"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Why no instance took a task, in the words of ECS's service event.
fn placement_failure(name: &str, shortfalls: &[(String, Shortfall)]) -> String {
    let head = format!(
        "(service {name}) was unable to place a task because no container instance met all of its requirements."
    );
    let Some((instance, shortfall)) = shortfalls.first() else {
        return format!("{head} Reason: No Container Instances were found in your cluster.");
    };
    let id = arn::resource_id(instance);
    let why = match shortfall {
        Shortfall::Agent => "has its agent disconnected".to_owned(),
        Shortfall::Attribute(attr) => {
            format!("is missing an attribute required by your task: {attr}")
        }
        Shortfall::MemberOf => "does not match the memberOf placement constraint".to_owned(),
        Shortfall::DistinctInstance => {
            "already runs a task of this service (distinctInstance)".to_owned()
        }
        Shortfall::Cpu => "has insufficient CPU units available".to_owned(),
        Shortfall::Memory => "has insufficient memory available".to_owned(),
        Shortfall::Ports => "is already using a port required by your task".to_owned(),
        Shortfall::PortsUdp => "is already using a UDP port required by your task".to_owned(),
    };
    format!("{head} The closest matching (container-instance {id}) {why}.")
}

/// Everything the scheduler changes in one service during one pass.
struct Step<'a> {
    arns: &'a ArnBuilder,
    now: f64,
    ttl: Duration,
    key: String,
    started: Vec<String>,
    stopped: Vec<String>,
    pass: &'a mut Pass,
}

impl Step<'_> {
    fn service<'s>(&self, state: &'s mut State) -> &'s mut ServiceRecord {
        state
            .services
            .get_mut(&self.key)
            .expect("the service of a step exists for the whole step")
    }

    fn stop(&mut self, state: &mut State, task_id: &str, reason: &str) {
        if let Some(task) = state.tasks.get_mut(task_id) {
            lifecycle::request_stop(task, reason, SERVICE_SCHEDULER_INITIATED, self.now);
            if let Some(instance) = &task.instance_id {
                self.pass.deliver.insert(instance.clone());
            }
            self.stopped.push(task_id.to_owned());
        }
    }

    /// Starts up to `count` tasks of the primary deployment, on `only` (one
    /// instance) or anywhere in the cluster.
    fn start(&mut self, state: &mut State, count: usize, only: Option<&str>) {
        if count == 0 {
            return;
        }
        let snapshot = self.service(state).clone();
        let Some(primary) = primary(&snapshot) else {
            return;
        };
        let deployment = primary.id.clone().unwrap_or_default();
        let definition_ref = primary.task_definition.clone().unwrap_or_default();
        let Some(definition) = definition_of(state, &definition_ref).cloned() else {
            let message = format!(
                "(service {}) cannot start tasks: its task definition {definition_ref} does not exist.",
                snapshot.name
            );
            add_event(self.service(state), message, self.now);
            return;
        };
        let mut capacities: Vec<Capacity> = launch::capacities(state, &snapshot.cluster)
            .into_iter()
            .filter(|c| only.is_none_or(|id| c.instance_id == id))
            .collect();
        let constraints = service_constraints(&snapshot);
        let strategies = service_strategies(&snapshot);
        let propagated: Vec<Tag> = match snapshot.service.propagate_tags.as_deref() {
            Some("SERVICE") => snapshot.service.tags.clone().unwrap_or_default(),
            Some("TASK_DEFINITION") => state
                .task_definition_tags(
                    definition.family.as_deref().unwrap_or_default(),
                    definition.revision.unwrap_or(0),
                )
                .to_vec(),
            _ => Vec::new(),
        };
        let tags = launch::task_tags(&propagated, None);
        let plan = Launch {
            cluster: &snapshot.cluster,
            definition: &definition,
            overrides: None,
            group: format!("service:{}", snapshot.name),
            started_by: Some(deployment),
            tags,
            enable_execute_command: snapshot.service.enable_execute_command.unwrap_or(false),
            service: Some(snapshot.name.clone()),
            constraints: &constraints,
            strategies: &strategies,
        };
        let launched = launch::launch(
            self.arns,
            state,
            &mut capacities,
            &plan,
            count,
            self.now,
            self.ttl,
        );
        match launched {
            Ok(launched) => {
                self.pass.deliver.extend(launched.instances);
                self.started.extend(launched.tasks);
                if let Some(shortfalls) = launched.shortfalls.first() {
                    let message = placement_failure(&snapshot.name, shortfalls);
                    add_event(self.service(state), message, self.now);
                }
            }
            Err(e) => {
                let message = format!("(service {}) cannot start tasks: {e}", snapshot.name);
                add_event(self.service(state), message, self.now);
            }
        }
    }

    /// Writes the started/stopped events.
    fn report(&mut self, state: &mut State) {
        let now = self.now;
        let started = std::mem::take(&mut self.started);
        let stopped = std::mem::take(&mut self.stopped);
        let service = self.service(state);
        let name = service.name.clone();
        if !stopped.is_empty() {
            let message = format!(
                "(service {name}) has stopped {} running {}: {}.",
                stopped.len(),
                task_word(stopped.len()),
                task_list(&stopped)
            );
            add_event(service, message, now);
            service.steady = false;
        }
        if !started.is_empty() {
            let message = format!(
                "(service {name}) has started {} {}: {}.",
                started.len(),
                task_word(started.len()),
                task_list(&started)
            );
            add_event(service, message, now);
            service.steady = false;
        }
    }
}

fn primary(service: &ServiceRecord) -> Option<&Deployment> {
    service.service.deployments.as_ref()?.first()
}

fn primary_mut(service: &mut ServiceRecord) -> Option<&mut Deployment> {
    service.service.deployments.as_mut()?.first_mut()
}

fn reconcile_one(
    arns: &ArnBuilder,
    state: &mut State,
    key: &str,
    now: f64,
    ttl: Duration,
    pass: &mut Pass,
) {
    let mut step = Step {
        arns,
        now,
        ttl,
        key: key.to_owned(),
        started: Vec::new(),
        stopped: Vec::new(),
        pass,
    };
    let Some(service) = state.services.get(key).cloned() else {
        return;
    };
    let members = members(state, &service);
    if service.status() == DRAINING {
        for m in &members {
            step.stop(state, &m.id, "Service is being deleted");
        }
        step.report(state);
        if !has_unstopped_tasks(state, &service) {
            let record = step.service(state);
            record.service.status = Some(INACTIVE.to_owned());
            record.service.desired_count = 0;
            record.service.running_count = 0;
            record.service.pending_count = 0;
        }
        return;
    }
    // Tasks whose health checks failed are stopped and replaced; they count
    // as failed tasks of their deployment.
    let mut members = members;
    let sick: Vec<String> = members
        .iter()
        .filter(|m| m.unhealthy)
        .map(|m| m.id.clone())
        .collect();
    for id in &sick {
        step.stop(state, id, UNHEALTHY_REASON);
        if let Some(task) = state.tasks.get_mut(id) {
            task.stopped_unhealthy = true;
        }
    }
    members.retain(|m| !m.unhealthy);
    trip_circuit_breaker(state, key, now);
    let service = match state.services.get(key) {
        Some(s) => s.clone(),
        None => return,
    };
    let strategy = service
        .service
        .scheduling_strategy
        .clone()
        .unwrap_or_else(|| REPLICA.to_owned());
    if let Some(primary) = primary(&service) {
        let head = Head {
            id: primary.id.clone().unwrap_or_default(),
            failed: primary.rollout_state.as_deref() == Some(FAILED),
        };
        if strategy == DAEMON {
            schedule_daemon(&mut step, state, &service, &members, &head);
        } else {
            schedule_replicas(&mut step, state, &service, &members, &head);
        }
    }
    step.report(state);
    let members = self::members(state, &service);
    let stopping = state
        .tasks
        .values()
        .any(|t| is_of(t, &service) && t.desired_status() == "STOPPED" && !t.is_stopped());
    account(state, key, &members, stopping, now);
}

fn is_of(task: &TaskRecord, service: &ServiceRecord) -> bool {
    task.cluster == service.cluster && task.service.as_deref() == Some(service.name.as_str())
}

/// Whether a task of the service has not reached STOPPED (wanted running,
/// or told to stop and not yet stopped).
fn has_unstopped_tasks(state: &State, service: &ServiceRecord) -> bool {
    state
        .tasks
        .values()
        .any(|t| is_of(t, service) && !t.is_stopped())
}

/// The primary deployment: its id, and whether the circuit breaker failed
/// it (nothing more of it is started then).
struct Head {
    id: String,
    failed: bool,
}

/// The launches a REPLICA service may make now, and the tasks it stops.
fn schedule_replicas(
    step: &mut Step<'_>,
    state: &mut State,
    service: &ServiceRecord,
    members: &[Member],
    head: &Head,
) {
    let (primary_id, failed) = (head.id.as_str(), head.failed);
    let desired = usize::try_from(service.service.desired_count.max(0)).unwrap_or(0);
    let (min_pct, max_pct) = percents(service, REPLICA);
    let max_total = desired.saturating_mul(max_pct) / 100;
    let min_healthy = desired.saturating_mul(min_pct).div_ceil(100);
    let scaling = format!("Scaling activity initiated by (deployment {primary_id})");

    // Surplus tasks of the current deployment go first, whatever their
    // health: scaling in does not wait for the minimum healthy count. The
    // unhealthy ones, then those on the busiest instances, then the newest.
    let mut current: Vec<&Member> = members
        .iter()
        .filter(|m| m.deployment == primary_id && !m.displaced)
        .collect();
    let mut stopped: BTreeSet<String> = BTreeSet::new();
    if current.len() > desired {
        let mut per_instance: BTreeMap<Option<&str>, usize> = BTreeMap::new();
        for m in &current {
            *per_instance.entry(m.instance.as_deref()).or_default() += 1;
        }
        let mut victims = current.clone();
        victims.sort_by(|a, b| {
            a.healthy
                .cmp(&b.healthy)
                .then_with(|| {
                    per_instance[&b.instance.as_deref()].cmp(&per_instance[&a.instance.as_deref()])
                })
                .then_with(|| b.created_at.total_cmp(&a.created_at))
        });
        for m in victims.into_iter().take(current.len() - desired) {
            stopped.insert(m.id.clone());
            step.stop(state, &m.id, &scaling);
        }
        current.retain(|m| !stopped.contains(&m.id));
    }

    // Replacements and new tasks, within maximumPercent of the desired count.
    let live = members.len() - stopped.len();
    let missing = desired.saturating_sub(current.len());
    let room = max_total.saturating_sub(live);
    let throttled = launch_delay(state, service, step.now).is_some();
    if !failed && !throttled {
        step.start(state, missing.min(room), None);
    } else if throttled && missing > 0 {
        let message = format!(
            "(service {}) is unable to consistently start tasks successfully.",
            service.name
        );
        add_event(step.service(state), message, step.now);
    }

    // Tasks of older deployments and on draining instances: the unhealthy
    // ones at once, the healthy ones while the healthy count stays at or
    // above minimumHealthyPercent of the desired count.
    let healthy = members
        .iter()
        .filter(|m| m.healthy && !stopped.contains(&m.id))
        .count();
    let mut budget = healthy.saturating_sub(min_healthy);
    let mut outgoing: Vec<&Member> = members
        .iter()
        .filter(|m| m.deployment != primary_id || m.displaced)
        .filter(|m| !stopped.contains(&m.id))
        .collect();
    outgoing.sort_by(|a, b| {
        a.healthy
            .cmp(&b.healthy)
            .then_with(|| a.created_at.total_cmp(&b.created_at))
    });
    for m in outgoing {
        let reason = if m.displaced {
            "Container instance is DRAINING".to_owned()
        } else {
            scaling.clone()
        };
        if !m.healthy {
            step.stop(state, &m.id, &reason);
        } else if budget > 0 && !failed {
            // A failed deployment that does not roll back starts nothing,
            // so healthy tasks are kept rather than drained to the minimum.
            budget -= 1;
            step.stop(state, &m.id, &reason);
        }
    }
}

/// A DAEMON service: one task of the primary deployment on every ACTIVE
/// instance its constraints allow; an older deployment's task on an
/// instance is stopped before the new one starts there.
fn schedule_daemon(
    step: &mut Step<'_>,
    state: &mut State,
    service: &ServiceRecord,
    members: &[Member],
    head: &Head,
) {
    let (primary_id, failed) = (head.id.as_str(), head.failed);
    let constraints = service_constraints(service);
    let eligible: Vec<String> = launch::capacities(state, &service.cluster)
        .into_iter()
        .filter(|c| {
            constraints.iter().all(|constraint| match constraint {
                Constraint::MemberOf(expression) => {
                    let groups: Vec<&str> = c.groups.iter().map(String::as_str).collect();
                    expression.matches(&c.facts(&groups))
                }
                Constraint::DistinctInstance => true,
            })
        })
        .map(|c| c.instance_id)
        .collect();
    let desired = i64::try_from(eligible.len()).unwrap_or(i64::MAX);
    let record = step.service(state);
    record.service.desired_count = desired;
    if let Some(p) = primary_mut(record) {
        p.desired_count = desired;
    }
    let scaling = format!("Scaling activity initiated by (deployment {primary_id})");
    let throttled = launch_delay(state, service, step.now).is_some();
    for m in members {
        let on_eligible = m.instance.as_ref().is_some_and(|i| eligible.contains(i));
        if m.displaced {
            step.stop(state, &m.id, "Container instance is DRAINING");
        } else if !on_eligible {
            step.stop(
                state,
                &m.id,
                "Container instance no longer meets the service's placement constraints",
            );
        }
    }
    for instance in &eligible {
        let here: Vec<&Member> = members
            .iter()
            .filter(|m| m.instance.as_deref() == Some(instance.as_str()))
            .collect();
        let current: Vec<&&Member> = here.iter().filter(|m| m.deployment == primary_id).collect();
        for extra in current.iter().skip(1) {
            step.stop(state, &extra.id, &scaling);
        }
        if !current.is_empty() {
            continue;
        }
        let old: Vec<&&Member> = here.iter().filter(|m| m.deployment != primary_id).collect();
        if !old.is_empty() {
            for m in old {
                step.stop(state, &m.id, &scaling);
            }
        } else if !failed && !throttled {
            step.start(state, 1, Some(instance));
        }
    }
}

fn percents(service: &ServiceRecord, strategy: &str) -> (usize, usize) {
    let (min_default, max_default) = default_percents(strategy);
    let config = service.service.deployment_configuration.as_ref();
    let min = config
        .and_then(|c| c.minimum_healthy_percent)
        .unwrap_or(min_default);
    let max = config
        .and_then(|c| c.maximum_percent)
        .unwrap_or(max_default);
    (
        usize::try_from(min.max(0)).unwrap_or(0),
        usize::try_from(max.max(0)).unwrap_or(0),
    )
}

/// The failure count of the primary deployment and, once it reaches the
/// threshold, its end: FAILED, and a rollback to the last deployment that
/// completed when the breaker rolls back.
fn trip_circuit_breaker(state: &mut State, key: &str, now: f64) {
    let Some(service) = state.services.get(key) else {
        return;
    };
    let Some(primary) = primary(service) else {
        return;
    };
    let primary_id = primary.id.clone().unwrap_or_default();
    let failed = failures(state, service)
        .filter(|t| t.task.started_by.as_deref() == Some(primary_id.as_str()))
        .count();
    let breaker = service
        .service
        .deployment_configuration
        .as_ref()
        .and_then(|c| c.deployment_circuit_breaker.clone())
        .unwrap_or_default();
    let desired = usize::try_from(service.service.desired_count.max(0)).unwrap_or(0);
    let threshold = desired.div_ceil(2).clamp(3, 200);
    let in_progress = primary.rollout_state.as_deref() == Some(IN_PROGRESS);
    let Some(record) = state.services.get_mut(key) else {
        return;
    };
    if let Some(p) = primary_mut(record) {
        p.failed_tasks = i64::try_from(failed).unwrap_or(i64::MAX);
    }
    if !(breaker.enable && in_progress && failed >= threshold) {
        return;
    }
    let name = record.name.clone();
    if let Some(p) = primary_mut(record) {
        p.rollout_state = Some(FAILED.to_owned());
        p.rollout_state_reason =
            Some("ECS deployment circuit breaker: tasks failed to start.".to_owned());
        p.updated_at = Some(now);
    }
    add_event(
        record,
        format!(
            "(service {name}) (deployment {primary_id}) deployment failed: tasks failed to start."
        ),
        now,
    );
    let current_definition = record.service.task_definition.clone();
    let back_to = record
        .stable_task_definition
        .clone()
        .filter(|stable| Some(stable) != current_definition.as_ref());
    if let (true, Some(definition)) = (breaker.rollback, back_to) {
        let id = start_deployment(record, &definition, now);
        if let Some(p) = primary_mut(record) {
            p.rollout_state_reason = Some(format!(
                "ECS deployment circuit breaker: rolling back from deployment {primary_id}."
            ));
        }
        add_event(
            record,
            format!("(service {name}) rolling back to deployment {id} ({definition})."),
            now,
        );
    }
}

/// Counts, finished deployments, a completed rollout and the steady state
/// (which waits for the tasks being stopped to have stopped).
fn account(state: &mut State, key: &str, members: &[Member], stopping: bool, now: f64) {
    let Some(record) = state.services.get_mut(key) else {
        return;
    };
    let name = record.name.clone();
    let desired = record.service.desired_count;
    let deployments = record.service.deployments.get_or_insert_with(Vec::new);
    let primary_id = deployments
        .first()
        .and_then(|d| d.id.clone())
        .unwrap_or_default();
    // A deployment with no task left is over (INACTIVE), except the primary.
    deployments.retain(|d| {
        let id = d.id.as_deref().unwrap_or_default();
        id == primary_id || members.iter().any(|m| m.deployment == id)
    });
    for d in deployments.iter_mut() {
        let id = d.id.as_deref().unwrap_or_default();
        let of = || members.iter().filter(|m| m.deployment == id);
        let running = i64::try_from(of().filter(|m| m.running).count()).unwrap_or(0);
        let pending = i64::try_from(of().filter(|m| !m.running).count()).unwrap_or(0);
        if (d.running_count, d.pending_count) != (running, pending) {
            d.running_count = running;
            d.pending_count = pending;
            d.updated_at = Some(now);
        }
        if id == primary_id {
            d.desired_count = desired;
        } else {
            d.desired_count = running + pending;
        }
    }
    record.service.running_count = deployments.iter().map(|d| d.running_count).sum();
    record.service.pending_count = deployments.iter().map(|d| d.pending_count).sum();
    let alone = deployments.len() == 1;
    let settled = members
        .iter()
        .filter(|m| m.deployment == primary_id && m.healthy && !m.displaced)
        .count();
    let all_here = i64::try_from(settled).unwrap_or(0) == desired
        && i64::try_from(members.len()).unwrap_or(0) == desired
        && !stopping;
    let Some(primary) = deployments.first_mut() else {
        return;
    };
    let rollout = primary.rollout_state.clone().unwrap_or_default();
    if rollout == IN_PROGRESS && alone && all_here {
        primary.rollout_state = Some(COMPLETED.to_owned());
        primary.rollout_state_reason = Some(format!("ECS deployment {primary_id} completed."));
        primary.updated_at = Some(now);
        record.stable_task_definition = primary.task_definition.clone();
        add_event(
            record,
            format!("(service {name}) (deployment {primary_id}) deployment completed."),
            now,
        );
    }
    let completed = primary_rollout(record) == Some(COMPLETED);
    if completed && alone && all_here && !record.steady {
        record.steady = true;
        add_event(
            record,
            format!("(service {name}) has reached a steady state."),
            now,
        );
    }
}

fn primary_rollout(record: &ServiceRecord) -> Option<&str> {
    primary(record)?.rollout_state.as_deref()
}

#[cfg(test)]
mod tests;
