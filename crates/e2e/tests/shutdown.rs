//! SIGTERM and SIGINT to the agent run as a plain process
//! (docs/operations.md §5): it exits 0, its tasks keep running, and the
//! next start on the same data directory is the same instance running the
//! same containers. The init service (`init_service.rs`, `deb_package.rs`)
//! and the container (`agent_image.rs`) are shown the same elsewhere.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use e2e::{docker_inspect, require_docker, Agent, AgentOptions, Plane};

const WAIT: Duration = Duration::from_secs(120);

fn survives(signal: &str) {
    require_docker();
    let dir = tempfile::tempdir().unwrap();
    let plane = Plane::start(&dir.path().join("plane")).unwrap();
    let cli = plane.cli();
    let options = AgentOptions::new(&dir.path().join("agent"));
    let agent = Agent::start(&plane, &options).unwrap();
    let arn = cli.wait_connected_instance("default", WAIT).unwrap()["containerInstanceArn"].clone();
    cli.register_simple("sleeper", &["sleep", "600"]).unwrap();
    let task_arn = cli.run_task("default", "sleeper").unwrap();
    let task = cli
        .wait_task_status("default", &task_arn, "RUNNING", WAIT)
        .unwrap();
    let container = task["containers"][0]["runtimeId"]
        .as_str()
        .unwrap()
        .to_string();

    let log = agent.log.clone();
    assert_eq!(agent.stop_with(signal, WAIT).unwrap(), Some(0), "{signal}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("Agent received termination signal"), "{text}");
    let inspected = docker_inspect(&container).unwrap();
    assert_eq!(inspected["State"]["Running"], true, "the task kept running");

    let again = Agent::start(&plane, &options).unwrap();
    again.wait_acs_connected(WAIT).unwrap();
    let instance = cli.wait_connected_instance("default", WAIT).unwrap();
    assert_eq!(instance["containerInstanceArn"], arn);
    let task = cli.describe_task("default", &task_arn).unwrap();
    assert_eq!(task["lastStatus"], "RUNNING");
    assert_eq!(task["containers"][0]["runtimeId"], container.as_str());
    assert_eq!(docker_inspect(&container).unwrap()["RestartCount"], 0);
    cli.ecs(&["stop-task", "--task", &task_arn]).unwrap();
    cli.wait_task_status("default", &task_arn, "STOPPED", WAIT)
        .unwrap();
}

#[test]
fn sigterm_exits_zero_and_the_next_start_resumes() {
    survives("-TERM");
}

#[test]
fn sigint_exits_zero_and_the_next_start_resumes() {
    survives("-INT");
}
