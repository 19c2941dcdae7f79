//! The Docker work behind each container transition, run off the engine's
//! loop; each one ends in an [`Outcome`] the engine applies.

use std::sync::Arc;
use std::time::Duration;

use super::create_config::{self, CreateContext};
use super::reconcile::Outcome;
use super::slots::{DockerSlots, SlotUse};
use super::task::{RegistryAuthSpec, Task, TaskSpec};
use crate::aws::{AwsServices, Caller};
use crate::config::ImagePullBehavior;
use crate::credentials::{CredentialsStore, Lookup, RoleCredentials};
use crate::docker::{DockerApi, DockerError, ImageInfo, RegistryAuth};
use crate::images::{ContainerRef, ImageManager, PullError};
use crate::metadata_file::{MetadataFiles, Subject};
use crate::secrets::{FetchError, SecretsState, TaskSecrets};

/// Settings the actions need, fixed for the agent's lifetime.
#[derive(Debug, Clone)]
pub struct ActionSettings {
    pub cluster: String,
    pub region: String,
    pub pull_behavior: ImagePullBehavior,
    /// Pulls (with their credentials, retries and timeouts) and image
    /// tracking go through it.
    pub images: ImageManager,
    pub create_timeout: Duration,
    pub start_timeout: Duration,
    pub default_stop_timeout: Duration,
    /// `ECS_DISABLE_PRIVILEGED`: privileged containers are refused.
    pub privileged_disabled: bool,
    /// `ECS_AVAILABLE_LOGGING_DRIVERS`: the log drivers containers may use.
    pub logging_drivers: Vec<String>,
    /// `ECS_ENABLE_CONTAINER_METADATA=true`: each container gets its file.
    pub metadata_files: Option<Arc<MetadataFiles>>,
    /// `ECS_SHARED_VOLUME_MATCH_FULL_CONFIG`: an existing shared volume
    /// must have the labels and driver options the task asks for.
    pub shared_volume_match_full_config: bool,
    /// Taken by every create and start, starts first.
    pub docker_slots: Arc<DockerSlots>,
    /// Task cgroups (`ECS_ENABLE_TASK_CPU_MEM_LIMIT`), when the host has
    /// them (docs/engine.md §7.7).
    pub task_cgroups: Option<Arc<crate::task_cgroup::TaskCgroups>>,
    /// Role credentials from ACS: the execution role's sign the calls to
    /// other AWS services; the engine drops each set as its task stops and
    /// goes.
    pub credentials: Arc<CredentialsStore>,
    /// ECR, SSM, Secrets Manager and S3 (docs/aws-services.md).
    pub aws: Arc<AwsServices>,
}

/// How long a call that needs the execution role's credentials waits for
/// ACS to send them again after the agent restarted.
const CREDENTIALS_WAIT: Duration = Duration::from_secs(60);

/// How a pull logs in to the image's registry (a container's
/// `registryAuthentication`).
#[derive(Debug, Clone)]
pub struct PullLogin {
    pub auth: RegistryAuthSpec,
    /// The task's execution role credentials, by ID.
    pub execution_credentials_id: Option<String>,
}

/// A transition's Docker work, with everything it needs captured.
#[derive(Debug, Clone)]
pub enum Work {
    ResolveManifest {
        image: String,
    },
    Pull {
        image: String,
        /// The container the image is for, recorded as its user.
        user: ContainerRef,
        /// The local image as the manifest step found it.
        known: Option<ImageInfo>,
        /// The registry login the payload asks for; `None`: the engine-wide
        /// credentials, if any.
        login: Option<PullLogin>,
    },
    /// The task as it was when the create was planned (names of linked
    /// containers included).
    Create {
        task: Box<Task>,
        index: usize,
    },
    Start {
        docker_id: String,
        /// Whose metadata file to complete once it runs.
        subject: Subject,
    },
    Stop {
        docker_id: String,
        grace: Duration,
    },
}

/// Each kind of work is boxed apart: a spawned action is then only as
/// large as its own work, not the largest of them (a pull with its login
/// and retries made every stop of a 100-task stop hold about 6.6 KiB for
/// its whole grace period; docs/footprint.md §2).
pub async fn run(
    docker: &Arc<dyn DockerApi>,
    settings: &Arc<ActionSettings>,
    work: Work,
) -> Outcome {
    match work {
        Work::ResolveManifest { image } => Box::pin(resolve_manifest(settings, &image)).await,
        Work::Pull {
            image,
            user,
            known,
            login,
        } => Box::pin(pull(settings, &image, &user, known, login)).await,
        Work::Create { task, index } => {
            Box::pin(async {
                let _slot = settings.docker_slots.acquire(SlotUse::Create).await;
                create(&**docker, settings, &task, index).await
            })
            .await
        }
        Work::Start { docker_id, subject } => {
            Box::pin(start(docker, settings, &docker_id, subject)).await
        }
        Work::Stop { docker_id, grace } => Box::pin(stop(&**docker, &docker_id, grace)).await,
    }
}

async fn start(
    docker: &Arc<dyn DockerApi>,
    settings: &Arc<ActionSettings>,
    docker_id: &str,
    subject: Subject,
) -> Outcome {
    let slot = settings.docker_slots.acquire(SlotUse::Start).await;
    let started = docker
        .start_container(docker_id, settings.start_timeout)
        .await;
    // The inspect below is light work: in a burst the slot is worth more
    // to the next create or start (docs/engine.md §6.4).
    drop(slot);
    match started {
        Ok(()) => {
            spawn_metadata_update(docker, settings, subject, docker_id);
            Outcome::Done(docker.inspect_container(docker_id).await.ok().flatten())
        }
        Err(e) => failed("CannotStartContainerError", &e),
    }
}

async fn stop(docker: &dyn DockerApi, docker_id: &str, grace: Duration) -> Outcome {
    match docker.stop_container(docker_id, grace).await {
        Ok(()) => Outcome::Done(docker.inspect_container(docker_id).await.ok().flatten()),
        // 304: already stopped.
        Err(e) if e.is_not_modified() => {
            Outcome::Done(docker.inspect_container(docker_id).await.ok().flatten())
        }
        Err(e) => failed("CannotStopContainerError", &e),
    }
}

/// With `ECS_SHARED_VOLUME_MATCH_FULL_CONFIG=true`, an autoprovisioned
/// shared volume that already exists must carry the requested labels and
/// driver options exactly (docs/engine.md §9); the driver is not compared.
pub fn shared_volume_matches(
    existing: &crate::docker::VolumeInfo,
    wanted: &super::task::VolumeResource,
) -> Result<(), String> {
    if existing.labels != wanted.labels {
        return Err(format!(
            "existing shared volume {:?} has labels {:?}, the task asks for {:?}",
            existing.name, existing.labels, wanted.labels
        ));
    }
    if existing.driver_opts != wanted.driver_opts {
        return Err(format!(
            "existing shared volume {:?} has driver options {:?}, the task asks for {:?}",
            existing.name, existing.driver_opts, wanted.driver_opts
        ));
    }
    Ok(())
}

/// Completes a running container's metadata file in the background
/// (docs/engine.md §15); a failure costs only the file.
pub fn spawn_metadata_update(
    docker: &Arc<dyn DockerApi>,
    settings: &ActionSettings,
    subject: Subject,
    docker_id: &str,
) {
    let Some(files) = settings.metadata_files.clone() else {
        return;
    };
    let docker = docker.clone();
    let docker_id = docker_id.to_string();
    tokio::spawn(async move {
        if let Err(e) = files.update(&*docker, &subject, &docker_id).await {
            tracing::warn!(docker_id, error = %e, "updating the container metadata file failed");
        }
    });
}

fn failed(name: &str, e: &DockerError) -> Outcome {
    let message = match e {
        DockerError::Timeout(d) => format!("DockerTimeoutError: timed out after {d:?}"),
        other => format!("{name}: {}", other.message()),
    };
    Outcome::Failed {
        error: message,
        gone: e.is_not_found(),
    }
}

/// A digest for the image: the one in the reference, else (when no pull
/// is needed) the local image's repo digest. Registry lookups come with the
/// image manager.
async fn resolve_manifest(settings: &ActionSettings, image: &str) -> Outcome {
    if let Some((_, digest)) = image.split_once('@') {
        return Outcome::ManifestResolved {
            digest: Some(digest.to_string()),
            image: None,
        };
    }
    let decision = settings.images.pull_decision(image, None).await;
    if decision.required {
        return Outcome::ManifestResolved {
            digest: None,
            image: None,
        };
    }
    let local = match decision.local {
        Some(info) => Ok(Some(info)),
        None => settings.images.local_image(image).await,
    };
    match local {
        Ok(Some(info)) => {
            let (repository, _) = crate::docker::split_reference(image);
            let digest = info.repo_digests.iter().find_map(|d| {
                let (repo, digest) = d.split_once('@')?;
                (repo == repository).then(|| digest.to_string())
            });
            Outcome::ManifestResolved {
                digest,
                image: Some(info),
            }
        }
        Ok(None) => Outcome::Failed {
            error: format!("CannotPullImageManifestError: image {image} not found locally"),
            gone: false,
        },
        Err(e) => failed("CannotPullImageManifestError", &e),
    }
}

/// Pulls when the behaviour requires (docs/engine.md §10.1, §10.3) and
/// records the container as the image's user. The registry login is made
/// only if a pull is needed.
async fn pull(
    settings: &ActionSettings,
    image: &str,
    user: &ContainerRef,
    known: Option<ImageInfo>,
    login: Option<PullLogin>,
) -> Outcome {
    let credentials = async {
        match &login {
            None => Ok(None),
            Some(login) => registry_login(settings, login).await.map(Some),
        }
    };
    match settings
        .images
        .pull_for(image, user, known, credentials)
        .await
    {
        Ok(ready) => Outcome::Pulled {
            pull_started_ms: ready.pull_started_ms,
            image: ready.image,
        },
        Err(failed) => Outcome::PullFailed {
            error: failed.error.to_string(),
            pull_started_ms: failed.started_ms,
        },
    }
}

/// The execution role's credentials with ID `id`, waiting a while for
/// ACS to send them again when the agent has restarted since.
async fn execution_credentials(
    store: &CredentialsStore,
    id: Option<&str>,
) -> Option<RoleCredentials> {
    let id = id?;
    let deadline = tokio::time::Instant::now() + CREDENTIALS_WAIT;
    loop {
        match store.lookup(id) {
            Lookup::Ready { credentials, .. } => return Some(credentials),
            Lookup::Pending if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Lookup::Pending | Lookup::Unknown => return None,
        }
    }
}

/// The registry login a container's `registryAuthentication` asks for
/// (docs/aws-services.md §2): an ECR token, or a user name and password
/// from Secrets Manager.
async fn registry_login(
    settings: &ActionSettings,
    login: &PullLogin,
) -> Result<RegistryAuth, PullError> {
    let id = login.execution_credentials_id.as_deref();
    match &login.auth {
        RegistryAuthSpec::Ecr {
            registry,
            use_execution_role,
        } => {
            let ecr_error = |message: String| PullError::Login {
                name: "CannotPullECRContainerError",
                message,
            };
            let role;
            let caller = if *use_execution_role {
                role = execution_credentials(&settings.credentials, id)
                    .await
                    .ok_or_else(|| ecr_error("engine ecr credentials: not found".into()))?;
                Caller::Role {
                    id: id.unwrap_or_default(),
                    credentials: &role,
                }
            } else {
                Caller::Instance
            };
            settings
                .aws
                .ecr_login(registry, caller)
                .await
                .map_err(|e| ecr_error(format!("ecr auth: {e}")))
        }
        RegistryAuthSpec::Asm {
            credentials_parameter,
            region,
        } => {
            let auth_error = |message: String| PullError::Login {
                name: "CannotPullContainerAuthError",
                message,
            };
            let role = execution_credentials(&settings.credentials, id)
                .await
                .ok_or_else(|| {
                    auth_error("engine docker private registry credentials: not found".into())
                })?;
            let caller = Caller::Role {
                id: id.unwrap_or_default(),
                credentials: &role,
            };
            let reference = crate::aws::arn::SecretRef::parse(credentials_parameter)
                .map_err(|e| auth_error(e.0))?;
            let region = region.as_deref().unwrap_or(&settings.region);
            let secret = settings
                .aws
                .secret_string(region, &reference, caller)
                .await
                .map_err(|e| auth_error(format!("asm fetching secret from the service: {e}")))?;
            let (username, password) =
                crate::aws::arn::registry_credentials(&secret).map_err(|e| auth_error(e.0))?;
            Ok(RegistryAuth {
                username: Some(username),
                password: Some(password),
                email: None,
                server_address: None,
            })
        }
    }
}

/// Fetches a task's secrets and environment files with its execution
/// role (docs/aws-services.md §3).
pub async fn fetch_secrets(
    settings: &ActionSettings,
    spec: &TaskSpec,
) -> Result<TaskSecrets, FetchError> {
    let id = spec.execution_role_credentials_id.as_deref();
    let role = execution_credentials(&settings.credentials, id)
        .await
        .ok_or_else(|| FetchError("unable to find execution role credentials".into()))?;
    let caller = Caller::Role {
        id: id.unwrap_or_default(),
        credentials: &role,
    };
    let secrets = crate::secrets::fetch(&settings.aws, spec, caller, &settings.region).await?;
    tracing::info!(
        task = spec.arn,
        "fetched the task's secrets and environment files"
    );
    Ok(secrets)
}

async fn create(
    docker: &dyn DockerApi,
    settings: &ActionSettings,
    task: &Task,
    index: usize,
) -> Outcome {
    let container = &task.containers[index];
    let Some(name) = container.docker_name.clone() else {
        return Outcome::Failed {
            error: "CannotCreateContainerError: no name reserved".into(),
            gone: false,
        };
    };
    let inspected;
    let image_env: &[String] = match &container.local_image {
        Some(info) => &info.env,
        None => {
            inspected = match docker.inspect_image(&container.spec.image).await {
                Ok(Some(info)) => info.env,
                _ => Vec::new(),
            };
            &inspected
        }
    };
    let (extra_env, extra_binds) = match &settings.metadata_files {
        None => (Vec::new(), Vec::new()),
        Some(files) => match files.prepare(&Subject::of(task, index)) {
            Ok(mount) => (vec![mount.env], vec![mount.bind]),
            // The container is still created, without its file (docs/engine.md §15).
            Err(e) => {
                tracing::warn!(task = task.arn(), container = container.spec.name, error = %e, "preparing the container metadata file failed");
                (Vec::new(), Vec::new())
            }
        },
    };
    // The task's cgroup before its containers: each create makes sure of it
    // (the same limits again are harmless), so a restart between two
    // creates needs nothing special.
    let cgroup_parent = match &settings.task_cgroups {
        None => None,
        Some(cgroups) => match cgroups.create(task.spec.task_id(), &task.spec) {
            Ok(_) => Some(crate::task_cgroup::TaskCgroups::parent(task.spec.task_id())),
            Err(e) => {
                return Outcome::Failed {
                    error: format!("TaskCgroupError: {e}"),
                    gone: false,
                }
            }
        },
    };
    let ctx = CreateContext {
        secrets: match &task.secrets {
            SecretsState::Ready(values) => values.container(&container.spec.name),
            _ => None,
        },
        cgroup_parent: cgroup_parent.as_deref(),
        cluster: &settings.cluster,
        region: &settings.region,
        image_env,
        privileged_disabled: settings.privileged_disabled,
        logging_drivers: &settings.logging_drivers,
        extra_env: &extra_env,
        extra_binds: &extra_binds,
    };
    let body = match create_config::build(task, index, &ctx) {
        Ok(body) => body,
        Err(e) => {
            return Outcome::Failed {
                error: e.to_string(),
                gone: false,
            }
        }
    };
    match docker
        .create_container(&name, body, settings.create_timeout)
        .await
    {
        Ok(docker_id) => Outcome::Created { docker_id },
        // The name is taken: by the container created just before an agent
        // restart, or by a create whose answer timed out. It is reused,
        // never created twice.
        Err(e) if e.is_conflict() => match docker.inspect_container(&name).await {
            Ok(Some(existing)) => Outcome::Created {
                docker_id: existing.docker_id,
            },
            _ => failed("CannotCreateContainerError", &e),
        },
        Err(DockerError::Config(message)) => Outcome::Failed {
            error: format!("DockerClientConfigError: {message}"),
            gone: false,
        },
        Err(e) => failed("CannotCreateContainerError", &e),
    }
}

/// Makes a task volume exist (docs/engine.md §9): task-scoped and scratch
/// volumes are created; a shared volume must exist, or is created when it
/// is autoprovisioned. The error text becomes the task's stop reason.
pub async fn provision_volume(
    docker: &dyn DockerApi,
    volume: &super::task::VolumeResource,
    match_full_config: bool,
) -> Result<(), String> {
    let fail = |e: &dyn std::fmt::Display| {
        format!(
            "ResourceInitializationError: failed to set up volume {:?}: {e}",
            volume.name
        )
    };
    if volume.shared {
        match docker.inspect_volume(&volume.docker_name).await {
            Ok(Some(existing)) if match_full_config && volume.autoprovision => {
                return shared_volume_matches(&existing, volume).map_err(|why| fail(&why));
            }
            Ok(Some(_)) => return Ok(()),
            Ok(None) if !volume.autoprovision => {
                return Err(fail(&format!(
                    "shared volume {:?} does not exist and autoprovision is off",
                    volume.docker_name
                )))
            }
            Ok(None) => {}
            Err(e) => return Err(fail(&e)),
        }
    }
    let info = crate::docker::VolumeInfo {
        name: volume.docker_name.clone(),
        driver: volume.driver.clone(),
        driver_opts: volume.driver_opts.clone(),
        labels: volume.labels.clone(),
    };
    docker
        .create_volume(&info)
        .await
        .map(|_| ())
        .map_err(|e| fail(&e))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::docker::VolumeInfo;
    use crate::engine::task::{ResourceStatus, VolumeResource};
    use std::collections::BTreeMap;

    fn wanted(labels: &[(&str, &str)], opts: &[(&str, &str)]) -> VolumeResource {
        let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        VolumeResource {
            name: "v".into(),
            docker_name: "v".into(),
            shared: true,
            autoprovision: true,
            driver: "local".into(),
            driver_opts: map(opts),
            labels: map(labels),
            status: ResourceStatus::None,
            in_flight: false,
        }
    }

    #[test]
    fn shared_volumes_match_on_labels_and_driver_options() {
        let existing = VolumeInfo {
            name: "v".into(),
            driver: "other-driver".into(),
            driver_opts: BTreeMap::new(),
            labels: BTreeMap::from([("owner".to_string(), "a".to_string())]),
        };
        // The driver is not compared; both-empty options are equal.
        assert_eq!(
            shared_volume_matches(&existing, &wanted(&[("owner", "a")], &[])),
            Ok(())
        );
        let labels = shared_volume_matches(&existing, &wanted(&[("owner", "b")], &[]));
        assert!(labels.unwrap_err().contains("labels"));
        let opts =
            shared_volume_matches(&existing, &wanted(&[("owner", "a")], &[("type", "tmpfs")]));
        assert!(opts.unwrap_err().contains("driver options"));
    }
}
