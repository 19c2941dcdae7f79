//! Starting on a data directory where the Go agent ran
//! (docs/operations.md §11): its `agent.db` is read, never written, and
//! this agent's own checkpoint is created from it in one step.

use std::path::Path;

use super::bolt::{self, BoltError};
use super::import::{self, Refusal, Summary};
use crate::store::{Store, StoreError, OLD_FILE_NAME};

#[derive(Debug, thiserror::Error)]
pub enum TakeoverError {
    #[error("the Go ECS agent's checkpoint {file} is in use: stop the Go agent before starting this one")]
    InUse { file: String },
    #[error("the Go ECS agent's checkpoint {file} cannot be read ({source}); it was left as it is. Keep the Go agent on this host, or drain the instance and move the file away to start afresh")]
    Unreadable { file: String, source: BoltError },
    #[error("the Go ECS agent's state in {file} cannot be taken over: {refusal}. Nothing was changed: keep the Go agent on this host, or drain the instance first and move the file away")]
    Refused { file: String, refusal: Refusal },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl TakeoverError {
    /// Only a Go agent still running is worth trying again: the rest will
    /// not change by itself.
    pub fn is_retryable(&self) -> bool {
        matches!(self, TakeoverError::InUse { .. })
    }
}

/// Whether `dir` holds the Go agent's checkpoint.
pub fn go_state_in(dir: &Path) -> bool {
    crate::store::is_bbolt(&dir.join(OLD_FILE_NAME))
}

/// Takes the Go agent's state in `dir` over: reads its `agent.db`
/// read-only, checks that this agent can carry all of it for `cluster`,
/// and creates this agent's checkpoint holding it.
pub fn take_over(dir: &Path, cluster: &str) -> Result<(Store, Summary), TakeoverError> {
    let path = dir.join(OLD_FILE_NAME);
    let file = path.display().to_string();
    let buckets = bolt::read(&path).map_err(|source| match source {
        BoltError::InUse(_) => TakeoverError::InUse { file: file.clone() },
        source => TakeoverError::Unreadable {
            file: file.clone(),
            source,
        },
    })?;
    let imported = import::import(&buckets, cluster).map_err(|refusal| TakeoverError::Refused {
        file: file.clone(),
        refusal,
    })?;
    let store = Store::create_seeded(dir, imported.seed)?;
    Ok((store, imported.summary))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::store::{keys, FILE_NAME};

    /// A data directory holding a copy of the fixture's `agent.db`.
    fn go_data_dir() -> Option<tempfile::TempDir> {
        let spec = ecs_model::spec::require_or_skip("Go agent state fixture")?;
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(
            spec.join("samples/go-agent-state/agent.db"),
            dir.path().join(OLD_FILE_NAME),
        )
        .unwrap();
        Some(dir)
    }

    #[tokio::test]
    async fn the_checkpoint_is_made_from_the_go_state_which_stays_as_it_was() {
        let Some(dir) = go_data_dir() else { return };
        let before = std::fs::read(dir.path().join(OLD_FILE_NAME)).unwrap();
        assert!(go_state_in(dir.path()));
        let (store, summary) = take_over(dir.path(), "takeover").unwrap();
        assert_eq!(summary.tasks, 3);
        assert_eq!(store.load_tasks().await.unwrap().len(), 3);
        assert_eq!(store.load_images().await.unwrap().len(), 1);
        assert_eq!(
            store.get_meta(keys::CLUSTER).await.unwrap().as_deref(),
            Some("takeover")
        );
        assert_eq!(
            std::fs::read(dir.path().join(OLD_FILE_NAME)).unwrap(),
            before
        );
        assert!(dir.path().join(FILE_NAME).exists());
    }

    #[test]
    fn a_refused_take_over_changes_nothing() {
        let Some(dir) = go_data_dir() else { return };
        let before = std::fs::read(dir.path().join(OLD_FILE_NAME)).unwrap();
        let err = take_over(dir.path(), "default").unwrap_err();
        assert!(!err.is_retryable());
        let text = err.to_string();
        assert!(
            text.contains(&dir.path().join(OLD_FILE_NAME).display().to_string()),
            "{text}"
        );
        assert!(text.contains("Nothing was changed"), "{text}");
        assert_eq!(
            std::fs::read(dir.path().join(OLD_FILE_NAME)).unwrap(),
            before
        );
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, [std::ffi::OsString::from(OLD_FILE_NAME)]);
    }

    #[test]
    fn a_go_agent_still_running_is_waited_for_not_refused() {
        let Some(dir) = go_data_dir() else { return };
        let held = std::fs::File::open(dir.path().join(OLD_FILE_NAME)).unwrap();
        held.lock().unwrap();
        let err = take_over(dir.path(), "takeover").unwrap_err();
        assert!(err.is_retryable(), "{err}");
        assert!(err.to_string().contains("stop the Go agent"), "{err}");
        assert!(!dir.path().join(FILE_NAME).exists());
    }
}
