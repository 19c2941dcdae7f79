//! Docker stats samples for the task metadata `stats` routes
//! (docs/endpoints.md §8.5), fed on demand.
//!
//! A streaming `docker stats` connection costs dockerd, containerd and the
//! container's shim a sample every second for as long as it is open
//! (docs/footprint.md §2). So a container is fed only while someone
//! reads its stats: the first request opens its feed and waits a moment
//! for the first sample, and the feed closes once nobody has asked for
//! [`INTEREST`]. A container nobody watches costs nothing. (The TCS
//! metrics, which need every container all the time, will read cgroups
//! instead.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::docker::{DockerClient, DockerError};

/// How long a feed stays open after the last request for its container:
/// a sidecar polling every minute keeps its task's feeds warm.
pub const INTEREST: Duration = Duration::from_secs(300);

/// How long the first request waits for a newly opened feed's first
/// sample (Docker sends one within its one-second collection interval).
pub const FIRST_SAMPLE_WAIT: Duration = Duration::from_secs(3);

/// Opens a container's stats feed.
pub type OpenFeed =
    Arc<dyn Fn(&str) -> BoxStream<'static, Result<Value, DockerError>> + Send + Sync>;

/// What a request gets: the latest sample, and the network rates once two
/// samples arrived.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    pub sample: Option<Value>,
    /// Receive and transmit bytes per second between the last two samples.
    pub network_rate: Option<(f64, f64)>,
}

/// One fed container. Present exactly while its feed runs.
struct Feed {
    stats: Stats,
    wanted_until: Instant,
    first_sample: Arc<Notify>,
}

pub struct StatsBoard {
    feeds: Mutex<HashMap<String, Feed>>,
    open: Option<OpenFeed>,
}

impl StatsBoard {
    /// Feeds from Docker.
    pub fn new(docker: DockerClient) -> Arc<Self> {
        Self::with_feeds(Arc::new(move |id: &str| docker.stats_feed(id).boxed()))
    }

    /// Feeds from `open` (tests give a fake source).
    pub fn with_feeds(open: OpenFeed) -> Arc<Self> {
        Arc::new(Self {
            feeds: Mutex::default(),
            open: Some(open),
        })
    }

    /// A board that never has a sample (an endpoint without Docker).
    pub fn empty() -> Arc<Self> {
        Arc::new(Self {
            feeds: Mutex::default(),
            open: None,
        })
    }

    fn feeds(&self) -> MutexGuard<'_, HashMap<String, Feed>> {
        self.feeds.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The container's stats. Keeps its feed open for another
    /// [`INTEREST`], opening it first if needed; a container without a
    /// sample yet is waited on for up to [`FIRST_SAMPLE_WAIT`].
    pub async fn stats(self: &Arc<Self>, docker_id: &str) -> Stats {
        let Some(open) = &self.open else {
            return Stats::default();
        };
        if docker_id.is_empty() {
            return Stats::default();
        }
        let first_sample = {
            let mut feeds = self.feeds();
            let wanted_until = Instant::now() + INTEREST;
            match feeds.get_mut(docker_id) {
                Some(feed) => {
                    feed.wanted_until = wanted_until;
                    if feed.stats.sample.is_some() {
                        return feed.stats.clone();
                    }
                    feed.first_sample.clone()
                }
                None => {
                    let first_sample = Arc::new(Notify::new());
                    feeds.insert(
                        docker_id.to_string(),
                        Feed {
                            stats: Stats::default(),
                            wanted_until,
                            first_sample: first_sample.clone(),
                        },
                    );
                    let stream = open(docker_id);
                    tokio::spawn(run_feed(self.clone(), docker_id.to_string(), stream));
                    first_sample
                }
            }
        };
        let notified = first_sample.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Some(stats) = self.current(docker_id).filter(|s| s.sample.is_some()) {
            return stats;
        }
        let _ = tokio::time::timeout(FIRST_SAMPLE_WAIT, notified).await;
        self.current(docker_id).unwrap_or_default()
    }

    fn current(&self, docker_id: &str) -> Option<Stats> {
        self.feeds().get(docker_id).map(|f| f.stats.clone())
    }

    /// How many feeds are open.
    pub fn open_feeds(&self) -> usize {
        self.feeds().len()
    }

    /// Records a sample; false once nobody wants the container's stats any
    /// more, which ends its feed.
    fn record(&self, docker_id: &str, sample: Value) -> bool {
        let mut feeds = self.feeds();
        let Some(feed) = feeds.get_mut(docker_id) else {
            return false;
        };
        if Instant::now() >= feed.wanted_until {
            return false;
        }
        let previous = feed.stats.sample.as_ref().and_then(network_totals);
        if let (Some((rx0, tx0, t0)), Some((rx1, tx1, t1))) = (previous, network_totals(&sample)) {
            let dt = t1 - t0;
            if dt > 0.0 {
                feed.stats.network_rate =
                    Some((((rx1 - rx0) / dt).max(0.0), ((tx1 - tx0) / dt).max(0.0)));
            }
        }
        feed.stats.sample = Some(sample);
        feed.first_sample.notify_waiters();
        true
    }

    fn forget(&self, docker_id: &str) {
        if let Some(feed) = self.feeds().remove(docker_id) {
            feed.first_sample.notify_waiters();
        }
    }
}

/// Reads one container's feed until it ends (the container stopped, or
/// Docker failed) or nobody wants it any more; then the sample goes too,
/// so memory is bounded by the containers being watched.
async fn run_feed(
    board: Arc<StatsBoard>,
    docker_id: String,
    mut stream: BoxStream<'static, Result<Value, DockerError>>,
) {
    while let Some(item) = stream.next().await {
        match item {
            Ok(sample) => {
                if !board.record(&docker_id, sample) {
                    break;
                }
            }
            Err(e) => {
                tracing::debug!(docker_id, error = %e, "stats feed ended");
                break;
            }
        }
    }
    board.forget(&docker_id);
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

#[cfg(test)]
mod tests;
