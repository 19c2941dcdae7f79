#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use super::schema::{Migration, MIGRATIONS};
use super::*;
use crate::engine::status::{ContainerStatus, TaskStatus};
use crate::engine::task::{IncomingTask, Task};

fn task(arn: &str) -> Task {
    let acs: ecs_model::acs::Task = serde_json::from_value(serde_json::json!({
        "arn": arn, "family": "f", "version": "1", "desiredStatus": "RUNNING",
        "containers": [{"name": "c", "image": "i"}]
    }))
    .unwrap();
    Task::new(IncomingTask::try_from(&acs).unwrap(), 0)
}

fn change(arn: &str, status: &str) -> TaskStateChange {
    TaskStateChange {
        task_arn: arn.into(),
        status: status.into(),
        reason: String::new(),
        containers: vec![],
        pull_started_at_ms: None,
        pull_stopped_at_ms: None,
        execution_stopped_at_ms: None,
    }
}

fn batch_with(tasks: &[&Task], enqueue: Vec<TaskStateChange>) -> Batch {
    let mut batch = Batch {
        enqueue,
        ..Batch::default()
    };
    for t in tasks {
        let (bytes, _) = encode_task(t).unwrap();
        batch.put_tasks.push((t.arn().to_string(), bytes));
    }
    batch
}

fn file_bytes(dir: &Path) -> Vec<u8> {
    std::fs::read(dir.join(FILE_NAME)).unwrap()
}

/// Writes raw entries straight into the file, as a damaged or foreign
/// checkpoint would hold them.
fn poke(dir: &Path, f: impl FnOnce(&WriteTransaction)) {
    let db = Database::create(dir.join(FILE_NAME)).unwrap();
    let txn = db.begin_write().unwrap();
    f(&txn);
    txn.commit().unwrap();
}

#[tokio::test]
async fn state_and_outbox_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let arn = "arn:aws:ecs:us-east-1:1:task/c/abc";
    {
        let store = Store::open(dir.path()).unwrap();
        store
            .put_meta(vec![(keys::CONTAINER_INSTANCE_ARN, "ci-arn".into())])
            .await
            .unwrap();
        let t = task(arn);
        store
            .commit(batch_with(
                &[&t],
                vec![change(arn, "RUNNING"), change(arn, "STOPPED")],
            ))
            .await
            .unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        store
            .get_meta(keys::CONTAINER_INSTANCE_ARN)
            .await
            .unwrap()
            .as_deref(),
        Some("ci-arn")
    );
    assert_eq!(store.load_tasks().await.unwrap().len(), 1);
    let outbox = store.outbox().await.unwrap();
    let statuses: Vec<&str> = outbox.iter().map(|(_, c)| c.status.as_str()).collect();
    assert_eq!(statuses, ["RUNNING", "STOPPED"]);
    assert!(store.has_pending_reports(arn).await.unwrap());
    store.dequeue(vec![outbox[0].0]).await.unwrap();
    assert_eq!(store.outbox().await.unwrap().len(), 1);
    // New ids keep growing after a dequeue, so order is preserved.
    store
        .commit(batch_with(&[], vec![change(arn, "X")]))
        .await
        .unwrap();
    let outbox = store.outbox().await.unwrap();
    assert_eq!(outbox.last().unwrap().1.status, "X");
    assert!(outbox[0].0 < outbox[1].0);
}

#[tokio::test]
async fn image_states_survive_reopening_and_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let image = |id: &str| ImageRecord {
        image_id: id.into(),
        names: vec![format!("{id}:1")],
        size: 7,
        pulled_at_ms: 1,
        last_used_at_ms: 2,
        pull_succeeded: true,
    };
    {
        let store = Store::open(dir.path()).unwrap();
        store
            .save_images(vec![image("a"), image("b")], vec![])
            .await
            .unwrap();
        store.save_images(vec![], vec!["a".into()]).await.unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.load_images().await.unwrap(), [image("b")]);
}

#[tokio::test]
async fn an_empty_batch_writes_nothing() {
    let store = Store::in_memory().unwrap();
    let before = store.write_count();
    store.commit(Batch::default()).await.unwrap();
    assert_eq!(store.write_count(), before);
    store
        .commit(batch_with(
            &[&task("arn:aws:ecs:us-east-1:1:task/c/t")],
            vec![],
        ))
        .await
        .unwrap();
    assert_eq!(store.write_count(), before + 1);
}

#[test]
fn a_new_checkpoint_carries_the_current_schema_version() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path()).unwrap());
    let db = Database::open(dir.path().join(FILE_NAME)).unwrap();
    let txn = db.begin_read().unwrap();
    let table = txn.open_table(METADATA).unwrap();
    let version = table.get(keys::SCHEMA_VERSION).unwrap().unwrap();
    assert_eq!(version.value(), CURRENT_VERSION.to_string());
}

#[test]
fn an_unreadable_task_record_is_refused_naming_file_and_record_and_nothing_changes() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path()).unwrap());
    poke(dir.path(), |txn| {
        let mut t = txn.open_table(TASKS).unwrap();
        t.insert(
            "arn:aws:ecs:us-east-1:1:task/c/bad",
            b"{not json".as_slice(),
        )
        .unwrap();
    });
    let before = file_bytes(dir.path());
    let err = Store::open(dir.path()).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, StoreError::UnreadableRecord { table: "task", .. }),
        "{err:?}"
    );
    assert!(
        text.contains(&dir.path().join(FILE_NAME).display().to_string()),
        "{text}"
    );
    assert!(text.contains("task/c/bad"), "{text}");
    assert_eq!(
        file_bytes(dir.path()),
        before,
        "the file must be left as it was"
    );
}

#[test]
fn an_unreadable_outbox_or_image_record_is_refused_too() {
    for which in ["outbox", "image"] {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path()).unwrap());
        poke(dir.path(), |txn| {
            if which == "outbox" {
                txn.open_table(OUTBOX)
                    .unwrap()
                    .insert(7, b"[".as_slice())
                    .unwrap();
            } else {
                txn.open_table(IMAGES)
                    .unwrap()
                    .insert("sha256:x", b"{}".as_slice())
                    .unwrap();
            }
        });
        let err = Store::open(dir.path()).unwrap_err();
        assert!(
            matches!(err, StoreError::UnreadableRecord { table, .. } if table == which),
            "{which}: {err:?}"
        );
    }
}

#[test]
fn a_newer_schema_is_refused_and_the_file_is_left_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path()).unwrap());
    let newer = (CURRENT_VERSION + 1).to_string();
    poke(dir.path(), |txn| {
        txn.open_table(METADATA)
            .unwrap()
            .insert(keys::SCHEMA_VERSION, newer.as_str())
            .unwrap();
        // A newer agent may well have added a table.
        txn.open_table(TableDefinition::<&str, &str>::new("future"))
            .unwrap();
    });
    let before = file_bytes(dir.path());
    let err = Store::open(dir.path()).unwrap_err();
    match &err {
        StoreError::NewerSchema {
            found, supported, ..
        } => {
            assert_eq!((*found, *supported), (CURRENT_VERSION + 1, CURRENT_VERSION));
        }
        other => panic!("expected NewerSchema, got {other:?}"),
    }
    assert!(err.to_string().contains(FILE_NAME), "{err}");
    assert_eq!(file_bytes(dir.path()), before);
}

#[test]
fn a_bad_schema_version_or_foreign_tables_are_refused() {
    type Damage = fn(&WriteTransaction);
    let cases: [(&str, Damage); 3] = [
        ("not valid", |txn| {
            txn.open_table(METADATA)
                .unwrap()
                .insert(keys::SCHEMA_VERSION, "two")
                .unwrap();
        }),
        ("not valid", |txn| {
            txn.open_table(METADATA)
                .unwrap()
                .insert(keys::SCHEMA_VERSION, "0")
                .unwrap();
        }),
        ("no version of this agent writes", |txn| {
            txn.open_table(TableDefinition::<&str, &str>::new("other"))
                .unwrap();
        }),
    ];
    for (why, damage) in cases {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path()).unwrap());
        poke(dir.path(), damage);
        let before = file_bytes(dir.path());
        let err = Store::open(dir.path()).unwrap_err();
        assert!(matches!(err, StoreError::Unrecognised { .. }), "{err:?}");
        assert!(err.to_string().contains(why), "{err}");
        assert_eq!(file_bytes(dir.path()), before);
    }
}

#[test]
fn a_file_in_another_format_is_refused_untouched_and_the_go_agents_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    std::fs::write(&path, b"this is not a database at all").unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::Unrecognised { .. }), "{err:?}");
    assert!(err.to_string().contains("header"), "{err}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        b"this is not a database at all"
    );

    // A bbolt meta page: page id, flags, count, overflow, then the magic.
    let mut bolt = vec![0u8; 4096];
    bolt[16..20].copy_from_slice(&0xED0C_DAEDu32.to_le_bytes());
    std::fs::write(&path, &bolt).unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    assert!(err.to_string().contains("Go ECS agent"), "{err}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), bolt);
}

#[test]
fn migrations_form_one_chain_up_to_the_current_version() {
    let froms: Vec<u32> = MIGRATIONS.iter().map(|m: &Migration| m.from).collect();
    let expected: Vec<u32> = (1..CURRENT_VERSION).collect();
    assert_eq!(froms, expected);
}

/// The saved checkpoint of version 1 (written by agent 0.1.0 before
/// schema versions existed; see tests/data/README.md).
fn version_1_fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/checkpoint-v1")
}

#[tokio::test]
async fn a_version_1_checkpoint_is_upgraded_with_everything_in_it() {
    let dir = tempfile::tempdir().unwrap();
    // Agent 0.1.0 kept it as agent.db: it moves to its own name first.
    std::fs::copy(
        version_1_fixture().join(OLD_FILE_NAME),
        dir.path().join(OLD_FILE_NAME),
    )
    .unwrap();
    let store = tokio::task::spawn_blocking({
        let dir = dir.path().to_path_buf();
        move || {
            assert!(Store::adopt_old_location(&dir).unwrap());
            Store::open(&dir)
        }
    })
    .await
    .unwrap()
    .unwrap();
    assert!(!dir.path().join(OLD_FILE_NAME).exists());
    assert_eq!(
        store.get_meta(keys::SCHEMA_VERSION).await.unwrap(),
        Some(CURRENT_VERSION.to_string())
    );
    let meta = |key| {
        let store = store.clone();
        async move { store.get_meta(key).await.unwrap().unwrap() }
    };
    assert_eq!(meta(keys::CLUSTER).await, "default");
    assert_eq!(
        meta(keys::CONTAINER_INSTANCE_ARN).await,
        "arn:aws:ecs:us-east-1:123456789012:container-instance/default/0123456789abcdef0123456789abcdef"
    );
    assert_eq!(meta(keys::AVAILABILITY_ZONE).await, "us-east-1a");
    assert_eq!(meta(keys::EC2_INSTANCE_ID).await, "i-0123456789abcdef0");
    assert_eq!(store.latest_seq().await.unwrap(), 17);

    let mut tasks = store.load_tasks().await.unwrap();
    tasks.sort_by(|a, b| a.arn().cmp(b.arn()));
    assert_eq!(tasks.len(), 2);
    let running = &tasks[0];
    assert!(running.arn().ends_with("/11111111111111111111111111111111"));
    assert_eq!(running.spec.family, "web");
    assert_eq!(
        (running.known_status, running.desired_status),
        (TaskStatus::Running, TaskStatus::Running)
    );
    assert_eq!(running.containers.len(), 2);
    assert_eq!(running.containers[0].spec.name, "web");
    assert_eq!(
        running.containers[0].docker_id.as_deref(),
        Some(format!("{:064x}", 1).as_str())
    );
    assert_eq!(running.containers[0].known_status, ContainerStatus::Running);
    assert_eq!(running.containers[0].spec.port_mappings[0].host_port, 8080);
    assert_eq!(
        running.containers[1].spec.depends_on[0].container_name,
        "web"
    );
    assert_eq!(running.volumes.len(), 1);
    let stopped = &tasks[1];
    assert_eq!(stopped.known_status, TaskStatus::Stopped);
    assert_eq!(stopped.containers[1].exit_code, Some(1));

    let outbox = store.outbox().await.unwrap();
    assert_eq!(outbox.len(), 1);
    assert_eq!(outbox[0].1.task_arn, stopped.arn());
    assert_eq!(outbox[0].1.reason, "Essential container in task exited");
    assert_eq!(outbox[0].1.execution_stopped_at_ms, Some(1_764_800_009_000));

    let images = store.load_images().await.unwrap();
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].names, ["ecs-test/busybox:latest"]);
    assert!(images[0].pull_succeeded);

    // The upgraded file is an ordinary current checkpoint from now on.
    drop(store);
    let again = Store::open(dir.path()).unwrap();
    assert_eq!(again.load_tasks().await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_raises_never_lower_the_sequence_number() {
    let store = Store::in_memory().unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = tokio::spawn({
        let (store, stop) = (store.clone(), stop.clone());
        async move {
            let mut last = -1;
            let mut reads = 0u32;
            while !stop.load(Ordering::SeqCst) {
                let now = store.latest_seq().await.unwrap();
                assert!(now >= last, "latestSeq went down from {last} to {now}");
                last = now;
                reads += 1;
            }
            reads
        }
    });
    let mut raisers = Vec::new();
    for worker in 0..8i64 {
        let store = store.clone();
        raisers.push(tokio::spawn(async move {
            let mut rose = Vec::new();
            // Interleaved values, so raisers constantly race each other
            // with values both above and below the current one.
            for i in 0..60i64 {
                let seq = (i * 8 + worker) * if i % 3 == 0 { 1 } else { 2 };
                if store.raise_latest_seq(seq).await.unwrap() {
                    rose.push(seq);
                }
            }
            rose
        }));
    }
    let mut highest = -1;
    for r in raisers {
        for seq in r.await.unwrap() {
            highest = highest.max(seq);
        }
    }
    stop.store(true, Ordering::SeqCst);
    assert!(watcher.await.unwrap() > 0);
    assert_eq!(store.latest_seq().await.unwrap(), highest);
    // Raising to the current value, or below it, changes nothing.
    assert!(!store.raise_latest_seq(highest).await.unwrap());
    assert!(!store.raise_latest_seq(highest - 1).await.unwrap());
    assert_eq!(store.latest_seq().await.unwrap(), highest);
}

#[tokio::test]
async fn a_failed_write_is_reported_and_the_next_one_succeeds_after_reopening() {
    let (store, disk) = Store::flaky().unwrap();
    let kept = task("arn:aws:ecs:us-east-1:1:task/c/kept");
    store.commit(batch_with(&[&kept], vec![])).await.unwrap();
    assert_eq!(store.health().last_error(), None);

    disk.fail_writes(true);
    let lost = task("arn:aws:ecs:us-east-1:1:task/c/lost");
    let err = store
        .commit(batch_with(
            &[&lost],
            vec![change("arn:aws:ecs:us-east-1:1:task/c/lost", "RUNNING")],
        ))
        .await
        .unwrap_err();
    let flag = store.health().last_error().expect("the failure is flagged");
    assert_eq!(flag, err.to_string());
    assert!(store.raise_latest_seq(5).await.is_err());

    disk.fail_writes(false);
    let later = task("arn:aws:ecs:us-east-1:1:task/c/later");
    store.commit(batch_with(&[&later], vec![])).await.unwrap();
    assert_eq!(store.health().last_error(), None);
    let mut arns: Vec<String> = store
        .load_tasks()
        .await
        .unwrap()
        .iter()
        .map(|t| t.arn().to_string())
        .collect();
    arns.sort();
    assert_eq!(
        arns,
        [
            "arn:aws:ecs:us-east-1:1:task/c/kept",
            "arn:aws:ecs:us-east-1:1:task/c/later"
        ]
    );
    assert!(store.outbox().await.unwrap().is_empty());
    assert_eq!(store.latest_seq().await.unwrap(), -1);
}

#[test]
fn the_go_agents_agent_db_is_never_moved_and_ours_only_when_there_is_none() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join(OLD_FILE_NAME);
    let mut bolt = vec![0u8; 8192];
    bolt[16..20].copy_from_slice(&0xED0C_DAEDu32.to_le_bytes());
    std::fs::write(&old, &bolt).unwrap();
    assert!(is_bbolt(&old));
    assert!(!Store::adopt_old_location(dir.path()).unwrap());
    assert_eq!(std::fs::read(&old).unwrap(), bolt);
    assert!(!Store::exists_in(dir.path()));

    // An old redb file beside a checkpoint under the new name stays put.
    let other = tempfile::tempdir().unwrap();
    drop(Store::open(other.path()).unwrap());
    std::fs::copy(
        version_1_fixture().join(OLD_FILE_NAME),
        other.path().join(OLD_FILE_NAME),
    )
    .unwrap();
    assert!(!Store::adopt_old_location(other.path()).unwrap());
    assert!(other.path().join(OLD_FILE_NAME).exists());
}

#[tokio::test]
async fn a_seeded_checkpoint_appears_whole_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    // Left by a crash during an earlier attempt.
    std::fs::write(dir.path().join(format!("{FILE_NAME}.new")), b"half").unwrap();
    let seed = Seed {
        meta: vec![(keys::CLUSTER, "takeover".into())],
        tasks: vec![task("arn:aws:ecs:us-east-1:1:task/c/seeded")],
        images: vec![ImageRecord {
            image_id: "sha256:1".into(),
            names: vec!["a:1".into()],
            size: 1,
            pulled_at_ms: 1,
            last_used_at_ms: 1,
            pull_succeeded: true,
        }],
    };
    let store = tokio::task::spawn_blocking({
        let dir = dir.path().to_path_buf();
        move || Store::create_seeded(&dir, seed)
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        store.get_meta(keys::CLUSTER).await.unwrap().as_deref(),
        Some("takeover")
    );
    assert_eq!(store.load_tasks().await.unwrap().len(), 1);
    assert_eq!(store.load_images().await.unwrap().len(), 1);
    assert!(!dir.path().join(format!("{FILE_NAME}.new")).exists());
    assert!(Store::exists_in(dir.path()));
}
