//! A scriptable stand-in for the ECS backend, for tests that must send the
//! agent what ecs-local never would (payloads with bad tasks, values the
//! ECS API refuses, recorded Go-agent traffic). It answers the ECS API the
//! way the recorded fake server did, accepts the ACS websocket, records
//! everything the agent sends, and pushes whatever frames the test queues.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::Message;

/// The instance ARN the fake hands out (the recorded one).
pub const INSTANCE_ARN: &str =
    "arn:aws:ecs:us-east-1:123456789012:container-instance/default/701bbc45062742f4a14a0c8f8f3a5e0d";
pub const CLUSTER_ARN: &str = "arn:aws:ecs:us-east-1:123456789012:cluster/default";

/// A task ARN in the fake's account and cluster.
pub fn task_arn(id: &str) -> String {
    format!("arn:aws:ecs:us-east-1:123456789012:task/default/{id}")
}

/// An ACS task of one essential `sleep 600` container of the test image.
pub fn sleeper_task(family: &str, id: &str) -> Value {
    json!({
        "arn": task_arn(id), "family": family, "version": "1", "desiredStatus": "RUNNING",
        "networkMode": "bridge", "launchType": "EC2",
        "containers": [{"name": "main", "image": crate::TEST_IMAGE, "command": ["sleep", "600"],
            "memory": 32, "essential": true, "overrides": "{}"}]
    })
}

/// A `TaskManifestMessage` listing the tasks `running` (IDs) as RUNNING.
pub fn manifest(message_id: &str, timeline: i64, running: &[&str]) -> String {
    let tasks: Vec<_> = running
        .iter()
        .map(|id| {
            json!({"taskArn": task_arn(id), "taskClusterArn": CLUSTER_ARN, "desiredStatus": "RUNNING"})
        })
        .collect();
    json!({"type": "TaskManifestMessage", "message": {
        "messageId": message_id, "clusterArn": CLUSTER_ARN, "containerInstanceArn": INSTANCE_ARN,
        "generatedAt": 1_795_810_862_257i64, "timeline": timeline, "tasks": tasks}})
    .to_string()
}

/// A `TaskStopVerificationAck` answering manifest `message_id` and
/// confirming the stop of these task ARNs.
pub fn verification_ack(message_id: &str, task_arns: &[&str]) -> String {
    let stop: Vec<_> = task_arns
        .iter()
        .map(|arn| json!({"taskArn": arn, "taskClusterArn": CLUSTER_ARN, "desiredStatus": "STOPPED"}))
        .collect();
    json!({"type": "TaskStopVerificationAck", "message": {
        "messageId": message_id, "generatedAt": 1_795_810_868_419i64, "stopTasks": stop}})
    .to_string()
}

/// One ECS API request as received.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl ApiRequest {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }

    pub fn target(&self) -> String {
        self.header("x-amz-target").unwrap_or_default()
    }
}

/// Everything the agent sent.
#[derive(Default)]
pub struct Recorded {
    pub api: Vec<ApiRequest>,
    /// Request target and headers of each ACS upgrade.
    pub upgrades: Vec<(String, Vec<(String, String)>)>,
    /// ACS frames from the agent, in arrival order.
    pub acs_frames: Vec<String>,
}

pub struct FakeBackend {
    pub api_port: u16,
    pub recorded: Arc<Mutex<Recorded>>,
    outbound: mpsc::UnboundedSender<String>,
    /// How RegisterContainerInstance is answered.
    registration: Arc<Mutex<RegistrationScript>>,
}

/// Departures from a plain RegisterContainerInstance answer.
#[derive(Default)]
struct RegistrationScript {
    /// Attribute names left out of the response.
    unechoed: Vec<String>,
    /// Errors (HTTP status, error code) for the next calls, in order.
    failures: std::collections::VecDeque<(u16, String)>,
}

impl FakeBackend {
    /// Starts the API and ACS listeners on loopback. The ACS endpoint is
    /// handed out without a trailing slash, as in the recorded session.
    pub async fn start() -> std::io::Result<FakeBackend> {
        let api = TcpListener::bind("127.0.0.1:0").await?;
        let acs = TcpListener::bind("127.0.0.1:0").await?;
        let api_port = api.local_addr()?.port();
        let acs_port = acs.local_addr()?.port();
        let recorded = Arc::new(Mutex::new(Recorded::default()));
        let (outbound, queue) = mpsc::unbounded_channel();
        let registration = Arc::new(Mutex::new(RegistrationScript::default()));
        tokio::spawn(serve_api(
            api,
            acs_port,
            recorded.clone(),
            registration.clone(),
        ));
        tokio::spawn(serve_acs(acs, queue, recorded.clone()));
        Ok(FakeBackend {
            api_port,
            recorded,
            outbound,
            registration,
        })
    }

    /// From now on, RegisterContainerInstance responses leave out the
    /// attribute with this name (a backend that did not accept it).
    pub fn leave_out_of_registration(&self, attribute: &str) {
        self.registration
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .unechoed
            .push(attribute.to_string());
    }

    /// Answers the next RegisterContainerInstance call (after any already
    /// queued) with this HTTP status and ECS error code.
    pub fn fail_next_registration(&self, status: u16, code: &str) {
        self.registration
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .failures
            .push_back((status, code.to_string()));
    }

    /// The ECS API requests received so far whose target ends with
    /// `action`, oldest first.
    pub fn api_calls(&self, action: &str) -> Vec<Value> {
        self.lock()
            .api
            .iter()
            .filter(|r| r.target().ends_with(action))
            .map(|r| r.body.clone())
            .collect()
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.api_port)
    }

    /// Queues an ACS frame for the agent (sent once it is connected).
    pub fn send(&self, frame: impl Into<String>) {
        let _ = self.outbound.send(frame.into());
    }

    /// Sends a PayloadMessage carrying these tasks.
    pub fn send_payload(&self, message_id: &str, seq_num: i64, tasks: Vec<Value>) {
        self.send(
            json!({"type": "PayloadMessage", "message": {
                "messageId": message_id,
                "clusterArn": CLUSTER_ARN,
                "containerInstanceArn": INSTANCE_ARN,
                "generatedAt": 1_795_810_650_038i64,
                "seqNum": seq_num,
                "tasks": tasks
            }})
            .to_string(),
        );
    }

    pub fn state_changes(&self) -> Vec<Value> {
        self.lock()
            .api
            .iter()
            .filter(|r| r.target().ends_with("SubmitTaskStateChange"))
            .map(|r| r.body.clone())
            .collect()
    }

    pub fn acs_frames(&self) -> Vec<String> {
        self.lock().acs_frames.clone()
    }

    /// The newest reported status of a task, and the change that said so.
    pub fn last_change(&self, task_arn: &str) -> Option<Value> {
        self.state_changes()
            .into_iter()
            .rfind(|c| c["task"] == task_arn)
    }

    /// Waits until a state change for the task has `status`; returns it.
    pub async fn wait_task_status(
        &self,
        task_arn: &str,
        status: &str,
        timeout: Duration,
    ) -> Option<Value> {
        let wait = async {
            loop {
                let found = self
                    .state_changes()
                    .into_iter()
                    .find(|c| c["task"] == task_arn && c["status"] == status);
                if found.is_some() {
                    return found;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        };
        tokio::time::timeout(timeout, wait).await.ok().flatten()
    }

    /// Waits until the agent has sent an ACS frame containing `needle`.
    pub async fn wait_frame(&self, needle: &str, timeout: Duration) -> Option<String> {
        let wait = async {
            loop {
                if let Some(f) = self.acs_frames().into_iter().find(|f| f.contains(needle)) {
                    return f;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        tokio::time::timeout(timeout, wait).await.ok()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.recorded.lock().unwrap_or_else(|e| e.into_inner())
    }
}

async fn read_http_request(stream: &mut TcpStream) -> Option<(Vec<(String, String)>, Vec<u8>)> {
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
    let headers: Vec<(String, String)> = head
        .split("\r\n")
        .skip(1)
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
    Some((headers, body))
}

/// The ECS API: registration echoes attributes (plus the AZ, minus those
/// the test asked to leave out) and hands out the recorded ARN, unless the
/// test queued an error for it; DPE points at the ACS listener; state
/// changes get `{}`.
async fn serve_api(
    listener: TcpListener,
    acs_port: u16,
    recorded: Arc<Mutex<Recorded>>,
    registration: Arc<Mutex<RegistrationScript>>,
) {
    while let Ok((mut stream, _)) = listener.accept().await {
        let recorded = recorded.clone();
        let registration = registration.clone();
        tokio::spawn(async move {
            while let Some((headers, body)) = read_http_request(&mut stream).await {
                let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let request = ApiRequest {
                    headers,
                    body: body.clone(),
                };
                let target = request.target();
                recorded
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .api
                    .push(request);
                let failure = if target.ends_with("RegisterContainerInstance") {
                    registration
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .failures
                        .pop_front()
                } else {
                    None
                };
                if let Some((status, code)) = failure {
                    let text = json!({"__type": code, "message": format!("{code} (scripted)")})
                        .to_string();
                    let reply = format!(
                        "HTTP/1.1 {status} Scripted\r\nContent-Type: application/x-amz-json-1.1\r\nx-amzn-RequestId: fake\r\nContent-Length: {}\r\n\r\n{text}",
                        text.len()
                    );
                    if stream.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                    continue;
                }
                let response = if target.ends_with("RegisterContainerInstance") {
                    let mut attributes = body["attributes"].as_array().cloned().unwrap_or_default();
                    let left_out = registration
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .unechoed
                        .clone();
                    attributes.retain(|a| {
                        !left_out
                            .iter()
                            .any(|name| a["name"].as_str() == Some(name.as_str()))
                    });
                    attributes
                        .push(json!({"name": "ecs.availability-zone", "value": "us-east-1a"}));
                    json!({"containerInstance": {"containerInstanceArn": INSTANCE_ARN, "status": "ACTIVE", "attributes": attributes}})
                } else if target.ends_with("DiscoverPollEndpoint") {
                    json!({"endpoint": format!("http://127.0.0.1:{acs_port}"),
                           "telemetryEndpoint": format!("http://127.0.0.1:{acs_port}/tcs/")})
                } else {
                    json!({})
                };
                let text = response.to_string();
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\nx-amzn-RequestId: fake\r\nContent-Length: {}\r\n\r\n{text}",
                    text.len()
                );
                if stream.write_all(reply.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// The handshake callback's error type is tungstenite's, not ours.
#[allow(clippy::result_large_err)]
fn record_upgrade(
    recorded: &Arc<Mutex<Recorded>>,
    req: &Request,
    resp: Response,
) -> Result<Response, tokio_tungstenite::tungstenite::handshake::server::ErrorResponse> {
    if req.uri().path().starts_with("/tcs") {
        let mut refusal = tokio_tungstenite::tungstenite::handshake::server::ErrorResponse::new(
            Some("no telemetry here".to_string()),
        );
        *refusal.status_mut() = tokio_tungstenite::tungstenite::http::StatusCode::NOT_FOUND;
        return Err(refusal);
    }
    let headers = req
        .headers()
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or_default().to_string()))
        .collect();
    recorded
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .upgrades
        .push((req.uri().to_string(), headers));
    Ok(resp)
}

/// The ACS websocket: one connection at a time; a heartbeat on connect,
/// then queued frames; everything received is recorded. TCS upgrades on
/// the same port are refused (the tests here do not need telemetry).
async fn serve_acs(
    listener: TcpListener,
    mut queue: mpsc::UnboundedReceiver<String>,
    recorded: Arc<Mutex<Recorded>>,
) {
    let mut pending: Vec<String> = Vec::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let capture = recorded.clone();
        #[allow(clippy::result_large_err)]
        let accept =
            tokio_tungstenite::accept_hdr_async(stream, move |req: &Request, resp: Response| {
                record_upgrade(&capture, req, resp)
            });
        let Ok(ws) = accept.await else { continue };
        let (mut sink, mut source) = ws.split();
        let heartbeat = json!({"type": "HeartbeatMessage", "message": {"healthy": true, "messageId": "hb-fake"}});
        if sink
            .send(Message::Text(heartbeat.to_string().into()))
            .await
            .is_err()
        {
            continue;
        }
        for frame in pending.drain(..) {
            let _ = sink.send(Message::Text(frame.into())).await;
        }
        let mut ticker = tokio::time::interval(Duration::from_secs(10));
        loop {
            tokio::select! {
                frame = source.next() => match frame {
                    Some(Ok(Message::Text(text))) => recorded
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .acs_frames
                        .push(text.to_string()),
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => break,
                },
                next = queue.recv() => match next {
                    Some(frame) => {
                        if let Err(_e) = sink.send(Message::Text(frame.clone().into())).await {
                            pending.push(frame);
                            break;
                        }
                    }
                    None => return,
                },
                _ = ticker.tick() => {
                    let _ = sink.send(Message::Text(heartbeat.to_string().into())).await;
                }
            }
        }
    }
}
