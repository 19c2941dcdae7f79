//! Container health end to end: a task definition's `healthCheck` becomes a
//! Docker health check, the agent reports its status over TCS, and
//! DescribeTasks shows it per container and for the task; `dependsOn`
//! HEALTHY holds a container back until its dependency is healthy.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use e2e::{docker_inspect, require_docker, wait_for, Agent, AgentOptions, Plane, TEST_IMAGE};
use serde_json::{json, Value};

const CONNECT: Duration = Duration::from_secs(60);
const START: Duration = Duration::from_secs(60);
/// A health check every 5 s, a TCS publish every 20 s: a status shows up
/// well within this.
const REPORTED: Duration = Duration::from_secs(60);

fn setup() -> (tempfile::TempDir, Plane, Agent) {
    require_docker();
    let dir = tempfile::tempdir().unwrap();
    let plane = Plane::start(&dir.path().join("plane")).unwrap();
    let agent = Agent::start(&plane, &AgentOptions::new(&dir.path().join("agent"))).unwrap();
    plane
        .cli()
        .wait_connected_instance("default", CONNECT)
        .unwrap();
    (dir, plane, agent)
}

fn health_check(script: &str) -> Value {
    json!({"command": ["CMD-SHELL", script], "interval": 5, "timeout": 2, "retries": 2, "startPeriod": 1})
}

fn by_name(task: &Value, name: &str) -> Value {
    task["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no container {name} in {task}"))
}

fn rfc3339(text: &str) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("bad time {text:?}: {e}"))
}

#[test]
fn container_health_reaches_describe_tasks() {
    let (_dir, plane, agent) = setup();
    let cli = plane.cli();
    let defs = json!([
        {"name": "good", "image": TEST_IMAGE, "command": ["sleep", "600"], "memory": 32,
         "essential": true, "healthCheck": health_check("exit 0")},
        {"name": "bad", "image": TEST_IMAGE, "command": ["sleep", "600"], "memory": 32,
         "essential": false, "healthCheck": health_check("exit 1")},
        {"name": "plain", "image": TEST_IMAGE, "command": ["sleep", "600"], "memory": 16,
         "essential": false}
    ]);
    cli.register("health", &defs).unwrap();
    let arn = cli.run_task("default", "health").unwrap();
    let task = cli
        .wait_task_status("default", &arn, "RUNNING", START)
        .unwrap();

    // The definition's health check, in seconds, became Docker's, in ns.
    let good_id = by_name(&task, "good")["runtimeId"]
        .as_str()
        .unwrap()
        .to_string();
    let config = docker_inspect(&good_id).unwrap()["Config"]["Healthcheck"].clone();
    assert_eq!(config["Test"], json!(["CMD-SHELL", "exit 0"]), "{config}");
    assert_eq!(config["Interval"], 5_000_000_000_i64);
    assert_eq!(config["Timeout"], 2_000_000_000_i64);
    assert_eq!(config["Retries"], 2);
    assert_eq!(config["StartPeriod"], 1_000_000_000_i64);

    let task = wait_for("health statuses in DescribeTasks", REPORTED, || {
        let t = cli.describe_task("default", &arn)?;
        let done = by_name(&t, "good")["healthStatus"] == "HEALTHY"
            && by_name(&t, "bad")["healthStatus"] == "UNHEALTHY";
        Ok(done.then_some(t))
    })
    .unwrap_or_else(|e| panic!("{e}\nagent log:\n{}", agent.log_text()));
    assert_eq!(by_name(&task, "plain")["healthStatus"], "UNKNOWN");
    // Only essential containers with a health check count for the task.
    assert_eq!(task["healthStatus"], "HEALTHY", "{task}");
    assert_eq!(task["lastStatus"], "RUNNING");
}

#[test]
fn unhealthy_essential_container_makes_the_task_unhealthy() {
    let (_dir, plane, agent) = setup();
    let cli = plane.cli();
    let defs = json!([
        {"name": "good", "image": TEST_IMAGE, "command": ["sleep", "600"], "memory": 32,
         "essential": true, "healthCheck": health_check("exit 0")},
        {"name": "bad", "image": TEST_IMAGE, "command": ["sleep", "600"], "memory": 32,
         "essential": true, "healthCheck": health_check("exit 1")}
    ]);
    cli.register("sick", &defs).unwrap();
    let arn = cli.run_task("default", "sick").unwrap();
    cli.wait_task_status("default", &arn, "RUNNING", START)
        .unwrap();
    let task = wait_for("the task to be UNHEALTHY", REPORTED, || {
        let t = cli.describe_task("default", &arn)?;
        Ok((t["healthStatus"] == "UNHEALTHY").then_some(t))
    })
    .unwrap_or_else(|e| panic!("{e}\nagent log:\n{}", agent.log_text()));
    assert_eq!(by_name(&task, "bad")["healthStatus"], "UNHEALTHY");
    // ECS on EC2 does not stop a task for being unhealthy; a service would.
    assert_eq!(task["lastStatus"], "RUNNING");
}

#[test]
fn depends_on_healthy_starts_only_after_the_dependency_is_healthy() {
    let (_dir, plane, agent) = setup();
    let cli = plane.cli();
    let defs = json!([
        {"name": "a", "image": TEST_IMAGE, "command": ["sleep", "600"], "memory": 32,
         "essential": true, "healthCheck": health_check("exit 0")},
        {"name": "b", "image": TEST_IMAGE, "command": ["sleep", "600"], "memory": 32,
         "essential": true, "dependsOn": [{"containerName": "a", "condition": "HEALTHY"}]}
    ]);
    cli.register("ordered", &defs).unwrap();
    let arn = cli.run_task("default", "ordered").unwrap();
    let task = cli
        .wait_task_status("default", &arn, "RUNNING", START)
        .unwrap_or_else(|e| panic!("{e}\nagent log:\n{}", agent.log_text()));
    let a = docker_inspect(by_name(&task, "a")["runtimeId"].as_str().unwrap()).unwrap();
    let b = docker_inspect(by_name(&task, "b")["runtimeId"].as_str().unwrap()).unwrap();
    let a_started = rfc3339(a["State"]["StartedAt"].as_str().unwrap());
    let b_started = rfc3339(b["State"]["StartedAt"].as_str().unwrap());
    // A turned healthy when its first passing probe ended; B started later.
    let log = a["State"]["Health"]["Log"].as_array().unwrap();
    let first_pass = log
        .iter()
        .filter(|entry| entry["ExitCode"] == 0)
        .map(|entry| rfc3339(entry["End"].as_str().unwrap()))
        .min()
        .unwrap_or_else(|| panic!("a has no passing probe: {a}"));
    assert!(
        b_started >= first_pass,
        "b started at {b_started}, before a was healthy at {first_pass}"
    );
    assert!(
        b_started > a_started + time::Duration::seconds(1),
        "b started at {b_started}, too soon after a at {a_started}"
    );
    assert_eq!(a["State"]["Health"]["Status"], "healthy");
}
