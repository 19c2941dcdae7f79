//! The TCS websocket (`GET /tcs/ws`): strips the signed header block of
//! each agent frame, acks every publish request, sends heartbeats, keeps
//! the latest telemetry of each container instance in memory, and writes
//! container health reports into the tasks (`healthStatus` in DescribeTasks).

use crate::arn;
use crate::store::{State, Store, StoreError};
use crate::Context;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State as AxumState};
use axum::response::Response;
use ecs_model::ecs_api::Container;
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
    store: Arc<Store>,
    /// Task and container utilisation, for `GET /metrics`.
    pub metrics: crate::metrics_page::MetricsBoard,
    latest: Mutex<HashMap<String, InstanceTelemetry>>,
    heartbeat_interval: Duration,
    first_heartbeat: Duration,
    /// Frames received from agents, for `GET /metrics`.
    pub frames_received: crate::plane_metrics::Counter,
}

impl TcsHub {
    pub fn new(store: Arc<Store>, heartbeat_interval: Duration, first_heartbeat: Duration) -> Self {
        Self {
            store,
            metrics: crate::metrics_page::MetricsBoard::default(),
            latest: Mutex::new(HashMap::new()),
            heartbeat_interval,
            first_heartbeat,
            frames_received: crate::plane_metrics::Counter::default(),
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
        self.frames_received.add(1);
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
        if let TcsMessage::PublishHealthRequest(m) = &message {
            // Persisted with the task: health changes are rare, and an
            // unchanged report does not touch the disk.
            let written = self.store.update(|st| {
                apply_health(st, instance_id, m);
                Ok::<_, StoreError>(())
            });
            if let Err(e) = written {
                tracing::warn!(instance = instance_id, error = %e, "saving health failed");
            }
        }
        let mut latest = self.lock();
        let entry = latest.entry(instance_id.to_owned()).or_default();
        match message {
            TcsMessage::PublishMetricsRequest(m) => {
                self.metrics.record(instance_id, &m);
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

/// The health statuses ECS knows; anything else an agent sends is ignored.
const HEALTH_STATUSES: [&str; 3] = ["HEALTHY", "UNHEALTHY", "UNKNOWN"];

/// Writes one health report into the tasks it names that run on the
/// reporting instance: each named container's `healthStatus`, then the
/// task's, derived as ECS does. Returns how many tasks changed.
pub fn apply_health(state: &mut State, instance_id: &str, report: &PublishHealthRequest) -> usize {
    let mut changed = 0;
    for reported in report.tasks.iter().flatten() {
        let Some(task_arn) = reported.task_arn.as_deref() else {
            continue;
        };
        let id = arn::resource_id(task_arn);
        let Some(record) = state.tasks.get(id) else {
            continue;
        };
        // An agent only speaks for its own tasks.
        if record.instance_id.as_deref() != Some(instance_id) {
            continue;
        }
        let checked_essentials: Vec<String> = state
            .task_definition(&record.family, record.revision)
            .map(|d| {
                d.container_definitions
                    .iter()
                    .filter(|c| c.essential != Some(false) && c.health_check.is_some())
                    .filter_map(|c| c.name.clone())
                    .collect()
            })
            .unwrap_or_default();
        let Some(record) = state.tasks.get_mut(id) else {
            continue;
        };
        let before = record.task.clone();
        let containers = record.task.containers.get_or_insert_with(Vec::new);
        for health in reported.containers.iter().flatten() {
            let (Some(name), Some(status)) = (&health.container_name, &health.health_status) else {
                continue;
            };
            if !HEALTH_STATUSES.contains(&status.as_str()) {
                continue;
            }
            if let Some(c) = containers
                .iter_mut()
                .find(|c| c.name.as_deref() == Some(name))
            {
                c.health_status = Some(status.clone());
            }
        }
        let task_status = task_health_status(containers, &checked_essentials);
        record.task.health_status = Some(task_status.to_owned());
        if record.task != before {
            record.touch();
            changed += 1;
        }
    }
    changed
}

/// A task's `healthStatus` as ECS computes it from the essential containers
/// that have a health check: UNHEALTHY if any of them is UNHEALTHY, HEALTHY
/// if all of them are HEALTHY, UNKNOWN otherwise (and when there are none).
pub fn task_health_status(containers: &[Container], checked_essentials: &[String]) -> &'static str {
    let statuses: Vec<&str> = checked_essentials
        .iter()
        .map(|name| {
            containers
                .iter()
                .find(|c| c.name.as_ref() == Some(name))
                .and_then(|c| c.health_status.as_deref())
                .unwrap_or("UNKNOWN")
        })
        .collect();
    if statuses.contains(&"UNHEALTHY") {
        "UNHEALTHY"
    } else if !statuses.is_empty() && statuses.iter().all(|s| *s == "HEALTHY") {
        "HEALTHY"
    } else {
        "UNKNOWN"
    }
}

/// `GET /tcs/ws`. Every agent is accepted: telemetry is never a reason to
/// push one away.
pub(crate) async fn upgrade(
    AxumState(ctx): AxumState<Arc<Context>>,
    RawQuery(raw): RawQuery,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if let Err(e) = ctx.authenticate("GET", &uri, &headers, b"") {
        return crate::acs_hub::refuse_auth(&e);
    }
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
                let frame: Vec<u8> = match inbound {
                    Some(Ok(Message::Text(text))) => text.as_str().as_bytes().to_vec(),
                    Some(Ok(Message::Binary(bytes))) => bytes.to_vec(),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(_))) | None => break,
                    Some(Err(e)) => {
                        tracing::debug!(instance = instance_id, error = %e, "TCS read failed");
                        break;
                    }
                };
                // Health reports are saved: off the async workers.
                let id = instance_id.clone();
                let reply = ctx.blocking(move |ctx| ctx.tcs.receive(&id, &frame)).await.flatten();
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::arn::ArnBuilder;
    use crate::lifecycle::{self, TaskSpec};
    use crate::store::InstanceRecord;
    use ecs_model::ecs_api::{ContainerDefinition, HealthCheck, TaskDefinition};
    use ecs_model::tcs::{ContainerHealth, TaskHealth};

    fn container(name: &str, essential: bool, checked: bool) -> ContainerDefinition {
        ContainerDefinition {
            name: Some(name.into()),
            image: Some("busybox".into()),
            memory: Some(16),
            essential: Some(essential),
            health_check: checked.then(|| HealthCheck {
                command: Some(vec!["CMD-SHELL".into(), "exit 0".into()]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Task `t1` of `web:1` (essential checked `a` and `b`, non-essential
    /// checked `side`, essential unchecked `plain`) placed on instance `i1`.
    fn state() -> State {
        let arns = ArnBuilder::new("us-east-1");
        let mut st = State::default();
        st.task_definitions.insert(
            "web".into(),
            vec![TaskDefinition {
                task_definition_arn: Some(arns.task_definition("web", 1)),
                family: Some("web".into()),
                revision: Some(1),
                container_definitions: vec![
                    container("a", true, true),
                    container("b", true, true),
                    container("side", false, true),
                    container("plain", true, false),
                ],
                ..Default::default()
            }],
        );
        for id in ["i1", "i2"] {
            st.instances.insert(
                id.into(),
                InstanceRecord {
                    id: id.into(),
                    arn: arns.container_instance("default", id),
                    cluster: "default".into(),
                    ec2_instance_id: None,
                    attributes: vec![],
                    custom_attributes: Vec::new(),
                    registered_resources: vec![],
                    status: "ACTIVE".into(),
                    agent_connected: true,
                    version_info: None,
                    registered_at: 0.0,
                    version: 1,
                    tags: None,
                    agent_update: None,
                },
            );
        }
        let spec = TaskSpec {
            task_arn: arns.task("default", "t1"),
            cluster: "default".into(),
            family: "web".into(),
            revision: 1,
            instance_id: "i1".into(),
            ..Default::default()
        };
        let record = lifecycle::new_task(&arns, &st, spec, 0.0).unwrap();
        st.tasks.insert(record.id.clone(), record);
        st
    }

    fn report(statuses: &[(&str, &str)]) -> PublishHealthRequest {
        PublishHealthRequest {
            tasks: Some(vec![TaskHealth {
                task_arn: Some(ArnBuilder::new("us-east-1").task("default", "t1")),
                containers: Some(
                    statuses
                        .iter()
                        .map(|(name, status)| ContainerHealth {
                            container_name: Some((*name).into()),
                            health_status: Some((*status).into()),
                            status_since: Some(1.5),
                            status_message: None,
                        })
                        .collect(),
                ),
                ..Default::default()
            }]),
            ..Default::default()
        }
    }

    fn health(st: &State) -> (String, Vec<(String, String)>) {
        let task = &st.tasks["t1"].task;
        let containers = task
            .containers
            .iter()
            .flatten()
            .map(|c| {
                (
                    c.name.clone().unwrap(),
                    c.health_status.clone().unwrap_or_default(),
                )
            })
            .collect();
        (task.health_status.clone().unwrap(), containers)
    }

    fn status_of(st: &State, name: &str) -> String {
        health(st).1.into_iter().find(|(n, _)| n == name).unwrap().1
    }

    #[test]
    fn container_health_comes_from_the_latest_report() {
        let mut st = state();
        assert_eq!(health(&st).0, "UNKNOWN");
        assert_eq!(apply_health(&mut st, "i1", &report(&[("a", "HEALTHY")])), 1);
        assert_eq!(status_of(&st, "a"), "HEALTHY");
        assert_eq!(status_of(&st, "b"), "UNKNOWN");
        assert_eq!(health(&st).0, "UNKNOWN", "b has not reported yet");
        apply_health(&mut st, "i1", &report(&[("a", "UNHEALTHY")]));
        assert_eq!(status_of(&st, "a"), "UNHEALTHY");
        // The same report again changes nothing (no write, no version bump).
        let version = st.tasks["t1"].task.version;
        assert_eq!(
            apply_health(&mut st, "i1", &report(&[("a", "UNHEALTHY")])),
            0
        );
        assert_eq!(st.tasks["t1"].task.version, version);
    }

    #[test]
    fn task_health_follows_the_essential_checked_containers() {
        let mut st = state();
        apply_health(
            &mut st,
            "i1",
            &report(&[("a", "HEALTHY"), ("b", "HEALTHY"), ("side", "UNHEALTHY")]),
        );
        assert_eq!(
            health(&st).0,
            "HEALTHY",
            "a non-essential container does not count, nor one without a check"
        );
        apply_health(&mut st, "i1", &report(&[("b", "UNHEALTHY")]));
        assert_eq!(health(&st).0, "UNHEALTHY");
        apply_health(&mut st, "i1", &report(&[("b", "UNKNOWN")]));
        assert_eq!(health(&st).0, "UNKNOWN");
    }

    #[test]
    fn reports_for_other_instances_tasks_or_unknown_values_are_ignored() {
        let mut st = state();
        assert_eq!(apply_health(&mut st, "i2", &report(&[("a", "HEALTHY")])), 0);
        assert_eq!(status_of(&st, "a"), "UNKNOWN");
        apply_health(
            &mut st,
            "i1",
            &report(&[("a", "GREAT"), ("ghost", "HEALTHY")]),
        );
        assert_eq!(status_of(&st, "a"), "UNKNOWN");
        let mut other = report(&[("a", "HEALTHY")]);
        other.tasks.as_mut().unwrap()[0].task_arn =
            Some("arn:aws:ecs:us-east-1:0:task/default/nope".into());
        assert_eq!(apply_health(&mut st, "i1", &other), 0);
    }

    #[test]
    fn task_without_checked_essential_containers_is_unknown() {
        let c = |name: &str, status: &str| Container {
            name: Some(name.into()),
            health_status: Some(status.into()),
            ..Default::default()
        };
        assert_eq!(task_health_status(&[c("x", "HEALTHY")], &[]), "UNKNOWN");
        assert_eq!(
            task_health_status(&[c("x", "HEALTHY")], &["x".into()]),
            "HEALTHY"
        );
        assert_eq!(
            task_health_status(&[c("x", "HEALTHY")], &["x".into(), "missing".into()]),
            "UNKNOWN"
        );
    }
}
