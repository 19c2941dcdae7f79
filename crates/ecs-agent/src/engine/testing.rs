//! An engine on the in-memory Docker, for unit tests of the engine and of
//! what drives it (docs/architecture.md §7). Everything but the daemon is
//! real: engine, store, image manager.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::actions::ActionSettings;
use super::status::TaskStatus;
use super::task::{IncomingTask, Task};
use super::{EngineHandle, EngineSettings, TaskEngine};
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;

use crate::aws::AwsServices;
use crate::config::ImagePullBehavior;
use crate::credentials::CredentialsStore;
use crate::docker::fake::FakeDocker;
use crate::docker::DockerApi;
use crate::images::{EngineAuth, ImageManager, ImageSettings};
use crate::state_change::TaskStateChange;
use crate::store::Store;

pub(crate) const IMAGE: &str = "ecs-test/busybox:latest";
pub(crate) const CLUSTER: &str = "default";

pub(crate) fn arn(id: &str) -> String {
    format!("arn:aws:ecs:us-east-1:123456789012:task/{CLUSTER}/{id}")
}

/// A payload task; `containers` are ACS container objects, to which the
/// image is added when absent.
pub(crate) fn task(id: &str, containers: serde_json::Value) -> IncomingTask {
    let mut containers = containers;
    for c in containers.as_array_mut().unwrap() {
        c.as_object_mut()
            .unwrap()
            .entry("image")
            .or_insert(IMAGE.into());
    }
    let acs: ecs_model::acs::Task = serde_json::from_value(serde_json::json!({
        "arn": arn(id), "family": "fam", "version": "1", "desiredStatus": "RUNNING",
        "containers": containers
    }))
    .unwrap();
    IncomingTask::try_from(&acs).unwrap()
}

pub(crate) fn one_container(id: &str) -> IncomingTask {
    task(id, serde_json::json!([{"name": "app", "essential": true}]))
}

pub(crate) fn health_check() -> serde_json::Value {
    serde_json::json!({"config": "{\"Healthcheck\":{\"Test\":[\"CMD-SHELL\",\"true\"]}}"})
}

/// `app` waits for `db` (container 1, with a Docker health check) to be
/// HEALTHY; `db_extra` adds members to `db`'s definition.
pub(crate) fn waits_for_healthy_db(id: &str, db_extra: serde_json::Value) -> IncomingTask {
    let mut db = serde_json::json!({"name": "db", "essential": true,
        "healthCheckType": "docker", "dockerConfig": health_check()});
    if let (Some(db), Some(extra)) = (db.as_object_mut(), db_extra.as_object()) {
        db.extend(extra.clone());
    }
    task(
        id,
        serde_json::json!([
            {"name": "app", "essential": true,
             "dependsOn": [{"containerName": "db", "condition": "HEALTHY"}]},
            db
        ]),
    )
}

pub(crate) struct Agent {
    pub docker: Arc<FakeDocker>,
    pub store: Store,
    pub engine: EngineHandle,
    pub task: tokio::task::JoinHandle<()>,
}

pub(crate) struct Options {
    pub pull_behavior: ImagePullBehavior,
    pub cleanup_wait: Duration,
    pub create_timeout: Duration,
    pub task_cgroups: Option<Arc<crate::task_cgroup::TaskCgroups>>,
    /// Role credentials as ACS would have delivered them.
    pub credentials: Arc<CredentialsStore>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            pull_behavior: ImagePullBehavior::PreferCached,
            cleanup_wait: Duration::from_secs(3 * 3600),
            create_timeout: Duration::from_secs(240),
            task_cgroups: None,
            credentials: Arc::new(CredentialsStore::new()),
        }
    }
}

/// The action settings an engine of [`start`] gets.
pub(crate) async fn action_settings(
    docker: &Arc<FakeDocker>,
    store: &Store,
    options: &Options,
) -> ActionSettings {
    let images = ImageManager::new(
        docker.clone(),
        store.clone(),
        ImageSettings {
            pull_behavior: options.pull_behavior,
            pull_timeout: Duration::from_secs(7200),
            pull_inactivity_timeout: Duration::from_secs(60),
            cleanup: None,
        },
        EngineAuth::default(),
    )
    .await
    .unwrap();
    ActionSettings {
        cluster: CLUSTER.into(),
        region: "us-east-1".into(),
        pull_behavior: options.pull_behavior,
        images,
        create_timeout: options.create_timeout,
        start_timeout: Duration::from_secs(180),
        default_stop_timeout: Duration::from_secs(30),
        privileged_disabled: false,
        logging_drivers: vec!["json-file".into(), "none".into()],
        metadata_files: None,
        shared_volume_match_full_config: false,
        docker_slots: super::slots::DockerSlots::new(super::slots::DOCKER_SLOTS),
        task_cgroups: options.task_cgroups.clone(),
        credentials: options.credentials.clone(),
        // Nothing listens on the discard port of loopback: every call to
        // AWS fails at once, and none can leave this machine.
        aws: Arc::new(
            AwsServices::new(
                "us-east-1",
                SharedCredentialsProvider::new(Credentials::new(
                    "AKID", "secret", None, None, "test",
                )),
            )
            .with_endpoint_url("http://127.0.0.1:9"),
        ),
    }
}

pub(crate) async fn start(docker: Arc<FakeDocker>, store: Store, options: Options) -> Agent {
    let settings = EngineSettings {
        actions: action_settings(&docker, &store, &options).await,
        cleanup_wait: options.cleanup_wait,
        cleanup_jitter: Duration::ZERO,
        dynamic_host_port_range: (32768, 60999),
        reserved_ports: vec![],
        reserved_ports_udp: vec![],
        exclude_ipv6_port_binding: false,
    };
    let api: Arc<dyn DockerApi> = docker.clone();
    let (engine, task) = TaskEngine::start(settings, api, store.clone(), Arc::new(Notify::new()))
        .await
        .unwrap();
    Agent {
        docker,
        store,
        engine,
        task,
    }
}

pub(crate) async fn fresh() -> Agent {
    let docker = FakeDocker::new();
    docker.add_image(IMAGE);
    start(docker, Store::in_memory().unwrap(), Options::default()).await
}

impl Agent {
    /// Hands tasks to the engine as a payload would, and waits for the save.
    pub(crate) async fn add(&self, tasks: Vec<IncomingTask>) {
        self.engine
            .add_tasks(tasks, None, Instant::now())
            .await
            .unwrap();
    }

    /// Waits (in virtual time, at most an hour of it) until the engine's
    /// tasks satisfy `done`.
    pub(crate) async fn until(&self, what: &str, done: impl Fn(&[Task]) -> bool) -> Vec<Task> {
        let deadline = Instant::now() + Duration::from_secs(3600);
        loop {
            let tasks = self.engine.snapshot().await.unwrap();
            if done(&tasks) {
                return tasks;
            }
            assert!(
                Instant::now() < deadline,
                "never happened: {what}; tasks: {tasks:#?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub(crate) async fn until_task(&self, id: &str, status: TaskStatus) -> Task {
        let want = arn(id);
        let tasks = self
            .until(&format!("{id} {status:?}"), |tasks| {
                tasks
                    .iter()
                    .any(|t| t.arn() == want && t.known_status == status)
            })
            .await;
        tasks.into_iter().find(|t| t.arn() == want).unwrap()
    }

    pub(crate) async fn reports(&self, id: &str) -> Vec<TaskStateChange> {
        let want = arn(id);
        self.store
            .outbox()
            .await
            .unwrap()
            .into_iter()
            .map(|(_, c)| c)
            .filter(|c| c.task_arn == want)
            .collect()
    }

    pub(crate) async fn statuses_reported(&self, id: &str) -> Vec<String> {
        self.reports(id)
            .await
            .into_iter()
            .map(|c| c.status)
            .collect()
    }

    pub(crate) fn docker_id(task: &Task, container: usize) -> String {
        task.containers[container].docker_id.clone().unwrap()
    }

    /// Lets every pending message and timer due "now" run.
    pub(crate) async fn settle(&self) {
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let _ = self.engine.snapshot().await;
    }

    /// Marks every queued report delivered, as the reporter would.
    /// Empties the outbox and tells the engine, as the reporter does.
    pub(crate) async fn deliver_reports(&self) {
        let pending = self.store.outbox().await.unwrap();
        self.store
            .dequeue(pending.iter().map(|(id, _)| *id).collect())
            .await
            .unwrap();
        for (_, change) in pending {
            self.engine.report_settled(&change.task_arn);
        }
    }
}
