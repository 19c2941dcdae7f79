//! The TCS websocket: recorded agent frames (with their signed header
//! blocks) get the recorded acks, and heartbeats arrive.
#![allow(clippy::unwrap_used)]

mod common;

use common::{next_json, next_of_type, recorded_query, sample, Harness};
use futures_util::SinkExt;
use serde_json::Value;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

const SECS: Duration = common::PATIENCE;

async fn connect(h: &Harness, spec: &std::path::Path) -> common::Ws {
    let url = format!(
        "ws://{}/tcs/ws?{}",
        h.addr(),
        recorded_query(spec, "tcs-upgrade.request.txt")
    );
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

fn json_sample(spec: &std::path::Path, name: &str) -> Value {
    serde_json::from_slice(&sample(spec, name)).unwrap()
}

#[tokio::test]
async fn recorded_frames_get_the_matching_acks() {
    let Some(spec) = common::spec() else { return };
    let h = Harness::start().await;
    let mut ws = connect(&h, &spec).await;
    let cases = [
        (
            "tcs-publish-metrics.idle.frame.txt",
            "tcs-ack-publish-metric.json",
        ),
        (
            "tcs-publish-metrics.frame.txt",
            "tcs-ack-publish-metric.json",
        ),
        (
            "tcs-publish-metrics.session-token.frame.txt",
            "tcs-ack-publish-metric.json",
        ),
        (
            "tcs-publish-health.frame.txt",
            "tcs-ack-publish-health.json",
        ),
        (
            "tcs-instance-status.frame.txt",
            "tcs-ack-publish-instance-status.json",
        ),
    ];
    for (frame, expected) in cases {
        let text = String::from_utf8(sample(&spec, frame)).unwrap();
        ws.send(Message::Text(text.into())).await.unwrap();
        let reply = loop {
            let v = next_json(&mut ws, SECS).await;
            if v["type"] != "HeartbeatMessage" {
                break v;
            }
        };
        assert_eq!(reply, json_sample(&spec, expected), "reply to {frame}");
    }
    // Binary frames are read as text.
    ws.send(Message::Binary(
        sample(&spec, "tcs-publish-health.frame.txt").into(),
    ))
    .await
    .unwrap();
    let reply = next_of_type(&mut ws, "AckPublishHealth", SECS).await;
    assert_eq!(reply, json_sample(&spec, "tcs-ack-publish-health.json"));

    let hb = next_of_type(&mut ws, "HeartbeatMessage", SECS).await;
    assert_eq!(hb, json_sample(&spec, "tcs-heartbeat.json"));

    let instance = "arn:aws:ecs:us-east-1:123456789012:container-instance/default/701bbc45062742f4a14a0c8f8f3a5e0d";
    let telemetry = h.plane.telemetry(instance).unwrap();
    let metrics = telemetry.metrics.unwrap();
    assert_eq!(metrics.task_metrics.map(|t| t.len()), Some(1));
    assert!(telemetry.health.is_some());
    assert!(telemetry.instance_status.is_some());
}

#[tokio::test]
async fn undecodable_frames_are_ignored_and_heartbeats_continue() {
    let Some(spec) = common::spec() else { return };
    let h = Harness::start().await;
    let mut ws = connect(&h, &spec).await;
    ws.send(Message::Text("Authorization: x\r\n\r\n{broken".into()))
        .await
        .unwrap();
    ws.send(Message::Text("no header block at all".into()))
        .await
        .unwrap();
    next_of_type(&mut ws, "HeartbeatMessage", SECS).await;
    next_of_type(&mut ws, "HeartbeatMessage", SECS).await;
}
