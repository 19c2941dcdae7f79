//! The agent's only door to the Docker engine: typed calls with the
//! timeouts of docs/engine.md §6.4, errors named as the backend expects,
//! and inspect results turned into what the engine needs to know.

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::{ContainerCreateBody, ContainerInspectResponse, HealthStatusEnum};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, EventsOptionsBuilder,
    RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;

use crate::engine::status::{ContainerStatus, HealthStatus};
use crate::engine::task::{PortBinding, Protocol};

#[cfg(test)]
pub(crate) mod fake;

/// Inspect calls get 30 s everywhere (docs/engine.md §6.4).
const INSPECT_TIMEOUT: Duration = Duration::from_secs(30);
const REMOVE_TIMEOUT: Duration = Duration::from_secs(300);
/// `docker rmi` gets 3 min (the Go agent's RemoveImageTimeout).
const REMOVE_IMAGE_TIMEOUT: Duration = Duration::from_secs(180);
/// Volume create/inspect/remove calls (docs/engine.md §6.4).
const VOLUME_TIMEOUT: Duration = Duration::from_secs(300);
/// Loading an agent image archive of a few tens of megabytes.
const LOAD_TIMEOUT: Duration = Duration::from_secs(600);
/// No first progress message within this long counts as a stuck pull.
const PULL_BEGIN_TIMEOUT: Duration = Duration::from_secs(300);
/// The client-wide limit; each call applies its own, shorter, limit.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(4 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("{0}")]
    Api(#[from] bollard::errors::Error),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("unsupported Docker endpoint {0:?} (DOCKER_HOST must be unix:// or tcp://)")]
    Endpoint(String),
    #[error("{0}")]
    Config(String),
}

impl DockerError {
    /// An error answer from the daemon with this HTTP status.
    pub fn status(status_code: u16, message: impl Into<String>) -> Self {
        DockerError::Api(bollard::errors::Error::DockerResponseServerError {
            status_code,
            message: message.into(),
        })
    }

    /// Docker answered 304: the container is already in that state.
    pub fn is_not_modified(&self) -> bool {
        matches!(
            self,
            DockerError::Api(bollard::errors::Error::DockerResponseServerError {
                status_code: 304,
                ..
            })
        )
    }

    /// Docker answered 404: the container or image does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            DockerError::Api(bollard::errors::Error::DockerResponseServerError {
                status_code: 404,
                ..
            })
        )
    }

    /// Docker answered 409: a container of that name exists already (on
    /// create), or the object is in use (on remove).
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            DockerError::Api(bollard::errors::Error::DockerResponseServerError {
                status_code: 409,
                ..
            })
        )
    }

    /// The message without the HTTP framing bollard adds.
    pub fn message(&self) -> String {
        match self {
            DockerError::Api(bollard::errors::Error::DockerResponseServerError {
                message, ..
            }) => message.clone(),
            DockerError::Api(bollard::errors::Error::DockerStreamError { error }) => error.clone(),
            other => other.to_string(),
        }
    }
}

async fn within<T>(
    limit: Duration,
    fut: impl std::future::Future<Output = Result<T, bollard::errors::Error>>,
) -> Result<T, DockerError> {
    match tokio::time::timeout(limit, fut).await {
        Ok(result) => result.map_err(DockerError::from),
        Err(_) => Err(DockerError::Timeout(limit)),
    }
}

/// The Docker engine's version, as the agent reports it.
#[derive(Debug, Clone)]
pub struct EngineVersion {
    pub version: String,
    pub api_version: String,
}

/// What `docker inspect` says about a container, reduced to what the engine
/// tracks (docs/engine.md §11.2).
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub docker_id: String,
    pub status: ContainerStatus,
    pub exit_code: Option<i64>,
    /// `OutOfMemoryError: …` or `DockerStateError: …`.
    pub error: Option<String>,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
    pub port_bindings: Vec<PortBinding>,
    pub health: Option<HealthStatus>,
    pub labels: HashMap<String, String>,
    /// The main process, while the container runs: where the metrics
    /// collector finds its cgroups and network namespace.
    pub pid: Option<u32>,
}

/// A container event worth a fresh inspect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerEvent {
    pub docker_id: String,
    pub action: String,
    /// `exitCode` attribute of `die` events.
    pub exit_code: Option<i64>,
}

/// Credentials for one registry, sent as `X-Registry-Auth`; never printed.
#[derive(Clone, Default)]
pub struct RegistryAuth {
    pub username: Option<String>,
    pub password: Option<String>,
    pub email: Option<String>,
    pub server_address: Option<String>,
}

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RegistryAuth([redacted])")
    }
}

/// A container found by its labels, for the start-up sweep of containers
/// no saved task owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelledContainer {
    pub docker_id: String,
    pub running: bool,
    pub labels: HashMap<String, String>,
}

pub type DockerResult<T> = Result<T, DockerError>;

/// The Docker operations the engine, its actions and the image manager
/// use: the seam between them and the daemon (docs/architecture.md §7).
/// [`DockerClient`] is the real one; tests drive the engine against an
/// in-memory fake under tokio's paused time.
pub trait DockerApi: Send + Sync + 'static {
    fn ping(&self, limit: Duration) -> BoxFuture<'_, DockerResult<()>>;

    /// `None` when the image is not present locally.
    fn inspect_image<'a>(
        &'a self,
        image: &'a str,
    ) -> BoxFuture<'a, DockerResult<Option<ImageInfo>>>;

    /// Pulls `image` (`:latest` when untagged), failing when no progress is
    /// seen for `inactivity` or the whole pull exceeds `overall`.
    fn pull_image<'a>(
        &'a self,
        image: &'a str,
        auth: Option<RegistryAuth>,
        inactivity: Duration,
        overall: Duration,
    ) -> BoxFuture<'a, DockerResult<()>>;

    /// `docker rmi <name or ID>` without force: a name is untagged, and the
    /// image goes once no name is left and no container uses it.
    fn remove_image<'a>(&'a self, image: &'a str) -> BoxFuture<'a, DockerResult<()>>;

    /// Creates a container from a full Docker `ContainerCreateBody` JSON;
    /// returns its ID.
    fn create_container<'a>(
        &'a self,
        name: &'a str,
        body: serde_json::Value,
        limit: Duration,
    ) -> BoxFuture<'a, DockerResult<String>>;

    fn start_container<'a>(
        &'a self,
        id: &'a str,
        limit: Duration,
    ) -> BoxFuture<'a, DockerResult<()>>;

    /// SIGTERM, then SIGKILL after `grace`; the call itself may take two
    /// minutes longer than the grace period.
    fn stop_container<'a>(
        &'a self,
        id: &'a str,
        grace: Duration,
    ) -> BoxFuture<'a, DockerResult<()>>;

    fn remove_container<'a>(&'a self, id: &'a str) -> BoxFuture<'a, DockerResult<()>>;

    /// `None` when no such container exists.
    fn inspect_container<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, DockerResult<Option<Observation>>>;

    /// What the endpoints and the metadata file show beyond the engine's
    /// view; `None` when the container does not exist.
    fn container_details<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, DockerResult<Option<ContainerDetails>>>;

    /// Every container, running or not, that carries `label`.
    fn containers_with_label<'a>(
        &'a self,
        label: &'a str,
    ) -> BoxFuture<'a, DockerResult<Vec<LabelledContainer>>>;

    /// Creates a Docker volume; returns its name.
    fn create_volume<'a>(&'a self, spec: &'a VolumeInfo) -> BoxFuture<'a, DockerResult<String>>;

    /// `None` when no volume has that name.
    fn inspect_volume<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, DockerResult<Option<VolumeInfo>>>;

    /// Removing a volume that is already gone is not an error.
    fn remove_volume<'a>(&'a self, name: &'a str) -> BoxFuture<'a, DockerResult<()>>;

    /// Container events of containers labelled as the agent's, from `since`
    /// (Unix seconds) when resuming after a dropped stream.
    fn container_events(
        &self,
        since: Option<i64>,
    ) -> BoxStream<'static, DockerResult<ContainerEvent>>;
}

/// The Docker engine through bollard.
#[derive(Clone)]
pub struct DockerClient {
    docker: Docker,
}

impl DockerClient {
    /// Connects to `DOCKER_HOST` (unix:// or tcp://) and agrees on an API
    /// version with the daemon.
    pub async fn connect(endpoint: &str) -> Result<Self, DockerError> {
        let docker = if let Some(path) = endpoint.strip_prefix("unix://") {
            Docker::connect_with_unix(path, CLIENT_TIMEOUT.as_secs(), bollard::API_DEFAULT_VERSION)?
        } else if endpoint.starts_with("tcp://") || endpoint.starts_with("http://") {
            Docker::connect_with_http(
                endpoint,
                CLIENT_TIMEOUT.as_secs(),
                bollard::API_DEFAULT_VERSION,
            )?
        } else {
            return Err(DockerError::Endpoint(endpoint.to_string()));
        };
        let docker = within(INSPECT_TIMEOUT, docker.negotiate_version()).await?;
        Ok(Self { docker })
    }

    /// Docker's cgroup driver (`cgroupfs` or `systemd`), from `docker info`.
    pub async fn cgroup_driver(&self) -> Result<String, DockerError> {
        let info = within(INSPECT_TIMEOUT, self.docker.info()).await?;
        Ok(info
            .cgroup_driver
            .map(|d| d.to_string())
            .unwrap_or_default())
    }

    pub async fn version(&self) -> Result<EngineVersion, DockerError> {
        let v = within(INSPECT_TIMEOUT, self.docker.version()).await?;
        Ok(EngineVersion {
            version: v.version.unwrap_or_default(),
            api_version: v.api_version.unwrap_or_default(),
        })
    }

    /// `docker load` of an image archive (`docker save` output), as
    /// ecs-init loads an agent update; fails on the daemon's first error.
    pub async fn load_image(&self, archive: bytes::Bytes) -> Result<(), DockerError> {
        let options = bollard::query_parameters::ImportImageOptionsBuilder::default()
            .quiet(true)
            .build();
        let mut stream = Box::pin(self.docker.import_image(
            options,
            bollard::body_full(archive),
            None,
        ));
        let load = async {
            while let Some(step) = stream.next().await {
                let step = step?;
                if let Some(error) = step.error_detail.and_then(|d| d.message) {
                    return Err(DockerError::status(500, error));
                }
            }
            Ok(())
        };
        match tokio::time::timeout(LOAD_TIMEOUT, load).await {
            Ok(result) => result,
            Err(_) => Err(DockerError::Timeout(LOAD_TIMEOUT)),
        }
    }

    /// `docker inspect`; `None` when the container does not exist.
    async fn inspect_raw(&self, id: &str) -> Result<Option<ContainerInspectResponse>, DockerError> {
        match within(
            INSPECT_TIMEOUT,
            self.docker.inspect_container(
                id,
                None::<bollard::query_parameters::InspectContainerOptions>,
            ),
        )
        .await
        {
            Ok(info) => Ok(Some(info)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl DockerApi for DockerClient {
    fn ping(&self, limit: Duration) -> BoxFuture<'_, DockerResult<()>> {
        Box::pin(async move { within(limit, self.docker.ping()).await.map(|_| ()) })
    }

    fn inspect_image<'a>(
        &'a self,
        image: &'a str,
    ) -> BoxFuture<'a, DockerResult<Option<ImageInfo>>> {
        Box::pin(async move {
            match within(INSPECT_TIMEOUT, self.docker.inspect_image(image)).await {
                Ok(info) => Ok(Some(ImageInfo {
                    id: info.id.unwrap_or_default(),
                    repo_digests: info.repo_digests.unwrap_or_default(),
                    size: info.size.unwrap_or_default(),
                    env: info.config.and_then(|c| c.env).unwrap_or_default(),
                })),
                Err(e) if e.is_not_found() => Ok(None),
                Err(e) => Err(e),
            }
        })
    }

    fn pull_image<'a>(
        &'a self,
        image: &'a str,
        auth: Option<RegistryAuth>,
        inactivity: Duration,
        overall: Duration,
    ) -> BoxFuture<'a, DockerResult<()>> {
        Box::pin(async move {
            let (repository, tag) = split_reference(image);
            let options = CreateImageOptionsBuilder::default()
                .from_image(repository)
                .tag(tag)
                .build();
            let credentials = auth.map(|a| bollard::auth::DockerCredentials {
                username: a.username,
                password: a.password,
                email: a.email,
                serveraddress: a.server_address,
                ..Default::default()
            });
            let pull = async {
                let mut stream =
                    Box::pin(self.docker.create_image(Some(options), None, credentials));
                let mut limit = PULL_BEGIN_TIMEOUT;
                loop {
                    match tokio::time::timeout(limit, stream.next()).await {
                        Err(_) => return Err(DockerError::Timeout(limit)),
                        Ok(None) => return Ok(()),
                        Ok(Some(Err(e))) => return Err(e.into()),
                        Ok(Some(Ok(_progress))) => limit = inactivity,
                    }
                }
            };
            match tokio::time::timeout(overall, pull).await {
                Ok(result) => result,
                Err(_) => Err(DockerError::Timeout(overall)),
            }
        })
    }

    fn remove_image<'a>(&'a self, image: &'a str) -> BoxFuture<'a, DockerResult<()>> {
        Box::pin(async move {
            let options = bollard::query_parameters::RemoveImageOptionsBuilder::default()
                .force(false)
                .noprune(false)
                .build();
            within(
                REMOVE_IMAGE_TIMEOUT,
                self.docker.remove_image(image, Some(options), None),
            )
            .await
            .map(|_| ())
        })
    }

    fn create_container<'a>(
        &'a self,
        name: &'a str,
        body: serde_json::Value,
        limit: Duration,
    ) -> BoxFuture<'a, DockerResult<String>> {
        Box::pin(async move {
            let body: ContainerCreateBody = serde_json::from_value(body).map_err(|e| {
                DockerError::Config(format!("invalid container configuration: {e}"))
            })?;
            let options = CreateContainerOptionsBuilder::default().name(name).build();
            let created = within(limit, self.docker.create_container(Some(options), body)).await?;
            Ok(created.id)
        })
    }

    fn start_container<'a>(
        &'a self,
        id: &'a str,
        limit: Duration,
    ) -> BoxFuture<'a, DockerResult<()>> {
        Box::pin(within(
            limit,
            self.docker
                .start_container(id, None::<bollard::query_parameters::StartContainerOptions>),
        ))
    }

    fn stop_container<'a>(
        &'a self,
        id: &'a str,
        grace: Duration,
    ) -> BoxFuture<'a, DockerResult<()>> {
        let secs = i32::try_from(grace.as_secs()).unwrap_or(i32::MAX);
        let options = StopContainerOptionsBuilder::default().t(secs).build();
        Box::pin(within(
            grace + Duration::from_secs(120),
            self.docker.stop_container(id, Some(options)),
        ))
    }

    fn remove_container<'a>(&'a self, id: &'a str) -> BoxFuture<'a, DockerResult<()>> {
        let options = RemoveContainerOptionsBuilder::default()
            .v(true)
            .force(false)
            .build();
        Box::pin(within(
            REMOVE_TIMEOUT,
            self.docker.remove_container(id, Some(options)),
        ))
    }

    fn inspect_container<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, DockerResult<Option<Observation>>> {
        Box::pin(async move { Ok(self.inspect_raw(id).await?.map(observe)) })
    }

    fn container_details<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, DockerResult<Option<ContainerDetails>>> {
        Box::pin(async move { Ok(self.inspect_raw(id).await?.map(details)) })
    }

    fn containers_with_label<'a>(
        &'a self,
        label: &'a str,
    ) -> BoxFuture<'a, DockerResult<Vec<LabelledContainer>>> {
        Box::pin(async move {
            let mut filters = HashMap::new();
            filters.insert("label", vec![label]);
            let options = bollard::query_parameters::ListContainersOptionsBuilder::default()
                .all(true)
                .filters(&filters)
                .build();
            let listed =
                within(INSPECT_TIMEOUT, self.docker.list_containers(Some(options))).await?;
            Ok(listed
                .into_iter()
                .filter_map(|c| {
                    Some(LabelledContainer {
                        docker_id: c.id?,
                        running: matches!(
                            c.state,
                            Some(bollard::models::ContainerSummaryStateEnum::RUNNING)
                        ),
                        labels: c.labels.unwrap_or_default(),
                    })
                })
                .collect())
        })
    }

    fn create_volume<'a>(&'a self, spec: &'a VolumeInfo) -> BoxFuture<'a, DockerResult<String>> {
        Box::pin(async move {
            let request = bollard::models::VolumeCreateRequest {
                name: Some(spec.name.clone()),
                driver: Some(spec.driver.clone()),
                driver_opts: Some(spec.driver_opts.clone().into_iter().collect()),
                labels: Some(spec.labels.clone().into_iter().collect()),
                ..Default::default()
            };
            let created = within(VOLUME_TIMEOUT, self.docker.create_volume(request)).await?;
            Ok(created.name)
        })
    }

    fn inspect_volume<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, DockerResult<Option<VolumeInfo>>> {
        Box::pin(async move {
            match within(VOLUME_TIMEOUT, self.docker.inspect_volume(name)).await {
                Ok(v) => Ok(Some(VolumeInfo {
                    name: v.name,
                    driver: v.driver,
                    driver_opts: v.options.into_iter().collect(),
                    labels: v.labels.into_iter().collect(),
                })),
                Err(e) if e.is_not_found() => Ok(None),
                Err(e) => Err(e),
            }
        })
    }

    fn remove_volume<'a>(&'a self, name: &'a str) -> BoxFuture<'a, DockerResult<()>> {
        Box::pin(async move {
            match within(
                VOLUME_TIMEOUT,
                self.docker
                    .remove_volume(name, None::<bollard::query_parameters::RemoveVolumeOptions>),
            )
            .await
            {
                Err(e) if e.is_not_found() => Ok(()),
                other => other,
            }
        })
    }

    fn container_events(
        &self,
        since: Option<i64>,
    ) -> BoxStream<'static, DockerResult<ContainerEvent>> {
        let mut filters = HashMap::new();
        filters.insert("type", vec!["container"]);
        filters.insert("label", vec![crate::engine::labels::TASK_ARN]);
        filters.insert(
            "event",
            vec![
                "create",
                "start",
                "stop",
                "die",
                "oom",
                "health_status",
                "destroy",
            ],
        );
        let mut builder = EventsOptionsBuilder::default().filters(&filters);
        if let Some(since) = since {
            builder = builder.since(&since.to_string());
        }
        self.docker
            .events(Some(builder.build()))
            .filter_map(|item| async move {
                match item {
                    Err(e) => Some(Err(DockerError::from(e))),
                    Ok(msg) => {
                        let actor = msg.actor?;
                        let docker_id = actor.id.filter(|id| !id.is_empty())?;
                        let action = msg.action?;
                        let exit_code = actor
                            .attributes
                            .as_ref()
                            .and_then(|a| a.get("exitCode"))
                            .and_then(|c| c.parse().ok());
                        Some(Ok(ContainerEvent {
                            docker_id,
                            action,
                            exit_code,
                        }))
                    }
                }
            })
            .boxed()
    }
}

/// A Docker volume as the agent creates or finds it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VolumeInfo {
    pub name: String,
    pub driver: String,
    pub driver_opts: std::collections::BTreeMap<String, String>,
    pub labels: std::collections::BTreeMap<String, String>,
}

/// What the engine needs from `docker image inspect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    pub id: String,
    pub repo_digests: Vec<String>,
    pub env: Vec<String>,
    pub size: i64,
}

/// Splits `repo[:tag]` (ports in registry hosts are not tags) into
/// repository and tag; digests stay in the repository part.
pub fn split_reference(image: &str) -> (&str, &str) {
    if image.contains('@') {
        return (image, "");
    }
    let last_slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[last_slash..].rfind(':') {
        Some(i) => (&image[..last_slash + i], &image[last_slash + i + 1..]),
        None => (image, "latest"),
    }
}

fn rfc3339_ms(text: Option<&str>) -> Option<i64> {
    let t =
        time::OffsetDateTime::parse(text?, &time::format_description::well_known::Rfc3339).ok()?;
    // Docker writes year 1 for "never".
    if t.year() <= 1 {
        return None;
    }
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// Docker's port map as bindings, in a stable order.
fn port_bindings(ports: Option<bollard::models::PortMap>) -> Vec<PortBinding> {
    let mut port_bindings = Vec::new();
    if let Some(ports) = ports {
        for (key, bindings) in ports {
            let (port, proto) = key.split_once('/').unwrap_or((key.as_str(), "tcp"));
            let Ok(container_port) = port.parse::<u16>() else {
                continue;
            };
            let protocol = if proto == "udp" {
                Protocol::Udp
            } else {
                Protocol::Tcp
            };
            for b in bindings.into_iter().flatten() {
                let Some(host_port) = b.host_port.as_deref().and_then(|p| p.parse().ok()) else {
                    continue;
                };
                port_bindings.push(PortBinding {
                    container_port,
                    host_port,
                    bind_ip: b.host_ip.unwrap_or_default(),
                    protocol,
                });
            }
        }
    }
    port_bindings.sort_by(|a, b| {
        (a.container_port, a.protocol.as_str(), &a.bind_ip).cmp(&(
            b.container_port,
            b.protocol.as_str(),
            &b.bind_ip,
        ))
    });
    port_bindings
}

/// Docker state to engine status, metadata and error (docs/engine.md §11.2).
pub fn observe(info: ContainerInspectResponse) -> Observation {
    let state = info.state.unwrap_or_default();
    let started_at_ms = rfc3339_ms(state.started_at.as_deref());
    let finished_at_ms = rfc3339_ms(state.finished_at.as_deref());
    let running = state.running.unwrap_or(false);
    let dead = matches!(
        state.status,
        Some(bollard::models::ContainerStateStatusEnum::DEAD)
    );
    let error = if state.oom_killed.unwrap_or(false) {
        Some("OutOfMemoryError: Container killed due to memory usage".to_string())
    } else {
        state
            .error
            .filter(|e| !e.is_empty())
            .map(|e| format!("DockerStateError: {e}"))
    };
    let status = if running && !dead {
        ContainerStatus::Running
    } else if !dead && started_at_ms.is_none() && error.is_none() {
        ContainerStatus::Created
    } else {
        ContainerStatus::Stopped
    };
    let exit_code = if status == ContainerStatus::Stopped && finished_at_ms.is_some() {
        state.exit_code
    } else {
        None
    };
    let health = state.health.and_then(|h| match h.status? {
        HealthStatusEnum::HEALTHY => Some(HealthStatus::Healthy),
        HealthStatusEnum::UNHEALTHY => Some(HealthStatus::Unhealthy),
        _ => None,
    });
    let port_bindings = port_bindings(info.network_settings.and_then(|n| n.ports));
    let pid = if running {
        state
            .pid
            .and_then(|p| u32::try_from(p).ok())
            .filter(|p| *p > 0)
    } else {
        None
    };
    Observation {
        docker_id: info.id.unwrap_or_default(),
        status,
        exit_code,
        error,
        started_at_ms,
        finished_at_ms,
        port_bindings,
        health,
        labels: info.config.and_then(|c| c.labels).unwrap_or_default(),
        pid,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn references_split_like_docker() {
        assert_eq!(split_reference("busybox"), ("busybox", "latest"));
        assert_eq!(split_reference("busybox:1.36"), ("busybox", "1.36"));
        assert_eq!(
            split_reference("127.0.0.1:5000/x/busybox"),
            ("127.0.0.1:5000/x/busybox", "latest")
        );
        assert_eq!(
            split_reference("127.0.0.1:5000/x/busybox:local"),
            ("127.0.0.1:5000/x/busybox", "local")
        );
        assert_eq!(split_reference("a/b@sha256:abc"), ("a/b@sha256:abc", ""));
    }

    fn inspect(json: serde_json::Value) -> Observation {
        observe(serde_json::from_value(json).unwrap())
    }

    #[test]
    fn docker_states_map_to_statuses() {
        let never = "0001-01-01T00:00:00Z";
        let created = inspect(serde_json::json!({"Id": "a", "State": {
            "Status": "created", "Running": false, "StartedAt": never, "FinishedAt": never, "ExitCode": 0}}));
        assert_eq!(created.status, ContainerStatus::Created);
        assert_eq!(created.exit_code, None);
        let running = inspect(serde_json::json!({"Id": "a", "State": {
            "Status": "running", "Running": true, "StartedAt": "2026-11-27T20:17:30.1Z", "FinishedAt": never}}));
        assert_eq!(running.status, ContainerStatus::Running);
        assert!(running.started_at_ms.is_some());
        let exited = inspect(serde_json::json!({"Id": "a", "State": {
            "Status": "exited", "Running": false, "ExitCode": 3,
            "StartedAt": "2026-11-27T20:17:30Z", "FinishedAt": "2026-11-27T20:17:31Z"}}));
        assert_eq!(
            (exited.status, exited.exit_code),
            (ContainerStatus::Stopped, Some(3))
        );
        let oom = inspect(serde_json::json!({"Id": "a", "State": {
            "Status": "exited", "OOMKilled": true, "ExitCode": 137, "Error": "x",
            "StartedAt": "2026-11-27T20:17:30Z", "FinishedAt": "2026-11-27T20:17:31Z"}}));
        assert!(oom.error.unwrap().starts_with("OutOfMemoryError"));
        let failed = inspect(serde_json::json!({"Id": "a", "State": {
            "Status": "created", "Error": "exec: not found", "ExitCode": 127,
            "StartedAt": never, "FinishedAt": "2026-11-27T20:17:31Z"}}));
        assert_eq!(failed.status, ContainerStatus::Stopped);
        assert_eq!(
            failed.error.as_deref(),
            Some("DockerStateError: exec: not found")
        );
    }

    #[test]
    fn port_bindings_are_read() {
        let o = inspect(serde_json::json!({"Id": "a", "State": {"Running": true},
            "NetworkSettings": {"Ports": {
                "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "32768"}, {"HostIp": "::", "HostPort": "32768"}],
                "53/udp": null}}}));
        assert_eq!(o.port_bindings.len(), 2);
        assert_eq!(o.port_bindings[0].host_port, 32768);
    }
}

/// What the local endpoints and the metadata file show about a container
/// beyond what the engine tracks; read live from `docker inspect`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerDetails {
    /// Docker's name, with its leading `/`.
    pub name: String,
    pub image: String,
    pub image_id: String,
    pub created_at_ms: Option<i64>,
    pub running: bool,
    pub labels: std::collections::BTreeMap<String, String>,
    pub network_mode: String,
    /// One per Docker network the container is attached to, by name.
    pub networks: Vec<NetworkDetails>,
    pub mounts: Vec<MountDetails>,
    pub log_driver: String,
    pub log_options: std::collections::BTreeMap<String, String>,
    pub health: Option<HealthDetails>,
    pub port_bindings: Vec<PortBinding>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct NetworkDetails {
    pub name: String,
    pub ipv4: String,
    pub ipv6: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct MountDetails {
    pub name: String,
    pub source: String,
    pub destination: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct HealthDetails {
    /// `healthy`, `unhealthy` or `starting`.
    pub status: String,
    pub exit_code: Option<i64>,
    pub output: String,
    pub since: Option<String>,
}

fn details(info: ContainerInspectResponse) -> ContainerDetails {
    let config = info.config.unwrap_or_default();
    let host_config = info.host_config.unwrap_or_default();
    let state = info.state.unwrap_or_default();
    let network_settings = info.network_settings.unwrap_or_default();
    let port_bindings = port_bindings(network_settings.ports);
    let mut networks: Vec<NetworkDetails> = network_settings
        .networks
        .unwrap_or_default()
        .into_iter()
        .map(|(name, endpoint)| NetworkDetails {
            name,
            ipv4: endpoint.ip_address.unwrap_or_default(),
            ipv6: endpoint.global_ipv6_address.unwrap_or_default(),
        })
        .collect();
    networks.sort_by(|a, b| a.name.cmp(&b.name));
    let mounts = info
        .mounts
        .unwrap_or_default()
        .into_iter()
        .map(|m| MountDetails {
            name: m.name.unwrap_or_default(),
            source: m.source.unwrap_or_default(),
            destination: m.destination.unwrap_or_default(),
        })
        .collect();
    let log = host_config.log_config.unwrap_or_default();
    let health = state.health.map(|h| {
        let last = h.log.unwrap_or_default().pop();
        HealthDetails {
            status: h.status.map(|s| s.to_string()).unwrap_or_default(),
            exit_code: last.as_ref().and_then(|l| l.exit_code),
            output: last
                .as_ref()
                .and_then(|l| l.output.clone())
                .unwrap_or_default(),
            since: last.and_then(|l| l.end),
        }
    });
    ContainerDetails {
        name: info.name.unwrap_or_default(),
        image: config.image.unwrap_or_default(),
        image_id: info.image.unwrap_or_default(),
        created_at_ms: rfc3339_ms(info.created.as_deref()),
        running: state.running.unwrap_or(false),
        labels: config.labels.unwrap_or_default().into_iter().collect(),
        network_mode: host_config.network_mode.unwrap_or_default(),
        networks,
        mounts,
        log_driver: log.typ.unwrap_or_default(),
        log_options: log.config.unwrap_or_default().into_iter().collect(),
        health,
        port_bindings,
    }
}
