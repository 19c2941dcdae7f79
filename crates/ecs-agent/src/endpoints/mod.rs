//! The agent's local HTTP endpoints: introspection on port 51678 for
//! operators, and on 127.0.0.1:51679 the credentials and task metadata
//! endpoints containers reach as 169.254.170.2 (docs/endpoints.md §6–§9).

pub mod audit;
#[cfg(test)]
mod fixtures;
pub mod introspection;
pub mod json;
pub mod paths;
pub mod server;
pub mod tmds;

use std::sync::Arc;

use crate::credentials::CredentialsStore;
use crate::docker::DockerClient;
use crate::ecs_client::EcsClient;
use crate::engine::task::Task;
use crate::engine::EngineHandle;

/// Introspection's fixed port (the Go agent's, all interfaces).
pub const INTROSPECTION_PORT: u16 = 51678;
/// The credentials and metadata port (loopback only).
pub const TASK_ENDPOINT_PORT: u16 = 51679;

/// Where the endpoints read the agent's state from. The engine is the
/// production source; tests give a fixed list.
#[derive(Clone)]
pub enum TaskSource {
    Engine(EngineHandle),
    Fixed(Arc<Vec<Task>>),
}

impl TaskSource {
    pub async fn tasks(&self) -> Vec<Task> {
        match self {
            TaskSource::Engine(engine) => engine.snapshot().await.unwrap_or_default(),
            TaskSource::Fixed(tasks) => tasks.as_ref().clone(),
        }
    }
}

/// What both servers know about the instance.
#[derive(Clone)]
pub struct AgentView {
    pub cluster: String,
    pub instance_arn: String,
    pub availability_zone: Option<String>,
    pub tasks: TaskSource,
    /// Whether the last checkpoint write failed; `/v1/metadata` shows it.
    pub checkpoint: crate::store::Health,
}

/// Everything the task endpoint needs besides the agent view.
#[derive(Clone)]
pub struct TaskEndpointDeps {
    pub view: AgentView,
    pub credentials: Arc<CredentialsStore>,
    /// Live container details and stats; `None` in tests without Docker.
    pub docker: Option<DockerClient>,
    /// For the `...WithTags` routes.
    pub ecs: Option<EcsClient>,
    pub stats: Arc<crate::metrics::Collector>,
    pub audit: Arc<audit::AuditLog>,
    pub throttle: Arc<tmds::throttle::Throttle>,
    /// `ECS_DISABLE_TASK_METADATA_AZ`.
    pub az_disabled: bool,
}
