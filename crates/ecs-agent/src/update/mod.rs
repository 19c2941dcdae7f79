//! Agent self-update through ACS (docs/protocols.md §4.9): a
//! `StageUpdateMessage` downloads and checks a new agent tarball and names
//! it in `desired-image`; a `PerformUpdateMessage` then ends the process
//! with exit code 42, and the supervisor (ecs-init) loads the tarball and
//! starts the new agent.
//!
//! One deliberate difference from the Go agent: the download does not run
//! inside the ACS read loop. It runs in a task of its own and its ack or
//! nack is queued for the ACS session, so heartbeats, payloads and
//! credentials keep flowing during a slow download and the inactivity timer
//! never fires because of it. What follows from that:
//!
//! * a stage with the signature being downloaded is answered when that
//!   download ends, with its answer (the Go agent, busy downloading, would
//!   only have read it then);
//! * a stage with another signature aborts the running download (its file
//!   is removed), nacks it with `New update arrived: <id>` and starts over;
//! * a perform that arrives while the download runs is nacked as not
//!   downloaded.

mod download;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use ecs_model::acs::{
    AckRequest, AcsMessage, NackRequest, PerformUpdateMessage, StageUpdateMessage, UpdateInfo,
};
use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;

pub use download::{DownloadError, Downloader, DOWNLOAD_TIMEOUT, TARBALL_SUFFIX};

/// Where tarballs go when `ECS_UPDATE_DOWNLOAD_DIR` is unset: the directory
/// ecs-init always sets, and reads `desired-image` from. (The Go agent's
/// own default is empty, the working directory, which ecs-init never reads.)
pub const DEFAULT_DOWNLOAD_DIR: &str = "/var/cache/ecs";

/// The file naming the tarball to load, in the download directory.
pub const DESIRED_IMAGE_FILE: &str = "desired-image";

/// Nack reasons, as the Go agent words them (the backend may match them).
pub const REASON_DISABLED: &str = "Updates are disabled";
pub const REASON_NOT_DOWNLOADED: &str = "Cannot perform update; update not downloaded";

/// What the updater is configured with.
#[derive(Debug, Clone)]
pub struct UpdateSettings {
    /// `ECS_UPDATES_ENABLED`.
    pub enabled: bool,
    /// `ECS_UPDATE_DOWNLOAD_DIR`, else [`DEFAULT_DOWNLOAD_DIR`].
    pub download_dir: PathBuf,
}

impl UpdateSettings {
    pub fn from_config(config: &crate::config::Config) -> Self {
        Self {
            enabled: config.updates_enabled,
            download_dir: PathBuf::from(
                config
                    .update_download_dir
                    .as_deref()
                    .filter(|d| !d.is_empty())
                    .unwrap_or(DEFAULT_DOWNLOAD_DIR),
            ),
        }
    }
}

/// How a performed update ends the process: the same orderly stop as
/// SIGTERM (engine settled, state saved, tasks left running), remembered
/// so that `agent::run` returns exit code 42 instead of 0.
#[derive(Clone)]
pub struct UpdateExit {
    stop: Arc<watch::Sender<bool>>,
    requested: Arc<AtomicBool>,
}

impl UpdateExit {
    /// `stop` is the agent's shutdown switch, the one signals turn on.
    pub fn new(stop: Arc<watch::Sender<bool>>) -> Self {
        Self {
            stop,
            requested: Arc::default(),
        }
    }

    fn request(&self) {
        self.requested.store(true, Ordering::SeqCst);
        self.stop.send_replace(true);
    }

    /// Whether a performed update asked the process to end.
    pub fn requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }
}

/// Who an answer goes to: the message's id, with its cluster and instance
/// echoed back.
#[derive(Debug, Clone, PartialEq)]
struct ReplyTo {
    cluster: Option<String>,
    container_instance: Option<String>,
    message_id: String,
}

impl ReplyTo {
    /// `None` without a `messageId`: such a message gets no answer.
    fn of(
        message_id: Option<String>,
        cluster: Option<String>,
        container_instance: Option<String>,
    ) -> Option<Self> {
        Some(Self {
            message_id: message_id?,
            cluster,
            container_instance,
        })
    }

    fn ack(&self) -> AcsMessage {
        AcsMessage::AckRequest(AckRequest {
            cluster: self.cluster.clone(),
            container_instance: self.container_instance.clone(),
            message_id: Some(self.message_id.clone()),
        })
    }

    fn nack(&self, reason: &str) -> AcsMessage {
        AcsMessage::NackRequest(NackRequest {
            cluster: self.cluster.clone(),
            container_instance: self.container_instance.clone(),
            message_id: Some(self.message_id.clone()),
            reason: Some(reason.to_string()),
        })
    }
}

/// Where the one update the agent knows of stands.
#[derive(Debug, Default)]
enum Stage {
    #[default]
    None,
    Downloading {
        signature: String,
        message: ReplyTo,
        /// Stages with the same signature that arrived meanwhile; they get
        /// the same answer.
        duplicates: Vec<ReplyTo>,
        generation: u64,
        task: AbortHandle,
    },
    Downloaded {
        signature: String,
        message: ReplyTo,
    },
}

#[derive(Debug, Default)]
struct State {
    stage: Stage,
    /// Numbers downloads, so a finished one that was superseded in the
    /// meantime changes nothing.
    generation: u64,
}

/// Handles `StageUpdateMessage` and `PerformUpdateMessage`. Answers go to
/// `replies`, which the ACS session sends on the live connection (or the
/// next one, if none is up when a download ends).
pub struct Updater {
    settings: UpdateSettings,
    downloader: Downloader,
    replies: mpsc::UnboundedSender<AcsMessage>,
    exit: UpdateExit,
    state: Mutex<State>,
}

impl Updater {
    pub fn new(
        settings: UpdateSettings,
        downloader: Downloader,
        replies: mpsc::UnboundedSender<AcsMessage>,
        exit: UpdateExit,
    ) -> Self {
        Self {
            settings,
            downloader,
            replies,
            exit,
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change below is a single assignment: a panic cannot leave
        // half of one behind.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn reply(&self, message: AcsMessage) {
        let _ = self.replies.send(message);
    }

    /// Phase one: download and check the tarball, then ack; or nack. Never
    /// waits: the download runs in its own task.
    pub fn stage(self: &Arc<Self>, message: StageUpdateMessage) {
        let Some(reply_to) = ReplyTo::of(
            message.message_id,
            message.cluster_arn,
            message.container_instance_arn,
        ) else {
            tracing::error!("ignoring a StageUpdateMessage without messageId");
            return;
        };
        if !self.settings.enabled {
            tracing::warn!(
                message_id = reply_to.message_id,
                "Nacking StageUpdate: updates are disabled (ECS_UPDATES_ENABLED)"
            );
            self.reply(reply_to.nack(REASON_DISABLED));
            return;
        }
        let mut state = self.lock();
        let (location, signature) = match validate(message.update_info) {
            Ok(v) => v,
            Err(why) => {
                // As in the Go agent, an invalid stage also forgets the
                // update in progress.
                self.supersede(&mut state, &reply_to.message_id);
                let reason = format!("Invalid update: {why}");
                tracing::warn!(
                    message_id = reply_to.message_id,
                    reason,
                    "Nacking StageUpdate"
                );
                self.reply(reply_to.nack(&reason));
                return;
            }
        };
        match &mut state.stage {
            Stage::Downloading {
                signature: current,
                duplicates,
                ..
            } if *current == signature => {
                tracing::info!(
                    message_id = reply_to.message_id,
                    "update already downloading; this stage is answered when it ends"
                );
                duplicates.push(reply_to);
                return;
            }
            Stage::Downloaded {
                signature: current, ..
            } if *current == signature => {
                tracing::info!(
                    message_id = reply_to.message_id,
                    "update already staged; acking the duplicate stage"
                );
                self.reply(reply_to.ack());
                return;
            }
            _ => {}
        }
        self.supersede(&mut state, &reply_to.message_id);
        state.generation += 1;
        let generation = state.generation;
        tracing::info!(
            message_id = reply_to.message_id,
            location,
            signature,
            dir = %self.settings.download_dir.display(),
            "staging an agent update"
        );
        let this = self.clone();
        let task = {
            let signature = signature.clone();
            tokio::spawn(async move {
                let result = this
                    .downloader
                    .fetch(&location, &signature, &this.settings.download_dir)
                    .await;
                this.downloaded(generation, result);
            })
        };
        // The task cannot reach `downloaded` before this is stored: it
        // needs the lock held here.
        state.stage = Stage::Downloading {
            signature,
            message: reply_to,
            duplicates: Vec::new(),
            generation,
            task: task.abort_handle(),
        };
    }

    /// Forgets the update in progress, if any, nacking its stage message
    /// because `new_id` arrived; a running download is aborted and its
    /// file removed.
    fn supersede(&self, state: &mut State, new_id: &str) {
        let reason = format!("New update arrived: {new_id}");
        match std::mem::take(&mut state.stage) {
            Stage::None => {}
            Stage::Downloading {
                message,
                duplicates,
                task,
                ..
            } => {
                task.abort();
                tracing::info!(
                    message_id = message.message_id,
                    new_id,
                    "abandoning the update being downloaded"
                );
                for m in std::iter::once(message).chain(duplicates) {
                    self.reply(m.nack(&reason));
                }
            }
            Stage::Downloaded { message, .. } => {
                tracing::info!(
                    message_id = message.message_id,
                    new_id,
                    "forgetting the staged update"
                );
                self.reply(message.nack(&reason));
            }
        }
    }

    /// The end of download number `generation`.
    fn downloaded(&self, generation: u64, result: Result<PathBuf, DownloadError>) {
        let mut state = self.lock();
        let current = matches!(
            &state.stage,
            Stage::Downloading { generation: g, .. } if *g == generation
        );
        if !current {
            // Superseded while it finished: its tarball is nobody's.
            if let Ok(tarball) = result {
                let _ = std::fs::remove_file(tarball);
            }
            return;
        }
        let Stage::Downloading {
            signature,
            message,
            duplicates,
            ..
        } = std::mem::take(&mut state.stage)
        else {
            return;
        };
        // Written under the lock, so a superseded download can never
        // overwrite the name a newer one wrote. A few bytes, on local disk.
        let staged = result.and_then(|tarball| {
            write_desired_image(&self.settings.download_dir, &tarball).inspect_err(|_| {
                let _ = std::fs::remove_file(&tarball);
            })
        });
        match staged {
            Ok(name) => {
                tracing::info!(
                    message_id = message.message_id,
                    tarball = name,
                    "agent update downloaded and staged"
                );
                for m in std::iter::once(&message).chain(&duplicates) {
                    self.reply(m.ack());
                }
                state.stage = Stage::Downloaded { signature, message };
            }
            Err(e) => {
                let reason = format!("Unable to download: {e}");
                tracing::error!(
                    message_id = message.message_id,
                    reason,
                    "Nacking StageUpdate"
                );
                for m in std::iter::once(&message).chain(&duplicates) {
                    self.reply(m.nack(&reason));
                }
            }
        }
    }

    /// Phase two: with an update fully staged, ack and end the process
    /// with exit code 42 (through the orderly shutdown, see
    /// [`UpdateExit`]); otherwise nack.
    pub fn perform(&self, message: PerformUpdateMessage) {
        let Some(reply_to) = ReplyTo::of(
            message.message_id,
            message.cluster_arn,
            message.container_instance_arn,
        ) else {
            tracing::error!("ignoring a PerformUpdateMessage without messageId");
            return;
        };
        if !self.settings.enabled {
            tracing::warn!(
                message_id = reply_to.message_id,
                "Nacking PerformUpdate: updates are disabled (ECS_UPDATES_ENABLED)"
            );
            self.reply(reply_to.nack(REASON_DISABLED));
            return;
        }
        let state = self.lock();
        if !matches!(state.stage, Stage::Downloaded { .. }) {
            tracing::warn!(
                message_id = reply_to.message_id,
                "Nacking PerformUpdate: no update is downloaded"
            );
            self.reply(reply_to.nack(REASON_NOT_DOWNLOADED));
            return;
        }
        // The ack is queued before the stop: the ACS session sends what is
        // queued before it closes.
        self.reply(reply_to.ack());
        tracing::info!(
            message_id = reply_to.message_id,
            "performing the agent update: saving state and exiting with code 42"
        );
        self.exit.request();
    }
}

/// `location` and `signature` of a stage, or why it is invalid.
fn validate(info: Option<UpdateInfo>) -> Result<(String, String), &'static str> {
    let info = info.ok_or("no update info given")?;
    let location = info.location.ok_or("no location given")?;
    let signature = info.signature.ok_or("no signature given")?;
    Ok((location, signature))
}

/// Writes `desired-image` next to `tarball`: its base name and a newline.
/// Returns the name.
fn write_desired_image(dir: &Path, tarball: &Path) -> Result<String, DownloadError> {
    let name = tarball
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let path = dir.join(DESIRED_IMAGE_FILE);
    std::fs::write(&path, format!("{name}\n"))
        .map_err(|source| DownloadError::File { path, source })?;
    Ok(name)
}
