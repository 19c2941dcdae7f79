//! The agent's ECS API calls, through the official AWS SDK for Rust:
//! RegisterContainerInstance, DiscoverPollEndpoint (cached for 12 hours),
//! CreateCluster and SubmitTaskStateChange. Every request carries the
//! agent's own User-Agent, as the backend expects (docs/protocols.md §2.1).

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_ecs::config::{Intercept, Region};
use aws_sdk_ecs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ecs::types as ecs;
use aws_smithy_types::DateTime;
use tokio::sync::Mutex;

use crate::capabilities::Attribute;
use crate::host::HostResources;
use crate::state_change::{truncate, TaskStateChange};

/// How long a DiscoverPollEndpoint answer is reused (docs/protocols.md §2.4).
const POLL_ENDPOINT_TTL: Duration = Duration::from_secs(12 * 3600);

/// The ACS and TCS base URLs for this instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollEndpoints {
    pub acs: String,
    pub tcs: Option<String>,
}

/// A failed ListTagsForResource, as task metadata v4 reports it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TagsError {
    pub code: String,
    pub message: String,
    pub status: Option<u16>,
    pub request_id: String,
}

/// A failed ECS API call, classified by what the agent does next.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The backend rejected the request for good (exit 5 at registration,
    /// drop the event when submitting).
    #[error("{code}: {message}")]
    Rejected { code: String, message: String },
    /// The cluster does not exist.
    #[error("ClusterNotFoundException: {0}")]
    ClusterNotFound(String),
    /// Worth retrying: throttling, server errors, network failures.
    #[error("{0}")]
    Transient(String),
    /// Some other failure; the agent retries from the top.
    #[error("{0}")]
    Other(String),
}

impl ApiError {
    fn from_sdk<E, R>(err: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        let code = err.code().map(str::to_string);
        let message = err.message().unwrap_or_default().to_string();
        match (&err, code.as_deref()) {
            (_, Some("InvalidParameterException" | "ClientException")) => ApiError::Rejected {
                code: code.unwrap_or_default(),
                message,
            },
            (_, Some("ClusterNotFoundException")) => ApiError::ClusterNotFound(message),
            (
                _,
                Some(
                    "ThrottlingException"
                    | "ServerException"
                    | "LimitExceededException"
                    | "ServiceUnavailableException",
                ),
            ) => ApiError::Transient(format!("{}: {message}", code.unwrap_or_default())),
            (
                SdkError::DispatchFailure(_)
                | SdkError::TimeoutError(_)
                | SdkError::ResponseError(_),
                _,
            ) => ApiError::Transient(format!(
                "{}",
                aws_smithy_types::error::display::DisplayErrorContext(&err)
            )),
            _ if message.contains("Cluster not found.") => ApiError::ClusterNotFound(message),
            _ => ApiError::Other(format!(
                "{}",
                aws_smithy_types::error::display::DisplayErrorContext(&err)
            )),
        }
    }
}

/// Makes SDK requests look like the agent's: its User-Agent, plus the two
/// members of the agent-only API that the public SDK model lacks
/// (`clientToken` on RegisterContainerInstance, one per call and reused by
/// retries; `zoneId` on DiscoverPollEndpoint).
#[derive(Debug)]
struct AgentRequests {
    user_agent: String,
}

/// The idempotency token of one RegisterContainerInstance call.
#[derive(Debug, Clone)]
struct ClientToken(String);

impl aws_smithy_types::config_bag::Storable for ClientToken {
    type Storer = aws_smithy_types::config_bag::StoreReplace<Self>;
}

fn operation_name(cfg: &aws_sdk_ecs::config::ConfigBag) -> Option<String> {
    cfg.load::<aws_smithy_runtime_api::client::orchestrator::Metadata>()
        .map(|m| m.name().to_string())
}

impl Intercept for AgentRequests {
    fn name(&self) -> &'static str {
        "EcsAgentRequests"
    }

    fn read_before_execution(
        &self,
        _context: &aws_sdk_ecs::config::interceptors::BeforeSerializationInterceptorContextRef<'_>,
        cfg: &mut aws_sdk_ecs::config::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        cfg.interceptor_state()
            .store_put(ClientToken(uuid::Uuid::new_v4().to_string()));
        Ok(())
    }

    fn modify_before_signing(
        &self,
        context: &mut aws_sdk_ecs::config::interceptors::BeforeTransmitInterceptorContextMut<'_>,
        _components: &aws_sdk_ecs::config::RuntimeComponents,
        cfg: &mut aws_sdk_ecs::config::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        let request = context.request_mut();
        request
            .headers_mut()
            .insert("user-agent", self.user_agent.clone());
        let operation = operation_name(cfg);
        if !matches!(
            operation.as_deref(),
            Some("RegisterContainerInstance" | "DiscoverPollEndpoint")
        ) {
            return Ok(());
        }
        let Some(bytes) = request.body().bytes() else {
            return Ok(());
        };
        let mut body: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(bytes)?;
        if operation.as_deref() == Some("RegisterContainerInstance") {
            if let Some(token) = cfg.load::<ClientToken>() {
                body.entry("clientToken")
                    .or_insert_with(|| serde_json::Value::String(token.0.clone()));
            }
            trim_resource_values(&mut body);
        } else {
            body.entry("zoneId")
                .or_insert_with(|| serde_json::Value::String(String::new()));
        }
        let bytes = serde_json::to_vec(&body)?;
        request
            .headers_mut()
            .insert("content-length", bytes.len().to_string());
        *request.body_mut() = aws_smithy_types::body::SdkBody::from(bytes);
        Ok(())
    }
}

/// The SDK writes every numeric member of a resource (`doubleValue: 0.0`,
/// `longValue: 0`, …); the agent sends only the one its type uses, as the
/// Go agent does.
fn trim_resource_values(body: &mut serde_json::Map<String, serde_json::Value>) {
    let Some(serde_json::Value::Array(resources)) = body.get_mut("totalResources") else {
        return;
    };
    for resource in resources {
        let Some(fields) = resource.as_object_mut() else {
            continue;
        };
        let keep = match fields.get("type").and_then(|t| t.as_str()) {
            Some("INTEGER") => "integerValue",
            Some("LONG") => "longValue",
            Some("DOUBLE") => "doubleValue",
            Some("STRINGSET") => "stringSetValue",
            _ => continue,
        };
        fields.retain(|k, _| !k.ends_with("Value") || k == keep);
    }
}

/// What RegisterContainerInstance needs.
#[derive(Debug, Clone)]
pub struct RegistrationRequest {
    pub cluster: String,
    pub existing_arn: Option<String>,
    pub attributes: Vec<Attribute>,
    pub resources: HostResources,
    pub reserved_ports: Vec<u16>,
    pub reserved_ports_udp: Vec<u16>,
    pub identity_document: String,
    pub identity_signature: String,
    pub tags: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub container_instance_arn: String,
    pub availability_zone: Option<String>,
}

#[derive(Clone)]
pub struct EcsClient {
    client: aws_sdk_ecs::Client,
    endpoints: Arc<Mutex<Option<(Instant, String, PollEndpoints)>>>,
}

impl EcsClient {
    pub fn new(
        endpoint: Option<&str>,
        region: &str,
        credentials: SharedCredentialsProvider,
        user_agent: String,
        accept_insecure_cert: bool,
    ) -> Self {
        let mut builder = aws_sdk_ecs::Config::builder()
            .behavior_version(aws_sdk_ecs::config::BehaviorVersion::latest())
            .http_client(crate::https::ecs_client(accept_insecure_cert))
            .region(Region::new(region.to_string()))
            .credentials_provider(credentials)
            .retry_config(aws_sdk_ecs::config::retry::RetryConfig::standard().with_max_attempts(3))
            .timeout_config(
                aws_sdk_ecs::config::timeout::TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(30))
                    .operation_attempt_timeout(Duration::from_secs(42))
                    .build(),
            )
            .interceptor(AgentRequests { user_agent });
        if let Some(url) = endpoint {
            builder = builder.endpoint_url(with_scheme(url));
        }
        Self {
            client: aws_sdk_ecs::Client::from_conf(builder.build()),
            endpoints: Arc::new(Mutex::new(None)),
        }
    }

    pub async fn register(&self, req: &RegistrationRequest) -> Result<Registration, ApiError> {
        let attributes: Vec<ecs::Attribute> = req
            .attributes
            .iter()
            .map(|a| {
                ecs::Attribute::builder()
                    .name(&a.name)
                    .set_value(a.value.clone())
                    .build()
                    .map_err(|e| ApiError::Other(e.to_string()))
            })
            .collect::<Result<_, _>>()?;
        let port_set = |name: &str, ports: &[u16]| {
            ecs::Resource::builder()
                .name(name)
                .r#type("STRINGSET")
                .set_string_set_value(Some(ports.iter().map(u16::to_string).collect()))
                .build()
        };
        let resources = vec![
            ecs::Resource::builder()
                .name("CPU")
                .r#type("INTEGER")
                .integer_value(req.resources.cpu_units)
                .build(),
            ecs::Resource::builder()
                .name("MEMORY")
                .r#type("INTEGER")
                .integer_value(req.resources.memory_mib)
                .build(),
            port_set("PORTS", &req.reserved_ports),
            port_set("PORTS_UDP", &req.reserved_ports_udp),
        ];
        let tags: Vec<ecs::Tag> = req
            .tags
            .iter()
            .map(|(k, v)| ecs::Tag::builder().key(k).value(v).build())
            .collect();
        let response = self
            .client
            .register_container_instance()
            .cluster(&req.cluster)
            .set_container_instance_arn(req.existing_arn.clone())
            .set_attributes(Some(attributes))
            .set_total_resources(Some(resources))
            .instance_identity_document(&req.identity_document)
            .instance_identity_document_signature(&req.identity_signature)
            .set_tags((!tags.is_empty()).then_some(tags))
            .send()
            .await
            .map_err(ApiError::from_sdk)?;
        let instance = response
            .container_instance
            .ok_or_else(|| ApiError::Other("registration returned no container instance".into()))?;
        let arn = instance
            .container_instance_arn
            .ok_or_else(|| ApiError::Other("registration returned no instance ARN".into()))?;
        let returned = instance.attributes.unwrap_or_default();
        // Every attribute sent must come back unchanged, or the backend did
        // not accept the instance as described (docs/protocols.md §2.2).
        let missing = attributes_not_echoed(&req.attributes, &returned);
        if !missing.is_empty() {
            return Err(ApiError::Rejected {
                code: "AttributeError".into(),
                message: format!(
                    "Attribute validation failed: the backend did not echo {}",
                    missing.join(", ")
                ),
            });
        }
        let availability_zone = returned
            .iter()
            .find(|a| a.name == "ecs.availability-zone")
            .and_then(|a| a.value.clone());
        Ok(Registration {
            container_instance_arn: arn,
            availability_zone,
        })
    }

    pub async fn create_cluster(&self, name: &str) -> Result<(), ApiError> {
        self.client
            .create_cluster()
            .cluster_name(name)
            .send()
            .await
            .map(|_| ())
            .map_err(ApiError::from_sdk)
    }

    /// ListTagsForResource, for the task metadata `...WithTags` routes;
    /// the error keeps the AWS code, message, HTTP status and request ID.
    pub async fn list_tags(
        &self,
        resource_arn: &str,
    ) -> Result<std::collections::BTreeMap<String, String>, TagsError> {
        let call = self
            .client
            .list_tags_for_resource()
            .resource_arn(resource_arn)
            .send();
        match tokio::time::timeout(std::time::Duration::from_secs(4), call).await {
            Err(_) => Err(TagsError {
                message: "timed out".into(),
                ..TagsError::default()
            }),
            Ok(Ok(out)) => Ok(out
                .tags()
                .iter()
                .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
                .collect()),
            Ok(Err(e)) => {
                use aws_sdk_ecs::operation::RequestId;
                let status = e.raw_response().map(|r| r.status().as_u16());
                let request_id = e.request_id().unwrap_or_default().to_string();
                Err(TagsError {
                    code: e.code().unwrap_or_default().to_string(),
                    message: e.message().map_or_else(
                        || aws_smithy_types::error::display::DisplayErrorContext(&e).to_string(),
                        str::to_string,
                    ),
                    status,
                    request_id,
                })
            }
        }
    }

    /// The ACS/TCS endpoints, from cache when younger than 12 hours; an
    /// expired entry is still used when the call fails.
    pub async fn poll_endpoints(
        &self,
        cluster: &str,
        instance_arn: &str,
    ) -> Result<PollEndpoints, ApiError> {
        let mut cache = self.endpoints.lock().await;
        if let Some((at, arn, endpoints)) = cache.as_ref() {
            if arn == instance_arn && at.elapsed() < POLL_ENDPOINT_TTL {
                return Ok(endpoints.clone());
            }
        }
        let result = self
            .client
            .discover_poll_endpoint()
            .cluster(cluster)
            .container_instance(instance_arn)
            .send()
            .await;
        match result {
            Ok(out) => {
                let acs = out.endpoint.filter(|e| !e.is_empty()).ok_or_else(|| {
                    ApiError::Other("DiscoverPollEndpoint returned no endpoint".into())
                })?;
                let endpoints = PollEndpoints {
                    acs,
                    tcs: out.telemetry_endpoint.filter(|e| !e.is_empty()),
                };
                *cache = Some((Instant::now(), instance_arn.to_string(), endpoints.clone()));
                Ok(endpoints)
            }
            Err(e) => match cache.as_ref() {
                Some((_, arn, endpoints)) if arn == instance_arn => Ok(endpoints.clone()),
                _ => Err(ApiError::from_sdk(e)),
            },
        }
    }

    pub async fn submit_task_state_change(
        &self,
        cluster: &str,
        change: &TaskStateChange,
    ) -> Result<(), ApiError> {
        let containers: Vec<ecs::ContainerStateChange> = change
            .containers
            .iter()
            .map(|c| {
                let bindings: Vec<ecs::NetworkBinding> = c
                    .network_bindings
                    .iter()
                    .map(|b| {
                        ecs::NetworkBinding::builder()
                            .bind_ip(&b.bind_ip)
                            .set_container_port(b.container_port.map(i32::from))
                            .set_host_port(b.host_port.map(i32::from))
                            .set_container_port_range(b.container_port_range.clone())
                            .set_host_port_range(b.host_port_range.clone())
                            .protocol(ecs::TransportProtocol::from(b.protocol.as_str()))
                            .build()
                    })
                    .collect();
                ecs::ContainerStateChange::builder()
                    .container_name(&c.container_name)
                    .set_runtime_id(
                        c.runtime_id
                            .as_deref()
                            .map(|r| truncate(r, 255).to_string()),
                    )
                    .status(&c.status)
                    .set_exit_code(c.exit_code.and_then(|e| i32::try_from(e).ok()))
                    .set_reason(c.reason.as_deref().map(|r| truncate(r, 1024).to_string()))
                    .set_image_digest(
                        c.image_digest
                            .as_deref()
                            .map(|d| truncate(d, 255).to_string()),
                    )
                    .set_network_bindings((!bindings.is_empty()).then_some(bindings))
                    .build()
            })
            .collect();
        let at = |ms: Option<i64>| ms.map(DateTime::from_millis);
        self.client
            .submit_task_state_change()
            .cluster(cluster)
            .task(&change.task_arn)
            .status(&change.status)
            .reason(truncate(&change.reason, 1024))
            .set_containers((!containers.is_empty()).then_some(containers))
            .set_pull_started_at(at(change.pull_started_at_ms))
            .set_pull_stopped_at(at(change.pull_stopped_at_ms))
            .set_execution_stopped_at(at(change.execution_stopped_at_ms))
            .send()
            .await
            .map(|_| ())
            .map_err(ApiError::from_sdk)
    }
}

/// The names of the sent attributes that RegisterContainerInstance's
/// response does not carry with the same value, sorted. As in the Go
/// agent's check, a missing value counts as empty on both sides (so a
/// value-less attribute the response leaves out passes), and when a name
/// repeats the last one counts.
pub fn attributes_not_echoed<'a>(
    sent: &'a [Attribute],
    returned: &[ecs::Attribute],
) -> Vec<&'a str> {
    let echoed: std::collections::HashMap<&str, &str> = returned
        .iter()
        .map(|a| (a.name.as_str(), a.value.as_deref().unwrap_or_default()))
        .collect();
    let expected: std::collections::BTreeMap<&str, &str> = sent
        .iter()
        .map(|a| (a.name.as_str(), a.value.as_deref().unwrap_or_default()))
        .collect();
    expected
        .into_iter()
        .filter(|(name, value)| echoed.get(name).copied().unwrap_or_default() != *value)
        .map(|(name, _)| name)
        .collect()
}

/// `ECS_BACKEND_HOST` without a scheme means HTTPS.
pub fn with_scheme(endpoint: &str) -> String {
    if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("https://{endpoint}")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sent(pairs: &[(&str, Option<&str>)]) -> Vec<Attribute> {
        pairs
            .iter()
            .map(|(n, v)| Attribute {
                name: (*n).to_string(),
                value: v.map(str::to_string),
            })
            .collect()
    }

    fn returned(pairs: &[(&str, Option<&str>)]) -> Vec<ecs::Attribute> {
        pairs
            .iter()
            .map(|(n, v)| {
                ecs::Attribute::builder()
                    .name(*n)
                    .set_value(v.map(str::to_string))
                    .build()
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn a_full_echo_passes_whatever_the_backend_adds() {
        let attrs = [
            ("ecs.os-type", Some("linux")),
            ("com.amazonaws.ecs.capability.privileged-container", None),
            ("tier", Some("gold")),
        ];
        let mut back = attrs.to_vec();
        back.insert(0, ("ecs.availability-zone", Some("us-east-1a")));
        assert!(attributes_not_echoed(&sent(&attrs), &returned(&back)).is_empty());
    }

    #[test]
    fn a_missing_or_changed_value_is_named() {
        let attrs = sent(&[
            ("ecs.os-type", Some("linux")),
            ("tier", Some("gold")),
            ("zone", Some("a")),
        ]);
        let back = returned(&[("ecs.os-type", Some("linux")), ("tier", Some("silver"))]);
        assert_eq!(attributes_not_echoed(&attrs, &back), ["tier", "zone"]);
        assert_eq!(
            attributes_not_echoed(&attrs, &[]),
            ["ecs.os-type", "tier", "zone"]
        );
    }

    #[test]
    fn absent_values_count_as_empty_like_the_go_agent() {
        let attrs = sent(&[("flag", None), ("empty", Some(""))]);
        assert!(attributes_not_echoed(&attrs, &[]).is_empty());
        let back = returned(&[("flag", Some("")), ("empty", None)]);
        assert!(attributes_not_echoed(&attrs, &back).is_empty());
        let back = returned(&[("flag", Some("on"))]);
        assert_eq!(attributes_not_echoed(&attrs, &back), ["flag"]);
    }
}
