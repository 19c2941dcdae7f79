#![allow(clippy::unwrap_used)]
//! The service scheduler's rules, pass by pass, with the agents' part
//! played by hand: tasks are reported RUNNING, HEALTHY or STOPPED between
//! passes, as agents would.

use super::*;
use crate::store::{ClusterRecord, InstanceRecord};
use ecs_model::ecs_api::{
    ContainerDefinition, DeploymentCircuitBreaker, DeploymentConfiguration, HealthCheck, Resource,
    Service, SubmitTaskStateChangeRequest,
};

const TTL: Duration = Duration::from_secs(3600);

struct World {
    arns: ArnBuilder,
    st: State,
    now: f64,
}

impl World {
    /// A cluster `default` with `instances` instances `i1`… of 4096 CPU
    /// units and 4096 MiB, agents connected.
    fn new(instances: usize) -> Self {
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
        let mut world = World {
            arns,
            st,
            now: 1000.0,
        };
        for n in 1..=instances {
            world.add_instance(&format!("i{n}"));
        }
        world
    }

    fn add_instance(&mut self, id: &str) {
        let resource = |name: &str, value: i64| Resource {
            name: Some(name.into()),
            resource_type: Some("INTEGER".into()),
            integer_value: Some(value),
            ..Resource::default()
        };
        self.st.instances.insert(
            id.into(),
            InstanceRecord {
                id: id.into(),
                arn: self.arns.container_instance("default", id),
                cluster: "default".into(),
                ec2_instance_id: None,
                attributes: vec![],
                custom_attributes: Vec::new(),
                registered_resources: vec![resource("CPU", 4096), resource("MEMORY", 4096)],
                status: ACTIVE.into(),
                agent_connected: true,
                version_info: None,
                registered_at: 0.0,
                version: 1,
                tags: None,
                agent_update: None,
            },
        );
    }

    /// Registers revision n of `web` (one essential container of 256 MiB,
    /// with a health check when `checked`); returns its ARN.
    fn definition(&mut self, checked: bool) -> String {
        let revisions = self.st.task_definitions.get_or_default("web");
        let revision = i64::try_from(revisions.len()).unwrap() + 1;
        let arn = self.arns.task_definition("web", revision);
        revisions.push(TaskDefinition {
            task_definition_arn: Some(arn.clone()),
            family: Some("web".into()),
            revision: Some(revision),
            status: Some("ACTIVE".into()),
            container_definitions: vec![ContainerDefinition {
                name: Some("app".into()),
                image: Some("busybox".into()),
                memory: Some(256),
                health_check: checked.then(|| HealthCheck {
                    command: Some(vec!["CMD".into(), "true".into()]),
                    ..HealthCheck::default()
                }),
                ..ContainerDefinition::default()
            }],
            ..TaskDefinition::default()
        });
        arn
    }

    fn create(&mut self, desired: i64, definition: &str, config: DeploymentConfiguration) {
        self.create_with(desired, definition, config, REPLICA);
    }

    fn create_with(
        &mut self,
        desired: i64,
        definition: &str,
        config: DeploymentConfiguration,
        strategy: &str,
    ) {
        let mut record = ServiceRecord {
            cluster: "default".into(),
            name: "svc".into(),
            service: Service {
                status: Some(ACTIVE.into()),
                desired_count: desired,
                deployment_configuration: Some(config),
                scheduling_strategy: Some(strategy.into()),
                ..Service::default()
            },
            stable_task_definition: None,
            client_token: None,
            steady: false,
        };
        start_deployment(&mut record, definition, self.now);
        self.st
            .services
            .insert(ServiceRecord::key("default", "svc"), record);
    }

    fn service(&mut self) -> &mut ServiceRecord {
        self.st.services.get_mut("default/svc").unwrap()
    }

    fn pass(&mut self) -> Pass {
        self.now += 1.0;
        reconcile(&self.arns, &mut self.st, self.now, TTL)
    }

    fn live(&self) -> Vec<&TaskRecord> {
        self.st
            .tasks
            .values()
            .filter(|t| t.service.is_some() && !t.is_stopped() && t.desired_status() != "STOPPED")
            .collect()
    }

    fn report(&mut self, id: &str, status: &str, reason: &str) {
        let req = SubmitTaskStateChangeRequest {
            task: Some(id.to_owned()),
            status: Some(status.into()),
            reason: Some(reason.into()),
            ..SubmitTaskStateChangeRequest::default()
        };
        lifecycle::apply_task_state_change(&mut self.st, &req, self.now);
    }

    /// The agents' part: every task wanted running and still PENDING runs
    /// (HEALTHY too when `healthy`); every task wanted stopped stops.
    fn agents_act(&mut self, healthy: bool) {
        let ids: Vec<(String, String, String)> = self
            .st
            .tasks
            .values()
            .filter(|t| !t.is_stopped())
            .map(|t| {
                (
                    t.id.clone(),
                    t.desired_status().to_owned(),
                    t.last_status().to_owned(),
                )
            })
            .collect();
        for (id, desired, last) in ids {
            // The agent got and acked the payload.
            let task = self.st.tasks.get_mut(&id).unwrap();
            task.sent = true;
            task.delivered_desired = Some(desired.clone());
            if desired == "STOPPED" {
                self.report(&id, "STOPPED", "");
            } else if last == "PENDING" {
                self.report(&id, "RUNNING", "");
            }
            if healthy && desired != "STOPPED" {
                self.st.tasks.get_mut(&id).unwrap().task.health_status = Some("HEALTHY".into());
            }
        }
    }

    fn events(&self) -> Vec<String> {
        self.st.services["default/svc"]
            .service
            .events
            .iter()
            .flatten()
            .filter_map(|e| e.message.clone())
            .collect()
    }

    fn deployments(&self) -> Vec<Deployment> {
        self.st.services["default/svc"]
            .service
            .deployments
            .clone()
            .unwrap_or_default()
    }

    fn per_instance(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for t in self.live() {
            *out.entry(t.instance_id.clone().unwrap()).or_default() += 1;
        }
        out
    }
}

fn config(min: i64, max: i64) -> DeploymentConfiguration {
    DeploymentConfiguration {
        minimum_healthy_percent: Some(min),
        maximum_percent: Some(max),
        ..DeploymentConfiguration::default()
    }
}

#[test]
fn a_replica_service_spreads_its_tasks_and_reaches_a_steady_state() {
    let mut w = World::new(3);
    let td = w.definition(false);
    w.create(6, &td, config(100, 200));
    let pass = w.pass();
    assert_eq!(w.live().len(), 6);
    assert_eq!(pass.deliver.len(), 3, "every instance has payloads");
    assert_eq!(
        w.per_instance().values().copied().collect::<Vec<_>>(),
        vec![2, 2, 2]
    );
    for t in w.live() {
        assert_eq!(t.task.group.as_deref(), Some("service:svc"));
        assert_eq!(t.task.started_by, w.deployments()[0].id);
    }
    assert!(w.events()[0].starts_with("(service svc) has started 6 tasks: (task "));
    assert_eq!(w.service().service.pending_count, 6);
    // Nothing more while they start.
    w.pass();
    assert_eq!(w.live().len(), 6);
    w.agents_act(false);
    w.pass();
    let d = &w.deployments()[0];
    assert_eq!((d.running_count, d.pending_count), (6, 0));
    assert_eq!(d.rollout_state.as_deref(), Some(COMPLETED));
    assert_eq!(w.service().service.running_count, 6);
    assert_eq!(w.events()[0], "(service svc) has reached a steady state.");
    assert!(w.events()[1].ends_with("deployment completed."));
    // The steady state is written once.
    w.pass();
    assert_eq!(w.events()[0], "(service svc) has reached a steady state.");
    assert!(w.events()[1].ends_with("deployment completed."));
}

#[test]
fn a_task_that_stops_is_replaced() {
    let mut w = World::new(1);
    let td = w.definition(false);
    w.create(2, &td, config(100, 200));
    w.pass();
    w.agents_act(false);
    w.pass();
    let victim = w.live()[0].id.clone();
    w.report(&victim, "STOPPED", "Essential container in task exited");
    assert_eq!(w.live().len(), 1);
    w.pass();
    assert_eq!(w.live().len(), 2);
    assert!(w.live().iter().all(|t| t.id != victim));
    assert!(w.events()[0].starts_with("(service svc) has started 1 task: (task "));
}

#[test]
fn scaling_in_stops_the_surplus_at_once_and_scaling_out_starts_more() {
    let mut w = World::new(2);
    let td = w.definition(false);
    w.create(4, &td, config(100, 200));
    w.pass();
    w.agents_act(false);
    w.pass();
    w.service().service.desired_count = 1;
    w.pass();
    assert_eq!(w.live().len(), 1);
    assert!(
        w.events()[0].starts_with("(service svc) has stopped 3 running tasks:"),
        "{:?}",
        w.events()
    );
    let stopped: Vec<_> =
        w.st.tasks
            .values()
            .filter(|t| t.desired_status() == "STOPPED")
            .collect();
    assert_eq!(stopped.len(), 3);
    assert!(stopped
        .iter()
        .all(|t| t.task.stop_code.as_deref() == Some(SERVICE_SCHEDULER_INITIATED)));
    w.agents_act(false);
    w.service().service.desired_count = 3;
    w.pass();
    assert_eq!(w.live().len(), 3);
}

/// Runs passes with the agents acting between them until the service has
/// one deployment left whose rollout completed, checking at every step
/// that at most `max` tasks live and at least `min` are healthy.
fn roll(w: &mut World, min: usize, max: usize, healthy: bool) -> usize {
    for round in 1..=30 {
        w.pass();
        let live = w.live().len();
        let running_healthy = w
            .live()
            .iter()
            .filter(|t| t.last_status() == "RUNNING")
            .count();
        assert!(live <= max, "round {round}: {live} tasks live");
        assert!(
            running_healthy >= min,
            "round {round}: {running_healthy} healthy"
        );
        let done = w.deployments().len() == 1
            && w.deployments()[0].rollout_state.as_deref() == Some(COMPLETED);
        if done {
            return round;
        }
        w.agents_act(healthy);
    }
    panic!("the rollout did not complete: {:?}", w.deployments());
}

#[test]
fn a_rolling_update_stays_within_minimum_healthy_and_maximum_percent() {
    for (min_pct, max_pct, min, max) in [(100, 200, 4, 8), (50, 100, 2, 4), (0, 100, 0, 4)] {
        let mut w = World::new(2);
        let v1 = w.definition(false);
        w.create(4, &v1, config(min_pct, max_pct));
        w.pass();
        w.agents_act(false);
        w.pass();
        let v2 = w.definition(false);
        {
            let now = w.now;
            start_deployment(w.service(), &v2, now)
        };
        assert_eq!(w.deployments().len(), 2);
        assert_eq!(w.deployments()[1].status.as_deref(), Some(ACTIVE));
        roll(&mut w, min, max, false);
        assert!(
            w.live().iter().all(|t| t.revision == 2),
            "{min_pct}/{max_pct}"
        );
        assert_eq!(w.live().len(), 4);
        assert_eq!(
            w.st.services["default/svc"]
                .stable_task_definition
                .as_deref(),
            Some(v2.as_str())
        );
    }
}

#[test]
fn with_health_checks_old_tasks_wait_for_new_ones_to_be_healthy() {
    let mut w = World::new(1);
    let v1 = w.definition(true);
    w.create(2, &v1, config(100, 200));
    w.pass();
    w.agents_act(true);
    w.pass();
    let v2 = w.definition(true);
    {
        let now = w.now;
        start_deployment(w.service(), &v2, now)
    };
    w.pass();
    assert_eq!(w.live().len(), 4, "two new tasks start beside the old");
    w.agents_act(false); // running, health not yet known
    for _ in 0..3 {
        w.pass();
        assert_eq!(
            w.live().len(),
            4,
            "nothing stops before the new are HEALTHY"
        );
    }
    assert_ne!(w.deployments()[0].rollout_state.as_deref(), Some(COMPLETED));
    w.agents_act(true);
    w.pass();
    assert_eq!(w.live().len(), 2);
    assert!(w.live().iter().all(|t| t.revision == 2));
}

#[test]
fn tasks_on_a_draining_instance_are_replaced_elsewhere_before_they_stop() {
    let mut w = World::new(3);
    let td = w.definition(false);
    w.create(3, &td, config(100, 200));
    w.pass();
    w.agents_act(false);
    w.pass();
    assert_eq!(w.per_instance().len(), 3);
    w.st.instances.get_mut("i1").unwrap().status = DRAINING.into();
    w.pass();
    assert_eq!(w.live().len(), 4, "the replacement starts first");
    assert_eq!(w.per_instance().get("i1"), Some(&1));
    w.pass();
    assert_eq!(w.per_instance().get("i1"), Some(&1), "not before it runs");
    w.agents_act(false);
    w.pass();
    assert_eq!(w.per_instance().get("i1"), None);
    assert_eq!(w.live().len(), 3);
    let drained: Vec<_> =
        w.st.tasks
            .values()
            .filter(|t| t.instance_id.as_deref() == Some("i1"))
            .collect();
    assert_eq!(
        drained[0].task.stopped_reason.as_deref(),
        Some("Container instance is DRAINING")
    );
}

/// A service of 2 on revision 1, completed, with a breaker; then a
/// deployment of revision 2 whose tasks exit as soon as they start, pass
/// after pass, until the deployment at the head changes or 10 passes went.
fn failing_rollout(rollback: bool) -> (World, String, String) {
    let mut w = World::new(1);
    let v1 = w.definition(false);
    let mut c = config(100, 200);
    c.deployment_circuit_breaker = Some(DeploymentCircuitBreaker {
        enable: true,
        rollback,
    });
    w.create(2, &v1, c);
    w.pass();
    w.agents_act(false);
    w.pass();
    let v2 = w.definition(false);
    let second = {
        let now = w.now;
        start_deployment(w.service(), &v2, now)
    };
    for _ in 0..10 {
        w.pass();
        let new: Vec<String> = w
            .live()
            .iter()
            .filter(|t| t.revision == 2)
            .map(|t| t.id.clone())
            .collect();
        for id in new {
            w.report(&id, "RUNNING", "");
            w.report(&id, "STOPPED", "Essential container in task exited");
        }
        w.agents_act(false);
        let head = w.deployments()[0].clone();
        if head.id.as_deref() != Some(second.as_str())
            || head.rollout_state.as_deref() == Some(FAILED)
        {
            break;
        }
        // Past the throttle of failing launches.
        w.now += 400.0;
    }
    (w, v1, second)
}

#[test]
fn the_circuit_breaker_fails_a_deployment_whose_tasks_exit() {
    let (mut w, _, second) = failing_rollout(false);
    let head = w.deployments()[0].clone();
    assert_eq!(head.id.as_deref(), Some(second.as_str()));
    assert_eq!(head.rollout_state.as_deref(), Some(FAILED));
    // The threshold is half the desired count, at least 3; two tasks fail
    // per pass here, so the breaker trips at the pass that sees 4.
    assert_eq!(head.failed_tasks, 4);
    assert_eq!(
        head.rollout_state_reason.as_deref(),
        Some("ECS deployment circuit breaker: tasks failed to start.")
    );
    assert!(w.events().contains(&format!(
        "(service svc) (deployment {second}) deployment failed: tasks failed to start."
    )));
    // No rollback: nothing more is started, and the old tasks keep running.
    let tasks = w.st.tasks.len();
    for _ in 0..3 {
        w.now += 400.0;
        w.pass();
    }
    assert_eq!(w.st.tasks.len(), tasks);
    assert_eq!(w.live().len(), 2);
    assert!(w.live().iter().all(|t| t.revision == 1));
}

#[test]
fn the_circuit_breaker_rolls_back_to_the_last_completed_deployment() {
    let (mut w, v1, second) = failing_rollout(true);
    assert!(w.events().contains(&format!(
        "(service svc) (deployment {second}) deployment failed: tasks failed to start."
    )));
    let head = w.deployments()[0].clone();
    assert_ne!(head.id.as_deref(), Some(second.as_str()));
    assert_eq!(head.task_definition.as_deref(), Some(v1.as_str()));
    assert_eq!(head.rollout_state.as_deref(), Some(IN_PROGRESS));
    assert_eq!(
        head.rollout_state_reason,
        Some(format!(
            "ECS deployment circuit breaker: rolling back from deployment {second}."
        ))
    );
    assert!(w
        .events()
        .iter()
        .any(|e| e.starts_with("(service svc) rolling back to deployment ")));
    // The old tasks kept running all along; the rollback settles on v1.
    roll(&mut w, 2, 4, false);
    assert!(w.live().iter().all(|t| t.revision == 1));
    assert_eq!(w.live().len(), 2);
}

#[test]
fn without_a_breaker_failing_tasks_are_retried_more_and_more_slowly() {
    let mut w = World::new(1);
    let td = w.definition(false);
    w.create(1, &td, config(100, 200));
    let mut launches = 0;
    for _ in 0..10 {
        let before = w.st.tasks.len();
        w.pass();
        launches += w.st.tasks.len() - before;
        let ids: Vec<String> = w.live().iter().map(|t| t.id.clone()).collect();
        for id in ids {
            w.report(&id, "STOPPED", "Essential container in task exited");
        }
    }
    // Three failures, then each launch waits at least 10 s; the passes are
    // 1 s apart.
    assert_eq!(launches, 3);
    assert!(w
        .events()
        .iter()
        .any(|e| e == "(service svc) is unable to consistently start tasks successfully."));
    w.now += 11.0;
    w.pass();
    assert_eq!(w.live().len(), 1);
}

#[test]
fn a_task_that_fits_nowhere_leaves_an_event_naming_why() {
    let mut w = World::new(1);
    let td = w.definition(false);
    w.create(20, &td, config(100, 200));
    w.pass();
    assert_eq!(w.live().len(), 16, "4096 MiB holds 16 tasks of 256");
    let event = w
        .events()
        .into_iter()
        .find(|e| e.contains("unable to place"))
        .unwrap();
    assert!(event.starts_with("(service svc) was unable to place a task because no container instance met all of its requirements."), "{event}");
    assert!(
        event.ends_with("has insufficient memory available."),
        "{event}"
    );
    // Not written again on every pass.
    let count = w.events().len();
    w.pass();
    assert_eq!(w.events().len(), count);
}

#[test]
fn a_deleted_service_stops_its_tasks_and_turns_inactive() {
    let mut w = World::new(1);
    let td = w.definition(false);
    w.create(2, &td, config(100, 200));
    w.pass();
    w.agents_act(false);
    w.service().service.status = Some(DRAINING.into());
    w.service().service.desired_count = 0;
    w.pass();
    assert!(w.live().is_empty());
    assert_eq!(w.service().status(), DRAINING);
    w.pass();
    assert_eq!(
        w.service().status(),
        DRAINING,
        "until its tasks have stopped"
    );
    w.agents_act(false);
    w.pass();
    assert_eq!(w.service().status(), INACTIVE);
}

#[test]
fn a_daemon_runs_one_task_on_every_active_instance() {
    let mut w = World::new(2);
    let td = w.definition(false);
    w.create_with(0, &td, config(0, 100), DAEMON);
    w.pass();
    assert_eq!(
        w.per_instance(),
        BTreeMap::from([("i1".into(), 1), ("i2".into(), 1)])
    );
    assert_eq!(w.service().service.desired_count, 2);
    w.add_instance("i3");
    w.pass();
    assert_eq!(w.per_instance().len(), 3);
    w.agents_act(false);
    w.st.instances.get_mut("i2").unwrap().status = DRAINING.into();
    w.pass();
    assert_eq!(w.service().service.desired_count, 2);
    assert_eq!(w.per_instance().get("i2"), None);
    // A new revision replaces each task in place: stop first, then start.
    w.agents_act(false);
    let v2 = w.definition(false);
    {
        let now = w.now;
        start_deployment(w.service(), &v2, now)
    };
    w.pass();
    assert!(w.live().is_empty());
    w.agents_act(false);
    w.pass();
    assert_eq!(w.live().len(), 2);
    assert!(w.live().iter().all(|t| t.revision == 2));
}

#[test]
fn deployment_ids_look_like_ecs_ones() {
    let id = new_deployment_id();
    let digits = id.strip_prefix("ecs-svc/").unwrap();
    assert_eq!(digits.len(), 19);
    assert!(digits.bytes().all(|b| b.is_ascii_digit()));
    assert_ne!(id, new_deployment_id());
}

#[test]
fn a_task_whose_health_checks_fail_is_replaced_and_counted_as_failed() {
    let mut w = World::new(1);
    let td = w.definition(true);
    w.create(2, &td, config(100, 200));
    w.pass();
    w.agents_act(true);
    w.pass();
    assert_eq!(w.deployments()[0].rollout_state.as_deref(), Some(COMPLETED));
    let sick = w.live()[0].id.clone();
    w.st.tasks.get_mut(&sick).unwrap().task.health_status = Some("UNHEALTHY".into());
    w.pass();
    let task = &w.st.tasks[&sick];
    assert_eq!(task.desired_status(), "STOPPED");
    assert_eq!(task.task.stopped_reason.as_deref(), Some(UNHEALTHY_REASON));
    assert_eq!(w.live().len(), 2, "its replacement starts in the same pass");
    w.agents_act(true);
    w.pass();
    assert_eq!(w.deployments()[0].failed_tasks, 1);
    assert!(w.live().iter().all(|t| t.id != sick));
}
