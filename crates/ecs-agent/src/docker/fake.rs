//! A deterministic in-memory Docker for engine tests (docs/architecture.md
//! §7). It keeps containers, images and volumes in maps, answers with the
//! statuses the real daemon uses (404, 304, 409), emits the events the
//! agent subscribes to, and lets a test script what real Docker does on its
//! own: a container exiting, turning unhealthy, vanishing, the daemon going
//! away, a call failing or never answering. Calls that take time sleep on
//! tokio's clock, so under paused time a whole task lifecycle runs in
//! microseconds and in the same order every run.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use tokio::sync::broadcast;

use super::{
    ContainerDetails, ContainerEvent, DockerApi, DockerError, DockerResult, ImageInfo,
    LabelledContainer, Observation, RegistryAuth, VolumeInfo,
};
use crate::engine::now_ms;
use crate::engine::status::{ContainerStatus, HealthStatus};
use crate::engine::task::{PortBinding, Protocol};

/// The operations a fault can be attached to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Ping,
    InspectImage,
    Pull,
    RemoveImage,
    Create,
    Start,
    Stop,
    Remove,
    Inspect,
    List,
    CreateVolume,
    InspectVolume,
    RemoveVolume,
}

/// How a call goes wrong.
#[derive(Debug, Clone)]
pub enum Fault {
    /// The daemon answers with this status and message.
    Status(u16, &'static str),
    /// The daemon never answers; the caller's time limit ends the call.
    Hang,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    Created,
    Running,
    Exited,
}

#[derive(Debug, Clone)]
pub struct FakeContainer {
    pub id: String,
    pub name: String,
    pub image: String,
    pub labels: HashMap<String, String>,
    /// The create body as the agent sent it.
    pub body: serde_json::Value,
    pub state: RunState,
    pub exit_code: Option<i64>,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
    pub health: Option<HealthStatus>,
    pub oom_killed: bool,
    /// SIGTERM is ignored: a stop waits the whole grace period, then kills.
    pub ignores_sigterm: bool,
    pub start_count: u32,
}

#[derive(Clone)]
enum Feed {
    Event(ContainerEvent),
    /// The connection to the daemon broke: event streams end with an error.
    Broken,
}

#[derive(Default)]
struct State {
    containers: BTreeMap<String, FakeContainer>,
    /// Local images by every reference they carry (and their ID).
    images: BTreeMap<String, ImageInfo>,
    /// References a pull can fetch.
    registry: BTreeSet<String>,
    volumes: BTreeMap<String, VolumeInfo>,
    faults: Vec<(Op, Fault)>,
    calls: Vec<(Op, String)>,
    /// How long each call of an operation takes (tokio's clock).
    call_times: std::collections::HashMap<Op, Duration>,
    /// Calls of each operation in progress now, and the most ever.
    in_flight: std::collections::HashMap<Op, (usize, usize)>,
    /// Every event with its time in Unix seconds, for `since` replays.
    log: Vec<(i64, ContainerEvent)>,
    down: bool,
    next_id: u64,
}

/// The fake daemon; share it as `Arc<FakeDocker>`.
pub struct FakeDocker {
    state: Mutex<State>,
    feed: broadcast::Sender<Feed>,
}

const INSPECT_LIMIT: Duration = Duration::from_secs(30);

fn connection_refused() -> DockerError {
    DockerError::Api(bollard::errors::Error::IOError {
        err: std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "connection refused (fake daemon is down)",
        ),
    })
}

impl FakeDocker {
    pub fn new() -> Arc<Self> {
        let (feed, _) = broadcast::channel(1024);
        Arc::new(Self {
            state: Mutex::new(State::default()),
            feed,
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn emit(&self, state: &mut State, docker_id: &str, action: &str, exit_code: Option<i64>) {
        let event = ContainerEvent {
            docker_id: docker_id.to_string(),
            action: action.to_string(),
            exit_code,
        };
        state.log.push((now_ms() / 1000, event.clone()));
        let _ = self.feed.send(Feed::Event(event));
    }

    // ----- what the test sets up -----

    /// An image present locally under `reference`.
    pub fn add_image(&self, reference: &str) {
        let mut st = self.state();
        let id = format!("sha256:{:064x}", st.images.len() + 1);
        let info = ImageInfo {
            id: id.clone(),
            repo_digests: vec![],
            env: vec!["PATH=/bin".into()],
            size: 1_000_000,
        };
        st.images.insert(reference.to_string(), info.clone());
        st.images.insert(id, info);
    }

    /// An image a pull can fetch (not present until pulled).
    pub fn add_to_registry(&self, reference: &str) {
        self.state().registry.insert(reference.to_string());
    }

    /// The next call of `op` fails this way (faults queue per op).
    pub fn fail(&self, op: Op, fault: Fault) {
        self.state().faults.push((op, fault));
    }

    /// Every later call of `op` takes `time` before it is carried out.
    pub fn set_call_time(&self, op: Op, time: Duration) {
        self.state().call_times.insert(op, time);
    }

    /// The most calls of `op` ever in progress at once, among those given
    /// a call time.
    pub fn max_in_flight(&self, op: Op) -> usize {
        self.state().in_flight.get(&op).map_or(0, |(_, most)| *most)
    }

    /// The daemon goes away (every call fails, event streams break) or
    /// comes back.
    pub fn set_down(&self, down: bool) {
        self.state().down = down;
        if down {
            let _ = self.feed.send(Feed::Broken);
        }
    }

    /// Makes a container ignore SIGTERM.
    pub fn ignore_sigterm(&self, id: &str) {
        if let Some(c) = self.state().containers.get_mut(id) {
            c.ignores_sigterm = true;
        }
    }

    /// A container created behind the agent's back (by an operator, or an
    /// agent that lost its state), with these labels, running.
    pub fn add_running_container(&self, name: &str, labels: &[(&str, &str)]) -> String {
        let mut st = self.state();
        st.next_id += 1;
        let id = format!("{:064x}", 0xf000 + st.next_id);
        let now = now_ms();
        st.containers.insert(
            id.clone(),
            FakeContainer {
                id: id.clone(),
                name: name.to_string(),
                image: "unknown".into(),
                labels: labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                body: serde_json::Value::Null,
                state: RunState::Running,
                exit_code: None,
                started_at_ms: Some(now),
                finished_at_ms: None,
                health: None,
                oom_killed: false,
                ignores_sigterm: false,
                start_count: 1,
            },
        );
        id
    }

    // ----- what Docker does on its own -----

    /// The container's process exits with `code`; Docker emits `die`.
    pub fn exit(&self, id: &str, code: i64) {
        self.exit_with(id, code, true, false);
    }

    /// The container exits but the event is lost (only an inspect sees it).
    pub fn exit_silently(&self, id: &str, code: i64) {
        self.exit_with(id, code, false, false);
    }

    /// The kernel's OOM killer ends the container.
    pub fn oom_kill(&self, id: &str) {
        self.exit_with(id, 137, true, true);
    }

    fn exit_with(&self, id: &str, code: i64, announce: bool, oom: bool) {
        let mut st = self.state();
        let Some(c) = st.containers.get_mut(id) else {
            return;
        };
        if c.state != RunState::Running {
            return;
        }
        c.state = RunState::Exited;
        c.exit_code = Some(code);
        c.finished_at_ms = Some(now_ms());
        c.oom_killed = oom;
        if announce {
            if oom {
                self.emit(&mut st, id, "oom", None);
            }
            self.emit(&mut st, id, "die", Some(code));
        }
    }

    /// The container's health check result changes.
    pub fn set_health(&self, id: &str, health: HealthStatus) {
        let mut st = self.state();
        if let Some(c) = st.containers.get_mut(id) {
            c.health = Some(health);
            self.emit(&mut st, id, "health_status", None);
        }
    }

    /// Emits an event with no change behind it, as a late or duplicated
    /// event arrives.
    pub fn replay_event(&self, id: &str, action: &str) {
        let mut st = self.state();
        self.emit(&mut st, id, action, None);
    }

    /// The container disappears without a trace (removed by hand while the
    /// agent was not looking).
    pub fn vanish(&self, id: &str) {
        self.state().containers.remove(id);
    }

    // ----- what the test reads back -----

    pub fn container(&self, id: &str) -> Option<FakeContainer> {
        self.state().containers.get(id).cloned()
    }

    /// Every call so far, as `(operation, target)`.
    pub fn calls(&self) -> Vec<(Op, String)> {
        self.state().calls.clone()
    }

    /// How many calls of `op` were made.
    pub fn count(&self, op: Op) -> usize {
        self.state().calls.iter().filter(|(o, _)| *o == op).count()
    }

    pub fn has_image(&self, reference: &str) -> bool {
        self.state().images.contains_key(reference)
    }

    pub fn has_volume(&self, name: &str) -> bool {
        self.state().volumes.contains_key(name)
    }

    // ----- the call path -----

    /// Records the call and applies a queued fault or a dead daemon.
    /// `limit` is the caller's time limit for a hung call.
    async fn enter(&self, op: Op, target: &str, limit: Duration) -> DockerResult<()> {
        let call_time = {
            let mut st = self.state();
            let time = st.call_times.get(&op).copied();
            if time.is_some() {
                let (now, most) = st.in_flight.entry(op).or_default();
                *now += 1;
                *most = (*most).max(*now);
            }
            time
        };
        if let Some(time) = call_time {
            tokio::time::sleep(time).await;
            if let Some((now, _)) = self.state().in_flight.get_mut(&op) {
                *now -= 1;
            }
        }
        let (fault, down) = {
            let mut st = self.state();
            st.calls.push((op, target.to_string()));
            let fault = st
                .faults
                .iter()
                .position(|(o, _)| *o == op)
                .map(|i| st.faults.remove(i).1);
            (fault, st.down)
        };
        if down {
            return Err(connection_refused());
        }
        match fault {
            None => Ok(()),
            Some(Fault::Status(code, message)) => Err(DockerError::status(code, message)),
            Some(Fault::Hang) => {
                tokio::time::sleep(limit).await;
                Err(DockerError::Timeout(limit))
            }
        }
    }

    fn observe(c: &FakeContainer) -> Observation {
        let status = match c.state {
            RunState::Created => ContainerStatus::Created,
            RunState::Running => ContainerStatus::Running,
            RunState::Exited => ContainerStatus::Stopped,
        };
        Observation {
            docker_id: c.id.clone(),
            status,
            exit_code: (c.state == RunState::Exited)
                .then_some(c.exit_code)
                .flatten(),
            error: c
                .oom_killed
                .then(|| "OutOfMemoryError: Container killed due to memory usage".to_string()),
            started_at_ms: c.started_at_ms,
            finished_at_ms: c.finished_at_ms,
            port_bindings: if c.state == RunState::Running {
                port_bindings(&c.body)
            } else {
                Vec::new()
            },
            health: c.health,
            labels: c.labels.clone(),
            pid: None,
        }
    }
}

/// The host ports asked for in the create body, as Docker reports them.
fn port_bindings(body: &serde_json::Value) -> Vec<PortBinding> {
    let mut out = Vec::new();
    let Some(map) = body
        .pointer("/HostConfig/PortBindings")
        .and_then(|v| v.as_object())
    else {
        return out;
    };
    for (key, bindings) in map {
        let (port, proto) = key.split_once('/').unwrap_or((key.as_str(), "tcp"));
        let Ok(container_port) = port.parse::<u16>() else {
            continue;
        };
        for b in bindings.as_array().into_iter().flatten() {
            let host_port = b
                .get("HostPort")
                .and_then(|p| p.as_str())
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            out.push(PortBinding {
                container_port,
                host_port,
                bind_ip: b
                    .get("HostIp")
                    .and_then(|p| p.as_str())
                    .filter(|ip| !ip.is_empty())
                    .unwrap_or("0.0.0.0")
                    .to_string(),
                protocol: if proto == "udp" {
                    Protocol::Udp
                } else {
                    Protocol::Tcp
                },
            });
        }
    }
    out
}

impl DockerApi for FakeDocker {
    fn ping(&self, limit: Duration) -> BoxFuture<'_, DockerResult<()>> {
        Box::pin(async move { self.enter(Op::Ping, "", limit).await })
    }

    fn inspect_image<'a>(
        &'a self,
        image: &'a str,
    ) -> BoxFuture<'a, DockerResult<Option<ImageInfo>>> {
        Box::pin(async move {
            self.enter(Op::InspectImage, image, INSPECT_LIMIT).await?;
            Ok(self.state().images.get(image).cloned())
        })
    }

    fn pull_image<'a>(
        &'a self,
        image: &'a str,
        _auth: Option<RegistryAuth>,
        _inactivity: Duration,
        overall: Duration,
    ) -> BoxFuture<'a, DockerResult<()>> {
        Box::pin(async move {
            self.enter(Op::Pull, image, overall).await?;
            let known = self.state().registry.contains(image);
            if !known {
                return Err(DockerError::status(
                    404,
                    "manifest unknown: the registry has no such image",
                ));
            }
            self.add_image(image);
            Ok(())
        })
    }

    fn remove_image<'a>(&'a self, image: &'a str) -> BoxFuture<'a, DockerResult<()>> {
        Box::pin(async move {
            self.enter(Op::RemoveImage, image, INSPECT_LIMIT).await?;
            let mut st = self.state();
            let Some(info) = st.images.get(image).cloned() else {
                return Err(DockerError::status(404, "No such image"));
            };
            if st
                .containers
                .values()
                .any(|c| st.images.get(&c.image).is_some_and(|i| i.id == info.id))
            {
                return Err(DockerError::status(
                    409,
                    "image is being used by a container",
                ));
            }
            st.images.remove(image);
            if !st
                .images
                .iter()
                .any(|(k, v)| v.id == info.id && *k != info.id)
            {
                st.images.remove(&info.id);
            }
            Ok(())
        })
    }

    fn create_container<'a>(
        &'a self,
        name: &'a str,
        body: serde_json::Value,
        limit: Duration,
    ) -> BoxFuture<'a, DockerResult<String>> {
        Box::pin(async move {
            self.enter(Op::Create, name, limit).await?;
            let mut st = self.state();
            if st.containers.values().any(|c| c.name == name) {
                return Err(DockerError::status(
                    409,
                    "Conflict. The container name is already in use",
                ));
            }
            let image = body
                .get("Image")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string();
            if !st.images.contains_key(&image) {
                return Err(DockerError::status(404, "No such image"));
            }
            let labels = body
                .get("Labels")
                .and_then(|v| serde_json::from_value::<HashMap<String, String>>(v.clone()).ok())
                .unwrap_or_default();
            st.next_id += 1;
            let id = format!("{:064x}", st.next_id);
            st.containers.insert(
                id.clone(),
                FakeContainer {
                    id: id.clone(),
                    name: name.to_string(),
                    image,
                    labels,
                    body,
                    state: RunState::Created,
                    exit_code: None,
                    started_at_ms: None,
                    finished_at_ms: None,
                    health: None,
                    oom_killed: false,
                    ignores_sigterm: false,
                    start_count: 0,
                },
            );
            self.emit(&mut st, &id, "create", None);
            Ok(id)
        })
    }

    fn start_container<'a>(
        &'a self,
        id: &'a str,
        limit: Duration,
    ) -> BoxFuture<'a, DockerResult<()>> {
        Box::pin(async move {
            self.enter(Op::Start, id, limit).await?;
            let mut st = self.state();
            let Some(c) = st.containers.get_mut(id) else {
                return Err(DockerError::status(404, "No such container"));
            };
            if c.state == RunState::Running {
                return Err(DockerError::status(304, ""));
            }
            c.state = RunState::Running;
            c.started_at_ms = Some(now_ms());
            c.finished_at_ms = None;
            c.exit_code = None;
            c.start_count += 1;
            self.emit(&mut st, id, "start", None);
            Ok(())
        })
    }

    fn stop_container<'a>(
        &'a self,
        id: &'a str,
        grace: Duration,
    ) -> BoxFuture<'a, DockerResult<()>> {
        Box::pin(async move {
            self.enter(Op::Stop, id, grace + Duration::from_secs(120))
                .await?;
            let stubborn = match self.state().containers.get(id) {
                None => return Err(DockerError::status(404, "No such container")),
                Some(c) if c.state != RunState::Running => {
                    return Err(DockerError::status(304, ""))
                }
                Some(c) => c.ignores_sigterm,
            };
            if stubborn {
                tokio::time::sleep(grace).await;
            }
            let code = if stubborn { 137 } else { 143 };
            self.exit_with(id, code, true, false);
            let mut st = self.state();
            self.emit(&mut st, id, "stop", None);
            Ok(())
        })
    }

    fn remove_container<'a>(&'a self, id: &'a str) -> BoxFuture<'a, DockerResult<()>> {
        Box::pin(async move {
            self.enter(Op::Remove, id, INSPECT_LIMIT).await?;
            let mut st = self.state();
            match st.containers.get(id).map(|c| c.state) {
                None => Err(DockerError::status(404, "No such container")),
                Some(RunState::Running) => Err(DockerError::status(
                    409,
                    "You cannot remove a running container",
                )),
                Some(_) => {
                    st.containers.remove(id);
                    self.emit(&mut st, id, "destroy", None);
                    Ok(())
                }
            }
        })
    }

    fn inspect_container<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, DockerResult<Option<Observation>>> {
        Box::pin(async move {
            self.enter(Op::Inspect, id, INSPECT_LIMIT).await?;
            let st = self.state();
            let found = st
                .containers
                .get(id)
                .or_else(|| st.containers.values().find(|c| c.name == id));
            Ok(found.map(Self::observe))
        })
    }

    fn container_details<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, DockerResult<Option<ContainerDetails>>> {
        Box::pin(async move {
            self.enter(Op::Inspect, id, INSPECT_LIMIT).await?;
            Ok(self.state().containers.get(id).map(|c| ContainerDetails {
                name: format!("/{}", c.name),
                image: c.image.clone(),
                running: c.state == RunState::Running,
                labels: c.labels.clone().into_iter().collect(),
                port_bindings: port_bindings(&c.body),
                ..ContainerDetails::default()
            }))
        })
    }

    fn containers_with_label<'a>(
        &'a self,
        label: &'a str,
    ) -> BoxFuture<'a, DockerResult<Vec<LabelledContainer>>> {
        Box::pin(async move {
            self.enter(Op::List, label, INSPECT_LIMIT).await?;
            Ok(self
                .state()
                .containers
                .values()
                .filter(|c| c.labels.contains_key(label))
                .map(|c| LabelledContainer {
                    docker_id: c.id.clone(),
                    running: c.state == RunState::Running,
                    labels: c.labels.clone(),
                })
                .collect())
        })
    }

    fn create_volume<'a>(&'a self, spec: &'a VolumeInfo) -> BoxFuture<'a, DockerResult<String>> {
        Box::pin(async move {
            self.enter(Op::CreateVolume, &spec.name, INSPECT_LIMIT)
                .await?;
            self.state()
                .volumes
                .entry(spec.name.clone())
                .or_insert_with(|| spec.clone());
            Ok(spec.name.clone())
        })
    }

    fn inspect_volume<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, DockerResult<Option<VolumeInfo>>> {
        Box::pin(async move {
            self.enter(Op::InspectVolume, name, INSPECT_LIMIT).await?;
            Ok(self.state().volumes.get(name).cloned())
        })
    }

    fn remove_volume<'a>(&'a self, name: &'a str) -> BoxFuture<'a, DockerResult<()>> {
        Box::pin(async move {
            self.enter(Op::RemoveVolume, name, INSPECT_LIMIT).await?;
            self.state().volumes.remove(name);
            Ok(())
        })
    }

    fn container_events(
        &self,
        since: Option<i64>,
    ) -> BoxStream<'static, DockerResult<ContainerEvent>> {
        // Subscribe before reading the log, under the lock, so no event
        // falls between the replay and the live feed.
        let st = self.state();
        if st.down {
            return futures_util::stream::once(async { Err(connection_refused()) }).boxed();
        }
        let live = self.feed.subscribe();
        let replay: Vec<ContainerEvent> = match since {
            Some(since) => st
                .log
                .iter()
                .filter(|(at, _)| *at >= since)
                .map(|(_, e)| e.clone())
                .collect(),
            None => Vec::new(),
        };
        drop(st);
        let live = futures_util::stream::unfold(Some(live), |rx| async move {
            let mut rx = rx?;
            loop {
                match rx.recv().await {
                    Ok(Feed::Event(e)) => return Some((Ok(e), Some(rx))),
                    Ok(Feed::Broken) => return Some((Err(connection_refused()), None)),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        futures_util::stream::iter(replay.into_iter().map(Ok))
            .chain(live)
            .boxed()
    }
}
