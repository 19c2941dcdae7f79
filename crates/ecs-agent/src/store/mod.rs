//! The agent's checkpoint: an embedded transactional database
//! (`ecs-agent.redb` in `ECS_DATADIR`) holding instance metadata, every task with its
//! containers, the image states, and the outbox of state changes not yet
//! accepted by the backend (docs/architecture.md §5, §6).
//!
//! A task's new state and the report it owes are written in one
//! transaction, so a crash leaves either "not yet happened" or "happened and
//! queued", never "happened and forgotten". Every call runs on tokio's
//! blocking threads: a commit waits for the disk, and that wait must never
//! hold up an async worker. The file carries a schema version; older
//! versions are upgraded on open (see [`schema`]), and anything the agent
//! cannot read is refused before it touches the file.
//!
//! With checkpointing off the same database lives in memory, so the engine
//! has one code path.

mod schema;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use redb::{
    Database, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};
use serde::de::DeserializeOwned;

use crate::engine::task::Task;
use crate::images::ImageRecord;
use crate::state_change::TaskStateChange;

pub use schema::{is_bbolt, CURRENT_VERSION};

/// The checkpoint's file name inside the data directory: a name of its
/// own, so that it never meets the Go agent's `agent.db` (docs/operations.md §10).
pub const FILE_NAME: &str = "ecs-agent.redb";

/// Where agent 0.1.0 kept the checkpoint, and where the Go agent keeps its
/// own: a file there is moved to [`FILE_NAME`] only when it is this agent's.
pub const OLD_FILE_NAME: &str = "agent.db";

/// Everything a new checkpoint starts with, written in its first
/// transaction (a take-over from the Go agent).
#[derive(Debug, Default)]
pub struct Seed {
    pub meta: Vec<(&'static str, String)>,
    pub tasks: Vec<Task>,
    pub images: Vec<ImageRecord>,
}

const METADATA: TableDefinition<&str, &str> = TableDefinition::new("metadata");
const TASKS: TableDefinition<&str, &[u8]> = TableDefinition::new("tasks");
const OUTBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("outbox");
/// Image states by image ID (docs/engine.md §10.5).
const IMAGES: TableDefinition<&str, &[u8]> = TableDefinition::new("images");

/// Metadata keys (the Go agent's names, kept for familiarity).
pub mod keys {
    pub const CLUSTER: &str = "cluster-name";
    pub const CONTAINER_INSTANCE_ARN: &str = "container-instance-arn";
    pub const AVAILABILITY_ZONE: &str = "availability-zone";
    pub const AGENT_VERSION: &str = "agent-version";
    pub const EC2_INSTANCE_ID: &str = "ec2-instance-id";
    pub const TASK_MANIFEST_SEQ_NUM: &str = "task-manifest-seq-num";
    /// The layout version of the whole file (absent in version 1).
    pub const SCHEMA_VERSION: &str = "schema-version";
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("checkpoint {file} is not a checkpoint this agent can read ({why}); it was left as it is. Move it away to start afresh as a new container instance")]
    Unrecognised { file: String, why: String },
    #[error("checkpoint {file} has schema version {found}, newer than version {supported} that this agent understands; it was left as it is. Run the newer agent, or move the file away to start afresh as a new container instance")]
    NewerSchema {
        file: String,
        found: u32,
        supported: u32,
    },
    #[error("checkpoint {file}: the {table} record {key:?} cannot be read ({error}); the file was left as it is. Restore a good copy, or move it away to start afresh as a new container instance")]
    UnreadableRecord {
        file: String,
        table: &'static str,
        key: String,
        error: String,
    },
    #[error("checkpoint {file}: {source}")]
    Open { file: String, source: redb::Error },
    #[error("state database: {0}")]
    Database(#[from] redb::Error),
    #[error("state record: {0}")]
    Encoding(#[from] serde_json::Error),
    #[error("checkpoint worker failed: {0}")]
    Worker(String),
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

/// One atomic change to the checkpoint. Tasks are encoded when they are
/// added, so the batch owns plain bytes and can cross to a blocking thread.
#[derive(Debug, Default)]
pub struct Batch {
    /// Task records by ARN, encoded by [`encode_task`].
    pub put_tasks: Vec<(String, Vec<u8>)>,
    pub delete_tasks: Vec<String>,
    pub enqueue: Vec<TaskStateChange>,
    /// Raises `latestSeq` (never lowers it) in the same transaction.
    pub latest_seq: Option<i64>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.put_tasks.is_empty()
            && self.delete_tasks.is_empty()
            && self.enqueue.is_empty()
            && self.latest_seq.is_none()
    }
}

/// A task's record and its digest.
pub fn encode_task(task: &Task) -> Result<(Vec<u8>, u64), StoreError> {
    let bytes = serde_json::to_vec(task)?;
    let digest = digest(&bytes);
    Ok((bytes, digest))
}

fn digest(bytes: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

/// Whether the last write to the checkpoint failed, and why; shown by the
/// introspection endpoint. Clones share the flag.
#[derive(Debug, Clone, Default)]
pub struct Health {
    last_error: Arc<Mutex<Option<String>>>,
}

impl Health {
    /// `None` while writes succeed.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn record<T>(&self, result: &Result<T, StoreError>) {
        let mut slot = self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *slot = result.as_ref().err().map(ToString::to_string);
    }
}

/// A handle on the checkpoint; clones share it.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("file", &self.inner.file)
            .finish_non_exhaustive()
    }
}

type Reopen = Box<dyn Fn() -> Result<Database, StoreError> + Send + Sync>;

struct Inner {
    /// `None` after a failed write: redb refuses every later call on a
    /// database that saw an I/O error, so the next call opens it afresh
    /// (from the last committed transaction).
    db: RwLock<Option<Database>>,
    reopen: Reopen,
    /// The file, as error messages name it.
    file: String,
    writes: AtomicU64,
    health: Health,
}

/// The process's memory as a disk that survives reopening.
#[derive(Debug, Clone, Default)]
struct Memory(Arc<redb::backends::InMemoryBackend>);

impl redb::StorageBackend for Memory {
    fn len(&self) -> std::io::Result<u64> {
        self.0.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        self.0.read(offset, out)
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.0.set_len(len)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        self.0.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.0.write(offset, data)
    }
}

impl Store {
    /// Opens `<dir>/agent.db`, creating it when absent and upgrading an
    /// older schema. Refuses, touching nothing, a file this agent did not
    /// write, a newer schema, or any record it cannot decode. Blocks: call
    /// it before the agent's work starts, or from a blocking thread.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_file(dir.join(FILE_NAME))
    }

    fn open_file(path: std::path::PathBuf) -> Result<Self, StoreError> {
        let file = path.display().to_string();
        let db = schema::open_file(&path)?;
        let again = file.clone();
        let reopen = move || {
            Database::create(&path).map_err(|e| StoreError::Open {
                file: again.clone(),
                source: e.into(),
            })
        };
        Self::ready(db, Box::new(reopen), file)
    }

    /// Whether `dir` holds this agent's checkpoint under its own name.
    pub fn exists_in(dir: &Path) -> bool {
        dir.join(FILE_NAME).exists()
    }

    /// Moves a checkpoint agent 0.1.0 left as `agent.db` to its own name,
    /// when there is none under that name yet; a file there that is not
    /// this agent's (the Go agent's) stays where it is. Returns whether it
    /// moved one. The schema upgrade follows when it is opened.
    pub fn adopt_old_location(dir: &Path) -> Result<bool, StoreError> {
        let old = dir.join(OLD_FILE_NAME);
        let own = dir.join(FILE_NAME);
        if own.exists() || !schema::is_redb(&old) {
            return Ok(false);
        }
        std::fs::rename(&old, &own).map_err(|e| StoreError::Unrecognised {
            file: old.display().to_string(),
            why: format!("it could not be moved to {}: {e}", own.display()),
        })?;
        tracing::info!(
            from = %old.display(),
            to = %own.display(),
            "moved this agent's checkpoint to its own file name"
        );
        Ok(true)
    }

    /// Creates the checkpoint in `dir` holding `seed`, all or nothing: it
    /// is written under a temporary name and renamed into place only once
    /// committed, so a crash leaves no half-made checkpoint to resume from.
    pub fn create_seeded(dir: &Path, seed: Seed) -> Result<Self, StoreError> {
        let own = dir.join(FILE_NAME);
        let staging = dir.join(format!("{FILE_NAME}.new"));
        let file = staging.display().to_string();
        let io = |e: std::io::Error| StoreError::Unrecognised {
            file: file.clone(),
            why: format!("it could not be written: {e}"),
        };
        match std::fs::remove_file(&staging) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
            _ => {}
        }
        {
            let store = Self::open_file(staging.clone())?;
            store.inner.write(|txn| {
                let mut meta = txn.open_table(METADATA)?;
                for (k, v) in &seed.meta {
                    meta.insert(*k, v.as_str())?;
                }
                let mut tasks = txn.open_table(TASKS)?;
                for task in &seed.tasks {
                    tasks.insert(task.arn(), serde_json::to_vec(task)?.as_slice())?;
                }
                let mut images = txn.open_table(IMAGES)?;
                for image in &seed.images {
                    images.insert(
                        image.image_id.as_str(),
                        serde_json::to_vec(image)?.as_slice(),
                    )?;
                }
                Ok(())
            })?;
        }
        std::fs::rename(&staging, &own).map_err(io)?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
        Self::open(dir)
    }

    /// A store that lives only as long as the process.
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::with_backend(Memory::default(), "in-memory checkpoint")
    }

    fn with_backend<B>(backend: B, label: &str) -> Result<Self, StoreError>
    where
        B: redb::StorageBackend + Clone,
    {
        let db = Database::builder().create_with_backend(backend.clone())?;
        let reopen = move || Ok(Database::builder().create_with_backend(backend.clone())?);
        Self::ready(db, Box::new(reopen), label.to_string())
    }

    fn ready(db: Database, reopen: Reopen, file: String) -> Result<Self, StoreError> {
        schema::prepare(&db, &file)?;
        let inner = Inner {
            db: RwLock::new(Some(db)),
            reopen,
            file,
            writes: AtomicU64::new(0),
            health: Health::default(),
        };
        inner.check_records()?;
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// The file, as messages name it.
    pub fn file(&self) -> &str {
        &self.inner.file
    }

    /// How many write transactions this process has committed.
    pub fn write_count(&self) -> u64 {
        self.inner.writes.load(Ordering::Relaxed)
    }

    /// The write-failure flag, for the endpoints.
    pub fn health(&self) -> Health {
        self.inner.health.clone()
    }

    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| StoreError::Worker(e.to_string()))?
    }

    /// Runs one write transaction on a blocking thread; its outcome sets
    /// the health flag.
    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = self.inner.clone();
        let result = tokio::task::spawn_blocking(move || inner.write(f))
            .await
            .map_err(|e| StoreError::Worker(e.to_string()))
            .and_then(|r| r);
        self.inner.health.record(&result);
        result
    }

    pub async fn get_meta(&self, key: &'static str) -> Result<Option<String>, StoreError> {
        self.read(move |inner| inner.get_meta(key)).await
    }

    pub async fn put_meta(&self, entries: Vec<(&'static str, String)>) -> Result<(), StoreError> {
        self.write(move |txn| {
            let mut table = txn.open_table(METADATA)?;
            for (k, v) in &entries {
                table.insert(*k, v.as_str())?;
            }
            Ok(())
        })
        .await
    }

    /// `latestSeq`: the highest payload `seqNum` or accepted manifest
    /// `timeline` (docs/protocols.md §4.8); -1 before any.
    pub async fn latest_seq(&self) -> Result<i64, StoreError> {
        Ok(self
            .get_meta(keys::TASK_MANIFEST_SEQ_NUM)
            .await?
            .and_then(|v| v.parse().ok())
            .unwrap_or(-1))
    }

    /// Raises `latestSeq` to `seq` in one read-modify-write transaction;
    /// returns whether it rose (false: `seq` was not above it).
    pub async fn raise_latest_seq(&self, seq: i64) -> Result<bool, StoreError> {
        self.write(move |txn| raise_seq(txn, seq)).await
    }

    /// Every saved task.
    pub async fn load_tasks(&self) -> Result<Vec<Task>, StoreError> {
        self.read(|inner| inner.decode_all(TASKS, "task")).await
    }

    /// Writes one batch atomically.
    pub async fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.write(move |txn| {
            let mut tasks = txn.open_table(TASKS)?;
            for (arn, bytes) in &batch.put_tasks {
                tasks.insert(arn.as_str(), bytes.as_slice())?;
            }
            for arn in &batch.delete_tasks {
                tasks.remove(arn.as_str())?;
            }
            let mut outbox = txn.open_table(OUTBOX)?;
            let first = outbox.last()?.map(|(k, _)| k.value() + 1).unwrap_or(1);
            for (id, change) in (first..).zip(&batch.enqueue) {
                outbox.insert(id, serde_json::to_vec(change)?.as_slice())?;
            }
            if let Some(seq) = batch.latest_seq {
                raise_seq(txn, seq)?;
            }
            Ok(())
        })
        .await
    }

    /// The outbox in the order the changes were made.
    pub async fn outbox(&self) -> Result<Vec<QueuedChange>, StoreError> {
        self.read(|inner| inner.outbox()).await
    }

    /// Whether any report for this task is still waiting to be delivered.
    pub async fn has_pending_reports(&self, task_arn: &str) -> Result<bool, StoreError> {
        let arn = task_arn.to_string();
        self.read(move |inner| {
            Ok(inner
                .outbox()?
                .iter()
                .any(|(_, change)| change.task_arn == arn))
        })
        .await
    }

    /// Removes delivered (or undeliverable) reports.
    pub async fn dequeue(&self, ids: Vec<u64>) -> Result<(), StoreError> {
        self.write(move |txn| {
            let mut table = txn.open_table(OUTBOX)?;
            for id in ids {
                table.remove(id)?;
            }
            Ok(())
        })
        .await
    }

    /// Every saved image state.
    pub async fn load_images(&self) -> Result<Vec<ImageRecord>, StoreError> {
        self.read(|inner| inner.decode_all(IMAGES, "image")).await
    }

    /// Saves and deletes image states in one transaction.
    pub async fn save_images(
        &self,
        put: Vec<ImageRecord>,
        delete: Vec<String>,
    ) -> Result<(), StoreError> {
        self.write(move |txn| {
            let mut table = txn.open_table(IMAGES)?;
            for image in &put {
                table.insert(
                    image.image_id.as_str(),
                    serde_json::to_vec(image)?.as_slice(),
                )?;
            }
            for id in &delete {
                table.remove(id.as_str())?;
            }
            Ok(())
        })
        .await
    }
}

fn raise_seq(txn: &WriteTransaction, seq: i64) -> Result<bool, StoreError> {
    let mut table = txn.open_table(METADATA)?;
    let current = table
        .get(keys::TASK_MANIFEST_SEQ_NUM)?
        .and_then(|v| v.value().parse::<i64>().ok())
        .unwrap_or(-1);
    if seq <= current {
        return Ok(false);
    }
    table.insert(keys::TASK_MANIFEST_SEQ_NUM, seq.to_string().as_str())?;
    Ok(true)
}

impl Inner {
    /// Runs `f` on the open database, opening it again first after a
    /// failed write.
    fn with_db<T>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        {
            let guard = self.db.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(db) = guard.as_ref() {
                return f(db);
            }
        }
        let mut guard = self.db.write().unwrap_or_else(PoisonError::into_inner);
        if guard.is_none() {
            tracing::info!(
                file = self.file,
                "reopening the checkpoint after a failed write"
            );
            *guard = Some((self.reopen)()?);
        }
        match guard.as_ref() {
            Some(db) => f(db),
            None => Err(StoreError::Worker("checkpoint not open".into())),
        }
    }

    fn write<T>(
        &self,
        f: impl FnOnce(&WriteTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let result = self.with_db(|db| {
            let txn = db.begin_write()?;
            let value = f(&txn)?;
            txn.commit()?;
            Ok(value)
        });
        match &result {
            Ok(_) => {
                self.writes.fetch_add(1, Ordering::Relaxed);
            }
            Err(StoreError::Encoding(_)) => {}
            // The database refuses everything after an I/O error; drop it
            // (releasing the file) so the next call reopens it.
            Err(_) => {
                *self.db.write().unwrap_or_else(PoisonError::into_inner) = None;
            }
        }
        result
    }

    fn begin_read(&self) -> Result<ReadTransaction, StoreError> {
        self.with_db(|db| Ok(db.begin_read()?))
    }

    fn get_meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        let txn = self.begin_read()?;
        let table = txn.open_table(METADATA)?;
        Ok(table.get(key)?.map(|v| v.value().to_string()))
    }

    fn decode_all<T: DeserializeOwned>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        what: &'static str,
    ) -> Result<Vec<T>, StoreError> {
        decode_all(&self.begin_read()?, table, what, &self.file)
    }

    fn outbox(&self) -> Result<Vec<QueuedChange>, StoreError> {
        decode_outbox(&self.begin_read()?, &self.file)
    }

    fn check_records(&self) -> Result<(), StoreError> {
        check_records(&self.begin_read()?, &self.file)
    }
}

/// Every record of a string-keyed table; the first that cannot be decoded
/// is an error naming it.
fn decode_all<T: DeserializeOwned>(
    txn: &ReadTransaction,
    table: TableDefinition<&str, &[u8]>,
    what: &'static str,
    file: &str,
) -> Result<Vec<T>, StoreError> {
    let table = txn.open_table(table)?;
    let mut items = Vec::new();
    for entry in table.iter()? {
        let (k, v) = entry?;
        match serde_json::from_slice::<T>(v.value()) {
            Ok(item) => items.push(item),
            Err(e) => return Err(unreadable(file, what, k.value(), &e)),
        }
    }
    Ok(items)
}

fn decode_outbox(txn: &ReadTransaction, file: &str) -> Result<Vec<QueuedChange>, StoreError> {
    let table = txn.open_table(OUTBOX)?;
    let mut items = Vec::new();
    for entry in table.iter()? {
        let (k, v) = entry?;
        match serde_json::from_slice::<TaskStateChange>(v.value()) {
            Ok(change) => items.push((k.value(), change)),
            Err(e) => return Err(unreadable(file, "outbox", &k.value().to_string(), &e)),
        }
    }
    Ok(items)
}

fn unreadable(
    file: &str,
    table: &'static str,
    key: &str,
    error: &dyn std::fmt::Display,
) -> StoreError {
    StoreError::UnreadableRecord {
        file: file.to_string(),
        table,
        key: key.to_string(),
        error: error.to_string(),
    }
}

/// Decodes every record once, so a checkpoint with one unreadable record is
/// refused before the agent acts on the others (a skipped task would leave
/// its containers running unmanaged).
fn check_records(txn: &ReadTransaction, file: &str) -> Result<(), StoreError> {
    decode_all::<Task>(txn, TASKS, "task", file)?;
    decode_all::<ImageRecord>(txn, IMAGES, "image", file)?;
    decode_outbox(txn, file)?;
    Ok(())
}
