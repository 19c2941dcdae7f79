//! The TCS session: the telemetry websocket over which the agent pushes
//! metrics, container health and instance status to the backend
//! (docs/protocols.md §3, §5). One loop for the life of the process:
//! discover the endpoint, connect with a signed upgrade, send what the
//! publisher queued and the instance status the ACS heartbeats produced,
//! and reconnect with the backoff rules of docs/protocols.md §5.4 when the
//! connection ends.
//!
//! What is published today:
//!
//! * `PublishMetricsRequest`: the idle form (`idle:true`, `fin:true`, no
//!   `taskMetrics`) while no task is tracked or when
//!   `ECS_DISABLE_METRICS=true`; else the task and container metrics the
//!   collector gathered from the kernel (docs/metrics.md), in batches of 10
//!   tasks and 1 MiB (docs/protocols.md §5.5).
//! * `PublishHealthRequest` for running containers whose task payload asked
//!   for `healthCheckType: "docker"` (docs/protocols.md §5.5).
//! * `PublishInstanceStatusRequest` with the `ContainerRuntime` check, run on
//!   each ACS heartbeat (docs/protocols.md §5.6, see [`instance_status`]).
//!
//! Every frame the agent sends starts with a SigV4-signed header block made
//! with fresh credentials (docs/protocols.md §5.3).

pub mod instance_status;
pub mod publish;

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use ecs_model::tcs::TcsMessage;
use futures_util::future::BoxFuture;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch, Notify};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::backoff::Backoff;
use crate::docker::{DockerApi, DockerClient};
use crate::ecs_client::EcsClient;
use crate::engine::task::Task;
use crate::engine::{now_ms, EngineHandle};
use crate::signer::{self, SignError};
use crate::websocket::{self, WsError};
use instance_status::InstanceStatusBoard;
use publish::Collection;

/// How long one frame may take to write (docs/protocols.md §3.6).
const WRITE_TIMEOUT: Duration = Duration::from_secs(180);
/// The Docker ping of the `ContainerRuntime` check (docs/protocols.md §5.6).
const RUNTIME_PING_TIMEOUT: Duration = Duration::from_secs(2);
/// Reason of the close frame the agent sends when a timer ends a connection.
const EXPIRED_REASON: &str = "ConnectionExpired: Reconnect to continue";

/// Why a TCS connection attempt failed (never fatal: the loop backs off).
#[derive(Debug, thiserror::Error)]
pub enum TcsError {
    #[error("DiscoverPollEndpoint: {0}")]
    Discover(String),
    #[error("DiscoverPollEndpoint returned no telemetryEndpoint")]
    NoEndpoint,
    #[error("bad TCS endpoint {endpoint:?}: {source}")]
    Url {
        endpoint: String,
        source: url::ParseError,
    },
    #[error("no credentials to sign the TCS handshake: {0}")]
    Credentials(String),
    #[error(transparent)]
    Connect(#[from] WsError),
    #[error("TCS read failed: {0}")]
    Read(String),
    #[error("TCS write failed: {0}")]
    Write(String),
    #[error("TCS write timed out after {0:?}")]
    WriteTimeout(Duration),
    #[error("{0}")]
    Closed(String),
}

/// Why a single frame was not sent; the frame is skipped and logged, and the
/// connection itself stays up (docs/protocols.md §5.3).
#[derive(Debug, thiserror::Error)]
enum FrameError {
    #[error("no credentials to sign the TCS frame: {0}")]
    Credentials(String),
    #[error(transparent)]
    Sign(#[from] SignError),
}

/// Timers and limits of the session. The defaults are the Go agent's; tests
/// shorten them.
#[derive(Debug, Clone)]
pub struct TcsSettings {
    /// Metrics/health collection and instance-status tick
    /// (docs/protocols.md §5.5, §5.6: 20 s).
    pub publish_interval: Duration,
    /// The heartbeat timer is `heartbeat_timeout + uniform[0, heartbeat_jitter)`
    /// (docs/protocols.md §5.4).
    pub heartbeat_timeout: Duration,
    pub heartbeat_jitter: Duration,
    /// Maximum connection age `max_age + uniform[0, max_age_jitter)`
    /// (docs/protocols.md §3.6).
    pub max_age: Duration,
    pub max_age_jitter: Duration,
    /// Reconnect backoff: start, cap; ×2 with up to 20 % added
    /// (docs/protocols.md §5.4).
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Collections waiting for the connection (docs/protocols.md §5.5: 15 ticks).
    pub queue_capacity: usize,
    /// How long a tick waits for room in a full queue before dropping
    /// (docs/protocols.md §5.5: 1 s).
    pub queue_full_wait: Duration,
}

impl Default for TcsSettings {
    fn default() -> Self {
        Self {
            publish_interval: Duration::from_secs(20),
            heartbeat_timeout: Duration::from_secs(60),
            heartbeat_jitter: Duration::from_secs(60),
            max_age: Duration::from_secs(30 * 60),
            max_age_jitter: Duration::from_secs(5 * 60),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            queue_capacity: 15,
            queue_full_wait: Duration::from_secs(1),
        }
    }
}

type WsResult<T> = Result<T, tokio_tungstenite::tungstenite::Error>;
type FrameSink =
    Pin<Box<dyn Sink<Message, Error = tokio_tungstenite::tungstenite::Error> + Send + Sync>>;
type FrameSource = Pin<Box<dyn Stream<Item = WsResult<Message>> + Send + Sync>>;

/// An open TCS websocket, split into the frames going out and the frames
/// coming in, whatever carries it.
pub struct TcsSocket {
    sink: FrameSink,
    source: FrameSource,
}

impl<S> From<WebSocketStream<S>> for TcsSocket
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    fn from(ws: WebSocketStream<S>) -> Self {
        let (sink, source) = ws.split();
        Self {
            sink: Box::pin(sink),
            source: Box::pin(source),
        }
    }
}

/// What the session needs from the rest of the agent. A trait, so the
/// session can run in tests without Docker, an engine, an ECS endpoint or
/// (with [`TcsHost::open`] replaced) a network, and so under tokio's
/// paused clock.
pub trait TcsHost: Send + Sync + 'static {
    /// `telemetryEndpoint` from DiscoverPollEndpoint (cached, docs/protocols.md §2.4).
    fn telemetry_endpoint(&self) -> BoxFuture<'_, Result<String, TcsError>>;
    /// Every task the engine knows; `None` once the engine has stopped.
    fn tasks(&self) -> BoxFuture<'_, Option<Vec<Task>>>;
    /// The `ContainerRuntime` check: whether the runtime answered a ping.
    fn runtime_responds(&self) -> BoxFuture<'_, bool>;
    /// The container metrics gathered since the last call, per task.
    fn task_metrics(&self) -> std::collections::BTreeMap<String, crate::metrics::TaskSets> {
        std::collections::BTreeMap::new()
    }
    /// Opens the websocket to `url` with the SigV4-signed upgrade
    /// (docs/protocols.md §3.2): over TCP, or TLS for `https`.
    fn open<'a>(
        &'a self,
        url: &'a url::Url,
        credentials: &'a Credentials,
        region: &'a str,
        accept_insecure_cert: bool,
    ) -> BoxFuture<'a, Result<TcsSocket, WsError>> {
        Box::pin(async move {
            let ws = websocket::connect(
                url,
                credentials,
                region,
                SystemTime::now(),
                accept_insecure_cert,
            )
            .await?;
            Ok(TcsSocket::from(ws))
        })
    }
}

/// The real agent: the ECS client, the task engine and the Docker engine.
pub struct AgentTcsHost {
    pub ecs: EcsClient,
    pub cluster: String,
    pub instance_arn: String,
    pub engine: EngineHandle,
    pub docker: DockerClient,
    pub collector: Arc<crate::metrics::Collector>,
}

impl TcsHost for AgentTcsHost {
    fn telemetry_endpoint(&self) -> BoxFuture<'_, Result<String, TcsError>> {
        Box::pin(async move {
            let endpoints = self
                .ecs
                .poll_endpoints(&self.cluster, &self.instance_arn)
                .await
                .map_err(|e| TcsError::Discover(e.to_string()))?;
            endpoints.tcs.ok_or(TcsError::NoEndpoint)
        })
    }

    fn tasks(&self) -> BoxFuture<'_, Option<Vec<Task>>> {
        Box::pin(async move { self.engine.snapshot().await.ok() })
    }

    fn runtime_responds(&self) -> BoxFuture<'_, bool> {
        Box::pin(async move { self.docker.ping(RUNTIME_PING_TIMEOUT).await.is_ok() })
    }

    fn task_metrics(&self) -> std::collections::BTreeMap<String, crate::metrics::TaskSets> {
        self.collector.take_task_metrics()
    }
}

/// Everything the session needs, fixed for the process lifetime.
pub struct TcsContext {
    pub host: Arc<dyn TcsHost>,
    pub credentials: SharedCredentialsProvider,
    pub region: String,
    /// The cluster as configured (short name or ARN).
    pub cluster: String,
    pub instance_arn: String,
    pub agent_version: String,
    pub agent_hash: String,
    pub docker_version: Option<String>,
    pub accept_insecure_cert: bool,
    /// `ECS_DISABLE_METRICS`: the instance always looks idle (docs/protocols.md §5.5).
    pub disable_metrics: bool,
    /// Poked by the ACS session on every heartbeat (docs/protocols.md §4.2, §5.6).
    pub acs_heartbeats: Arc<Notify>,
    pub settings: TcsSettings,
}

/// The TCS URL: `<endpoint>/ws?<sorted, form-encoded query>` with the bare
/// Docker version (docs/protocols.md §5.1).
pub fn tcs_url(
    endpoint: &str,
    cluster: &str,
    instance_arn: &str,
    agent_version: &str,
    agent_hash: &str,
    docker_version: Option<&str>,
) -> Result<url::Url, url::ParseError> {
    let mut params: Vec<(&str, String)> = vec![
        ("agentHash", agent_hash.to_string()),
        ("agentVersion", agent_version.to_string()),
        ("cluster", cluster.to_string()),
        ("containerInstance", instance_arn.to_string()),
    ];
    if let Some(v) = docker_version.filter(|v| !v.is_empty()) {
        params.push(("dockerVersion", v.to_string()));
    }
    websocket::ws_url(endpoint, params)
}

/// How a connection attempt ended, which decides the next delay.
enum Ended {
    /// Close codes 1000/1001/1006/1011, EOF, or one of our timers: reconnect
    /// at once and reset the backoff.
    Clean,
    /// Anything else: back off.
    Failed(TcsError),
}

/// Runs TCS until `shutdown` turns true: the connection loop, the publisher
/// that fills the queue every tick, and the instance health checks that ACS
/// heartbeats trigger.
pub async fn run(ctx: Arc<TcsContext>, mut shutdown: watch::Receiver<bool>) {
    let board = InstanceStatusBoard::new(now_ms());
    let (queue_tx, mut queue_rx) = mpsc::channel(ctx.settings.queue_capacity.max(1));
    tokio::select! {
        () = connection_loop(&ctx, &board, &mut queue_rx) => {}
        () = publish::publish_loop(&ctx, queue_tx) => {}
        () = instance_status::check_loop(&ctx, &board) => {}
        _ = shutdown.wait_for(|stop| *stop) => {}
    }
    // Dropping the connection without a close frame is what the Go agent
    // does on shutdown.
    tracing::info!("TCS session ended (context closed)");
}

async fn connection_loop(
    ctx: &TcsContext,
    board: &InstanceStatusBoard,
    queue: &mut mpsc::Receiver<Collection>,
) {
    let s = &ctx.settings;
    let mut backoff = Backoff::new(s.backoff_min, s.backoff_max, 2.0, 0.2);
    loop {
        let delay = match session(ctx, board, queue).await {
            Ended::Clean => {
                // The only reset: there is no reset timer on TCS
                // (docs/protocols.md §5.4).
                backoff.reset();
                Duration::ZERO
            }
            Ended::Failed(why) => {
                let delay = backoff.next_delay();
                tracing::warn!(
                    error = %why,
                    ?delay,
                    "TCS connection failed; reconnecting after a delay"
                );
                delay
            }
        };
        tokio::time::sleep(delay).await;
    }
}

fn jittered(base: Duration, spread: Duration) -> Duration {
    base + spread.mul_f64(rand::random::<f64>())
}

/// The connection's state while it is up.
struct Connection<'a> {
    ctx: &'a TcsContext,
    url: url::Url,
    sink: FrameSink,
}

impl Connection<'_> {
    /// Signs and writes one message. `Ok(false)` when the frame could not be
    /// signed (logged, connection kept); `Err` with how the connection ended
    /// when the write failed.
    async fn publish(&mut self, mut message: TcsMessage) -> Result<bool, Ended> {
        publish::stamp(&mut message, now_ms());
        let frame = match self.sign(&message).await {
            Ok(frame) => frame,
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    message_type = message.type_name(),
                    "TCS frame not sent"
                );
                return Ok(false);
            }
        };
        match tokio::time::timeout(WRITE_TIMEOUT, self.sink.send(Message::Text(frame.into()))).await
        {
            Err(_) => Err(Ended::Failed(TcsError::WriteTimeout(WRITE_TIMEOUT))),
            // The server closed first: its close frame decides, as on a read.
            Ok(Err(e)) if websocket::read_error_is_clean(&e) => Err(Ended::Clean),
            Ok(Err(e)) => Err(Ended::Failed(TcsError::Write(e.to_string()))),
            Ok(Ok(())) => {
                tracing::debug!(message_type = message.type_name(), "TCS frame sent");
                Ok(true)
            }
        }
    }

    async fn sign(&self, message: &TcsMessage) -> Result<String, FrameError> {
        let credentials = self
            .ctx
            .credentials
            .provide_credentials()
            .await
            .map_err(|e| FrameError::Credentials(e.to_string()))?;
        Ok(signer::signed_tcs_frame(
            &self.url,
            &message.encode(),
            &credentials,
            &self.ctx.region,
            SystemTime::now(),
        )?)
    }

    /// Sends a 1000 close frame; the loop then reconnects at once
    /// (docs/protocols.md §5.4).
    async fn expire(&mut self) {
        let close = Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: EXPIRED_REASON.into(),
        }));
        let _ = tokio::time::timeout(WRITE_TIMEOUT, self.sink.send(close)).await;
    }
}

async fn connect(ctx: &TcsContext) -> Result<(url::Url, TcsSocket), TcsError> {
    let endpoint = ctx.host.telemetry_endpoint().await?;
    let url = tcs_url(
        &endpoint,
        &ctx.cluster,
        &ctx.instance_arn,
        &ctx.agent_version,
        &ctx.agent_hash,
        ctx.docker_version.as_deref(),
    )
    .map_err(|source| TcsError::Url {
        endpoint: endpoint.clone(),
        source,
    })?;
    let credentials = ctx
        .credentials
        .provide_credentials()
        .await
        .map_err(|e| TcsError::Credentials(e.to_string()))?;
    let socket = ctx
        .host
        .open(&url, &credentials, &ctx.region, ctx.accept_insecure_cert)
        .await?;
    tracing::info!(%endpoint, "connected to TCS");
    Ok((url, socket))
}

async fn session(
    ctx: &TcsContext,
    board: &InstanceStatusBoard,
    queue: &mut mpsc::Receiver<Collection>,
) -> Ended {
    let (url, socket) = match connect(ctx).await {
        Ok(connected) => connected,
        Err(e) => return Ended::Failed(e),
    };
    let TcsSocket { sink, mut source } = socket;
    let mut conn = Connection { ctx, url, sink };
    let s = &ctx.settings;

    let heartbeat = tokio::time::sleep(jittered(s.heartbeat_timeout, s.heartbeat_jitter));
    tokio::pin!(heartbeat);
    let max_age = tokio::time::sleep(jittered(s.max_age, s.max_age_jitter));
    tokio::pin!(max_age);
    // The instance-status tick belongs to the connection: its first tick is
    // one interval after the handshake, never at connect time
    // (docs/protocols.md §5.6).
    let mut status_tick = tokio::time::interval_at(
        tokio::time::Instant::now() + s.publish_interval,
        s.publish_interval,
    );
    status_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    loop {
        tokio::select! {
            () = &mut heartbeat => {
                tracing::info!("no heartbeat or ack from TCS in time; reconnecting");
                conn.expire().await;
                return Ended::Clean;
            }
            () = &mut max_age => {
                tracing::info!("TCS connection reached its maximum age; reconnecting");
                conn.expire().await;
                return Ended::Clean;
            }
            _ = status_tick.tick() => {
                let pending = board.pending(&ctx.cluster, &ctx.instance_arn);
                if let Some((generation, request)) = pending {
                    let message = TcsMessage::PublishInstanceStatusRequest(request);
                    match conn.publish(message).await {
                        Ok(true) => board.mark_published(generation),
                        Ok(false) => {}
                        Err(ended) => return ended,
                    }
                }
            }
            collection = queue.recv() => {
                // The publisher never closes the queue while the session runs.
                let Some(collection) = collection else { return Ended::Clean };
                for message in collection.into_messages() {
                    if let Err(ended) = conn.publish(message).await {
                        return ended;
                    }
                }
            }
            frame = source.next() => {
                let text = match frame {
                    None => return Ended::Clean,
                    Some(Err(e)) if websocket::read_error_is_clean(&e) => return Ended::Clean,
                    Some(Err(e)) => return Ended::Failed(TcsError::Read(e.to_string())),
                    Some(Ok(Message::Text(t))) => t.to_string(),
                    Some(Ok(Message::Binary(b))) => {
                        tracing::warn!("unexpected binary frame on TCS; treating it as text");
                        String::from_utf8_lossy(&b).into_owned()
                    }
                    Some(Ok(Message::Close(frame))) => {
                        return match websocket::close_is_clean(&frame) {
                            Ok(()) => Ended::Clean,
                            Err(why) => Ended::Failed(TcsError::Closed(why)),
                        }
                    }
                    // Pings and pongs are not activity (docs/protocols.md §3.6).
                    Some(Ok(_)) => continue,
                };
                if keeps_alive(&text) {
                    let timeout = jittered(s.heartbeat_timeout, s.heartbeat_jitter);
                    heartbeat.as_mut().reset(tokio::time::Instant::now() + timeout);
                }
            }
        }
    }
}

/// Decodes a server frame; true when it re-arms the heartbeat timer: only
/// heartbeats and acks do (docs/protocols.md §5.4). Everything else is logged
/// and ignored.
fn keeps_alive(text: &str) -> bool {
    match TcsMessage::decode(text) {
        Ok(
            TcsMessage::HeartbeatMessage(_)
            | TcsMessage::AckPublishMetric(_)
            | TcsMessage::AckPublishHealth(_)
            | TcsMessage::AckPublishInstanceStatus(_),
        ) => true,
        Ok(other) => {
            match other.exception() {
                Some((kind, body)) => tracing::warn!(
                    kind,
                    message = body.message.as_deref().unwrap_or(""),
                    "TCS server error"
                ),
                None => tracing::debug!(message_type = other.type_name(), "TCS message ignored"),
            }
            false
        }
        Err(e) => {
            tracing::warn!(error = %e, "dropping undecodable TCS frame");
            false
        }
    }
}

/// The `metadata.cluster` / `containerInstance` pair every request carries.
fn ids(ctx: &TcsContext) -> (String, String) {
    (ctx.cluster.clone(), ctx.instance_arn.clone())
}

/// A `HealthStatus` as TCS spells it.
pub fn health_status_string(status: crate::engine::status::HealthStatus) -> &'static str {
    use crate::engine::status::HealthStatus;
    match status {
        HealthStatus::Healthy => "HEALTHY",
        HealthStatus::Unhealthy => "UNHEALTHY",
        HealthStatus::Unknown => "UNKNOWN",
    }
}

/// Epoch milliseconds as a TCS timestamp: seconds with a millisecond
/// fraction, a JSON number (docs/protocols.md §5.7).
pub fn tcs_time(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

#[cfg(test)]
mod tests;
