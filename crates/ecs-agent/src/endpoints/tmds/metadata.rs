//! Task and container objects of task metadata v3 and v4
//! (docs/endpoints.md §8.4). Field order and omission rules follow the
//! Go agent's JSON exactly.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::docker::{ContainerDetails, NetworkDetails};
use crate::endpoints::introspection::{self, PortResponse, VolumeResponse};
use crate::endpoints::json::go_time;
use crate::engine::status::ContainerStatus;
use crate::engine::task::{Container, NetworkMode, Task};

/// Which version's shape to produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V3,
    V4,
}

impl Version {
    /// How error messages name the version.
    pub fn label(self) -> &'static str {
        match self {
            Version::V3 => "V3",
            Version::V4 => "V4",
        }
    }
}

/// What the task object needs besides the task itself.
pub struct TaskContext<'a> {
    pub cluster: &'a str,
    pub availability_zone: Option<&'a str>,
    pub details: &'a HashMap<String, ContainerDetails>,
    pub tags: Option<&'a Tags>,
}

/// Tags read for the `...WithTags` routes, and what failed.
#[derive(Debug, Clone, Default)]
pub struct Tags {
    pub task: Option<BTreeMap<String, String>>,
    pub instance: Option<BTreeMap<String, String>>,
    pub errors: Vec<TagError>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct TagError {
    pub error_field: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub error_code: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub error_message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub request_id: String,
    #[serde(rename = "ResourceARN")]
    pub resource_arn: String,
}

#[derive(Serialize, Default)]
struct TaskLimits {
    #[serde(rename = "CPU", skip_serializing_if = "Option::is_none")]
    cpu: Option<f64>,
    #[serde(rename = "Memory", skip_serializing_if = "Option::is_none")]
    memory: Option<u32>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TaskResponse {
    cluster: String,
    #[serde(rename = "TaskARN")]
    task_arn: String,
    family: String,
    revision: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    desired_status: Option<&'static str>,
    known_status: &'static str,
    /// v3's place for the containers.
    #[serde(rename = "Containers", skip_serializing_if = "Vec::is_empty")]
    containers_v3: Vec<ContainerResponse>,
    #[serde(skip_serializing_if = "Option::is_none")]
    limits: Option<TaskLimits>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pull_started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pull_stopped_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    execution_stopped_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    availability_zone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    task_tags: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    container_instance_tags: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    launch_type: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<TagError>,
    /// v4's place for the containers.
    #[serde(rename = "Containers", skip_serializing_if = "Vec::is_empty")]
    containers_v4: Vec<ContainerResponse>,
    #[serde(skip_serializing_if = "Option::is_none")]
    service_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fault_injection_enabled: Option<bool>,
}

#[derive(Serialize)]
struct ContainerLimits {
    #[serde(rename = "CPU")]
    cpu: u32,
    #[serde(rename = "Memory")]
    memory: u32,
}

#[derive(Serialize)]
struct Health {
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'static str>,
    #[serde(rename = "statusSince", skip_serializing_if = "Option::is_none")]
    status_since: Option<String>,
    #[serde(rename = "exitCode", skip_serializing_if = "Option::is_none")]
    exit_code: Option<i64>,
    #[serde(skip_serializing_if = "String::is_empty")]
    output: String,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Network {
    pub network_mode: String,
    #[serde(rename = "IPv4Addresses", skip_serializing_if = "Vec::is_empty")]
    pub ipv4_addresses: Vec<String>,
    #[serde(rename = "IPv6Addresses", skip_serializing_if = "Vec::is_empty")]
    pub ipv6_addresses: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerResponse {
    docker_id: String,
    name: String,
    docker_name: String,
    image: String,
    #[serde(rename = "ImageID")]
    image_id: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ports: Vec<PortResponse>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    labels: BTreeMap<String, String>,
    desired_status: &'static str,
    known_status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_code: Option<i64>,
    limits: ContainerLimits,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    finished_at: Option<String>,
    #[serde(rename = "Type")]
    kind: &'static str,
    /// v3's place for the networks.
    #[serde(rename = "Networks", skip_serializing_if = "Vec::is_empty")]
    networks_v3: Vec<Network>,
    #[serde(skip_serializing_if = "Option::is_none")]
    health: Option<Health>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    volumes: Vec<VolumeResponse>,
    #[serde(skip_serializing_if = "Option::is_none")]
    log_driver: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    log_options: Option<BTreeMap<String, String>>,
    #[serde(rename = "ContainerARN", skip_serializing_if = "Option::is_none")]
    container_arn: Option<String>,
    /// v4's place for the networks.
    #[serde(rename = "Networks", skip_serializing_if = "Vec::is_empty")]
    networks_v4: Vec<Network>,
    #[serde(skip_serializing_if = "Option::is_none")]
    restart_count: Option<u32>,
}

/// Networks from Docker's settings: one per network the container is on,
/// or one from the network mode when Docker lists none.
pub fn networks(task: &Task, details: Option<&ContainerDetails>) -> Vec<Network> {
    let Some(d) = details else {
        return Vec::new();
    };
    if d.networks.is_empty() {
        let mode = match task.spec.network_mode {
            NetworkMode::Host => "host",
            NetworkMode::None => "none",
            NetworkMode::Bridge | NetworkMode::Awsvpc => "bridge",
        };
        return vec![Network {
            network_mode: mode.to_string(),
            ipv4_addresses: vec![String::new()],
            ipv6_addresses: Vec::new(),
        }];
    }
    d.networks.iter().map(Network::from).collect()
}

/// One Docker network: always one IPv4 entry (which may be empty, as for
/// host mode), and the global IPv6 address when there is one. The metadata
/// file writes the same object.
impl From<&NetworkDetails> for Network {
    fn from(n: &NetworkDetails) -> Self {
        Network {
            network_mode: n.name.clone(),
            ipv4_addresses: vec![n.ipv4.clone()],
            ipv6_addresses: if n.ipv6.is_empty() {
                Vec::new()
            } else {
                vec![n.ipv6.clone()]
            },
        }
    }
}

fn health(container: &Container, details: Option<&ContainerDetails>) -> Option<Health> {
    if !container.spec.docker_health_check {
        return None;
    }
    let h = details.and_then(|d| d.health.as_ref());
    Some(Health {
        status: match h.map(|h| h.status.as_str()) {
            Some("healthy") => Some("HEALTHY"),
            Some("unhealthy") => Some("UNHEALTHY"),
            _ => None,
        },
        status_since: container.health_since_ms.map(go_time),
        exit_code: h.and_then(|h| h.exit_code).filter(|c| *c != 0),
        output: h.map(|h| h.output.clone()).unwrap_or_default(),
    })
}

pub fn container_response(
    task: &Task,
    container: &Container,
    details: Option<&ContainerDetails>,
    version: Version,
) -> ContainerResponse {
    let v4 = version == Version::V4;
    let networks = networks(task, details);
    ContainerResponse {
        docker_id: container.docker_id.clone().unwrap_or_default(),
        name: container.spec.name.clone(),
        docker_name: container.docker_name.clone().unwrap_or_default(),
        image: container.spec.image.clone(),
        image_id: details.map(|d| d.image_id.clone()).unwrap_or_default(),
        ports: introspection::ports(container, v4),
        labels: details.map(|d| d.labels.clone()).unwrap_or_default(),
        desired_status: container.desired_status.name(),
        known_status: container.known_status.name(),
        exit_code: container.exit_code,
        limits: ContainerLimits {
            cpu: container.spec.cpu.max(2),
            memory: container.spec.memory_mib,
        },
        created_at: details.and_then(|d| d.created_at_ms).map(go_time),
        started_at: container.started_at_ms.map(go_time),
        finished_at: container
            .finished_at_ms
            .filter(|_| container.known_status == ContainerStatus::Stopped)
            .map(go_time),
        kind: "NORMAL",
        networks_v3: if v4 { Vec::new() } else { networks.clone() },
        health: health(container, details),
        volumes: introspection::volumes(details),
        log_driver: details
            .filter(|_| v4)
            .map(|d| d.log_driver.clone())
            .filter(|d| !d.is_empty()),
        log_options: details
            .filter(|_| v4)
            .map(|d| d.log_options.clone())
            .filter(|o| !o.is_empty()),
        container_arn: container.spec.container_arn.clone().filter(|_| v4),
        networks_v4: if v4 { networks } else { Vec::new() },
        restart_count: container
            .spec
            .restart_policy
            .as_ref()
            .filter(|p| p.enabled)
            .map(|_| container.restart_count),
    }
}

pub fn task_response(task: &Task, ctx: &TaskContext<'_>, version: Version) -> TaskResponse {
    let v4 = version == Version::V4;
    let mut containers: Vec<&Container> = task.containers.iter().collect();
    // v4 lists containers that are not created yet last.
    if v4 {
        containers.sort_by_key(|c| c.docker_id.is_none());
    }
    let containers: Vec<ContainerResponse> = containers
        .into_iter()
        .map(|c| {
            let d = c.docker_id.as_ref().and_then(|id| ctx.details.get(id));
            container_response(task, c, d, version)
        })
        .collect();
    let limits = (task.spec.cpu > 0.0 || task.spec.memory_mib > 0).then(|| TaskLimits {
        cpu: Some(task.spec.cpu).filter(|c| *c > 0.0),
        memory: Some(task.spec.memory_mib).filter(|m| *m > 0),
    });
    let (containers_v3, containers_v4) = if v4 {
        (Vec::new(), containers)
    } else {
        (containers, Vec::new())
    };
    TaskResponse {
        cluster: ctx.cluster.to_string(),
        task_arn: task.spec.arn.clone(),
        family: task.spec.family.clone(),
        revision: task.spec.version.clone(),
        desired_status: Some(task.desired_status.name()),
        known_status: task.known_status.name(),
        containers_v3,
        limits,
        pull_started_at: task.pull_started_at_ms.map(go_time),
        pull_stopped_at: task.pull_stopped_at_ms.map(go_time),
        execution_stopped_at: task.execution_stopped_at_ms.map(go_time),
        availability_zone: ctx.availability_zone.map(str::to_string),
        task_tags: ctx.tags.and_then(|t| t.task.clone()),
        container_instance_tags: ctx.tags.and_then(|t| t.instance.clone()),
        launch_type: v4.then(|| {
            task.spec
                .launch_type
                .clone()
                .unwrap_or_else(|| "EC2".into())
        }),
        errors: if v4 {
            ctx.tags.map(|t| t.errors.clone()).unwrap_or_default()
        } else {
            Vec::new()
        },
        containers_v4,
        service_name: task
            .spec
            .service_name
            .clone()
            .filter(|s| !s.is_empty() && v4),
        fault_injection_enabled: v4.then_some(false),
    }
}

#[cfg(test)]
mod tests;
