//! The task endpoint on 127.0.0.1:51679 (docs/endpoints.md §7–§9):
//! role credentials, task metadata v2/v3/v4 and stats, behind a per-source
//! rate limiter.

pub mod metadata;
pub mod throttle;

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use serde::Serialize;
use serde_json::Value;

use self::metadata::{TagError, Tags, TaskContext, Version};
use super::audit::AuditEntry;
use super::introspection::gather_details;
use super::server::{Reply, Request};
use super::{json, paths, TaskEndpointDeps};
use crate::credentials::Lookup;
use crate::engine::task::{Container, Task};

/// A path of the task endpoint, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route<'a> {
    CredentialsV1,
    /// The ID: everything after `/v2/credentials/`, possibly empty.
    CredentialsV2(&'a str),
    /// Any v2 metadata or stats route (they need an awsvpc caller).
    V2,
    Container(Version, &'a str),
    Task {
        version: Version,
        id: &'a str,
        with_tags: bool,
    },
    ContainerStats(Version, &'a str),
    TaskStats(Version, &'a str),
    Associations(Version, &'a str, &'a str),
    Association(Version, &'a str, &'a str, &'a str),
    NotFound,
}

/// Maps a clean path to its route (docs/endpoints.md §7.1, §8.2).
pub fn parse_route(path: &str) -> Route<'_> {
    if path == "/v1/credentials" {
        return Route::CredentialsV1;
    }
    if let Some(id) = path.strip_prefix("/v2/credentials/") {
        return Route::CredentialsV2(id);
    }
    const V2_EXACT: [&str; 6] = [
        "/v2/metadata",
        "/v2/metadata/",
        "/v2/metadataWithTags",
        "/v2/metadataWithTags/",
        "/v2/stats",
        "/v2/stats/",
    ];
    if V2_EXACT.contains(&path)
        || path
            .strip_prefix("/v2/metadata/")
            .is_some_and(|r| !r.is_empty())
        || path
            .strip_prefix("/v2/stats/")
            .is_some_and(|r| !r.is_empty())
    {
        return Route::V2;
    }
    let (version, rest) = if let Some(rest) = path.strip_prefix("/v3/") {
        (Version::V3, rest)
    } else if let Some(rest) = path.strip_prefix("/v4/") {
        (Version::V4, rest)
    } else {
        return Route::NotFound;
    };
    let (id, tail) = match rest.split_once('/') {
        None => return Route::Container(version, rest),
        Some(parts) => parts,
    };
    match tail {
        "task" => Route::Task {
            version,
            id,
            with_tags: false,
        },
        "taskWithTags" => Route::Task {
            version,
            id,
            with_tags: true,
        },
        "stats" => Route::ContainerStats(version, id),
        "task/stats" => Route::TaskStats(version, id),
        _ => match tail
            .strip_prefix("associations/")
            .map(|r| r.split_once('/'))
        {
            Some(None) if !tail.ends_with("associations/") => {
                Route::Associations(version, id, &tail["associations/".len()..])
            }
            Some(Some((kind, name))) if !kind.is_empty() => {
                Route::Association(version, id, kind, name)
            }
            _ => Route::NotFound,
        },
    }
}

/// Serves one request: clean-path redirect, throttle, route.
pub async fn handle(req: Request, deps: TaskEndpointDeps) -> Reply {
    if let Some(target) = paths::redirect_target(&req.path, req.query.as_deref()) {
        return Reply::moved_to(&target);
    }
    let key = format!("{}|{}", req.peer.ip(), req.path);
    let reply = if deps.throttle.allow(&key, Instant::now()) {
        route(&req, &deps).await
    } else {
        deps.audit.record(&AuditEntry {
            status: 429,
            peer: req.peer,
            path: audit_path(&req.path),
            user_agent: &req.user_agent,
            subject: None,
            at_ms: crate::engine::now_ms(),
        });
        Reply::text(
            429,
            "text/plain; charset=utf-8",
            "You have reached maximum request limit.",
        )
    };
    reply
        .header("X-Rate-Limit-Limit", deps.throttle.limit_header())
        .header("X-Rate-Limit-Duration", "1")
        .header(
            "X-Rate-Limit-Request-Forwarded-For",
            req.forwarded_for.clone(),
        )
        .header("X-Rate-Limit-Request-Remote-Addr", req.peer.to_string())
}

/// The audit log never sees a credentials ID.
fn audit_path(path: &str) -> &str {
    if path.starts_with("/v2/credentials/") {
        "/v2/credentials"
    } else {
        path
    }
}

fn not_found() -> Reply {
    Reply::text(404, "text/plain; charset=utf-8", "404 page not found\n")
        .header("X-Content-Type-Options", "nosniff")
}

/// Errors are a JSON string (docs/endpoints.md §8.6), and logged.
fn error(status: u16, message: &str) -> Reply {
    let body = json::go_json(&message);
    tracing::error!("HTTP response status code is '{status}', and response in JSON is {body}");
    Reply::text(status, "application/json", body)
}

async fn route(req: &Request, deps: &TaskEndpointDeps) -> Reply {
    match parse_route(&req.path) {
        Route::NotFound => not_found(),
        Route::CredentialsV1 => credentials(
            req,
            deps,
            req.query_param("id").unwrap_or_default(),
            "CredentialsV1Request: ",
        ),
        Route::CredentialsV2(id) => {
            credentials(req, deps, id.to_string(), "CredentialsV2Request: ")
        }
        Route::V2 => error(
            400,
            &format!(
                "Unable to get task arn from request: unable to associate '{}' with task",
                req.peer.ip()
            ),
        ),
        Route::Container(version, id) => container_metadata(deps, version, id).await,
        Route::Task {
            version,
            id,
            with_tags,
        } => task_metadata(deps, version, id, with_tags).await,
        Route::ContainerStats(version, id) => container_stats(deps, version, id).await,
        Route::TaskStats(version, id) => task_stats(deps, version, id).await,
        Route::Associations(version, id, _) => associations(deps, version, id, None).await,
        Route::Association(version, id, kind, name) => {
            associations(deps, version, id, Some((kind, name))).await
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct CredentialsBody<'a> {
    role_arn: &'a str,
    access_key_id: &'a str,
    secret_access_key: &'a str,
    token: &'a str,
    expiration: &'a str,
}

#[derive(Serialize)]
struct CredentialsError<'a> {
    code: &'a str,
    message: String,
    #[serde(rename = "HTTPErrorCode")]
    http_error_code: u16,
}

fn credentials(req: &Request, deps: &TaskEndpointDeps, id: String, prefix: &str) -> Reply {
    let refuse = |status: u16, code: &str, message: &str| {
        Reply::json(
            status,
            &CredentialsError {
                code,
                message: format!("{prefix}{message}"),
                http_error_code: status,
            },
        )
    };
    let (reply, subject) = if id.is_empty() {
        let r = refuse(400, "NoIdInRequest", "No Credential ID in the request");
        (r, None)
    } else {
        match deps.credentials.lookup(&id) {
            Lookup::Unknown => (
                refuse(400, "InvalidIdInRequest", "Credentials not found"),
                None,
            ),
            Lookup::Pending => (
                refuse(
                    503,
                    "CredentialsUninitialized",
                    "Credentials uninitialized for ID",
                ),
                None,
            ),
            Lookup::Ready {
                task_arn,
                role_type,
                credentials: c,
            } => {
                tracing::info!(
                    "Processing credential request, credentialType={} taskARN={task_arn}",
                    match role_type {
                        crate::credentials::RoleType::TaskApplication => "TaskApplication",
                        crate::credentials::RoleType::TaskExecution => "TaskExecution",
                    }
                );
                let body = CredentialsBody {
                    role_arn: &c.role_arn,
                    access_key_id: &c.access_key_id,
                    secret_access_key: &c.secret_access_key,
                    token: &c.session_token,
                    expiration: &c.expiration,
                };
                (
                    Reply::json(200, &body),
                    Some((task_arn, role_type.audit_event())),
                )
            }
        }
    };
    deps.audit.record(&AuditEntry {
        status: reply.status,
        peer: req.peer,
        path: audit_path(&req.path),
        user_agent: &req.user_agent,
        subject: subject.as_ref().map(|(arn, event)| (arn.as_str(), *event)),
        at_ms: crate::engine::now_ms(),
    });
    reply
}

/// The task and container an endpoint ID belongs to, once the container
/// has a Docker ID (docs/endpoints.md §8.1).
fn find<'a>(tasks: &'a [Task], id: &str) -> Option<(&'a Task, &'a Container)> {
    tasks.iter().find_map(|t| {
        t.containers
            .iter()
            .find(|c| c.endpoint_id == id && c.docker_id.is_some())
            .map(|c| (t, c))
    })
}

fn lookup_failed(version: Version, what: &str, id: &str) -> Reply {
    let v = version.label();
    let status = match version {
        Version::V3 => 500,
        Version::V4 => 404,
    };
    let message = match what {
        "task" => format!(
            "{v} task metadata handler: unable to get task arn from request: unable to get task Arn from v3 endpoint ID: {id}"
        ),
        _ => format!(
            "{v} container metadata handler: unable to get container ID from request: unable to get docker ID from v3 endpoint ID: {id}"
        ),
    };
    error(status, &message)
}

fn stats_lookup_failed(version: Version, what: &str, id: &str) -> Reply {
    let v = version.label();
    let status = match version {
        Version::V3 => 400,
        Version::V4 => 404,
    };
    error(
        status,
        &format!(
            "{v} {what} stats handler: unable to get task arn from request: unable to get task Arn from v3 endpoint ID: {id}"
        ),
    )
}

async fn container_metadata(deps: &TaskEndpointDeps, version: Version, id: &str) -> Reply {
    let tasks = deps.view.tasks.tasks().await;
    let Some((task, container)) = find(&tasks, id) else {
        return lookup_failed(version, "container", id);
    };
    let details = gather_details(deps.docker.as_ref(), &[task]).await;
    let d = container.docker_id.as_ref().and_then(|i| details.get(i));
    tracing::info!(
        tmdsEndpointContainerID = id,
        "Writing response for container metadata"
    );
    Reply::json(
        200,
        &metadata::container_response(task, container, d, version),
    )
}

async fn task_metadata(
    deps: &TaskEndpointDeps,
    version: Version,
    id: &str,
    with_tags: bool,
) -> Reply {
    let tasks = deps.view.tasks.tasks().await;
    let Some((task, _)) = find(&tasks, id) else {
        return lookup_failed(version, "task", id);
    };
    let details = gather_details(deps.docker.as_ref(), &[task]).await;
    let tags = if with_tags {
        Some(read_tags(deps, task).await)
    } else {
        None
    };
    let az = deps
        .view
        .availability_zone
        .as_deref()
        .filter(|_| !deps.az_disabled);
    let ctx = TaskContext {
        cluster: &deps.view.cluster,
        availability_zone: az,
        details: &details,
        tags: tags.as_ref(),
    };
    tracing::info!(
        tmdsEndpointContainerID = id,
        taskARN = task.spec.arn,
        "Writing response for task metadata"
    );
    Reply::json(200, &metadata::task_response(task, &ctx, version))
}

async fn read_tags(deps: &TaskEndpointDeps, task: &Task) -> Tags {
    let mut tags = Tags::default();
    let Some(ecs) = &deps.ecs else {
        return tags;
    };
    let targets = [
        ("ContainerInstanceTags", deps.view.instance_arn.clone()),
        ("TaskTags", task.spec.arn.clone()),
    ];
    for (field, arn) in targets {
        match ecs.list_tags(&arn).await {
            Ok(found) => {
                if field == "TaskTags" {
                    tags.task = Some(found);
                } else {
                    tags.instance = Some(found);
                }
            }
            Err(e) => {
                tracing::warn!(
                    resource = arn,
                    code = e.code,
                    message = e.message,
                    "reading tags failed"
                );
                tags.errors.push(TagError {
                    error_field: field,
                    error_code: e.code,
                    error_message: e.message,
                    status_code: e.status,
                    request_id: e.request_id,
                    resource_arn: arn,
                });
            }
        }
    }
    tags
}

/// One container's stats in the version's shape: the sample (v4 adds the
/// network rates), or `null` (v3) / `{}` (v4) when there is none (the
/// container is not running).
async fn stats_value(
    deps: &TaskEndpointDeps,
    version: Version,
    target: Option<crate::metrics::Target>,
) -> Value {
    let stats = match target {
        Some(target) => {
            let collector = deps.stats.clone();
            tokio::task::spawn_blocking(move || collector.stats(&target))
                .await
                .unwrap_or_default()
        }
        None => crate::metrics::Stats::default(),
    };
    match version {
        Version::V3 => stats.sample.unwrap_or(Value::Null),
        Version::V4 => {
            let mut object = match stats.sample {
                Some(Value::Object(map)) => map,
                _ => serde_json::Map::new(),
            };
            if let Some((rx, tx)) = stats.network_rate {
                object.insert(
                    "network_rate_stats".into(),
                    serde_json::json!({"rx_bytes_per_sec": rx, "tx_bytes_per_sec": tx}),
                );
            }
            Value::Object(object)
        }
    }
}

async fn container_stats(deps: &TaskEndpointDeps, version: Version, id: &str) -> Reply {
    let tasks = deps.view.tasks.tasks().await;
    let Some((task, container)) = find(&tasks, id) else {
        return stats_lookup_failed(version, "container", id);
    };
    let target = crate::metrics::Target::of(task, container);
    Reply::json(200, &stats_value(deps, version, target).await)
}

/// Every container of the task that Docker knows, by Docker ID.
async fn task_stats(deps: &TaskEndpointDeps, version: Version, id: &str) -> Reply {
    let tasks = deps.view.tasks.tasks().await;
    let Some((task, _)) = find(&tasks, id) else {
        return stats_lookup_failed(version, "task", id);
    };
    let mut all = BTreeMap::new();
    for c in &task.containers {
        let Some(docker_id) = c.docker_id.clone() else {
            continue;
        };
        let value = stats_value(deps, version, crate::metrics::Target::of(task, c)).await;
        all.insert(docker_id, value);
    }
    Reply::json(200, &all)
}

/// No association types (GPUs, elastic inference) exist on this agent:
/// the list is empty and a named lookup fails.
async fn associations(
    deps: &TaskEndpointDeps,
    version: Version,
    id: &str,
    named: Option<(&str, &str)>,
) -> Reply {
    let v = version.label();
    let tasks = deps.view.tasks.tasks().await;
    if find(&tasks, id).is_none() {
        return error(
            400,
            &format!(
                "{v} container associations handler: unable to get task arn from request: unable to get task Arn from v3 endpoint ID: {id}"
            ),
        );
    }
    match named {
        Some((kind, name)) => error(
            400,
            &format!("Unable to write container association response: unable to get association {name:?} of type {kind:?}"),
        ),
        None => {
            let empty: HashMap<&str, Vec<String>> = HashMap::from([("Associations", Vec::new())]);
            Reply::json(200, &empty)
        }
    }
}

/// Serves the task endpoint until `stop`.
pub async fn run(deps: TaskEndpointDeps, stop: tokio::sync::watch::Receiver<bool>) {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], super::TASK_ENDPOINT_PORT));
    let handler = move |req: Request| handle(req, deps.clone());
    super::server::serve("task metadata", addr, Default::default(), handler, stop).await;
}

#[cfg(test)]
mod tests;
