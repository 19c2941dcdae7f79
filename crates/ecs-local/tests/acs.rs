//! The ACS websocket as the Go agent uses it: the recorded handshake,
//! heartbeats, task payloads, acks, redelivery on reconnect, stops, and
//! refused handshakes.
#![allow(clippy::unwrap_used)]

mod common;

use common::{
    ack, next_of_type, payloads_within, recorded_query, recorded_request, send_json, Harness, Ws,
};
use ecs_model::acs::AcsMessage;
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::time::Duration;
use tokio_tungstenite::tungstenite::{self, Message};

const RECORDED_INSTANCE: &str =
    "arn:aws:ecs:us-east-1:123456789012:container-instance/default/701bbc45062742f4a14a0c8f8f3a5e0d";
const SECS: Duration = common::PATIENCE;

/// Registers the recorded instance (through the recorded re-registration,
/// which carries its ARN) and a task definition.
async fn setup(spec: &std::path::Path) -> Harness {
    let h = Harness::start().await;
    let (target, body) = recorded_request(spec, "re-register.request.http");
    let (status, _, _) = common::post(&h.addr(), &target, &body).await;
    assert_eq!(status, 200);
    let def = json!({"family": "golden-capture", "containerDefinitions": [{
        "name": "sleeper", "image": "busybox:local", "memory": 32, "command": ["sleep", "600"],
        "environment": [{"name": "GOLDEN", "value": "1"}],
        "dockerLabels": {"capture.golden": "true"},
        "healthCheck": {"command": ["CMD-SHELL", "exit 0"], "interval": 5, "timeout": 2, "retries": 3},
        "ulimits": [{"name": "nofile", "softLimit": 1024, "hardLimit": 2048}]}]});
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
    assert_eq!(body["failures"], json!([]));
    body["tasks"][0]["taskArn"].as_str().unwrap().to_owned()
}

async fn stop_task(h: &Harness, arn: &str) {
    let (status, body) = h
        .call(
            "StopTask",
            json!({"task": arn, "reason": "test stop"})
                .to_string()
                .as_bytes(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

async fn connect(h: &Harness, spec: &std::path::Path) -> Ws {
    h.acs(&recorded_query(spec, "acs-upgrade.request.txt"))
        .await
}

fn payload_task(payload: &Value) -> &Value {
    &payload["message"]["tasks"][0]
}

async fn refusal(h: &Harness, query: &str) -> (u16, Value) {
    let url = format!("ws://{}/acs/ws?{query}", h.addr());
    match tokio_tungstenite::connect_async(url).await {
        Err(tungstenite::Error::Http(response)) => {
            let body = response.body().clone().unwrap_or_default();
            (
                response.status().as_u16(),
                serde_json::from_slice(&body).unwrap(),
            )
        }
        Ok(_) => panic!("handshake was accepted"),
        Err(e) => panic!("unexpected error {e}"),
    }
}

#[tokio::test]
async fn heartbeat_payload_ack_and_stop() {
    let Some(spec) = common::spec() else { return };
    let h = setup(&spec).await;
    let mut ws = connect(&h, &spec).await;

    let hb = next_of_type(&mut ws, "HeartbeatMessage", SECS).await;
    assert_eq!(hb["message"]["healthy"], true);
    assert!(!hb["message"]["messageId"].as_str().unwrap().is_empty());
    // Acking heartbeats is harmless.
    send_json(&mut ws, &json!({"type": "HeartbeatAckRequest", "message": {"messageId": hb["message"]["messageId"]}})).await;

    let (_, described) = h
        .call(
            "DescribeContainerInstances",
            json!({"containerInstances": [RECORDED_INSTANCE]})
                .to_string()
                .as_bytes(),
        )
        .await;
    let ci = &described["containerInstances"][0];
    assert_eq!(ci["agentConnected"], true);
    assert_eq!(
        ci["versionInfo"],
        json!({"agentVersion": "1.105.1", "agentHash": "a8b3e7d3", "dockerVersion": "20.10.24+dfsg1"})
    );

    let task_arn = run_task(&h).await;
    let payload = next_of_type(&mut ws, "PayloadMessage", SECS).await;
    // The frame fits the ACS model.
    assert!(matches!(
        AcsMessage::decode(&payload.to_string()).unwrap(),
        AcsMessage::PayloadMessage(_)
    ));
    let m = &payload["message"];
    assert_eq!(
        m["clusterArn"],
        "arn:aws:ecs:us-east-1:000000000000:cluster/default"
    );
    assert_eq!(m["containerInstanceArn"], RECORDED_INSTANCE);
    assert!(m["seqNum"].as_i64().unwrap() >= 1);
    assert!(m["generatedAt"].as_i64().unwrap() > 1_600_000_000_000);
    let task = payload_task(&payload);
    assert_eq!(task["arn"], task_arn.as_str());
    assert_eq!(task["family"], "golden-capture");
    assert_eq!(task["version"], "1");
    assert_eq!(task["desiredStatus"], "RUNNING");
    assert_eq!(task["networkMode"], "bridge");
    assert_eq!(task["launchType"], "EC2");
    let c = &task["containers"][0];
    assert_eq!(c["name"], "sleeper");
    assert_eq!(c["image"], "busybox:local");
    assert_eq!(c["memory"], 32);
    assert_eq!(c["essential"], true);
    assert_eq!(c["command"], json!(["sleep", "600"]));
    assert_eq!(c["environment"], json!({"GOLDEN": "1"}));
    assert_eq!(c["overrides"], "{}");
    assert_eq!(c["healthCheckType"], "docker");
    assert!(c["containerArn"]
        .as_str()
        .unwrap()
        .contains(":container/default/"));
    let config: Value =
        serde_json::from_str(c["dockerConfig"]["config"].as_str().unwrap()).unwrap();
    assert_eq!(config["Labels"], json!({"capture.golden": "true"}));
    assert_eq!(config["Healthcheck"]["Interval"], 5_000_000_000_i64);
    let host: Value =
        serde_json::from_str(c["dockerConfig"]["hostConfig"].as_str().unwrap()).unwrap();
    assert_eq!(
        host["Ulimits"],
        json!([{"Name": "nofile", "Soft": 1024, "Hard": 2048}])
    );

    ack(&mut ws, &payload).await;
    let id = task_arn.rsplit('/').next().unwrap().to_owned();
    common::eventually(&h.plane, "RUNNING acked", |st| {
        st.tasks[&id].delivered_desired.as_deref() == Some("RUNNING")
    })
    .await;

    stop_task(&h, &task_arn).await;
    let stop = next_of_type(&mut ws, "PayloadMessage", SECS).await;
    let stopped = payload_task(&stop);
    assert_eq!(stopped["arn"], task_arn.as_str());
    assert_eq!(stopped["desiredStatus"], "STOPPED");
    assert_eq!(
        stopped["containers"], task["containers"],
        "a stop resends the full task"
    );
    assert!(stop["message"]["seqNum"].as_i64() > m["seqNum"].as_i64());
    ack(&mut ws, &stop).await;
    common::eventually(&h.plane, "STOPPED acked", |st| {
        !st.tasks[&id].needs_delivery()
    })
    .await;
    // Until the agent reports it, the task is stopping, not stopped.
    assert_eq!(
        h.plane
            .store()
            .read(|st| st.tasks[&id].last_status().to_owned()),
        "PENDING"
    );
}

#[tokio::test]
async fn unacked_payloads_are_resent_on_the_next_connection_only() {
    let Some(spec) = common::spec() else { return };
    let h = setup(&spec).await;
    let mut ws = connect(&h, &spec).await;
    let acked = run_task(&h).await;
    let first = next_of_type(&mut ws, "PayloadMessage", SECS).await;
    assert_eq!(payload_task(&first)["arn"], acked.as_str());
    ack(&mut ws, &first).await;
    let unacked = run_task(&h).await;
    let second = next_of_type(&mut ws, "PayloadMessage", SECS).await;
    assert_eq!(payload_task(&second)["arn"], unacked.as_str());
    let id = acked.rsplit('/').next().unwrap().to_owned();
    common::eventually(&h.plane, "first ack", |st| !st.tasks[&id].needs_delivery()).await;

    // No resend on a timer on the same connection (a check that can only
    // pass wrongly: a resend later than this would go unseen).
    let nothing = payloads_within(&mut ws, Duration::from_millis(1200)).await;
    assert!(
        nothing.is_empty(),
        "payload resent on the same connection: {nothing:?}"
    );
    drop(ws);

    let mut ws = connect(&h, &spec).await;
    let again = common::exactly_frames(&mut ws, "PayloadMessage", 1).await;
    assert_eq!(payload_task(&again[0])["arn"], unacked.as_str());
    assert_eq!(payload_task(&again[0])["desiredStatus"], "RUNNING");
    assert!(again[0]["message"]["seqNum"].as_i64() > second["message"]["seqNum"].as_i64());
    assert_ne!(
        again[0]["message"]["messageId"],
        second["message"]["messageId"]
    );
    ack(&mut ws, &again[0]).await;
    drop(ws);

    let mut ws = connect(&h, &spec).await;
    let none = payloads_within(&mut ws, common::QUIET).await;
    assert!(none.is_empty(), "acked tasks were pushed again: {none:?}");

    // GET /metrics counts the one resend among the three payloads.
    let (_, page) = h.get_text("/metrics").await;
    let value = |name: &str| -> u64 {
        common::metric(&page, name).unwrap_or_else(|| panic!("{name} missing: {page}"))
    };
    assert_eq!(value("ecs_local_acs_payloads_sent_total"), 3);
    assert_eq!(value("ecs_local_acs_payloads_acked_total"), 2);
    assert_eq!(value("ecs_local_acs_payloads_resent_total"), 1);
}

#[tokio::test]
async fn a_newer_connection_replaces_the_older_one() {
    let Some(spec) = common::spec() else { return };
    let h = setup(&spec).await;
    let mut old = connect(&h, &spec).await;
    let mut new = connect(&h, &spec).await;
    let closed = loop {
        match tokio::time::timeout(SECS, old.next()).await.unwrap() {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    let code: u16 = closed.unwrap().code.into();
    assert_eq!(code, 4000, "the agent must back off, not reconnect at once");
    drop(old);
    // The older connection ending does not mark the agent disconnected.
    // Nothing tells when the plane has seen it end, so this gives it a
    // moment; the check can only pass wrongly, never fail wrongly.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let id = "701bbc45062742f4a14a0c8f8f3a5e0d";
    assert!(h.plane.store().read(|st| st.instances[id].agent_connected));
    next_of_type(&mut new, "HeartbeatMessage", SECS).await;
    drop(new);
    common::eventually(&h.plane, "agent disconnected", |st| {
        !st.instances[id].agent_connected
    })
    .await;
}

#[tokio::test]
async fn garbage_frames_are_ignored() {
    let Some(spec) = common::spec() else { return };
    let h = setup(&spec).await;
    let mut ws = connect(&h, &spec).await;
    use futures_util::SinkExt;
    ws.send(Message::Text("not json".into())).await.unwrap();
    ws.send(Message::Text(r#"{"type":"Bogus","message":{}}"#.into()))
        .await
        .unwrap();
    ws.send(Message::Text(
        r#"{"type":"AckRequest","message":{"messageId":42}}"#.into(),
    ))
    .await
    .unwrap();
    ws.send(Message::Binary(
        br#"{"type":"AckRequest","message":{"messageId":"unknown"}}"#
            .to_vec()
            .into(),
    ))
    .await
    .unwrap();
    next_of_type(&mut ws, "HeartbeatMessage", SECS).await;
    next_of_type(&mut ws, "HeartbeatMessage", SECS).await;
}

#[tokio::test]
async fn refused_handshakes_carry_the_modeled_error() {
    let Some(spec) = common::spec() else { return };
    let h = setup(&spec).await;
    let (status, body) = refusal(&h, "clusterArn=default&containerInstanceArn=arn%3Aaws%3Aecs%3Aus-east-1%3A1%3Acontainer-instance%2Fdefault%2Fnope").await;
    assert_eq!(status, 400);
    assert!(body.get("InvalidInstanceException").is_some(), "{body}");

    let mut ws = connect(&h, &spec).await;
    let (status, body) = h
        .call(
            "DeregisterContainerInstance",
            json!({"containerInstance": RECORDED_INSTANCE})
                .to_string()
                .as_bytes(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let closed = loop {
        match tokio::time::timeout(SECS, ws.next()).await.unwrap() {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(u16::from(closed.unwrap().code), 4000);
    let (status, body) = refusal(&h, &recorded_query(&spec, "acs-upgrade.request.txt")).await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({"InactiveInstanceException": "Container instance is inactive"})
    );
    // That body is what the agent recognises (docs/protocols.md §3.4).
    let decoded = AcsMessage::decode_handshake_error(&body.to_string()).unwrap();
    assert_eq!(decoded.kind, "InactiveInstanceException");

    // A restarted agent re-registering with its ARN re-activates it.
    let (target, body) = recorded_request(&spec, "re-register.request.http");
    let (status, _, _) = common::post(&h.addr(), &target, &body).await;
    assert_eq!(status, 200);
    let mut ws = connect(&h, &spec).await;
    next_of_type(&mut ws, "HeartbeatMessage", SECS).await;
}
