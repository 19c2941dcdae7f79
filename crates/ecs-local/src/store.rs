//! The plane's whole state (clusters, task definitions, container instances,
//! tasks, the sequence counter), the lock around it, and its persistence to
//! `<data-dir>/state.json`.
//!
//! Every mutation runs on a draft copy and is written to disk (temp file,
//! fsync, rename) before it becomes visible, so a failed write leaves both
//! memory and disk at the previous state. The lock is a plain mutex and is
//! never held across an `.await`.

use crate::agent_update::AgentUpdate;
use crate::credentials::{IssuedCredentials, RoleType};
use crate::placement::Demand;
use ecs_model::ecs_api::{
    Attribute, ClusterSetting, Resource, Service, Tag, Task, TaskDefinition, VersionInfo,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// Name of the state file inside the data directory.
pub const STATE_FILE: &str = "state.json";

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
    /// `ACTIVE` or `INACTIVE`.
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
    #[serde(default)]
    pub clusters: BTreeMap<String, ClusterRecord>,
    /// Revisions of each family, revision `n` at index `n - 1`.
    #[serde(default)]
    pub task_definitions: BTreeMap<String, Vec<TaskDefinition>>,
    #[serde(default)]
    pub instances: BTreeMap<String, InstanceRecord>,
    #[serde(default)]
    pub tasks: BTreeMap<String, TaskRecord>,
    /// Keyed by `<cluster>/<name>` ([`ServiceRecord::key`]).
    #[serde(default)]
    pub services: BTreeMap<String, ServiceRecord>,
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

    /// Tasks placed on an instance.
    pub fn tasks_on<'a>(&'a self, instance_id: &'a str) -> impl Iterator<Item = &'a TaskRecord> {
        self.tasks
            .values()
            .filter(move |t| t.instance_id.as_deref() == Some(instance_id))
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
    path: PathBuf,
}

impl Store {
    /// Loads `<data_dir>/state.json`, or starts empty if it does not exist.
    /// The `default` cluster is created when missing.
    pub fn open(
        data_dir: &Path,
        make_default: impl FnOnce() -> ClusterRecord,
    ) -> Result<Self, StoreError> {
        fs::create_dir_all(data_dir).map_err(|error| StoreError::CreateDir {
            path: data_dir.to_owned(),
            error,
        })?;
        let path = data_dir.join(STATE_FILE);
        let mut state = match fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice::<State>(&bytes).map_err(|error| StoreError::Parse {
                    path: path.clone(),
                    error,
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(error) => return Err(StoreError::Read { path, error }),
        };
        if !state.clusters.contains_key("default") {
            let default = make_default();
            state.clusters.insert(default.name.clone(), default);
        }
        persist(&path, &state)?;
        Ok(Self {
            state: Mutex::new(state),
            path,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-applied change
        // (mutations run on a draft), so a poisoned lock is safe to reuse.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the state.
    pub fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self.lock())
    }

    /// Applies a change: `f` runs on a draft; if it succeeds the draft is
    /// persisted and then replaces the state. If `f` or the write fails,
    /// nothing changes.
    pub fn update<R, E>(&self, f: impl FnOnce(&mut State) -> Result<R, E>) -> Result<R, E>
    where
        E: From<StoreError>,
    {
        let mut guard = self.lock();
        let mut draft = guard.clone();
        let result = f(&mut draft)?;
        if draft != *guard {
            persist(&self.path, &draft)?;
            *guard = draft;
        }
        Ok(result)
    }

    /// Changes state that is never persisted (for example `agentConnected`),
    /// without a disk write.
    pub fn update_volatile<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.lock())
    }
}

fn persist(path: &Path, state: &State) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec_pretty(state).map_err(StoreError::Encode)?;
    let tmp = path.with_extension("json.tmp");
    let write_err = |error| StoreError::Write {
        path: path.to_owned(),
        error,
    };
    // The state holds the secret keys of issued task credentials: only the
    // owner may read it.
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp).map_err(write_err)?;
    #[cfg(unix)]
    {
        // `mode` applies only when the file is created; a temp file left
        // over by a crash keeps its mode otherwise.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(write_err)?;
    }
    file.write_all(&bytes).map_err(write_err)?;
    file.sync_all().map_err(write_err)?;
    drop(file);
    fs::rename(&tmp, path).map_err(write_err)?;
    // Make the rename itself durable.
    if let Some(dir) = path.parent() {
        if let Ok(dir) = fs::File::open(dir) {
            let _ = dir.sync_all();
        }
    }
    Ok(())
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
            let mode = fs::metadata(dir.path().join(STATE_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "state.json holds secrets");
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
    fn corrupt_state_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(STATE_FILE), b"{not json").unwrap();
        assert!(matches!(
            Store::open(dir.path(), default_cluster),
            Err(StoreError::Parse { .. })
        ));
    }
}
