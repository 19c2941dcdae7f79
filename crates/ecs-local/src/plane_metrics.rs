//! The plane's own series on `GET /metrics` (after the agents' task
//! metrics, crate::metrics_page): API requests by action and outcome with
//! latency histograms, connected agents, tasks by cluster and status,
//! services' desired and running counts, ACS payloads sent and acked, TCS
//! frames received, and how long store writes take. Counters live where
//! the work happens; gauges are read from the state when the page is
//! rendered. docs/ecs-local.md §1.6 lists them.

use crate::store::State;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 11] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// A latency histogram in Prometheus's shape: cumulative buckets, sum and
/// count.
#[derive(Debug, Default, Clone)]
pub struct Histogram {
    /// Observations at or under each bound of [`BUCKETS`] (not cumulative).
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Histogram {
    pub fn observe(&mut self, took: Duration) {
        let seconds = took.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| seconds <= *b) {
            self.counts[i] += 1;
        }
        self.sum += seconds;
        self.count += 1;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// Writes `<name>_bucket`, `_sum` and `_count` lines with `labels`
    /// (already formatted, without braces; empty for none).
    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (bound, n) in BUCKETS.iter().zip(self.counts) {
            cumulative += n;
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = |l: &str| {
            if l.is_empty() {
                String::new()
            } else {
                format!("{{{l}}}")
            }
        };
        let _ = writeln!(out, "{name}_sum{} {}", braces(labels), self.sum);
        let _ = writeln!(out, "{name}_count{} {}", braces(labels), self.count);
    }
}

/// A histogram shared between threads.
#[derive(Debug, Default)]
pub struct SharedHistogram(Mutex<Histogram>);

impl SharedHistogram {
    pub fn observe(&self, took: Duration) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .observe(took);
    }

    pub fn snapshot(&self) -> Histogram {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// API requests: counts by action and outcome (`ok` or the exception
/// name), and a latency histogram per action.
#[derive(Debug, Default)]
pub struct ApiMetrics {
    requests: Mutex<BTreeMap<(String, String), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
}

impl ApiMetrics {
    pub fn record(&self, action: &str, outcome: &str, took: Duration) {
        *self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((action.to_owned(), outcome.to_owned()))
            .or_default() += 1;
        self.latency
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(action.to_owned())
            .or_default()
            .observe(took);
    }
}

/// A counter that only grows.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Label values are quoted with `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// What the page shows besides the state.
pub struct Sources<'a> {
    pub api: &'a ApiMetrics,
    pub payloads_sent: u64,
    pub payloads_acked: u64,
    pub payloads_resent: u64,
    pub tcs_frames: u64,
    pub store_writes: Histogram,
}

/// The plane's series, in Prometheus's text exposition format.
pub fn render(state: &State, sources: &Sources<'_>) -> String {
    let mut out = String::new();
    out.push_str("# HELP ecs_local_api_requests_total ECS API requests by action and outcome (ok or the exception).\n");
    out.push_str("# TYPE ecs_local_api_requests_total counter\n");
    let requests = sources
        .api
        .requests
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    for ((action, outcome), n) in &requests {
        let _ = writeln!(
            out,
            "ecs_local_api_requests_total{{action=\"{}\",outcome=\"{}\"}} {n}",
            escape(action),
            escape(outcome)
        );
    }
    out.push_str(
        "# HELP ecs_local_api_request_duration_seconds Time to answer ECS API requests.\n",
    );
    out.push_str("# TYPE ecs_local_api_request_duration_seconds histogram\n");
    let latency = sources
        .api
        .latency
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    for (action, h) in &latency {
        h.render(
            &mut out,
            "ecs_local_api_request_duration_seconds",
            &format!("action=\"{}\"", escape(action)),
        );
    }

    let mut agents: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for i in state.instances.values().filter(|i| i.status != "INACTIVE") {
        let entry = agents.entry(i.cluster.as_str()).or_default();
        entry.0 += 1;
        if i.agent_connected {
            entry.1 += 1;
        }
    }
    out.push_str("# HELP ecs_local_container_instances Registered container instances (ACTIVE or DRAINING).\n");
    out.push_str("# TYPE ecs_local_container_instances gauge\n");
    for (cluster, (registered, _)) in &agents {
        let _ = writeln!(
            out,
            "ecs_local_container_instances{{cluster=\"{}\"}} {registered}",
            escape(cluster)
        );
    }
    out.push_str("# HELP ecs_local_agents_connected Container instances whose agent has an ACS connection open.\n");
    out.push_str("# TYPE ecs_local_agents_connected gauge\n");
    for (cluster, (_, connected)) in &agents {
        let _ = writeln!(
            out,
            "ecs_local_agents_connected{{cluster=\"{}\"}} {connected}",
            escape(cluster)
        );
    }

    let mut tasks: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for t in state.tasks.values() {
        *tasks
            .entry((t.cluster.as_str(), t.last_status()))
            .or_default() += 1;
    }
    out.push_str("# HELP ecs_local_tasks Tasks the plane knows, by cluster and last status.\n");
    out.push_str("# TYPE ecs_local_tasks gauge\n");
    for ((cluster, status), n) in &tasks {
        let _ = writeln!(
            out,
            "ecs_local_tasks{{cluster=\"{}\",status=\"{}\"}} {n}",
            escape(cluster),
            escape(status)
        );
    }

    out.push_str("# HELP ecs_local_service_desired_tasks The desired count of each service that is not INACTIVE.\n");
    out.push_str("# TYPE ecs_local_service_desired_tasks gauge\n");
    let services: Vec<_> = state
        .services
        .values()
        .filter(|s| s.status() != crate::services::INACTIVE)
        .collect();
    for s in &services {
        let _ = writeln!(
            out,
            "ecs_local_service_desired_tasks{{cluster=\"{}\",service=\"{}\"}} {}",
            escape(&s.cluster),
            escape(&s.name),
            s.service.desired_count
        );
    }
    out.push_str("# HELP ecs_local_service_running_tasks The RUNNING tasks of each service that is not INACTIVE.\n");
    out.push_str("# TYPE ecs_local_service_running_tasks gauge\n");
    for s in &services {
        let _ = writeln!(
            out,
            "ecs_local_service_running_tasks{{cluster=\"{}\",service=\"{}\"}} {}",
            escape(&s.cluster),
            escape(&s.name),
            s.service.running_count
        );
    }

    let counters = [
        (
            "ecs_local_acs_payloads_sent_total",
            "Task payloads sent to agents over ACS.",
            sources.payloads_sent,
        ),
        (
            "ecs_local_acs_payloads_acked_total",
            "Task payloads agents acked.",
            sources.payloads_acked,
        ),
        (
            "ecs_local_acs_payloads_resent_total",
            "Task payloads sent again (on a new connection) because the one before was never acked.",
            sources.payloads_resent,
        ),
        (
            "ecs_local_tcs_frames_received_total",
            "Frames agents sent over TCS.",
            sources.tcs_frames,
        ),
    ];
    for (name, help, value) in counters {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
    }
    out.push_str("# HELP ecs_local_store_write_duration_seconds Time to write a change to the state database.\n");
    out.push_str("# TYPE ecs_local_store_write_duration_seconds histogram\n");
    sources
        .store_writes
        .render(&mut out, "ecs_local_store_write_duration_seconds", "");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_with_sum_and_count() {
        let mut h = Histogram::default();
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(30));
        h.observe(Duration::from_secs(10));
        let mut out = String::new();
        h.render(&mut out, "x", "a=\"b\"");
        assert!(out.contains("x_bucket{a=\"b\",le=\"0.001\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"0.025\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"0.05\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"2.5\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_count{a=\"b\"} 3\n"), "{out}");
        let mut bare = String::new();
        h.render(&mut bare, "y", "");
        assert!(bare.contains("y_bucket{le=\"+Inf\"} 3\n"), "{bare}");
        assert!(bare.contains("y_count 3\n"), "{bare}");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
