//! The agent's checkpoint: an embedded transactional database (`agent.db`
//! in `ECS_DATADIR`) holding instance metadata, every task with its
//! containers, the image states, and the outbox of state changes not yet
//! accepted by the backend. A task's new state and the report it owes are written in one
//! transaction, so a crash leaves either "not yet happened" or "happened and
//! queued", never "happened and forgotten".
//!
//! With checkpointing off the same database lives in memory, so the engine
//! has one code path.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::engine::task::Task;
use crate::images::ImageRecord;
use crate::state_change::TaskStateChange;

const METADATA: TableDefinition<&str, &str> = TableDefinition::new("metadata");
const TASKS: TableDefinition<&str, &[u8]> = TableDefinition::new("tasks");
const OUTBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("outbox");
/// Image states by image ID (spec engine.md §12.2 `images`).
const IMAGES: TableDefinition<&str, &[u8]> = TableDefinition::new("images");

/// Metadata keys (the Go agent's names, kept for familiarity).
pub mod keys {
    pub const CLUSTER: &str = "cluster-name";
    pub const CONTAINER_INSTANCE_ARN: &str = "container-instance-arn";
    pub const AVAILABILITY_ZONE: &str = "availability-zone";
    pub const AGENT_VERSION: &str = "agent-version";
    pub const EC2_INSTANCE_ID: &str = "ec2-instance-id";
    pub const TASK_MANIFEST_SEQ_NUM: &str = "task-manifest-seq-num";
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state database: {0}")]
    Database(#[from] redb::Error),
    #[error("state record: {0}")]
    Encoding(#[from] serde_json::Error),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Database(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// An outbox entry: its id (order of queueing) and the change.
pub type QueuedChange = (u64, TaskStateChange);

/// One atomic change to the checkpoint.
#[derive(Debug, Default)]
pub struct Batch<'a> {
    pub put_tasks: Vec<&'a Task>,
    pub delete_tasks: Vec<&'a str>,
    pub enqueue: Vec<TaskStateChange>,
}

impl Batch<'_> {
    pub fn is_empty(&self) -> bool {
        self.put_tasks.is_empty() && self.delete_tasks.is_empty() && self.enqueue.is_empty()
    }
}

pub struct Store {
    db: Database,
}

/// A record that could not be decoded; it is skipped (and logged by the
/// caller) so one bad record cannot stop the agent.
#[derive(Debug)]
pub struct CorruptRecord {
    pub key: String,
    pub error: String,
}

impl Store {
    /// Opens (or creates) `<dir>/agent.db`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let db = Database::create(dir.join("agent.db"))?;
        Self::init(db)
    }

    /// A store that lives only as long as the process.
    pub fn in_memory() -> Result<Self, StoreError> {
        let db = Database::builder().create_with_backend(redb::backends::InMemoryBackend::new())?;
        Self::init(db)
    }

    fn init(db: Database) -> Result<Self, StoreError> {
        let txn = db.begin_write()?;
        txn.open_table(METADATA)?;
        txn.open_table(TASKS)?;
        txn.open_table(OUTBOX)?;
        txn.open_table(IMAGES)?;
        txn.commit()?;
        Ok(Self { db })
    }

    pub fn get_meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(METADATA)?;
        Ok(table.get(key)?.map(|v| v.value().to_string()))
    }

    pub fn put_meta(&self, entries: &[(&str, &str)]) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(METADATA)?;
            for (k, v) in entries {
                table.insert(*k, *v)?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Every saved task; undecodable records are returned separately.
    pub fn load_tasks(&self) -> Result<(Vec<Task>, Vec<CorruptRecord>), StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(TASKS)?;
        let mut tasks = Vec::new();
        let mut corrupt = Vec::new();
        for entry in table.iter()? {
            let (k, v) = entry?;
            match serde_json::from_slice::<Task>(v.value()) {
                Ok(task) => tasks.push(task),
                Err(e) => corrupt.push(CorruptRecord {
                    key: k.value().to_string(),
                    error: e.to_string(),
                }),
            }
        }
        Ok((tasks, corrupt))
    }

    pub fn commit(&self, batch: Batch<'_>) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let txn = self.db.begin_write()?;
        {
            let mut tasks = txn.open_table(TASKS)?;
            for task in &batch.put_tasks {
                tasks.insert(task.arn(), serde_json::to_vec(task)?.as_slice())?;
            }
            for arn in &batch.delete_tasks {
                tasks.remove(*arn)?;
            }
            let mut outbox = txn.open_table(OUTBOX)?;
            let first = outbox.last()?.map(|(k, _)| k.value() + 1).unwrap_or(1);
            for (id, change) in (first..).zip(&batch.enqueue) {
                outbox.insert(id, serde_json::to_vec(change)?.as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// The outbox in the order the changes were made.
    pub fn outbox(&self) -> Result<(Vec<QueuedChange>, Vec<CorruptRecord>), StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(OUTBOX)?;
        let mut items = Vec::new();
        let mut corrupt = Vec::new();
        for entry in table.iter()? {
            let (k, v) = entry?;
            match serde_json::from_slice::<TaskStateChange>(v.value()) {
                Ok(change) => items.push((k.value(), change)),
                Err(e) => corrupt.push(CorruptRecord {
                    key: k.value().to_string(),
                    error: e.to_string(),
                }),
            }
        }
        Ok((items, corrupt))
    }

    /// Whether any report for this task is still waiting to be delivered.
    pub fn has_pending_reports(&self, task_arn: &str) -> Result<bool, StoreError> {
        Ok(self
            .outbox()?
            .0
            .iter()
            .any(|(_, change)| change.task_arn == task_arn))
    }

    /// Every saved image state; undecodable records are returned separately.
    pub fn load_images(&self) -> Result<(Vec<ImageRecord>, Vec<CorruptRecord>), StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(IMAGES)?;
        let mut images = Vec::new();
        let mut corrupt = Vec::new();
        for entry in table.iter()? {
            let (k, v) = entry?;
            match serde_json::from_slice::<ImageRecord>(v.value()) {
                Ok(image) => images.push(image),
                Err(e) => corrupt.push(CorruptRecord {
                    key: k.value().to_string(),
                    error: e.to_string(),
                }),
            }
        }
        Ok((images, corrupt))
    }

    /// Saves and deletes image states in one transaction.
    pub fn save_images(&self, put: &[&ImageRecord], delete: &[&str]) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(IMAGES)?;
            for image in put {
                table.insert(
                    image.image_id.as_str(),
                    serde_json::to_vec(image)?.as_slice(),
                )?;
            }
            for id in delete {
                table.remove(*id)?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Removes delivered (or undeliverable) reports.
    pub fn dequeue(&self, ids: &[u64]) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(OUTBOX)?;
            for id in ids {
                table.remove(*id)?;
            }
        }
        txn.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
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

    #[test]
    fn state_and_outbox_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let arn = "arn:aws:ecs:us-east-1:1:task/c/abc";
        {
            let store = Store::open(dir.path()).unwrap();
            store
                .put_meta(&[(keys::CONTAINER_INSTANCE_ARN, "ci-arn")])
                .unwrap();
            let t = task(arn);
            store
                .commit(Batch {
                    put_tasks: vec![&t],
                    enqueue: vec![change(arn, "RUNNING"), change(arn, "STOPPED")],
                    ..Batch::default()
                })
                .unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store
                .get_meta(keys::CONTAINER_INSTANCE_ARN)
                .unwrap()
                .as_deref(),
            Some("ci-arn")
        );
        let (tasks, corrupt) = store.load_tasks().unwrap();
        assert_eq!(tasks.len(), 1);
        assert!(corrupt.is_empty());
        let (outbox, _) = store.outbox().unwrap();
        let statuses: Vec<&str> = outbox.iter().map(|(_, c)| c.status.as_str()).collect();
        assert_eq!(statuses, ["RUNNING", "STOPPED"]);
        assert!(store.has_pending_reports(arn).unwrap());
        store.dequeue(&[outbox[0].0]).unwrap();
        let (outbox, _) = store.outbox().unwrap();
        assert_eq!(outbox.len(), 1);
        // New ids keep growing after a dequeue, so order is preserved.
        store
            .commit(Batch {
                enqueue: vec![change(arn, "X")],
                ..Batch::default()
            })
            .unwrap();
        let (outbox, _) = store.outbox().unwrap();
        assert_eq!(outbox.last().unwrap().1.status, "X");
        assert!(outbox[0].0 < outbox[1].0);
    }

    #[test]
    fn image_states_survive_reopening_and_are_deleted() {
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
            store.save_images(&[&image("a"), &image("b")], &[]).unwrap();
            store.save_images(&[], &["a"]).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let (images, corrupt) = store.load_images().unwrap();
        assert_eq!(images, [image("b")]);
        assert!(corrupt.is_empty());
    }

    #[test]
    fn corrupt_records_are_skipped_not_fatal() {
        let store = Store::in_memory().unwrap();
        let txn = store.db.begin_write().unwrap();
        {
            let mut t = txn.open_table(TASKS).unwrap();
            t.insert("bad", b"{not json".as_slice()).unwrap();
        }
        txn.commit().unwrap();
        let good = task("arn:aws:ecs:us-east-1:1:task/c/good");
        store
            .commit(Batch {
                put_tasks: vec![&good],
                ..Batch::default()
            })
            .unwrap();
        let (tasks, corrupt) = store.load_tasks().unwrap();
        assert_eq!(tasks.len(), 1);
        assert_eq!(corrupt[0].key, "bad");
    }
}
