//! The plane's state on disk: one redb database, `<data-dir>/state.redb`,
//! with a table per kind of record (one row per cluster, task definition
//! family, instance, task and service, as JSON) and the sequence counter.
//! A store update writes only the rows it changed, in one transaction
//! (docs/ecs-local.md §6). A `state.json` of earlier versions is read once
//! and moved aside.

use super::table::{Change, Table};
use super::{State, StoreError, TaskRecord};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fs;
use std::path::{Path, PathBuf};

/// The database file inside the data directory.
pub const DB_FILE: &str = "state.redb";

/// The file earlier versions kept the whole state in.
pub const LEGACY_FILE: &str = "state.json";

/// Where a migrated `state.json` is kept, untouched, after its move.
pub const MIGRATED_FILE: &str = "state.json.migrated";

/// redb's page cache.
const CACHE_BYTES: usize = 4 << 20;

type Rows = TableDefinition<'static, &'static str, &'static [u8]>;

const CLUSTERS: Rows = TableDefinition::new("clusters");
const TASK_DEFINITIONS: Rows = TableDefinition::new("task_definitions");
const INSTANCES: Rows = TableDefinition::new("instances");
const TASKS: Rows = TableDefinition::new("tasks");
const SERVICES: Rows = TableDefinition::new("services");
const TASK_DEFINITION_TAGS: Rows = TableDefinition::new("task_definition_tags");
const ACCOUNT_SETTINGS: Rows = TableDefinition::new("account_settings");
const META: Rows = TableDefinition::new("meta");

const SEQ: &str = "seq";

/// The open database.
pub struct Disk {
    db: Database,
    path: PathBuf,
}

impl std::fmt::Debug for Disk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Disk").field("path", &self.path).finish()
    }
}

impl Disk {
    /// Opens (or creates) the database in `data_dir` and loads the state.
    /// With no database yet but a `state.json`, the state comes from that
    /// file, is written to the new database, and the file is renamed to
    /// `state.json.migrated`.
    pub fn open(data_dir: &Path) -> Result<(Self, State), StoreError> {
        let path = data_dir.join(DB_FILE);
        let legacy = data_dir.join(LEGACY_FILE);
        let migrate = !path.exists() && legacy.exists();
        let disk = Self::create(&path)?;
        if !migrate {
            let state = disk.load()?;
            return Ok((disk, state));
        }
        let bytes = fs::read(&legacy).map_err(|error| StoreError::Read {
            path: legacy.clone(),
            error,
        })?;
        let state: State = serde_json::from_slice(&bytes).map_err(|error| StoreError::Parse {
            path: legacy.clone(),
            error,
        })?;
        disk.write(&State::default(), &state)?;
        let kept = data_dir.join(MIGRATED_FILE);
        fs::rename(&legacy, &kept).map_err(|error| StoreError::Write {
            path: kept.clone(),
            error,
        })?;
        tracing::info!(
            from = %legacy.display(),
            to = %path.display(),
            tasks = state.tasks.len(),
            "state migrated from state.json; the old file is kept as state.json.migrated"
        );
        Ok((disk, state))
    }

    fn create(path: &Path) -> Result<Self, StoreError> {
        // The state holds the secret keys of issued task credentials: only
        // the owner may read it. The file is made (empty) with that mode
        // before redb opens it; an existing one is narrowed too.
        let mut options = fs::OpenOptions::new();
        options.write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let io = |error| StoreError::Write {
            path: path.to_owned(),
            error,
        };
        let file = options.open(path).map_err(io)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(fs::Permissions::from_mode(0o600))
                .map_err(io)?;
        }
        drop(file);
        // Rows are read back only at start-up, so a small page cache will
        // do (redb's default holds up to 1 GiB).
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| database(path, e))?;
        Ok(Self {
            db,
            path: path.to_owned(),
        })
    }

    fn load(&self) -> Result<State, StoreError> {
        let fail = |e: redb::Error| database(&self.path, e);
        let txn = self.db.begin_read().map_err(|e| fail(e.into()))?;
        let mut state = State::default();
        let read_table = |def: Rows| -> Result<Vec<(String, Vec<u8>)>, StoreError> {
            let table = match txn.open_table(def) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(e) => return Err(fail(e.into())),
            };
            let mut rows = Vec::new();
            for row in table.iter().map_err(|e| fail(e.into()))? {
                let (k, v) = row.map_err(|e| fail(e.into()))?;
                rows.push((k.value().to_owned(), v.value().to_vec()));
            }
            Ok(rows)
        };
        state.clusters = self.decode_rows(read_table(CLUSTERS)?)?;
        state.task_definitions = self.decode_rows(read_table(TASK_DEFINITIONS)?)?;
        state.instances = self.decode_rows(read_table(INSTANCES)?)?;
        state.tasks = self.decode_rows::<TaskRecord>(read_table(TASKS)?)?.into();
        state.services = self.decode_rows(read_table(SERVICES)?)?;
        state.task_definition_tags = self.decode_rows(read_table(TASK_DEFINITION_TAGS)?)?;
        state.account_settings = self.decode_rows(read_table(ACCOUNT_SETTINGS)?)?;
        for (key, value) in read_table(META)? {
            if key.as_str() == SEQ {
                state.seq = self.decode(&key, &value)?;
            }
        }
        Ok(state)
    }

    fn decode_rows<T: DeserializeOwned + Clone>(
        &self,
        rows: Vec<(String, Vec<u8>)>,
    ) -> Result<Table<T>, StoreError> {
        rows.into_iter()
            .map(|(k, v)| Ok((k.clone(), self.decode(&k, &v)?)))
            .collect()
    }

    fn decode<T: DeserializeOwned>(&self, key: &str, bytes: &[u8]) -> Result<T, StoreError> {
        serde_json::from_slice(bytes).map_err(|error| StoreError::Record {
            path: self.path.clone(),
            key: key.to_owned(),
            error,
        })
    }

    /// Writes what differs between `before` and `after`, in one durable
    /// transaction; nothing when nothing differs.
    pub fn write(&self, before: &State, after: &State) -> Result<(), StoreError> {
        self.write_changes_ignoring_count(Changes {
            clusters: after.clusters.changes(&before.clusters),
            definitions: after.task_definitions.changes(&before.task_definitions),
            instances: after.instances.changes(&before.instances),
            tasks: after.tasks.changes(&before.tasks),
            services: after.services.changes(&before.services),
            definition_tags: after
                .task_definition_tags
                .changes(&before.task_definition_tags),
            settings: after.account_settings.changes(&before.account_settings),
            seq: (after.seq != before.seq).then_some(after.seq),
        })
    }

    fn write_changes_ignoring_count(&self, changes: Changes<'_>) -> Result<(), StoreError> {
        self.write_changes(changes).map(|_| ())
    }

    /// Writes what the state's running transaction changed; whether there
    /// was anything to write.
    pub fn write_pending(&self, state: &State) -> Result<bool, StoreError> {
        self.write_changes(Changes {
            clusters: state.clusters.pending(),
            definitions: state.task_definitions.pending(),
            instances: state.instances.pending(),
            tasks: state.tasks.pending(),
            services: state.services.pending(),
            definition_tags: state.task_definition_tags.pending(),
            settings: state.account_settings.pending(),
            seq: state.seq_changed(),
        })
    }

    fn write_changes(&self, changes: Changes<'_>) -> Result<bool, StoreError> {
        let Changes {
            clusters,
            definitions,
            instances,
            tasks,
            services,
            definition_tags,
            settings,
            seq,
        } = changes;
        let seq_changed = seq.is_some();
        let nothing = clusters.is_empty()
            && definitions.is_empty()
            && instances.is_empty()
            && tasks.is_empty()
            && services.is_empty()
            && definition_tags.is_empty()
            && settings.is_empty()
            && !seq_changed;
        if nothing {
            return Ok(false);
        }
        let fail = |e: redb::Error| database(&self.path, e);
        let txn = self.db.begin_write().map_err(|e| fail(e.into()))?;
        apply(&txn, CLUSTERS, &clusters).map_err(fail)?;
        apply(&txn, TASK_DEFINITIONS, &definitions).map_err(fail)?;
        apply(&txn, INSTANCES, &instances).map_err(fail)?;
        apply(&txn, TASKS, &tasks).map_err(fail)?;
        apply(&txn, SERVICES, &services).map_err(fail)?;
        apply(&txn, TASK_DEFINITION_TAGS, &definition_tags).map_err(fail)?;
        apply(&txn, ACCOUNT_SETTINGS, &settings).map_err(fail)?;
        if let Some(seq) = seq {
            let bytes = serde_json::to_vec(&seq).map_err(StoreError::Encode)?;
            let mut meta = txn.open_table(META).map_err(|e| fail(e.into()))?;
            meta.insert(SEQ, bytes.as_slice())
                .map_err(|e| fail(e.into()))?;
        }
        txn.commit().map_err(|e| fail(e.into()))?;
        Ok(true)
    }
}

/// The rows to write, per table, and the new sequence counter if it moved.
struct Changes<'a> {
    clusters: Vec<Change<'a, super::ClusterRecord>>,
    definitions: Vec<Change<'a, Vec<ecs_model::ecs_api::TaskDefinition>>>,
    instances: Vec<Change<'a, super::InstanceRecord>>,
    tasks: Vec<Change<'a, super::TaskRecord>>,
    services: Vec<Change<'a, super::ServiceRecord>>,
    definition_tags: Vec<Change<'a, Vec<ecs_model::ecs_api::Tag>>>,
    settings: Vec<Change<'a, String>>,
    seq: Option<i64>,
}

fn apply<T: Serialize>(
    txn: &WriteTransaction,
    def: Rows,
    changes: &[Change<'_, T>],
) -> Result<(), redb::Error> {
    if changes.is_empty() {
        return Ok(());
    }
    let mut table = txn.open_table(def)?;
    for change in changes {
        match change {
            Change::Put(key, row) => {
                // Rows are plain data: encoding them cannot fail.
                let bytes = serde_json::to_vec(row)
                    .map_err(|e| redb::Error::Io(std::io::Error::other(e)))?;
                table.insert(*key, bytes.as_slice())?;
            }
            Change::Delete(key) => {
                table.remove(*key)?;
            }
        }
    }
    Ok(())
}

fn database(path: &Path, error: impl Into<redb::Error>) -> StoreError {
    StoreError::Database {
        path: path.to_owned(),
        error: error.into().to_string(),
    }
}
