//! What survives what: the agent killed with SIGKILL at random moments, the
//! control plane unreachable while state changes happen, a container removed
//! behind the agent's back, and a stop requested while the agent was down.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use e2e::{docker_ids_with_label, docker_inspect, require_docker, Agent, AgentOptions, Plane};
use serde_json::Value;

const CONNECT: Duration = Duration::from_secs(60);
const SETTLE: Duration = Duration::from_secs(90);

fn container(task: &Value) -> Value {
    task["containers"][0].clone()
}

/// A small deterministic generator, so a failing run can be replayed from
/// the seed it prints.
struct Rng(u64);

impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn agent_killed_at_random_points_loses_nothing() {
    require_docker();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("random seed {seed}");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let plane = Plane::start(&dir.path().join("plane")).unwrap();
    let options = AgentOptions::new(&dir.path().join("agent"))
        .env("ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION", "1s")
        .env("ECS_CONTAINER_STOP_TIMEOUT", "1s");
    let cli = plane.cli();
    let mut agent = Agent::start(&plane, &options).unwrap();
    let instance =
        cli.wait_connected_instance("default", CONNECT).unwrap()["containerInstanceArn"].clone();
    cli.register_simple("long", &["sleep", "600"]).unwrap();
    cli.register_simple("short", &["sh", "-c", "sleep 1; exit 4"])
        .unwrap();

    // task ARN → what must hold at the end: "RUNNING" or "STOPPED", and the
    // exit code when it is known.
    let mut expected: HashMap<String, (&str, Option<i64>)> = HashMap::new();
    for launch in 0..20 {
        let (family, outcome) = if rng.next(3) == 0 {
            ("short", ("STOPPED", Some(4)))
        } else {
            ("long", ("RUNNING", None))
        };
        let arn = cli.run_task("default", family).unwrap();
        expected.insert(arn.clone(), outcome);
        // Stop some earlier long task, sometimes.
        if rng.next(4) == 0 {
            if let Some(victim) = expected
                .iter()
                .filter(|(_, (s, _))| *s == "RUNNING")
                .map(|(a, _)| a.clone())
                .next()
            {
                cli.ecs(&["stop-task", "--task", &victim]).unwrap();
                expected.insert(victim, ("STOPPED", None));
            }
        }
        // Kill the agent somewhere in the task's pull/create/start, or in
        // another task's stop or cleanup.
        std::thread::sleep(Duration::from_millis(rng.next(2500)));
        if rng.next(2) == 0 {
            eprintln!("launch {launch}: killing the agent");
            agent.kill();
            std::thread::sleep(Duration::from_millis(rng.next(1500)));
            agent = Agent::start(&plane, &options).unwrap();
        }
    }

    let list = cli.ecs(&["list-container-instances"]).unwrap();
    assert_eq!(
        list["containerInstanceArns"],
        serde_json::json!([instance]),
        "one instance, same ARN"
    );
    for (arn, (status, exit_code)) in &expected {
        let task = cli
            .wait_task_status("default", arn, status, SETTLE)
            .unwrap_or_else(|e| {
                panic!(
                    "seed {seed}: {e}; agent log: {}",
                    agent
                        .log_text()
                        .lines()
                        .rev()
                        .take(30)
                        .collect::<Vec<_>>()
                        .join("\n")
                )
            });
        let ids = docker_ids_with_label("com.amazonaws.ecs.task-arn", arn, true);
        assert!(
            ids.len() <= 1,
            "seed {seed}: task {arn} has {} containers",
            ids.len()
        );
        if *status == "RUNNING" {
            let runtime = container(&task)["runtimeId"].as_str().unwrap().to_string();
            assert_eq!(ids, vec![runtime.clone()], "seed {seed}: {arn}");
            assert_eq!(docker_inspect(&runtime).unwrap()["State"]["Running"], true);
        }
        if let Some(code) = exit_code {
            assert_eq!(container(&task)["exitCode"], *code, "seed {seed}: {task}");
        }
    }
}

#[test]
fn state_changes_wait_for_an_unreachable_plane() {
    require_docker();
    let dir = tempfile::tempdir().unwrap();
    let plane_dir = dir.path().join("plane");
    let plane = Plane::start(&plane_dir).unwrap();
    let port = plane.port;
    let agent = Agent::start(&plane, &AgentOptions::new(&dir.path().join("agent"))).unwrap();
    let cli = plane.cli();
    cli.wait_connected_instance("default", CONNECT).unwrap();
    cli.register_simple("patient", &["sh", "-c", "sleep 3; exit 9"])
        .unwrap();
    let arn = cli.run_task("default", "patient").unwrap();
    let task = cli
        .wait_task_status("default", &arn, "RUNNING", CONNECT)
        .unwrap();
    let id = container(&task)["runtimeId"].as_str().unwrap().to_string();
    // The plane goes away; the container exits while it is gone, and the
    // agent fails to report that.
    plane.kill();
    e2e::wait_for("the container to exit", SETTLE, || {
        let state = docker_inspect(&id)?["State"].clone();
        Ok((state["Running"] == false).then_some(()))
    })
    .unwrap();
    assert_eq!(docker_inspect(&id).unwrap()["State"]["ExitCode"], 9);
    e2e::wait_for("a failed report of the exit", SETTLE, || {
        Ok(agent
            .log_text()
            .lines()
            .any(|l| l.contains("reporting task state failed") && l.contains(&arn))
            .then_some(()))
    })
    .unwrap();
    let plane = Plane::start_on(&plane_dir, port).unwrap();
    let task = plane
        .cli()
        .wait_task_status("default", &arn, "STOPPED", SETTLE)
        .unwrap();
    assert_eq!(container(&task)["exitCode"], 9, "{task}");
}

#[test]
fn container_removed_while_the_agent_is_down_is_reported_vanished() {
    require_docker();
    let dir = tempfile::tempdir().unwrap();
    let plane = Plane::start(&dir.path().join("plane")).unwrap();
    let options = AgentOptions::new(&dir.path().join("agent"));
    let agent = Agent::start(&plane, &options).unwrap();
    let cli = plane.cli();
    cli.wait_connected_instance("default", CONNECT).unwrap();
    cli.register_simple("doomed", &["sleep", "600"]).unwrap();
    let arn = cli.run_task("default", "doomed").unwrap();
    let task = cli
        .wait_task_status("default", &arn, "RUNNING", CONNECT)
        .unwrap();
    let id = container(&task)["runtimeId"].as_str().unwrap().to_string();
    agent.kill();
    let removed = Command::new("docker")
        .args(["rm", "-f", &id])
        .output()
        .unwrap();
    assert!(removed.status.success());
    // The restarted agent finds no container under the saved ID: the
    // container is STOPPED as vanished, with no exit code (nothing saw it
    // exit), and the essential container's end stops the task.
    let _agent = Agent::start(&plane, &options).unwrap();
    let task = cli
        .wait_task_status("default", &arn, "STOPPED", SETTLE)
        .unwrap();
    let c = container(&task);
    assert_eq!(c["lastStatus"], "STOPPED", "{task}");
    assert_eq!(
        c["reason"], "ContainerVanishedError: No container matching saved ID found",
        "{task}"
    );
    assert!(c.get("exitCode").is_none_or(Value::is_null), "{task}");
    assert_eq!(c["runtimeId"], id.as_str(), "{task}");
    assert!(
        docker_ids_with_label("com.amazonaws.ecs.task-arn", &arn, true).is_empty(),
        "no container was made again"
    );
}

#[test]
fn stop_requested_while_the_agent_is_down_is_applied() {
    require_docker();
    let dir = tempfile::tempdir().unwrap();
    let plane = Plane::start(&dir.path().join("plane")).unwrap();
    let options = AgentOptions::new(&dir.path().join("agent"));
    let agent = Agent::start(&plane, &options).unwrap();
    let cli = plane.cli();
    cli.wait_connected_instance("default", CONNECT).unwrap();
    cli.register_simple("absent", &["sleep", "600"]).unwrap();
    let arn = cli.run_task("default", "absent").unwrap();
    let task = cli
        .wait_task_status("default", &arn, "RUNNING", CONNECT)
        .unwrap();
    let id = container(&task)["runtimeId"].as_str().unwrap().to_string();
    agent.kill();
    cli.ecs(&["stop-task", "--task", &arn]).unwrap();
    // The agent is dead and reaped, and nothing else stops containers: the
    // stop can only be applied by the agent started next.
    assert_eq!(
        docker_inspect(&id).unwrap()["State"]["Running"],
        true,
        "nobody stopped it yet"
    );
    let _agent = Agent::start(&plane, &options).unwrap();
    cli.wait_task_status("default", &arn, "STOPPED", SETTLE)
        .unwrap();
    assert_eq!(docker_inspect(&id).unwrap()["State"]["Running"], false);
}
