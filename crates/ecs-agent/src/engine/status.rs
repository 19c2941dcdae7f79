//! Container and task statuses, their order, and how they map to each other
//! and to the strings the ECS backend understands (docs/engine.md §3).

use serde::{Deserialize, Serialize};

/// Where a container is in its life. The order matters: statuses only move
/// forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ContainerStatus {
    None,
    ManifestPulled,
    Pulled,
    Created,
    Running,
    ResourcesProvisioned,
    Stopped,
}

impl ContainerStatus {
    /// The status's own name, as the Go agent writes it in its checkpoint
    /// and the task metadata endpoint prints it.
    pub fn name(self) -> &'static str {
        match self {
            ContainerStatus::None => "NONE",
            ContainerStatus::ManifestPulled => "MANIFEST_PULLED",
            ContainerStatus::Pulled => "PULLED",
            ContainerStatus::Created => "CREATED",
            ContainerStatus::Running => "RUNNING",
            ContainerStatus::ResourcesProvisioned => "RESOURCES_PROVISIONED",
            ContainerStatus::Stopped => "STOPPED",
        }
    }

    /// The backend's view: everything before RUNNING is PENDING.
    pub fn backend_string(self) -> &'static str {
        match self {
            ContainerStatus::Running => "RUNNING",
            ContainerStatus::Stopped => "STOPPED",
            _ => "PENDING",
        }
    }

    /// The transition after `self` on the way to RUNNING.
    pub fn next(self) -> ContainerStatus {
        match self {
            ContainerStatus::None => ContainerStatus::ManifestPulled,
            ContainerStatus::ManifestPulled => ContainerStatus::Pulled,
            ContainerStatus::Pulled => ContainerStatus::Created,
            ContainerStatus::Created => ContainerStatus::Running,
            ContainerStatus::Running
            | ContainerStatus::ResourcesProvisioned
            | ContainerStatus::Stopped => ContainerStatus::Stopped,
        }
    }

    /// Task status implied by a container at this status (docs/engine.md
    /// §3.4).
    pub fn task_status(self) -> TaskStatus {
        match self {
            ContainerStatus::None => TaskStatus::None,
            ContainerStatus::ManifestPulled | ContainerStatus::Pulled => TaskStatus::ManifestPulled,
            ContainerStatus::Created => TaskStatus::Created,
            ContainerStatus::Running => TaskStatus::Running,
            ContainerStatus::ResourcesProvisioned => TaskStatus::Created,
            ContainerStatus::Stopped => TaskStatus::Stopped,
        }
    }
}

/// Where a task is in its life; derived from its containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskStatus {
    None,
    ManifestPulled,
    Created,
    Running,
    Stopped,
}

impl TaskStatus {
    /// The status's own name (see [`ContainerStatus::name`]).
    pub fn name(self) -> &'static str {
        match self {
            TaskStatus::None => "NONE",
            TaskStatus::ManifestPulled => "MANIFEST_PULLED",
            TaskStatus::Created => "CREATED",
            TaskStatus::Running => "RUNNING",
            TaskStatus::Stopped => "STOPPED",
        }
    }

    pub fn backend_string(self) -> &'static str {
        match self {
            TaskStatus::Running => "RUNNING",
            TaskStatus::Stopped => "STOPPED",
            _ => "PENDING",
        }
    }

    /// The container status a task at this desired status asks for.
    pub fn container_status(self) -> ContainerStatus {
        match self {
            TaskStatus::None => ContainerStatus::None,
            TaskStatus::ManifestPulled => ContainerStatus::ManifestPulled,
            TaskStatus::Created => ContainerStatus::Created,
            TaskStatus::Running => ContainerStatus::Running,
            TaskStatus::Stopped => ContainerStatus::Stopped,
        }
    }

    /// ACS `desiredStatus` strings (docs/protocols.md §4.6): a few legacy
    /// spellings are accepted, anything else rejects the task.
    pub fn parse_desired(text: &str) -> Option<TaskStatus> {
        Some(match text {
            "NONE" | "UNKNOWN" => TaskStatus::None,
            "MANIFEST_PULLED" => TaskStatus::ManifestPulled,
            "CREATED" => TaskStatus::Created,
            "RUNNING" => TaskStatus::Running,
            "STOPPED" | "DEAD" => TaskStatus::Stopped,
            _ => return None,
        })
    }
}

/// Docker health check status of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HealthStatus {
    #[default]
    Unknown,
    Healthy,
    Unhealthy,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_statuses_are_ordered() {
        use ContainerStatus::*;
        let order = [
            None,
            ManifestPulled,
            Pulled,
            Created,
            Running,
            ResourcesProvisioned,
            Stopped,
        ];
        assert!(order.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(Created.next(), Running);
        assert_eq!(Running.next(), Stopped);
    }

    #[test]
    fn backend_strings() {
        assert_eq!(ContainerStatus::Pulled.backend_string(), "PENDING");
        assert_eq!(ContainerStatus::Running.backend_string(), "RUNNING");
        assert_eq!(TaskStatus::Created.backend_string(), "PENDING");
        assert_eq!(TaskStatus::Stopped.backend_string(), "STOPPED");
    }

    #[test]
    fn desired_status_parsing() {
        assert_eq!(TaskStatus::parse_desired("DEAD"), Some(TaskStatus::Stopped));
        assert_eq!(TaskStatus::parse_desired("UNKNOWN"), Some(TaskStatus::None));
        assert_eq!(TaskStatus::parse_desired("running"), None);
    }
}
