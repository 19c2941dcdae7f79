//! The checkpoint's schema versions and the steps between them
//! (docs/architecture.md §6).
//!
//! | version | layout |
//! |---|---|
//! | 1 | tables `metadata`, `tasks`, `outbox`, `images`; JSON records; no version key (agent 0.1.0 before versioning) |
//! | 2 | as 1, plus `metadata["schema-version"]` |
//!
//! A change to the layout or to a record's encoding that an older agent
//! could misread bumps [`CURRENT_VERSION`] and adds one [`Migration`] from
//! the previous version, with a test that opens a saved file of that
//! version (under `tests/data/`). All steps run in one write transaction, so
//! a crash mid-upgrade leaves the old version intact.

use std::io::Read;
use std::path::Path;

use redb::{
    Database, ReadOnlyDatabase, ReadTransaction, ReadableDatabase, TableHandle, WriteTransaction,
};

use super::{keys, StoreError, IMAGES, METADATA, OUTBOX, TASKS};

/// The version this agent writes.
pub const CURRENT_VERSION: u32 = 2;

/// Upgrades a checkpoint from version `from` to `from + 1`.
pub(super) struct Migration {
    pub from: u32,
    pub what: &'static str,
    pub apply: fn(&WriteTransaction) -> Result<(), StoreError>,
}

pub(super) const MIGRATIONS: &[Migration] = &[Migration {
    from: 1,
    what: "record the schema version",
    apply: v1_to_v2,
}];

/// Version 1 had no version key and the same records: nothing to convert.
/// The version itself is stamped by [`prepare`] after the last step.
fn v1_to_v2(_txn: &WriteTransaction) -> Result<(), StoreError> {
    Ok(())
}

const TABLES: [&str; 4] = ["metadata", "tasks", "outbox", "images"];
const REDB_MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];
/// bbolt's meta page magic (little endian at byte 16): the Go agent's file.
const BBOLT_MAGIC: [u8; 4] = 0xED0C_DAEDu32.to_le_bytes();

/// Opens the file for writing, after checking, without writing anything,
/// that it is a checkpoint this agent can use.
pub(super) fn open_file(path: &Path) -> Result<Database, StoreError> {
    let file = path.display().to_string();
    let open_error = |e: redb::DatabaseError| StoreError::Open {
        file: file.clone(),
        source: e.into(),
    };
    if looks_at_header(path, &file)? {
        match ReadOnlyDatabase::open(path) {
            Ok(db) => {
                // Records of the current version are checked here, before
                // the read-write open below writes to the file. Older
                // versions are checked after their upgrade, which runs in
                // one transaction that an unreadable record aborts.
                let txn = db.begin_read()?;
                if version_of(&txn, &file)? == Some(CURRENT_VERSION) {
                    super::check_records(&txn, &file)?;
                }
            }
            // Not closed cleanly: the read-write open below repairs it, and
            // `prepare` checks the version then.
            Err(redb::DatabaseError::RepairAborted) => {}
            Err(e) => return Err(open_error(e)),
        }
    }
    Database::create(path).map_err(open_error)
}

/// Whether `path` is a redb file (an existing file starting with redb's
/// header).
pub(super) fn is_redb(path: &Path) -> bool {
    let mut head = [0u8; 9];
    std::fs::File::open(path)
        .and_then(|mut f| read_up_to(&mut f, &mut head))
        .is_ok_and(|n| n == head.len() && head == REDB_MAGIC)
}

/// Whether `path` is a bbolt file: the Go agent's checkpoint.
pub fn is_bbolt(path: &Path) -> bool {
    let mut head = [0u8; 20];
    std::fs::File::open(path)
        .and_then(|mut f| read_up_to(&mut f, &mut head))
        .is_ok_and(|n| n == head.len() && head[16..20] == BBOLT_MAGIC)
}

/// `true` when the file exists with content, which must start with redb's
/// header; a file that does not is refused with a hint at what it is.
fn looks_at_header(path: &Path, file: &str) -> Result<bool, StoreError> {
    let mut head = [0u8; 20];
    let read = match std::fs::File::open(path) {
        Ok(mut f) => read_up_to(&mut f, &mut head),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => Err(e),
    };
    let n = read.map_err(|e| StoreError::Unrecognised {
        file: file.to_string(),
        why: format!("it cannot be read: {e}"),
    })?;
    if n == 0 {
        return Ok(false);
    }
    if head[..n].starts_with(&REDB_MAGIC) {
        return Ok(true);
    }
    let why = if n >= 20 && head[16..20] == BBOLT_MAGIC {
        "it is a bbolt database, as the Go ECS agent writes, where this agent's own checkpoint belongs".to_string()
    } else {
        "it does not start with this agent's database header".to_string()
    };
    Err(StoreError::Unrecognised {
        file: file.to_string(),
        why,
    })
}

fn read_up_to(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match f.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// The file's schema version: `None` for an empty database, else a version
/// this agent can upgrade or use; anything else is an error.
pub(super) fn version_of(txn: &ReadTransaction, file: &str) -> Result<Option<u32>, StoreError> {
    let unrecognised = |why: String| StoreError::Unrecognised {
        file: file.to_string(),
        why,
    };
    let names: Vec<String> = txn.list_tables()?.map(|t| t.name().to_string()).collect();
    if names.is_empty() {
        return Ok(None);
    }
    let version = if names.iter().any(|n| n == "metadata") {
        let table = txn.open_table(METADATA)?;
        let stored = table
            .get(keys::SCHEMA_VERSION)?
            .map(|v| v.value().to_string());
        match stored {
            None => 1,
            Some(text) => match text.parse::<u32>() {
                Ok(v) if v > CURRENT_VERSION => {
                    return Err(StoreError::NewerSchema {
                        file: file.to_string(),
                        found: v,
                        supported: CURRENT_VERSION,
                    })
                }
                Ok(v) if v >= 1 => v,
                _ => {
                    return Err(unrecognised(format!(
                        "its schema version {text:?} is not valid"
                    )))
                }
            },
        }
    } else {
        return Err(unrecognised("it has no metadata table".into()));
    };
    if let Some(other) = names.iter().find(|n| !TABLES.contains(&n.as_str())) {
        return Err(unrecognised(format!(
            "it holds a table {other:?} that no version of this agent writes"
        )));
    }
    Ok(Some(version))
}

/// Brings an open database to [`CURRENT_VERSION`]: creates the tables of
/// a new one, or runs the migrations an older one needs, in one
/// transaction.
pub(super) fn prepare(db: &Database, file: &str) -> Result<(), StoreError> {
    let found = version_of(&db.begin_read()?, file)?;
    if found == Some(CURRENT_VERSION) {
        return Ok(());
    }
    let txn = db.begin_write()?;
    if let Some(from) = found {
        for step in MIGRATIONS.iter().filter(|m| m.from >= from) {
            tracing::info!(
                file,
                from = step.from,
                to = step.from + 1,
                step = step.what,
                "upgrading the checkpoint"
            );
            (step.apply)(&txn)?;
        }
    }
    txn.open_table(TASKS)?;
    txn.open_table(OUTBOX)?;
    txn.open_table(IMAGES)?;
    txn.open_table(METADATA)?
        .insert(keys::SCHEMA_VERSION, CURRENT_VERSION.to_string().as_str())?;
    txn.commit()?;
    Ok(())
}
