//! The ACS websocket (`GET /acs/ws`): the handshake checks, one live
//! connection per container instance, heartbeats, and delivery of task
//! payloads until the agent acks each task's current desired status.
//!
//! Delivery is at-least-once without a resend timer: a payload that was not
//! acked is sent again on the agent's next connection (resending is safe,
//! docs/protocols.md §4.5), never in a loop on the same one.
//!
//! Task IAM role credentials (see [`crate::credentials`]) ride in the
//! payloads (`roleCredentials`, `executionRoleCredentials`) and in
//! `IAMRoleCredentialsMessage`s (docs/protocols.md §4.7): one per role of every
//! live task of the instance when the agent connects with
//! `sendCredentials=true`, one per refreshed set, and, on any other
//! connection, one per set the agent has not acked yet. An
//! `IAMRoleCredentialsAckRequest` marks the set with that `credentialsId`
//! and `expiration` acked.
//!
//! Every `task_manifest_interval` each connection also gets a
//! `TaskManifestMessage` (docs/protocols.md §4.8) listing the tasks the plane wants
//! RUNNING on that instance. The agent acks it and, when it runs tasks the
//! manifest does not list, asks with a `TaskStopVerificationMessage`; the
//! hub confirms only the candidates the plane does not want RUNNING there
//! ([`verify_stops`]) in a `TaskStopVerificationAck`.
//!
//! An agent update (see [`crate::agent_update`]) is driven from here too:
//! `StageUpdateMessage` when UpdateContainerAgent is called or when the
//! agent connects with an update under way, `PerformUpdateMessage` on the
//! stage's ack, and the instance's `agentUpdateStatus` from the agent's
//! acks, nacks and reconnection.

use crate::agent_update::{self, Bundle, OnConnect, UpdateStatus};
use crate::arn;
use crate::clock;
use crate::credentials::RoleType;
use crate::render;
use crate::store::{State, Store, StoreError, TaskRecord};
use crate::Context;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State as AxumState};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use ecs_model::acs::{
    AcsMessage, HeartbeatMessage, IAMRoleCredentialsAckRequest, IAMRoleCredentialsMessage,
    NackRequest, PayloadMessage, PerformUpdateMessage, StageUpdateMessage, TaskIdentifier,
    TaskManifestMessage, TaskStopVerificationAck, TaskStopVerificationMessage, UpdateInfo,
};
use ecs_model::ecs_api::VersionInfo;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Close code for connections the plane ends on purpose (replaced by a
/// newer connection, instance deregistered). It is not 1000/1001/1011, so
/// the agent backs off instead of reconnecting at once (docs/protocols.md §3.7).
pub const CLOSE_PUSH_AWAY: u16 = 4000;

/// Close code when the plane shuts down: the agent reconnects when it can.
const CLOSE_GOING_AWAY: u16 = 1001;

/// What the hub asks a connection to do.
#[derive(Debug)]
enum Outbound {
    Frame(String),
    Close(u16, String),
}

struct Connection {
    generation: u64,
    tx: mpsc::UnboundedSender<Outbound>,
    /// The `Host` the agent reached the plane at: where it can download
    /// an agent update from.
    host: String,
    /// (task id, desired status) already sent on this connection.
    sent: HashSet<(String, String)>,
}

/// What an `AckRequest` for a payload confirms.
#[derive(Debug, Clone)]
struct PendingAck {
    task_id: String,
    desired: String,
}

/// The last `TaskManifestMessage` sent to an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestSent {
    pub message_id: String,
    pub timeline: i64,
    /// The agent sent an `AckRequest` with this `messageId`.
    pub acked: bool,
}

#[derive(Default)]
struct HubState {
    connections: HashMap<String, Connection>,
    pending: HashMap<String, PendingAck>,
    /// Instance id → the last manifest sent to it. Acks of manifests are
    /// matched here first, so they are never taken for payload acks.
    manifests: HashMap<String, ManifestSent>,
    /// Task id → the desired status and message id of its last payload,
    /// while that one is not acked: sending the same again (on a new
    /// connection) is a resend; any new payload for the task replaces it,
    /// and its entry in `pending`, which no ack will now clear.
    unacked: HashMap<String, (String, String)>,
}

/// Both roles, in the order their messages are sent.
const ROLES: [RoleType; 2] = [RoleType::TaskApplication, RoleType::TaskExecution];

/// The agents' ACS connections.
pub struct AcsHub {
    store: Arc<Store>,
    state: Mutex<HubState>,
    /// Serialises payload and credentials building, so two deliveries for
    /// one instance cannot both send the same task, and credentials reach
    /// an agent in the order they were minted.
    delivery: Mutex<()>,
    generation: AtomicU64,
    heartbeat_interval: Duration,
    first_heartbeat: Duration,
    /// Lifetime of refreshed credentials.
    credentials_ttl: Duration,
    /// Time between `TaskManifestMessage`s on a connection (the first one
    /// goes out this long after connecting).
    task_manifest_interval: Duration,
    /// The agent update the plane offers.
    agent_update: Option<Arc<Bundle>>,
    /// What the plane's configuration adds to rendered tasks.
    render: render::Settings,
    /// Task payloads sent, and acked, for `GET /metrics`.
    pub payloads_sent: crate::plane_metrics::Counter,
    pub payloads_acked: crate::plane_metrics::Counter,
    /// Payloads sent again because the one before was never acked.
    pub payloads_resent: crate::plane_metrics::Counter,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing here can be left half-updated by a panic.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl AcsHub {
    pub fn new(
        store: Arc<Store>,
        heartbeat_interval: Duration,
        first_heartbeat: Duration,
        credentials_ttl: Duration,
        task_manifest_interval: Duration,
    ) -> Self {
        Self {
            store,
            state: Mutex::new(HubState::default()),
            delivery: Mutex::new(()),
            generation: AtomicU64::new(0),
            heartbeat_interval,
            first_heartbeat,
            credentials_ttl,
            task_manifest_interval,
            agent_update: None,
            render: render::Settings::default(),
            payloads_sent: crate::plane_metrics::Counter::default(),
            payloads_acked: crate::plane_metrics::Counter::default(),
            payloads_resent: crate::plane_metrics::Counter::default(),
        }
    }

    /// Offers `bundle` to `UpdateContainerAgent`.
    pub fn with_agent_update(mut self, bundle: Option<Arc<Bundle>>) -> Self {
        self.agent_update = bundle;
        self
    }

    /// Renders tasks with `settings` (the plane's region and ECR endpoint
    /// override) instead of the defaults.
    pub fn with_render_settings(mut self, settings: render::Settings) -> Self {
        self.render = settings;
        self
    }

    /// Makes `tx` the instance's connection; an older one is told to close.
    fn register(
        &self,
        instance_id: &str,
        tx: mpsc::UnboundedSender<Outbound>,
        host: String,
    ) -> u64 {
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let old = lock(&self.state).connections.insert(
            instance_id.to_owned(),
            Connection {
                generation,
                tx,
                host,
                sent: HashSet::new(),
            },
        );
        if let Some(old) = old {
            tracing::info!(
                instance = instance_id,
                "newer ACS connection replaces the older one"
            );
            let _ = old.tx.send(Outbound::Close(
                CLOSE_PUSH_AWAY,
                "replaced by a newer connection".to_owned(),
            ));
        }
        generation
    }

    /// Forgets the connection if it is still the current one; returns
    /// whether it was.
    fn unregister(&self, instance_id: &str, generation: u64) -> bool {
        let mut state = lock(&self.state);
        let current = state
            .connections
            .get(instance_id)
            .is_some_and(|c| c.generation == generation);
        if current {
            state.connections.remove(instance_id);
        }
        current
    }

    /// Closes the instance's connection, if any, so that the agent backs off.
    pub fn disconnect(&self, instance_id: &str, reason: &str) {
        if let Some(conn) = lock(&self.state).connections.remove(instance_id) {
            let _ = conn
                .tx
                .send(Outbound::Close(CLOSE_PUSH_AWAY, reason.to_owned()));
        }
    }

    /// Whether an agent is connected for the instance.
    pub fn is_connected(&self, instance_id: &str) -> bool {
        lock(&self.state).connections.contains_key(instance_id)
    }

    /// Sends a payload for every task on the instance whose current desired
    /// status the agent has not acked and that this connection has not been
    /// sent yet. Does nothing when the agent is not connected.
    pub fn deliver(&self, instance_id: &str) {
        let _serial = lock(&self.delivery);
        let Some(already_sent) = lock(&self.state)
            .connections
            .get(instance_id)
            .map(|c| c.sent.clone())
        else {
            return;
        };
        let payloads = self.store.update(|st| {
            Ok::<_, StoreError>(build_payloads(st, instance_id, &already_sent, &self.render))
        });
        let payloads = match payloads {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(instance = instance_id, error = %e, "cannot record payloads; not sent");
                return;
            }
        };
        let mut state = lock(&self.state);
        let HubState {
            connections,
            pending,
            unacked,
            ..
        } = &mut *state;
        let Some(conn) = connections.get_mut(instance_id) else {
            return;
        };
        for p in payloads {
            let last = (p.desired.clone(), p.message_id.clone());
            if let Some((desired, message_id)) = unacked.insert(p.task_id.clone(), last) {
                pending.remove(&message_id);
                if desired == p.desired {
                    self.payloads_resent.add(1);
                }
            }
            tracing::info!(
                instance = instance_id,
                task = p.task_arn,
                desired = p.desired,
                message_id = p.message_id,
                "payload sent"
            );
            conn.sent.insert((p.task_id.clone(), p.desired.clone()));
            pending.insert(
                p.message_id,
                PendingAck {
                    task_id: p.task_id,
                    desired: p.desired,
                },
            );
            let _ = conn.tx.send(Outbound::Frame(p.frame));
            self.payloads_sent.add(1);
        }
    }

    /// Sends the instance's agent a `TaskManifestMessage` (see
    /// [`build_manifest`]) and remembers it as the instance's last one.
    /// Returns the manifest's message id, or `None` when the agent is not
    /// connected or the new `timeline` could not be saved.
    pub fn send_manifest(&self, instance_id: &str) -> Option<String> {
        // Under the delivery lock, so payload seqNums and manifest
        // timelines leave in the order they were drawn from the counter.
        let _serial = lock(&self.delivery);
        if !self.is_connected(instance_id) {
            return None;
        }
        let built = self.store.update(|st| {
            Ok::<_, StoreError>(build_manifest(st, instance_id, clock::epoch_millis()))
        });
        let manifest = match built {
            Ok(Some(m)) => m,
            Ok(None) => return None,
            Err(e) => {
                tracing::error!(instance = instance_id, error = %e, "cannot record a manifest timeline; not sent");
                return None;
            }
        };
        let message_id = manifest.message_id.clone().unwrap_or_default();
        let timeline = manifest.timeline.unwrap_or_default();
        let count = manifest.tasks.as_ref().map_or(0, Vec::len);
        let frame = AcsMessage::TaskManifestMessage(manifest).encode();
        let mut state = lock(&self.state);
        let conn = state.connections.get(instance_id)?;
        let _ = conn.tx.send(Outbound::Frame(frame));
        state.manifests.insert(
            instance_id.to_owned(),
            ManifestSent {
                message_id: message_id.clone(),
                timeline,
                acked: false,
            },
        );
        tracing::debug!(
            instance = instance_id,
            message_id,
            timeline,
            tasks = count,
            "task manifest sent"
        );
        Some(message_id)
    }

    /// The last manifest sent to an instance, and whether it was acked.
    pub fn last_manifest(&self, instance_id: &str) -> Option<ManifestSent> {
        lock(&self.state).manifests.get(instance_id).cloned()
    }

    /// Answers a `TaskStopVerificationMessage` with the candidates the
    /// plane confirms (see [`verify_stops`]). The ack is sent even when it
    /// confirms nothing.
    fn stop_verification(&self, instance_id: &str, msg: &TaskStopVerificationMessage) {
        let message_id = msg.message_id.clone().unwrap_or_default();
        let known = lock(&self.state)
            .manifests
            .get(instance_id)
            .is_some_and(|m| m.message_id == message_id);
        if !known {
            tracing::info!(
                instance = instance_id,
                message_id,
                "stop verification for a manifest that is not the instance's last one"
            );
        }
        let candidates = msg.stop_candidates.as_deref().unwrap_or_default();
        let stop_tasks = self
            .store
            .read(|st| verify_stops(st, instance_id, candidates));
        tracing::info!(
            instance = instance_id,
            message_id,
            candidates = candidates.len(),
            confirmed = stop_tasks.len(),
            "stop verification answered"
        );
        let frame = AcsMessage::TaskStopVerificationAck(TaskStopVerificationAck {
            generated_at: Some(clock::epoch_millis()),
            message_id: Some(message_id),
            stop_tasks: Some(stop_tasks),
        })
        .encode();
        if let Some(conn) = lock(&self.state).connections.get(instance_id) {
            let _ = conn.tx.send(Outbound::Frame(frame));
        }
    }

    /// The instance's connection: its sender and the host the agent used.
    fn connection_of(
        &self,
        instance_id: &str,
    ) -> Option<(mpsc::UnboundedSender<Outbound>, String)> {
        lock(&self.state)
            .connections
            .get(instance_id)
            .map(|c| (c.tx.clone(), c.host.clone()))
    }

    /// Runs `change` on the instance's saved record, with its cluster's ARN
    /// and its own, in one store update; `None` when there is no such
    /// instance or `change` has nothing to send.
    fn update_instance<T>(
        &self,
        instance_id: &str,
        change: impl FnOnce(&mut crate::store::InstanceRecord, Option<String>, String) -> Option<T>,
    ) -> Result<Option<T>, StoreError> {
        self.store.update(|st| {
            let Some(cluster) = st.instances.get(instance_id).map(|r| r.cluster.clone()) else {
                return Ok(None);
            };
            let cluster_arn = st.clusters.get(&cluster).map(|c| c.arn.clone());
            let Some(record) = st.instances.get_mut(instance_id) else {
                return Ok(None);
            };
            let instance_arn = record.arn.clone();
            Ok(change(record, cluster_arn, instance_arn))
        })
    }

    /// Sends the instance's agent the `StageUpdateMessage` of its update
    /// under way, which becomes `STAGING`. Does nothing when the agent is
    /// not connected: the update then waits for its next connection
    /// ([`AcsHub::resume_update`]).
    pub fn stage_update(&self, instance_id: &str) {
        let Some((tx, host)) = self.connection_of(instance_id) else {
            return;
        };
        let bundle = self.agent_update.clone();
        let built = self.update_instance(instance_id, |record, cluster_arn, instance_arn| {
            let update = record
                .agent_update
                .as_mut()
                .filter(|u| u.status.in_progress())?;
            // A plane restarted without its bundle cannot finish the update.
            let Some(bundle) = bundle else {
                tracing::warn!(
                    instance = instance_id,
                    "agent update failed: the plane no longer offers a bundle"
                );
                update.status = UpdateStatus::Failed;
                record.version = record.version.saturating_add(1);
                return None;
            };
            let message_id = uuid::Uuid::new_v4().to_string();
            update.status = UpdateStatus::Staging;
            update.bundle = bundle.sha256().to_owned();
            update.stage_message_id = Some(message_id.clone());
            update.perform_message_id = None;
            update.perform_acked = false;
            record.version = record.version.saturating_add(1);
            Some(StageUpdateMessage {
                cluster_arn,
                container_instance_arn: Some(instance_arn),
                message_id: Some(message_id),
                update_info: Some(UpdateInfo {
                    location: Some(bundle.location(&host)),
                    signature: Some(bundle.sha256().to_owned()),
                }),
            })
        });
        match built {
            Ok(Some(stage)) => {
                tracing::info!(
                    instance = instance_id,
                    message_id = stage.message_id.as_deref().unwrap_or_default(),
                    location = stage
                        .update_info
                        .as_ref()
                        .and_then(|u| u.location.as_deref())
                        .unwrap_or_default(),
                    "agent update staging"
                );
                let _ = tx.send(Outbound::Frame(
                    AcsMessage::StageUpdateMessage(stage).encode(),
                ));
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(instance = instance_id, error = %e, "cannot record an agent update stage; not sent")
            }
        }
    }

    /// Sends the `PerformUpdateMessage` of a `STAGED` update, which becomes
    /// `UPDATING`. Without a connection the update stays `STAGED` and is
    /// staged again on the next one.
    fn perform_update(&self, instance_id: &str) {
        let Some((tx, host)) = self.connection_of(instance_id) else {
            return;
        };
        let built = self.update_instance(instance_id, |record, cluster_arn, instance_arn| {
            let update = record
                .agent_update
                .as_mut()
                .filter(|u| u.status == UpdateStatus::Staged)?;
            let message_id = uuid::Uuid::new_v4().to_string();
            update.status = UpdateStatus::Updating;
            update.perform_message_id = Some(message_id.clone());
            update.perform_acked = false;
            // The same update info as the stage; the agent does not read it.
            let update_info = self.agent_update.as_ref().map(|b| UpdateInfo {
                location: Some(b.location(&host)),
                signature: Some(b.sha256().to_owned()),
            });
            record.version = record.version.saturating_add(1);
            Some(PerformUpdateMessage {
                cluster_arn,
                container_instance_arn: Some(instance_arn),
                message_id: Some(message_id),
                update_info,
            })
        });
        match built {
            Ok(Some(perform)) => {
                tracing::info!(
                    instance = instance_id,
                    message_id = perform.message_id.as_deref().unwrap_or_default(),
                    "agent update staged; performing it"
                );
                let _ = tx.send(Outbound::Frame(
                    AcsMessage::PerformUpdateMessage(perform).encode(),
                ));
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(instance = instance_id, error = %e, "cannot record an agent update perform; not sent")
            }
        }
    }

    /// On a new connection: stages the instance's update under way again,
    /// or, when the agent acked the perform before, records it `UPDATED`.
    pub fn resume_update(&self, instance_id: &str) {
        let next = self.store.read(|st| {
            agent_update::on_connect(
                st.instances
                    .get(instance_id)
                    .and_then(|r| r.agent_update.as_ref()),
            )
        });
        match next {
            OnConnect::Nothing => {}
            OnConnect::Stage => self.stage_update(instance_id),
            OnConnect::Updated => {
                let result = self.store.update(|st| {
                    if let Some(record) = st.instances.get_mut(instance_id) {
                        if let Some(update) = record.agent_update.as_mut() {
                            update.status = UpdateStatus::Updated;
                            record.version = record.version.saturating_add(1);
                        }
                    }
                    Ok::<_, StoreError>(())
                });
                match result {
                    Ok(()) => tracing::info!(
                        instance = instance_id,
                        "agent update complete: the agent is back"
                    ),
                    Err(e) => {
                        tracing::error!(instance = instance_id, error = %e, "cannot record a completed agent update")
                    }
                }
            }
        }
    }

    /// An `AckRequest` of the instance's update messages: a stage ack makes
    /// it `STAGED` and sends the perform; a perform ack is noted. Returns
    /// whether the ack was one of them.
    fn update_acked(&self, instance_id: &str, message_id: &str) -> bool {
        let acked = self.store.update(|st| {
            let Some(record) = st.instances.get_mut(instance_id) else {
                return Ok::<_, StoreError>(None);
            };
            let Some(update) = record.agent_update.as_mut() else {
                return Ok(None);
            };
            if update.stage_message_id.as_deref() == Some(message_id) {
                if update.status == UpdateStatus::Staging {
                    update.status = UpdateStatus::Staged;
                    record.version = record.version.saturating_add(1);
                }
                return Ok(Some(UpdateStatus::Staged));
            }
            if update.perform_message_id.as_deref() == Some(message_id) {
                update.perform_acked = true;
                return Ok(Some(UpdateStatus::Updating));
            }
            Ok(None)
        });
        match acked {
            Ok(Some(UpdateStatus::Staged)) => {
                self.perform_update(instance_id);
                true
            }
            Ok(Some(_)) => {
                tracing::info!(
                    instance = instance_id,
                    message_id,
                    "agent acked the update perform; it exits to install it"
                );
                true
            }
            Ok(None) => false,
            Err(e) => {
                tracing::error!(instance = instance_id, error = %e, "cannot record an agent update ack");
                true
            }
        }
    }

    /// A `NackRequest` of the instance's current stage or perform makes
    /// the update `FAILED`. Nacks of older messages (a stage the agent
    /// replaced) change nothing.
    fn update_nacked(&self, instance_id: &str, nack: &NackRequest) {
        let message_id = nack.message_id.as_deref().unwrap_or_default();
        let reason = nack.reason.as_deref().unwrap_or_default();
        let failed = self.store.update(|st| {
            let Some(record) = st.instances.get_mut(instance_id) else {
                return Ok::<_, StoreError>(false);
            };
            let Some(update) = record.agent_update.as_mut() else {
                return Ok(false);
            };
            let ours = !message_id.is_empty()
                && (update.stage_message_id.as_deref() == Some(message_id)
                    || update.perform_message_id.as_deref() == Some(message_id));
            if !ours || !update.status.in_progress() {
                return Ok(false);
            }
            update.status = UpdateStatus::Failed;
            record.version = record.version.saturating_add(1);
            Ok(true)
        });
        match failed {
            Ok(true) => tracing::warn!(
                instance = instance_id,
                message_id,
                reason,
                "agent update failed: the agent refused it"
            ),
            Ok(false) => tracing::warn!(
                instance = instance_id,
                message_id,
                reason,
                "agent nacked a message"
            ),
            Err(e) => {
                tracing::error!(instance = instance_id, error = %e, "cannot record an agent update nack")
            }
        }
    }

    /// Records an `AckRequest`: of the instance's last manifest, of its
    /// agent update, or of a payload (the task's desired status reached
    /// the agent).
    fn acked(&self, instance_id: &str, message_id: &str) {
        {
            let mut state = lock(&self.state);
            if let Some(m) = state
                .manifests
                .get_mut(instance_id)
                .filter(|m| m.message_id == message_id)
            {
                m.acked = true;
                tracing::debug!(instance = instance_id, message_id, "task manifest acked");
                return;
            }
        }
        if self.update_acked(instance_id, message_id) {
            return;
        }
        let ack = {
            let mut state = lock(&self.state);
            let Some(ack) = state.pending.remove(message_id) else {
                tracing::debug!(
                    message_id,
                    "ack for a message that is not a pending payload"
                );
                return;
            };
            if state
                .unacked
                .get(&ack.task_id)
                .is_some_and(|(_, id)| id == message_id)
            {
                state.unacked.remove(&ack.task_id);
            }
            ack
        };
        self.payloads_acked.add(1);
        let result = self.store.update(|st| {
            if let Some(task) = st.tasks.get_mut(&ack.task_id) {
                // Desired status only moves forward; a late RUNNING ack
                // must not hide a STOPPED that is still undelivered.
                let keep_stopped = task.delivered_desired.as_deref() == Some("STOPPED");
                if !keep_stopped {
                    task.delivered_desired = Some(ack.desired.clone());
                }
            }
            Ok::<_, StoreError>(())
        });
        match result {
            Ok(()) => tracing::info!(task = ack.task_id, desired = ack.desired, "payload acked"),
            Err(e) => tracing::error!(error = %e, "cannot record a payload ack"),
        }
    }

    /// Sends an `IAMRoleCredentialsMessage` for each role of every task on
    /// the instance that is not STOPPED: all of them when `everything`
    /// (a `sendCredentials=true` handshake), else only the sets the agent
    /// has not acked. Does nothing when the agent is not connected.
    pub fn push_credentials(&self, instance_id: &str, everything: bool) {
        let _serial = lock(&self.delivery);
        let built = self.store.read(|st| {
            let mut out = Vec::new();
            for task in st.tasks_on(instance_id).filter(|t| !t.is_stopped()) {
                for role in ROLES {
                    let due = task
                        .credentials(role)
                        .is_some_and(|c| everything || !c.acked);
                    if due {
                        out.extend(credentials_message(st, task, role));
                    }
                }
            }
            out
        });
        let why = if everything {
            "sendCredentials"
        } else {
            "not acked"
        };
        self.send_credentials(built, why);
    }

    /// Refreshes every credential set of a task that is not STOPPED and is
    /// half-way through its life (new keys, same `credentialsId`), and
    /// pushes the new sets to the connected agents. Returns how many sets
    /// were refreshed.
    pub fn refresh_credentials(&self, now: f64) -> usize {
        let _serial = lock(&self.delivery);
        let ttl = self.credentials_ttl;
        let refreshed = self.store.update(|st| {
            // Found first, changed after: only the rows that change are
            // copied and written.
            let refreshed: Vec<(String, RoleType)> = st
                .tasks
                .values()
                .filter(|t| !t.is_stopped())
                .flat_map(|t| {
                    ROLES
                        .into_iter()
                        .filter(|role| t.credentials(*role).is_some_and(|c| c.refresh_due(now)))
                        .map(|role| (t.id.clone(), role))
                })
                .collect();
            for (id, role) in &refreshed {
                if let Some(c) = st.tasks.get_mut(id).and_then(|t| t.credentials_mut(*role)) {
                    c.rotate(now, ttl);
                }
            }
            let built: Vec<BuiltCredentials> = refreshed
                .iter()
                .filter_map(|(id, role)| credentials_message(st, st.tasks.get(id)?, *role))
                .collect();
            Ok::<_, StoreError>(built)
        });
        match refreshed {
            Ok(built) => {
                let count = built.len();
                self.send_credentials(built, "refresh");
                count
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot record refreshed credentials; kept the old ones");
                0
            }
        }
    }

    /// Sends built credentials messages to the agents that are connected.
    fn send_credentials(&self, built: Vec<BuiltCredentials>, why: &str) {
        let state = lock(&self.state);
        for b in built {
            let Some(conn) = b
                .instance_id
                .as_ref()
                .and_then(|i| state.connections.get(i))
            else {
                continue;
            };
            // Never the keys: the task, the role and the message id.
            tracing::info!(
                instance = b.instance_id.as_deref().unwrap_or_default(),
                task = b.task_arn,
                role_type = b.role.as_str(),
                message_id = b.message_id,
                why,
                "credentials sent"
            );
            let _ = conn.tx.send(Outbound::Frame(b.frame));
        }
    }

    /// Records an `IAMRoleCredentialsAckRequest` (for a credentials message
    /// or for credentials in a payload, whose id it then carries): the set
    /// with that `credentialsId` and `expiration` reached the agent. Acks
    /// are matched by those two, not by message id, so an ack of keys that
    /// were refreshed since counts for nothing.
    fn credentials_acked(&self, instance_id: &str, ack: &IAMRoleCredentialsAckRequest) {
        let message_id = ack.message_id.as_deref().unwrap_or_default();
        let credentials_id = ack.credentials_id.as_deref().unwrap_or_default();
        let expiration = ack.expiration.as_deref().unwrap_or_default();
        let result = self.store.update(|st| {
            let named = st
                .tasks_on(instance_id)
                .flat_map(|t| ROLES.into_iter().map(move |role| (t, role)))
                .find(|(t, role)| {
                    t.credentials(*role)
                        .is_some_and(|c| c.credentials_id() == credentials_id)
                })
                .map(|(t, role)| (t.id.clone(), role));
            let Some((id, role)) = named else {
                return Ok::<_, StoreError>(None);
            };
            let Some(task) = st.tasks.get_mut(&id) else {
                return Ok(None);
            };
            let arn = task.task.task_arn.clone().unwrap_or_default();
            let Some(c) = task.credentials_mut(role) else {
                return Ok(None);
            };
            let current = c.matches_ack(credentials_id, expiration);
            if current && !c.acked {
                c.acked = true;
            }
            Ok(Some((arn, role, current)))
        });
        match result {
            Ok(Some((task, role, current))) => tracing::debug!(
                instance = instance_id,
                task,
                role_type = role.as_str(),
                message_id,
                current,
                "credentials acked"
            ),
            Ok(None) => tracing::debug!(
                instance = instance_id,
                message_id,
                "credentials ack names no credentials of this instance"
            ),
            Err(e) => tracing::error!(error = %e, "cannot record a credentials ack"),
        }
    }
}

/// An `IAMRoleCredentialsMessage` ready to send.
struct BuiltCredentials {
    instance_id: Option<String>,
    task_arn: String,
    role: RoleType,
    message_id: String,
    frame: String,
}

/// The message carrying the current credentials of one role of a task.
fn credentials_message(st: &State, task: &TaskRecord, role: RoleType) -> Option<BuiltCredentials> {
    let credentials = task.credentials(role)?.credentials.clone();
    let cluster_arn = task
        .task
        .cluster_arn
        .clone()
        .or_else(|| st.clusters.get(&task.cluster).map(|c| c.arn.clone()));
    let message_id = uuid::Uuid::new_v4().to_string();
    let frame = AcsMessage::IAMRoleCredentialsMessage(IAMRoleCredentialsMessage {
        message_id: Some(message_id.clone()),
        role_credentials: Some(credentials),
        role_type: Some(role.as_str().to_owned()),
        task_arn: Some(task.arn().to_owned()),
        task_cluster_arn: cluster_arn,
    })
    .encode();
    Some(BuiltCredentials {
        instance_id: task.instance_id.clone(),
        task_arn: task.arn().to_owned(),
        role,
        message_id,
        frame,
    })
}

struct BuiltPayload {
    task_id: String,
    task_arn: String,
    desired: String,
    message_id: String,
    frame: String,
}

/// The credentials a payload for `task` carries: the current set of each
/// role, unless the task is already STOPPED.
fn set_task_credentials(acs_task: &mut ecs_model::acs::Task, task: &TaskRecord) {
    if task.is_stopped() {
        return;
    }
    let current = |role| task.credentials(role).map(|c| c.credentials.clone());
    acs_task.role_credentials = current(RoleType::TaskApplication);
    acs_task.execution_role_credentials = current(RoleType::TaskExecution);
}

fn build_payloads(
    st: &mut State,
    instance_id: &str,
    already_sent: &HashSet<(String, String)>,
    settings: &render::Settings,
) -> Vec<BuiltPayload> {
    let Some(instance) = st.instances.get(instance_id) else {
        return vec![];
    };
    let instance_arn = instance.arn.clone();
    let Some(cluster_arn) = st.clusters.get(&instance.cluster).map(|c| c.arn.clone()) else {
        return vec![];
    };
    let mut due: Vec<&TaskRecord> = st
        .tasks_on(instance_id)
        .filter(|t| t.needs_delivery())
        .filter(|t| !already_sent.contains(&(t.id.clone(), t.desired_status().to_owned())))
        .collect();
    due.sort_by(|a, b| {
        let at = a.task.created_at.unwrap_or(0.0);
        let bt = b.task.created_at.unwrap_or(0.0);
        at.total_cmp(&bt).then_with(|| a.id.cmp(&b.id))
    });
    let mut rendered = Vec::new();
    for task in due {
        let Some(definition) = st.task_definition(&task.family, task.revision) else {
            tracing::warn!(
                task = task.arn(),
                "task definition missing; task not delivered"
            );
            continue;
        };
        let mut acs_task = render::task(definition, task, settings);
        set_task_credentials(&mut acs_task, task);
        rendered.push((
            task.id.clone(),
            task.arn().to_owned(),
            task.desired_status().to_owned(),
            acs_task,
        ));
    }
    let mut out = Vec::new();
    for (task_id, task_arn, desired, acs_task) in rendered {
        let seq = st.next_seq();
        if let Some(t) = st.tasks.get_mut(&task_id) {
            t.sent = true;
        }
        let message_id = uuid::Uuid::new_v4().to_string();
        let frame = AcsMessage::PayloadMessage(PayloadMessage {
            cluster_arn: Some(cluster_arn.clone()),
            container_instance_arn: Some(instance_arn.clone()),
            generated_at: Some(clock::epoch_millis()),
            message_id: Some(message_id.clone()),
            seq_num: Some(seq),
            tasks: Some(vec![acs_task]),
            timeline: None,
        })
        .encode();
        out.push(BuiltPayload {
            task_id,
            task_arn,
            desired,
            message_id,
            frame,
        });
    }
    out
}

/// The `TaskManifestMessage` for an instance: every task placed on it whose
/// desired status is RUNNING (exactly the tasks [`verify_stops`] refuses to
/// confirm), each entry with
/// `taskArn`, `taskClusterArn` and `desiredStatus` (the Go agent panics on
/// entries without `taskArn` or `desiredStatus`; manifests: docs/protocols.md §4.8).
///
/// `timeline` is drawn from [`State::next_seq`], the one persisted counter
/// that also numbers payload `seqNum`s: it grows by one for every payload
/// and every manifest and is saved in the state database with the rest of the
/// state, so each manifest's `timeline` is strictly above every `seqNum` and
/// `timeline` sent to any instance before, across plane restarts too (the
/// agent drops a manifest whose `timeline` is not above the highest number
/// it has seen, and persists that number). `None` when the instance or its
/// cluster is unknown.
pub fn build_manifest(
    st: &mut State,
    instance_id: &str,
    generated_at: i64,
) -> Option<TaskManifestMessage> {
    let instance = st.instances.get(instance_id)?;
    let instance_arn = instance.arn.clone();
    let cluster_arn = st.clusters.get(&instance.cluster)?.arn.clone();
    let mut running: Vec<&TaskRecord> = st
        .tasks_on(instance_id)
        .filter(|t| t.desired_status() == "RUNNING" && !t.arn().is_empty())
        .collect();
    running.sort_by(|a, b| a.arn().cmp(b.arn()));
    let tasks: Vec<TaskIdentifier> = running
        .into_iter()
        .map(|t| TaskIdentifier {
            desired_status: Some("RUNNING".to_owned()),
            task_arn: Some(t.arn().to_owned()),
            task_cluster_arn: Some(
                t.task
                    .cluster_arn
                    .clone()
                    .unwrap_or_else(|| cluster_arn.clone()),
            ),
        })
        .collect();
    let timeline = st.next_seq();
    Some(TaskManifestMessage {
        cluster_arn: Some(cluster_arn),
        container_instance_arn: Some(instance_arn),
        generated_at: Some(generated_at),
        message_id: Some(uuid::Uuid::new_v4().to_string()),
        tasks: Some(tasks),
        timeline: Some(timeline),
    })
}

/// The stop candidates of a `TaskStopVerificationMessage` from `instance_id`
/// that the plane confirms, as `stopTasks` entries (desired `STOPPED`). A
/// candidate is confirmed when the task is placed on another instance, or
/// when the plane wants it STOPPED; a task the plane wants RUNNING on this
/// instance is never confirmed. Nor is a task the plane has never heard of:
/// on a host that several agents share (as in tests), an agent proposes
/// the containers of the others' tasks, which are not this plane's to
/// stop (a stopped task is kept until its stop was delivered, so a task of
/// this plane is never unknown while its agent still runs it). Candidates
/// without a `taskArn` are skipped.
pub fn verify_stops(
    st: &State,
    instance_id: &str,
    candidates: &[TaskIdentifier],
) -> Vec<TaskIdentifier> {
    let mut out = Vec::new();
    for c in candidates {
        let Some(task_arn) = c.task_arn.as_deref().filter(|a| !a.is_empty()) else {
            continue;
        };
        let Some(record) = st
            .tasks
            .get(arn::resource_id(task_arn))
            .filter(|t| t.arn() == task_arn)
        else {
            tracing::info!(
                instance = instance_id,
                task = task_arn,
                "stop candidate refused: the plane does not know this task"
            );
            continue;
        };
        let wanted_here = record.instance_id.as_deref() == Some(instance_id)
            && record.desired_status() != "STOPPED";
        if wanted_here {
            tracing::info!(
                instance = instance_id,
                task = task_arn,
                "stop candidate refused: the plane wants it running here"
            );
            continue;
        }
        let cluster_arn = c.task_cluster_arn.clone().or_else(|| {
            record
                .task
                .cluster_arn
                .clone()
                .or_else(|| st.clusters.get(&record.cluster).map(|c| c.arn.clone()))
        });
        out.push(TaskIdentifier {
            desired_status: Some("STOPPED".to_owned()),
            task_arn: Some(task_arn.to_owned()),
            task_cluster_arn: cluster_arn,
        });
    }
    out
}

/// The handshake query, decoded with form semantics (`+` is a space).
fn query_map(raw: Option<&str>) -> HashMap<String, String> {
    form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

/// A refused upgrade, in the one-member error form agents decode
/// (docs/protocols.md §3.4).
fn refuse(kind: &str, message: &str) -> Response {
    let body = serde_json::json!({ kind: message }).to_string();
    (
        StatusCode::BAD_REQUEST,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// A websocket upgrade without a valid signature: the status and the
/// one-member body of the other handshake refusals.
pub(crate) fn refuse_auth(e: &crate::auth::AuthError) -> Response {
    let status = match e {
        crate::auth::AuthError::UnknownKey => StatusCode::BAD_REQUEST,
        _ => StatusCode::FORBIDDEN,
    };
    let body = serde_json::json!({ e.code(): e.to_string() }).to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// `GET /acs/ws`.
pub(crate) async fn upgrade(
    AxumState(ctx): AxumState<Arc<Context>>,
    RawQuery(raw): RawQuery,
    uri: axum::http::Uri,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if let Err(e) = ctx.authenticate("GET", &uri, &headers, b"") {
        return refuse_auth(&e);
    }
    let query = query_map(raw.as_deref());
    let instance_param = query
        .get("containerInstanceArn")
        .cloned()
        .unwrap_or_default();
    let instance_id = arn::resource_id(&instance_param).to_owned();
    let cluster = arn::cluster_name(query.get("clusterArn").map(String::as_str));
    let instance = ctx.store.read(|st| st.instances.get(&instance_id).cloned());
    let Some(instance) = instance.filter(|_| !instance_id.is_empty()) else {
        tracing::warn!(
            instance = instance_param,
            "ACS handshake for an unknown container instance refused"
        );
        return refuse("InvalidInstanceException", "Container instance not found");
    };
    if instance.status == "INACTIVE" {
        tracing::info!(
            instance = instance_param,
            "ACS handshake for an inactive container instance refused"
        );
        return refuse(
            "InactiveInstanceException",
            "Container instance is inactive",
        );
    }
    if instance.cluster != cluster {
        tracing::warn!(
            instance = instance_param,
            cluster,
            "ACS handshake names another cluster"
        );
        return refuse(
            "InvalidClusterException",
            "The container instance does not belong to this cluster",
        );
    }
    let version_info = VersionInfo {
        agent_version: query.get("agentVersion").cloned(),
        agent_hash: query.get("agentHash").cloned(),
        docker_version: query
            .get("dockerVersion")
            .map(|v| v.strip_prefix("DockerVersion: ").unwrap_or(v).to_owned()),
    };
    let send_credentials = query.get("sendCredentials").map(String::as_str) == Some("true");
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| ctx.local_addr.to_string());
    let shutdown = ctx.shutdown.clone();
    ws.on_upgrade(move |socket| {
        run(
            ctx,
            socket,
            Agent {
                instance_id,
                version_info,
                send_credentials,
                host,
            },
            shutdown,
        )
    })
}

/// Who is on the other end of a new connection.
struct Agent {
    instance_id: String,
    version_info: VersionInfo,
    send_credentials: bool,
    /// The `Host` of its upgrade request.
    host: String,
}

async fn run(
    ctx: Arc<Context>,
    mut socket: WebSocket,
    agent: Agent,
    mut shutdown: watch::Receiver<bool>,
) {
    let Agent {
        instance_id,
        version_info,
        send_credentials,
        host,
    } = agent;
    let hub = &ctx.acs;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let generation = hub.register(&instance_id, tx, host);
    tracing::info!(
        instance = instance_id,
        generation,
        send_credentials,
        "agent connected (ACS)"
    );
    let id = instance_id.clone();
    ctx.blocking(move |ctx| {
        let connected = ctx.store.update(|st| {
            if let Some(i) = st.instances.get_mut(&id) {
                i.agent_connected = true;
                i.version_info = Some(version_info);
            }
            Ok::<_, StoreError>(())
        });
        if let Err(e) = connected {
            tracing::error!(instance = id, error = %e, "cannot record the ACS connection");
        }
        ctx.acs.deliver(&id);
        ctx.acs.push_credentials(&id, send_credentials);
        ctx.acs.resume_update(&id);
    })
    .await;

    let start = tokio::time::Instant::now() + hub.first_heartbeat;
    let mut heartbeat = tokio::time::interval_at(start, hub.heartbeat_interval);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut manifest = tokio::time::interval_at(
        tokio::time::Instant::now() + hub.task_manifest_interval,
        hub.task_manifest_interval,
    );
    manifest.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let close = |code: u16, reason: &str| {
        Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        }))
    };
    loop {
        tokio::select! {
            inbound = socket.recv() => match inbound {
                Some(Ok(Message::Text(text))) => {
                    let (id, text) = (instance_id.clone(), text.as_str().to_owned());
                    ctx.blocking(move |ctx| handle_frame(&ctx.acs, &id, &text)).await;
                }
                Some(Ok(Message::Binary(bytes))) => {
                    tracing::debug!(instance = instance_id, "binary ACS frame treated as text");
                    let (id, text) = (instance_id.clone(), String::from_utf8_lossy(&bytes).into_owned());
                    ctx.blocking(move |ctx| handle_frame(&ctx.acs, &id, &text)).await;
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_))) | None => break,
                Some(Err(e)) => {
                    tracing::debug!(instance = instance_id, error = %e, "ACS read failed");
                    break;
                }
            },
            outbound = rx.recv() => match outbound {
                Some(Outbound::Frame(text)) => {
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                }
                Some(Outbound::Close(code, reason)) => {
                    let _ = socket.send(close(code, &reason)).await;
                    break;
                }
                None => break,
            },
            _ = heartbeat.tick() => {
                let frame = AcsMessage::HeartbeatMessage(HeartbeatMessage {
                    healthy: Some(true),
                    message_id: Some(uuid::Uuid::new_v4().to_string()),
                })
                .encode();
                if socket.send(Message::Text(frame.into())).await.is_err() {
                    break;
                }
            }
            _ = manifest.tick() => {
                let id = instance_id.clone();
                ctx.blocking(move |ctx| ctx.acs.send_manifest(&id)).await;
            }
            _ = shutdown.changed() => {
                let _ = socket.send(close(CLOSE_GOING_AWAY, "ecs-local is shutting down")).await;
                break;
            }
        }
    }
    if hub.unregister(&instance_id, generation) {
        ctx.store.update_volatile(|st| {
            if let Some(i) = st.instances.get_mut(&instance_id) {
                i.agent_connected = false;
            }
        });
    }
    tracing::info!(
        instance = instance_id,
        generation,
        "agent disconnected (ACS)"
    );
}

fn handle_frame(hub: &AcsHub, instance_id: &str, text: &str) {
    match AcsMessage::decode(text) {
        Ok(AcsMessage::AckRequest(ack)) => {
            if let Some(id) = ack.message_id.as_deref() {
                hub.acked(instance_id, id);
            }
        }
        Ok(AcsMessage::TaskStopVerificationMessage(msg)) => {
            hub.stop_verification(instance_id, &msg);
        }
        Ok(AcsMessage::HeartbeatAckRequest(_)) => {}
        Ok(AcsMessage::IAMRoleCredentialsAckRequest(ack)) => {
            hub.credentials_acked(instance_id, &ack);
        }
        Ok(AcsMessage::NackRequest(nack)) => hub.update_nacked(instance_id, &nack),
        Ok(other) => {
            tracing::info!(
                instance = instance_id,
                frame_type = other.type_name(),
                "unexpected ACS frame ignored"
            );
        }
        Err(e) => {
            tracing::warn!(instance = instance_id, error = %e, "undecodable ACS frame ignored");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::credentials::IssuedCredentials;
    use crate::store::ClusterRecord;

    const TTL: Duration = Duration::from_secs(600);
    const INSTANCE_ARN_PREFIX: &str =
        "arn:aws:ecs:us-east-1:000000000000:container-instance/default/";
    const CLUSTER_ARN: &str = "arn:aws:ecs:us-east-1:000000000000:cluster/default";

    fn task_arn(id: &str) -> String {
        format!("arn:aws:ecs:us-east-1:000000000000:task/default/{id}")
    }

    /// Adds to the fixture: `stopping` on `i1` with desired STOPPED,
    /// `elsewhere` running on `i2`, and the task definition `f:1`.
    fn more_tasks(hub: &AcsHub) {
        hub.store
            .update(|st| {
                let mut stopping = st.tasks["plain"].clone();
                stopping.id = "stopping".into();
                stopping.task.task_arn = Some(task_arn("stopping"));
                stopping.task.desired_status = Some("STOPPED".into());
                let mut elsewhere = st.tasks["plain"].clone();
                elsewhere.id = "elsewhere".into();
                elsewhere.task.task_arn = Some(task_arn("elsewhere"));
                elsewhere.instance_id = Some("i2".into());
                st.tasks.insert("stopping".into(), stopping);
                st.tasks.insert("elsewhere".into(), elsewhere);
                st.task_definitions.insert(
                    "f".into(),
                    vec![serde_json::from_value(serde_json::json!({
                        "family": "f", "revision": 1,
                        "containerDefinitions": [{"name": "c", "image": "busybox"}]
                    }))
                    .unwrap()],
                );
                Ok::<_, StoreError>(())
            })
            .unwrap();
    }

    fn decode_manifest(m: TaskManifestMessage) -> serde_json::Value {
        let frame = AcsMessage::TaskManifestMessage(m).encode();
        serde_json::from_str(&frame).unwrap()
    }

    #[test]
    fn manifest_lists_the_tasks_wanted_running_on_the_instance() {
        let (_dir, hub) = hub();
        more_tasks(&hub);
        let m = hub
            .store
            .update(|st| Ok::<_, StoreError>(build_manifest(st, "i1", 1234)))
            .unwrap()
            .unwrap();
        let v = decode_manifest(m);
        assert_eq!(v["type"], "TaskManifestMessage");
        let m = &v["message"];
        assert_eq!(m["clusterArn"], CLUSTER_ARN);
        assert_eq!(
            m["containerInstanceArn"],
            format!("{INSTANCE_ARN_PREFIX}i1")
        );
        assert_eq!(m["generatedAt"], 1234);
        assert!(!m["messageId"].as_str().unwrap().is_empty());
        assert!(m["timeline"].as_i64().unwrap() >= 1);
        // Not `stopping` (desired STOPPED), not `elsewhere` (another
        // instance); `stopped` has no desired status, which means RUNNING.
        assert_eq!(
            m["tasks"],
            serde_json::json!([
                {"desiredStatus": "RUNNING", "taskArn": task_arn("both"), "taskClusterArn": CLUSTER_ARN},
                {"desiredStatus": "RUNNING", "taskArn": task_arn("plain"), "taskClusterArn": CLUSTER_ARN},
                {"desiredStatus": "RUNNING", "taskArn": task_arn("stopped"), "taskClusterArn": CLUSTER_ARN},
            ])
        );
        // An instance without tasks gets an empty list, not a missing one.
        let empty = hub
            .store
            .update(|st| {
                st.tasks.remove("elsewhere");
                Ok::<_, StoreError>(build_manifest(st, "i2", 1))
            })
            .unwrap()
            .unwrap();
        assert_eq!(
            decode_manifest(empty)["message"]["tasks"],
            serde_json::json!([])
        );
        let unknown = hub
            .store
            .update(|st| Ok::<_, StoreError>(build_manifest(st, "nope", 1)))
            .unwrap();
        assert!(unknown.is_none());
    }

    fn payload_seqs(hub: &AcsHub, instance: &str) -> Vec<i64> {
        let built = hub
            .store
            .update(|st| {
                Ok::<_, StoreError>(build_payloads(st, instance, &HashSet::new(), &hub.render))
            })
            .unwrap();
        built
            .iter()
            .map(|b| match AcsMessage::decode(&b.frame).unwrap() {
                AcsMessage::PayloadMessage(p) => p.seq_num.unwrap(),
                other => panic!("not a payload: {other:?}"),
            })
            .collect()
    }

    fn timeline(hub: &AcsHub, instance: &str) -> i64 {
        hub.store
            .update(|st| Ok::<_, StoreError>(build_manifest(st, instance, 1)))
            .unwrap()
            .unwrap()
            .timeline
            .unwrap()
    }

    #[test]
    fn timelines_stay_above_payload_seq_nums_across_a_reload() {
        let (dir, hub) = hub();
        more_tasks(&hub);
        let seqs = payload_seqs(&hub, "i1");
        assert!(!seqs.is_empty());
        let first = timeline(&hub, "i1");
        assert!(seqs.iter().all(|s| *s < first), "{seqs:?} vs {first}");
        // Another instance's payloads and manifests share the counter.
        let other = payload_seqs(&hub, "i2");
        let second = timeline(&hub, "i1");
        assert!(other.iter().all(|s| *s > first && *s < second));
        drop(hub);
        // A restarted plane continues from the saved counter.
        let store =
            Arc::new(Store::open(dir.path(), || unreachable!("default cluster is saved")).unwrap());
        let hub = AcsHub::new(
            store,
            Duration::from_secs(20),
            Duration::from_secs(1),
            TTL,
            Duration::from_secs(60),
        );
        let third = timeline(&hub, "i1");
        assert!(third > second, "{third} after {second}");
        let later = payload_seqs(&hub, "i1");
        assert!(later.iter().all(|s| *s > third));
        assert!(timeline(&hub, "i1") > *later.iter().max().unwrap());
    }

    #[test]
    fn verification_confirms_only_tasks_not_wanted_running_here() {
        let (_dir, hub) = hub();
        more_tasks(&hub);
        let candidate = |arn: Option<String>| TaskIdentifier {
            desired_status: Some("STOPPED".into()),
            task_arn: arn,
            task_cluster_arn: Some(CLUSTER_ARN.into()),
        };
        let unknown = task_arn("ffeeddccbbaa99887766554433221100");
        let candidates = vec![
            candidate(Some(task_arn("both"))),
            candidate(Some(task_arn("plain"))),
            candidate(Some(task_arn("stopping"))),
            // Desired RUNNING (by default), so refused.
            candidate(Some(task_arn("stopped"))),
            candidate(Some(task_arn("elsewhere"))),
            candidate(Some(unknown.clone())),
            candidate(None),
        ];
        let confirmed = hub.store.read(|st| verify_stops(st, "i1", &candidates));
        let arns: Vec<&str> = confirmed
            .iter()
            .map(|t| t.task_arn.as_deref().unwrap())
            .collect();
        // A task the plane never heard of is not its to stop.
        assert_eq!(
            arns,
            [
                task_arn("stopping").as_str(),
                task_arn("elsewhere").as_str()
            ]
        );
        assert!(!arns.contains(&unknown.as_str()));
        for t in &confirmed {
            assert_eq!(t.desired_status.as_deref(), Some("STOPPED"));
            assert_eq!(t.task_cluster_arn.as_deref(), Some(CLUSTER_ARN));
        }
        // From i2's agent, `elsewhere` is wanted there and `both` is not.
        let confirmed = hub.store.read(|st| verify_stops(st, "i2", &candidates));
        let arns: Vec<&str> = confirmed
            .iter()
            .map(|t| t.task_arn.as_deref().unwrap())
            .collect();
        assert!(!arns.contains(&task_arn("elsewhere").as_str()));
        assert!(arns.contains(&task_arn("both").as_str()));
    }

    #[test]
    fn a_resend_replaces_the_unacked_payload_instead_of_piling_up() {
        let (_dir, hub) = hub();
        more_tasks(&hub);
        let (tx, mut rx) = mpsc::unbounded_channel();
        hub.register("i1", tx, "127.0.0.1:1".into());
        hub.deliver("i1");
        let mut first = 0;
        while let Ok(Outbound::Frame(_)) = rx.try_recv() {
            first += 1;
        }
        let pending = lock(&hub.state).pending.len();
        assert!(pending > 0);
        assert_eq!(hub.payloads_resent.get(), 0);
        // A new connection: the same payloads again, none acked.
        let (tx, _rx) = mpsc::unbounded_channel();
        hub.register("i1", tx, "127.0.0.1:2".into());
        hub.deliver("i1");
        assert_eq!(lock(&hub.state).pending.len(), pending);
        assert_eq!(hub.payloads_resent.get(), pending as u64);
        assert!(first >= pending);
    }

    #[test]
    fn manifest_acks_are_not_payload_acks_and_verification_is_answered() {
        let (_dir, hub) = hub();
        more_tasks(&hub);
        let (tx, mut rx) = mpsc::unbounded_channel();
        hub.register("i1", tx, "127.0.0.1:1".into());
        hub.deliver("i1");
        let mut payload_ids = Vec::new();
        while let Ok(Outbound::Frame(f)) = rx.try_recv() {
            if let AcsMessage::PayloadMessage(p) = AcsMessage::decode(&f).unwrap() {
                payload_ids.push(p.message_id.unwrap());
            }
        }
        assert_eq!(payload_ids.len(), 4);
        let pending_before = lock(&hub.state).pending.len();
        let id = hub.send_manifest("i1").unwrap();
        let Ok(Outbound::Frame(f)) = rx.try_recv() else {
            panic!("no manifest frame")
        };
        let AcsMessage::TaskManifestMessage(m) = AcsMessage::decode(&f).unwrap() else {
            panic!("not a manifest: {f}")
        };
        assert_eq!(m.message_id.as_deref(), Some(id.as_str()));
        assert!(!hub.last_manifest("i1").unwrap().acked);
        hub.acked("i1", &id);
        assert!(hub.last_manifest("i1").unwrap().acked);
        assert_eq!(lock(&hub.state).pending.len(), pending_before);
        // The payloads were not marked delivered by the manifest ack.
        hub.store.read(|st| {
            assert_eq!(st.tasks["plain"].delivered_desired, None);
        });
        // An empty verification still gets an ack with the manifest's id.
        hub.stop_verification(
            "i1",
            &TaskStopVerificationMessage {
                message_id: Some(id.clone()),
                stop_candidates: Some(vec![]),
            },
        );
        let Ok(Outbound::Frame(f)) = rx.try_recv() else {
            panic!("no verification ack")
        };
        let v: serde_json::Value = serde_json::from_str(&f).unwrap();
        assert_eq!(v["type"], "TaskStopVerificationAck");
        assert_eq!(v["message"]["messageId"], id.as_str());
        assert_eq!(v["message"]["stopTasks"], serde_json::json!([]));
        assert!(v["message"]["generatedAt"].as_i64().unwrap() > 0);
        // No manifest without a connection.
        assert!(hub.send_manifest("i2").is_none());
    }

    /// A hub over a store with three tasks on instance `i1`: `both` has a
    /// task and an execution role, `plain` none, and `stopped` a task role
    /// but is STOPPED. Credentials were issued at t=1000.
    fn hub() -> (tempfile::TempDir, AcsHub) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(
            Store::open(dir.path(), || ClusterRecord {
                name: "default".into(),
                arn: "arn:aws:ecs:us-east-1:000000000000:cluster/default".into(),
                status: "ACTIVE".into(),
                tags: None,
                settings: None,
                configuration: None,
            })
            .unwrap(),
        );
        let task = |id: &str, last: &str| -> TaskRecord {
            serde_json::from_value(serde_json::json!({
                "id": id, "cluster": "default", "instanceId": "i1", "family": "f",
                "revision": 1, "demand": {"cpu": 0, "memory": 0},
                "task": {"taskArn": format!("arn:aws:ecs:us-east-1:000000000000:task/default/{id}"),
                         "lastStatus": last}
            }))
            .unwrap()
        };
        let role = |name: &str| {
            IssuedCredentials::mint(
                &format!("arn:aws:iam::000000000000:role/{name}"),
                1000.0,
                TTL,
            )
        };
        store
            .update(|st| {
                let mut both = task("both", "RUNNING");
                both.task_role_credentials = Some(role("app"));
                both.execution_role_credentials = Some(role("exec"));
                let mut stopped = task("stopped", "STOPPED");
                stopped.task_role_credentials = Some(role("app"));
                st.tasks.insert("both".into(), both);
                st.tasks.insert("plain".into(), task("plain", "RUNNING"));
                st.tasks.insert("stopped".into(), stopped);
                for id in ["i1", "i2"] {
                    st.instances.insert(
                        id.into(),
                        serde_json::from_value(serde_json::json!({
                            "id": id, "cluster": "default", "status": "ACTIVE",
                            "arn": format!("{INSTANCE_ARN_PREFIX}{id}"),
                            "registeredAt": 1.0, "version": 1
                        }))
                        .unwrap(),
                    );
                }
                Ok::<_, StoreError>(())
            })
            .unwrap();
        let hub = AcsHub::new(
            store,
            Duration::from_secs(20),
            Duration::from_secs(1),
            TTL,
            Duration::from_secs(60),
        );
        (dir, hub)
    }

    fn issued(hub: &AcsHub, id: &str, role: RoleType) -> Option<IssuedCredentials> {
        hub.store.read(|st| st.tasks[id].credentials(role).cloned())
    }

    #[test]
    fn credentials_are_refreshed_at_half_life_until_the_task_stops() {
        let (_dir, hub) = hub();
        let before = issued(&hub, "both", RoleType::TaskApplication).unwrap();
        let stopped_before = issued(&hub, "stopped", RoleType::TaskApplication);
        assert_eq!(hub.refresh_credentials(1299.0), 0, "not yet half-way");
        assert_eq!(
            hub.refresh_credentials(1300.0),
            2,
            "both roles of the live task"
        );
        let after = issued(&hub, "both", RoleType::TaskApplication).unwrap();
        assert_eq!(after.credentials_id(), before.credentials_id());
        assert_ne!(
            after.credentials.access_key_id,
            before.credentials.access_key_id
        );
        assert_eq!(after.issued_at, 1300.0);
        assert_eq!(after.expires_at, 1900.0);
        assert!(!after.acked);
        // The next refresh is due half-way through the new lifetime.
        assert_eq!(hub.refresh_credentials(1599.0), 0);
        assert_eq!(hub.refresh_credentials(1600.0), 2);
        // The STOPPED task's credentials were never touched.
        assert_eq!(
            issued(&hub, "stopped", RoleType::TaskApplication),
            stopped_before
        );
    }

    #[test]
    fn acks_count_only_for_the_current_keys_of_that_instance() {
        let (_dir, hub) = hub();
        let old = issued(&hub, "both", RoleType::TaskApplication).unwrap();
        let ack = |c: &IssuedCredentials| IAMRoleCredentialsAckRequest {
            credentials_id: Some(c.credentials_id().to_owned()),
            expiration: c.credentials.expiration.clone(),
            message_id: Some("m1".into()),
        };
        hub.credentials_acked("other-instance", &ack(&old));
        assert!(
            !issued(&hub, "both", RoleType::TaskApplication)
                .unwrap()
                .acked
        );
        hub.credentials_acked("i1", &ack(&old));
        assert!(
            issued(&hub, "both", RoleType::TaskApplication)
                .unwrap()
                .acked
        );
        assert!(!issued(&hub, "both", RoleType::TaskExecution).unwrap().acked);

        hub.refresh_credentials(1300.0);
        let new = issued(&hub, "both", RoleType::TaskApplication).unwrap();
        // A late ack of the old keys does not cover the new ones.
        hub.credentials_acked("i1", &ack(&old));
        assert!(
            !issued(&hub, "both", RoleType::TaskApplication)
                .unwrap()
                .acked
        );
        hub.credentials_acked("i1", &ack(&new));
        assert!(
            issued(&hub, "both", RoleType::TaskApplication)
                .unwrap()
                .acked
        );
    }

    #[test]
    fn payloads_carry_the_current_credentials_of_live_tasks() {
        let (_dir, hub) = hub();
        hub.store.read(|st| {
            let mut acs_task = ecs_model::acs::Task::default();
            set_task_credentials(&mut acs_task, &st.tasks["both"]);
            let app = st.tasks["both"].task_role_credentials.as_ref().unwrap();
            assert_eq!(acs_task.role_credentials.as_ref(), Some(&app.credentials));
            assert!(acs_task.execution_role_credentials.is_some());
            let mut acs_task = ecs_model::acs::Task::default();
            set_task_credentials(&mut acs_task, &st.tasks["plain"]);
            assert!(acs_task.role_credentials.is_none());
            assert!(acs_task.execution_role_credentials.is_none());
            let mut acs_task = ecs_model::acs::Task::default();
            set_task_credentials(&mut acs_task, &st.tasks["stopped"]);
            assert!(acs_task.role_credentials.is_none());
        });
    }

    #[test]
    fn credentials_messages_name_the_task_role_and_cluster() {
        let (_dir, hub) = hub();
        let built = hub.store.read(|st| {
            credentials_message(st, &st.tasks["both"], RoleType::TaskExecution).unwrap()
        });
        let AcsMessage::IAMRoleCredentialsMessage(m) = AcsMessage::decode(&built.frame).unwrap()
        else {
            panic!("not a credentials message: {}", built.frame);
        };
        assert_eq!(m.role_type.as_deref(), Some("TaskExecution"));
        assert_eq!(
            m.task_arn.as_deref(),
            Some("arn:aws:ecs:us-east-1:000000000000:task/default/both")
        );
        assert_eq!(
            m.task_cluster_arn.as_deref(),
            Some("arn:aws:ecs:us-east-1:000000000000:cluster/default")
        );
        assert_eq!(m.message_id.as_deref(), Some(built.message_id.as_str()));
        assert_eq!(
            m.role_credentials.unwrap().role_arn.as_deref(),
            Some("arn:aws:iam::000000000000:role/exec")
        );
        assert_eq!(built.instance_id.as_deref(), Some("i1"));
        let none = hub.store.read(|st| {
            credentials_message(st, &st.tasks["plain"], RoleType::TaskApplication).is_none()
        });
        assert!(none);
    }

    #[test]
    fn query_uses_form_decoding() {
        let q = query_map(Some(
            "clusterArn=default&containerInstanceArn=arn%3Aaws%3Aecs%3Aus-east-1%3A1%3Acontainer-instance%2Fdefault%2Fabc&dockerVersion=DockerVersion%3A+20.10.24%2Bdfsg1",
        ));
        assert_eq!(q["dockerVersion"], "DockerVersion: 20.10.24+dfsg1");
        assert_eq!(arn::resource_id(&q["containerInstanceArn"]), "abc");
    }
}
