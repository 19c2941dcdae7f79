//! The agent's crash semantics on real Docker, against a scripted backend
//! (docs/architecture.md §3.1, §5.4, §6): an internal failure ends the process with
//! exit code 1 and the restarted agent resumes its tasks without touching
//! their containers; a payload is acked only once saved; containers that
//! no saved task owns are stopped only when the backend confirms; a
//! checkpoint the agent cannot read is refused untouched; one of an older
//! schema is upgraded and used.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use e2e::fake_backend::{
    manifest, sleeper_task, task_arn as arn, verification_ack, FakeBackend, CLUSTER_ARN,
};
use e2e::{docker_inspect, require_docker, wait_for, Agent, AgentOptions, TEST_IMAGE};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);
/// How long a check that something does NOT happen waits: it can pass
/// wrongly, never fail wrongly.
const QUIET: Duration = Duration::from_secs(3);

fn task(id: &str) -> serde_json::Value {
    sleeper_task("crash", id)
}

fn ack_of(message_id: &str) -> String {
    format!("\"messageId\":\"{message_id}\"}}}}")
}

fn wait_exit(agent: &mut Agent) -> Option<i32> {
    wait_for("the agent to exit", WAIT, || agent.exit_code()).unwrap()
}

fn container_of(task_arn: &str) -> String {
    let ids = e2e::docker_ids_with_label("com.amazonaws.ecs.task-arn", task_arn, true);
    assert_eq!(ids.len(), 1, "one container for {task_arn}: {ids:?}");
    ids[0].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_internal_failure_exits_1_and_the_restart_resumes_without_touching_containers() {
    require_docker();
    let backend = FakeBackend::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (
        "00000000000000000000000000c1a5e1",
        "00000000000000000000000000c1a5e2",
    );
    // Debug builds panic at the engine's second payload when asked to.
    let failing = AgentOptions::new(dir.path()).env("ECS_AGENT_FAILPOINT", "engine-payload@2");
    let mut agent = Agent::start_at(&backend.url(), &failing).unwrap();
    backend
        .wait_frame("HeartbeatAckRequest", WAIT)
        .await
        .expect("agent connected");
    backend.send_payload("pl-1", 1, vec![task(first)]);
    backend
        .wait_task_status(&arn(first), "RUNNING", WAIT)
        .await
        .expect("first task running");
    assert!(backend.wait_frame(&ack_of("pl-1"), WAIT).await.is_some());
    let kept = container_of(&arn(first));
    let started_at = docker_inspect(&kept).unwrap()["State"]["StartedAt"].clone();

    backend.send_payload("pl-2", 2, vec![task(second)]);
    assert_eq!(
        wait_exit(&mut agent),
        Some(1),
        "a panic ends the process with 1"
    );
    let log = agent.own_log_text();
    assert!(log.contains("failpoint engine-payload reached"), "{log}");
    assert!(log.contains("exiting so the agent is restarted"), "{log}");
    assert!(
        backend.wait_frame(&ack_of("pl-2"), QUIET).await.is_none(),
        "the payload that was never saved is not acked"
    );
    assert!(
        e2e::docker_ids_with_label("com.amazonaws.ecs.task-arn", &arn(second), true).is_empty()
    );

    // The init system starts the agent again; ACS sends the unacked
    // payload again on the new connection.
    let agent = Agent::start_at(&backend.url(), &AgentOptions::new(dir.path())).unwrap();
    agent.wait_acs_connected(WAIT).unwrap();
    backend.send_payload("pl-2", 2, vec![task(second)]);
    backend
        .wait_task_status(&arn(second), "RUNNING", WAIT)
        .await
        .expect("second task running after the restart");
    assert!(backend.wait_frame(&ack_of("pl-2"), WAIT).await.is_some());
    let after = docker_inspect(&kept).unwrap();
    assert_eq!(after["State"]["Running"], true);
    assert_eq!(
        after["State"]["StartedAt"], started_at,
        "the running container was adopted, not restarted"
    );
    assert_eq!(container_of(&arn(first)), kept, "no second container");
    drop(agent);
    e2e::remove_task_containers(&[arn(first), arn(second)]);
}

fn run_labelled(name: &str, labels: &[(&str, &str)]) -> String {
    let _ = Command::new("docker").args(["rm", "-f", name]).output();
    let mut args = vec!["run".to_string(), "-d".into(), "--name".into(), name.into()];
    for (k, v) in labels {
        args.push("--label".into());
        args.push(format!("{k}={v}"));
    }
    args.extend([TEST_IMAGE.into(), "sleep".into(), "600".into()]);
    let out = Command::new("docker").args(&args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn running(id: &str) -> bool {
    docker_inspect(id).unwrap()["State"]["Running"] == true
}

#[tokio::test(flavor = "multi_thread")]
async fn containers_no_saved_task_owns_are_stopped_once_the_backend_confirms() {
    require_docker();
    let orphan_task = arn("000000000000000000000000000rphan");
    let orphan = run_labelled(
        "ecs-e2e-orphan-of-default",
        &[
            ("com.amazonaws.ecs.task-arn", &orphan_task),
            ("com.amazonaws.ecs.cluster", "default"),
        ],
    );
    let elsewhere = run_labelled(
        "ecs-e2e-orphan-of-other",
        &[
            (
                "com.amazonaws.ecs.task-arn",
                "arn:aws:ecs:us-east-1:123456789012:task/other/0000000000000000000000000000e15e",
            ),
            ("com.amazonaws.ecs.cluster", "other"),
        ],
    );
    let backend = FakeBackend::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start_at(&backend.url(), &AgentOptions::new(dir.path())).unwrap();
    agent.wait_acs_connected(WAIT).unwrap();
    assert!(agent
        .own_log_text()
        .contains("running container belongs to no saved task"));
    // Found, but nothing is stopped on the agent's word alone.
    tokio::time::sleep(QUIET).await;
    assert!(running(&orphan));

    backend.send(manifest("mf-1", 1, &[]));
    let verification = backend
        .wait_frame("TaskStopVerificationMessage", WAIT)
        .await
        .expect("the orphan's task proposed for stopping");
    let verification: serde_json::Value = serde_json::from_str(&verification).unwrap();
    // Other tests' agents share this Docker host, so their tasks may be
    // proposed too: this backend confirms only the orphan.
    let candidates = verification["message"]["stopCandidates"]
        .as_array()
        .unwrap()
        .clone();
    assert!(
        candidates.contains(&json!({"desiredStatus": "STOPPED", "taskArn": orphan_task,
                                     "taskClusterArn": CLUSTER_ARN})),
        "{candidates:?}"
    );
    assert!(
        !verification.to_string().contains("task/other/"),
        "another cluster's task is not proposed: {verification}"
    );
    backend.send(verification_ack("mf-1", &[&orphan_task]));
    wait_for("the orphan to stop", WAIT, || {
        Ok((!running(&orphan)).then_some(()))
    })
    .unwrap();
    assert!(
        running(&elsewhere),
        "another cluster's container is left alone"
    );
    drop(agent);
    for id in [orphan, elsewhere] {
        let _ = Command::new("docker").args(["rm", "-f", &id]).output();
    }
}

fn file_bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_checkpoint_the_agent_cannot_read_is_refused_with_exit_5_and_left_as_it_is() {
    require_docker();
    let backend = FakeBackend::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().join("agent.db");
    // The first page of a bbolt file, as the Go agent leaves it.
    let mut bolt = vec![0u8; 4096];
    bolt[16..20].copy_from_slice(&0xED0C_DAEDu32.to_le_bytes());
    std::fs::write(&checkpoint, &bolt).unwrap();
    let mut agent = Agent::start_at(&backend.url(), &AgentOptions::new(dir.path())).unwrap();
    assert_eq!(wait_exit(&mut agent), Some(5));
    let log = agent.own_log_text();
    assert!(log.contains(&checkpoint.display().to_string()), "{log}");
    assert!(log.contains("Go ECS agent"), "{log}");
    assert_eq!(file_bytes(&checkpoint), bolt, "the file is left as it was");
    assert!(
        backend.api_calls("RegisterContainerInstance").is_empty(),
        "refused before registering"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_checkpoint_of_the_first_schema_is_upgraded_and_carried_on() {
    require_docker();
    let backend = FakeBackend::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../ecs-agent/tests/data/checkpoint-v1/agent.db");
    std::fs::copy(&fixture, dir.path().join("agent.db")).unwrap();
    let agent = Agent::start_at(&backend.url(), &AgentOptions::new(dir.path())).unwrap();
    agent.wait_acs_connected(WAIT).unwrap();
    let log = agent.own_log_text();
    assert!(log.contains("upgrading the checkpoint"), "{log}");
    // Registered as the saved instance, not as a new one.
    let registration = backend.api_calls("RegisterContainerInstance");
    assert_eq!(
        registration[0]["containerInstanceArn"],
        "arn:aws:ecs:us-east-1:123456789012:container-instance/default/0123456789abcdef0123456789abcdef"
    );
    // The saved RUNNING task's containers are not on this host: reported
    // STOPPED as vanished. The STOPPED change left in the outbox is sent.
    let vanished = backend
        .wait_task_status(&arn("11111111111111111111111111111111"), "STOPPED", WAIT)
        .await
        .expect("vanished task reported");
    assert_eq!(
        vanished["containers"][0]["reason"],
        "ContainerVanishedError: No container matching saved ID found"
    );
    let queued = backend
        .wait_task_status(&arn("22222222222222222222222222222222"), "STOPPED", WAIT)
        .await
        .expect("queued change delivered");
    assert_eq!(queued["reason"], "Essential container in task exited");
}
