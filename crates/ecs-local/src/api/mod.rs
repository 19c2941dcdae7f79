//! The ECS JSON 1.1 API on `POST /`: reading `X-Amz-Target`, decoding the
//! body, dispatching to one module per resource kind, and encoding results
//! and errors the way AWS SDKs expect.

mod account;
mod agent;
mod attributes;
mod clusters;
pub(crate) mod console;
mod container_instances;
mod services;
mod tags;
mod task_definitions;
mod tasks;

use crate::store::StoreError;
use crate::Context;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use ecs_model::ecs_api::{ErrorBody, CONTENT_TYPE, TARGET_PREFIX};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;

/// An ECS API error: its exception name, HTTP status and message.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    ClusterNotFound(String),
    #[error("{0}")]
    InvalidParameter(String),
    #[error("{0}")]
    Client(String),
    #[error("{0}")]
    Serialization(String),
    #[error("{0}")]
    UnknownOperation(String),
    #[error("{0}")]
    ResourceNotFound(String),
    #[error("{0}")]
    NoUpdateAvailable(String),
    #[error("{0}")]
    UpdateInProgress(String),
    #[error("{0}")]
    TargetNotFound(String),
    #[error("{0}")]
    AttributeLimitExceeded(String),
    #[error("{0}")]
    ClusterContainsContainerInstances(String),
    #[error("{0}")]
    ClusterContainsTasks(String),
    #[error("{0}")]
    ClusterContainsServices(String),
    #[error("{0}")]
    ServiceNotFound(String),
    #[error("{0}")]
    ServiceNotActive(String),
    #[error("{0}")]
    Server(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthError),
}

impl ApiError {
    /// The exception name sent as `__type`.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::ClusterNotFound(_) => "ClusterNotFoundException",
            ApiError::InvalidParameter(_) => "InvalidParameterException",
            ApiError::Client(_) => "ClientException",
            ApiError::Serialization(_) => "SerializationException",
            ApiError::UnknownOperation(_) => "UnknownOperationException",
            ApiError::ResourceNotFound(_) => "ResourceNotFoundException",
            ApiError::NoUpdateAvailable(_) => "NoUpdateAvailableException",
            ApiError::UpdateInProgress(_) => "UpdateInProgressException",
            ApiError::TargetNotFound(_) => "TargetNotFoundException",
            ApiError::AttributeLimitExceeded(_) => "AttributeLimitExceededException",
            ApiError::ClusterContainsContainerInstances(_) => {
                "ClusterContainsContainerInstancesException"
            }
            ApiError::ClusterContainsTasks(_) => "ClusterContainsTasksException",
            ApiError::ClusterContainsServices(_) => "ClusterContainsServicesException",
            ApiError::ServiceNotFound(_) => "ServiceNotFoundException",
            ApiError::ServiceNotActive(_) => "ServiceNotActiveException",
            ApiError::Server(_) | ApiError::Store(_) => "ServerException",
            ApiError::Auth(e) => e.code(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Server(_) | ApiError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Auth(crate::auth::AuthError::UnknownKey) => StatusCode::BAD_REQUEST,
            ApiError::Auth(_) => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    pub(crate) fn cluster_not_found() -> Self {
        ApiError::ClusterNotFound("Cluster not found.".to_owned())
    }
}

/// Decodes a request body. An empty body counts as `{}` (some clients send
/// nothing for operations without required members).
fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| ApiError::Serialization(e.to_string()))
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(value).map_err(|e| ApiError::Server(format!("cannot encode response: {e}")))
}

/// What a handler needs from the HTTP request besides its body.
pub(crate) struct RequestInfo {
    /// The `Host` header, for endpoints handed back to agents.
    pub host: String,
}

fn run_action(
    ctx: &Context,
    action: &str,
    body: &[u8],
    info: &RequestInfo,
) -> Result<Vec<u8>, ApiError> {
    match action {
        "ListAccountSettings" => encode(&account::list(ctx, decode(body)?)?),
        "PutAccountSetting" | "PutAccountSettingDefault" => {
            encode(&account::put(ctx, decode(body)?)?)
        }
        "DeleteAccountSetting" => encode(&account::delete(ctx, decode(body)?)?),
        "DescribeCapacityProviders" => {
            encode(&account::describe_capacity_providers(ctx, decode(body)?)?)
        }
        "CreateCluster" => encode(&clusters::create(ctx, decode(body)?)?),
        "ListClusters" => encode(&clusters::list(ctx, decode(body)?)?),
        "DescribeClusters" => encode(&clusters::describe(ctx, decode(body)?)?),
        "DeleteCluster" => encode(&clusters::delete(ctx, decode(body)?)?),
        "RegisterTaskDefinition" => encode(&task_definitions::register(ctx, decode(body)?)?),
        "DescribeTaskDefinition" => encode(&task_definitions::describe(ctx, decode(body)?)?),
        "DeregisterTaskDefinition" => encode(&task_definitions::deregister(ctx, decode(body)?)?),
        "DeleteTaskDefinitions" => encode(&task_definitions::delete(ctx, decode(body)?)?),
        "ListTaskDefinitions" => encode(&task_definitions::list(ctx, decode(body)?)?),
        "ListTaskDefinitionFamilies" => {
            encode(&task_definitions::list_families(ctx, decode(body)?)?)
        }
        "RegisterContainerInstance" => encode(&container_instances::register(ctx, decode(body)?)?),
        "DeregisterContainerInstance" => {
            encode(&container_instances::deregister(ctx, decode(body)?)?)
        }
        "ListContainerInstances" => encode(&container_instances::list(ctx, decode(body)?)?),
        "DescribeContainerInstances" => encode(&container_instances::describe(ctx, decode(body)?)?),
        "PutAttributes" => encode(&attributes::put(ctx, decode(body)?)?),
        "DeleteAttributes" => encode(&attributes::delete(ctx, decode(body)?)?),
        "ListAttributes" => encode(&attributes::list(ctx, decode(body)?)?),
        "UpdateContainerInstancesState" => {
            encode(&container_instances::update_state(ctx, decode(body)?)?)
        }
        "UpdateContainerAgent" => encode(&container_instances::update_agent(ctx, decode(body)?)?),
        "DiscoverPollEndpoint" => encode(&agent::discover_poll_endpoint(ctx, decode(body)?, info)?),
        "CreateService" => encode(&services::create(ctx, decode(body)?)?),
        "UpdateService" => encode(&services::update(ctx, decode(body)?)?),
        "DeleteService" => encode(&services::delete(ctx, decode(body)?)?),
        "DescribeServices" => encode(&services::describe(ctx, decode(body)?)?),
        "ListServices" => encode(&services::list(ctx, decode(body)?)?),
        "RunTask" => encode(&tasks::run(ctx, decode(body)?)?),
        "StartTask" => encode(&tasks::start(ctx, decode(body)?)?),
        "StopTask" => encode(&tasks::stop(ctx, decode(body)?)?),
        "DescribeTasks" => encode(&tasks::describe(ctx, decode(body)?)?),
        "ListTasks" => encode(&tasks::list(ctx, decode(body)?)?),
        "ListTagsForResource" => encode(&tags::list(ctx, decode(body)?)?),
        "TagResource" => encode(&tags::tag(ctx, decode(body)?)?),
        "UntagResource" => encode(&tags::untag(ctx, decode(body)?)?),
        "SubmitTaskStateChange" => encode(&agent::submit_task_state_change(ctx, decode(body)?)?),
        "SubmitContainerStateChange" => {
            encode(&agent::submit_container_state_change(ctx, decode(body)?)?)
        }
        "SubmitAttachmentStateChanges" => {
            encode(&agent::submit_attachment_state_changes(decode(body)?))
        }
        other => Err(ApiError::UnknownOperation(format!(
            "Operation {other} is not supported by ecs-local."
        ))),
    }
}

/// The axum handler for `POST /`.
pub(crate) async fn handle(
    State(ctx): State<Arc<Context>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = std::time::Instant::now();
    let request_id = uuid::Uuid::new_v4().to_string();
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let info = RequestInfo {
        host: headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .unwrap_or_else(|| ctx.local_addr.to_string()),
    };
    let signed = ctx
        .authenticate("POST", &uri, &headers, &body)
        .map_err(ApiError::from);
    let result = match target.strip_prefix(TARGET_PREFIX) {
        _ if signed.is_err() => signed.map(|()| Vec::new()),
        Some(action) => {
            // The store waits on the disk: off the async workers.
            let action = action.to_owned();
            ctx.blocking(move |ctx| run_action(ctx, &action, &body, &info))
                .await
                .unwrap_or_else(|| Err(ApiError::Server("the request handler failed".to_owned())))
        }
        None if target.is_empty() => Err(ApiError::UnknownOperation(
            "Missing X-Amz-Target header.".to_owned(),
        )),
        None => Err(ApiError::UnknownOperation(format!(
            "Operation {target} is not supported by ecs-local."
        ))),
    };
    let action = target.strip_prefix(TARGET_PREFIX).unwrap_or(target);
    // Unknown targets share one label, so callers cannot grow the series.
    let label = match &result {
        Err(ApiError::UnknownOperation(_)) => "unknown",
        _ => action,
    };
    let outcome = match &result {
        Ok(_) => "ok",
        Err(e) => e.code(),
    };
    ctx.api_metrics.record(label, outcome, started.elapsed());
    let (status, body) = match result {
        Ok(body) => {
            tracing::debug!(action, request_id, "ok");
            (StatusCode::OK, body)
        }
        Err(err) => {
            if err.status().is_server_error() {
                tracing::error!(action, request_id, error = %err, "request failed");
            } else {
                tracing::info!(action, request_id, code = err.code(), error = %err, "request refused");
            }
            let body = ErrorBody {
                error_type: err.code().to_owned(),
                message: err.to_string(),
            };
            let bytes = serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec());
            (err.status(), bytes)
        }
    };
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        headers.insert("x-amzn-requestid", value);
    }
    response
}

/// Whether a describe call's `include` asks for tags (ECS leaves them out
/// otherwise).
fn includes_tags(include: &Option<Vec<String>>) -> bool {
    include
        .iter()
        .flatten()
        .any(|i| i.eq_ignore_ascii_case("TAGS"))
}

/// The `MISSING` failure of a describe call for `param`: as given when it
/// is an ARN, else the ARN `arn_of` builds from it.
fn missing(param: &str, arn_of: impl FnOnce() -> String) -> ecs_model::ecs_api::Failure {
    ecs_model::ecs_api::Failure {
        arn: Some(if param.starts_with("arn:") {
            param.to_owned()
        } else {
            arn_of()
        }),
        reason: Some("MISSING".to_owned()),
        detail: None,
    }
}

/// Offset pagination shared by the List* calls: `nextToken` is the index of
/// the next item.
fn paginate<T: Clone>(
    items: Vec<T>,
    next_token: Option<&str>,
    max_results: Option<i64>,
) -> Result<(Vec<T>, Option<String>), ApiError> {
    let start = match next_token.filter(|t| !t.is_empty()) {
        Some(token) => token
            .parse::<usize>()
            .map_err(|_| ApiError::InvalidParameter("Invalid nextToken.".to_owned()))?,
        None => 0,
    };
    let max = match max_results {
        None => 100,
        Some(n) if (1..=100).contains(&n) => usize::try_from(n).unwrap_or(100),
        Some(_) => {
            return Err(ApiError::InvalidParameter(
                "maxResults must be between 1 and 100.".to_owned(),
            ))
        }
    };
    let end = start.saturating_add(max).min(items.len());
    let page = items
        .get(start.min(items.len())..end)
        .unwrap_or_default()
        .to_vec();
    let next = (end < items.len()).then(|| end.to_string());
    Ok((page, next))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn paginates() {
        let items: Vec<String> = (0..5).map(|i| i.to_string()).collect();
        let (page, next) = paginate(items.clone(), None, Some(2)).unwrap();
        assert_eq!(page, vec!["0", "1"]);
        let (page, next) = paginate(items.clone(), next.as_deref(), Some(2)).unwrap();
        assert_eq!(page, vec!["2", "3"]);
        let (page, next) = paginate(items.clone(), next.as_deref(), Some(2)).unwrap();
        assert_eq!((page, next), (vec!["4".to_owned()], None));
        assert!(paginate(items.clone(), Some("x"), None).is_err());
        assert!(paginate(items.clone(), None, Some(0)).is_err());
        assert!(paginate(items, Some("99"), None).unwrap().0.is_empty());
    }

    #[test]
    fn empty_body_is_an_empty_object() {
        let v: serde_json::Value = decode(b"").unwrap();
        assert_eq!(v, serde_json::json!({}));
        assert!(matches!(
            decode::<serde_json::Value>(b"{"),
            Err(ApiError::Serialization(_))
        ));
    }
}
