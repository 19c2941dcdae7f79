//! TCS wire types: a struct per structure shape of `tcs-api-2.json`, and [`TcsMessage`], the
//! frames of the TCS websocket in both directions.
//!
//! The same rules as in [`crate::acs`] hold: optional members omitted when absent, unknown members
//! ignored, fields in alphabetical order of their wire names, enum-typed members kept as `String`.
//!
//! * Timestamps (`timestamp`, `statusSince`, `lastUpdated`, `lastStatusChange`) are JSON numbers:
//!   seconds since the epoch with a millisecond fraction, hence `f64` (docs/protocols.md §5.7).
//! * Doubles are written as Go writes them (`0`, not `0.0`), see [`go_float`], so the frames the
//!   agent sends are byte-comparable with the Go agent's.
//! * `ULong` members are unsigned in meaning but `long` in the model; they are `i64` because the
//!   agent caps them at 2^63-1 and moves the rest into the `overflow*` members
//!   (docs/protocols.md §5.7).
//!
//! Agent → server frames are preceded by a signed header block on the wire; see
//! [`crate::envelope::split_signed_frame`] and [`crate::envelope::join_signed_frame`].
//!
//! Shapes whose only member is `message` (the acks, the exceptions and
//! `StopTelemetrySessionMessage`) are aliases of [`MessageBody`].

use serde::{Deserialize, Serialize};

use crate::envelope::{frame_enum, go_float, MessageBody};

/// Server's acknowledgement of a `PublishHealthRequest`; it also keeps the connection alive.
pub type AckPublishHealth = MessageBody;

/// Server's acknowledgement of a `PublishInstanceStatusRequest`; it also keeps the connection alive.
pub type AckPublishInstanceStatus = MessageBody;

/// Server's acknowledgement of a `PublishMetricsRequest`; it also keeps the connection alive.
pub type AckPublishMetric = MessageBody;

/// The server rejected a request as malformed; ignored in-band.
pub type BadRequestException = MessageBody;

/// CPU or memory samples of one publish interval, aggregated the way CloudWatch stores them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CWStatsSet {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "go_float::option"
    )]
    pub max: Option<f64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "go_float::option"
    )]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_count: Option<i64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "go_float::option"
    )]
    pub sum: Option<f64>,
}

/// Docker health-check status of one container, so services can replace unhealthy tasks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerHealth {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "go_float::option"
    )]
    pub status_since: Option<f64>,
}

/// Utilisation of one container over one publish interval.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerMetric {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_stats_set: Option<CWStatsSet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub general_metrics_payload: Option<Vec<GeneralMetricsWrapper>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_stats_set: Option<CWStatsSet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_stats_set: Option<NetworkStatsSet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_stats_set: Option<RestartStatsSet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_stats_set: Option<StorageStatsSet>,
}

/// Key/value dimension that qualifies a general (Service Connect) metric.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Dimension {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// Ephemeral storage use of a task; defined for Fargate, never filled by the Docker agent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EphemeralStorageMetrics {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_utilized: Option<ULongStatsSet>,
}

/// One Service Connect (or other general) metric, in whichever value form suits it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GeneralMetric {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric_counts: Option<Vec<i64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric_name: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "go_float::option"
    )]
    pub metric_value_double: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric_value_long: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric_value_stats_set: Option<CWStatsSet>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "go_float::option_vec"
    )]
    pub metric_values: Option<Vec<f64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

/// General metrics that share the same dimensions and metric type.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GeneralMetricsWrapper {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<Vec<Dimension>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub general_metrics: Option<Vec<GeneralMetric>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric_type: Option<String>,
}

/// Sender and batch of a health report, so the server can reassemble the batches.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_instance: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fin: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
}

/// Server keep-alive on TCS; it carries no id and the agent never replies.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatMessage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy: Option<bool>,
}

/// Instance-level metrics; defined in the model, never filled by the Docker agent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceMetrics {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub general_metrics_payload: Option<Vec<GeneralMetricsWrapper>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<InstanceStorageMetrics>,
}

/// Result of one instance health check (for example the container runtime), for instance health in the console.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceStatus {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "go_float::option"
    )]
    pub last_status_change: Option<f64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "go_float::option"
    )]
    pub last_updated: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#type: Option<String>,
}

/// Sender of an instance status report, with a fresh request id per report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceStatusMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_instance: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// Instance file-system use in percent; defined in the model, never filled by the Docker agent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceStorageMetrics {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "go_float::option"
    )]
    pub data_filesystem: Option<f64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "go_float::option"
    )]
    pub root_filesystem: Option<f64>,
}

/// The server rejected a request parameter; ignored in-band.
pub type InvalidParameterException = MessageBody;

/// Sender and batch of a metrics report, with the idle and fin flags that frame a collection.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricsMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_instance: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fin: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
}

/// Network counters and rates of a container (or of the task in awsvpc mode).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkStatsSet {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rx_bytes: Option<ULongStatsSet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rx_bytes_per_second: Option<UDoubleCWStatsSet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rx_dropped: Option<ULongStatsSet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rx_errors: Option<ULongStatsSet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rx_packets: Option<ULongStatsSet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_bytes: Option<ULongStatsSet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_bytes_per_second: Option<UDoubleCWStatsSet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_dropped: Option<ULongStatsSet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_errors: Option<ULongStatsSet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_packets: Option<ULongStatsSet>,
}

/// Agent's periodic report of container health-check statuses.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublishHealthRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<HealthMetadata>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks: Option<Vec<TaskHealth>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "go_float::option"
    )]
    pub timestamp: Option<f64>,
}

/// Agent's report of its instance health checks, sent after ACS heartbeats trigger them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublishInstanceStatusRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<InstanceStatusMetadata>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statuses: Option<Vec<InstanceStatus>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "go_float::option"
    )]
    pub timestamp: Option<f64>,
}

/// Agent's periodic utilisation report, one batch of one collection.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublishMetricsRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_metrics: Option<InstanceMetrics>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<MetricsMetadata>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_metrics: Option<Vec<TaskMetric>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "go_float::option"
    )]
    pub timestamp: Option<f64>,
}

/// The server rejected a resource named in a request; ignored in-band.
pub type ResourceValidationException = MessageBody;

/// How often a container was restarted in place by its restart policy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestartStatsSet {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_count: Option<i64>,
}

/// The server failed; ignored in-band, the agent keeps publishing.
pub type ServerException = MessageBody;

/// Session start described by the model; the Go agent never sends it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartTelemetrySessionRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_instance: Option<String>,
}

/// Session end described by the model; the Go agent ignores it.
pub type StopTelemetrySessionMessage = MessageBody;

/// Block-I/O byte counters of a container.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StorageStatsSet {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_size_bytes: Option<ULongStatsSet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_size_bytes: Option<ULongStatsSet>,
}

/// Health statuses of the tracked containers of one task.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskHealth {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub containers: Option<Vec<ContainerHealth>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_definition_family: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_definition_version: Option<String>,
}

/// Utilisation of one task and its containers over one publish interval.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskMetric {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_metrics: Option<Vec<ContainerMetric>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral_storage_metrics: Option<EphemeralStorageMetrics>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_connect_metrics_wrapper: Option<Vec<GeneralMetricsWrapper>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_definition_family: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_definition_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_metrics: Option<Vec<VolumeMetric>>,
}

/// Aggregated non-negative rates (for example bytes per second) over one publish interval.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UDoubleCWStatsSet {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "go_float::option"
    )]
    pub max: Option<f64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "go_float::option"
    )]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_count: Option<i64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "go_float::option"
    )]
    pub sum: Option<f64>,
}

/// Aggregated unsigned counters, with overflow fields for values above 2^63-1.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ULongStatsSet {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overflow_max: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overflow_min: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overflow_sum: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_count: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sum: Option<i64>,
}

/// Use and size of one task volume.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeMetric {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<UDoubleCWStatsSet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utilized: Option<UDoubleCWStatsSet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_name: Option<String>,
}

frame_enum! {
    /// One TCS frame, in either direction (docs/protocols.md §5.2). The variant name is the frame
    /// `type`.
    pub enum TcsMessage {
        /// Agent → server utilisation report; answered with `AckPublishMetric`.
        PublishMetricsRequest(PublishMetricsRequest),
        /// Agent → server container health report; answered with `AckPublishHealth`.
        PublishHealthRequest(PublishHealthRequest),
        /// Agent → server instance health report; answered with `AckPublishInstanceStatus`.
        PublishInstanceStatusRequest(PublishInstanceStatusRequest),
        /// Server → agent keep-alive; never answered.
        HeartbeatMessage(HeartbeatMessage),
        /// Server → agent acknowledgement of a metrics report.
        AckPublishMetric(AckPublishMetric),
        /// Server → agent acknowledgement of a health report.
        AckPublishHealth(AckPublishHealth),
        /// Server → agent acknowledgement of an instance status report.
        AckPublishInstanceStatus(AckPublishInstanceStatus),
        /// In the model only; the Go agent never sends it.
        StartTelemetrySessionRequest(StartTelemetrySessionRequest),
        /// In the model only; the Go agent ignores it.
        StopTelemetrySessionMessage(StopTelemetrySessionMessage),
    }
    exceptions {
        /// Ignored in-band; meaningful as a handshake error body.
        ServerException,
        /// Ignored in-band; meaningful as a handshake error body.
        BadRequestException,
        /// Ignored in-band; meaningful as a handshake error body.
        ResourceValidationException,
        /// Ignored in-band; meaningful as a handshake error body.
        InvalidParameterException,
    }
}
