//! Introspection on port 51678 (docs/endpoints.md §6): agent
//! metadata, the tasks the agent manages, and the license text.

use std::collections::HashMap;

use serde::Serialize;

use super::server::{Reply, Request};
use super::{json, paths, AgentView};
use crate::docker::{ContainerDetails, DockerApi, DockerClient};
use crate::engine::status::{ContainerStatus, TaskStatus};
use crate::engine::task::{Container, Task};
use crate::version;

const COMMANDS: &str = r#"{"AvailableCommands":["/v1/metadata","/v1/tasks","/license"]}"#;

/// The license text `/license` serves: LICENSE, NOTICE and THIRD-PARTY,
/// embedded so the route cannot fail on an image that lacks the files.
pub fn license_text() -> String {
    let separator = format!("\n{}\n", "=".repeat(80));
    [
        include_str!("../../../../LICENSE"),
        include_str!("../../../../NOTICE"),
        include_str!("../../../../THIRD-PARTY"),
    ]
    .join(&separator)
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Metadata<'a> {
    cluster: &'a str,
    container_instance_arn: Option<&'a str>,
    version: String,
    /// Present, and false, only while checkpoint writes fail: the agent
    /// then holds payloads unacked (docs/architecture.md §5.4).
    #[serde(skip_serializing_if = "Option::is_none")]
    checkpoint_healthy: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    checkpoint_error: Option<String>,
}

/// One task in `/v1/tasks`.
#[derive(Serialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct TaskResponse {
    arn: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    desired_status: Option<&'static str>,
    known_status: &'static str,
    family: String,
    version: String,
    containers: Option<Vec<ContainerResponse>>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ContainerResponse {
    docker_id: String,
    docker_name: String,
    name: String,
    image: String,
    #[serde(rename = "ImageID")]
    image_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    started_at: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ports: Vec<PortResponse>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    volumes: Vec<VolumeResponse>,
    #[serde(skip_serializing_if = "Option::is_none")]
    restart_count: Option<u32>,
}

/// A port in `/v1/tasks` and the task metadata responses; every part is
/// left out when empty.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct PortResponse {
    #[serde(skip_serializing_if = "is_zero")]
    pub container_port: u16,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub protocol: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub host_port: u16,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub host_ip: String,
}

fn is_zero(v: &u16) -> bool {
    *v == 0
}

#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct VolumeResponse {
    pub docker_name: String,
    pub source: String,
    pub destination: String,
}

/// Known bindings, or the definition's mappings when there are none yet.
pub fn ports(container: &Container, with_host_ip: bool) -> Vec<PortResponse> {
    if container.port_bindings.is_empty() {
        return container
            .spec
            .port_mappings
            .iter()
            .map(|p| PortResponse {
                container_port: p.container_port,
                protocol: p.protocol.as_str().to_string(),
                host_port: p.host_port,
                host_ip: String::new(),
            })
            .collect();
    }
    container
        .port_bindings
        .iter()
        .map(|b| PortResponse {
            container_port: b.container_port,
            protocol: b.protocol.as_str().to_string(),
            host_port: b.host_port,
            host_ip: if with_host_ip {
                b.bind_ip.clone()
            } else {
                String::new()
            },
        })
        .collect()
}

pub fn volumes(details: Option<&ContainerDetails>) -> Vec<VolumeResponse> {
    details
        .map(|d| {
            d.mounts
                .iter()
                .map(|m| VolumeResponse {
                    docker_name: m.name.clone(),
                    source: m.source.clone(),
                    destination: m.destination.clone(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Live Docker details of every container of these tasks, by Docker ID.
pub async fn gather_details(
    docker: Option<&DockerClient>,
    tasks: &[&Task],
) -> HashMap<String, ContainerDetails> {
    let Some(docker) = docker else {
        return HashMap::new();
    };
    let ids: Vec<String> = tasks
        .iter()
        .flat_map(|t| t.containers.iter().filter_map(|c| c.docker_id.clone()))
        .collect();
    let lookups = ids.iter().map(|id| async move {
        let details = docker.container_details(id).await.ok().flatten();
        (id.clone(), details)
    });
    futures_util::future::join_all(lookups)
        .await
        .into_iter()
        .filter_map(|(id, d)| Some((id, d?)))
        .collect()
}

fn task_response(task: &Task, details: &HashMap<String, ContainerDetails>) -> TaskResponse {
    let known = task.known_status;
    let desired = task.desired_status;
    let misleading = (known == TaskStatus::Stopped && desired != TaskStatus::Stopped)
        || (known == TaskStatus::Running && desired.backend_string() == "PENDING");
    TaskResponse {
        arn: task.spec.arn.clone(),
        desired_status: (!misleading).then(|| desired.backend_string()),
        known_status: known.backend_string(),
        family: task.spec.family.clone(),
        version: task.spec.version.clone(),
        containers: Some(
            task.containers
                .iter()
                .map(|c| {
                    let d = c.docker_id.as_ref().and_then(|id| details.get(id));
                    ContainerResponse {
                        docker_id: c.docker_id.clone().unwrap_or_default(),
                        docker_name: c.docker_name.clone().unwrap_or_default(),
                        name: c.spec.name.clone(),
                        image: c.spec.image.clone(),
                        image_id: d.map(|d| d.image_id.clone()).unwrap_or_default(),
                        created_at: d.and_then(|d| d.created_at_ms).map(json::go_time),
                        started_at: c
                            .started_at_ms
                            .filter(|_| c.known_status >= ContainerStatus::Running)
                            .map(json::go_time),
                        ports: ports(c, true),
                        volumes: volumes(d),
                        restart_count: c
                            .spec
                            .restart_policy
                            .as_ref()
                            .filter(|p| p.enabled)
                            .map(|_| c.restart_count),
                    }
                })
                .collect(),
        ),
    }
}

/// The body of every `/v1/tasks` error.
fn empty_task_error(status: u16) -> Reply {
    let empty = TaskResponse {
        arn: String::new(),
        desired_status: None,
        known_status: "",
        family: String::new(),
        version: String::new(),
        containers: None,
    };
    let body = json::go_json(&empty);
    tracing::error!(status, body, "introspection request failed");
    Reply::text(status, "application/json", body)
}

/// Which tasks a `/v1/tasks` query selects.
enum Selection<'a> {
    All,
    One(&'a Task),
    Error(u16),
}

fn select<'a>(req: &Request, tasks: &'a [Task]) -> Selection<'a> {
    let task_arn = req.query_param("taskarn");
    let docker_id = req.query_param("dockerid");
    match (task_arn, docker_id) {
        (Some(_), Some(_)) => Selection::Error(400),
        (None, None) => Selection::All,
        (Some(arn), None) => match tasks.iter().find(|t| t.spec.arn == arn) {
            Some(t) => Selection::One(t),
            None => Selection::Error(404),
        },
        (None, Some(id)) => {
            let matches = |c: &Container| {
                c.docker_id.as_deref().is_some_and(|full| {
                    if id.len() > 12 {
                        full == id
                    } else {
                        full.starts_with(&id)
                    }
                })
            };
            let found: Vec<&Task> = tasks
                .iter()
                .filter(|t| t.containers.iter().any(matches))
                .collect();
            match found.as_slice() {
                [] => Selection::Error(404),
                [one] => Selection::One(one),
                _ => Selection::Error(400),
            }
        }
    }
}

/// Answers one request. `details` holds the Docker details of the tasks'
/// containers (see [`gather_details`]).
pub fn route(
    req: &Request,
    view: &AgentView,
    tasks: &[Task],
    details: &HashMap<String, ContainerDetails>,
) -> Reply {
    if let Some(target) = paths::redirect_target(&req.path, req.query.as_deref()) {
        return Reply::moved_to(&target);
    }
    match req.path.as_str() {
        "/v1/metadata" => {
            let checkpoint_error = view.checkpoint.last_error();
            Reply::json(
                200,
                &Metadata {
                    cluster: &view.cluster,
                    container_instance_arn: Some(view.instance_arn.as_str())
                        .filter(|a| !a.is_empty()),
                    version: version::one_line(),
                    checkpoint_healthy: checkpoint_error.as_ref().map(|_| false),
                    checkpoint_error,
                },
            )
        }
        "/v1/tasks" => match select(req, tasks) {
            Selection::Error(status) => empty_task_error(status),
            Selection::One(task) => Reply::json(200, &task_response(task, details)),
            Selection::All => {
                #[derive(Serialize)]
                struct All {
                    #[serde(rename = "Tasks")]
                    tasks: Vec<TaskResponse>,
                }
                Reply::json(
                    200,
                    &All {
                        tasks: tasks.iter().map(|t| task_response(t, details)).collect(),
                    },
                )
            }
        },
        "/license" => Reply::text(200, "text/plain", license_text()),
        _ => Reply::text(200, "text/plain; charset=utf-8", COMMANDS),
    }
}

/// Serves introspection until `stop`.
pub async fn run(
    view: AgentView,
    docker: Option<DockerClient>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let addr =
        std::net::SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, super::INTROSPECTION_PORT));
    let handler = move |req: Request| {
        let view = view.clone();
        let docker = docker.clone();
        async move {
            let tasks = view.tasks.tasks().await;
            let details = if req.path == "/v1/tasks" {
                let selected: Vec<&Task> = match select(&req, &tasks) {
                    Selection::All => tasks.iter().collect(),
                    Selection::One(t) => vec![t],
                    Selection::Error(_) => Vec::new(),
                };
                gather_details(docker.as_ref(), &selected).await
            } else {
                HashMap::new()
            };
            route(&req, &view, &tasks, &details)
        }
    };
    super::server::serve("introspection", addr, Default::default(), handler, stop).await;
}

#[cfg(test)]
mod tests;
