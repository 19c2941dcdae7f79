#![allow(clippy::unwrap_used)]

use super::*;
use crate::engine::task::{IncomingTask, Task};
use proptest::prelude::*;

fn task_with(containers: serde_json::Value) -> Task {
    let acs: ecs_model::acs::Task = serde_json::from_value(serde_json::json!({
        "arn": "arn:aws:ecs:us-east-1:1:task/default/abc",
        "family": "f", "version": "1", "desiredStatus": "RUNNING",
        "containers": containers
    }))
    .unwrap();
    Task::new(IncomingTask::try_from(&acs).unwrap(), 0)
}

fn two_containers() -> Task {
    task_with(serde_json::json!([
        {"name": "app", "image": "i", "essential": true,
         "dependsOn": [{"containerName": "init", "condition": "SUCCESS"}]},
        {"name": "init", "image": "i", "essential": false}
    ]))
}

fn observed(status: ContainerStatus, exit_code: Option<i64>) -> Observation {
    Observation {
        docker_id: "id".into(),
        status,
        exit_code,
        error: None,
        started_at_ms: Some(1),
        finished_at_ms: exit_code.map(|_| 2),
        port_bindings: vec![],
        health: None,
        labels: Default::default(),
        pid: None,
    }
}

#[test]
fn events_that_only_echo_what_is_known_or_underway_earn_no_inspect() {
    let mut t = two_containers();
    let c = &mut t.containers[0];
    c.known_status = ContainerStatus::Created;
    c.applied_status = Some(ContainerStatus::Running);
    // The agent's own start in flight: its outcome is inspected anyway.
    assert!(!event_is_news(c, "create"));
    assert!(!event_is_news(c, "start"));
    assert!(event_is_news(c, "die"), "it died during its start");
    assert!(event_is_news(c, "health_status"));
    assert!(event_is_news(c, "oom"));
    c.known_status = ContainerStatus::Running;
    c.applied_status = None;
    assert!(!event_is_news(c, "start"));
    assert!(event_is_news(c, "die"), "it exited on its own");
    assert!(event_is_news(c, "stop"), "someone stopped it");
    c.applied_status = Some(ContainerStatus::Stopped);
    assert!(!event_is_news(c, "stop"), "the agent's own stop");
    assert!(!event_is_news(c, "die"));
    assert!(event_is_news(c, "destroy"));
    c.known_status = ContainerStatus::Stopped;
    c.applied_status = None;
    assert!(!event_is_news(c, "die"));
    assert!(
        event_is_news(c, "start"),
        "a stopped container started again is stopped again (§11.4)"
    );
}

#[test]
fn fresh_task_resolves_manifests_first() {
    let t = two_containers();
    let p = plan(&t, 0);
    assert_eq!(p.steps.len(), 2);
    assert!(p
        .steps
        .iter()
        .all(|s| s.action == Some(Action::ResolveManifest)));
}

#[test]
fn dependent_waits_for_success_then_fails_on_bad_exit() {
    let mut t = two_containers();
    for c in &mut t.containers {
        c.known_status = ContainerStatus::ManifestPulled;
    }
    let p = plan(&t, 0);
    assert!(p.blocked);
    assert_eq!(p.steps.len(), 1, "only init may pull: {p:?}");
    assert_eq!(p.steps[0].container, 1);

    t.containers[1].known_status = ContainerStatus::Stopped;
    t.containers[1].exit_code = Some(0);
    let p = plan(&t, 0);
    assert_eq!(
        p.steps,
        vec![Step {
            container: 0,
            target: ContainerStatus::Pulled,
            action: Some(Action::Pull)
        }]
    );

    t.containers[1].exit_code = Some(1);
    let p = plan(&t, 0);
    assert_eq!(p.dependency_failures.len(), 1);
}

#[test]
fn cycles_and_unknown_dependencies_are_rejected() {
    let cyclic = task_with(serde_json::json!([
        {"name": "a", "image": "i", "dependsOn": [{"containerName": "b", "condition": "START"}]},
        {"name": "b", "image": "i", "links": ["a:alias"]}
    ]));
    assert!(validate_dependencies(&cyclic)
        .unwrap_err()
        .contains("cycle"));
    let unknown = task_with(serde_json::json!([
        {"name": "a", "image": "i", "volumesFrom": [{"sourceContainer": "ghost"}]}
    ]));
    assert!(validate_dependencies(&unknown)
        .unwrap_err()
        .contains("ghost"));
    let unhealthy = task_with(serde_json::json!([
        {"name": "a", "image": "i", "dependsOn": [{"containerName": "b", "condition": "HEALTHY"}]},
        {"name": "b", "image": "i"}
    ]));
    assert!(validate_dependencies(&unhealthy)
        .unwrap_err()
        .contains("health check"));
    assert!(validate_dependencies(&two_containers()).is_ok());
}

#[test]
fn stop_order_is_reverse_of_dependencies() {
    let mut t = two_containers();
    t.containers[1].known_status = ContainerStatus::Running;
    t.containers[0].known_status = ContainerStatus::Running;
    t.raise_desired_status(TaskStatus::Stopped);
    let p = plan(&t, 0);
    // init is depended on by app, so app stops first.
    assert_eq!(p.steps.len(), 1);
    assert_eq!(p.steps[0].container, 0);
    assert!(p.blocked);
}

#[test]
fn essential_exit_stops_task_after_all_containers_stop() {
    let mut t = task_with(serde_json::json!([
        {"name": "main", "image": "i", "essential": true},
        {"name": "side", "image": "i", "essential": false}
    ]));
    for c in &mut t.containers {
        c.known_status = ContainerStatus::Running;
    }
    update_known_status(&mut t, 1);
    assert_eq!(t.known_status, TaskStatus::Running);
    apply_observation(
        &mut t,
        0,
        Some(&observed(ContainerStatus::Stopped, Some(3))),
        5,
    );
    update_desired_status(&mut t);
    assert_eq!(t.desired_status, TaskStatus::Stopped);
    assert!(!update_known_status(&mut t, 6), "waits for side to stop");
    assert_eq!(t.execution_stopped_at_ms, Some(5));
    let p = plan(&t, 6);
    assert_eq!(
        p.steps,
        vec![Step {
            container: 1,
            target: ContainerStatus::Stopped,
            action: Some(Action::Stop)
        }]
    );
    apply_outcome(
        &mut t,
        1,
        ContainerStatus::Stopped,
        Outcome::Done(Some(observed(ContainerStatus::Stopped, Some(143)))),
        false,
        7,
    );
    assert!(update_known_status(&mut t, 8));
    assert_eq!(t.known_status, TaskStatus::Stopped);
    let report = take_report(&mut t, true).unwrap();
    assert_eq!(report.status, "STOPPED");
    let codes: Vec<_> = report
        .containers
        .iter()
        .map(|c| (c.container_name.as_str(), c.exit_code))
        .collect();
    assert_eq!(codes, [("main", Some(3)), ("side", Some(143))]);
    assert!(
        take_report(&mut t, true).is_none(),
        "nothing is reported twice"
    );
}

#[test]
fn pull_failure_policy() {
    let mut t = task_with(serde_json::json!([{"name": "a", "image": "i", "essential": true}]));
    let failed = || Outcome::Failed {
        error: "CannotPullContainerError: nope".into(),
        gone: false,
    };
    apply_outcome(&mut t, 0, ContainerStatus::Pulled, failed(), false, 1);
    assert_eq!(
        t.containers[0].known_status,
        ContainerStatus::Pulled,
        "default: carry on with the cache"
    );
    assert_eq!(t.desired_status, TaskStatus::Running);
    let mut t = task_with(serde_json::json!([{"name": "a", "image": "i", "essential": true}]));
    apply_outcome(&mut t, 0, ContainerStatus::Pulled, failed(), true, 1);
    assert_eq!(
        t.desired_status,
        TaskStatus::Stopped,
        "always/once: stop the task"
    );
    assert_eq!(
        t.terminal_reason.as_deref(),
        Some("CannotPullContainerError: nope")
    );
}

#[test]
fn create_failure_stops_essential_task_with_reason() {
    let mut t = task_with(serde_json::json!([{"name": "a", "image": "i", "essential": true}]));
    t.containers[0].known_status = ContainerStatus::Pulled;
    apply_outcome(
        &mut t,
        0,
        ContainerStatus::Created,
        Outcome::Failed {
            error: "CannotCreateContainerError: no image".into(),
            gone: false,
        },
        false,
        1,
    );
    update_desired_status(&mut t);
    assert_eq!(t.desired_status, TaskStatus::Stopped);
    let p = plan(&t, 1);
    assert_eq!(
        p.steps,
        vec![Step {
            container: 0,
            target: ContainerStatus::Stopped,
            action: None
        }]
    );
}

#[test]
fn vanished_container_is_stopped() {
    let mut t = task_with(serde_json::json!([{"name": "a", "image": "i", "essential": true}]));
    t.containers[0].known_status = ContainerStatus::Running;
    apply_observation(&mut t, 0, None, 9);
    assert_eq!(t.containers[0].known_status, ContainerStatus::Stopped);
    assert!(t.containers[0]
        .reason
        .as_deref()
        .unwrap()
        .starts_with("ContainerVanishedError"));
}

#[test]
fn health_since_moves_only_when_health_changes() {
    let mut t = task_with(serde_json::json!([
        {"name": "a", "image": "i", "essential": true, "healthCheckType": "docker"},
        {"name": "b", "image": "i"}
    ]));
    let healthy = |h| Observation {
        health: Some(h),
        ..observed(ContainerStatus::Running, None)
    };
    let starting = observed(ContainerStatus::Running, None);
    apply_observation(&mut t, 0, Some(&starting), 5);
    assert_eq!(t.containers[0].health_since_ms, None, "still starting");
    apply_observation(&mut t, 0, Some(&healthy(HealthStatus::Healthy)), 10);
    apply_observation(&mut t, 0, Some(&healthy(HealthStatus::Healthy)), 20);
    assert_eq!(t.containers[0].health, HealthStatus::Healthy);
    assert_eq!(t.containers[0].health_since_ms, Some(10));
    apply_observation(&mut t, 0, Some(&healthy(HealthStatus::Unhealthy)), 30);
    assert_eq!(t.containers[0].health_since_ms, Some(30));
    // Without a health check in the task, Docker's status is not taken.
    apply_observation(&mut t, 1, Some(&healthy(HealthStatus::Healthy)), 40);
    assert_eq!(t.containers[1].health_since_ms, None);
}

#[test]
fn digest_gives_a_pending_report() {
    let mut t = task_with(serde_json::json!([{"name": "a", "image": "i", "essential": true}]));
    apply_outcome(
        &mut t,
        0,
        ContainerStatus::ManifestPulled,
        Outcome::ManifestResolved {
            digest: Some("sha256:abc".into()),
            image: None,
        },
        false,
        1,
    );
    update_known_status(&mut t, 1);
    let report = take_report(&mut t, true).unwrap();
    assert_eq!(report.status, "PENDING");
    assert_eq!(report.containers[0].status, "PENDING");
    assert_eq!(
        report.containers[0].image_digest.as_deref(),
        Some("sha256:abc")
    );
    assert_eq!(report.containers[0].runtime_id, None);
}

/// One thing that can happen to a task.
#[derive(Debug, Clone)]
enum Event {
    /// Complete the n-th action in flight, successfully or not.
    Complete { nth: usize, ok: bool },
    /// A container exits on its own.
    Exit { container: usize, code: i64 },
    /// Docker loses a container.
    Vanish { container: usize },
    /// The backend asks the task to stop.
    StopTask,
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        6 => (0usize..4, any::<bool>()).prop_map(|(nth, ok)| Event::Complete { nth, ok }),
        2 => (0usize..3, 0i64..3).prop_map(|(container, code)| Event::Exit { container, code }),
        1 => (0usize..3).prop_map(|container| Event::Vanish { container }),
        1 => Just(Event::StopTask),
    ]
}

/// Drives a task the way the engine does, with actions completing in an
/// arbitrary order; returns the reports produced and the starts issued.
struct Sim {
    task: Task,
    in_flight: Vec<(usize, ContainerStatus, Action)>,
    starts: Vec<usize>,
    reports: Vec<TaskStateChange>,
    now: i64,
}

impl Sim {
    fn new() -> Self {
        let task = task_with(serde_json::json!([
            {"name": "a", "image": "i", "essential": true,
             "dependsOn": [{"containerName": "b", "condition": "START"}]},
            {"name": "b", "image": "i", "essential": false},
            {"name": "c", "image": "i", "essential": true}
        ]));
        Self {
            task,
            in_flight: vec![],
            starts: vec![],
            reports: vec![],
            now: 0,
        }
    }

    fn progress(&mut self) {
        for _ in 0..32 {
            self.now += 1;
            update_known_status(&mut self.task, self.now);
            update_desired_status(&mut self.task);
            let p = plan(&self.task, self.now);
            for (i, why) in &p.dependency_failures {
                let c = &mut self.task.containers[*i];
                c.set_reason(format!("CannotStartContainerError: {why}"));
                c.desired_status = ContainerStatus::Stopped;
            }
            let mut immediate = false;
            for step in &p.steps {
                match step.action {
                    None => {
                        self.task.containers[step.container].known_status = step.target;
                        immediate = true;
                    }
                    Some(action) => {
                        self.task.containers[step.container].applied_status = Some(step.target);
                        if action == Action::Start {
                            self.starts.push(step.container);
                        }
                        self.in_flight.push((step.container, step.target, action));
                    }
                }
            }
            update_known_status(&mut self.task, self.now);
            if let Some(r) = take_report(&mut self.task, true) {
                self.reports.push(r);
            }
            if !immediate && p.dependency_failures.is_empty() {
                break;
            }
        }
    }

    fn apply(&mut self, e: Event) {
        self.now += 1;
        match e {
            Event::Complete { nth, ok } => {
                if self.in_flight.is_empty() {
                    return;
                }
                let (i, target, action) = self.in_flight.remove(nth % self.in_flight.len());
                let outcome = if !ok {
                    Outcome::Failed {
                        error: "X: y".into(),
                        gone: false,
                    }
                } else {
                    match action {
                        Action::ResolveManifest => Outcome::ManifestResolved {
                            digest: None,
                            image: None,
                        },
                        Action::Pull => Outcome::Pulled {
                            pull_started_ms: Some(self.now),
                            image: None,
                        },
                        Action::Create => Outcome::Created {
                            docker_id: format!("id{i}"),
                        },
                        Action::Start => {
                            Outcome::Done(Some(observed(ContainerStatus::Running, None)))
                        }
                        Action::Stop => {
                            Outcome::Done(Some(observed(ContainerStatus::Stopped, Some(143))))
                        }
                    }
                };
                let effect = apply_outcome(&mut self.task, i, target, outcome, false, self.now);
                if effect.retry {
                    // The engine retries a failed stop later; here, at once.
                    self.task.containers[i].applied_status = None;
                }
            }
            Event::Exit { container, code } => {
                if self.task.containers[container].docker_id.is_some() {
                    apply_observation(
                        &mut self.task,
                        container,
                        Some(&observed(ContainerStatus::Stopped, Some(code))),
                        self.now,
                    );
                }
            }
            Event::Vanish { container } => {
                if self.task.containers[container].docker_id.is_some() {
                    apply_observation(&mut self.task, container, None, self.now);
                }
            }
            Event::StopTask => {
                self.task.raise_desired_status(TaskStatus::Stopped);
            }
        }
        self.progress();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// For any sequence of events: no container is started twice, no status
    /// moves backwards, and once everything settles after a stop request
    /// the task is STOPPED and that was reported exactly once.
    #[test]
    fn engine_invariants_hold(events in proptest::collection::vec(event(), 0..60)) {
        let mut sim = Sim::new();
        sim.progress();
        let mut last_known: Vec<ContainerStatus> = sim.task.containers.iter().map(|c| c.known_status).collect();
        let mut last_task = sim.task.known_status;
        for e in events.into_iter().chain([Event::StopTask]) {
            sim.apply(e);
            for (i, c) in sim.task.containers.iter().enumerate() {
                prop_assert!(c.known_status >= last_known[i], "container {} went backwards", i);
                last_known[i] = c.known_status;
            }
            prop_assert!(sim.task.known_status >= last_task);
            last_task = sim.task.known_status;
        }
        // Let every action in flight finish successfully.
        let mut guard = 0;
        while !sim.in_flight.is_empty() && guard < 100 {
            sim.apply(Event::Complete { nth: 0, ok: true });
            guard += 1;
        }
        let mut seen = std::collections::HashSet::new();
        for s in &sim.starts {
            prop_assert!(seen.insert(*s), "container {} started twice", s);
        }
        prop_assert_eq!(sim.task.known_status, TaskStatus::Stopped);
        let stopped: Vec<_> = sim.reports.iter().filter(|r| r.status == "STOPPED").collect();
        prop_assert!(!stopped.is_empty(), "STOPPED never reported");
        prop_assert_eq!(sim.reports.last().map(|r| r.status.as_str()), Some("STOPPED"));
        for c in &sim.task.containers {
            prop_assert_eq!(c.reported_status, ContainerStatus::Stopped);
        }
    }
}

#[test]
fn network_bindings_consolidate_ranges_and_drop_ipv6() {
    use crate::engine::task::{PortBinding, Protocol};
    let mut t = task_with(serde_json::json!([{"name": "a", "image": "i"}]));
    let c = &mut t.containers[0];
    c.assigned_ranges = vec![crate::engine::ports::AssignedRange {
        container_start: 9000,
        container_end: 9001,
        host_start: 41000,
        protocol: Protocol::Tcp,
    }];
    let b = |container_port, host_port, ip: &str| PortBinding {
        container_port,
        host_port,
        bind_ip: ip.into(),
        protocol: Protocol::Tcp,
    };
    c.port_bindings = vec![
        b(80, 32768, "0.0.0.0"),
        b(80, 32768, "::"),
        b(9000, 41000, "0.0.0.0"),
        b(9001, 41001, "0.0.0.0"),
    ];
    let reported = network_bindings(c, true);
    assert_eq!(reported.len(), 2, "{reported:?}");
    assert_eq!(reported[0].container_port, Some(80));
    assert_eq!(
        reported[1].container_port_range.as_deref(),
        Some("9000-9001")
    );
    assert_eq!(reported[1].host_port_range.as_deref(), Some("41000-41001"));
    assert_eq!(network_bindings(c, false).len(), 3, "IPv6 kept when asked");
}

#[test]
fn restart_policy_decisions() {
    let mut t = task_with(
        serde_json::json!([{"name": "a", "image": "i", "essential": true,
        "restartPolicy": {"enabled": true, "ignoredExitCodes": [0], "restartAttemptPeriod": 10}}]),
    );
    let c = &mut t.containers[0];
    c.known_status = ContainerStatus::Running;
    c.started_at_ms = Some(0);
    assert!(
        !should_restart(c, Some(1), 5_000),
        "ran less than the attempt period"
    );
    assert!(should_restart(c, Some(1), 10_000));
    assert!(!should_restart(c, Some(0), 10_000), "ignored exit code");
    assert!(!should_restart(c, None, 10_000), "no exit code");
    c.last_restart_at_ms = Some(9_000);
    assert!(
        !should_restart(c, Some(1), 10_000),
        "counted from the last restart"
    );
    c.desired_status = ContainerStatus::Stopped;
    assert!(!should_restart(c, Some(1), 60_000), "not while stopping");
}

#[test]
fn a_task_stopped_before_it_ran_stops_at_once_even_with_a_cycle() {
    let mut t = task_with(serde_json::json!([
        {"name": "a", "image": "i", "dependsOn": [{"containerName": "b", "condition": "START"}]},
        {"name": "b", "image": "i", "dependsOn": [{"containerName": "a", "condition": "START"}]}
    ]));
    t.raise_desired_status(TaskStatus::Stopped);
    let p = plan(&t, 0);
    assert_eq!(p.steps.len(), 2, "{p:?}");
    assert!(p
        .steps
        .iter()
        .all(|s| s.action.is_none() && s.target == ContainerStatus::Stopped));
}
