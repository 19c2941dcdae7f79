//! Replays the recorded Go-agent session (`spec/samples/`) against our
//! agent: a fake backend sends exactly what the recorded fake server sent
//! (heartbeat, payload, stop payload) and checks that what our agent sends
//! back has the shape the Go agent's traffic had — ECS API requests, the
//! websocket upgrade, state changes — and that the ACS acks are identical
//! byte for byte.
#![allow(clippy::unwrap_used)]
// The handshake callback's error type is tungstenite's, not ours.
#![allow(clippy::result_large_err)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e::{require_docker, TEST_IMAGE};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

const INSTANCE_ARN: &str =
    "arn:aws:ecs:us-east-1:123456789012:container-instance/default/701bbc45062742f4a14a0c8f8f3a5e0d";

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

/// Same members (recursively) with the same JSON types; values may differ.
fn assert_same_shape(ours: &Value, golden: &Value, path: &str) {
    match (ours, golden) {
        (Value::Object(a), Value::Object(b)) => {
            let ka: BTreeSet<&String> = a.keys().collect();
            let kb: BTreeSet<&String> = b.keys().collect();
            assert_eq!(
                ka, kb,
                "members differ at {path}\nours:   {ours}\ngolden: {golden}"
            );
            for k in ka {
                assert_same_shape(&a[k], &b[k], &format!("{path}.{k}"));
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            if let (Some(x), Some(y)) = (a.first(), b.first()) {
                assert_same_shape(x, y, &format!("{path}[0]"));
            }
        }
        (a, b) => assert_eq!(
            std::mem::discriminant(a),
            std::mem::discriminant(b),
            "type differs at {path}: {a} vs {b}"
        ),
    }
}

#[derive(Debug, Clone)]
struct ApiRequest {
    headers: Vec<(String, String)>,
    body: Value,
}

impl ApiRequest {
    fn target(&self) -> String {
        self.header("x-amz-target").unwrap_or_default()
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }
}

#[derive(Default)]
struct Recorded {
    api: Vec<ApiRequest>,
    upgrade: Option<(String, Vec<(String, String)>)>,
    acs_frames: Vec<String>,
}

async fn read_http_request(
    stream: &mut TcpStream,
) -> Option<(String, Vec<(String, String)>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let request_line = lines.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| {
            l.split_once(": ")
                .map(|(n, v)| (n.to_string(), v.to_string()))
        })
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some((request_line, headers, body))
}

/// The ECS API side of the fake backend, answering as the recorded fake did.
async fn serve_api(
    listener: TcpListener,
    acs_port: u16,
    tcs_port: u16,
    recorded: Arc<Mutex<Recorded>>,
) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            return;
        };
        let recorded = recorded.clone();
        tokio::spawn(async move {
            while let Some((_line, headers, body)) = read_http_request(&mut stream).await {
                let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let request = ApiRequest {
                    headers,
                    body: body.clone(),
                };
                let target = request.target();
                recorded.lock().unwrap().api.push(request);
                let response = if target.ends_with("RegisterContainerInstance") {
                    let mut attributes = body["attributes"].as_array().cloned().unwrap_or_default();
                    attributes
                        .push(json!({"name": "ecs.availability-zone", "value": "us-east-1a"}));
                    json!({"containerInstance": {"containerInstanceArn": INSTANCE_ARN, "status": "ACTIVE", "attributes": attributes}})
                } else if target.ends_with("DiscoverPollEndpoint") {
                    json!({"endpoint": format!("http://127.0.0.1:{acs_port}"), "telemetryEndpoint": format!("http://127.0.0.1:{tcs_port}/")})
                } else {
                    json!({})
                };
                let text = response.to_string();
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\nx-amzn-RequestId: r\r\nContent-Length: {}\r\n\r\n{text}",
                    text.len()
                );
                if stream.write_all(reply.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// The ACS side: heartbeat, then the recorded payload once the heartbeat is
/// acked, then the stop payload once the task is reported RUNNING.
async fn serve_acs(listener: TcpListener, spec: PathBuf, recorded: Arc<Mutex<Recorded>>) {
    let Ok((stream, _)) = listener.accept().await else {
        return;
    };
    let capture = recorded.clone();
    let callback =
        move |req: &tokio_tungstenite::tungstenite::handshake::server::Request,
              resp: tokio_tungstenite::tungstenite::handshake::server::Response| {
            let headers = req
                .headers()
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or_default().to_string()))
                .collect();
            capture.lock().unwrap().upgrade = Some((req.uri().to_string(), headers));
            Ok(resp)
        };
    let mut ws = tokio_tungstenite::accept_hdr_async(stream, callback)
        .await
        .unwrap();
    let heartbeat = String::from_utf8(sample(&spec, "acs-heartbeat.json")).unwrap();
    let payload: Value = {
        let mut p = sample_json(&spec, "acs-payload.json");
        p["message"]["tasks"][0]["containers"][0]["image"] = json!(TEST_IMAGE);
        p
    };
    let stop: Value = {
        let mut p = sample_json(&spec, "acs-payload-stop.json");
        p["message"]["tasks"][0]["containers"][0]["image"] = json!(TEST_IMAGE);
        p
    };
    ws.send(Message::Text(heartbeat.into())).await.unwrap();
    let mut sent_payload = false;
    let mut sent_stop = false;
    loop {
        let next = tokio::time::timeout(Duration::from_millis(500), ws.next()).await;
        if let Ok(frame) = next {
            let Some(Ok(Message::Text(text))) = frame else {
                return;
            };
            recorded.lock().unwrap().acs_frames.push(text.to_string());
            if !sent_payload && text.contains("HeartbeatAckRequest") {
                ws.send(Message::Text(payload.to_string().into()))
                    .await
                    .unwrap();
                sent_payload = true;
            }
        }
        let running_reported = recorded.lock().unwrap().api.iter().any(|r| {
            r.target().ends_with("SubmitTaskStateChange") && r.body["status"] == "RUNNING"
        });
        if sent_payload && running_reported && !sent_stop {
            ws.send(Message::Text(stop.to_string().into()))
                .await
                .unwrap();
            sent_stop = true;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_traffic_matches_the_recorded_go_agent() {
    let Some(spec) = ecs_model::spec::require_or_skip("golden replay against the agent") else {
        return;
    };
    require_docker();
    let api = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let acs = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api_port = api.local_addr().unwrap().port();
    let acs_port = acs.local_addr().unwrap().port();
    let recorded = Arc::new(Mutex::new(Recorded::default()));
    tokio::spawn(serve_api(
        api,
        acs_port,
        e2e::free_port().unwrap(),
        recorded.clone(),
    ));
    tokio::spawn(serve_acs(acs, spec.clone(), recorded.clone()));

    let dir = tempfile::tempdir().unwrap();
    let agent_bin = e2e::binaries().agent.clone();
    let mut child = tokio::process::Command::new(agent_bin)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("ECS_BACKEND_HOST", format!("http://127.0.0.1:{api_port}"))
        .env("ECS_CLUSTER", "default")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", e2e::ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", e2e::SECRET_KEY)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("ECS_DATADIR", dir.path())
        .env("ECS_IMAGE_PULL_BEHAVIOR", "prefer-cached")
        .env("ECS_CONTAINER_STOP_TIMEOUT", "2s")
        .env("ECS_AGENT_CONFIG_FILE_PATH", dir.path().join("none.json"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    let stopped = async {
        loop {
            let done = recorded.lock().unwrap().api.iter().any(|r| {
                r.target().ends_with("SubmitTaskStateChange") && r.body["status"] == "STOPPED"
            });
            if done {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(90), stopped)
        .await
        .expect("the agent ran and stopped the recorded task");
    let _ = child.kill().await;
    let task_arn = sample_json(&spec, "acs-payload.json")["message"]["tasks"][0]["arn"].clone();
    e2e::remove_task_containers(&[task_arn.as_str().unwrap().to_string()]);

    let recorded = recorded.lock().unwrap();
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
    let (uri, headers) = recorded.upgrade.clone().unwrap();
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
