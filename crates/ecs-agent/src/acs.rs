//! The ACS session: the websocket over which the backend pushes tasks to
//! this instance (docs/protocols.md §3, §4). One loop for the life of
//! the process: discover the endpoint, connect with a signed upgrade, answer
//! heartbeats, hand payloads to the engine and ack them, and reconnect with
//! the backoff rules of docs/protocols.md §4.4 when the connection ends.
//!
//! Answers produced outside the read loop, by work that may outlive a
//! connection (agent updates, docs/protocols.md §4.9), arrive on a queue
//! the session drains onto whichever connection is up. On shutdown the
//! session sends what is queued and closes the connection itself before
//! it returns, so an ack given just before exiting (the one of
//! `PerformUpdateMessage`) reaches the backend.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use ecs_model::acs::{self, AcsMessage};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, watch, Notify};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use crate::backoff::Backoff;
use crate::credentials::{CredentialsStore, RolePolicy};
use crate::ecs_client::EcsClient;
use crate::engine::status::TaskStatus;
use crate::engine::task::IncomingTask;
use crate::engine::EngineHandle;
use crate::store::Store;
use crate::task_manifest::{self, PendingVerification, Verdict};
use crate::update::Updater;
use crate::websocket::{self, WsError};

/// Reconnect delay after an `InactiveInstanceException` (docs/protocols.md
/// §4.4).
const INACTIVE_INSTANCE_DELAY: Duration = Duration::from_secs(3600);

/// How long a shutting-down session waits for its queued frames and its
/// close to be written; a dead peer must not hold up the exit.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(2);

/// Everything the session needs, fixed for the process lifetime.
pub struct AcsContext {
    pub ecs: EcsClient,
    pub credentials: SharedCredentialsProvider,
    pub region: String,
    /// The cluster as configured (short name or ARN).
    pub cluster: String,
    pub instance_arn: String,
    pub agent_version: String,
    pub agent_hash: String,
    pub docker_version: Option<String>,
    pub engine: EngineHandle,
    pub store: Store,
    pub accept_insecure_cert: bool,
    /// Poked on every heartbeat: the instance health checks TCS reports run
    /// then (docs/protocols.md §4.2, §5.6).
    pub heartbeats: Arc<Notify>,
    /// Task role credentials, as payloads and refreshes deliver them.
    pub role_credentials: Arc<CredentialsStore>,
    pub role_policy: RolePolicy,
    /// The last accepted task manifest, awaiting its verification ack.
    pub pending_verification: Arc<PendingVerification>,
    /// Stages and performs agent updates.
    pub updater: Arc<Updater>,
}

/// The ACS URL: `<endpoint>/ws?<sorted, form-encoded query>`
/// (docs/protocols.md §3.1, §4.1).
pub fn acs_url(
    endpoint: &str,
    ctx_cluster: &str,
    instance_arn: &str,
    agent_version: &str,
    agent_hash: &str,
    docker_version: Option<&str>,
    send_credentials: bool,
) -> Result<url::Url, url::ParseError> {
    let mut params: Vec<(&str, String)> = vec![
        ("agentHash", agent_hash.to_string()),
        ("agentVersion", agent_version.to_string()),
        ("clusterArn", ctx_cluster.to_string()),
        ("containerInstanceArn", instance_arn.to_string()),
        ("protocolVersion", "2".to_string()),
        ("sendCredentials", send_credentials.to_string()),
        ("seqNum", "1".to_string()),
    ];
    if let Some(v) = docker_version {
        params.push(("dockerVersion", format!("DockerVersion: {v}")));
    }
    websocket::ws_url(endpoint, params)
}

/// How a connection attempt ended, which decides the next delay.
enum Ended {
    /// Close codes 1000/1001/1006/1011 or EOF: reconnect at once.
    Clean,
    /// The backend says this instance is deregistered: wait an hour.
    InactiveInstance,
    /// Anything else: back off.
    Failed(String),
    /// The agent is shutting down.
    Shutdown,
}

/// Runs the ACS loop until `shutdown` turns true. `replies` are messages
/// for the backend produced outside the read loop; each is sent on the
/// connection that is up, or on the next one.
pub async fn run(
    ctx: Arc<AcsContext>,
    mut shutdown: watch::Receiver<bool>,
    mut replies: mpsc::UnboundedReceiver<AcsMessage>,
) {
    let mut backoff = Backoff::new(
        Duration::from_millis(250),
        Duration::from_secs(120),
        1.5,
        0.2,
    );
    let mut send_credentials = true;
    loop {
        let ended = session(
            &ctx,
            &mut send_credentials,
            &mut backoff,
            &mut shutdown,
            &mut replies,
        )
        .await;
        let delay = match ended {
            Ended::Shutdown => {
                tracing::info!("ACS session ended (context closed)");
                return;
            }
            Ended::Clean => {
                backoff.reset();
                Duration::ZERO
            }
            Ended::InactiveInstance => {
                tracing::warn!(
                    "container instance is inactive (deregistered); reconnecting in an hour"
                );
                INACTIVE_INSTANCE_DELAY
            }
            Ended::Failed(why) => {
                let delay = backoff.next_delay();
                tracing::warn!(
                    error = why,
                    ?delay,
                    "ACS connection failed; reconnecting after a delay"
                );
                delay
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

/// One connection attempt and, if it connects, the connection's life. It
/// watches `shutdown` itself, so that a connection ends by flushing and
/// closing rather than by being dropped.
async fn session(
    ctx: &AcsContext,
    send_credentials: &mut bool,
    backoff: &mut Backoff,
    shutdown: &mut watch::Receiver<bool>,
    replies: &mut mpsc::UnboundedReceiver<AcsMessage>,
) -> Ended {
    let connected = tokio::select! {
        connected = connect(ctx, *send_credentials) => connected,
        _ = shutdown.wait_for(|stop| *stop) => return Ended::Shutdown,
    };
    let (stream, endpoint) = match connected {
        Ok(c) => c,
        Err(ended) => return ended,
    };
    tracing::info!(endpoint = %endpoint, "connected to ACS");
    *send_credentials = false;
    serve(ctx, stream, backoff, shutdown, replies).await
}

/// Discovers the endpoint and opens a signed websocket to it.
async fn connect(
    ctx: &AcsContext,
    send_credentials: bool,
) -> Result<(websocket::WsStream, String), Ended> {
    let endpoints = match ctx
        .ecs
        .poll_endpoints(&ctx.cluster, &ctx.instance_arn)
        .await
    {
        Ok(e) => e,
        Err(e) => return Err(Ended::Failed(format!("DiscoverPollEndpoint: {e}"))),
    };
    let url = match acs_url(
        &endpoints.acs,
        &ctx.cluster,
        &ctx.instance_arn,
        &ctx.agent_version,
        &ctx.agent_hash,
        ctx.docker_version.as_deref(),
        send_credentials,
    ) {
        Ok(url) => url,
        Err(e) => {
            return Err(Ended::Failed(format!(
                "bad ACS endpoint {:?}: {e}",
                endpoints.acs
            )))
        }
    };
    let credentials = match ctx.credentials.provide_credentials().await {
        Ok(c) => c,
        Err(e) => {
            return Err(Ended::Failed(format!(
                "no credentials to sign the ACS handshake: {e}"
            )))
        }
    };
    match websocket::connect(
        &url,
        &credentials,
        &ctx.region,
        SystemTime::now(),
        ctx.accept_insecure_cert,
    )
    .await
    {
        Ok(stream) => Ok((stream, endpoints.acs)),
        Err(WsError::Refused { body, .. }) if body.contains("InactiveInstanceException") => {
            Err(Ended::InactiveInstance)
        }
        Err(e) => Err(Ended::Failed(e.to_string())),
    }
}

/// Reads and answers frames until the connection ends or the agent shuts
/// down.
async fn serve(
    ctx: &AcsContext,
    stream: websocket::WsStream,
    backoff: &mut Backoff,
    shutdown: &mut watch::Receiver<bool>,
    replies: &mut mpsc::UnboundedReceiver<AcsMessage>,
) -> Ended {
    let (mut sink, mut source) = stream.split();
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Message>();
    let writer = tokio::spawn(async move {
        while let Some(msg) = out_rx.recv().await {
            let closing = matches!(msg, Message::Close(_));
            if sink.send(msg).await.is_err() || closing {
                break;
            }
        }
        let _ = sink.close().await;
    });

    let jittered = |base: u64, spread: u64| {
        Duration::from_secs(base) + Duration::from_millis(rand::random_range(0..spread * 1000))
    };
    let inactivity = tokio::time::sleep(jittered(60, 60));
    tokio::pin!(inactivity);
    let max_age = tokio::time::sleep(jittered(1800, 300));
    tokio::pin!(max_age);
    let backoff_reset = tokio::time::sleep(jittered(60, 60));
    tokio::pin!(backoff_reset);
    let mut backoff_reset_done = false;

    let ended = loop {
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => break Ended::Shutdown,
            Some(reply) = replies.recv() => send(&out_tx, reply),
            _ = &mut inactivity => {
                // No close frame: just drop the connection (docs/protocols.md §4.3).
                break Ended::Failed("no message from ACS within the inactivity timeout".into());
            }
            _ = &mut max_age => {
                let _ = out_tx.send(Message::Close(Some(CloseFrame {
                    code: CloseCode::Normal,
                    reason: "ConnectionExpired: Reconnect to continue".into(),
                })));
                break Ended::Clean;
            }
            _ = &mut backoff_reset, if !backoff_reset_done => {
                backoff.reset();
                backoff_reset_done = true;
            }
            frame = source.next() => {
                let text = match frame {
                    None => break Ended::Clean,
                    Some(Err(e)) if websocket::read_error_is_clean(&e) => break Ended::Clean,
                    Some(Err(e)) => break Ended::Failed(format!("ACS read failed: {e}")),
                    Some(Ok(Message::Text(t))) => t.to_string(),
                    Some(Ok(Message::Binary(b))) => {
                        tracing::warn!("unexpected binary frame on ACS; treating it as text");
                        String::from_utf8_lossy(&b).into_owned()
                    }
                    Some(Ok(Message::Close(frame))) => match websocket::close_is_clean(&frame) {
                        Ok(()) => break Ended::Clean,
                        Err(why) => break Ended::Failed(why),
                    },
                    Some(Ok(_)) => continue,
                };
                let received = tokio::time::Instant::now();
                match AcsMessage::decode(&text) {
                    Ok(message) => {
                        inactivity.as_mut().reset(received + jittered(60, 60));
                        handle(ctx, message, received, &out_tx);
                    }
                    Err(e) => tracing::warn!(error = %e, "dropping undecodable ACS frame"),
                }
            }
        }
    };
    if matches!(ended, Ended::Shutdown) {
        // Whatever was queued before the stop goes out before the close.
        while let Ok(reply) = replies.try_recv() {
            send(&out_tx, reply);
        }
        drop(out_tx);
        if tokio::time::timeout(SHUTDOWN_FLUSH, writer).await.is_err() {
            tracing::warn!("ACS connection did not close in time at shutdown");
        }
        return ended;
    }
    drop(out_tx);
    let _ = writer.await;
    ended
}

fn send(out: &mpsc::UnboundedSender<Message>, message: AcsMessage) {
    let _ = out.send(Message::Text(message.encode().into()));
}

fn handle(
    ctx: &AcsContext,
    message: AcsMessage,
    received: tokio::time::Instant,
    out: &mpsc::UnboundedSender<Message>,
) {
    match message {
        AcsMessage::HeartbeatMessage(hb) => {
            ctx.heartbeats.notify_one();
            send(
                out,
                AcsMessage::HeartbeatAckRequest(acs::HeartbeatAckRequest {
                    message_id: hb.message_id,
                }),
            );
        }
        AcsMessage::PayloadMessage(payload) => {
            let engine = ctx.engine.clone();
            let roles = Roles {
                store: ctx.role_credentials.clone(),
                policy: ctx.role_policy,
            };
            let out = out.clone();
            tokio::spawn(async move {
                let (ack, credential_acks) =
                    handle_payload(&engine, &roles, payload, received).await;
                for ack in credential_acks {
                    send(&out, AcsMessage::IAMRoleCredentialsAckRequest(ack));
                }
                if let Some(ack) = ack {
                    send(&out, AcsMessage::AckRequest(ack));
                }
            });
        }
        AcsMessage::IAMRoleCredentialsMessage(message) => {
            let engine = ctx.engine.clone();
            let roles = ctx.role_credentials.clone();
            let out = out.clone();
            tokio::spawn(async move {
                match roles.take_refresh(&message) {
                    Err(e) => tracing::warn!(error = %e, "ignoring credentials message"),
                    Ok((task_arn, ack)) => {
                        let known = engine
                            .snapshot()
                            .await
                            .is_ok_and(|tasks| tasks.iter().any(|t| t.arn() == task_arn));
                        if known {
                            tracing::info!(task = task_arn, "task credentials refreshed");
                            send(&out, AcsMessage::IAMRoleCredentialsAckRequest(ack));
                        } else {
                            tracing::warn!(
                                task = task_arn,
                                "credentials for a task this agent does not know; not acked"
                            );
                        }
                    }
                }
            });
        }
        AcsMessage::TaskManifestMessage(manifest) => {
            let engine = ctx.engine.clone();
            let store = ctx.store.clone();
            let pending = ctx.pending_verification.clone();
            let out = out.clone();
            tokio::spawn(async move {
                handle_manifest(&engine, &store, &pending, &manifest, &out).await;
            });
        }
        AcsMessage::TaskStopVerificationAck(ack) => {
            match ctx.pending_verification.confirmed(&ack) {
                Some(arns) => {
                    tracing::info!(tasks = ?arns, "stopping tasks the backend confirmed");
                    let _ = ctx.engine.stop_tasks(arns);
                }
                None => tracing::warn!(
                    message_id = ack.message_id.as_deref().unwrap_or(""),
                    "ignoring a stop verification ack that answers no pending manifest"
                ),
            }
        }
        AcsMessage::StageUpdateMessage(message) => ctx.updater.stage(message),
        AcsMessage::PerformUpdateMessage(message) => ctx.updater.perform(message),
        other => {
            tracing::debug!(
                message_type = other.type_name(),
                "ACS message not handled by this agent"
            );
        }
    }
}

/// Compares a manifest with the local tasks (docs/protocols.md §4.8): a
/// stale one is dropped without a word; an accepted one is acked, with stop
/// candidates if any, once its `timeline` is saved as `latestSeq`.
async fn handle_manifest(
    engine: &EngineHandle,
    store: &Store,
    pending: &PendingVerification,
    manifest: &acs::TaskManifestMessage,
    out: &mpsc::UnboundedSender<Message>,
) {
    let (Ok(tasks), Ok(orphaned)) = (engine.snapshot().await, engine.orphaned_tasks().await) else {
        return;
    };
    let mut running_here: Vec<String> = tasks
        .iter()
        .filter(|t| t.desired_status == TaskStatus::Running)
        .map(|t| t.arn().to_string())
        .collect();
    running_here.extend(orphaned);
    let latest_seq = match store.latest_seq().await {
        Ok(seq) => seq,
        Err(e) => {
            tracing::error!(error = %e, "cannot read latestSeq; task manifest not acked");
            return;
        }
    };
    match task_manifest::consider(manifest, latest_seq, &running_here) {
        Verdict::Invalid => tracing::warn!("ignoring task manifest without messageId, clusterArn, containerInstanceArn or timeline"),
        Verdict::Stale => tracing::info!(
            timeline = manifest.timeline.unwrap_or_default(),
            "discarding stale task manifest"
        ),
        Verdict::Accepted {
            timeline,
            ack,
            verification,
        } => {
            // The check and the raise are one transaction: of two
            // manifests racing here, only the newer one is accepted.
            match store.raise_latest_seq(timeline).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::info!(timeline, "discarding task manifest overtaken by a newer one");
                    return;
                }
                Err(e) => {
                    tracing::error!(error = %e, "saving latestSeq failed; task manifest not acked");
                    return;
                }
            }
            if let Some(id) = &ack.message_id {
                pending.accepted(id);
            }
            send(out, AcsMessage::AckRequest(ack));
            if let Some(v) = verification {
                send(out, AcsMessage::TaskStopVerificationMessage(v));
            }
        }
    }
}

/// The task-role side of payload handling.
struct Roles {
    store: Arc<CredentialsStore>,
    policy: RolePolicy,
}

/// Processes one payload (docs/protocols.md §4.5); returns the ack to send
/// when every task in it was accepted and saved, and the credential acks of
/// the accepted tasks. Nothing is acked when the change could not be saved:
/// ACS sends the payload again.
async fn handle_payload(
    engine: &EngineHandle,
    roles: &Roles,
    payload: acs::PayloadMessage,
    received: tokio::time::Instant,
) -> (
    Option<acs::AckRequest>,
    Vec<acs::IAMRoleCredentialsAckRequest>,
) {
    let non_empty = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
    if !non_empty(&payload.message_id)
        || !non_empty(&payload.cluster_arn)
        || !non_empty(&payload.container_instance_arn)
    {
        tracing::warn!("ignoring payload without messageId, clusterArn or containerInstanceArn");
        return (None, Vec::new());
    }
    let message_id = payload.message_id.clone().unwrap_or_default();
    let mut all_ok = true;
    let mut accepted = Vec::new();
    let mut credential_acks = Vec::new();
    for task in payload.tasks.iter().flatten() {
        let parsed = IncomingTask::try_from(task)
            .map_err(|e| e.reason())
            .and_then(|incoming| match roles.policy.refusal(task) {
                Some(why) => Err(why),
                None => Ok(incoming),
            });
        match parsed {
            Ok(incoming) => {
                // Stored before the task can start, so its containers find
                // them at once.
                credential_acks.extend(roles.store.take_from_payload(task, &message_id));
                accepted.push(incoming);
            }
            Err(reason) => {
                all_ok = false;
                tracing::warn!(
                    task = task.arn.as_deref().unwrap_or(""),
                    reason,
                    "rejecting task from payload"
                );
                if let Some(arn) = task.arn.clone().filter(|a| !a.is_empty()) {
                    if let Err(e) = engine.reject_task(arn, reason).await {
                        tracing::error!(error = %e, "payload not acked");
                        return (None, Vec::new());
                    }
                }
            }
        }
    }
    // Stops first, so their resources are free for the starts.
    accepted.sort_by_key(|t| t.desired_status != TaskStatus::Stopped);
    if let Err(e) = engine.add_tasks(accepted, payload.seq_num, received).await {
        tracing::error!(
            message_id = %message_id,
            error = %e,
            "payload not acked; ACS will send it again"
        );
        return (None, Vec::new());
    }
    let ack = all_ok.then_some(acs::AckRequest {
        cluster: payload.cluster_arn,
        container_instance: payload.container_instance_arn,
        message_id: payload.message_id,
    });
    (ack, credential_acks)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::docker::fake::{FakeDocker, Op};
    use crate::engine::testing::{self, arn, Options, IMAGE};

    /// The query, sorted and form-encoded, is what the Go agent sends
    /// (compare `spec/samples/acs-upgrade.request.txt`).
    #[test]
    fn url_matches_the_go_agent() {
        let url = acs_url(
            "http://127.0.0.1:5101",
            "default",
            "arn:aws:ecs:us-east-1:123456789012:container-instance/default/701bbc45062742f4a14a0c8f8f3a5e0d",
            "1.105.1",
            "a8b3e7d3",
            Some("20.10.24+dfsg1"),
            true,
        )
        .unwrap();
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:5101/ws?agentHash=a8b3e7d3&agentVersion=1.105.1&clusterArn=default&containerInstanceArn=arn%3Aaws%3Aecs%3Aus-east-1%3A123456789012%3Acontainer-instance%2Fdefault%2F701bbc45062742f4a14a0c8f8f3a5e0d&dockerVersion=DockerVersion%3A+20.10.24%2Bdfsg1&protocolVersion=2&sendCredentials=true&seqNum=1"
        );
        let with_slash = acs_url("http://h:1/acs/", "c", "i", "v", "h", None, false).unwrap();
        assert!(with_slash.as_str().starts_with("http://h:1/acs/ws?"));
    }

    fn payload(id: &str, seq: i64) -> acs::PayloadMessage {
        serde_json::from_value(serde_json::json!({
            "messageId": id,
            "clusterArn": "arn:aws:ecs:us-east-1:123456789012:cluster/default",
            "containerInstanceArn": "arn:aws:ecs:us-east-1:123456789012:container-instance/default/abc",
            "seqNum": seq,
            "tasks": [{"arn": arn("acked"), "family": "f", "version": "1",
                       "desiredStatus": "RUNNING",
                       "containers": [{"name": "c", "image": IMAGE, "essential": true}]}]
        }))
        .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_payload_is_acked_only_after_what_it_changed_is_saved() {
        let docker = FakeDocker::new();
        docker.add_image(IMAGE);
        let (store, disk) = Store::flaky().unwrap();
        let agent = testing::start(docker.clone(), store, Options::default()).await;
        let roles = Roles {
            store: Arc::new(CredentialsStore::new()),
            policy: RolePolicy {
                task_roles: false,
                host_network: false,
            },
        };
        disk.fail_writes(true);
        let (ack, credential_acks) = handle_payload(
            &agent.engine,
            &roles,
            payload("p1", 4),
            tokio::time::Instant::now(),
        )
        .await;
        assert_eq!(ack, None, "nothing saved, nothing acked");
        assert!(credential_acks.is_empty());
        assert_eq!(docker.count(Op::Create), 0);

        disk.fail_writes(false);
        // ACS sends the unacked payload again.
        let (ack, _) = handle_payload(
            &agent.engine,
            &roles,
            payload("p1", 4),
            tokio::time::Instant::now(),
        )
        .await;
        assert_eq!(ack.unwrap().message_id.as_deref(), Some("p1"));
        assert_eq!(agent.store.latest_seq().await.unwrap(), 4);
        agent
            .until_task("acked", crate::engine::status::TaskStatus::Running)
            .await;
        assert_eq!(
            docker.count(Op::Create),
            1,
            "one container for both deliveries"
        );
    }
}
