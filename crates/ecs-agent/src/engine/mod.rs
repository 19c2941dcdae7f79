//! The task engine: owns every task the agent runs, drives each one toward
//! its desired status on the local Docker engine, and records every change
//! (with the report it owes the backend) in the store (docs/engine.md).
//!
//! One tokio task owns the task table. Everything else talks to it through
//! [`EngineHandle`] messages: payloads from ACS, Docker events, finished
//! Docker actions, timers. The engine handles the messages that are waiting,
//! re-planning each touched task with the pure rules in [`reconcile`], then
//! saves every changed task with the reports it owes in one transaction
//! ([`commit`]), and only then starts the Docker work it planned and
//! answers the payloads that wait for the save.

pub mod actions;
mod commit;
pub mod create_config;
pub mod labels;
mod orphans;
pub mod ports;
pub mod reconcile;
pub mod slots;
pub mod status;
pub mod task;
mod timings;
mod watch;

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::docker::{ContainerEvent, DockerApi, Observation};
use crate::state_change::TaskStateChange;
use crate::store::{Batch, Store, StoreError};
use actions::ActionSettings;
use reconcile::{Action, Outcome};
use status::{ContainerStatus, TaskStatus};
use task::{IncomingTask, Task};

/// How long a periodic check waits between inspections of running
/// containers (catches missed `die` events; docs/engine.md §11.3).
const RESYNC_INTERVAL: Duration = Duration::from_secs(300);
/// Delay before retrying a stop that Docker refused.
const STOP_RETRY_DELAY: Duration = Duration::from_secs(5);
/// How often cleanup checks again whether STOPPED was delivered, in case
/// the reporter's word that it was ([`EngineHandle::report_settled`]) is
/// lost, or the outbox could not be read.
const CLEANUP_RECHECK: Duration = Duration::from_secs(30);
/// How soon a task blocked on a dependency looks again.
const RECHECK_DELAY: Duration = Duration::from_secs(1);
/// How soon a failed save is tried again.
const SAVE_RETRY_DELAY: Duration = Duration::from_secs(1);
/// At most this many waiting messages are handled before a save.
const MESSAGES_PER_SAVE: usize = 64;
/// Exit code given to a container that can never start (docs/engine.md §5.5).
const DEPENDENCY_EXIT_CODE: i64 = 143;

/// Engine-wide settings, fixed for the agent's lifetime.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    pub actions: ActionSettings,
    pub cleanup_wait: Duration,
    pub cleanup_jitter: Duration,
    /// `ECS_DYNAMIC_HOST_PORT_RANGE` (or the kernel's range).
    pub dynamic_host_port_range: (u16, u16),
    pub reserved_ports: Vec<u16>,
    pub reserved_ports_udp: Vec<u16>,
    /// `ECS_EXCLUDE_IPV6_PORTBINDING`: leave `::` bindings out of reports.
    pub exclude_ipv6_port_binding: bool,
}

/// The engine has shut down; nothing more can be done.
#[derive(Debug, thiserror::Error)]
#[error("task engine has stopped")]
pub struct EngineStopped;

/// Why a payload's change was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error(transparent)]
    Stopped(#[from] EngineStopped),
    /// The change is held in memory but is not durable: the payload must
    /// not be acked, so ACS sends it again.
    #[error("the change could not be saved: {0}")]
    NotSaved(String),
}

type SaveReply = oneshot::Sender<Result<(), AcceptError>>;

enum Msg {
    Payload {
        tasks: Vec<IncomingTask>,
        /// The payload's `seqNum`, saved with its tasks.
        seq: Option<i64>,
        /// When its ACS frame was read, for the launch timings.
        received: Instant,
        done: SaveReply,
    },
    Rejected {
        arn: String,
        reason: String,
        done: SaveReply,
    },
    StopTasks {
        arns: Vec<String>,
    },
    DockerEvent(ContainerEvent),
    Observed {
        arn: String,
        index: usize,
        observation: Option<Observation>,
    },
    ActionDone {
        arn: String,
        index: usize,
        target: ContainerStatus,
        outcome: Outcome,
    },
    RetryStop {
        arn: String,
        index: usize,
    },
    VolumeDone {
        arn: String,
        index: usize,
        result: Result<(), String>,
    },
    SecretsDone {
        arn: String,
        result: Result<Arc<crate::secrets::TaskSecrets>, crate::secrets::FetchError>,
    },
    RestartFailed {
        arn: String,
        index: usize,
        observation: Observation,
    },
    Cleanup {
        arn: String,
    },
    /// One of the task's state changes left the outbox.
    ReportSettled {
        arn: String,
    },
    Resync,
    /// A task waiting on a dependency looks again (start timeouts expire
    /// without any event to wake the task).
    Recheck {
        arn: String,
    },
    /// Tries again to save what a failed commit left unsaved.
    RetrySave,
    Snapshot(oneshot::Sender<Vec<Task>>),
    MetricTargets(oneshot::Sender<Vec<crate::metrics::Target>>),
    Orphans(oneshot::Sender<Vec<String>>),
    Shutdown(oneshot::Sender<()>),
}

/// The way into the engine.
#[derive(Clone)]
pub struct EngineHandle {
    tx: mpsc::UnboundedSender<Msg>,
}

impl EngineHandle {
    /// Adds new tasks or moves known tasks' desired status forward, and
    /// raises `latestSeq` to `seq`; returns once all of it is saved.
    /// `received` is when the payload arrived.
    pub async fn add_tasks(
        &self,
        tasks: Vec<IncomingTask>,
        seq: Option<i64>,
        received: Instant,
    ) -> Result<(), AcceptError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Msg::Payload {
                tasks,
                seq,
                received,
                done,
            })
            .map_err(|_| EngineStopped)?;
        wait.await.map_err(|_| EngineStopped)?
    }

    /// Reports a task the agent could not parse as STOPPED with `reason`,
    /// unless the engine already runs a task with that ARN; returns once
    /// the report is saved.
    pub async fn reject_task(&self, arn: String, reason: String) -> Result<(), AcceptError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Msg::Rejected { arn, reason, done })
            .map_err(|_| EngineStopped)?;
        wait.await.map_err(|_| EngineStopped)?
    }

    /// Sets known tasks' desired status to STOPPED, and stops the
    /// containers of orphaned tasks (see [`EngineHandle::orphaned_tasks`]);
    /// other ARNs are ignored.
    pub fn stop_tasks(&self, arns: Vec<String>) -> Result<(), EngineStopped> {
        self.tx
            .send(Msg::StopTasks { arns })
            .map_err(|_| EngineStopped)
    }

    /// A copy of every task, for the local endpoints and tests.
    /// The reporter delivered (or dropped) one of the task's state changes:
    /// a cleanup held back by it may go ahead.
    pub fn report_settled(&self, arn: &str) {
        let _ = self.tx.send(Msg::ReportSettled {
            arn: arn.to_string(),
        });
    }

    /// The running containers the metrics collector reads (without the
    /// cost of a whole snapshot every collector interval).
    pub async fn metric_targets(&self) -> Result<Vec<crate::metrics::Target>, EngineStopped> {
        let (reply, wait) = oneshot::channel();
        self.tx
            .send(Msg::MetricTargets(reply))
            .map_err(|_| EngineStopped)?;
        wait.await.map_err(|_| EngineStopped)
    }

    pub async fn snapshot(&self) -> Result<Vec<Task>, EngineStopped> {
        let (reply, wait) = oneshot::channel();
        self.tx
            .send(Msg::Snapshot(reply))
            .map_err(|_| EngineStopped)?;
        wait.await.map_err(|_| EngineStopped)
    }

    /// Task ARNs of running containers that carry the agent's labels but
    /// belong to no saved task (docs/engine.md §12.1).
    pub async fn orphaned_tasks(&self) -> Result<Vec<String>, EngineStopped> {
        let (reply, wait) = oneshot::channel();
        self.tx
            .send(Msg::Orphans(reply))
            .map_err(|_| EngineStopped)?;
        wait.await.map_err(|_| EngineStopped)
    }

    /// Stops the engine once what it has handled is saved.
    pub async fn shutdown(&self) {
        let (reply, wait) = oneshot::channel();
        if self.tx.send(Msg::Shutdown(reply)).is_ok() {
            let _ = wait.await;
        }
    }
}

/// Docker work planned for a task, started once the task is saved.
#[derive(Debug, Default)]
struct Planned {
    work: Vec<(usize, ContainerStatus, Action)>,
    volumes: Vec<(usize, task::VolumeResource)>,
    /// Fetch the task's secrets and environment files.
    secrets: bool,
}

pub struct TaskEngine {
    settings: Arc<EngineSettings>,
    docker: Arc<dyn DockerApi>,
    store: Store,
    reports: Arc<Notify>,
    tasks: BTreeMap<String, Task>,
    by_docker_id: HashMap<String, (String, usize)>,
    cleanups: HashSet<String>,
    /// Tasks whose cleanup is due but waits for a report to be delivered.
    awaiting_report: HashSet<String>,
    /// Tasks with a re-check scheduled.
    rechecks: HashSet<String>,
    ports: ports::PortAllocator,
    tx: mpsc::UnboundedSender<Msg>,
    /// Tasks changed since the last save.
    dirty: BTreeSet<String>,
    /// Digest of each task's last saved record: an unchanged task is not
    /// written again.
    saved: HashMap<String, u64>,
    /// Docker work waiting for its task to be saved.
    planned: HashMap<String, Planned>,
    /// Reports not tied to a task record (rejected tasks).
    queued: Vec<TaskStateChange>,
    /// The highest `seqNum` of the payloads handled since the last save.
    latest_seq: Option<i64>,
    /// Payloads waiting for the next save.
    waiters: Vec<SaveReply>,
    save_retry_scheduled: bool,
    /// Running containers no saved task owns, by their task ARN label.
    orphans: BTreeMap<String, Vec<String>>,
    timings: timings::LaunchTimings,
}

/// Milliseconds since the epoch, the engine's clock.
#[cfg(not(test))]
pub(crate) fn now_ms() -> i64 {
    wall_clock_ms()
}

/// Unit tests run the engine under tokio's paused clock; the engine's
/// wall clock follows it there, so timeouts that compare timestamps expire
/// as a test advances time.
#[cfg(test)]
pub(crate) fn now_ms() -> i64 {
    static ANCHOR: std::sync::OnceLock<(i64, std::time::Instant)> = std::sync::OnceLock::new();
    let (wall, at) = *ANCHOR.get_or_init(|| (wall_clock_ms(), std::time::Instant::now()));
    let elapsed = tokio::time::Instant::now()
        .into_std()
        .saturating_duration_since(at);
    wall.saturating_add(i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
}

fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl TaskEngine {
    /// Loads the saved tasks, reconciles them with what Docker has now
    /// (docs/engine.md §12), and starts the engine. `reports` is notified
    /// whenever the outbox gains a report. The returned task ends only when
    /// the engine is shut down.
    pub async fn start(
        settings: EngineSettings,
        docker: Arc<dyn DockerApi>,
        store: Store,
        reports: Arc<Notify>,
    ) -> Result<(EngineHandle, JoinHandle<()>), StoreError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let saved = store.load_tasks().await?;
        let ports = ports::PortAllocator::new(
            settings.dynamic_host_port_range,
            settings.reserved_ports.clone(),
            settings.reserved_ports_udp.clone(),
        );
        let mut engine = TaskEngine {
            ports,
            settings: Arc::new(settings),
            docker,
            store,
            reports,
            tasks: saved
                .into_iter()
                .map(|t| (t.arn().to_string(), t))
                .collect(),
            by_docker_id: HashMap::new(),
            cleanups: HashSet::new(),
            awaiting_report: HashSet::new(),
            rechecks: HashSet::new(),
            tx: tx.clone(),
            dirty: BTreeSet::new(),
            saved: HashMap::new(),
            planned: HashMap::new(),
            queued: Vec::new(),
            latest_seq: None,
            waiters: Vec::new(),
            save_retry_scheduled: false,
            orphans: BTreeMap::new(),
            timings: timings::LaunchTimings::default(),
        };
        for task in engine.tasks.values() {
            if let Ok((_, digest)) = crate::store::encode_task(task) {
                engine.saved.insert(task.arn().to_string(), digest);
            }
        }
        // Saved tasks' credentials come again from ACS; until then their
        // IDs answer "not yet" rather than "unknown".
        for task in engine.tasks.values() {
            let arn = task.arn();
            if let Some(id) = &task.spec.task_role_credentials_id {
                if task.known_status < TaskStatus::Stopped {
                    engine.settings.actions.credentials.expect(
                        id,
                        arn,
                        crate::credentials::RoleType::TaskApplication,
                    );
                }
            }
            if let Some(id) = &task.spec.execution_role_credentials_id {
                engine.settings.actions.credentials.expect(
                    id,
                    arn,
                    crate::credentials::RoleType::TaskExecution,
                );
            }
        }
        // Subscribe before inspecting, so nothing that happens meanwhile is
        // missed.
        watch::spawn_event_watcher(engine.docker.clone(), tx.clone());
        engine.reconcile_with_docker().await;
        engine.find_orphans().await;
        // Which container uses which image is not saved; rebuild it
        // (docs/engine.md §10.5).
        let images = engine.settings.actions.images.clone();
        images
            .restore_references(crate::images::image_users(engine.tasks.values()))
            .await;
        // Files of containers that started while the agent was down, or
        // whose update the restart cut short, are completed again.
        for task in engine.tasks.values() {
            for (index, c) in task.containers.iter().enumerate() {
                if let (ContainerStatus::Running, Some(id)) = (c.known_status, &c.docker_id) {
                    actions::spawn_metadata_update(
                        &engine.docker,
                        &engine.settings.actions,
                        crate::metadata_file::Subject::of(task, index),
                        id,
                    );
                }
            }
        }
        let arns: Vec<String> = engine.tasks.keys().cloned().collect();
        for arn in arns {
            engine.progress(&arn);
        }
        watch::spawn_resync_ticker(tx.clone(), RESYNC_INTERVAL);
        let running = tokio::spawn(engine.run(rx));
        Ok((EngineHandle { tx }, running))
    }

    async fn reconcile_with_docker(&mut self) {
        let now = now_ms();
        for task in self.tasks.values_mut() {
            for index in 0..task.containers.len() {
                let c = &task.containers[index];
                let key = match (&c.docker_id, &c.docker_name) {
                    (Some(id), _) => id.clone(),
                    (None, Some(name)) => name.clone(),
                    (None, None) => continue,
                };
                if c.known_status == ContainerStatus::Stopped {
                    continue;
                }
                let had_id = c.docker_id.is_some();
                match self.docker.inspect_container(&key).await {
                    Ok(Some(o)) => {
                        reconcile::apply_observation(task, index, Some(&o), now);
                    }
                    // Only a container the agent knew it created can vanish;
                    // a reserved name without a container was never created.
                    Ok(None) if had_id => {
                        reconcile::apply_observation(task, index, None, now);
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!(
                        task = task.spec.arn,
                        container = task.containers[index].spec.name,
                        error = %e,
                        "could not inspect container after restart; will check again"
                    ),
                }
            }
        }
    }

    /// Handles every waiting message (up to a bound), then saves once, so a
    /// burst of events costs one write.
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>) {
        self.save().await;
        while let Some(first) = rx.recv().await {
            let mut next = Some(first);
            let mut handled = 0;
            while let Some(msg) = next.take() {
                if let Msg::Shutdown(reply) = msg {
                    self.save().await;
                    let _ = reply.send(());
                    return;
                }
                self.handle(msg).await;
                handled += 1;
                if handled < MESSAGES_PER_SAVE {
                    next = rx.try_recv().ok();
                }
            }
            self.save().await;
        }
    }

    async fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Payload {
                tasks,
                seq,
                received,
                done,
            } => {
                crate::failpoint::hit("engine-payload");
                for incoming in tasks {
                    let arn = incoming.spec.arn.clone();
                    if self.accept(incoming) {
                        self.timings.accepted(&arn, received);
                    }
                    self.progress(&arn);
                }
                if let Some(seq) = seq {
                    self.latest_seq = Some(self.latest_seq.map_or(seq, |s| s.max(seq)));
                }
                self.waiters.push(done);
            }
            Msg::Rejected { arn, reason, done } => {
                if !self.tasks.contains_key(&arn) {
                    self.queued.push(TaskStateChange {
                        task_arn: arn,
                        status: TaskStatus::Stopped.backend_string().to_string(),
                        reason,
                        containers: Vec::new(),
                        pull_started_at_ms: None,
                        pull_stopped_at_ms: None,
                        execution_stopped_at_ms: None,
                    });
                }
                self.waiters.push(done);
            }
            Msg::StopTasks { arns } => {
                for arn in arns {
                    if let Some(task) = self.tasks.get_mut(&arn) {
                        task.raise_desired_status(TaskStatus::Stopped);
                        self.progress(&arn);
                    } else {
                        self.stop_orphan(&arn);
                    }
                }
            }
            Msg::DockerEvent(event) => {
                let Some((arn, index)) = self.by_docker_id.get(&event.docker_id).cloned() else {
                    return;
                };
                let news = self
                    .tasks
                    .get(&arn)
                    .and_then(|t| t.containers.get(index))
                    .is_some_and(|c| reconcile::event_is_news(c, &event.action));
                if news {
                    self.spawn_inspect(arn, index, event.docker_id);
                }
            }
            Msg::Observed {
                arn,
                index,
                observation,
            } => self.observed(arn, index, observation),
            Msg::ActionDone {
                arn,
                index,
                target,
                outcome,
            } => {
                let stops_task = matches!(
                    self.settings.actions.pull_behavior,
                    crate::config::ImagePullBehavior::Always
                        | crate::config::ImagePullBehavior::Once
                );
                let Some(task) = self.tasks.get_mut(&arn) else {
                    return;
                };
                if index >= task.containers.len() {
                    return;
                }
                self.timings.action_done(&arn, target, &outcome);
                let effect =
                    reconcile::apply_outcome(task, index, target, outcome, stops_task, now_ms());
                if effect.retry {
                    // Keep the stop "in flight" until the retry, so the next
                    // pass does not hammer Docker.
                    task.containers[index].applied_status = Some(ContainerStatus::Stopped);
                    self.dirty.insert(arn.clone());
                    let tx = self.tx.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(STOP_RETRY_DELAY).await;
                        let _ = tx.send(Msg::RetryStop { arn, index });
                    });
                    return;
                }
                self.progress(&arn);
            }
            Msg::RetryStop { arn, index } => {
                if let Some(c) = self
                    .tasks
                    .get_mut(&arn)
                    .and_then(|t| t.containers.get_mut(index))
                {
                    c.applied_status = None;
                }
                self.progress(&arn);
            }
            Msg::VolumeDone { arn, index, result } => {
                let Some(task) = self.tasks.get_mut(&arn) else {
                    return;
                };
                let Some(volume) = task.volumes.get_mut(index) else {
                    return;
                };
                volume.in_flight = false;
                match result {
                    Ok(()) => volume.status = task::ResourceStatus::Created,
                    Err(reason) => {
                        tracing::warn!(task = arn, reason, "task volume could not be set up");
                        task.set_terminal_reason(reason);
                        task.raise_desired_status(TaskStatus::Stopped);
                    }
                }
                self.progress(&arn);
            }
            Msg::SecretsDone { arn, result } => {
                let Some(task) = self.tasks.get_mut(&arn) else {
                    return;
                };
                if task.secrets != crate::secrets::SecretsState::Fetching {
                    return;
                }
                match result {
                    Ok(values) => task.secrets = crate::secrets::SecretsState::Ready(values),
                    Err(e) => {
                        tracing::warn!(task = arn, error = %e, "task secrets could not be fetched");
                        task.secrets = crate::secrets::SecretsState::Missing;
                        task.set_terminal_reason(e.reason());
                        task.raise_desired_status(TaskStatus::Stopped);
                    }
                }
                self.progress(&arn);
            }
            Msg::RestartFailed {
                arn,
                index,
                observation,
            } => {
                if let Some(task) = self.tasks.get_mut(&arn) {
                    if index < task.containers.len() {
                        reconcile::apply_observation(task, index, Some(&observation), now_ms());
                        self.progress(&arn);
                    }
                }
            }
            Msg::Recheck { arn } => {
                self.rechecks.remove(&arn);
                self.progress(&arn);
            }
            Msg::RetrySave => {
                self.save_retry_scheduled = false;
                let unsaved: Vec<String> = self.dirty.iter().cloned().collect();
                for arn in unsaved {
                    self.progress(&arn);
                }
            }
            Msg::Cleanup { arn } => self.cleanup(arn).await,
            Msg::ReportSettled { arn } => {
                if self.awaiting_report.remove(&arn) {
                    self.cleanup(arn).await;
                }
            }
            Msg::Resync => {
                let targets: Vec<(String, usize, String)> = self
                    .tasks
                    .values()
                    .flat_map(|t| {
                        t.containers.iter().enumerate().filter_map(|(i, c)| {
                            let id = c.docker_id.clone()?;
                            (c.known_status < ContainerStatus::Stopped)
                                .then(|| (t.spec.arn.clone(), i, id))
                        })
                    })
                    .collect();
                for (arn, index, id) in targets {
                    self.spawn_inspect(arn, index, id);
                }
            }
            Msg::Snapshot(reply) => {
                let _ = reply.send(self.tasks.values().cloned().collect());
            }
            Msg::MetricTargets(reply) => {
                let _ = reply.send(
                    self.tasks
                        .values()
                        .flat_map(crate::metrics::Target::tracked)
                        .collect(),
                );
            }
            Msg::Orphans(reply) => {
                let _ = reply.send(self.orphans.keys().cloned().collect());
            }
            Msg::Shutdown(_) => {}
        }
    }

    /// An inspect result: restarts the container under its restart policy,
    /// or applies what Docker says.
    fn observed(&mut self, arn: String, index: usize, observation: Option<Observation>) {
        let Some(task) = self.tasks.get_mut(&arn) else {
            return;
        };
        if index >= task.containers.len() {
            return;
        }
        let now = now_ms();
        if let Some(o) = observation.as_ref().filter(|o| {
            o.status == ContainerStatus::Stopped
                && reconcile::should_restart(&task.containers[index], o.exit_code, now)
        }) {
            let c = &mut task.containers[index];
            c.restart_count += 1;
            c.last_restart_at_ms = Some(now);
            tracing::info!(
                task = arn,
                container = c.spec.name,
                exit_code = o.exit_code,
                restarts = c.restart_count,
                "restarting container under its restart policy"
            );
            self.spawn_restart(arn.clone(), index, o.clone());
            self.progress(&arn);
            return;
        }
        let effect = reconcile::apply_observation(task, index, observation.as_ref(), now);
        if effect.stop_again {
            if let Some(id) = task.containers[index].docker_id.clone() {
                let grace = self.stop_grace(&arn, index);
                tracing::warn!(
                    task = arn,
                    docker_id = id,
                    "stopped container is running again; stopping it"
                );
                self.spawn_stop(id, grace);
            }
        }
        self.progress(&arn);
    }

    /// A payload task: new ones are added, known ones only move their
    /// desired status forward (a task definition never changes in place).
    /// Returns whether it was new.
    fn accept(&mut self, incoming: IncomingTask) -> bool {
        if let Some(task) = self.tasks.get_mut(&incoming.spec.arn) {
            task.raise_desired_status(incoming.desired_status);
            return false;
        }
        let now = now_ms();
        let mut task = Task::new(incoming, now);
        if let Err(why) = reconcile::validate_volumes(&task) {
            tracing::warn!(task = task.arn(), why, "task volumes cannot be set up");
            task.set_terminal_reason(format!("ResourceInitializationError: {why}"));
            task.raise_desired_status(TaskStatus::Stopped);
        } else if let Err(why) = reconcile::validate_dependencies(&task) {
            tracing::warn!(
                task = task.arn(),
                why,
                "task dependencies cannot be resolved"
            );
            task.set_terminal_reason(format!(
                "Task dependencies cannot be resolved, taskArn: {}",
                task.arn()
            ));
            task.raise_desired_status(TaskStatus::Stopped);
        }
        tracing::info!(task = task.arn(), desired = ?task.desired_status, "task added");
        self.tasks.insert(task.arn().to_string(), task);
        true
    }

    fn stop_grace(&self, arn: &str, index: usize) -> Duration {
        let secs = self
            .tasks
            .get(arn)
            .and_then(|t| t.containers.get(index))
            .map_or(0, |c| c.spec.stop_timeout_secs);
        if secs > 0 {
            Duration::from_secs(secs)
        } else {
            self.settings.actions.default_stop_timeout
        }
    }

    /// Re-plans one task: applies every transition that needs no Docker
    /// call, and plans the Docker work that starts once the task is saved.
    fn progress(&mut self, arn: &str) {
        let mut planned = Planned::default();
        let mut blocked = false;
        {
            let Some(task) = self.tasks.get_mut(arn) else {
                return;
            };
            for _ in 0..(task.containers.len() * 8 + 8) {
                let now = now_ms();
                reconcile::update_known_status(task, now);
                reconcile::update_desired_status(task);
                let plan = reconcile::plan(task, now);
                blocked = plan.blocked;
                for index in &plan.volumes {
                    task.volumes[*index].in_flight = true;
                    planned.volumes.push((*index, task.volumes[*index].clone()));
                }
                if plan.fetch_secrets {
                    task.secrets = crate::secrets::SecretsState::Fetching;
                    planned.secrets = true;
                }
                let mut changed = false;
                for (index, why) in &plan.dependency_failures {
                    let c = &mut task.containers[*index];
                    c.set_reason(format!("CannotStartContainerError: {why}"));
                    c.exit_code.get_or_insert(DEPENDENCY_EXIT_CODE);
                    c.desired_status = ContainerStatus::Stopped;
                    changed = true;
                }
                for step in &plan.steps {
                    let c = &mut task.containers[step.container];
                    match step.action {
                        None => {
                            if step.target > c.known_status {
                                c.known_status = step.target;
                                if step.target == ContainerStatus::Stopped && c.spec.essential {
                                    task.execution_stopped_at_ms.get_or_insert(now);
                                }
                                changed = true;
                            }
                        }
                        Some(Action::Create)
                            if task.spec.network_mode == task::NetworkMode::Bridge =>
                        {
                            if let Err(e) = self.ports.assign(c) {
                                // No port, no container: a create failure.
                                reconcile::apply_outcome(
                                    task,
                                    step.container,
                                    step.target,
                                    Outcome::Failed {
                                        error: format!("CannotCreateContainerError: {e}"),
                                        gone: false,
                                    },
                                    false,
                                    now,
                                );
                                changed = true;
                                continue;
                            }
                            Self::start_step(task, step, Action::Create, &mut planned.work);
                        }
                        Some(action) => Self::start_step(task, step, action, &mut planned.work),
                    }
                }
                if !changed {
                    break;
                }
            }
            reconcile::update_known_status(task, now_ms());
            // Secret values live no longer than the creates that use them.
            if matches!(task.secrets, crate::secrets::SecretsState::Ready(_))
                && !reconcile::awaits_create(task)
            {
                task.secrets = crate::secrets::SecretsState::Missing;
            }
            for (i, c) in task.containers.iter().enumerate() {
                if let Some(id) = &c.docker_id {
                    self.by_docker_id.insert(id.clone(), (arn.to_string(), i));
                }
            }
        }
        if blocked && self.rechecks.insert(arn.to_string()) {
            let tx = self.tx.clone();
            let arn = arn.to_string();
            tokio::spawn(async move {
                tokio::time::sleep(RECHECK_DELAY).await;
                let _ = tx.send(Msg::Recheck { arn });
            });
        }
        let entry = self.planned.entry(arn.to_string()).or_default();
        entry.work.extend(planned.work);
        entry.volumes.extend(planned.volumes);
        entry.secrets |= planned.secrets;
        self.dirty.insert(arn.to_string());
    }

    /// Marks a step's action as in flight; a create gets its container
    /// name reserved first, so a restart finds the container.
    fn start_step(
        task: &mut Task,
        step: &reconcile::Step,
        action: Action,
        work: &mut Vec<(usize, ContainerStatus, Action)>,
    ) {
        let c = &mut task.containers[step.container];
        c.applied_status = Some(step.target);
        if action == Action::Create && c.docker_name.is_none() {
            let name = create_config::docker_name(task, &task.containers[step.container].spec.name);
            task.containers[step.container].docker_name = Some(name);
        }
        work.push((step.container, step.target, action));
    }

    fn schedule_cleanup(&self, arn: String, stopped_at_ms: i64) {
        let jitter = self.settings.cleanup_jitter.as_millis();
        let jitter_ms = if jitter > 0 {
            rand::random_range(0..=u64::try_from(jitter).unwrap_or(u64::MAX))
        } else {
            0
        };
        let due = stopped_at_ms
            .saturating_add(
                i64::try_from(self.settings.cleanup_wait.as_millis()).unwrap_or(i64::MAX),
            )
            .saturating_add(i64::try_from(jitter_ms).unwrap_or(0));
        let delay = Duration::from_millis(u64::try_from(due - now_ms()).unwrap_or(0));
        self.send_later(delay, Msg::Cleanup { arn });
    }

    fn send_later(&self, delay: Duration, msg: Msg) {
        let tx = self.tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = tx.send(msg);
        });
    }

    /// Removes a stopped task's containers and forgets it, once its STOPPED
    /// report has been delivered (docs/engine.md §14).
    async fn cleanup(&mut self, arn: String) {
        if !self.tasks.contains_key(&arn) {
            return;
        }
        match self.store.has_pending_reports(&arn).await {
            Ok(false) => {}
            Ok(true) | Err(_) => {
                // The delivery wakes the cleanup (Msg::ReportSettled): a
                // queue of reports that outlasts the cleanup wait must not
                // keep containers for another recheck period.
                self.awaiting_report.insert(arn.clone());
                self.send_later(CLEANUP_RECHECK, Msg::Cleanup { arn });
                return;
            }
        }
        self.awaiting_report.remove(&arn);
        let batch = Batch {
            delete_tasks: vec![arn.clone()],
            ..Batch::default()
        };
        if let Err(e) = self.store.commit(batch).await {
            tracing::error!(task = arn, error = %e, "deleting task record failed; will retry");
            self.send_later(CLEANUP_RECHECK, Msg::Cleanup { arn });
            return;
        }
        let Some(task) = self.tasks.remove(&arn) else {
            return;
        };
        self.saved.remove(&arn);
        self.dirty.remove(&arn);
        self.planned.remove(&arn);
        self.cleanups.remove(&arn);
        self.timings.forget(&arn);
        let ids: Vec<String> = task
            .containers
            .iter()
            .filter_map(|c| c.docker_id.clone())
            .collect();
        let task_volumes: Vec<String> = task
            .volumes
            .iter()
            .filter(|v| !v.shared && v.status == task::ResourceStatus::Created)
            .map(|v| v.docker_name.clone())
            .collect();
        let image_users: Vec<crate::images::ContainerRef> = task
            .containers
            .iter()
            .map(|c| crate::images::ContainerRef::new(&arn, &c.spec.name))
            .collect();
        let images = self.settings.actions.images.clone();
        let cgroups = self.settings.actions.task_cgroups.clone();
        let task_id = task.spec.task_id().to_string();
        tracing::info!(task = arn, "cleaning up stopped task");
        crate::memory::release_freed_soon();
        if let Some(files) = &self.settings.actions.metadata_files {
            files.remove_task(&arn);
        }
        self.settings
            .actions
            .credentials
            .remove(&arn, crate::credentials::RoleType::TaskExecution);
        for id in &ids {
            self.by_docker_id.remove(id);
        }
        let docker = self.docker.clone();
        tokio::spawn(async move {
            for id in ids {
                if let Err(e) = docker.remove_container(&id).await {
                    if !e.is_not_found() {
                        tracing::warn!(docker_id = id, error = %e, "removing container failed");
                    }
                }
            }
            // Only now are the images free for image cleanup.
            for user in &image_users {
                images.remove_reference(user).await;
            }
            // Volumes and the task cgroup go after the containers in them.
            for name in task_volumes {
                if let Err(e) = docker.remove_volume(&name).await {
                    tracing::warn!(volume = name, error = %e, "removing task volume failed");
                }
            }
            if let Some(cgroups) = cgroups {
                if let Err(e) = cgroups.remove(&task_id) {
                    tracing::warn!(task = task_id, error = %e, "removing the task cgroup failed");
                }
            }
        });
    }

    /// Starts an exited container again; if Docker refuses, the exit that
    /// triggered the restart is applied after all.
    fn spawn_restart(&self, arn: String, index: usize, exited: Observation) {
        let docker = self.docker.clone();
        let tx = self.tx.clone();
        let timeout = self.settings.actions.start_timeout;
        tokio::spawn(async move {
            if let Err(e) = docker.start_container(&exited.docker_id, timeout).await {
                tracing::warn!(docker_id = exited.docker_id, error = %e, "restart failed; the container stays stopped");
                let _ = tx.send(Msg::RestartFailed {
                    arn,
                    index,
                    observation: exited,
                });
            }
        });
    }

    /// Stops a container outside any transition (one that runs when it
    /// should not); a failure is logged, and the next check sees it again.
    fn spawn_stop(&self, docker_id: String, grace: Duration) {
        let docker = self.docker.clone();
        tokio::spawn(async move {
            if let Err(e) = docker.stop_container(&docker_id, grace).await {
                if !e.is_not_modified() && !e.is_not_found() {
                    tracing::warn!(docker_id, error = %e, "stopping a container failed");
                }
            }
        });
    }

    fn spawn_inspect(&self, arn: String, index: usize, docker_id: String) {
        let docker = self.docker.clone();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            match docker.inspect_container(&docker_id).await {
                Ok(observation) => {
                    let _ = tx.send(Msg::Observed {
                        arn,
                        index,
                        observation,
                    });
                }
                // The event watcher re-checks everything once Docker answers
                // again, and the periodic re-check catches the rest.
                Err(e) => tracing::warn!(docker_id, error = %e, "inspect failed"),
            }
        });
    }
}
