//! The image manager (docs/engine.md §10.1, §10.3, §10.5, §10.6): decides
//! whether an image must be pulled, pulls it with the registry login the
//! payload asks for (docs/aws-services.md §2) or else the engine-wide
//! credentials, tracks which containers use which image (saving every
//! change), and removes images no task uses any more, periodically.
//!
//! Pulls and cleanup never overlap: pulls hold a read lock while they pull
//! and record their container's reference, a cleanup cycle holds the write
//! lock, so an image is never removed between its pull and its use.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{OwnedRwLockReadGuard, RwLock};
use tokio::task::JoinHandle;

use super::auth::EngineAuth;
use super::pull::{self, PullError};
use super::shared_inspect::{Inspected, SharedInspects};
use super::state::{Change, CleanupRules, ContainerRef, ImageRecord, ImageTable};
use crate::config::{Config, ImagePullBehavior};
use crate::docker::{DockerApi, DockerError, ImageInfo, RegistryAuth};
use crate::engine::now_ms;
use crate::store::{Store, StoreError};

/// Images the Go agent never removes, whatever the configured list says.
const ALWAYS_EXCLUDED: [&str; 2] = [
    "amazon/amazon-ecs-pause:0.1.0",
    "amazon/amazon-ecs-agent:latest",
];

/// How images are pulled and cleaned up, fixed for the agent's lifetime.
#[derive(Debug, Clone)]
pub struct ImageSettings {
    pub pull_behavior: ImagePullBehavior,
    /// Every attempt of one pull together.
    pub pull_timeout: Duration,
    /// No progress for this long cancels an attempt.
    pub pull_inactivity_timeout: Duration,
    /// `None` when cleanup is off.
    pub cleanup: Option<CleanupSettings>,
}

#[derive(Debug, Clone)]
pub struct CleanupSettings {
    /// Time between cycles; the first runs one interval after start-up.
    pub interval: Duration,
    pub minimum_age: Duration,
    pub images_per_cycle: usize,
    pub exclusions: Vec<String>,
}

impl ImageSettings {
    /// From the agent's configuration: cleanup is off when
    /// `ECS_DISABLE_IMAGE_CLEANUP` is set or under `prefer-cached` (the
    /// cache is the point there).
    pub fn from_config(config: &Config) -> Self {
        let cleanup_off = config.image_cleanup_disabled
            || config.image_pull_behavior == ImagePullBehavior::PreferCached;
        let mut exclusions: Vec<String> = config
            .image_cleanup_exclusion_list
            .iter()
            .filter(|e| !e.is_empty())
            .cloned()
            .collect();
        exclusions.extend(ALWAYS_EXCLUDED.iter().map(|e| e.to_string()));
        Self {
            pull_behavior: config.image_pull_behavior,
            pull_timeout: config.image_pull_timeout.to_std(),
            pull_inactivity_timeout: config.image_pull_inactivity_timeout.to_std(),
            cleanup: (!cleanup_off).then(|| CleanupSettings {
                interval: config.image_cleanup_interval.to_std(),
                minimum_age: config.minimum_image_deletion_age.to_std(),
                images_per_cycle: usize::try_from(config.num_images_to_delete_per_cycle)
                    .unwrap_or(usize::MAX)
                    .max(1),
                exclusions,
            }),
        }
    }
}

/// What [`ImageManager::pull_decision`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullDecision {
    pub required: bool,
    /// The local image, when it is known and no pull is required (a pull
    /// makes it out of date).
    pub local: Option<ImageInfo>,
}

impl PullDecision {
    const PULL: PullDecision = PullDecision {
        required: true,
        local: None,
    };
}

/// An image made available by [`ImageManager::pull_for`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ready {
    /// When the pull started; `None` when no pull was needed.
    pub pull_started_ms: Option<i64>,
    /// The image as Docker has it afterwards (`None` if it could not be
    /// inspected).
    pub image: Option<ImageInfo>,
}

/// A pull that was made and failed, with when it began.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct FailedPull {
    pub started_ms: i64,
    pub error: PullError,
}

/// What one cleanup cycle did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CleanupReport {
    /// Names (or IDs) removed from Docker, in order.
    pub removed: Vec<String>,
    /// Images Docker refused to remove; they are tried again next cycle.
    pub failed: Vec<String>,
}

/// A handle on the one image manager; clones share it.
#[derive(Clone)]
pub struct ImageManager {
    inner: Arc<Inner>,
}

struct Inner {
    docker: Arc<dyn DockerApi>,
    store: Store,
    /// Taken before a table change and held until it is saved, so changes
    /// reach the store in the order they were made.
    save_order: tokio::sync::Mutex<()>,
    settings: ImageSettings,
    auth: EngineAuth,
    table: Mutex<ImageTable>,
    pull_lock: Arc<RwLock<()>>,
    inspects: SharedInspects,
}

impl fmt::Debug for ImageManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImageManager")
            .field("settings", &self.inner.settings)
            .field("auth", &self.inner.auth)
            .finish_non_exhaustive()
    }
}

impl ImageManager {
    /// Loads the saved image states; container references start empty
    /// until [`ImageManager::restore_references`].
    pub async fn new(
        docker: Arc<dyn DockerApi>,
        store: Store,
        settings: ImageSettings,
        auth: EngineAuth,
    ) -> Result<Self, StoreError> {
        let records = store.load_images().await?;
        Ok(Self {
            inner: Arc::new(Inner {
                docker,
                store,
                save_order: tokio::sync::Mutex::new(()),
                settings,
                auth,
                table: Mutex::new(ImageTable::from_records(records)),
                pull_lock: Arc::new(RwLock::new(())),
                inspects: SharedInspects::default(),
            }),
        })
    }

    pub fn settings(&self) -> &ImageSettings {
        &self.inner.settings
    }

    /// Whether `image` must be pulled under the configured behaviour
    /// (docs/engine.md §10.1).
    pub async fn pull_required(&self, image: &str) -> bool {
        self.pull_decision(image, None).await.required
    }

    /// Whether `image` must be pulled, with the local image when it is
    /// known: `known` (what a step just before found), or what finding out
    /// took an inspect for (under `prefer-cached`), so that callers need
    /// not ask Docker again.
    pub async fn pull_decision(&self, image: &str, known: Option<ImageInfo>) -> PullDecision {
        match self.inner.settings.pull_behavior {
            ImagePullBehavior::Default | ImagePullBehavior::Always => PullDecision::PULL,
            ImagePullBehavior::Once if !self.table().pull_succeeded(image) => PullDecision::PULL,
            ImagePullBehavior::Once => PullDecision {
                required: false,
                local: known,
            },
            ImagePullBehavior::PreferCached if known.is_some() => PullDecision {
                required: false,
                local: known,
            },
            ImagePullBehavior::PreferCached => match self.local_image(image).await {
                Ok(Some(info)) => PullDecision {
                    required: false,
                    local: Some(info),
                },
                _ => PullDecision::PULL,
            },
        }
    }

    /// The local image, from an inspect of it already in flight when there
    /// is one (a burst's tasks share it).
    pub async fn local_image(&self, image: &str) -> Inspected {
        self.inner
            .inspects
            .inspect(&*self.inner.docker, image)
            .await
    }

    /// Makes `image` available to `user`: pulls it when the behaviour
    /// requires, then records that `user` uses it. Says when the pull
    /// started (`None` when no pull was needed); a failed pull says when it
    /// started too, since the task reports its pull times either way. After
    /// a failed pull the cached image, if any, is still recorded, since
    /// under `default` the container goes on to use it. `known` is the
    /// local image as the step before found it, if it inspected it.
    pub async fn pull_for(
        &self,
        image: &str,
        user: &ContainerRef,
        known: Option<ImageInfo>,
        login: impl std::future::Future<Output = Result<Option<RegistryAuth>, PullError>>,
    ) -> Result<Ready, FailedPull> {
        let _permit = self.pull_permit().await;
        let decision = self.pull_decision(image, known).await;
        let mut result = Ok(None);
        if decision.required {
            let started = now_ms();
            result = match login.await {
                Ok(auth) => {
                    let auth = auth.or_else(|| self.inner.auth.lookup(image));
                    let (docker, settings) = (&self.inner.docker, &self.inner.settings);
                    tracing::info!(image, credentials = auth.is_some(), "pulling image");
                    pull::with_retries(image, settings.pull_timeout, || {
                        docker.pull_image(
                            image,
                            auth.clone(),
                            settings.pull_inactivity_timeout,
                            settings.pull_timeout,
                        )
                    })
                    .await
                }
                Err(error) => Err(error),
            }
            .map(|()| Some(started))
            .map_err(|error| FailedPull {
                started_ms: started,
                error,
            });
        }
        let pulled = matches!(result, Ok(Some(_)));
        let local = match decision.local {
            Some(info) => Ok(Some(info)),
            None => self.inner.docker.inspect_image(image).await,
        };
        let local = match local {
            Ok(Some(info)) => {
                self.record_inspected(image, &info, user, pulled).await;
                Some(info)
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(image, error = %e, "could not record the image's use");
                None
            }
        };
        result.map(|pull_started_ms| Ready {
            pull_started_ms,
            image: local,
        })
    }

    /// Records that `user` uses `image` (`pulled`: it was just pulled
    /// successfully). Returns false when Docker has no such image.
    pub async fn record_reference(
        &self,
        image: &str,
        user: &ContainerRef,
        pulled: bool,
    ) -> Result<bool, DockerError> {
        let Some(info) = self.inner.docker.inspect_image(image).await? else {
            return Ok(false);
        };
        self.record_inspected(image, &info, user, pulled).await;
        Ok(true)
    }

    async fn record_inspected(
        &self,
        image: &str,
        info: &ImageInfo,
        user: &ContainerRef,
        pulled: bool,
    ) {
        self.apply(|table| {
            table.add_reference(image, &info.id, info.size, user.clone(), pulled, now_ms())
        })
        .await;
    }

    /// `user` no longer uses any image (its task was cleaned up).
    pub async fn remove_reference(&self, user: &ContainerRef) {
        self.apply(|table| table.remove_reference(user, now_ms()))
            .await;
    }

    /// Rebuilds the container references after a restart from the
    /// engine's tasks (`(image, container)` for every container that got
    /// its image).
    pub async fn restore_references(&self, uses: Vec<(String, ContainerRef)>) {
        for (image, user) in uses {
            match self.record_reference(&image, &user, false).await {
                Ok(true) => {}
                Ok(false) => tracing::debug!(image, "image of a known container is gone"),
                Err(e) => tracing::warn!(image, error = %e, "could not restore the image's use"),
            }
        }
    }

    /// Holds off cleanup while the caller pulls or is about to use an
    /// image; pulls through [`ImageManager::pull_for`] hold one already.
    pub async fn pull_permit(&self) -> OwnedRwLockReadGuard<()> {
        self.inner.pull_lock.clone().read_owned().await
    }

    /// The tracked images with the containers using each, for the local
    /// endpoints and tests.
    pub fn tracked(&self) -> Vec<(ImageRecord, Vec<ContainerRef>)> {
        self.table()
            .states()
            .map(|s| (s.record.clone(), s.users.iter().cloned().collect()))
            .collect()
    }

    /// One cleanup cycle (docs/engine.md §10.6), waiting for running pulls
    /// to finish first. Does nothing when cleanup is off.
    pub async fn cleanup_once(&self) -> CleanupReport {
        let mut report = CleanupReport::default();
        let Some(settings) = &self.inner.settings.cleanup else {
            return report;
        };
        let _exclusive = self.inner.pull_lock.write().await;
        let rules = CleanupRules {
            minimum_age_ms: i64::try_from(settings.minimum_age.as_millis()).unwrap_or(i64::MAX),
            exclusions: settings.exclusions.clone(),
        };
        let mut skip = BTreeSet::new();
        for _ in 0..settings.images_per_cycle {
            let Some((id, targets)) = self.table().next_candidate(now_ms(), &rules, &skip) else {
                break;
            };
            for target in targets {
                match self.inner.docker.remove_image(&target).await {
                    Ok(()) => tracing::info!(image = target, image_id = id, "image removed"),
                    Err(e) if e.is_not_found() => {
                        tracing::info!(image = target, "image was already removed");
                    }
                    Err(e) => {
                        tracing::warn!(image = target, error = %e, "removing image failed");
                        report.failed.push(id.clone());
                        break;
                    }
                }
                self.apply(|table| table.forget(&id, &target).into_iter().collect())
                    .await;
                report.removed.push(target);
            }
            // Whatever happened, one image is looked at once per cycle.
            skip.insert(id);
        }
        report
    }

    /// Runs [`ImageManager::cleanup_once`] every interval; `None` when
    /// cleanup is off.
    pub fn spawn_periodic_cleanup(&self) -> Option<JoinHandle<()>> {
        let Some(settings) = &self.inner.settings.cleanup else {
            if self.inner.settings.pull_behavior == ImagePullBehavior::PreferCached {
                tracing::info!("Pull behavior is set to always use cache. Disabling cleanup");
            } else {
                tracing::info!("Image cleanup is disabled");
            }
            return None;
        };
        let interval = settings.interval;
        let manager = self.clone();
        Some(tokio::spawn(async move {
            let mut ticker =
                tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let report = manager.cleanup_once().await;
                tracing::info!(removed = ?report.removed, failed = ?report.failed, "image cleanup cycle done");
            }
        }))
    }

    fn table(&self) -> MutexGuard<'_, ImageTable> {
        // A panic while holding the lock leaves a table that is still
        // consistent (every change is applied in one step), so go on.
        self.inner
            .table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Changes the table with `f` and saves what changed in one
    /// transaction, before any later change is saved.
    async fn apply(&self, f: impl FnOnce(&mut ImageTable) -> Vec<Change>) {
        let _order = self.inner.save_order.lock().await;
        let changes = f(&mut self.table());
        if changes.is_empty() {
            return;
        }
        let mut put = Vec::new();
        let mut delete = Vec::new();
        for change in changes {
            match change {
                Change::Put(record) => put.push(record),
                Change::Delete(id) => delete.push(id),
            }
        }
        if let Err(e) = self.inner.store.save_images(put, delete).await {
            // Memory stays right; the next change to the image saves it.
            tracing::error!(error = %e, "saving image state failed");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::{Env, FileConfig};

    fn config(env: &[(&str, &str)]) -> Config {
        Config::from_sources(
            &Env::from_pairs(env.iter().copied()),
            &FileConfig::parse("").unwrap(),
            Some((32768, 60999)),
        )
        .unwrap()
        .config
    }

    #[test]
    fn settings_follow_the_configuration() {
        let s = ImageSettings::from_config(&config(&[
            ("ECS_IMAGE_PULL_BEHAVIOR", "once"),
            ("ECS_IMAGE_PULL_TIMEOUT", "10m"),
            ("ECS_IMAGE_CLEANUP_INTERVAL", "15m"),
            ("ECS_IMAGE_MINIMUM_CLEANUP_AGE", "2h"),
            ("ECS_NUM_IMAGES_DELETE_PER_CYCLE", "7"),
            ("ECS_EXCLUDE_UNTRACKED_IMAGE", "a:1,,b:2"),
        ]));
        assert_eq!(s.pull_behavior, ImagePullBehavior::Once);
        assert_eq!(s.pull_timeout, Duration::from_secs(600));
        assert_eq!(s.pull_inactivity_timeout, Duration::from_secs(60));
        let c = s.cleanup.unwrap();
        assert_eq!(c.interval, Duration::from_secs(900));
        assert_eq!(c.minimum_age, Duration::from_secs(7200));
        assert_eq!(c.images_per_cycle, 7);
        assert_eq!(
            c.exclusions,
            [
                "a:1",
                "b:2",
                "amazon/amazon-ecs-pause:0.1.0",
                "amazon/amazon-ecs-agent:latest"
            ]
        );
    }

    #[test]
    fn defaults_and_the_ways_to_turn_cleanup_off() {
        let c = ImageSettings::from_config(&config(&[])).cleanup.unwrap();
        assert_eq!(c.interval, Duration::from_secs(1800));
        assert_eq!(c.minimum_age, Duration::from_secs(3600));
        assert_eq!(c.images_per_cycle, 5);
        // Below the 10-minute floor the loader falls back to 30 minutes.
        let c = ImageSettings::from_config(&config(&[("ECS_IMAGE_CLEANUP_INTERVAL", "1m")]));
        assert_eq!(c.cleanup.unwrap().interval, Duration::from_secs(1800));
        let off = ImageSettings::from_config(&config(&[("ECS_DISABLE_IMAGE_CLEANUP", "true")]));
        assert!(off.cleanup.is_none());
        let cached =
            ImageSettings::from_config(&config(&[("ECS_IMAGE_PULL_BEHAVIOR", "prefer-cached")]));
        assert!(cached.cleanup.is_none());
    }

    #[test]
    fn engine_auth_comes_from_the_environment() {
        let data = r#"{"https://r.io": {"username": "u", "password": "p"}}"#;
        let auth = EngineAuth::from_config(&config(&[
            ("ECS_ENGINE_AUTH_TYPE", "docker"),
            ("ECS_ENGINE_AUTH_DATA", data),
        ]));
        let found = auth.lookup("r.io/app:1").unwrap();
        assert_eq!(found.password.as_deref(), Some("p"));
        let none = EngineAuth::from_config(&config(&[("ECS_ENGINE_AUTH_DATA", data)]));
        assert!(none.is_empty());
    }
}
