//! What the web console (crate::console) shows, in the API's own views and
//! member names, and the two changes it makes, through the same code as
//! the StopTask and UpdateService calls they are (docs/ecs-local.md §1.9).

use super::{clusters, container_instances, services, ApiError, RequestInfo};
use crate::store::State;
use crate::Context;
use serde_json::{json, Value};

/// Tasks shown: the newest that are not STOPPED, then the most recently
/// stopped; a page redrawn every 2 s cannot usefully show more, and a
/// plane with 10,000 tasks must not answer megabytes each time.
const LIVE_SHOWN: usize = 500;
const STOPPED_SHOWN: usize = 100;
/// A service's most recent events shown.
const EVENTS_SHOWN: usize = 10;

/// One cluster's instances, tasks and services, with every cluster listed:
/// `{"clusters", "cluster", "containerInstances", "tasks", "taskCount",
/// "services"}`, where `taskCount` is how many tasks the cluster has in
/// all (of which `tasks` shows at most [`LIVE_SHOWN`] + [`STOPPED_SHOWN`]).
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
        return json!({"clusters": [], "cluster": null, "containerInstances": [], "tasks": [], "taskCount": 0, "services": []});
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
    let task_count = live.len() + stopped.len();
    live.truncate(LIVE_SHOWN);
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
        "taskCount": task_count,
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::store::{ClusterRecord, TaskRecord};

    fn task(id: &str, last: &str, at: f64) -> TaskRecord {
        serde_json::from_value(json!({
            "id": id, "cluster": "default", "family": "f", "revision": 1,
            "demand": {"cpu": 0, "memory": 0},
            "task": {"taskArn": format!("arn:aws:ecs:us-east-1:000000000000:task/default/{id}"),
                     "lastStatus": last, "createdAt": at, "stoppedAt": at}
        }))
        .unwrap()
    }

    #[test]
    fn a_big_cluster_shows_its_newest_tasks_and_counts_them_all() {
        let mut st = State::default();
        st.clusters.insert(
            "default".into(),
            ClusterRecord {
                name: "default".into(),
                arn: "arn:aws:ecs:us-east-1:000000000000:cluster/default".into(),
                status: "ACTIVE".into(),
                tags: None,
                settings: None,
                configuration: None,
            },
        );
        for n in 0..700 {
            let id = format!("run{n:04}");
            st.tasks
                .insert(id.clone(), task(&id, "RUNNING", f64::from(n)));
        }
        for n in 0..150 {
            let id = format!("stop{n:04}");
            st.tasks
                .insert(id.clone(), task(&id, "STOPPED", f64::from(n)));
        }
        let shown = snapshot(&st, Some("no-such-cluster"));
        assert_eq!(shown["cluster"], "default");
        assert_eq!(shown["taskCount"], 850);
        let tasks = shown["tasks"].as_array().unwrap();
        assert_eq!(tasks.len(), LIVE_SHOWN + STOPPED_SHOWN);
        let id = |i: usize| {
            tasks[i]["taskArn"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_owned()
        };
        assert_eq!(id(0), "run0699", "newest first");
        assert_eq!(id(LIVE_SHOWN - 1), "run0200");
        assert_eq!(id(LIVE_SHOWN), "stop0149", "then the most recently stopped");
        assert_eq!(snapshot(&State::default(), None)["tasks"], json!([]));
    }
}
