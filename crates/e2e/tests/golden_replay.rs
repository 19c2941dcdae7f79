//! Replays the recorded Go-agent session (`spec/samples/`) against our
//! agent: a fake backend sends exactly what the recorded fake server sent
//! (heartbeat, payload, stop payload) and checks that what our agent sends
//! back has the shape the Go agent's traffic had — ECS API requests, the
//! websocket upgrade, state changes — and that the ACS acks are identical
//! byte for byte.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use e2e::fake_backend::{ApiRequest, FakeBackend};
use e2e::{require_docker, Agent, AgentOptions, TEST_IMAGE};
use ecs_model::spec::assert_same_shape;
use serde_json::{json, Value};

fn sample(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join("samples").join(name)).unwrap()
}

fn sample_json(dir: &Path, name: &str) -> Value {
    serde_json::from_slice(&sample(dir, name)).unwrap()
}

/// The body of a recorded `*.request.http`.
fn recorded_body(dir: &Path, name: &str) -> Value {
    let raw = sample(dir, name);
    let at = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    serde_json::from_slice(&raw[at + 4..]).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_traffic_matches_the_recorded_go_agent() {
    let Some(spec) = ecs_model::spec::require_or_skip("golden replay against the agent") else {
        return;
    };
    require_docker();
    let backend = FakeBackend::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // As the recording agent was configured (samples/README.md).
    let options = AgentOptions::new(dir.path())
        .env("ECS_LOGLEVEL", "info")
        .env("ECS_ENABLE_TASK_IAM_ROLE", "true");
    let agent = Agent::start_at(&backend.url(), &options).unwrap();

    // What the recorded fake server sent, in the recorded order: a
    // heartbeat, the payload once it is acked, the stop once RUNNING is
    // reported.
    let with_test_image = |name: &str| {
        let mut p = sample_json(&spec, name);
        p["message"]["tasks"][0]["containers"][0]["image"] = json!(TEST_IMAGE);
        p.to_string()
    };
    backend.send(String::from_utf8(sample(&spec, "acs-heartbeat.json")).unwrap());
    let heartbeat_ack = String::from_utf8(sample(&spec, "acs-heartbeat-ack.json")).unwrap();
    backend
        .wait_frame(&heartbeat_ack, Duration::from_secs(60))
        .await
        .expect("heartbeat acked");
    backend.send(with_test_image("acs-payload.json"));
    let task_arn = sample_json(&spec, "acs-payload.json")["message"]["tasks"][0]["arn"].clone();
    let arn = task_arn.as_str().unwrap();
    // The payload's credentials are acked with the payload's message ID,
    // byte for byte as the Go agent did.
    let sample_text = |name: &str| {
        String::from_utf8(sample(&spec, name))
            .unwrap()
            .trim()
            .to_string()
    };
    let payload_credentials_ack = sample_text("acs-payload-credentials-ack.json");
    backend
        .wait_frame(&payload_credentials_ack, Duration::from_secs(60))
        .await
        .expect("payload credentials acked as recorded");
    backend
        .wait_task_status(arn, "RUNNING", Duration::from_secs(60))
        .await
        .expect("RUNNING reported");
    // The recorded refresh, and its recorded ack.
    backend.send(sample_text("acs-credentials.json"));
    backend
        .wait_frame(
            &sample_text("acs-credentials-ack.json"),
            Duration::from_secs(60),
        )
        .await
        .expect("credentials refresh acked as recorded");
    backend.send(with_test_image("acs-payload-stop.json"));
    backend
        .wait_task_status(arn, "STOPPED", Duration::from_secs(60))
        .await
        .expect("STOPPED reported");
    agent.kill();
    e2e::remove_task_containers(&[arn.to_string()]);

    let recorded = backend.recorded.lock().unwrap();
    let find = |op: &str| -> Vec<ApiRequest> {
        recorded
            .api
            .iter()
            .filter(|r| r.target().ends_with(op))
            .cloned()
            .collect()
    };

    // RegisterContainerInstance and DiscoverPollEndpoint: same members and
    // the headers the backend relies on.
    let register = &find("RegisterContainerInstance")[0];
    let golden = recorded_body(&spec, "register-container-instance.request.http");
    let mut ours_without_attrs = register.body.clone();
    let mut golden_without_attrs = golden.clone();
    ours_without_attrs["attributes"] = json!([]);
    golden_without_attrs["attributes"] = json!([]);
    assert_same_shape(
        &ours_without_attrs,
        &golden_without_attrs,
        "RegisterContainerInstance",
    );
    let names = |v: &Value| -> Vec<String> {
        v["totalResources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].to_string())
            .collect()
    };
    assert_eq!(names(&register.body), names(&golden));
    for (name, expected) in [
        ("content-type", Some("application/x-amz-json-1.1")),
        (
            "x-amz-target",
            Some("AmazonEC2ContainerServiceV20141113.RegisterContainerInstance"),
        ),
        ("x-amz-date", None),
        ("host", None),
        ("amz-sdk-invocation-id", None),
        ("amz-sdk-request", None),
    ] {
        let value = register
            .header(name)
            .unwrap_or_else(|| panic!("no {name} header"));
        if let Some(expected) = expected {
            assert_eq!(value, expected);
        }
    }
    assert!(register
        .header("user-agent")
        .unwrap()
        .starts_with("Amazon ECS Agent - v"));
    let auth = register.header("authorization").unwrap();
    assert!(
        auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/"),
        "{auth}"
    );
    assert!(auth.contains("/us-east-1/ecs/aws4_request"), "{auth}");
    let dpe = &find("DiscoverPollEndpoint")[0];
    assert_same_shape(
        &dpe.body,
        &recorded_body(&spec, "discover-poll-endpoint.request.http"),
        "DiscoverPollEndpoint",
    );
    assert_eq!(dpe.body["zoneId"], "");

    // The upgrade: same path and query parameters, signed the same way.
    let (uri, headers) = recorded.upgrades[0].clone();
    let golden_upgrade = String::from_utf8(sample(&spec, "acs-upgrade.request.txt")).unwrap();
    let golden_target = golden_upgrade.split(' ').nth(1).unwrap();
    let params = |target: &str| -> BTreeSet<String> {
        target
            .split_once('?')
            .unwrap()
            .1
            .split('&')
            .map(|p| p.split('=').next().unwrap().to_string())
            .collect()
    };
    assert!(uri.starts_with("/ws?"), "{uri}");
    assert_eq!(params(&uri), params(golden_target));
    for fixed in [
        "clusterArn=default",
        "protocolVersion=2",
        "sendCredentials=true",
        "seqNum=1",
        "dockerVersion=DockerVersion%3A+",
    ] {
        assert!(uri.contains(fixed), "{fixed} missing from {uri}");
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    assert!(header("authorization")
        .unwrap()
        .contains("SignedHeaders=host;x-amz-date, Signature="));
    assert!(header("x-amz-date").is_some());
    assert!(header("origin").is_none() && header("sec-websocket-protocol").is_none());

    // Acks: byte for byte what the Go agent sent for the same messages.
    for golden in [
        "acs-heartbeat-ack.json",
        "acs-ack.json",
        "acs-ack-stop.json",
    ] {
        let expected = String::from_utf8(sample(&spec, golden)).unwrap();
        assert!(
            recorded.acs_frames.contains(&expected),
            "{golden} not sent; frames: {:?}",
            recorded.acs_frames
        );
    }

    // State changes: the recorded RUNNING and STOPPED shapes.
    let changes = find("SubmitTaskStateChange");
    let running = changes
        .iter()
        .find(|c| c.body["status"] == "RUNNING")
        .unwrap();
    assert_same_shape(
        &running.body,
        &sample_json(&spec, "submit-task-state-change.running.json"),
        "RUNNING",
    );
    let stopped = changes
        .iter()
        .find(|c| c.body["status"] == "STOPPED")
        .unwrap();
    assert_same_shape(
        &stopped.body,
        &sample_json(&spec, "submit-task-state-change.stopped.json"),
        "STOPPED",
    );
    assert_eq!(stopped.body["containers"][0]["exitCode"], 137);
    assert_eq!(stopped.body["task"], task_arn);
}
