//! Local-only routes, under `/_local/`, for what the ECS API cannot show.
//!
//! `GET /_local/v1/task-credentials?task=<task ARN or id>` returns the task
//! IAM role credentials the plane issued for a task, exactly as its agent
//! received them (the ECS API never returns secrets):
//!
//! ```json
//! {"taskArn": "arn:aws:ecs:us-east-1:000000000000:task/default/…",
//!  "taskRoleCredentials": {"credentialsId": "…", "roleArn": "…", "accessKeyId": "ASIA…",
//!                          "secretAccessKey": "…", "sessionToken": "…",
//!                          "expiration": "2026-11-28T02:18:40Z"},
//!  "executionRoleCredentials": null}
//! ```
//!
//! A role the task does not have is `null`. Errors are JSON too:
//! `400 {"error":"MissingParameter",…}` without `task`,
//! `404 {"error":"TaskNotFound",…}` for an unknown task, and
//! `403 {"error":"Forbidden",…}` for callers that are not on the loopback
//! interface (whoever reads these keys can act as the task).

use crate::arn;
use crate::Context;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::sync::Arc;

/// Path of the task credentials route.
pub const TASK_CREDENTIALS_PATH: &str = "/_local/v1/task-credentials";

fn answer(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body.to_string(),
    )
        .into_response()
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    answer(status, &json!({"error": code, "message": message}))
}

/// `GET /_local/v1/task-credentials?task=<task>`.
pub(crate) async fn task_credentials(
    State(ctx): State<Arc<Context>>,
    ConnectInfo(crate::Peer(peer)): ConnectInfo<crate::Peer>,
    RawQuery(raw): RawQuery,
) -> Response {
    if !peer.ip().is_loopback() {
        tracing::warn!(%peer, "task credentials asked for from off the host; refused");
        return error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "Task credentials are only shown to callers on this host (loopback).",
        );
    }
    let task = form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "task")
        .map(|(_, v)| v.trim().to_owned())
        .filter(|v| !v.is_empty());
    let Some(task) = task else {
        return error(
            StatusCode::BAD_REQUEST,
            "MissingParameter",
            "The query parameter 'task' (a task ARN or id) is required.",
        );
    };
    let id = arn::resource_id(&task).to_owned();
    let found = ctx.store.read(|st| {
        st.tasks.get(&id).map(|t| {
            let shown = |c: Option<&crate::credentials::IssuedCredentials>| {
                c.and_then(|c| serde_json::to_value(&c.credentials).ok())
                    .unwrap_or(Value::Null)
            };
            json!({
                "taskArn": t.arn(),
                "taskRoleCredentials": shown(t.task_role_credentials.as_ref()),
                "executionRoleCredentials": shown(t.execution_role_credentials.as_ref()),
            })
        })
    });
    match found {
        Some(body) => {
            tracing::debug!(task = id, "issued task credentials shown");
            answer(StatusCode::OK, &body)
        }
        None => error(
            StatusCode::NOT_FOUND,
            "TaskNotFound",
            &format!("No task {task} is known to ecs-local."),
        ),
    }
}
