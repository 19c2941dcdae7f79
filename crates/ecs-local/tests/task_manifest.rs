//! Task manifests and stop verification (docs/protocols.md §4.8) as the Go
//! agent uses them: the plane sends a `TaskManifestMessage` every
//! `task_manifest_interval`, the simulated agent answers with the recorded
//! `AckRequest` and `TaskStopVerificationMessage` shapes, and gets a
//! `TaskStopVerificationAck` confirming only the candidates the plane does
//! not want RUNNING on that instance.
#![allow(clippy::unwrap_used)]

mod common;

use common::{ack, next_of_type, recorded_query, recorded_request, send_json, Harness, Ws};
use ecs_model::acs::AcsMessage;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

const RECORDED_INSTANCE: &str =
    "arn:aws:ecs:us-east-1:123456789012:container-instance/default/701bbc45062742f4a14a0c8f8f3a5e0d";
const CLUSTER_ARN: &str = "arn:aws:ecs:us-east-1:000000000000:cluster/default";
const SECS: Duration = common::PATIENCE;
const INTERVAL: Duration = Duration::from_millis(700);

async fn setup(spec: &std::path::Path) -> Harness {
    let h = Harness::start_with(|c| c.task_manifest_interval = INTERVAL).await;
    let (target, body) = recorded_request(spec, "re-register.request.http");
    let (status, _, _) = common::post(&h.addr(), &target, &body).await;
    assert_eq!(status, 200);
    let def = json!({"family": "golden-capture", "containerDefinitions": [{
        "name": "sleeper", "image": "busybox:local", "memory": 32, "command": ["sleep", "600"]}]});
    let (status, _) = h
        .call("RegisterTaskDefinition", def.to_string().as_bytes())
        .await;
    assert_eq!(status, 200);
    h
}

async fn run_task(h: &Harness) -> String {
    let (status, body) = h
        .call(
            "RunTask",
            br#"{"cluster":"default","taskDefinition":"golden-capture"}"#,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["tasks"][0]["taskArn"].as_str().unwrap().to_owned()
}

fn sample_json(spec: &std::path::Path, name: &str) -> Value {
    serde_json::from_slice(&common::sample(spec, name)).unwrap()
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

/// The recorded manifest ack, re-addressed to this manifest.
async fn ack_manifest(ws: &mut Ws, spec: &std::path::Path, manifest: &Value) {
    let mut frame = sample_json(spec, "acs-ack-manifest.json");
    let m = &manifest["message"];
    frame["message"]["messageId"] = m["messageId"].clone();
    frame["message"]["cluster"] = m["clusterArn"].clone();
    frame["message"]["containerInstance"] = m["containerInstanceArn"].clone();
    send_json(ws, &frame).await;
}

/// The recorded verification message for this manifest, with these
/// candidates (each shaped like the recorded one).
async fn verify(ws: &mut Ws, spec: &std::path::Path, manifest: &Value, arns: &[&str]) {
    let mut frame = sample_json(spec, "acs-task-stop-verification.json");
    let template = frame["message"]["stopCandidates"][0].clone();
    let candidates: Vec<Value> = arns
        .iter()
        .map(|arn| {
            let mut c = template.clone();
            c["taskArn"] = json!(arn);
            c["taskClusterArn"] = manifest["message"]["clusterArn"].clone();
            c
        })
        .collect();
    frame["message"]["messageId"] = manifest["message"]["messageId"].clone();
    frame["message"]["stopCandidates"] = json!(candidates);
    send_json(ws, &frame).await;
}

fn stop_arns(verification_ack: &Value) -> Vec<String> {
    verification_ack["message"]["stopTasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["taskArn"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn manifests_and_stop_verification_round_trip() {
    let Some(spec) = common::spec() else { return };
    let h = setup(&spec).await;
    let mut ws = h
        .acs(&recorded_query(&spec, "acs-upgrade.request.txt"))
        .await;
    let task_arn = run_task(&h).await;
    let payload = next_of_type(&mut ws, "PayloadMessage", SECS).await;
    ack(&mut ws, &payload).await;
    let seq = payload["message"]["seqNum"].as_i64().unwrap();

    let manifest = next_of_type(&mut ws, "TaskManifestMessage", SECS).await;
    assert!(matches!(
        AcsMessage::decode(&manifest.to_string()).unwrap(),
        AcsMessage::TaskManifestMessage(_)
    ));
    let recorded = sample_json(&spec, "acs-task-manifest.json");
    assert_eq!(keys(&manifest["message"]), keys(&recorded["message"]));
    let m = &manifest["message"];
    assert_eq!(m["clusterArn"], CLUSTER_ARN);
    assert_eq!(m["containerInstanceArn"], RECORDED_INSTANCE);
    assert!(m["generatedAt"].as_i64().unwrap() > 1_600_000_000_000);
    assert!(
        m["timeline"].as_i64().unwrap() > seq,
        "{manifest} after {payload}"
    );
    assert_eq!(
        m["tasks"],
        json!([{"desiredStatus": "RUNNING", "taskArn": task_arn, "taskClusterArn": CLUSTER_ARN}])
    );
    let manifest_id = m["messageId"].as_str().unwrap().to_owned();

    // The manifest ack is recorded as such.
    ack_manifest(&mut ws, &spec, &manifest).await;
    let mut acked = false;
    let deadline = tokio::time::Instant::now() + SECS;
    while tokio::time::Instant::now() < deadline {
        let last = h.plane.last_manifest(RECORDED_INSTANCE).unwrap();
        if last.message_id != manifest_id {
            break;
        }
        if last.acked {
            acked = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(acked, "manifest ack recorded");

    // The running task is refused, and so is a task the plane has never
    // heard of (another plane's, on a host that several agents share).
    let recorded_candidate = sample_json(&spec, "acs-task-stop-verification.json")["message"]
        ["stopCandidates"][0]["taskArn"]
        .as_str()
        .unwrap()
        .to_owned();
    verify(
        &mut ws,
        &spec,
        &manifest,
        &[task_arn.as_str(), recorded_candidate.as_str()],
    )
    .await;
    let answer = next_of_type(&mut ws, "TaskStopVerificationAck", SECS).await;
    let recorded_ack = sample_json(&spec, "acs-task-stop-verification-ack.json");
    assert_eq!(keys(&answer["message"]), keys(&recorded_ack["message"]));
    assert_eq!(answer["message"]["messageId"], manifest_id.as_str());
    assert!(answer["message"]["generatedAt"].as_i64().unwrap() > 1_600_000_000_000);
    assert_eq!(answer["message"]["stopTasks"], json!([]));

    // StopTask, and the STOPPED payload is "lost" (never acked): the next
    // manifest leaves the task out and its stop is confirmed.
    let (status, _) = h
        .call("StopTask", json!({"task": task_arn}).to_string().as_bytes())
        .await;
    assert_eq!(status, 200);
    let next = loop {
        let next = next_of_type(&mut ws, "TaskManifestMessage", SECS).await;
        if next["message"]["tasks"] == json!([]) {
            break next;
        }
    };
    assert!(next["message"]["timeline"].as_i64() > m["timeline"].as_i64());
    assert_ne!(next["message"]["messageId"], manifest_id.as_str());
    verify(&mut ws, &spec, &next, &[task_arn.as_str()]).await;
    let answer = next_of_type(&mut ws, "TaskStopVerificationAck", SECS).await;
    assert_eq!(answer["message"]["messageId"], next["message"]["messageId"]);
    assert_eq!(stop_arns(&answer), [task_arn]);
    let entry = &answer["message"]["stopTasks"][0];
    assert_eq!(keys(entry), keys(&recorded_ack["message"]["stopTasks"][0]));
    assert_eq!(entry["desiredStatus"], "STOPPED");
    assert_eq!(entry["taskClusterArn"], CLUSTER_ARN);
}

#[tokio::test]
async fn timelines_keep_growing_across_a_plane_restart() {
    let Some(spec) = common::spec() else { return };
    let h = setup(&spec).await;
    let query = recorded_query(&spec, "acs-upgrade.request.txt");
    let mut ws = h.acs(&query).await;
    let first = next_of_type(&mut ws, "TaskManifestMessage", SECS).await;
    let second = next_of_type(&mut ws, "TaskManifestMessage", SECS).await;
    let t1 = first["message"]["timeline"].as_i64().unwrap();
    let t2 = second["message"]["timeline"].as_i64().unwrap();
    assert!(t2 > t1);
    drop(ws);
    let Harness { plane, dir } = h;
    plane.shutdown().await.unwrap();
    let plane = common::start_in_with(dir.path().join("data"), |c| {
        c.task_manifest_interval = INTERVAL
    })
    .await;
    let h = Harness { plane, dir };
    let mut ws = h.acs(&query).await;
    let third = next_of_type(&mut ws, "TaskManifestMessage", SECS).await;
    assert!(third["message"]["timeline"].as_i64().unwrap() > t2);
}
