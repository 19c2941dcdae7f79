//! Image handling (docs/engine.md §10): engine-wide registry credentials,
//! pulls with the Go agent's retry and timeout rules, and the image manager
//! that tracks which containers use which image and removes unused ones.

pub mod auth;
pub mod manager;
pub mod pull;
pub mod shared_inspect;
pub mod state;

pub use auth::EngineAuth;
pub use manager::{
    CleanupReport, CleanupSettings, FailedPull, ImageManager, ImageSettings, PullDecision, Ready,
};
pub use pull::PullError;
pub use state::{ContainerRef, ImageRecord};

use crate::engine::status::ContainerStatus;
use crate::engine::task::Task;

/// Every container of `tasks` that got its image and is not cleaned up
/// yet, with that image: what the image manager's references are rebuilt
/// from after a restart.
pub fn image_users<'a>(tasks: impl IntoIterator<Item = &'a Task>) -> Vec<(String, ContainerRef)> {
    let mut uses = Vec::new();
    for task in tasks {
        for c in &task.containers {
            let pulled = c.docker_id.is_some()
                || (c.known_status >= ContainerStatus::Pulled
                    && c.known_status < ContainerStatus::Stopped);
            if pulled {
                uses.push((
                    c.spec.image.clone(),
                    ContainerRef::new(task.arn(), &c.spec.name),
                ));
            }
        }
    }
    uses
}
