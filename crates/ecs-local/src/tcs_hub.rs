//! The TCS websocket (`GET /tcs/ws`): strips the signed header block of
//! each agent frame, acks every publish request, sends heartbeats, and keeps
//! the latest telemetry of each container instance in memory.

use crate::arn;
use crate::Context;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State as AxumState};
use axum::response::Response;
use ecs_model::envelope::{split_signed_frame, MessageBody};
use ecs_model::tcs::{
    HeartbeatMessage, PublishHealthRequest, PublishInstanceStatusRequest, PublishMetricsRequest,
    TcsMessage,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::watch;

/// The latest reports of one container instance.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InstanceTelemetry {
    pub metrics: Option<PublishMetricsRequest>,
    pub health: Option<PublishHealthRequest>,
    pub instance_status: Option<PublishInstanceStatusRequest>,
}

/// Telemetry received over TCS, by container instance id.
pub struct TcsHub {
    latest: Mutex<HashMap<String, InstanceTelemetry>>,
    heartbeat_interval: Duration,
    first_heartbeat: Duration,
}

impl TcsHub {
    pub fn new(heartbeat_interval: Duration, first_heartbeat: Duration) -> Self {
        Self {
            latest: Mutex::new(HashMap::new()),
            heartbeat_interval,
            first_heartbeat,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, InstanceTelemetry>> {
        self.latest.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The latest telemetry of an instance (given by id or ARN).
    pub fn latest(&self, instance: &str) -> Option<InstanceTelemetry> {
        self.lock().get(arn::resource_id(instance)).cloned()
    }

    /// Handles one agent frame; returns the ack to send, if any.
    fn receive(&self, instance_id: &str, frame: &[u8]) -> Option<TcsMessage> {
        // Agents always send the header block; accept bare JSON too.
        let json = match split_signed_frame(frame) {
            Ok((_headers, json)) => json,
            Err(_) => frame,
        };
        let text = String::from_utf8_lossy(json);
        let message = match TcsMessage::decode(&text) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(instance = instance_id, error = %e, "undecodable TCS frame ignored");
                return None;
            }
        };
        let ok = MessageBody {
            message: Some("ok".to_owned()),
        };
        let mut latest = self.lock();
        let entry = latest.entry(instance_id.to_owned()).or_default();
        match message {
            TcsMessage::PublishMetricsRequest(m) => {
                entry.metrics = Some(m);
                Some(TcsMessage::AckPublishMetric(ok))
            }
            TcsMessage::PublishHealthRequest(m) => {
                entry.health = Some(m);
                Some(TcsMessage::AckPublishHealth(ok))
            }
            TcsMessage::PublishInstanceStatusRequest(m) => {
                entry.instance_status = Some(m);
                Some(TcsMessage::AckPublishInstanceStatus(ok))
            }
            other => {
                tracing::debug!(
                    instance = instance_id,
                    frame_type = other.type_name(),
                    "TCS frame ignored"
                );
                None
            }
        }
    }
}

/// `GET /tcs/ws`. Every agent is accepted: telemetry is never a reason to
/// push one away.
pub(crate) async fn upgrade(
    AxumState(ctx): AxumState<Arc<Context>>,
    RawQuery(raw): RawQuery,
    ws: WebSocketUpgrade,
) -> Response {
    let instance = form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "containerInstance")
        .map(|(_, v)| arn::resource_id(&v).to_owned())
        .unwrap_or_default();
    let shutdown = ctx.shutdown.clone();
    ws.on_upgrade(move |socket| run(ctx, socket, instance, shutdown))
}

async fn run(
    ctx: Arc<Context>,
    mut socket: WebSocket,
    instance_id: String,
    mut shutdown: watch::Receiver<bool>,
) {
    let hub = &ctx.tcs;
    tracing::info!(instance = instance_id, "agent connected (TCS)");
    let start = tokio::time::Instant::now() + hub.first_heartbeat;
    let mut heartbeat = tokio::time::interval_at(start, hub.heartbeat_interval);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            inbound = socket.recv() => {
                let reply = match inbound {
                    Some(Ok(Message::Text(text))) => hub.receive(&instance_id, text.as_str().as_bytes()),
                    Some(Ok(Message::Binary(bytes))) => hub.receive(&instance_id, &bytes),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => None,
                    Some(Ok(Message::Close(_))) | None => break,
                    Some(Err(e)) => {
                        tracing::debug!(instance = instance_id, error = %e, "TCS read failed");
                        break;
                    }
                };
                if let Some(reply) = reply {
                    if socket.send(Message::Text(reply.encode().into())).await.is_err() {
                        break;
                    }
                }
            }
            _ = heartbeat.tick() => {
                let frame = TcsMessage::HeartbeatMessage(HeartbeatMessage { healthy: Some(true) }).encode();
                if socket.send(Message::Text(frame.into())).await.is_err() {
                    break;
                }
            }
            _ = shutdown.changed() => {
                let _ = socket
                    .send(Message::Close(Some(CloseFrame {
                        code: 1001,
                        reason: "ecs-local is shutting down".into(),
                    })))
                    .await;
                break;
            }
        }
    }
    tracing::info!(instance = instance_id, "agent disconnected (TCS)");
}
