//! Shared test harness: an in-process plane on 127.0.0.1:0, an SDK client
//! for it, raw HTTP posts, and websocket helpers.
#![allow(clippy::unwrap_used, dead_code)]

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use ecs_local::{Config, Plane};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub const TARGET: &str = "AmazonEC2ContainerServiceV20141113.";

pub struct Harness {
    pub plane: Plane,
    pub dir: tempfile::TempDir,
}

impl Harness {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let plane = start_in(dir.path().join("data")).await;
        Self { plane, dir }
    }

    /// Starts with the test configuration changed by `configure`.
    pub async fn start_with(configure: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let plane = start_in_with(dir.path().join("data"), configure).await;
        Self { plane, dir }
    }

    /// A plain HTTP GET of `path` (with its query); status and JSON body.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let (status, body) = self.get_text(path).await;
        (status, serde_json::from_str(&body).unwrap_or(Value::Null))
    }

    /// A plain HTTP GET of `path`; status and body text.
    pub async fn get_text(&self, path: &str) -> (u16, String) {
        let head = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr()
        );
        let (status, _, body) = exchange(&self.addr(), head.as_bytes()).await;
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn addr(&self) -> String {
        self.plane.local_addr().to_string()
    }

    /// An SDK client with static fake credentials, built explicitly so that
    /// nothing looks for instance metadata.
    pub fn client(&self) -> aws_sdk_ecs::Client {
        use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
        // The workspace builds the SDK without its default client.
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(Provider::Rustls(CryptoMode::Ring))
            .build_https();
        client_at(&self.plane.endpoint_url(), http)
    }

    /// POSTs an ECS API call; returns the status and the body as JSON.
    pub async fn call(&self, action: &str, body: &[u8]) -> (u16, Value) {
        let (status, _, body) = post(&self.addr(), &format!("{TARGET}{action}"), body).await;
        let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        (status, value)
    }

    /// Connects to the ACS websocket with a query string.
    pub async fn acs(&self, query: &str) -> Ws {
        let url = format!("ws://{}/acs/ws?{query}", self.addr());
        tokio_tungstenite::connect_async(url).await.unwrap().0
    }
}

/// An SDK client of `endpoint` through `http`, signing with the harness's
/// static fake key pair.
pub fn client_at(
    endpoint: &str,
    http: aws_sdk_ecs::config::SharedHttpClient,
) -> aws_sdk_ecs::Client {
    let config = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .http_client(http)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "AKIDEXAMPLE",
            "secret",
            None,
            None,
            "static",
        )))
        .endpoint_url(endpoint)
        .build();
    aws_sdk_ecs::Client::new(&config)
}

pub async fn start_in(data_dir: PathBuf) -> Plane {
    start_in_with(data_dir, |_| {}).await
}

pub async fn start_in_with(data_dir: PathBuf, configure: impl FnOnce(&mut Config)) -> Plane {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = Config::new(data_dir);
    config.heartbeat_interval = Duration::from_millis(500);
    config.first_heartbeat = Duration::from_millis(100);
    configure(&mut config);
    Plane::start(listener, config).await.unwrap()
}

/// A minimal HTTP/1.1 POST to `/`; returns status, head and body.
pub async fn post(addr: &str, target: &str, body: &[u8]) -> (u16, String, Vec<u8>) {
    let mut request = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-amz-json-1.1\r\nX-Amz-Target: {target}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    exchange(addr, &request).await
}

/// Sends `request` as it is on a new connection and reads one answer:
/// `Content-Length` bytes after its head when it has one (so a recorded
/// request that keeps the connection alive gets its answer too), else to
/// the end of the connection. Returns status, head and body.
pub async fn exchange(addr: &str, request: &[u8]) -> (u16, String, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut response = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&response[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            if length.is_some_and(|n| response.len() >= end + 4 + n) {
                break;
            }
        }
        let n = stream.read(&mut chunk).await.unwrap();
        if n == 0 {
            break;
        }
        response.extend_from_slice(&chunk[..n]);
    }
    split_response(&response)
}

/// The value of an unlabelled series on a `/metrics` page.
pub fn metric(page: &str, series: &str) -> Option<u64> {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

pub fn split_response(response: &[u8]) -> (u16, String, Vec<u8>) {
    let end = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&response[..end]).into_owned();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let mut body = response[end + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (status, head, body)
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..line_end]).unwrap().trim(), 16)
                .unwrap();
        data = &data[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// The spec directory, or `None` (test skipped) unless the spec is required.
pub fn spec() -> Option<PathBuf> {
    ecs_model::spec::require_or_skip("ecs-local golden samples")
}

pub fn sample(spec: &std::path::Path, name: &str) -> Vec<u8> {
    std::fs::read(spec.join("samples").join(name)).unwrap()
}

/// A recorded `*.request.http`: its X-Amz-Target and its body.
pub fn recorded_request(spec: &std::path::Path, name: &str) -> (String, Vec<u8>) {
    let bytes = sample(spec, name);
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = std::str::from_utf8(&bytes[..end]).unwrap();
    let target = head
        .split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.eq_ignore_ascii_case("x-amz-target"))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap();
    (target, bytes[end + 4..].to_vec())
}

/// The query string of a recorded upgrade request (`GET /ws?<query> HTTP/1.1`).
pub fn recorded_query(spec: &std::path::Path, name: &str) -> String {
    let text = String::from_utf8(sample(spec, name)).unwrap();
    let first = text.lines().next().unwrap();
    let target = first.split(' ').nth(1).unwrap();
    target.split_once('?').unwrap().1.to_owned()
}

/// The next text frame as JSON, within a deadline; panics on timeout.
pub async fn next_json(ws: &mut Ws, within: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("no frame in time")
            .expect("connection ended")
            .unwrap();
        match msg {
            Message::Text(text) => return serde_json::from_str(text.as_str()).unwrap(),
            Message::Binary(bytes) => return serde_json::from_slice(&bytes).unwrap(),
            _ => continue,
        }
    }
}

/// The next frame of a given `type`, skipping others (heartbeats).
pub async fn next_of_type(ws: &mut Ws, frame_type: &str, within: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let frame = next_json(ws, left).await;
        if frame["type"] == frame_type {
            return frame;
        }
    }
}

/// Collects every `PayloadMessage` that arrives within `within`.
pub async fn payloads_within(ws: &mut Ws, within: Duration) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + within;
    let mut out = Vec::new();
    while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(deadline, ws.next()).await {
        if let Message::Text(text) = msg {
            let v: Value = serde_json::from_str(text.as_str()).unwrap();
            if v["type"] == "PayloadMessage" {
                out.push(v);
            }
        }
    }
    out
}

pub async fn send_json(ws: &mut Ws, value: &Value) {
    ws.send(Message::Text(value.to_string().into()))
        .await
        .unwrap();
}

/// Sends the `AckRequest` the agent would send for a payload.
pub async fn ack(ws: &mut Ws, payload: &Value) {
    let m = &payload["message"];
    send_json(
        ws,
        &serde_json::json!({"type": "AckRequest", "message": {
            "cluster": m["clusterArn"], "containerInstance": m["containerInstanceArn"],
            "messageId": m["messageId"]}}),
    )
    .await;
}

/// How long a test waits for something that must happen: generous, so a
/// loaded machine makes a test slow, never wrong.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// How long a test watches for something that must NOT happen. Such a
/// check can only pass wrongly (when the thing would come later), never
/// fail wrongly.
pub const QUIET: Duration = Duration::from_millis(600);

/// Waits until `check` holds on the store (the plane applies acks
/// asynchronously).
pub async fn eventually(
    plane: &Plane,
    what: &str,
    check: impl Fn(&ecs_local::store::State) -> bool,
) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while tokio::time::Instant::now() < deadline {
        if plane.store().read(&check) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

/// A minimal registration body for an instance with some capacity.
pub fn registration(cluster: &str, cpu: i64, memory: i64) -> Value {
    serde_json::json!({
        "cluster": cluster,
        "attributes": [{"name": "ecs.os-type", "value": "linux"}],
        "totalResources": [
            {"name": "CPU", "type": "INTEGER", "integerValue": cpu},
            {"name": "MEMORY", "type": "INTEGER", "integerValue": memory},
            {"name": "PORTS", "type": "STRINGSET", "stringSetValue": ["22"]},
            {"name": "PORTS_UDP", "type": "STRINGSET", "stringSetValue": []}
        ]
    })
}

/// Registers an instance with extra attributes (names only); returns its
/// ARN.
pub async fn register_instance(h: &Harness, cluster: &str, attributes: &[&str]) -> String {
    let mut body = registration(cluster, 4096, 8192);
    let list = body["attributes"].as_array_mut().unwrap();
    for name in attributes {
        list.push(serde_json::json!({ "name": name }));
    }
    let (status, body) = h
        .call("RegisterContainerInstance", body.to_string().as_bytes())
        .await;
    assert_eq!(status, 200, "{body}");
    body["containerInstance"]["containerInstanceArn"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Connects an agent's ACS socket for a registered instance, as a Go agent
/// does (`sendCredentials=true` only on its first connection), and waits
/// until the plane sees it connected.
pub async fn connect_agent(h: &Harness, cluster: &str, arn: &str, send_credentials: bool) -> Ws {
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("agentHash", "abc")
        .append_pair("agentVersion", "1.105.1")
        .append_pair("clusterArn", cluster)
        .append_pair("containerInstanceArn", arn)
        .append_pair("dockerVersion", "DockerVersion: 25.0.8")
        .append_pair("protocolVersion", "2")
        .append_pair("sendCredentials", &send_credentials.to_string())
        .append_pair("seqNum", "1")
        .finish();
    let ws = h.acs(&query).await;
    let id = arn.rsplit('/').next().unwrap().to_owned();
    eventually(&h.plane, "agent connected", |st| {
        st.instances[&id].agent_connected
    })
    .await;
    ws
}

/// The next `count` frames of a `type` (skipping others), waiting up to
/// [`PATIENCE`] for them; then checks that no further one follows within
/// [`QUIET`].
pub async fn exactly_frames(ws: &mut Ws, frame_type: &str, count: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut out = Vec::new();
    while out.len() < count {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        out.push(next_of_type(ws, frame_type, left).await);
    }
    let more = frames_within(ws, frame_type, QUIET).await;
    assert!(
        more.is_empty(),
        "more than {count} {frame_type}: {out:#?} then {more:#?}"
    );
    out
}

/// Every frame of a `type` that arrives within `within`.
pub async fn frames_within(ws: &mut Ws, frame_type: &str, within: Duration) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + within;
    let mut out = Vec::new();
    while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(deadline, ws.next()).await {
        if let Message::Text(text) = msg {
            let v: Value = serde_json::from_str(text.as_str()).unwrap();
            if v["type"] == frame_type {
                out.push(v);
            }
        }
    }
    out
}

/// Registers an instance and connects an agent for it; returns its ARN and
/// the agent's ACS socket.
pub async fn connected_instance(h: &Harness, cluster: &str, cpu: i64, memory: i64) -> (String, Ws) {
    let (status, body) = h
        .call(
            "RegisterContainerInstance",
            registration(cluster, cpu, memory).to_string().as_bytes(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let arn = body["containerInstance"]["containerInstanceArn"]
        .as_str()
        .unwrap()
        .to_owned();
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("agentHash", "abc")
        .append_pair("agentVersion", "1.105.1")
        .append_pair("clusterArn", cluster)
        .append_pair("containerInstanceArn", &arn)
        .append_pair("dockerVersion", "DockerVersion: 25.0.8")
        .append_pair("protocolVersion", "2")
        .append_pair("sendCredentials", "true")
        .append_pair("seqNum", "1")
        .finish();
    let ws = h.acs(&query).await;
    let id = arn.rsplit('/').next().unwrap().to_owned();
    eventually(&h.plane, "agent connected", |st| {
        st.instances[&id].agent_connected
    })
    .await;
    (arn, ws)
}
