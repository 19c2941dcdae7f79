//! What the web console (crate::console) shows, in the API's own views and
//! member names, and the two changes it makes, through the same code as
//! the StopTask and UpdateService calls they are (docs/ecs-local.md §1.9).

use super::{clusters, container_instances, services, ApiError, RequestInfo};
use crate::store::State;
use crate::Context;
use serde_json::{json, Value};

/// Stopped tasks shown beside every task that is not: the most recent.
const STOPPED_SHOWN: usize = 100;
/// A service's most recent events shown.
const EVENTS_SHOWN: usize = 10;

/// One cluster's instances, tasks and services, with every cluster listed:
/// `{"clusters", "cluster", "containerInstances", "tasks", "services"}`.
/// An unknown `cluster` shows the first one (`default` when it exists).
pub(crate) fn snapshot(st: &State, cluster: Option<&str>) -> Value {
    let mut clusters: Vec<_> = st
        .clusters
        .values()
        .filter(|c| c.status != "INACTIVE")
        .collect();
    clusters.sort_by(|a, b| a.name.cmp(&b.name));
    let chosen = cluster
        .and_then(|name| clusters.iter().find(|c| c.name == name))
        .or_else(|| clusters.iter().find(|c| c.name == "default"))
        .or_else(|| clusters.first())
        .map(|c| c.name.clone());
    let Some(chosen) = chosen else {
        return json!({"clusters": [], "cluster": null, "containerInstances": [], "tasks": [], "services": []});
    };

    let mut instances: Vec<_> = st
        .instances
        .values()
        .filter(|i| i.cluster == chosen && i.status != "INACTIVE")
        .collect();
    instances.sort_by(|a, b| a.arn.cmp(&b.arn));

    let (mut live, mut stopped): (Vec<_>, Vec<_>) = st
        .tasks
        .values()
        .filter(|t| t.cluster == chosen)
        .partition(|t| t.last_status() != "STOPPED");
    let newest_first =
        |x: Option<f64>, y: Option<f64>| y.unwrap_or(0.0).total_cmp(&x.unwrap_or(0.0));
    live.sort_by(|a, b| newest_first(a.task.created_at, b.task.created_at).then(a.id.cmp(&b.id)));
    stopped.sort_by(|a, b| {
        let at = a.task.stopped_at.or(a.task.created_at);
        let bt = b.task.stopped_at.or(b.task.created_at);
        newest_first(at, bt).then(a.id.cmp(&b.id))
    });
    stopped.truncate(STOPPED_SHOWN);
    let tasks: Vec<_> = live
        .into_iter()
        .chain(stopped)
        .map(|t| {
            let mut task = t.task.clone();
            task.tags = None;
            task
        })
        .collect();

    let mut service_records: Vec<_> = st
        .services
        .values()
        .filter(|s| s.cluster == chosen && s.status() != "INACTIVE")
        .collect();
    service_records.sort_by(|a, b| a.name.cmp(&b.name));
    let services: Vec<_> = service_records
        .into_iter()
        .map(|record| {
            let mut service = services::view(record, false);
            if let Some(events) = service.events.as_mut() {
                events.truncate(EVENTS_SHOWN);
            }
            service
        })
        .collect();

    json!({
        "clusters": clusters.iter().map(|c| clusters::view(st, c)).collect::<Vec<_>>(),
        "cluster": chosen,
        "containerInstances": instances
            .iter()
            .map(|i| container_instances::view(st, i))
            .collect::<Vec<_>>(),
        "tasks": tasks,
        "services": services,
    })
}

/// StopTask, with the reason saying who asked.
pub(crate) fn stop_task(
    ctx: &Context,
    cluster: &str,
    task: &str,
    operator: &str,
) -> Result<Value, ApiError> {
    let body = json!({
        "cluster": cluster,
        "task": task,
        "reason": format!("Stopped from the ecs-local console by {operator}"),
    });
    call(ctx, "StopTask", &body)
}

/// UpdateService with only `desiredCount`.
pub(crate) fn set_desired_count(
    ctx: &Context,
    cluster: &str,
    service: &str,
    desired_count: i64,
) -> Result<Value, ApiError> {
    let body = json!({
        "cluster": cluster,
        "service": service,
        "desiredCount": desired_count,
    });
    call(ctx, "UpdateService", &body)
}

fn call(ctx: &Context, action: &str, body: &Value) -> Result<Value, ApiError> {
    let info = RequestInfo {
        host: ctx.local_addr.to_string(),
    };
    let bytes = super::run_action(ctx, action, body.to_string().as_bytes(), &info)?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::Server(e.to_string()))
}
