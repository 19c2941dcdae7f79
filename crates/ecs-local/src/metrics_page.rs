//! What agents publish over TCS, kept per task and shown on `GET /metrics`
//! in Prometheus's text format: one series per task and per container, with
//! cluster, family, revision, task and container labels. The real ECS API
//! carries no utilisation (it goes to CloudWatch); this page is where a
//! local user looks instead.
//!
//! Each instance's latest collection wins: when a collection ends (`fin`),
//! its instance's tasks that it did not mention are dropped (they stopped),
//! and an idle collection drops them all.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write;
use std::sync::{Mutex, MutexGuard};

use ecs_model::tcs::{
    CWStatsSet, ContainerMetric, PublishMetricsRequest, TaskMetric, ULongStatsSet,
};

use crate::arn;

#[derive(Debug, Default)]
struct InstanceMetrics {
    cluster: String,
    /// The collection being received, and the tasks it named so far.
    message_id: String,
    named: HashSet<String>,
    tasks: BTreeMap<String, TaskMetric>,
}

/// The latest task metrics of every instance, by instance id.
#[derive(Debug, Default)]
pub struct MetricsBoard {
    instances: Mutex<HashMap<String, InstanceMetrics>>,
}

impl MetricsBoard {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, InstanceMetrics>> {
        self.instances.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes one `PublishMetricsRequest` from the instance.
    pub fn record(&self, instance_id: &str, request: &PublishMetricsRequest) {
        let meta = request.metadata.clone().unwrap_or_default();
        let mut instances = self.lock();
        let entry = instances.entry(instance_id.to_owned()).or_default();
        if let Some(cluster) = meta.cluster.as_deref() {
            entry.cluster = arn::resource_id(cluster).to_owned();
        }
        if meta.idle == Some(true) {
            entry.tasks.clear();
            entry.named.clear();
            return;
        }
        let message_id = meta.message_id.unwrap_or_default();
        if entry.message_id != message_id {
            entry.message_id = message_id;
            entry.named.clear();
        }
        for task in request.task_metrics.iter().flatten() {
            let Some(task_arn) = task.task_arn.as_deref() else {
                continue;
            };
            let id = arn::resource_id(task_arn).to_owned();
            entry.named.insert(id.clone());
            entry.tasks.insert(id, task.clone());
        }
        if meta.fin == Some(true) {
            let named = std::mem::take(&mut entry.named);
            entry.tasks.retain(|id, _| named.contains(id));
        }
    }

    /// The page, in Prometheus's text exposition format.
    pub fn render(&self) -> String {
        let instances = self.lock();
        let mut rows: Vec<Row> = Vec::new();
        for (instance, m) in instances.iter() {
            for (task_id, task) in &m.tasks {
                let labels = Labels {
                    cluster: &m.cluster,
                    instance,
                    family: task.task_definition_family.as_deref().unwrap_or(""),
                    revision: task.task_definition_version.as_deref().unwrap_or(""),
                    task: task_id,
                };
                rows.push(Row {
                    labels,
                    containers: task.container_metrics.as_deref().unwrap_or(&[]),
                });
            }
        }
        rows.sort_by(|a, b| {
            (a.labels.cluster, a.labels.task).cmp(&(b.labels.cluster, b.labels.task))
        });
        let mut out = String::new();
        for family in FAMILIES {
            let _ = writeln!(out, "# HELP {} {}", family.name, family.help);
            let _ = writeln!(out, "# TYPE {} gauge", family.name);
            for row in &rows {
                for c in row.containers {
                    if let Some(value) = (family.value)(c) {
                        let name = escape(c.container_name.as_deref().unwrap_or(""));
                        let _ = writeln!(
                            out,
                            "{}{{{},container=\"{name}\"}} {value}",
                            family.name, row.labels
                        );
                    }
                }
            }
            if !family.task_sum {
                continue;
            }
            let task_name = family.task_name();
            let _ = writeln!(
                out,
                "# HELP {task_name} The task's containers together: {}",
                family.help
            );
            let _ = writeln!(out, "# TYPE {task_name} gauge");
            for row in &rows {
                let values: Vec<f64> = row.containers.iter().filter_map(family.value).collect();
                if !values.is_empty() {
                    let total: f64 = values.iter().sum();
                    let _ = writeln!(out, "{task_name}{{{}}} {total}", row.labels);
                }
            }
        }
        out
    }
}

struct Row<'a> {
    labels: Labels<'a>,
    containers: &'a [ContainerMetric],
}

struct Labels<'a> {
    cluster: &'a str,
    instance: &'a str,
    family: &'a str,
    revision: &'a str,
    task: &'a str,
}

impl std::fmt::Display for Labels<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cluster=\"{}\",container_instance=\"{}\",family=\"{}\",revision=\"{}\",task=\"{}\"",
            escape(self.cluster),
            escape(self.instance),
            escape(self.family),
            escape(self.revision),
            escape(self.task)
        )
    }
}

/// Label values escape backslash, double quote and newline.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One metric: its container series, and (when `task_sum`) the task's, the
/// sum over its containers.
struct Family {
    name: &'static str,
    help: &'static str,
    task_sum: bool,
    value: fn(&ContainerMetric) -> Option<f64>,
}

impl Family {
    fn task_name(&self) -> String {
        self.name.replace("ecs_container_", "ecs_task_")
    }
}

fn mean(set: Option<&CWStatsSet>) -> Option<f64> {
    let s = set?;
    let count = s.sample_count.filter(|n| *n > 0)?;
    #[allow(clippy::cast_precision_loss)]
    Some(s.sum? / count as f64)
}

#[allow(clippy::cast_precision_loss)]
fn latest(set: Option<&ULongStatsSet>) -> Option<f64> {
    set?.max.map(|v| v as f64)
}

const FAMILIES: [Family; 6] = [
    Family {
        name: "ecs_container_cpu_utilization_percent",
        help: "CPU used over the agent's last publication, percent of the whole host (mean of its samples).",
        task_sum: true,
        value: |c| mean(c.cpu_stats_set.as_ref()),
    },
    Family {
        name: "ecs_container_memory_utilized_mib",
        help: "Memory in use without the page cache, MiB (mean of the last publication's samples).",
        task_sum: true,
        value: |c| mean(c.memory_stats_set.as_ref()),
    },
    Family {
        name: "ecs_container_network_rx_bytes",
        help: "Bytes received since the container started.",
        task_sum: false,
        value: |c| latest(c.network_stats_set.as_ref()?.rx_bytes.as_ref()),
    },
    Family {
        name: "ecs_container_network_tx_bytes",
        help: "Bytes sent since the container started.",
        task_sum: false,
        value: |c| latest(c.network_stats_set.as_ref()?.tx_bytes.as_ref()),
    },
    Family {
        name: "ecs_container_storage_read_bytes",
        help: "Bytes read from block devices since the container started.",
        task_sum: false,
        value: |c| latest(c.storage_stats_set.as_ref()?.read_size_bytes.as_ref()),
    },
    Family {
        name: "ecs_container_storage_write_bytes",
        help: "Bytes written to block devices since the container started.",
        task_sum: false,
        value: |c| latest(c.storage_stats_set.as_ref()?.write_size_bytes.as_ref()),
    },
];

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use ecs_model::tcs::MetricsMetadata;

    fn container(name: &str, cpu: &[f64], mib: f64) -> ContainerMetric {
        ContainerMetric {
            container_name: Some(name.into()),
            cpu_stats_set: Some(CWStatsSet {
                min: Some(0.0),
                max: Some(100.0),
                sample_count: Some(cpu.len() as i64),
                sum: Some(cpu.iter().sum()),
            }),
            memory_stats_set: Some(CWStatsSet {
                min: Some(mib),
                max: Some(mib),
                sample_count: Some(2),
                sum: Some(2.0 * mib),
            }),
            ..ContainerMetric::default()
        }
    }

    fn request(
        message: &str,
        fin: bool,
        tasks: &[(&str, Vec<ContainerMetric>)],
    ) -> PublishMetricsRequest {
        PublishMetricsRequest {
            metadata: Some(MetricsMetadata {
                cluster: Some("arn:aws:ecs:us-east-1:000000000000:cluster/demo".into()),
                container_instance: Some("i".into()),
                fin: Some(fin),
                idle: Some(false),
                message_id: Some(message.into()),
            }),
            task_metrics: Some(
                tasks
                    .iter()
                    .map(|(id, containers)| TaskMetric {
                        task_arn: Some(format!(
                            "arn:aws:ecs:us-east-1:000000000000:task/demo/{id}"
                        )),
                        task_definition_family: Some("web".into()),
                        task_definition_version: Some("3".into()),
                        container_metrics: Some(containers.clone()),
                        ..TaskMetric::default()
                    })
                    .collect(),
            ),
            ..PublishMetricsRequest::default()
        }
    }

    #[test]
    fn a_page_of_task_and_container_series() {
        let board = MetricsBoard::default();
        board.record(
            "i-1",
            &request(
                "m1",
                true,
                &[(
                    "t1",
                    vec![
                        container("app", &[20.0, 40.0], 10.0),
                        container("log\"s", &[5.0], 2.0),
                    ],
                )],
            ),
        );
        let page = board.render();
        let labels =
            r#"cluster="demo",container_instance="i-1",family="web",revision="3",task="t1""#;
        for line in [
            "# TYPE ecs_container_cpu_utilization_percent gauge".to_string(),
            format!(r#"ecs_container_cpu_utilization_percent{{{labels},container="app"}} 30"#),
            format!(r#"ecs_container_cpu_utilization_percent{{{labels},container="log\"s"}} 5"#),
            "# TYPE ecs_task_cpu_utilization_percent gauge".to_string(),
            format!("ecs_task_cpu_utilization_percent{{{labels}}} 35"),
            format!(r#"ecs_container_memory_utilized_mib{{{labels},container="app"}} 10"#),
            format!("ecs_task_memory_utilized_mib{{{labels}}} 12"),
        ] {
            assert!(
                page.lines().any(|l| l == line),
                "{line} missing from:\n{page}"
            );
        }
        // No network or storage sets sent: no such series.
        assert!(!page.contains("ecs_container_network_rx_bytes{"), "{page}");
    }

    #[test]
    fn a_finished_collection_drops_the_tasks_it_did_not_name_and_idle_drops_all() {
        let board = MetricsBoard::default();
        let c = || vec![container("app", &[1.0], 1.0)];
        board.record("i-1", &request("m1", true, &[("t1", c()), ("t2", c())]));
        board.record("i-2", &request("n1", true, &[("t9", c())]));
        // Split over two requests: nothing is dropped before `fin`.
        board.record("i-1", &request("m2", false, &[("t2", c())]));
        assert!(board.render().contains(r#"task="t1""#));
        board.record("i-1", &request("m2", true, &[("t3", c())]));
        let page = board.render();
        assert!(!page.contains(r#"task="t1""#), "t1 stopped:\n{page}");
        assert!(page.contains(r#"task="t2""#) && page.contains(r#"task="t3""#));
        assert!(
            page.contains(r#"task="t9""#),
            "another instance is untouched"
        );
        let mut idle = request("m3", true, &[]);
        idle.metadata.as_mut().unwrap().idle = Some(true);
        board.record("i-1", &idle);
        let page = board.render();
        assert!(!page.contains(r#"task="t2""#) && page.contains(r#"task="t9""#));
    }
}
