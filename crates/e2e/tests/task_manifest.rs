//! The ACS reconciliation safety net (docs/protocols.md §4.8) against a
//! scripted backend on real Docker: stale manifests are ignored, a task
//! missing from a manifest becomes a stop candidate, and only the matching
//! verification ack stops it; the high-water mark survives a restart.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use e2e::fake_backend::{
    manifest, sleeper_task, task_arn as arn, verification_ack, FakeBackend, CLUSTER_ARN as CLUSTER,
    INSTANCE_ARN as INSTANCE,
};
use e2e::{require_docker, Agent, AgentOptions};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);
/// How long a check that something does NOT happen (no ack, no stop)
/// waits for it: such a check can pass wrongly, never fail wrongly.
const QUIET: Duration = Duration::from_secs(3);

fn task(id: &str) -> serde_json::Value {
    sleeper_task("manifest", id)
}

/// Waits until a line that this agent process logged has all `needles`:
/// the agent has handled a frame the test sent.
fn logged(agent: &Agent, needles: &[&str]) {
    tokio::task::block_in_place(|| {
        e2e::wait_for(&format!("the agent to log {needles:?}"), WAIT, || {
            Ok(agent
                .own_log_text()
                .lines()
                .any(|l| needles.iter().all(|n| l.contains(n)))
                .then_some(()))
        })
    })
    .unwrap();
}

/// Waits until the ACS connection after the first `before` ones has acked
/// a heartbeat. The fake serves one connection at a time, so once it has
/// taken a new upgrade, every frame of the earlier connections is in the
/// record, and a heartbeat ack arriving later is the new connection's.
async fn wait_new_connection(backend: &FakeBackend, before: usize) -> bool {
    let recorded = || backend.recorded.lock().unwrap();
    let wait = async {
        while recorded().upgrades.len() <= before {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let from = recorded().acs_frames.len();
        // The fake heartbeats on connecting and every 10 s after.
        while !recorded().acs_frames[from..]
            .iter()
            .any(|f| f.contains("HeartbeatAckRequest"))
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(WAIT, wait).await.is_ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn only_a_confirmed_candidate_stops_and_stale_manifests_are_ignored() {
    require_docker();
    let backend = FakeBackend::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let options = AgentOptions::new(dir.path());
    let agent = Agent::start_at(&backend.url(), &options).unwrap();
    backend
        .wait_frame("HeartbeatAckRequest", WAIT)
        .await
        .expect("agent connected");
    let (lost, kept) = (
        "000000000000000000000000000l0057",
        "0000000000000000000000000000ke07",
    );
    backend.send_payload("pl-1", 3, vec![task(lost), task(kept)]);
    for id in [lost, kept] {
        backend
            .wait_task_status(&arn(id), "RUNNING", WAIT)
            .await
            .expect("task running");
    }

    // timeline 2 is not above payload seqNum 3: no ack, no verification.
    backend.send(manifest("mf-stale", 2, &[kept]));
    logged(&agent, &["discarding stale task manifest", "timeline=2"]);
    assert!(backend.wait_frame("mf-stale", QUIET).await.is_none());

    backend.send(manifest("mf-4", 4, &[kept]));
    let ack = backend
        .wait_frame("\"messageId\":\"mf-4\"}}", WAIT)
        .await
        .expect("manifest acked");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&ack).unwrap(),
        json!({"type": "AckRequest", "message": {"cluster": CLUSTER,
            "containerInstance": INSTANCE, "messageId": "mf-4"}})
    );
    let verification = backend
        .wait_frame("TaskStopVerificationMessage", WAIT)
        .await
        .expect("stop candidates proposed");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&verification).unwrap(),
        json!({"type": "TaskStopVerificationMessage", "message": {"messageId": "mf-4",
            "stopCandidates": [{"desiredStatus": "STOPPED", "taskArn": arn(lost), "taskClusterArn": CLUSTER}]}})
    );

    // An ack for another manifest changes nothing; the right one stops
    // the candidate and nothing else.
    backend.send(verification_ack("mf-other", &[&arn(lost)]));
    logged(
        &agent,
        &[
            "ignoring a stop verification ack",
            "message_id=\"mf-other\"",
        ],
    );
    assert!(backend
        .wait_task_status(&arn(lost), "STOPPED", QUIET)
        .await
        .is_none());
    backend.send(verification_ack("mf-4", &[&arn(lost)]));
    backend
        .wait_task_status(&arn(lost), "STOPPED", WAIT)
        .await
        .expect("confirmed task stopped");
    assert!(backend
        .wait_task_status(&arn(kept), "STOPPED", QUIET)
        .await
        .is_none());

    // latestSeq (4) survives a restart: timeline 4 is stale afterwards.
    // The manifests go to the restarted agent's own connection (the old
    // agent's heartbeat acks are still in the record).
    let connections = backend.recorded.lock().unwrap().upgrades.len();
    agent.kill();
    let agent = Agent::start_at(&backend.url(), &options).unwrap();
    assert!(
        wait_new_connection(&backend, connections).await,
        "agent reconnected"
    );
    backend.send(manifest("mf-again", 4, &[]));
    logged(&agent, &["discarding stale task manifest", "timeline=4"]);
    assert!(backend.wait_frame("mf-again", QUIET).await.is_none());
    backend.send(manifest("mf-5", 5, &[kept]));
    assert!(backend.wait_frame("\"mf-5\"", WAIT).await.is_some());
    drop(agent);
    e2e::remove_task_containers(&[arn(lost), arn(kept)]);
}
