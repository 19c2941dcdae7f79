//! A state change the agent owes the backend: one `SubmitTaskStateChange`
//! call, queued in the store's outbox in the same transaction as the state
//! it reports, and removed only once the backend accepted it.

use serde::{Deserialize, Serialize};

use crate::engine::task::Protocol;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskStateChange {
    pub task_arn: String,
    /// Backend status string: PENDING, RUNNING or STOPPED.
    pub status: String,
    /// Always sent, empty when there is nothing to say (as the Go agent does).
    pub reason: String,
    pub containers: Vec<ContainerStateChange>,
    pub pull_started_at_ms: Option<i64>,
    pub pull_stopped_at_ms: Option<i64>,
    pub execution_stopped_at_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStateChange {
    pub container_name: String,
    pub runtime_id: Option<String>,
    pub status: String,
    pub exit_code: Option<i64>,
    pub reason: Option<String>,
    pub image_digest: Option<String>,
    pub network_bindings: Vec<NetworkBinding>,
}

/// A port binding as reported: one container port, or a whole
/// `containerPortRange` consolidated into one entry (docs/engine.md §13.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkBinding {
    pub bind_ip: String,
    pub protocol: Protocol,
    pub container_port: Option<u16>,
    pub host_port: Option<u16>,
    pub container_port_range: Option<String>,
    pub host_port_range: Option<String>,
}

/// Cuts `text` to at most `max` bytes on a character boundary; the backend
/// rejects longer values.
pub fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("abcdef", 3), "abc");
        assert_eq!(truncate("aé", 2), "a");
    }
}
