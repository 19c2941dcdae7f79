//! The plane's whole state (clusters, task definitions, container instances,
//! tasks, services, the sequence counter), the lock around it, and its
//! persistence to `<data-dir>/state.redb` (see [`disk`]).
//!
//! Every mutation runs on a draft copy, which shares every unchanged row
//! with the state (see [`table`]), and the rows it changed are written to
//! disk in one transaction before it becomes visible, so a failed write
//! leaves both memory and disk at the previous state. The lock is a plain
//! mutex, never held across an `.await`; callers on async threads reach it
//! through `spawn_blocking` (docs/ecs-local.md §6).

pub mod disk;
pub mod table;
pub mod task_table;

use crate::agent_update::AgentUpdate;
use crate::credentials::{IssuedCredentials, RoleType};
use crate::placement::Demand;
use ecs_model::ecs_api::{
    Attribute, ClusterSetting, Resource, Service, Tag, Task, TaskDefinition, VersionInfo,
};
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
pub use table::Table;
pub use task_table::TaskTable;

/// Stopped tasks are forgotten this long after they stopped, as ECS does
/// (it keeps them for about an hour), so the state stays bounded.
pub const STOPPED_TASK_RETENTION_SECS: f64 = 3600.0;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    // The cause is part of each message (and deliberately not a `source`),
    // so logs that print only the error still say what went wrong.
    #[error("cannot create data directory {path}: {error}")]
    CreateDir {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot read state file {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("state file {path} is not valid: {error}")]
    Parse {
        path: PathBuf,
        error: serde_json::Error,
    },
    #[error("cannot encode state: {0}")]
    Encode(serde_json::Error),
    #[error("cannot write state file {path}: {error}")]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("state database {path} failed: {error}")]
    Database { path: PathBuf, error: String },
    #[error("state database {path} holds a record {key:?} that is not valid: {error}")]
    Record {
        path: PathBuf,
        key: String,
        error: serde_json::Error,
    },
}

/// A cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRecord {
    pub name: String,
    pub arn: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<Tag>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<Vec<ClusterSetting>>,
    /// CreateCluster's `configuration` (ECS Exec, managed storage), kept
    /// and shown as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration: Option<serde_json::Value>,
}

/// A registered container instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceRecord {
    /// The last path segment of the ARN; the key in [`State::instances`].
    pub id: String,
    /// The ARN as first handed out (or as a restarted agent sent it).
    pub arn: String,
    /// Cluster name.
    pub cluster: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ec2_instance_id: Option<String>,
    /// What the agent registered with.
    #[serde(default)]
    pub attributes: Vec<Attribute>,
    /// What PutAttributes set (kept across re-registrations; a name here
    /// wins over the agent's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub custom_attributes: Vec<Attribute>,
    #[serde(default)]
    pub registered_resources: Vec<Resource>,
    /// `ACTIVE`, `DRAINING` or `INACTIVE`.
    pub status: String,
    /// Only true while an ACS websocket is open; never persisted, so a
    /// restarted plane starts with every agent disconnected.
    #[serde(skip)]
    pub agent_connected: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_info: Option<VersionInfo>,
    pub registered_at: f64,
    /// Bumped on every change, like `ContainerInstance.version`.
    pub version: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<Tag>>,
    /// The latest UpdateContainerAgent of this instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_update: Option<AgentUpdate>,
}

/// A task: the ECS API view plus what the plane needs to schedule it and
/// deliver it to its agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskRecord {
    /// The last path segment of the task ARN; the key in [`State::tasks`].
    pub id: String,
    /// Cluster name.
    pub cluster: String,
    /// Id of the container instance it is placed on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    pub family: String,
    pub revision: i64,
    /// What the task holds on its instance until it is STOPPED.
    pub demand: Demand,
    /// The ECS API view, kept current on every change.
    pub task: Task,
    /// A payload for this task went to an agent at least once.
    #[serde(default)]
    pub sent: bool,
    /// The desired status the agent last acked a payload for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_desired: Option<String>,
    /// StopTask or the service scheduler asked for it to stop (its reason
    /// and stop code are then kept when the agent reports it stopped).
    #[serde(default, alias = "stoppedByUser")]
    pub stop_requested: bool,
    /// The service scheduler stopped it because its health checks failed
    /// (a failed task of its deployment, as one that exited).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stopped_unhealthy: bool,
    /// RunTask's `clientToken`: the same token again gets this task back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
    /// The service that started it (name; same cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The task role in effect: RunTask's `overrides.taskRoleArn`, else the
    /// task definition's `taskRoleArn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_role_arn: Option<String>,
    /// The execution role in effect, likewise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_role_arn: Option<String>,
    /// Credentials issued for the task role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_role_credentials: Option<IssuedCredentials>,
    /// Credentials issued for the execution role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_role_credentials: Option<IssuedCredentials>,
}

impl TaskRecord {
    pub fn arn(&self) -> &str {
        self.task.task_arn.as_deref().unwrap_or_default()
    }

    pub fn desired_status(&self) -> &str {
        self.task.desired_status.as_deref().unwrap_or("RUNNING")
    }

    pub fn last_status(&self) -> &str {
        self.task.last_status.as_deref().unwrap_or("PENDING")
    }

    pub fn is_stopped(&self) -> bool {
        self.last_status() == "STOPPED"
    }

    /// The agent still has to learn this task's current desired status.
    pub fn needs_delivery(&self) -> bool {
        self.delivered_desired.as_deref() != Some(self.desired_status())
    }

    /// The credentials issued for one of the task's roles.
    pub fn credentials(&self, role: RoleType) -> Option<&IssuedCredentials> {
        match role {
            RoleType::TaskApplication => self.task_role_credentials.as_ref(),
            RoleType::TaskExecution => self.execution_role_credentials.as_ref(),
        }
    }

    pub fn credentials_mut(&mut self, role: RoleType) -> Option<&mut IssuedCredentials> {
        match role {
            RoleType::TaskApplication => self.task_role_credentials.as_mut(),
            RoleType::TaskExecution => self.execution_role_credentials.as_mut(),
        }
    }

    /// Bumps the API `version`, as ECS does on every change of a task.
    pub fn touch(&mut self) {
        self.task.version = Some(self.task.version.unwrap_or(0).saturating_add(1));
    }
}

/// A service: the ECS API view, kept current by the service scheduler
/// (`crate::services`), plus what the scheduler remembers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceRecord {
    /// Cluster name.
    pub cluster: String,
    pub name: String,
    pub service: Service,
    /// The task definition of the last deployment that completed: where
    /// the circuit breaker rolls back to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_task_definition: Option<String>,
    /// CreateService's `clientToken`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
    /// The steady-state event was written and nothing changed since.
    #[serde(default)]
    pub steady: bool,
}

impl ServiceRecord {
    /// The key in [`State::services`].
    pub fn key(cluster: &str, name: &str) -> String {
        format!("{cluster}/{name}")
    }

    pub fn status(&self) -> &str {
        self.service.status.as_deref().unwrap_or("ACTIVE")
    }
}

/// Everything the plane knows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    /// One counter for payload `seqNum` (and later manifest `timeline`); it
    /// only grows, across restarts too, because agents persist the highest
    /// value they saw.
    #[serde(default)]
    pub seq: i64,
    /// While a store update runs: `seq` before it.
    #[serde(skip)]
    seq_before: Option<i64>,
    #[serde(default)]
    pub clusters: Table<ClusterRecord>,
    /// Revisions of each family, revision `n` at index `n - 1`.
    #[serde(default)]
    pub task_definitions: Table<Vec<TaskDefinition>>,
    #[serde(default)]
    pub instances: Table<InstanceRecord>,
    #[serde(default)]
    pub tasks: TaskTable,
    /// Keyed by `<cluster>/<name>` ([`ServiceRecord::key`]).
    #[serde(default)]
    pub services: Table<ServiceRecord>,
    /// The tags of each task definition revision, keyed by
    /// `<family>:<revision>`.
    #[serde(default)]
    pub task_definition_tags: Table<Vec<Tag>>,
    /// Account settings changed from their defaults (name → value).
    #[serde(default)]
    pub account_settings: Table<String>,
}

impl InstanceRecord {
    /// The agent's attributes with the custom ones laid over them.
    pub fn all_attributes(&self) -> Vec<Attribute> {
        let mut all: Vec<Attribute> = self
            .attributes
            .iter()
            .filter(|a| !self.custom_attributes.iter().any(|c| c.name == a.name))
            .cloned()
            .collect();
        all.extend(self.custom_attributes.iter().cloned());
        all
    }
}

impl State {
    /// Starts a transaction on every table (see [`table`]).
    fn begin(&mut self) {
        self.seq_before = Some(self.seq);
        self.clusters.begin();
        self.task_definitions.begin();
        self.instances.begin();
        self.tasks.begin();
        self.services.begin();
        self.task_definition_tags.begin();
        self.account_settings.begin();
    }

    fn commit(&mut self) {
        self.seq_before = None;
        self.clusters.commit();
        self.task_definitions.commit();
        self.instances.commit();
        self.tasks.commit();
        self.services.commit();
        self.task_definition_tags.commit();
        self.account_settings.commit();
    }

    fn rollback(&mut self) {
        if let Some(seq) = self.seq_before.take() {
            self.seq = seq;
        }
        self.clusters.rollback();
        self.task_definitions.rollback();
        self.instances.rollback();
        self.tasks.rollback();
        self.services.rollback();
        self.task_definition_tags.rollback();
        self.account_settings.rollback();
    }

    /// The sequence counter, if the running transaction moved it.
    fn seq_changed(&self) -> Option<i64> {
        self.seq_before
            .filter(|before| *before != self.seq)
            .map(|_| self.seq)
    }

    /// The next sequence number.
    pub fn next_seq(&mut self) -> i64 {
        self.seq += 1;
        self.seq
    }

    /// The task definition `family:revision`.
    pub fn task_definition(&self, family: &str, revision: i64) -> Option<&TaskDefinition> {
        let index = usize::try_from(revision.checked_sub(1)?).ok()?;
        self.task_definitions.get(family)?.get(index)
    }

    /// The tags of the task definition `family:revision`.
    pub fn task_definition_tags(&self, family: &str, revision: i64) -> &[Tag] {
        self.task_definition_tags
            .get(&format!("{family}:{revision}"))
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// Tasks placed on an instance.
    pub fn tasks_on<'a>(&'a self, instance_id: &str) -> impl Iterator<Item = &'a TaskRecord> {
        self.tasks.on_instance(instance_id).into_iter()
    }

    /// Drops stopped tasks that stopped longer ago than the retention time.
    pub fn prune_stopped_tasks(&mut self, now: f64) {
        self.tasks.retain(|_, t| {
            let expired = t.is_stopped()
                && !t.needs_delivery()
                && t.task
                    .stopped_at
                    .is_some_and(|at| now - at > STOPPED_TASK_RETENTION_SECS);
            !expired
        });
    }
}

/// The lock around [`State`] plus where it is persisted.
#[derive(Debug)]
pub struct Store {
    state: Mutex<State>,
    disk: disk::Disk,
    /// How long the writes of changes took.
    writes: crate::plane_metrics::SharedHistogram,
}

impl Store {
    /// Loads the state from `<data_dir>/state.redb` (migrating a
    /// `state.json` of earlier versions), or starts empty. The `default`
    /// cluster is created when missing.
    pub fn open(
        data_dir: &Path,
        make_default: impl FnOnce() -> ClusterRecord,
    ) -> Result<Self, StoreError> {
        fs::create_dir_all(data_dir).map_err(|error| StoreError::CreateDir {
            path: data_dir.to_owned(),
            error,
        })?;
        let (disk, loaded) = disk::Disk::open(data_dir)?;
        let mut state = loaded.clone();
        if !state.clusters.contains_key("default") {
            let default = make_default();
            state.clusters.insert(default.name.clone(), default);
        }
        disk.write(&loaded, &state)?;
        Ok(Self {
            state: Mutex::new(state),
            disk,
            writes: crate::plane_metrics::SharedHistogram::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic in the middle of an update leaves its transaction open:
        // rolling it back undoes the half-applied change, so the poisoned
        // lock is then safe to reuse.
        self.state.lock().unwrap_or_else(|e| {
            let mut state = e.into_inner();
            if state.seq_before.is_some() {
                state.rollback();
            }
            state
        })
    }

    /// Reads the state.
    pub fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self.lock())
    }

    /// Applies a change: `f` runs in a transaction on the state; if it
    /// succeeds the rows it changed are written, and the change stays. If
    /// `f` or the write fails, the transaction is rolled back and nothing
    /// changes. Readers wait meanwhile, so none sees a change before it is
    /// on disk. Blocks on the disk: call it from a blocking thread.
    pub fn update<R, E>(&self, f: impl FnOnce(&mut State) -> Result<R, E>) -> Result<R, E>
    where
        E: From<StoreError>,
    {
        let mut guard = self.lock();
        guard.begin();
        let result = match f(&mut guard) {
            Ok(result) => result,
            Err(e) => {
                guard.rollback();
                return Err(e);
            }
        };
        let started = std::time::Instant::now();
        match self.disk.write_pending(&guard) {
            Ok(true) => self.writes.observe(started.elapsed()),
            Ok(false) => {}
            Err(e) => {
                guard.rollback();
                return Err(e.into());
            }
        }
        guard.commit();
        Ok(result)
    }

    /// How long the writes of changes took so far.
    pub fn write_latency(&self) -> crate::plane_metrics::Histogram {
        self.writes.snapshot()
    }

    /// Changes state that is never persisted (for example `agentConnected`),
    /// without a disk write.
    pub fn update_volatile<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.lock())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn default_cluster() -> ClusterRecord {
        ClusterRecord {
            name: "default".into(),
            arn: "arn:aws:ecs:us-east-1:000000000000:cluster/default".into(),
            status: "ACTIVE".into(),
            tags: None,
            settings: None,
            configuration: None,
        }
    }

    #[test]
    fn state_survives_a_reopen_and_agent_connected_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), default_cluster).unwrap();
        store
            .update(|st| {
                st.next_seq();
                st.next_seq();
                st.instances.insert(
                    "abc".into(),
                    InstanceRecord {
                        id: "abc".into(),
                        arn: "arn:x/abc".into(),
                        cluster: "default".into(),
                        ec2_instance_id: None,
                        attributes: vec![],
                        custom_attributes: Vec::new(),
                        registered_resources: vec![],
                        status: "ACTIVE".into(),
                        agent_connected: false,
                        version_info: None,
                        registered_at: 1.5,
                        version: 1,
                        tags: None,
                        agent_update: None,
                    },
                );
                Ok::<_, StoreError>(())
            })
            .unwrap();
        store.update_volatile(|st| {
            if let Some(i) = st.instances.get_mut("abc") {
                i.agent_connected = true;
            }
        });
        drop(store);
        let store = Store::open(dir.path(), default_cluster).unwrap();
        store.read(|st| {
            assert_eq!(st.seq, 2);
            assert!(st.clusters.contains_key("default"));
            assert!(!st.instances["abc"].agent_connected);
        });
    }

    #[test]
    fn issued_credentials_survive_a_reopen_in_an_owner_only_file() {
        use crate::credentials::IssuedCredentials;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), default_cluster).unwrap();
        let issued = IssuedCredentials::mint(
            "arn:aws:iam::000000000000:role/web",
            100.0,
            std::time::Duration::from_secs(60),
        );
        let task: TaskRecord = serde_json::from_value(serde_json::json!({
            "id": "t1", "cluster": "default", "family": "web", "revision": 1,
            "demand": {"cpu": 0, "memory": 0}, "task": {},
            "taskRoleArn": "arn:aws:iam::000000000000:role/web",
        }))
        .unwrap();
        store
            .update(|st| {
                let mut task = task.clone();
                task.task_role_credentials = Some(issued.clone());
                st.tasks.insert("t1".into(), task);
                Ok::<_, StoreError>(())
            })
            .unwrap();
        drop(store);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(disk::DB_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "the state holds secrets");
        }
        let store = Store::open(dir.path(), default_cluster).unwrap();
        store.read(|st| {
            let t = &st.tasks["t1"];
            assert_eq!(t.task_role_credentials.as_ref(), Some(&issued));
            assert_eq!(t.credentials(RoleType::TaskApplication), Some(&issued));
            assert_eq!(t.credentials(RoleType::TaskExecution), None);
            assert_eq!(
                t.task_role_arn.as_deref(),
                Some("arn:aws:iam::000000000000:role/web")
            );
        });
        // A state file from before credentials existed still loads.
        let old: TaskRecord = serde_json::from_value(serde_json::json!({
            "id": "t2", "cluster": "default", "family": "web", "revision": 1,
            "demand": {"cpu": 0, "memory": 0}, "task": {}
        }))
        .unwrap();
        assert_eq!(old.task_role_credentials, None);
        assert_eq!(old.task_role_arn, None);
    }

    #[test]
    fn an_update_that_panics_half_way_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), default_cluster).unwrap();
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _: Result<(), StoreError> = store.update(|st| {
                st.next_seq();
                st.clusters.remove("default");
                panic!("half-way");
            });
        }));
        assert!(caught.is_err());
        store.read(|st| {
            assert_eq!(st.seq, 0);
            assert!(st.clusters.contains_key("default"));
        });
        // The store goes on working.
        store
            .update(|st| {
                st.next_seq();
                Ok::<_, StoreError>(())
            })
            .unwrap();
        store.read(|st| assert_eq!(st.seq, 1));
    }

    #[test]
    fn failed_update_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), default_cluster).unwrap();
        let result: Result<(), StoreError> = store.update(|st| {
            st.next_seq();
            Err(StoreError::Encode(serde_json::Error::io(
                std::io::Error::other("x"),
            )))
        });
        assert!(result.is_err());
        store.read(|st| assert_eq!(st.seq, 0));
    }

    #[test]
    fn a_corrupt_database_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(disk::DB_FILE), vec![7u8; 8192]).unwrap();
        assert!(matches!(
            Store::open(dir.path(), default_cluster),
            Err(StoreError::Database { .. })
        ));
    }

    #[test]
    fn a_state_json_of_earlier_versions_is_migrated_once_and_kept_aside() {
        let dir = tempfile::tempdir().unwrap();
        let old = serde_json::json!({
            "seq": 41,
            "clusters": {"default": {"name": "default", "arn": "arn:c/default", "status": "ACTIVE"},
                         "prod": {"name": "prod", "arn": "arn:c/prod", "status": "ACTIVE"}},
            "taskDefinitions": {"web": [{"family": "web", "revision": 1,
                                          "containerDefinitions": []}]},
            "instances": {},
            "tasks": {"t1": {"id": "t1", "cluster": "prod", "family": "web", "revision": 1,
                             "demand": {"cpu": 0, "memory": 0}, "task": {},
                             "stoppedByUser": true}}
        });
        fs::write(dir.path().join(disk::LEGACY_FILE), old.to_string()).unwrap();
        let store = Store::open(dir.path(), default_cluster).unwrap();
        let check = |store: &Store| {
            store.read(|st| {
                assert_eq!(st.seq, 41);
                assert!(st.clusters.contains_key("prod"));
                assert_eq!(st.task_definitions["web"].len(), 1);
                assert!(
                    st.tasks["t1"].stop_requested,
                    "the old field name still reads"
                );
            })
        };
        check(&store);
        assert!(!dir.path().join(disk::LEGACY_FILE).exists());
        assert!(dir.path().join(disk::MIGRATED_FILE).exists());
        drop(store);
        // Later starts read the database, not the kept file.
        fs::write(dir.path().join(disk::MIGRATED_FILE), b"{not json").unwrap();
        let store = Store::open(dir.path(), default_cluster).unwrap();
        check(&store);
    }

    #[test]
    fn a_corrupt_state_json_is_an_error_and_stays_where_it_is() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(disk::LEGACY_FILE), b"{not json").unwrap();
        assert!(matches!(
            Store::open(dir.path(), default_cluster),
            Err(StoreError::Parse { .. })
        ));
        assert!(dir.path().join(disk::LEGACY_FILE).exists());
    }

    #[test]
    fn an_update_writes_only_the_rows_it_changed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), default_cluster).unwrap();
        let task = |id: &str| -> TaskRecord {
            serde_json::from_value(serde_json::json!({
                "id": id, "cluster": "default", "family": "web", "revision": 1,
                "demand": {"cpu": 0, "memory": 0}, "task": {}
            }))
            .unwrap()
        };
        store
            .update(|st| {
                for n in 0..100 {
                    st.tasks.insert(format!("t{n}"), task(&format!("t{n}")));
                }
                Ok::<_, StoreError>(())
            })
            .unwrap();
        let (before, after) = store
            .update(|st| {
                let before = st.clone();
                st.tasks.get_mut("t7").unwrap().sent = true;
                Ok::<_, StoreError>((before, st.clone()))
            })
            .unwrap();
        let changes = after.tasks.changes(&before.tasks);
        assert_eq!(changes.len(), 1);
        drop(store);
        let store = Store::open(dir.path(), default_cluster).unwrap();
        store.read(|st| {
            assert_eq!(st.tasks.len(), 100);
            assert!(st.tasks["t7"].sent);
            assert!(!st.tasks["t8"].sent);
        });
    }

    #[test]
    fn only_tasks_stopped_and_reported_over_an_hour_ago_are_pruned() {
        let task = |id: &str, status: &str, stopped_at: Option<f64>, delivered: bool| {
            let mut t: TaskRecord = serde_json::from_value(serde_json::json!({
                "id": id, "cluster": "default", "family": "web", "revision": 1,
                "demand": {"cpu": 0, "memory": 0},
                "task": {"lastStatus": status, "desiredStatus": "STOPPED", "stoppedAt": stopped_at}
            }))
            .unwrap();
            t.delivered_desired = delivered.then(|| "STOPPED".to_owned());
            t
        };
        let mut st = State::default();
        let now = 10_000.0;
        let old = Some(now - STOPPED_TASK_RETENTION_SECS - 1.0);
        let recent = Some(now - 60.0);
        st.tasks
            .insert("old".into(), task("old", "STOPPED", old, true));
        st.tasks
            .insert("recent".into(), task("recent", "STOPPED", recent, true));
        st.tasks
            .insert("untold".into(), task("untold", "STOPPED", old, false));
        st.tasks
            .insert("running".into(), task("running", "RUNNING", None, false));
        st.prune_stopped_tasks(now);
        let left: Vec<&String> = st.tasks.keys().collect();
        assert_eq!(left, ["recent", "running", "untold"]);
    }
}
