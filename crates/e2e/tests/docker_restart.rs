//! The Docker engine restarted under running tasks: the agent reconnects
//! and its view matches Docker's again. This restarts the host's `dockerd`,
//! so it lives in its own test binary: `cargo test` runs test binaries one
//! at a time, so no other Docker test runs meanwhile.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use e2e::{require_docker, wait_for, Agent, AgentOptions, Plane};

fn dockerd_pids() -> Vec<String> {
    let out = Command::new("pidof").arg("dockerd").output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn docker_answers() -> bool {
    Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Stops dockerd and starts it again the way `scripts/setup` does.
fn restart_dockerd() {
    let pids = dockerd_pids();
    assert!(!pids.is_empty(), "no dockerd process to restart");
    for pid in &pids {
        Command::new("kill").args(["-TERM", pid]).status().unwrap();
    }
    wait_for("dockerd to stop", Duration::from_secs(60), || {
        Ok(dockerd_pids()
            .iter()
            .all(|p| !pids.contains(p))
            .then_some(()))
    })
    .unwrap();
    let setup = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/setup");
    let status = Command::new(setup).stdout(Stdio::null()).status().unwrap();
    assert!(
        status.success(),
        "scripts/setup could not start dockerd again"
    );
    assert!(docker_answers());
}

#[test]
fn agent_follows_a_docker_engine_restart() {
    require_docker();
    let dir = tempfile::tempdir().unwrap();
    let plane = Plane::start(&dir.path().join("plane")).unwrap();
    let options =
        AgentOptions::new(&dir.path().join("agent")).env("ECS_CONTAINER_STOP_TIMEOUT", "2s");
    let agent = Agent::start(&plane, &options).unwrap();
    let cli = plane.cli();
    cli.wait_connected_instance("default", Duration::from_secs(60))
        .unwrap();
    cli.register_simple("before", &["sleep", "600"]).unwrap();
    let before = cli.run_task("default", "before").unwrap();
    cli.wait_task_status("default", &before, "RUNNING", Duration::from_secs(30))
        .unwrap();

    restart_dockerd();

    // Docker stopped the container when it shut down; the agent notices.
    let task = cli
        .wait_task_status("default", &before, "STOPPED", Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("{e}\n{}", agent.log_text()));
    assert!(task["containers"][0]["exitCode"].is_i64(), "{task}");
    // And it keeps working with the new daemon.
    cli.register_simple("after", &["sleep", "600"]).unwrap();
    let after = cli.run_task("default", "after").unwrap();
    cli.wait_task_status("default", &after, "RUNNING", Duration::from_secs(60))
        .unwrap();
    cli.ecs(&["stop-task", "--task", &after]).unwrap();
    cli.wait_task_status("default", &after, "STOPPED", Duration::from_secs(60))
        .unwrap();
}
