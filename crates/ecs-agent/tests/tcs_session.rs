//! The TCS session against a small websocket server in the test: every
//! frame the agent sends is a signed header block (verified against the
//! signer) followed by a `TcsMessage` with the members of the recorded Go
//! agent frames; timers and close codes drive reconnects as
//! docs/protocols.md §3.7 and §5.4 say.
//!
//! The frame tests connect over loopback TCP with the agent's own signed
//! upgrade. The timer tests run on tokio's paused clock, over in-memory
//! streams (real sockets would let the paused clock jump ahead while bytes
//! are in flight), so the times they assert are exact and no load on the
//! machine can move them.
#![allow(clippy::unwrap_used)]
// The handshake callback's error type is tungstenite's, not ours.
#![allow(clippy::result_large_err)]

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use ecs_agent::engine::status::{ContainerStatus, HealthStatus, TaskStatus};
use ecs_agent::engine::task::{IncomingTask, Task};
use ecs_agent::signer;
use ecs_agent::tcs::{self, TcsContext, TcsError, TcsHost, TcsSettings, TcsSocket};
use ecs_agent::websocket::{self, WsError};
use ecs_model::envelope::split_signed_frame;
use ecs_model::spec::assert_same_shape;
use ecs_model::tcs::TcsMessage;
use futures_util::future::BoxFuture;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

const ACCESS_KEY: &str = "AKIAIOSFODNN7EXAMPLE";
const SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const REGION: &str = "us-east-1";
const INSTANCE: &str =
    "arn:aws:ecs:us-east-1:123456789012:container-instance/default/701bbc45062742f4a14a0c8f8f3a5e0d";
/// How long to wait for the agent to do something it must do (virtual time
/// on the paused clock).
const WAIT: Duration = Duration::from_secs(30);
/// The port in the TCS URL when no socket is used: only signed, never
/// dialled.
const MEMORY_PORT: u16 = 5102;

/// How the agent reaches the test's server.
enum Transport {
    /// Loopback TCP, through the agent's own signed upgrade.
    Tcp,
    /// In-memory streams, handed to the server through this channel.
    Memory(mpsc::UnboundedSender<DuplexStream>),
}

struct FakeHost {
    endpoint: String,
    tasks: Mutex<Vec<Task>>,
    /// Discovery fails this many more times.
    unreachable_for: Mutex<usize>,
    transport: Transport,
}

impl TcsHost for FakeHost {
    fn telemetry_endpoint(&self) -> BoxFuture<'_, Result<String, TcsError>> {
        Box::pin(async move {
            let mut failures = self.unreachable_for.lock().unwrap();
            if *failures > 0 {
                *failures -= 1;
                return Err(TcsError::NoEndpoint);
            }
            Ok(self.endpoint.clone())
        })
    }

    fn tasks(&self) -> BoxFuture<'_, Option<Vec<Task>>> {
        Box::pin(async move { Some(self.tasks.lock().unwrap().clone()) })
    }

    fn runtime_responds(&self) -> BoxFuture<'_, bool> {
        Box::pin(async { true })
    }

    fn open<'a>(
        &'a self,
        url: &'a url::Url,
        credentials: &'a Credentials,
        region: &'a str,
        accept_insecure_cert: bool,
    ) -> BoxFuture<'a, Result<TcsSocket, WsError>> {
        Box::pin(async move {
            let Transport::Memory(server) = &self.transport else {
                let ws = websocket::connect(
                    url,
                    credentials,
                    region,
                    SystemTime::now(),
                    accept_insecure_cert,
                )
                .await?;
                return Ok(TcsSocket::from(ws));
            };
            let (ours, theirs) = tokio::io::duplex(1 << 16);
            server
                .send(theirs)
                .map_err(|_| WsError::Protocol("the test server is gone".into()))?;
            let mut ws_url = url.clone();
            ws_url.set_scheme("ws").unwrap();
            let (ws, _) = tokio_tungstenite::client_async(ws_url.as_str(), ours)
                .await
                .map_err(|e| WsError::Protocol(e.to_string()))?;
            Ok(TcsSocket::from(ws))
        })
    }
}

/// What the server saw.
#[derive(Debug)]
enum Event {
    /// A new connection: its request target, and how to talk back.
    Connected {
        target: String,
        at: Instant,
        reply: mpsc::UnboundedSender<Message>,
    },
    /// A text frame from the agent.
    Frame(String),
    /// The agent's close frame.
    Closed(Option<CloseFrame>),
}

/// A TCS server on loopback TCP.
async fn serve_tcp(listener: TcpListener, events: mpsc::UnboundedSender<Event>) {
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(serve_connection(stream, events.clone()));
    }
}

/// A TCS server for in-memory connections.
async fn serve_memory(
    mut streams: mpsc::UnboundedReceiver<DuplexStream>,
    events: mpsc::UnboundedSender<Event>,
) {
    while let Some(stream) = streams.recv().await {
        tokio::spawn(serve_connection(stream, events.clone()));
    }
}

/// One connection of the server: reports it and every frame, and sends
/// whatever the test pushes into its `reply` channel.
async fn serve_connection<S>(stream: S, events: mpsc::UnboundedSender<Event>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let target = Arc::new(Mutex::new(String::new()));
    let seen = target.clone();
    let callback =
        move |req: &tokio_tungstenite::tungstenite::handshake::server::Request,
              resp: tokio_tungstenite::tungstenite::handshake::server::Response| {
            *seen.lock().unwrap() = req.uri().to_string();
            Ok(resp)
        };
    let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
        return;
    };
    let (mut sink, mut source) = ws.split();
    let (reply, mut replies) = mpsc::unbounded_channel();
    let target = target.lock().unwrap().clone();
    let _ = events.send(Event::Connected {
        target,
        at: Instant::now(),
        reply,
    });
    loop {
        tokio::select! {
            out = replies.recv() => {
                let Some(out) = out else { return };
                let closing = matches!(out, Message::Close(_));
                if sink.send(out).await.is_err() || closing {
                    return;
                }
            }
            frame = source.next() => match frame {
                Some(Ok(Message::Text(t))) => {
                    let _ = events.send(Event::Frame(t.to_string()));
                }
                Some(Ok(Message::Close(c))) => {
                    let _ = events.send(Event::Closed(c));
                    return;
                }
                Some(Ok(_)) => {}
                _ => return,
            }
        }
    }
}

struct Session {
    port: u16,
    events: mpsc::UnboundedReceiver<Event>,
    heartbeats: Arc<Notify>,
    _stop: watch::Sender<bool>,
    agent: tokio::task::JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.agent.abort();
    }
}

fn settings() -> TcsSettings {
    TcsSettings {
        publish_interval: Duration::from_millis(300),
        heartbeat_timeout: Duration::from_secs(30),
        heartbeat_jitter: Duration::ZERO,
        max_age: Duration::from_secs(600),
        max_age_jitter: Duration::ZERO,
        backoff_min: Duration::from_millis(1500),
        backoff_max: Duration::from_secs(3),
        queue_capacity: 15,
        queue_full_wait: Duration::from_millis(100),
    }
}

/// Starts the session over loopback TCP.
async fn start(tasks: Vec<Task>, disable_metrics: bool, settings: TcsSettings) -> Session {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (events_tx, events) = mpsc::unbounded_channel();
    tokio::spawn(serve_tcp(listener, events_tx));
    launch(
        port,
        events,
        Transport::Tcp,
        0,
        tasks,
        disable_metrics,
        settings,
    )
}

/// Starts the session over in-memory streams, with discovery failing
/// `failures` times first; for tests on the paused clock.
fn start_in_memory(failures: usize, settings: TcsSettings) -> Session {
    let (events_tx, events) = mpsc::unbounded_channel();
    let (streams_tx, streams) = mpsc::unbounded_channel();
    tokio::spawn(serve_memory(streams, events_tx));
    let transport = Transport::Memory(streams_tx);
    launch(
        MEMORY_PORT,
        events,
        transport,
        failures,
        Vec::new(),
        false,
        settings,
    )
}

fn launch(
    port: u16,
    events: mpsc::UnboundedReceiver<Event>,
    transport: Transport,
    failures: usize,
    tasks: Vec<Task>,
    disable_metrics: bool,
    settings: TcsSettings,
) -> Session {
    let heartbeats = Arc::new(Notify::new());
    let (stop, stop_rx) = watch::channel(false);
    let ctx = TcsContext {
        host: Arc::new(FakeHost {
            // With a trailing slash, as the recorded DiscoverPollEndpoint.
            endpoint: format!("http://127.0.0.1:{port}/"),
            tasks: Mutex::new(tasks),
            unreachable_for: Mutex::new(failures),
            transport,
        }),
        credentials: SharedCredentialsProvider::new(Credentials::new(
            ACCESS_KEY, SECRET_KEY, None, None, "test",
        )),
        region: REGION.into(),
        cluster: "default".into(),
        instance_arn: INSTANCE.into(),
        agent_version: "1.105.1".into(),
        agent_hash: "a8b3e7d3".into(),
        docker_version: Some("20.10.24+dfsg1".into()),
        accept_insecure_cert: false,
        disable_metrics,
        acs_heartbeats: heartbeats.clone(),
        settings,
    };
    let agent = tokio::spawn(tcs::run(Arc::new(ctx), stop_rx));
    Session {
        port,
        events,
        heartbeats,
        _stop: stop,
        agent,
    }
}

impl Session {
    async fn next(&mut self) -> Event {
        tokio::time::timeout(WAIT, self.events.recv())
            .await
            .expect("an event from the agent in time")
            .unwrap()
    }

    async fn connected(&mut self) -> (String, Instant, mpsc::UnboundedSender<Message>) {
        loop {
            if let Event::Connected { target, at, reply } = self.next().await {
                return (target, at, reply);
            }
        }
    }

    /// The next agent frame, verified as signed, decoded.
    async fn frame(&mut self) -> (Value, TcsMessage) {
        loop {
            if let Event::Frame(text) = self.next().await {
                return self.check_signed(&text);
            }
        }
    }

    /// The next frame of type `kind`, skipping others.
    async fn frame_of(&mut self, kind: &str) -> (Value, TcsMessage) {
        loop {
            let (json, message) = self.frame().await;
            if message.type_name() == kind {
                return (json, message);
            }
        }
    }

    /// The frame is `<signed header block>\r\n\r\n<JSON>`, whose signature is
    /// the one the signer makes for the TCS URL and exactly that JSON.
    fn check_signed(&self, text: &str) -> (Value, TcsMessage) {
        let (headers, json) = split_signed_frame(text.as_bytes()).unwrap();
        let names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["Authorization", "Host", "X-Amz-Date"], "{text}");
        let host = format!("127.0.0.1:{}", self.port);
        assert_eq!(headers.get("Host"), Some(host.as_str()));
        let json = std::str::from_utf8(json).unwrap();
        let date = headers.get("X-Amz-Date").unwrap();
        let url = tcs::tcs_url(
            &format!("http://{host}/"),
            "default",
            INSTANCE,
            "1.105.1",
            "a8b3e7d3",
            Some("20.10.24+dfsg1"),
        )
        .unwrap();
        let expected = signer::sign_get(
            &url,
            json.as_bytes(),
            &Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test"),
            REGION,
            amz_time(date),
        )
        .unwrap();
        assert_eq!(
            headers.get("Authorization"),
            Some(expected.authorization.as_str())
        );
        let message = TcsMessage::decode(json).unwrap();
        (serde_json::from_str(json).unwrap(), message)
    }
}

/// `20261127T201716Z` → SystemTime.
fn amz_time(text: &str) -> SystemTime {
    let fmt = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    let t = time::PrimitiveDateTime::parse(text, fmt)
        .unwrap()
        .assume_utc();
    SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(t.unix_timestamp()).unwrap())
}

/// The JSON part of a recorded agent frame, or `None` when the spec is absent.
fn recorded(name: &str) -> Option<Value> {
    let dir = ecs_model::spec::require_or_skip("recorded TCS frames")?;
    let bytes = std::fs::read(dir.join("samples").join(name)).unwrap();
    let at = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    Some(serde_json::from_slice(&bytes[at + 4..]).unwrap())
}

/// A running task whose container `sleeper` has a Docker health check.
fn checked_task(n: usize, health: HealthStatus) -> Task {
    let acs: ecs_model::acs::Task = serde_json::from_value(serde_json::json!({
        "arn": format!("arn:aws:ecs:us-east-1:123456789012:task/default/{n:032x}"),
        "family": "golden-capture", "version": "3", "desiredStatus": "RUNNING",
        "containers": [
            {"name": "sleeper", "image": "busybox:local", "essential": true, "healthCheckType": "docker"},
            {"name": "plain", "image": "busybox:local"}
        ],
    }))
    .unwrap();
    let mut task = Task::new(IncomingTask::try_from(&acs).unwrap(), 0);
    task.known_status = TaskStatus::Running;
    for c in &mut task.containers {
        c.known_status = ContainerStatus::Running;
    }
    task.containers[0].health = health;
    task.containers[0].health_since_ms = Some(1_795_810_655_444);
    task
}

#[tokio::test]
async fn idle_metrics_and_instance_status_frames_are_signed_and_shaped_like_the_go_agents() {
    let mut s = start(Vec::new(), false, settings()).await;
    let (target, _, _reply) = s.connected().await;
    assert_eq!(
        target,
        "/ws?agentHash=a8b3e7d3&agentVersion=1.105.1&cluster=default&containerInstance=arn%3Aaws%3Aecs%3Aus-east-1%3A123456789012%3Acontainer-instance%2Fdefault%2F701bbc45062742f4a14a0c8f8f3a5e0d&dockerVersion=20.10.24%2Bdfsg1"
    );

    // Right after connecting: the idle metrics request.
    let (json, message) = s.frame().await;
    let TcsMessage::PublishMetricsRequest(metrics) = message else {
        panic!("first frame is not the idle metrics request: {json}")
    };
    let meta = metrics.metadata.unwrap();
    assert_eq!((meta.idle, meta.fin), (Some(true), Some(true)));
    assert_eq!(meta.cluster.as_deref(), Some("default"));
    assert_eq!(meta.container_instance.as_deref(), Some(INSTANCE));
    assert!(json["message"]["timestamp"].is_f64(), "{json}");
    if let Some(golden) = recorded("tcs-publish-metrics.idle.frame.txt") {
        assert_same_shape(&json, &golden, "idle metrics");
    }

    // One tick later: the initial instance status, before any check ran.
    let (json, message) = s.frame_of("PublishInstanceStatusRequest").await;
    let TcsMessage::PublishInstanceStatusRequest(status) = message else {
        unreachable!()
    };
    let statuses = status.statuses.unwrap();
    assert_eq!(statuses[0].status.as_deref(), Some("INITIALIZING"));
    assert_eq!(statuses[0].r#type.as_deref(), Some("ContainerRuntime"));
    if let Some(golden) = recorded("tcs-instance-status.frame.txt") {
        assert_same_shape(&json, &golden, "instance status");
    }
    // An ACS heartbeat runs the check; the next tick reports it, once.
    s.heartbeats.notify_one();
    let (_, message) = s.frame_of("PublishInstanceStatusRequest").await;
    let TcsMessage::PublishInstanceStatusRequest(status) = message else {
        unreachable!()
    };
    assert_eq!(status.statuses.unwrap()[0].status.as_deref(), Some("OK"));
    // Without another heartbeat, the next ticks carry only idle metrics
    // (watched for a second: this can pass wrongly, never fail wrongly).
    let deadline = Instant::now() + Duration::from_millis(1000);
    while Instant::now() < deadline {
        let Ok(Some(Event::Frame(text))) = tokio::time::timeout_at(deadline, s.events.recv()).await
        else {
            continue;
        };
        let (json, message) = s.check_signed(&text);
        assert_eq!(message.type_name(), "PublishMetricsRequest", "{json}");
    }
}

#[tokio::test]
async fn health_frames_are_batched_and_shaped_like_the_go_agents() {
    let mut tasks: Vec<Task> = (0..12)
        .map(|n| checked_task(n, HealthStatus::Healthy))
        .collect();
    tasks[11].containers[0].health = HealthStatus::Unhealthy;
    let mut s = start(tasks, false, settings()).await;
    let _conn = s.connected().await;
    let (json, first) = s.frame().await;
    let TcsMessage::PublishHealthRequest(first) = first else {
        panic!("with tasks running, no metrics are sent yet: {json}")
    };
    if let Some(golden) = recorded("tcs-publish-health.frame.txt") {
        assert_same_shape(&json, &golden, "health");
    }
    let (_, second) = s.frame().await;
    let TcsMessage::PublishHealthRequest(second) = second else {
        panic!("the second batch is a health request")
    };
    let (m1, m2) = (first.metadata.unwrap(), second.metadata.unwrap());
    assert_eq!(
        m1.message_id, m2.message_id,
        "one collection, one messageId"
    );
    assert_eq!((m1.fin, m2.fin), (Some(false), Some(true)));
    assert_eq!(first.tasks.as_ref().unwrap().len(), 10);
    let last = &second.tasks.unwrap()[1];
    let containers = last.containers.as_ref().unwrap();
    assert_eq!(
        containers.len(),
        1,
        "only the container with a health check"
    );
    assert_eq!(containers[0].container_name.as_deref(), Some("sleeper"));
    assert_eq!(containers[0].health_status.as_deref(), Some("UNHEALTHY"));
    assert_eq!(containers[0].status_since, Some(1_795_810_655.444));
    assert_eq!(
        last.task_definition_family.as_deref(),
        Some("golden-capture")
    );
}

#[tokio::test]
async fn disabled_metrics_still_send_idle_metrics_and_health() {
    let mut s = start(
        vec![checked_task(1, HealthStatus::Healthy)],
        true,
        settings(),
    )
    .await;
    let _conn = s.connected().await;
    let (_, metrics) = s.frame_of("PublishMetricsRequest").await;
    let TcsMessage::PublishMetricsRequest(metrics) = metrics else {
        unreachable!()
    };
    assert_eq!(metrics.metadata.unwrap().idle, Some(true));
    s.frame_of("PublishHealthRequest").await;
}

/// A close frame from the server, with `code`.
fn close(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::from(code),
        reason: reason.to_string().into(),
    }))
}

/// Waits for the agent's close frame, with no reconnection before it.
async fn agent_closes(s: &mut Session) -> CloseFrame {
    loop {
        match s.next().await {
            Event::Closed(close) => return close.unwrap(),
            Event::Connected { .. } => panic!("reconnected without closing"),
            Event::Frame(_) => {}
        }
    }
}

#[tokio::test(start_paused = true)]
async fn close_1000_reconnects_at_once_and_close_4000_backs_off() {
    let settings = settings();
    let (min, max_first) = (settings.backoff_min, settings.backoff_min.mul_f64(1.2));
    let mut s = start_in_memory(0, settings);
    let (_, _, reply) = s.connected().await;

    let closed_at = Instant::now();
    reply.send(close(1000, "bye")).unwrap();
    let (_, at, reply) = s.connected().await;
    assert_eq!(at - closed_at, Duration::ZERO, "1000: no backoff");

    let closed_at = Instant::now();
    reply.send(close(4000, "go away")).unwrap();
    let (_, at, reply) = s.connected().await;
    let backed_off = at - closed_at;
    assert!(
        backed_off >= min && backed_off <= max_first,
        "4000: reconnected after {backed_off:?}, not the first backoff of {min:?} + up to 20 %"
    );

    // A clean end resets the backoff: straight back again.
    let closed_at = Instant::now();
    reply.send(close(1001, "")).unwrap();
    let (_, at, _reply) = s.connected().await;
    assert_eq!(at - closed_at, Duration::ZERO, "1001: no backoff");
}

#[tokio::test(start_paused = true)]
async fn silent_server_is_left_with_close_1000_and_heartbeats_keep_it() {
    let mut quick = settings();
    quick.heartbeat_timeout = Duration::from_millis(800);
    quick.publish_interval = Duration::from_secs(60);
    let timeout = quick.heartbeat_timeout;
    let mut s = start_in_memory(0, quick);
    let (_, connected_at, reply) = s.connected().await;
    // Heartbeats (and acks) re-arm the timer: nothing closes meanwhile,
    // although the connection outlives the timeout twice over.
    let heartbeat = r#"{"type":"HeartbeatMessage","message":{"healthy":true}}"#;
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        reply.send(Message::Text(heartbeat.into())).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ack = r#"{"type":"AckPublishMetric","message":{"message":"ok"}}"#;
    reply.send(Message::Text(ack.into())).unwrap();
    let last_keepalive = Instant::now();
    assert_eq!(last_keepalive - connected_at, Duration::from_millis(2100));
    // Then silence: one timeout later the agent closes with 1000 and comes
    // back at once.
    let close = agent_closes(&mut s).await;
    let closed_at = Instant::now();
    assert_eq!(closed_at - last_keepalive, timeout);
    assert_eq!(close.code, CloseCode::Normal);
    assert_eq!(close.reason, "ConnectionExpired: Reconnect to continue");
    let (_, at, _reply) = s.connected().await;
    assert_eq!(at - closed_at, Duration::ZERO, "no backoff");
}

#[tokio::test(start_paused = true)]
async fn ticks_queued_while_disconnected_are_sent_after_connecting() {
    // Discovery fails once: 1.5–1.8 s of backoff, while a tick comes every
    // 0.3 s. Sent as they were produced, four ticks would take 0.9 s at
    // least; queued, they all go at once.
    let settings = settings();
    let interval = settings.publish_interval;
    let started = Instant::now();
    let mut s = start_in_memory(1, settings);
    let (_, connected_at, _reply) = s.connected().await;
    assert!(connected_at - started >= Duration::from_millis(1500));
    let mut ids = BTreeSet::new();
    while ids.len() < 4 {
        let (json, message) = s.frame_of("PublishMetricsRequest").await;
        let TcsMessage::PublishMetricsRequest(m) = message else {
            unreachable!()
        };
        ids.insert(m.metadata.unwrap().message_id.unwrap());
        assert!(json["message"]["timestamp"].is_f64());
    }
    let burst = Instant::now() - connected_at;
    assert!(
        burst < interval,
        "four queued ticks took {burst:?}: they were not waiting in the queue"
    );
}

#[tokio::test(start_paused = true)]
async fn connection_is_closed_with_1000_at_its_maximum_age() {
    let mut aged = settings();
    aged.max_age = Duration::from_millis(700);
    let max_age = aged.max_age;
    let mut s = start_in_memory(0, aged);
    let (_, connected_at, _reply) = s.connected().await;
    let close = agent_closes(&mut s).await;
    let closed_at = Instant::now();
    assert_eq!(closed_at - connected_at, max_age);
    assert_eq!(close.code, CloseCode::Normal);
    assert_eq!(close.reason, "ConnectionExpired: Reconnect to continue");
    let (_, at, _reply) = s.connected().await;
    assert_eq!(at - closed_at, Duration::ZERO, "no backoff");
}
