//! The container metadata file (`ECS_ENABLE_CONTAINER_METADATA`,
//! docs/endpoints.md §11): written under the data dir before `docker
//! create`, bind-mounted into the container, completed with Docker's
//! details once the container runs, removed at task cleanup.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::docker::{ContainerDetails, DockerApi, DockerError};
use crate::endpoints::tmds::metadata::Network;
use crate::engine::task::Task;

const FILE_NAME: &str = "ecs-container-metadata.json";
/// Where the directory appears inside the container, under a random name.
const CONTAINER_DIR: &str = "/opt/ecs/metadata";

#[derive(Debug, thiserror::Error)]
pub enum MetadataFileError {
    #[error("task ARN {0:?} has no task part")]
    TaskArn(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("inspecting the container: {0}")]
    Docker(#[from] DockerError),
    #[error("container {0} is not running")]
    NotRunning(String),
}

/// Who a file is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub task_arn: String,
    pub family: String,
    pub revision: String,
    pub container_name: String,
}

impl Subject {
    pub fn of(task: &Task, index: usize) -> Self {
        Self {
            task_arn: task.spec.arn.clone(),
            family: task.spec.family.clone(),
            revision: task.spec.version.clone(),
            container_name: task.containers[index].spec.name.clone(),
        }
    }
}

/// What `docker create` gets so the container finds its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// `host-dir:/opt/ecs/metadata/<uuid>`.
    pub bind: String,
    /// `ECS_CONTAINER_METADATA_FILE` and its value.
    pub env: (String, String),
}

/// Writes and removes the files of one agent.
#[derive(Debug, Clone)]
pub struct MetadataFiles {
    pub data_dir: PathBuf,
    /// For an agent that runs in a container, `ECS_HOST_DATA_DIR`: the
    /// host directory that Docker finds this agent's paths under, as the
    /// Go agent prefixes them (its `/data` is the host's
    /// `/var/lib/ecs/data`). `None` on the host, where the paths are the
    /// host's.
    pub host_prefix: Option<PathBuf>,
    pub cluster: String,
    pub instance_arn: String,
    pub availability_zone: Option<String>,
}

#[derive(Serialize, Default)]
#[serde(rename_all = "PascalCase")]
struct Content {
    cluster: String,
    #[serde(
        rename = "ContainerInstanceARN",
        skip_serializing_if = "String::is_empty"
    )]
    container_instance_arn: String,
    #[serde(rename = "TaskARN")]
    task_arn: String,
    task_definition_family: String,
    task_definition_revision: String,
    #[serde(rename = "ContainerID", skip_serializing_if = "String::is_empty")]
    container_id: String,
    container_name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    docker_container_name: String,
    #[serde(rename = "ImageID", skip_serializing_if = "String::is_empty")]
    image_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    image_name: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    port_mappings: Vec<PortMapping>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    networks: Vec<Network>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata_file_status: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    availability_zone: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct PortMapping {
    container_port: u16,
    container_port_range: String,
    host_port: u16,
    bind_ip: String,
    protocol: &'static str,
}

/// `<cluster>/<id>` for `...:task/<cluster>/<id>`, `<id>` for the old
/// `...:task/<id>`.
fn task_part(arn: &str) -> Option<&str> {
    let fields: Vec<&str> = arn.splitn(6, ':').collect();
    if fields.len() < 6 {
        return None;
    }
    let (_, rest) = fields[5].split_once('/')?;
    (!rest.is_empty() && !rest.split('/').any(|s| s.is_empty() || s == "..")).then_some(rest)
}

/// Pretty JSON with tabs and no trailing newline, as the Go agent writes.
fn render(content: &Content) -> String {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    if content.serialize(&mut serializer).is_err() {
        return String::new();
    }
    String::from_utf8(out).unwrap_or_default()
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> MetadataFileError + '_ {
    move |source| MetadataFileError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Writes through a temporary file, so readers never see half a file.
fn write_atomically(dir: &Path, text: &str) -> Result<(), MetadataFileError> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let temp = dir.join(format!("temp_metadata_file-{}", uuid::Uuid::new_v4()));
    let mut file = std::fs::File::create(&temp).map_err(io_error(&temp))?;
    file.write_all(text.as_bytes()).map_err(io_error(&temp))?;
    file.sync_all().map_err(io_error(&temp))?;
    std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o644))
        .map_err(io_error(&temp))?;
    let target = dir.join(FILE_NAME);
    std::fs::rename(&temp, &target).map_err(io_error(&target))
}

impl MetadataFiles {
    fn task_dir(&self, task_arn: &str) -> Result<PathBuf, MetadataFileError> {
        let part =
            task_part(task_arn).ok_or_else(|| MetadataFileError::TaskArn(task_arn.into()))?;
        Ok(self.data_dir.join("metadata").join(part))
    }

    pub fn dir(&self, subject: &Subject) -> Result<PathBuf, MetadataFileError> {
        Ok(self
            .task_dir(&subject.task_arn)?
            .join(&subject.container_name))
    }

    fn base(&self, subject: &Subject) -> Content {
        Content {
            cluster: self.cluster.clone(),
            container_instance_arn: self.instance_arn.clone(),
            task_arn: subject.task_arn.clone(),
            task_definition_family: subject.family.clone(),
            task_definition_revision: subject.revision.clone(),
            container_name: subject.container_name.clone(),
            availability_zone: self.availability_zone.clone(),
            ..Content::default()
        }
    }

    /// Before `docker create`: the first version of the file, and the
    /// mount and variable that lead the container to it.
    pub fn prepare(&self, subject: &Subject) -> Result<Mount, MetadataFileError> {
        let dir = self.dir(subject)?;
        std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        write_atomically(&dir, &render(&self.base(subject)))?;
        let inside = format!("{CONTAINER_DIR}/{}", uuid::Uuid::new_v4());
        let source = match &self.host_prefix {
            Some(prefix) => prefix.join(dir.strip_prefix("/").unwrap_or(&dir)),
            None => dir,
        };
        Ok(Mount {
            bind: format!("{}:{inside}", source.display()),
            env: (
                "ECS_CONTAINER_METADATA_FILE".into(),
                format!("{inside}/{FILE_NAME}"),
            ),
        })
    }

    /// The final file, from Docker's view of the running container.
    pub fn complete(
        &self,
        subject: &Subject,
        docker_id: &str,
        details: &ContainerDetails,
    ) -> Result<(), MetadataFileError> {
        let mut content = self.base(subject);
        content.container_id = docker_id.to_string();
        content.docker_container_name = details.name.clone();
        content.image_id = details.image_id.clone();
        content.image_name = details.image.clone();
        content.port_mappings = details
            .port_bindings
            .iter()
            .map(|b| PortMapping {
                container_port: b.container_port,
                container_port_range: String::new(),
                host_port: b.host_port,
                bind_ip: b.bind_ip.clone(),
                protocol: b.protocol.as_str(),
            })
            .collect();
        content.networks = details.networks.iter().map(Network::from).collect();
        content.metadata_file_status = Some("READY");
        let dir = self.dir(subject)?;
        std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        write_atomically(&dir, &render(&content))
    }

    /// After a start (or an agent restart): inspects the container and
    /// completes its file.
    pub async fn update(
        &self,
        docker: &dyn DockerApi,
        subject: &Subject,
        docker_id: &str,
    ) -> Result<(), MetadataFileError> {
        let details = docker
            .container_details(docker_id)
            .await?
            .filter(|d| d.running)
            .ok_or_else(|| MetadataFileError::NotRunning(docker_id.into()))?;
        self.complete(subject, docker_id, &details)
    }

    /// At task cleanup: every file of the task.
    pub fn remove_task(&self, task_arn: &str) {
        let Ok(dir) = self.task_dir(task_arn) else {
            return;
        };
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(dir = %dir.display(), error = %e, "removing metadata files failed");
            }
        }
    }
}

#[cfg(test)]
mod tests;
