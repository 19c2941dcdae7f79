//! Agent updates (`UpdateContainerAgent`, docs/protocols.md §4.9): the one
//! bundle the plane offers, served from its own port, and where each
//! container instance's update stands (`agentUpdateStatus`).
//!
//! The bundle is a file named at start (`--agent-update-bundle`); its
//! SHA-256 is computed then, and it is served at
//! `GET /agent-updates/<sha256>.tar`. The file must not change while the
//! plane runs: an agent that downloads other bytes nacks the stage.
//!
//! An update goes `PENDING` (accepted; waits for the agent's ACS
//! connection) → `STAGING` (`StageUpdateMessage` sent) → `STAGED` (acked)
//! → `UPDATING` (`PerformUpdateMessage` sent at once) → `UPDATED` once the
//! agent, having acked the perform and exited, connects again. A nack of
//! either message makes it `FAILED`. When the agent reconnects in the
//! middle, the stage is sent again (an agent that still holds the download
//! acks it as a duplicate, a restarted one downloads again), which is how
//! ECS "resumes where it stopped".

use crate::store::InstanceRecord;
use axum::body::Body;
use axum::extract::{Path as AxumPath, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Route of the bundle (axum syntax); the file is `<sha256>.tar`.
pub const ROUTE: &str = "/agent-updates/{file}";

/// Bytes read from the bundle at a time, when hashing and when serving.
const CHUNK: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("cannot read the agent update bundle {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The agent update the plane offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    path: PathBuf,
    sha256: String,
    size: u64,
}

impl Bundle {
    /// Reads `path` once to compute its SHA-256 (lowercase hex, what agents
    /// compare with the stage's `signature`).
    pub fn load(path: &Path) -> Result<Self, BundleError> {
        let read_error = |source| BundleError::Read {
            path: path.to_owned(),
            source,
        };
        let mut file = std::fs::File::open(path).map_err(read_error)?;
        let mut hash = Sha256::new();
        let mut buf = vec![0u8; CHUNK];
        let mut size = 0u64;
        loop {
            let n = file.read(&mut buf).map_err(read_error)?;
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
            size += n as u64;
        }
        Ok(Self {
            path: path.to_owned(),
            sha256: hex::encode(hash.finalize()),
            size,
        })
    }

    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The file name it is served under.
    pub fn file_name(&self) -> String {
        format!("{}.tar", self.sha256)
    }

    /// Its URL on this plane, for an agent that reaches the plane at
    /// `host` (the `Host` of its ACS connection).
    pub fn location(&self, host: &str) -> String {
        format!("http://{host}/agent-updates/{}", self.file_name())
    }
}

/// `agentUpdateStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum UpdateStatus {
    Pending,
    Staging,
    Staged,
    Updating,
    Updated,
    Failed,
}

impl UpdateStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            UpdateStatus::Pending => "PENDING",
            UpdateStatus::Staging => "STAGING",
            UpdateStatus::Staged => "STAGED",
            UpdateStatus::Updating => "UPDATING",
            UpdateStatus::Updated => "UPDATED",
            UpdateStatus::Failed => "FAILED",
        }
    }

    /// A new UpdateContainerAgent is refused in these.
    pub fn in_progress(self) -> bool {
        matches!(
            self,
            UpdateStatus::Pending
                | UpdateStatus::Staging
                | UpdateStatus::Staged
                | UpdateStatus::Updating
        )
    }
}

/// One instance's latest update, saved with the instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentUpdate {
    pub status: UpdateStatus,
    /// SHA-256 of the bundle it installs.
    pub bundle: String,
    /// The last `StageUpdateMessage` sent for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage_message_id: Option<String>,
    /// The `PerformUpdateMessage` sent for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub perform_message_id: Option<String>,
    /// The agent acked the perform, so it has exited to update.
    #[serde(default)]
    pub perform_acked: bool,
}

/// Why an update cannot start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The plane was started without a bundle.
    NoBundle,
    /// The instance's agent already runs the bundle.
    AlreadyUpdated,
    /// An update is under way.
    InProgress(UpdateStatus),
}

/// Starts an update of `record` to `bundle` (status `PENDING`).
pub fn start(record: &mut InstanceRecord, bundle: Option<&Bundle>) -> Result<(), Refusal> {
    let bundle = bundle.ok_or(Refusal::NoBundle)?;
    if let Some(current) = &record.agent_update {
        if current.status.in_progress() {
            return Err(Refusal::InProgress(current.status));
        }
        if current.status == UpdateStatus::Updated && current.bundle == bundle.sha256 {
            return Err(Refusal::AlreadyUpdated);
        }
    }
    record.agent_update = Some(AgentUpdate {
        status: UpdateStatus::Pending,
        bundle: bundle.sha256.clone(),
        stage_message_id: None,
        perform_message_id: None,
        perform_acked: false,
    });
    record.version = record.version.saturating_add(1);
    Ok(())
}

/// What a new ACS connection of the instance means for its update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnConnect {
    Nothing,
    /// Send (again) the stage.
    Stage,
    /// The agent came back after a performed update.
    Updated,
}

pub fn on_connect(update: Option<&AgentUpdate>) -> OnConnect {
    match update {
        Some(u) if u.status == UpdateStatus::Updating && u.perform_acked => OnConnect::Updated,
        // Not acked: the agent may never have got the perform.
        Some(u) if u.status.in_progress() => OnConnect::Stage,
        _ => OnConnect::Nothing,
    }
}

/// `GET /agent-updates/<sha256>.tar`: the bundle, read from its file in
/// chunks; 404 for any other name, or when the plane offers none.
pub(crate) async fn serve(
    State(ctx): State<Arc<crate::Context>>,
    AxumPath(file): AxumPath<String>,
) -> Response {
    let Some(bundle) = ctx.agent_update.as_ref().filter(|b| b.file_name() == file) else {
        return (StatusCode::NOT_FOUND, "no such agent update\n").into_response();
    };
    let opened = match tokio::fs::File::open(&bundle.path).await {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(path = %bundle.path.display(), error = %e, "cannot open the agent update bundle");
            return (StatusCode::INTERNAL_SERVER_ERROR, "bundle unreadable\n").into_response();
        }
    };
    tracing::info!(file, "serving the agent update bundle");
    let chunks = futures_util::stream::unfold(Some(opened), |file| async move {
        use tokio::io::AsyncReadExt;
        let mut file = file?;
        let mut buf = vec![0u8; CHUNK];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(axum::body::Bytes::from(buf)), Some(file)))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    (
        [
            (header::CONTENT_TYPE, "application/x-tar".to_owned()),
            (header::CONTENT_LENGTH, bundle.size.to_string()),
        ],
        Body::from_stream(chunks),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn record() -> InstanceRecord {
        serde_json::from_value(serde_json::json!({
            "id": "i1", "arn": "arn:aws:ecs:us-east-1:000000000000:container-instance/default/i1",
            "cluster": "default", "status": "ACTIVE", "registeredAt": 1.0, "version": 1
        }))
        .unwrap()
    }

    fn bundle(dir: &Path, bytes: &[u8]) -> Bundle {
        let path = dir.join("agent.tar");
        std::fs::write(&path, bytes).unwrap();
        Bundle::load(&path).unwrap()
    }

    #[test]
    fn a_bundle_is_named_and_located_by_its_sha256() {
        let dir = tempfile::tempdir().unwrap();
        let b = bundle(dir.path(), b"abc");
        assert_eq!(
            b.sha256(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(b.size(), 3);
        assert_eq!(
            b.location("127.0.0.1:8000"),
            format!("http://127.0.0.1:8000/agent-updates/{}.tar", b.sha256())
        );
        let missing = Bundle::load(&dir.path().join("nope.tar")).unwrap_err();
        assert!(missing.to_string().contains("nope.tar"), "{missing}");
    }

    #[test]
    fn updates_start_only_with_a_bundle_and_nothing_under_way() {
        let dir = tempfile::tempdir().unwrap();
        let b = bundle(dir.path(), b"v2");
        let mut r = record();
        assert_eq!(start(&mut r, None), Err(Refusal::NoBundle));
        assert_eq!(r.agent_update, None);

        start(&mut r, Some(&b)).unwrap();
        let update = r.agent_update.clone().unwrap();
        assert_eq!(update.status, UpdateStatus::Pending);
        assert_eq!(update.bundle, b.sha256());
        assert_eq!(r.version, 2);
        for status in [
            UpdateStatus::Pending,
            UpdateStatus::Staging,
            UpdateStatus::Staged,
            UpdateStatus::Updating,
        ] {
            r.agent_update.as_mut().unwrap().status = status;
            assert_eq!(start(&mut r, Some(&b)), Err(Refusal::InProgress(status)));
        }
        // A failed update may be tried again.
        r.agent_update.as_mut().unwrap().status = UpdateStatus::Failed;
        start(&mut r, Some(&b)).unwrap();
        // An agent updated to this bundle has nothing to update to; to
        // another bundle it has.
        r.agent_update.as_mut().unwrap().status = UpdateStatus::Updated;
        assert_eq!(start(&mut r, Some(&b)), Err(Refusal::AlreadyUpdated));
        let other = bundle(dir.path(), b"v3");
        start(&mut r, Some(&other)).unwrap();
        assert_eq!(r.agent_update.unwrap().bundle, other.sha256());
    }

    #[test]
    fn a_connection_resumes_or_completes_the_update() {
        let update = |status, perform_acked| AgentUpdate {
            status,
            bundle: "x".into(),
            stage_message_id: None,
            perform_message_id: None,
            perform_acked,
        };
        assert_eq!(on_connect(None), OnConnect::Nothing);
        assert_eq!(
            on_connect(Some(&update(UpdateStatus::Updating, true))),
            OnConnect::Updated
        );
        for status in [
            UpdateStatus::Pending,
            UpdateStatus::Staging,
            UpdateStatus::Staged,
        ] {
            assert_eq!(on_connect(Some(&update(status, false))), OnConnect::Stage);
        }
        assert_eq!(
            on_connect(Some(&update(UpdateStatus::Updating, false))),
            OnConnect::Stage
        );
        for status in [UpdateStatus::Updated, UpdateStatus::Failed] {
            assert_eq!(on_connect(Some(&update(status, false))), OnConnect::Nothing);
        }
    }

    #[test]
    fn status_names_are_the_api_values() {
        for s in [
            UpdateStatus::Pending,
            UpdateStatus::Staging,
            UpdateStatus::Staged,
            UpdateStatus::Updating,
            UpdateStatus::Updated,
            UpdateStatus::Failed,
        ] {
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                serde_json::json!(s.as_str())
            );
        }
    }
}
