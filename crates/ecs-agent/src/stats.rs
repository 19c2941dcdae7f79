//! The latest Docker stats sample of every running container, for the task
//! metadata `stats` routes (docs/endpoints.md §8.5). One streaming
//! feed per running container, started and ended as the engine's view
//! changes.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;

use crate::docker::DockerClient;
use crate::endpoints::TaskSource;
use crate::engine::status::ContainerStatus;

/// How often the set of fed containers is brought in line with the engine.
const RESCAN: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Default)]
struct Sample {
    latest: Value,
    /// Receive and transmit bytes per second between the last two samples.
    rate: Option<(f64, f64)>,
}

#[derive(Debug, Default)]
pub struct StatsBoard {
    samples: Mutex<HashMap<String, Sample>>,
}

/// Network totals of a sample and the time it was read (seconds).
fn network_totals(sample: &Value) -> Option<(f64, f64, f64)> {
    let read = sample.get("read")?.as_str()?;
    let at =
        time::OffsetDateTime::parse(read, &time::format_description::well_known::Rfc3339).ok()?;
    let (mut rx, mut tx) = (0.0, 0.0);
    for net in sample.get("networks")?.as_object()?.values() {
        rx += net.get("rx_bytes").and_then(Value::as_f64).unwrap_or(0.0);
        tx += net.get("tx_bytes").and_then(Value::as_f64).unwrap_or(0.0);
    }
    #[allow(clippy::cast_precision_loss)]
    let seconds = at.unix_timestamp_nanos() as f64 / 1e9;
    Some((rx, tx, seconds))
}

impl StatsBoard {
    fn samples(&self) -> std::sync::MutexGuard<'_, HashMap<String, Sample>> {
        self.samples
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn record(&self, docker_id: &str, sample: Value) {
        let mut samples = self.samples();
        let entry = samples.entry(docker_id.to_string()).or_default();
        if let (Some((rx0, tx0, t0)), Some((rx1, tx1, t1))) =
            (network_totals(&entry.latest), network_totals(&sample))
        {
            let dt = t1 - t0;
            if dt > 0.0 {
                entry.rate = Some((((rx1 - rx0) / dt).max(0.0), ((tx1 - tx0) / dt).max(0.0)));
            }
        }
        entry.latest = sample;
    }

    /// The latest sample, if one arrived.
    pub fn latest(&self, docker_id: &str) -> Option<Value> {
        self.samples().get(docker_id).map(|s| s.latest.clone())
    }

    /// `(rx_bytes_per_sec, tx_bytes_per_sec)` once two samples arrived.
    pub fn network_rate(&self, docker_id: &str) -> Option<(f64, f64)> {
        self.samples().get(docker_id).and_then(|s| s.rate)
    }

    fn forget(&self, docker_id: &str) {
        self.samples().remove(docker_id);
    }
}

/// Keeps one stats feed per running container until the process ends.
pub fn spawn_collector(docker: DockerClient, tasks: TaskSource, board: Arc<StatsBoard>) {
    tokio::spawn(async move {
        let fed: Arc<Mutex<HashSet<String>>> = Arc::default();
        loop {
            let running: Vec<String> = tasks
                .tasks()
                .await
                .iter()
                .flat_map(|t| t.containers.iter())
                .filter(|c| c.known_status == ContainerStatus::Running)
                .filter_map(|c| c.docker_id.clone())
                .collect();
            for id in running {
                let new = fed
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(id.clone());
                if new {
                    spawn_feed(docker.clone(), id, board.clone(), fed.clone());
                }
            }
            tokio::time::sleep(RESCAN).await;
        }
    });
}

fn spawn_feed(
    docker: DockerClient,
    id: String,
    board: Arc<StatsBoard>,
    fed: Arc<Mutex<HashSet<String>>>,
) {
    tokio::spawn(async move {
        let mut feed = Box::pin(docker.stats_feed(&id));
        while let Some(item) = feed.next().await {
            match item {
                Ok(sample) => board.record(&id, sample),
                Err(e) => {
                    tracing::debug!(docker_id = id, error = %e, "stats feed ended");
                    break;
                }
            }
        }
        // The feed ends with the container, which is never fed again:
        // dropping its sample bounds memory.
        board.forget(&id);
        fed.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&id);
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn network_rate_comes_from_two_samples() {
        let board = StatsBoard::default();
        let sample = |read: &str, rx: u64, tx: u64| serde_json::json!({"read": read, "networks": {"eth0": {"rx_bytes": rx, "tx_bytes": tx}}});
        board.record("c", sample("2026-11-28T00:00:00Z", 1000, 500));
        assert_eq!(board.network_rate("c"), None);
        board.record("c", sample("2026-11-28T00:00:02Z", 3000, 1500));
        assert_eq!(board.network_rate("c"), Some((1000.0, 500.0)));
        assert_eq!(
            board.latest("c").unwrap()["networks"]["eth0"]["rx_bytes"],
            3000
        );
        assert_eq!(board.latest("other"), None);
    }
}
