//! The JSON records of the Go agent's checkpoint (agent 1.105), in the
//! field order the Go agent writes them, so that an exported file reads as
//! the Go agent's own. Members this agent does not interpret are kept as
//! raw JSON; members a newer Go agent may add land in `extra`, where the
//! import refuses any that carries a value (docs/operations.md §11).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The six buckets the Go agent creates.
pub const BUCKETS: [&str; 6] = [
    "containers",
    "eniattachments",
    "images",
    "metadata",
    "resattachments",
    "tasks",
];

/// `metadata` keys; every value is a JSON string.
pub mod keys {
    pub const AGENT_VERSION: &str = "agent-version";
    pub const AVAILABILITY_ZONE: &str = "availability-zone";
    pub const CLUSTER: &str = "cluster-name";
    pub const CONTAINER_INSTANCE_ARN: &str = "container-instance-arn";
    pub const EC2_INSTANCE_ID: &str = "ec2-instance-id";
    pub const TASK_MANIFEST_SEQ_NUM: &str = "task-manifest-seq-num";
}

/// Go's zero `time.Time`, written for "never".
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// A value of the `tasks` bucket (key: the task ID).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GoTask {
    #[serde(rename = "Arn")]
    pub arn: String,
    #[serde(rename = "Family", default)]
    pub family: String,
    #[serde(rename = "Version", default)]
    pub version: String,
    #[serde(rename = "ServiceName", default)]
    pub service_name: String,
    #[serde(rename = "Group", default)]
    pub group: String,
    #[serde(rename = "Containers", default)]
    pub containers: Vec<GoContainer>,
    /// GPU and elastic inference associations.
    #[serde(default)]
    pub associations: Value,
    #[serde(default)]
    pub resources: Option<GoResources>,
    #[serde(default)]
    pub volumes: Option<Vec<GoVolume>>,
    /// Task-level CPU in vCPU.
    #[serde(rename = "Cpu", default, skip_serializing_if = "is_zero_f64")]
    pub cpu: f64,
    /// Task-level memory in MiB.
    #[serde(rename = "Memory", default, skip_serializing_if = "is_zero_i64")]
    pub memory: i64,
    #[serde(rename = "DesiredStatus", default)]
    pub desired_status: Option<String>,
    #[serde(rename = "KnownStatus", default)]
    pub known_status: Option<String>,
    #[serde(rename = "KnownTime", default = "zero_time")]
    pub known_time: String,
    #[serde(rename = "PullStartedAt", default = "zero_time")]
    pub pull_started_at: String,
    #[serde(rename = "PullStoppedAt", default = "zero_time")]
    pub pull_stopped_at: String,
    #[serde(rename = "ExecutionStoppedAt", default = "zero_time")]
    pub execution_stopped_at: String,
    #[serde(rename = "SentStatus", default)]
    pub sent_status: Option<String>,
    #[serde(rename = "executionCredentialsID", default)]
    pub execution_credentials_id: String,
    #[serde(rename = "credentialsID", default)]
    pub credentials_id: String,
    /// awsvpc network interfaces.
    #[serde(rename = "ENI", default)]
    pub eni: Value,
    #[serde(rename = "AppMesh", default)]
    pub app_mesh: Value,
    #[serde(
        rename = "MemoryCPULimitsEnabled",
        default,
        skip_serializing_if = "is_false"
    )]
    pub memory_cpu_limits_enabled: bool,
    #[serde(
        rename = "PlatformFields",
        default,
        skip_serializing_if = "Value::is_null"
    )]
    pub platform_fields: Value,
    #[serde(rename = "PidMode", default, skip_serializing_if = "String::is_empty")]
    pub pid_mode: String,
    #[serde(rename = "IpcMode", default, skip_serializing_if = "String::is_empty")]
    pub ipc_mode: String,
    #[serde(
        rename = "NvidiaRuntime",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub nvidia_runtime: String,
    #[serde(
        rename = "LocalIPAddress",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub local_ip_address: String,
    #[serde(
        rename = "LaunchType",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub launch_type: String,
    /// Present on every task; Service Connect is on only when a container
    /// carries its `containerName`.
    #[serde(
        rename = "ServiceConnectConfig",
        default,
        skip_serializing_if = "Value::is_null"
    )]
    pub service_connect_config: Value,
    #[serde(
        rename = "ServiceConnectConnectionDraining",
        default,
        skip_serializing_if = "is_false"
    )]
    pub service_connect_connection_draining: bool,
    #[serde(
        rename = "NetworkMode",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub network_mode: String,
    #[serde(rename = "IsInternal", default, skip_serializing_if = "is_false")]
    pub is_internal: bool,
    #[serde(
        rename = "NetworkNamespace",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub network_namespace: String,
    #[serde(
        rename = "enableFaultInjection",
        default,
        skip_serializing_if = "is_false"
    )]
    pub enable_fault_injection: bool,
    #[serde(
        rename = "DefaultIfname",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub default_ifname: String,
    /// Members this model does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A container of a task, also the `Container` of a `containers` value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GoContainer {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "RuntimeID", default)]
    pub runtime_id: String,
    #[serde(rename = "taskARN", default)]
    pub task_arn: String,
    #[serde(rename = "dependsOn", default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<GoDependsOn>,
    /// ECS Exec agents.
    #[serde(
        rename = "managedAgents",
        default,
        skip_serializing_if = "Value::is_null"
    )]
    pub managed_agents: Value,
    #[serde(rename = "V3EndpointID", default)]
    pub v3_endpoint_id: String,
    #[serde(rename = "Image", default)]
    pub image: String,
    #[serde(rename = "ImageID", default)]
    pub image_id: String,
    #[serde(rename = "ImageDigest", default)]
    pub image_digest: String,
    #[serde(rename = "Command", default)]
    pub command: Option<Vec<String>>,
    #[serde(rename = "Cpu", default)]
    pub cpu: u32,
    #[serde(rename = "GPUIDs", default)]
    pub gpu_ids: Option<Vec<String>>,
    #[serde(rename = "Memory", default)]
    pub memory: u32,
    #[serde(rename = "Links", default)]
    pub links: Option<Vec<String>>,
    #[serde(rename = "firelensConfiguration", default)]
    pub firelens_configuration: Value,
    #[serde(rename = "volumesFrom", default)]
    pub volumes_from: Option<Vec<GoVolumeFrom>>,
    #[serde(rename = "mountPoints", default)]
    pub mount_points: Option<Vec<GoMountPoint>>,
    #[serde(rename = "portMappings", default)]
    pub port_mappings: Option<Vec<GoPortBinding>>,
    #[serde(default)]
    pub secrets: Value,
    #[serde(rename = "Essential", default)]
    pub essential: bool,
    #[serde(rename = "EntryPoint", default)]
    pub entry_point: Option<Vec<String>>,
    #[serde(default)]
    pub environment: Option<BTreeMap<String, String>>,
    #[serde(rename = "environmentFiles", default)]
    pub environment_files: Value,
    #[serde(default)]
    pub overrides: Value,
    #[serde(rename = "dockerConfig", default)]
    pub docker_config: GoDockerConfig,
    #[serde(
        rename = "credentialSpecs",
        default,
        skip_serializing_if = "Value::is_null"
    )]
    pub credential_specs: Value,
    #[serde(rename = "registryAuthentication", default)]
    pub registry_authentication: Value,
    #[serde(
        rename = "healthCheckType",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub health_check_type: String,
    #[serde(rename = "LogsAuthStrategy", default)]
    pub logs_auth_strategy: String,
    #[serde(rename = "StartTimeout", default)]
    pub start_timeout: u64,
    #[serde(rename = "StopTimeout", default)]
    pub stop_timeout: u64,
    #[serde(rename = "desiredStatus", default)]
    pub desired_status: Option<String>,
    #[serde(rename = "KnownStatus", default)]
    pub known_status: Option<String>,
    #[serde(rename = "TransitionDependencySet", default)]
    pub transition_dependency_set: Value,
    #[serde(rename = "RunDependencies", default)]
    pub run_dependencies: Value,
    /// `NORMAL` for task containers; the agent's own helpers otherwise.
    #[serde(rename = "IsInternal", default)]
    pub is_internal: String,
    #[serde(rename = "ApplyingError", default)]
    pub applying_error: Option<GoNamedError>,
    #[serde(rename = "SentStatus", default)]
    pub sent_status: Option<String>,
    #[serde(rename = "metadataFileUpdated", default)]
    pub metadata_file_updated: bool,
    #[serde(rename = "KnownExitCode", default)]
    pub known_exit_code: Option<i64>,
    #[serde(rename = "KnownPortBindings", default)]
    pub known_port_bindings: Option<Vec<GoPortBinding>>,
    #[serde(
        rename = "SteadyStateStatus",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub steady_state_status: Option<String>,
    #[serde(
        rename = "ContainerArn",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub container_arn: String,
    #[serde(rename = "containerTornDown", default)]
    pub container_torn_down: bool,
    #[serde(rename = "startedAt", default = "zero_time")]
    pub started_at: String,
    #[serde(rename = "ContainerHasPortRange", default)]
    pub container_has_port_range: bool,
    #[serde(rename = "ContainerPortSet", default)]
    pub container_port_set: Value,
    #[serde(rename = "ContainerPortRangeMap", default)]
    pub container_port_range_map: Value,
    #[serde(
        rename = "restartPolicy",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub restart_policy: Option<GoRestartPolicy>,
    #[serde(
        rename = "restartTracker",
        default,
        skip_serializing_if = "Value::is_null"
    )]
    pub restart_tracker: Value,
    #[serde(
        rename = "RestartAggregationDataForStats",
        default,
        skip_serializing_if = "Value::is_null"
    )]
    pub restart_aggregation_data_for_stats: Value,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoDependsOn {
    #[serde(rename = "containerName")]
    pub container_name: String,
    pub condition: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoVolumeFrom {
    #[serde(rename = "sourceContainer")]
    pub source_container: String,
    #[serde(rename = "readOnly", default)]
    pub read_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoMountPoint {
    #[serde(rename = "sourceVolume")]
    pub source_volume: String,
    #[serde(rename = "containerPath")]
    pub container_path: String,
    #[serde(rename = "readOnly", default)]
    pub read_only: bool,
}

/// A port mapping (`portMappings`) or a binding Docker made
/// (`KnownPortBindings`): the same shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoPortBinding {
    #[serde(rename = "ContainerPort", default)]
    pub container_port: u16,
    #[serde(rename = "ContainerPortRange", default)]
    pub container_port_range: String,
    #[serde(rename = "HostPort", default)]
    pub host_port: u16,
    #[serde(rename = "BindIp", default)]
    pub bind_ip: String,
    #[serde(rename = "Protocol", default)]
    pub protocol: String,
}

/// Docker options the backend rendered, each a JSON document in a string.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GoDockerConfig {
    #[serde(default)]
    pub config: Option<String>,
    #[serde(rename = "hostConfig", default)]
    pub host_config: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoNamedError {
    #[serde(default)]
    pub error: String,
    #[serde(default)]
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoRestartPolicy {
    #[serde(default)]
    pub enabled: bool,
    #[serde(rename = "ignoredExitCodes", default)]
    pub ignored_exit_codes: Option<Vec<i64>>,
    #[serde(rename = "restartAttemptPeriod", default)]
    pub restart_attempt_period: u64,
}

/// The task's resources by kind. The agent runs `cgroup` and
/// `dockerVolume`; any other kind is a feature it does not run.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct GoResources {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<Vec<Value>>,
    #[serde(
        rename = "dockerVolume",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub docker_volume: Option<Vec<GoDockerVolumeResource>>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GoDockerVolumeResource {
    pub name: String,
    #[serde(rename = "dockerVolumeConfiguration")]
    pub configuration: GoDockerVolumeConfiguration,
    #[serde(rename = "createdAt", default = "zero_time")]
    pub created_at: String,
    #[serde(rename = "desiredStatus", default)]
    pub desired_status: Option<String>,
    #[serde(rename = "knownStatus", default)]
    pub known_status: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct GoDockerVolumeConfiguration {
    #[serde(default)]
    pub scope: String,
    #[serde(default)]
    pub autoprovision: bool,
    #[serde(rename = "mountPoint", default)]
    pub mount_point: String,
    #[serde(default)]
    pub driver: String,
    #[serde(rename = "driverOpts", default)]
    pub driver_opts: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(rename = "dockerVolumeName", default)]
    pub docker_volume_name: String,
}

/// A task volume: `{"<type's key>": {...}, "name": …, "type": …}`; the
/// configuration member is named after the type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GoVolume {
    #[serde(
        rename = "dockerVolumeConfiguration",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub docker: Option<GoDockerVolumeConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<GoHostVolume>,
    pub name: String,
    #[serde(rename = "type", default)]
    pub kind: String,
    /// Configurations of types the agent does not run (efs, fsx, ebs, …).
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// The `host` member of a host volume. The Go agent writes one of two
/// shapes: `{"sourcePath": …}` for a bind mount of a host path, and
/// `{"hostPath": …}` (the Docker volume's name) for a scratch volume it
/// provisions; it tells them apart by an empty `sourcePath`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct GoHostVolume {
    /// Empty for a scratch volume the agent provisions.
    #[serde(
        rename = "sourcePath",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub source_path: String,
    /// The scratch volume's Docker volume name; empty for a bind mount.
    #[serde(rename = "hostPath", default, skip_serializing_if = "String::is_empty")]
    pub host_path: String,
}

/// A value of the `containers` bucket (key: `<task ID>-<container name>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GoDockerContainer {
    #[serde(rename = "DockerId", default)]
    pub docker_id: String,
    #[serde(rename = "DockerName", default)]
    pub docker_name: String,
    #[serde(rename = "Container")]
    pub container: GoContainer,
}

/// A value of the `images` bucket (key: the image ID).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GoImageState {
    #[serde(rename = "Image")]
    pub image: GoImage,
    #[serde(rename = "PulledAt", default = "zero_time")]
    pub pulled_at: String,
    #[serde(rename = "LastUsedAt", default = "zero_time")]
    pub last_used_at: String,
    #[serde(rename = "PullSucceeded", default)]
    pub pull_succeeded: bool,
    #[serde(rename = "ManagedEnvKeys", default)]
    pub managed_env_keys: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GoImage {
    #[serde(rename = "ImageID")]
    pub image_id: String,
    #[serde(rename = "Names", default)]
    pub names: Option<Vec<String>>,
    #[serde(rename = "Size", default)]
    pub size: i64,
}

fn zero_time() -> String {
    ZERO_TIME.to_string()
}

fn is_zero_f64(v: &f64) -> bool {
    *v == 0.0
}

fn is_zero_i64(v: &i64) -> bool {
    *v == 0
}

fn is_false(v: &bool) -> bool {
    !*v
}

/// A Go `time.Time` in JSON (RFC 3339 with nanoseconds) as milliseconds
/// since the epoch; Go's zero time (and anything unreadable) is `None`.
pub fn time_to_ms(text: &str) -> Option<i64> {
    let t =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    if t.year() <= 1 {
        return None;
    }
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// Milliseconds since the epoch as Go writes a `time.Time` in UTC;
/// `None` as Go's zero time.
pub fn ms_to_time(ms: Option<i64>) -> String {
    let Some(ms) = ms else {
        return zero_time();
    };
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) else {
        return zero_time();
    };
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| zero_time())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The fixture's buckets as the JSON dump holds them.
    fn dump() -> Option<Value> {
        let dir = ecs_model::spec::require_or_skip("Go agent state fixture")?;
        let text =
            std::fs::read_to_string(dir.join("samples/go-agent-state/agent.db.json")).unwrap();
        Some(serde_json::from_str(&text).unwrap())
    }

    /// Decoding into the model and encoding again loses nothing: every
    /// member is known, with its JSON type.
    fn round_trips<T: Serialize + serde::de::DeserializeOwned>(value: &Value) -> T {
        let typed: T = serde_json::from_value(value.clone()).unwrap();
        assert_eq!(&serde_json::to_value(&typed).unwrap(), value);
        typed
    }

    #[test]
    fn every_record_of_the_fixture_round_trips_without_loss() {
        let Some(dump) = dump() else { return };
        let mut seen = 0;
        for value in dump["tasks"].as_object().unwrap().values() {
            let task: GoTask = round_trips(value);
            assert!(task.extra.is_empty());
            for c in &task.containers {
                assert!(c.extra.is_empty(), "{:?}", c.extra.keys());
            }
            seen += 1;
        }
        for value in dump["containers"].as_object().unwrap().values() {
            let _: GoDockerContainer = round_trips(value);
            seen += 1;
        }
        for value in dump["images"].as_object().unwrap().values() {
            let _: GoImageState = round_trips(value);
            seen += 1;
        }
        assert_eq!(seen, 3 + 4 + 1);
    }

    #[test]
    fn go_times_convert_both_ways() {
        assert_eq!(time_to_ms(ZERO_TIME), None);
        assert_eq!(ms_to_time(None), ZERO_TIME);
        let ms = time_to_ms("2026-12-04T22:42:21.531020258Z").unwrap();
        assert_eq!(ms, 1_796_424_141_531);
        assert_eq!(ms_to_time(Some(ms)), "2026-12-04T22:42:21.531Z");
        assert_eq!(time_to_ms(&ms_to_time(Some(ms))), Some(ms));
        assert_eq!(time_to_ms("not a time"), None);
    }
}
