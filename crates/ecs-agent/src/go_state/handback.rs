//! `ecs-agent export-go-state`: hands the host back to the Go agent 1.105
//! (docs/operations.md §12). It reads the configuration as the agent does,
//! opens this agent's checkpoint in `ECS_DATADIR` (which redb refuses while
//! the agent runs), builds the Go agent's buckets ([`super::export`]),
//! writes them as `agent.db`, and moves this agent's checkpoint aside, so
//! that this agent, started again later, takes the Go agent's state over
//! afresh instead of resuming its own stale one.
//!
//! A file already at `agent.db` (the Go agent's, left there by a take-over)
//! is renamed first, never overwritten. Every step prints one line.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::bolt::{self, BoltError};
use super::export::{self, CgroupSettings, Counts, ExportError, ExportSettings, ExportState};
use crate::config::{Config, ConfigError, Env};
use crate::exit::ExitCode;
use crate::store::{self, keys, Store, StoreError};

/// The Go agent's checkpoint file name, in the same data directory.
pub const GO_FILE_NAME: &str = "agent.db";

#[derive(Debug, thiserror::Error)]
pub enum HandbackError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("checkpointing is off (ECS_CHECKPOINT=false): this agent keeps no state to hand back")]
    CheckpointOff,
    #[error("no checkpoint of this agent in {}: nothing to hand back", .0.display())]
    NoCheckpoint(PathBuf),
    #[error("this agent's checkpoint is still {} (agent 0.1.0's name, and the Go agent's): start this agent once, which moves it to {}, stop it, and run export-go-state again", .0.display(), store::FILE_NAME)]
    OldLocation(PathBuf),
    #[error("an agent is running on this data directory; stop it first ({file} is in use)")]
    AgentRunning { file: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the state cannot be handed back: {0}")]
    Refused(#[source] ExportError),
    #[error(transparent)]
    Bolt(#[from] BoltError),
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("wrote {} but could not move this agent's checkpoint {} aside ({source}); move it away by hand before this agent starts again, or it resumes from it", written.display(), checkpoint.display())]
    CheckpointNotMoved {
        written: PathBuf,
        checkpoint: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl HandbackError {
    /// 5 for a state that cannot be handed back (as the agent's start-up
    /// refuses a bad checkpoint), 1 for everything that may work when run
    /// again (the agent stopped, a disk error gone).
    pub fn exit_code(&self) -> ExitCode {
        match self {
            HandbackError::Refused(e) if e.is_refusal() => ExitCode::Terminal,
            _ => ExitCode::Error,
        }
    }
}

/// The command-line entry point: the steps on stdout, the reason on stderr.
pub fn main() -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match run(&Env::from_process(), &mut stdout) {
        Ok(()) => ExitCode::Success,
        Err(e) => {
            let _ = stdout.flush();
            eprintln!("ecs-agent export-go-state: {e}");
            e.exit_code()
        }
    }
}

/// Runs the hand-back with the configuration `env` gives.
pub fn run(env: &Env, out: &mut dyn Write) -> Result<(), HandbackError> {
    let loaded = Config::load(env)?;
    for w in &loaded.warnings {
        eprintln!("warning: {w}");
    }
    let config = loaded.config;
    if !config.checkpoint {
        return Err(HandbackError::CheckpointOff);
    }
    let dir = config.data_dir.clone();
    let own = dir.join(store::FILE_NAME);
    // `Store::open` creates a missing checkpoint; there must be one already.
    if !own.exists() {
        let old = dir.join(store::OLD_FILE_NAME);
        if starts_with(&old, b"redb") {
            return Err(HandbackError::OldLocation(old));
        }
        return Err(HandbackError::NoCheckpoint(own));
    }
    let _ = writeln!(
        out,
        "configuration read: data directory {}, cluster {}",
        dir.display(),
        config.cluster_or_default()
    );

    let store = match Store::open(&dir) {
        Ok(s) => s,
        Err(e) if held_by_another_process(&e) => {
            return Err(HandbackError::AgentRunning {
                file: own.display().to_string(),
            })
        }
        Err(e) => return Err(e.into()),
    };
    let state = read_state(&store, &config)?;
    let _ = writeln!(
        out,
        "checkpoint {} read: {} task(s), {} image(s), {} report(s) not yet delivered",
        store.file(),
        state.tasks.len(),
        state.images.len(),
        state.outbox.len()
    );

    let buckets = export::to_go_buckets(&state).map_err(HandbackError::Refused)?;
    let counts = Counts::of(&buckets);
    let _ = writeln!(
        out,
        "Go agent state built: {} task(s), {} container(s), {} image(s)",
        counts.tasks, counts.containers, counts.images
    );

    let stamp = utc_stamp();
    let go_file = dir.join(GO_FILE_NAME);
    let kept = keep_existing(&go_file, &stamp)?;
    if let Some(kept) = &kept {
        let _ = writeln!(
            out,
            "kept the file already at {} as {}",
            go_file.display(),
            kept.display()
        );
    }
    if let Err(e) = bolt::write(&go_file, &buckets) {
        // Put back what was there, so a failed hand-back changes nothing.
        if let Some(kept) = &kept {
            let _ = std::fs::rename(kept, &go_file);
        }
        return Err(e.into());
    }
    let _ = writeln!(out, "wrote {}", go_file.display());

    // Moved while still open: the lock stays on the file, so no agent can
    // open it between the write above and this rename.
    let aside = free_name(&dir, &format!("{}.handed-back-{stamp}", store::FILE_NAME));
    std::fs::rename(&own, &aside)
        .and_then(|()| sync_dir(&dir))
        .map_err(|source| HandbackError::CheckpointNotMoved {
            written: go_file.clone(),
            checkpoint: own.clone(),
            source,
        })?;
    drop(store);
    let _ = writeln!(
        out,
        "moved this agent's checkpoint aside to {}",
        aside.display()
    );

    let running = state
        .tasks
        .iter()
        .filter(|t| t.known_status == crate::engine::status::TaskStatus::Running)
        .count();
    let _ = writeln!(
        out,
        "handed back: cluster {}, container instance {}, {} task(s) ({running} running), {} container(s), {} image(s); start the Go agent 1.105 on {} next (docs/operations.md §12)",
        state.cluster.as_deref().unwrap_or(""),
        state.container_instance_arn.as_deref().unwrap_or(""),
        counts.tasks,
        counts.containers,
        counts.images,
        dir.display()
    );
    Ok(())
}

/// redb refuses a database another process has open.
fn held_by_another_process(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::Open {
            source: redb::Error::DatabaseAlreadyOpen,
            ..
        } | StoreError::Database(redb::Error::DatabaseAlreadyOpen)
    )
}

fn read_state(store: &Store, config: &Config) -> Result<ExportState, HandbackError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| HandbackError::Io {
            what: "cannot start a runtime to read",
            path: PathBuf::from(store.file()),
            source,
        })?;
    let store = store.clone();
    let mut state = runtime.block_on(async move {
        Ok::<_, StoreError>(ExportState {
            cluster: store.get_meta(keys::CLUSTER).await?,
            container_instance_arn: store.get_meta(keys::CONTAINER_INSTANCE_ARN).await?,
            ec2_instance_id: store.get_meta(keys::EC2_INSTANCE_ID).await?,
            availability_zone: store.get_meta(keys::AVAILABILITY_ZONE).await?,
            latest_seq: store.latest_seq().await?,
            tasks: store.load_tasks().await?,
            images: store.load_images().await?,
            outbox: store.outbox().await?,
            settings: ExportSettings::default(),
        })
    })?;
    // The region containers were given: the configured one, else the one
    // the agent registered in (from the identity document), which the
    // instance ARN names.
    let region = config.aws_region.clone().unwrap_or_else(|| {
        state
            .container_instance_arn
            .as_deref()
            .and_then(|arn| arn.split(':').nth(3))
            .unwrap_or_default()
            .to_string()
    });
    state.settings = ExportSettings {
        region,
        configured_cluster: config.cluster_or_default().to_string(),
        cgroups: CgroupSettings {
            enabled: config.task_cpu_mem_limit.enabled_or(true),
            // As the Go agent decides: the unified hierarchy mounted at the
            // usual place.
            v2: Path::new("/sys/fs/cgroup/cgroup.controllers").exists(),
            mount_path: config.cgroup_path.clone(),
            cpu_period_us: u64::try_from(config.cgroup_cpu_period.0 / 1_000).unwrap_or(100_000),
            pids_limit: config.task_pids_limit,
        },
    };
    Ok(state)
}

/// Renames a file already at `path` out of the way; `None` when there is
/// none. Refuses while a Go agent holds it (it locks the file while it
/// runs): it would go on writing to the renamed file.
fn keep_existing(path: &Path, stamp: &str) -> Result<Option<PathBuf>, HandbackError> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(HandbackError::Io {
                what: "cannot open",
                path: path.to_owned(),
                source,
            })
        }
    };
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(BoltError::InUse(path.to_owned()).into())
        }
        Err(std::fs::TryLockError::Error(source)) => {
            return Err(HandbackError::Io {
                what: "cannot lock",
                path: path.to_owned(),
                source,
            })
        }
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let kept = free_name(dir, &format!("{name}.before-export-{stamp}"));
    std::fs::rename(path, &kept)
        .and_then(|()| sync_dir(dir))
        .map_err(|source| HandbackError::Io {
            what: "cannot rename",
            path: path.to_owned(),
            source,
        })?;
    Ok(Some(kept))
}

/// `dir/name`, or `dir/name.<n>` for the first `n` not taken: two runs in
/// the same second must not overwrite each other's kept files.
fn free_name(dir: &Path, name: &str) -> PathBuf {
    let first = dir.join(name);
    if !first.exists() {
        return first;
    }
    (1u32..)
        .map(|n| dir.join(format!("{name}.{n}")))
        .find(|p| !p.exists())
        .unwrap_or(first)
}

fn starts_with(path: &Path, magic: &[u8]) -> bool {
    use std::io::Read;
    let mut head = vec![0u8; magic.len()];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|()| head == magic)
}

/// Makes renames in `dir` survive a crash.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// The current UTC time as `YYYYMMDDTHHMMSSZ`, usable in a file name.
fn utc_stamp() -> String {
    let now = time::OffsetDateTime::now_utc();
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    now.format(&format)
        .unwrap_or_else(|_| now.unix_timestamp().to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn stamps_fit_in_file_names() {
        let s = utc_stamp();
        assert_eq!(s.len(), 16, "{s}");
        assert!(s.ends_with('Z') && s.as_bytes()[8] == b'T', "{s}");
    }

    #[test]
    fn free_names_never_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(free_name(dir.path(), "a"), dir.path().join("a"));
        std::fs::write(dir.path().join("a"), "").unwrap();
        assert_eq!(free_name(dir.path(), "a"), dir.path().join("a.1"));
    }

    #[test]
    fn only_refusals_of_the_state_are_terminal() {
        let refused = HandbackError::Refused(ExportError::NotRegistered);
        assert_eq!(refused.exit_code(), ExitCode::Terminal);
        let running = HandbackError::AgentRunning { file: "f".into() };
        assert_eq!(running.exit_code(), ExitCode::Error);
    }
}
