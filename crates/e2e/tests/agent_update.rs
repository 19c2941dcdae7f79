//! Agent updates end to end: `aws ecs update-container-agent` against
//! ecs-local started with `--agent-update-bundle`, and the real agent,
//! which downloads the bundle from the plane, names it in `desired-image`
//! and exits with code 42, leaving its tasks running; a restarted agent
//! completes the update. With updates disabled the agent refuses, keeps
//! running, and the update is FAILED.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use e2e::{docker_ids_with_label, free_port, require_docker, wait_for, Agent, AgentOptions, Plane};
use serde_json::Value;

const CONNECT: Duration = Duration::from_secs(60);
const SETTLE: Duration = Duration::from_secs(90);

/// A small tar file standing in for an agent image: any bytes would do, the
/// agent only checks their SHA-256.
fn make_bundle(dir: &Path) -> std::path::PathBuf {
    let content = dir.join("content");
    std::fs::create_dir_all(&content).unwrap();
    std::fs::write(
        content.join("agent"),
        b"#!/bin/sh\necho not really an agent\n",
    )
    .unwrap();
    let bundle = dir.join("bundle.tar");
    let status = Command::new("tar")
        .arg("-cf")
        .arg(&bundle)
        .arg("-C")
        .arg(&content)
        .arg("agent")
        .status()
        .unwrap();
    assert!(status.success(), "tar failed");
    bundle
}

fn plane_with_bundle(dir: &Path, bundle: &Path) -> Plane {
    Plane::start_with_args(
        &dir.join("plane"),
        free_port().unwrap(),
        &["--agent-update-bundle", &bundle.display().to_string()],
    )
    .unwrap()
}

fn describe(plane: &Plane, arn: &str) -> Value {
    let v = plane
        .cli()
        .ecs(&[
            "describe-container-instances",
            "--cluster",
            "default",
            "--container-instances",
            arn,
        ])
        .unwrap();
    v["containerInstances"][0].clone()
}

fn wait_update_status(plane: &Plane, arn: &str, status: &str) -> Value {
    wait_for(&format!("agentUpdateStatus {status}"), SETTLE, || {
        let instance = describe(plane, arn);
        Ok((instance["agentUpdateStatus"] == status).then_some(instance))
    })
    .unwrap()
}

#[test]
fn an_update_stages_the_bundle_exits_42_and_completes_after_a_restart() {
    require_docker();
    let dir = tempfile::tempdir().unwrap();
    let bundle = make_bundle(dir.path());
    let plane = plane_with_bundle(dir.path(), &bundle);
    let cli = plane.cli();
    let cache = dir.path().join("cache");
    let options = AgentOptions::new(&dir.path().join("agent"))
        .env("ECS_UPDATES_ENABLED", "true")
        .env("ECS_UPDATE_DOWNLOAD_DIR", &cache.display().to_string());
    let mut agent = Agent::start(&plane, &options).unwrap();
    let arn = cli.wait_connected_instance("default", CONNECT).unwrap()["containerInstanceArn"]
        .as_str()
        .unwrap()
        .to_string();
    // A task that must outlive the agent's exit.
    let family = cli
        .register_simple("update-sleeper", &["sleep", "600"])
        .unwrap();
    let task = cli.run_task("default", &family).unwrap();
    cli.wait_task_status("default", &task, "RUNNING", SETTLE)
        .unwrap();

    let out = cli
        .ecs(&[
            "update-container-agent",
            "--cluster",
            "default",
            "--container-instance",
            &arn,
        ])
        .unwrap();
    assert_eq!(
        out["containerInstance"]["agentUpdateStatus"], "PENDING",
        "{out}"
    );

    let code = wait_for("the agent to exit for the update", SETTLE, || {
        agent.exit_code()
    })
    .unwrap();
    assert_eq!(code, Some(42), "{}", agent.own_log_text());

    let desired = std::fs::read_to_string(cache.join("desired-image")).unwrap();
    let name = desired.strip_suffix('\n').unwrap();
    assert!(name.ends_with(".ecs-update.tar"), "{desired:?}");
    assert_eq!(
        std::fs::read(cache.join(name)).unwrap(),
        std::fs::read(&bundle).unwrap()
    );
    assert_eq!(describe(&plane, &arn)["agentUpdateStatus"], "UPDATING");
    // The orderly exit leaves the tasks running.
    assert_eq!(
        docker_ids_with_label("com.amazonaws.ecs.task-arn", &task, false).len(),
        1,
        "the task's container stopped with the agent"
    );

    // The supervisor would now install the bundle and start the agent
    // again; the same binary stands in for the new one.
    let agent = Agent::start(&plane, &options).unwrap();
    agent.wait_acs_connected(CONNECT).unwrap();
    let instance = wait_update_status(&plane, &arn, "UPDATED");
    assert_eq!(instance["agentConnected"], true);
    assert_eq!(
        cli.describe_task("default", &task).unwrap()["lastStatus"],
        "RUNNING"
    );
    // Nothing more to update to: the agent runs the offered bundle.
    let err = cli
        .ecs(&[
            "update-container-agent",
            "--cluster",
            "default",
            "--container-instance",
            &arn,
        ])
        .unwrap_err();
    assert!(
        err.to_string().contains("NoUpdateAvailableException"),
        "{err:#}"
    );
    assert_eq!(agent.terminate(SETTLE).unwrap(), Some(0));
}

#[test]
fn with_updates_disabled_the_update_fails_and_the_agent_keeps_running() {
    require_docker();
    let dir = tempfile::tempdir().unwrap();
    let bundle = make_bundle(dir.path());
    let plane = plane_with_bundle(dir.path(), &bundle);
    let cli = plane.cli();
    let cache = dir.path().join("cache");
    let options = AgentOptions::new(&dir.path().join("agent"))
        .env("ECS_UPDATE_DOWNLOAD_DIR", &cache.display().to_string());
    let mut agent = Agent::start(&plane, &options).unwrap();
    let arn = cli.wait_connected_instance("default", CONNECT).unwrap()["containerInstanceArn"]
        .as_str()
        .unwrap()
        .to_string();

    cli.ecs(&[
        "update-container-agent",
        "--cluster",
        "default",
        "--container-instance",
        &arn,
    ])
    .unwrap();
    let instance = wait_update_status(&plane, &arn, "FAILED");
    assert_eq!(instance["agentConnected"], true);
    assert_eq!(agent.exit_code().unwrap(), None, "the agent exited");
    assert!(!cache.exists(), "something was downloaded");
    let log = agent.own_log_text();
    assert!(log.contains("updates are disabled"), "{log}");
    assert_eq!(agent.terminate(SETTLE).unwrap(), Some(0));
}
