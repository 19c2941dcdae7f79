//! `ecs-agent export-go-state`, the binary end to end on a data directory
//! (no Docker needed): refused while the checkpoint is open in another
//! process, a file already at `agent.db` kept under another name, this
//! agent's checkpoint moved aside, and the written `agent.db` holding
//! exactly the buckets `go_state::export` makes of the checkpoint.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ecs_agent::engine::status::{ContainerStatus, TaskStatus};
use ecs_agent::engine::task::{IncomingTask, Task};
use ecs_agent::go_state::bolt::{self, Buckets};
use ecs_agent::go_state::export::{self, CgroupSettings, ExportSettings, ExportState};
use ecs_agent::images::ImageRecord;
use ecs_agent::store::{self, keys, Batch, Store};

const ARN: &str = "arn:aws:ecs:us-west-2:123456789012:task/prod/0123456789abcdef0123456789abcdef";
const INSTANCE: &str = "arn:aws:ecs:us-west-2:123456789012:container-instance/prod/abcd";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn export_go_state(dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ecs-agent"))
        .arg("export-go-state")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("ECS_DATADIR", dir)
        .env("ECS_CLUSTER", "prod")
        .env("ECS_AGENT_CONFIG_FILE_PATH", "/nonexistent/config.json")
        .output()
        .unwrap()
}

/// A task running one container, as the engine leaves it once settled.
fn running_task() -> Task {
    let acs: ecs_model::acs::Task = serde_json::from_value(serde_json::json!({
        "arn": ARN, "family": "web", "version": "2", "desiredStatus": "RUNNING",
        "launchType": "EC2",
        "containers": [{"name": "app", "image": "busybox:1.36", "essential": true,
            "memory": 64, "command": ["sleep", "3600"]}]
    }))
    .unwrap();
    let mut t = Task::new(IncomingTask::try_from(&acs).unwrap(), 1_800_000_000_000);
    let c = &mut t.containers[0];
    c.known_status = ContainerStatus::Running;
    c.desired_status = ContainerStatus::Running;
    c.reported_status = ContainerStatus::Running;
    c.docker_id = Some("d".repeat(64));
    c.docker_name = Some("ecs-web-2-app-0123456789abcdef0123".into());
    c.started_at_ms = Some(1_800_000_001_000);
    t.known_status = TaskStatus::Running;
    t.reported_status = TaskStatus::Running;
    t
}

fn image() -> ImageRecord {
    ImageRecord {
        image_id: "sha256:1234".into(),
        names: vec!["busybox:1.36".into()],
        size: 4_321,
        pulled_at_ms: 1_799_999_000_000,
        last_used_at_ms: 1_800_000_000_000,
        pull_succeeded: true,
    }
}

/// Writes this agent's checkpoint in `dir` holding `task`.
fn checkpoint(dir: &Path, task: &Task) -> Store {
    let store = Store::open(dir).unwrap();
    let rt = runtime();
    rt.block_on(async {
        store
            .put_meta(vec![
                (keys::CLUSTER, "prod".into()),
                (keys::CONTAINER_INSTANCE_ARN, INSTANCE.into()),
                (keys::EC2_INSTANCE_ID, "i-0123".into()),
                (keys::AVAILABILITY_ZONE, "us-west-2c".into()),
            ])
            .await
            .unwrap();
        store.raise_latest_seq(12).await.unwrap();
        let (bytes, _) = store::encode_task(task).unwrap();
        store
            .commit(Batch {
                put_tasks: vec![(task.arn().to_string(), bytes)],
                ..Batch::default()
            })
            .await
            .unwrap();
        store.save_images(vec![image()], vec![]).await.unwrap();
    });
    store
}

/// What the export must write for that checkpoint.
fn expected(task: &Task) -> Buckets {
    export::to_go_buckets(&ExportState {
        cluster: Some("prod".into()),
        container_instance_arn: Some(INSTANCE.into()),
        ec2_instance_id: Some("i-0123".into()),
        availability_zone: Some("us-west-2c".into()),
        latest_seq: 12,
        tasks: vec![task.clone()],
        images: vec![image()],
        outbox: vec![],
        settings: ExportSettings {
            // No region configured: the one the instance registered in.
            region: "us-west-2".into(),
            configured_cluster: "prod".into(),
            cgroups: CgroupSettings {
                v2: Path::new("/sys/fs/cgroup/cgroup.controllers").exists(),
                ..CgroupSettings::default()
            },
        },
    })
    .unwrap()
}

/// Files in `dir` whose names start with `prefix`.
fn named(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .collect();
    found.sort();
    found
}

#[test]
fn refused_while_the_checkpoint_is_open_in_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let task = running_task();
    let store = checkpoint(dir.path(), &task);
    let out = export_go_state(dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("an agent is running on this data directory; stop it first"),
        "{stderr}"
    );
    assert!(!dir.path().join("agent.db").exists());
    assert!(dir.path().join(store::FILE_NAME).exists());
    drop(store);
}

#[test]
fn hands_back_keeping_the_file_there_and_moving_the_checkpoint_aside() {
    let dir = tempfile::tempdir().unwrap();
    let task = running_task();
    drop(checkpoint(dir.path(), &task));
    // What a take-over left: the Go agent's old file.
    let old = b"the Go agent's file from before the take-over".to_vec();
    std::fs::write(dir.path().join("agent.db"), &old).unwrap();

    let out = export_go_state(dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    for step in [
        "configuration read",
        "checkpoint",
        "Go agent state built: 1 task(s), 1 container(s), 1 image(s)",
        "kept the file already at",
        "wrote",
        "moved this agent's checkpoint aside",
        "handed back: cluster prod, container instance arn:aws:ecs:us-west-2:123456789012:container-instance/prod/abcd, 1 task(s) (1 running), 1 container(s), 1 image(s)",
    ] {
        assert!(stdout.contains(step), "{step:?} missing from:\n{stdout}");
    }

    // The file that was there is kept, byte for byte.
    let kept = named(dir.path(), "agent.db.before-export-");
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(std::fs::read(&kept[0]).unwrap(), old);

    // This agent's checkpoint is aside, so this agent takes the Go state
    // over again when it next starts.
    assert!(!dir.path().join(store::FILE_NAME).exists());
    let aside = named(dir.path(), &format!("{}.handed-back-", store::FILE_NAME));
    assert_eq!(aside.len(), 1, "{aside:?}");

    // The written file is a bbolt file with exactly the export's buckets.
    let written = bolt::parse(&std::fs::read(dir.path().join("agent.db")).unwrap()).unwrap();
    assert_eq!(written, expected(&task));
    assert_eq!(
        written["metadata"][b"agent-version".as_slice()],
        b"\"1.105.0\"".to_vec()
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("agent.db"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // Run again: nothing of this agent's is left to hand back, and the
    // Go agent's new file stays as it is.
    let before = std::fs::read(dir.path().join("agent.db")).unwrap();
    let out = export_go_state(dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to hand back"));
    assert_eq!(std::fs::read(dir.path().join("agent.db")).unwrap(), before);
}

#[test]
fn a_checkpoint_under_the_old_name_is_named() {
    let dir = tempfile::tempdir().unwrap();
    drop(checkpoint(dir.path(), &running_task()));
    std::fs::rename(
        dir.path().join(store::FILE_NAME),
        dir.path().join(store::OLD_FILE_NAME),
    )
    .unwrap();
    let out = export_go_state(dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("start this agent once"), "{stderr}");
    assert!(!dir.path().join(store::FILE_NAME).exists());
}

#[test]
fn a_state_the_go_agent_cannot_take_is_refused_with_exit_5_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut task = running_task();
    // Still being stopped.
    task.raise_desired_status(TaskStatus::Stopped);
    drop(checkpoint(dir.path(), &task));
    let out = export_go_state(dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(
        stderr.contains("wait until every task has settled"),
        "{stderr}"
    );
    assert!(!dir.path().join("agent.db").exists());
    assert!(dir.path().join(store::FILE_NAME).exists());
    assert!(named(dir.path(), &format!("{}.", store::FILE_NAME)).is_empty());
}
