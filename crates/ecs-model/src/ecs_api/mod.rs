//! Serde types for the subset of the Amazon ECS JSON 1.1 API that the local
//! control plane serves and the agent calls (shapes of botocore's
//! `ecs/2014-11-13/service-2.json`).
//!
//! Member names are the exact wire names. Every optional member is an
//! `Option` that is left out when absent. Unknown members are ignored, except
//! in task definitions, whose shapes keep every member they do not type in an
//! `extra` map so that `DescribeTaskDefinition` echoes what the user sent.
//! Timestamps are epoch seconds as JSON numbers (fractions allowed), so they
//! are `f64`.

mod cluster;
mod container_instance;
mod service;
mod state_change;
mod task;
mod task_definition;

pub use cluster::*;
pub use container_instance::*;
pub use service::*;
pub use state_change::*;
pub use task::*;
pub use task_definition::*;

use serde::{Deserialize, Serialize};

/// The `X-Amz-Target` prefix of every ECS API action.
pub const TARGET_PREFIX: &str = "AmazonEC2ContainerServiceV20141113.";

/// The content type of every ECS API request and response body.
pub const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// Members that a shape does not type, kept as they came.
pub type Extra = serde_json::Map<String, serde_json::Value>;

/// The body of an error response: `{"__type":"ClusterNotFoundException","message":"..."}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    #[serde(rename = "__type")]
    pub error_type: String,
    #[serde(default)]
    pub message: String,
}

/// `KeyValuePair` (environment variables, statistics, details).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyValuePair {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// `Tag`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tag {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// `Attribute` (container instance attributes, task definition requirements).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attribute {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_id: Option<String>,
}

/// `Failure`: one entry of the `failures` list of the describe and run calls.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// `Attachment` (cluster and task attachments).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub attachment_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Vec<KeyValuePair>>,
}

/// `NetworkBinding` (task containers and state changes).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkBinding {
    #[serde(default, rename = "bindIP", skip_serializing_if = "Option::is_none")]
    pub bind_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_port: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_port_range: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port_range: Option<String>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn error_body_uses_dunder_type() {
        let body = ErrorBody {
            error_type: "ClusterNotFoundException".into(),
            message: "Cluster not found.".into(),
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"__type":"ClusterNotFoundException","message":"Cluster not found."}"#
        );
    }

    #[test]
    fn network_binding_bind_ip_name() {
        let b: NetworkBinding =
            serde_json::from_str(r#"{"bindIP":"0.0.0.0","containerPort":80,"hostPort":8080}"#)
                .unwrap();
        assert_eq!(b.bind_ip.as_deref(), Some("0.0.0.0"));
        assert!(serde_json::to_string(&b).unwrap().contains("\"bindIP\""));
    }
}
