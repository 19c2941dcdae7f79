//! The agent against a scripted backend, for payloads ecs-local would never
//! send: tasks that are invalid in different ways next to a valid one, and
//! values the ECS API refuses (a 1-second restart attempt period), on real
//! Docker.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use e2e::fake_backend::FakeBackend;
use e2e::{docker_inspect, require_docker, Agent, AgentOptions, TEST_IMAGE};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(60);

fn task(id: &str, family: &str, containers: Value) -> Value {
    json!({
        "arn": format!("arn:aws:ecs:us-east-1:123456789012:task/default/{id}"),
        "family": family, "version": "1", "desiredStatus": "RUNNING",
        "networkMode": "bridge", "launchType": "EC2",
        "containers": containers
    })
}

fn container(name: &str, command: &[&str]) -> Value {
    json!({"name": name, "image": TEST_IMAGE, "command": command, "memory": 32,
           "essential": true, "overrides": "{}"})
}

struct Run {
    backend: FakeBackend,
    _agent: Agent,
    _dir: tempfile::TempDir,
    arns: Vec<String>,
}

impl Drop for Run {
    fn drop(&mut self) {
        e2e::remove_task_containers(&self.arns);
    }
}

async fn start() -> Run {
    require_docker();
    let backend = FakeBackend::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start_at(&backend.url(), &AgentOptions::new(dir.path())).unwrap();
    backend
        .wait_frame("HeartbeatAckRequest", WAIT)
        .await
        .expect("agent connected");
    Run {
        backend,
        _agent: agent,
        _dir: dir,
        arns: Vec::new(),
    }
}

fn reason_of(change: &Value) -> String {
    let task_reason = change["reason"].as_str().unwrap_or_default().to_string();
    let container_reasons: Vec<String> = change["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["reason"].as_str().map(str::to_string))
        .collect();
    format!("{task_reason} {}", container_reasons.join(" "))
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_tasks_stop_alone_with_clear_reasons() {
    let mut run = start().await;
    let good = task(
        "0000000000000000000000000000g00d",
        "good",
        json!([container("main", &["sleep", "600"])]),
    );
    let mut unknown_volume = container("main", &["sleep", "600"]);
    unknown_volume["mountPoints"] = json!([{"sourceVolume": "nowhere", "containerPath": "/x"}]);
    let unknown_volume = task(
        "000000000000000000000000000000v1",
        "badvolume",
        json!([unknown_volume]),
    );
    let mut a = container("a", &["sleep", "600"]);
    a["dependsOn"] = json!([{"containerName": "b", "condition": "START"}]);
    let mut b = container("b", &["sleep", "600"]);
    b["dependsOn"] = json!([{"containerName": "a", "condition": "START"}]);
    let cycle = task("00000000000000000000000000000cyc", "cycle", json!([a, b]));
    let mut bad_image = container("main", &["sleep", "600"]);
    bad_image["image"] = json!("Not A Valid::Image@@name");
    let bad_image = task(
        "0000000000000000000000000000b1mg",
        "badimage",
        json!([bad_image]),
    );
    let mut missing = container("main", &["sleep", "600"]);
    missing.as_object_mut().unwrap().remove("image");
    let missing = task(
        "000000000000000000000000000m1ss1",
        "missing",
        json!([missing]),
    );
    let tasks = vec![
        good.clone(),
        unknown_volume.clone(),
        cycle.clone(),
        bad_image.clone(),
        missing.clone(),
    ];
    run.arns = tasks
        .iter()
        .map(|t| t["arn"].as_str().unwrap().to_string())
        .collect();
    run.backend.send_payload("payload-bad-1", 1, tasks);

    let good_arn = good["arn"].as_str().unwrap();
    run.backend
        .wait_task_status(good_arn, "RUNNING", WAIT)
        .await
        .expect("the valid task runs");
    for (bad, needle) in [
        (&unknown_volume, "HostConfigError"),
        (&cycle, "Task dependencies cannot be resolved"),
        (&bad_image, "Cannot"),
        (
            &missing,
            "UnrecogniedTaskError: Error loading task - missing image",
        ),
    ] {
        let arn = bad["arn"].as_str().unwrap();
        let change = run
            .backend
            .wait_task_status(arn, "STOPPED", WAIT)
            .await
            .unwrap_or_else(|| panic!("{arn} was not reported STOPPED"));
        let reason = reason_of(&change);
        assert!(
            reason.contains(needle),
            "{arn}: {reason:?} should contain {needle:?}"
        );
    }
    // A payload with an unparseable task is never acked
    // (docs/protocols.md §4.5). An ack would be sent as soon as the
    // payload's tasks were handed to the engine, well before the valid one
    // ran; the extra second only gives a wrong ack more time to show up, so
    // this can pass wrongly but never fail wrongly.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !run.backend
            .acs_frames()
            .iter()
            .any(|f| f.contains("payload-bad-1") && f.contains("\"AckRequest\"")),
        "the payload was acked"
    );
    // The valid task is untouched.
    assert_eq!(
        run.backend.last_change(good_arn).unwrap()["status"],
        "RUNNING"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_policy_restarts_in_place_unless_the_code_is_ignored() {
    let mut run = start().await;
    let mut restarting = container("main", &["sh", "-c", "sleep 1; exit 3"]);
    restarting["restartPolicy"] =
        json!({"enabled": true, "ignoredExitCodes": [0], "restartAttemptPeriod": 1});
    let restarting = task(
        "00000000000000000000000000rstrt1",
        "restarting",
        json!([restarting]),
    );
    let mut ignored = container("main", &["sh", "-c", "sleep 1; exit 3"]);
    ignored["restartPolicy"] =
        json!({"enabled": true, "ignoredExitCodes": [3], "restartAttemptPeriod": 1});
    let ignored = task(
        "00000000000000000000000000rstrt2",
        "ignored",
        json!([ignored]),
    );
    run.arns = vec![
        restarting["arn"].as_str().unwrap().to_string(),
        ignored["arn"].as_str().unwrap().to_string(),
    ];
    run.backend.send_payload(
        "payload-restart",
        1,
        vec![restarting.clone(), ignored.clone()],
    );

    let arn = restarting["arn"].as_str().unwrap();
    let running = run
        .backend
        .wait_task_status(arn, "RUNNING", WAIT)
        .await
        .unwrap();
    let id = running["containers"][0]["runtimeId"]
        .as_str()
        .unwrap()
        .to_string();
    let first_start = docker_inspect(&id).unwrap()["State"]["StartedAt"].clone();
    // The container exits 3 after a second and the same container is
    // started again.
    tokio::task::block_in_place(|| {
        e2e::wait_for("the same container to be started again", WAIT, || {
            let state = docker_inspect(&id)?["State"].clone();
            Ok((state["StartedAt"] != first_start).then_some(()))
        })
    })
    .unwrap();
    let ignored_arn = ignored["arn"].as_str().unwrap();
    let stopped = run
        .backend
        .wait_task_status(ignored_arn, "STOPPED", WAIT)
        .await
        .expect("ignored exit code stops");
    assert_eq!(stopped["containers"][0]["exitCode"], 3);
    // By now the restarting container has exited and been started again,
    // and the exit the ignored task had at the same moment has been
    // reported: a STOPPED report of the restarting task would have come
    // the same way. (This can pass wrongly, if such a report were slower,
    // but never fail wrongly.)
    assert!(
        run.backend
            .wait_task_status(arn, "STOPPED", Duration::from_millis(1))
            .await
            .is_none(),
        "a restarted container does not stop its task"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn start_timeout_of_a_dependency_fails_the_dependent() {
    let mut run = start().await;
    let mut slow = container("slow", &["sleep", "600"]);
    slow["startTimeout"] = json!(2);
    slow["essential"] = json!(false);
    let mut app = container("app", &["sleep", "600"]);
    app["dependsOn"] = json!([{"containerName": "slow", "condition": "COMPLETE"}]);
    let t = task(
        "0000000000000000000000000timeout",
        "timeouts",
        json!([slow, app]),
    );
    let arn = t["arn"].as_str().unwrap().to_string();
    run.arns = vec![arn.clone()];
    run.backend.send_payload("payload-timeout", 1, vec![t]);
    run.backend
        .wait_task_status(&arn, "STOPPED", WAIT)
        .await
        .expect("the task stops");
    // The dependent's STOPPED may come in an earlier report than the task's.
    let app: Vec<Value> = run
        .backend
        .state_changes()
        .into_iter()
        .filter(|c| c["task"] == arn.as_str())
        .flat_map(|c| c["containers"].as_array().cloned().unwrap_or_default())
        .filter(|c| c["containerName"] == "app")
        .collect();
    let stopped = app
        .iter()
        .find(|c| c["status"] == "STOPPED")
        .unwrap_or_else(|| panic!("{app:?}"));
    let reason = stopped["reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with("CannotStartContainerError"), "{stopped}");
    assert!(reason.contains("start timeout"), "{stopped}");
    assert_eq!(stopped["exitCode"], 143);
}
