//! What the TCS publisher sends every tick, built from the engine's task
//! snapshot (docs/protocols.md §5.5): the idle metrics request,
//! container health in batches of 10 tasks, and the queue of 15 ticks that
//! hands them to the connection.
//!
//! Container utilisation comes from the metrics collector's statistics sets
//! (docs/metrics.md §4): batches of at most 10 tasks and 1 MiB. While tasks
//! are tracked but none has usable figures yet, nothing is sent that tick,
//! as the Go agent does.

use std::collections::BTreeMap;

use ecs_model::tcs::{
    ContainerHealth, HealthMetadata, MetricsMetadata, PublishHealthRequest, PublishMetricsRequest,
    TaskHealth, TaskMetric, TcsMessage,
};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::SendTimeoutError;

use super::{health_status_string, ids, tcs_time, TcsContext};
use crate::engine::now_ms;
use crate::engine::status::{ContainerStatus, TaskStatus};
use crate::engine::task::Task;
use crate::metrics::TaskSets;

/// At most this many tasks per request (docs/protocols.md §5.5).
pub const TASKS_PER_REQUEST: usize = 10;

/// At most this many bytes of JSON in a `PublishMetricsRequest`'s message
/// (docs/protocols.md §5.5).
pub const MAX_METRICS_REQUEST_BYTES: usize = 1024 * 1024;

/// One tick's output: every request of its metrics collection and of its
/// health collection. The queue holds whole ticks, so "drop this tick's
/// message" drops both together.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Collection {
    pub metrics: Vec<PublishMetricsRequest>,
    pub health: Vec<PublishHealthRequest>,
}

impl Collection {
    pub fn is_empty(&self) -> bool {
        self.metrics.is_empty() && self.health.is_empty()
    }

    /// The frames to send, metrics first.
    pub fn into_messages(self) -> impl Iterator<Item = TcsMessage> {
        self.metrics
            .into_iter()
            .map(TcsMessage::PublishMetricsRequest)
            .chain(
                self.health
                    .into_iter()
                    .map(TcsMessage::PublishHealthRequest),
            )
    }
}

/// Sets the request's `timestamp` to the time it is sent, as the Go agent
/// does when it turns a collection into requests.
pub fn stamp(message: &mut TcsMessage, now_ms: i64) {
    let at = Some(tcs_time(now_ms));
    match message {
        TcsMessage::PublishMetricsRequest(m) => m.timestamp = at,
        TcsMessage::PublishHealthRequest(m) => m.timestamp = at,
        TcsMessage::PublishInstanceStatusRequest(m) => m.timestamp = at,
        _ => {}
    }
}

/// A container the stats engine would track: running, in a task that is
/// not stopped and has an ARN and a family (docs/protocols.md §5.5).
fn tracked_containers(task: &Task) -> impl Iterator<Item = &crate::engine::task::Container> {
    let task_tracked = task.known_status < TaskStatus::Stopped
        && !task.spec.arn.is_empty()
        && !task.spec.family.is_empty();
    task.containers.iter().filter(move |c| {
        task_tracked
            && matches!(
                c.known_status,
                ContainerStatus::Running | ContainerStatus::ResourcesProvisioned
            )
    })
}

/// The instance is idle when no container of any task is tracked.
pub fn is_idle(tasks: &[Task]) -> bool {
    tasks.iter().all(|t| tracked_containers(t).next().is_none())
}

/// The metrics collection of one tick: the single idle request when the
/// instance is idle (or metrics are disabled, docs/protocols.md §5.5);
/// else the tasks' metrics in batches of at most [`TASKS_PER_REQUEST`] tasks
/// and [`MAX_METRICS_REQUEST_BYTES`], all sharing `message_id`, `fin:true`
/// only on the last; nothing when no task has metrics yet.
pub fn metrics_collection(
    tasks: &[Task],
    disable_metrics: bool,
    task_metrics: BTreeMap<String, TaskSets>,
    cluster: &str,
    instance_arn: &str,
    message_id: &str,
) -> Vec<PublishMetricsRequest> {
    let idle = disable_metrics || is_idle(tasks);
    let request = |batch: Option<Vec<TaskMetric>>, fin: bool| PublishMetricsRequest {
        metadata: Some(MetricsMetadata {
            cluster: Some(cluster.to_string()),
            container_instance: Some(instance_arn.to_string()),
            fin: Some(fin),
            idle: Some(idle),
            message_id: Some(message_id.to_string()),
        }),
        task_metrics: batch,
        ..PublishMetricsRequest::default()
    };
    if idle {
        return vec![request(None, true)];
    }
    let metrics: Vec<TaskMetric> = task_metrics
        .into_iter()
        .map(|(arn, sets)| TaskMetric {
            task_arn: Some(arn),
            task_definition_family: Some(sets.family),
            task_definition_version: Some(sets.version),
            container_metrics: Some(sets.containers),
            ..TaskMetric::default()
        })
        .collect();
    // The room a request takes before any task: its metadata, the list's
    // brackets and a timestamp.
    let base = serde_json::to_vec(&request(Some(Vec::new()), false)).map_or(0, |v| v.len()) + 32;
    let mut batches: Vec<Vec<TaskMetric>> = Vec::new();
    let mut current: Vec<TaskMetric> = Vec::new();
    let mut size = base;
    for m in metrics {
        let bytes = serde_json::to_vec(&m).map_or(0, |v| v.len()) + 1;
        if !current.is_empty()
            && (current.len() == TASKS_PER_REQUEST || size + bytes > MAX_METRICS_REQUEST_BYTES)
        {
            batches.push(std::mem::take(&mut current));
            size = base;
        }
        size += bytes;
        current.push(m);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    let last = batches.len().saturating_sub(1);
    batches
        .into_iter()
        .enumerate()
        .map(|(i, batch)| request(Some(batch), i == last))
        .collect()
}

/// The health of one task's tracked containers that have a Docker health
/// check; `None` when it has none (docs/protocols.md §5.5). A container whose
/// status never changed yet reports `now` as `statusSince`.
pub fn task_health(task: &Task, now_ms: i64) -> Option<TaskHealth> {
    let containers: Vec<ContainerHealth> = tracked_containers(task)
        .filter(|c| c.spec.docker_health_check)
        .map(|c| ContainerHealth {
            container_name: Some(c.spec.name.clone()),
            health_status: Some(health_status_string(c.health).to_string()),
            status_since: Some(tcs_time(c.health_since_ms.unwrap_or(now_ms))),
            status_message: None,
        })
        .collect();
    if containers.is_empty() {
        return None;
    }
    Some(TaskHealth {
        cluster_arn: None,
        containers: Some(containers),
        task_arn: Some(task.spec.arn.clone()),
        task_definition_family: Some(task.spec.family.clone()),
        task_definition_version: Some(task.spec.version.clone()),
    })
}

/// The health collection of one tick: batches of at most 10 tasks sharing
/// `message_id`, `fin:true` only on the last. Empty when no container has a
/// status to report.
pub fn health_collection(
    tasks: &[Task],
    now_ms: i64,
    cluster: &str,
    instance_arn: &str,
    message_id: &str,
) -> Vec<PublishHealthRequest> {
    let healths: Vec<TaskHealth> = tasks
        .iter()
        .filter_map(|t| task_health(t, now_ms))
        .collect();
    let batches: Vec<&[TaskHealth]> = healths.chunks(TASKS_PER_REQUEST).collect();
    let last = batches.len().saturating_sub(1);
    batches
        .into_iter()
        .enumerate()
        .map(|(i, batch)| PublishHealthRequest {
            metadata: Some(HealthMetadata {
                cluster: Some(cluster.to_string()),
                container_instance: Some(instance_arn.to_string()),
                fin: Some(i == last),
                message_id: Some(message_id.to_string()),
            }),
            tasks: Some(batch.to_vec()),
            timestamp: None,
        })
        .collect()
}

/// One tick: a fresh `messageId` for each collection (docs/protocols.md §5.5).
pub fn collect(
    tasks: &[Task],
    disable_metrics: bool,
    task_metrics: BTreeMap<String, TaskSets>,
    cluster: &str,
    instance_arn: &str,
) -> Collection {
    let now = now_ms();
    Collection {
        metrics: metrics_collection(
            tasks,
            disable_metrics,
            task_metrics,
            cluster,
            instance_arn,
            &uuid::Uuid::new_v4().to_string(),
        ),
        health: health_collection(
            tasks,
            now,
            cluster,
            instance_arn,
            &uuid::Uuid::new_v4().to_string(),
        ),
    }
}

/// Every `publish_interval`, starting at once: collects and queues. A full
/// queue (TCS down for 15 ticks) gets `queue_full_wait` to drain, then this
/// tick is dropped (docs/protocols.md §5.5).
pub async fn publish_loop(ctx: &TcsContext, queue: mpsc::Sender<Collection>) {
    let mut ticks = tokio::time::interval(ctx.settings.publish_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (cluster, instance_arn) = ids(ctx);
    loop {
        ticks.tick().await;
        // `None`: the engine is shutting down, and so is the agent.
        let Some(tasks) = ctx.host.tasks().await else {
            continue;
        };
        let task_metrics = if ctx.disable_metrics {
            BTreeMap::new()
        } else {
            ctx.host.task_metrics()
        };
        let collection = collect(
            &tasks,
            ctx.disable_metrics,
            task_metrics,
            &cluster,
            &instance_arn,
        );
        if collection.is_empty() {
            continue;
        }
        match queue
            .send_timeout(collection, ctx.settings.queue_full_wait)
            .await
        {
            Ok(()) => {}
            Err(SendTimeoutError::Timeout(_)) => {
                tracing::warn!("TCS publish queue is full; dropping this tick's telemetry");
            }
            Err(SendTimeoutError::Closed(_)) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::engine::status::HealthStatus;
    use crate::engine::task::IncomingTask;

    fn task(n: usize, containers: serde_json::Value) -> Task {
        let acs: ecs_model::acs::Task = serde_json::from_value(serde_json::json!({
            "arn": format!("arn:aws:ecs:us-east-1:123456789012:task/default/t{n:03}"),
            "family": "web", "version": "3", "desiredStatus": "RUNNING",
            "containers": containers,
        }))
        .unwrap();
        let mut t = Task::new(IncomingTask::try_from(&acs).unwrap(), 0);
        t.known_status = TaskStatus::Running;
        for c in &mut t.containers {
            c.known_status = ContainerStatus::Running;
        }
        t
    }

    fn checked(n: usize) -> Task {
        task(
            n,
            serde_json::json!([
                {"name": "app", "image": "busybox", "essential": true, "healthCheckType": "docker"},
                {"name": "side", "image": "busybox"}
            ]),
        )
    }

    #[test]
    fn idle_instance_sends_one_idle_request_and_busy_instance_none() {
        let none = BTreeMap::new;
        let idle = metrics_collection(&[], false, none(), "default", "arn:ci", "m-1");
        assert_eq!(idle.len(), 1);
        let meta = idle[0].metadata.as_ref().unwrap();
        assert_eq!((meta.idle, meta.fin), (Some(true), Some(true)));
        assert!(idle[0].task_metrics.is_none());
        assert!(metrics_collection(&[checked(1)], false, none(), "c", "i", "m").is_empty());
        // ECS_DISABLE_METRICS: idle whatever runs.
        assert_eq!(
            metrics_collection(&[checked(1)], true, none(), "c", "i", "m").len(),
            1
        );
        // A stopped task is not tracked.
        let mut stopped = checked(2);
        stopped.known_status = TaskStatus::Stopped;
        assert!(is_idle(&[stopped]));
    }

    fn sets(containers: usize, name_len: usize) -> TaskSets {
        TaskSets {
            family: "web".into(),
            version: "3".into(),
            containers: (0..containers)
                .map(|i| ecs_model::tcs::ContainerMetric {
                    container_name: Some(format!("{i}{}", "x".repeat(name_len))),
                    ..Default::default()
                })
                .collect(),
        }
    }

    #[test]
    fn metrics_are_batched_by_ten_tasks_and_a_megabyte_with_one_message_id() {
        let tasks: Vec<Task> = (0..23).map(checked).collect();
        let metrics: BTreeMap<String, TaskSets> =
            (0..23).map(|n| (format!("t{n:03}"), sets(2, 4))).collect();
        let requests = metrics_collection(&tasks, false, metrics, "default", "arn:ci", "m-3");
        let sizes: Vec<usize> = requests
            .iter()
            .map(|r| r.task_metrics.as_ref().unwrap().len())
            .collect();
        assert_eq!(sizes, [10, 10, 3]);
        let meta: Vec<(Option<bool>, Option<bool>, Option<&str>)> = requests
            .iter()
            .map(|r| {
                let m = r.metadata.as_ref().unwrap();
                (m.fin, m.idle, m.message_id.as_deref())
            })
            .collect();
        assert_eq!(
            meta,
            [
                (Some(false), Some(false), Some("m-3")),
                (Some(false), Some(false), Some("m-3")),
                (Some(true), Some(false), Some("m-3"))
            ]
        );
        let first = &requests[0].task_metrics.as_ref().unwrap()[0];
        assert_eq!(first.task_arn.as_deref(), Some("t000"));
        assert_eq!(first.task_definition_family.as_deref(), Some("web"));
        assert_eq!(first.container_metrics.as_ref().unwrap().len(), 2);

        // Three tasks of about 400 KiB each: two fit a megabyte, not three.
        let big: BTreeMap<String, TaskSets> = (0..3)
            .map(|n| (format!("b{n}"), sets(4, 100_000)))
            .collect();
        let requests = metrics_collection(&tasks, false, big, "c", "i", "m");
        let sizes: Vec<usize> = requests
            .iter()
            .map(|r| r.task_metrics.as_ref().unwrap().len())
            .collect();
        assert_eq!(sizes, [2, 1]);
        for r in &requests {
            let bytes = serde_json::to_vec(r).unwrap().len();
            assert!(bytes <= MAX_METRICS_REQUEST_BYTES, "{bytes}");
        }
        // Nothing usable yet while tasks run: nothing sent.
        assert!(metrics_collection(&tasks, false, BTreeMap::new(), "c", "i", "m").is_empty());
    }

    #[test]
    fn health_is_batched_by_ten_tasks_with_one_message_id() {
        let tasks: Vec<Task> = (0..23).map(checked).collect();
        let requests = health_collection(&tasks, 1_000, "default", "arn:ci", "m-7");
        let sizes: Vec<usize> = requests
            .iter()
            .map(|r| r.tasks.as_ref().unwrap().len())
            .collect();
        assert_eq!(sizes, [10, 10, 3]);
        let fins: Vec<Option<bool>> = requests
            .iter()
            .map(|r| r.metadata.as_ref().unwrap().fin)
            .collect();
        assert_eq!(fins, [Some(false), Some(false), Some(true)]);
        assert!(requests
            .iter()
            .all(|r| r.metadata.as_ref().unwrap().message_id.as_deref() == Some("m-7")));
        // Every task appears once, in order.
        let arns: Vec<String> = requests
            .iter()
            .flat_map(|r| r.tasks.clone().unwrap())
            .map(|t| t.task_arn.unwrap())
            .collect();
        assert_eq!(arns.len(), 23);
        assert!(arns.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(
            health_collection(&tasks[..10], 0, "c", "i", "m").len(),
            1,
            "exactly ten tasks fit one request"
        );
    }

    #[test]
    fn health_reports_only_checked_running_containers() {
        let mut t = checked(1);
        t.containers[0].health = HealthStatus::Unhealthy;
        t.containers[0].health_since_ms = Some(1_795_810_655_444);
        let h = task_health(&t, 5_000).unwrap();
        let containers = h.containers.unwrap();
        assert_eq!(
            containers.len(),
            1,
            "the container without a check is left out"
        );
        assert_eq!(containers[0].container_name.as_deref(), Some("app"));
        assert_eq!(containers[0].health_status.as_deref(), Some("UNHEALTHY"));
        assert_eq!(containers[0].status_since, Some(1_795_810_655.444));
        assert_eq!(h.task_definition_family.as_deref(), Some("web"));
        assert_eq!(h.task_definition_version.as_deref(), Some("3"));

        // Unknown yet: UNKNOWN since now.
        let fresh = task_health(&checked(2), 7_000).unwrap();
        let c = &fresh.containers.unwrap()[0];
        assert_eq!(c.health_status.as_deref(), Some("UNKNOWN"));
        assert_eq!(c.status_since, Some(7.0));

        // Not running: nothing to report, and no request at all.
        let mut created = checked(3);
        created.containers[0].known_status = ContainerStatus::Created;
        assert!(task_health(&created, 0).is_none());
        assert!(health_collection(&[created], 0, "c", "i", "m").is_empty());
    }

    #[test]
    fn requests_are_stamped_when_sent() {
        let mut m = TcsMessage::PublishHealthRequest(PublishHealthRequest::default());
        stamp(&mut m, 1_795_810_656_746);
        assert!(
            m.encode().ends_with(r#""timestamp":1795810656.746}}"#),
            "{}",
            m.encode()
        );
    }
}
