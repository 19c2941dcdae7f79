//! The one collector: every running container read from the kernel on one
//! interval, its figures kept for the task metadata `stats` routes and
//! summed into the statistics sets TCS publishes (docs/metrics.md).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;

use super::stat_sets::ContainerSets;
use super::{docker_stats, Kernel, Reading};
use crate::engine::status::{ContainerStatus, TaskStatus};
use crate::engine::task::{Container, NetworkMode, Task};

/// A reading answered to a stats request when it is this recent, or
/// younger than two collector intervals; else the container is read again.
const FRESH: Duration = Duration::from_secs(2);

/// An on-demand series (metrics off, or a container the collector does not
/// track) is forgotten after this long without a request.
const INTEREST: Duration = Duration::from_secs(300);

/// A container to read, and the task it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub task_arn: String,
    pub family: String,
    pub version: String,
    pub container_name: String,
    pub docker_id: String,
    pub docker_name: String,
    pub pid: u32,
    /// The container has a network namespace of its own (not host mode).
    pub own_network: bool,
}

impl Target {
    /// The container as a target, while it runs.
    pub fn of(task: &Task, c: &Container) -> Option<Target> {
        Some(Target {
            task_arn: task.spec.arn.clone(),
            family: task.spec.family.clone(),
            version: task.spec.version.clone(),
            container_name: c.spec.name.clone(),
            docker_id: c.docker_id.clone()?,
            docker_name: c.docker_name.clone().unwrap_or_default(),
            pid: c.pid?,
            own_network: task.spec.network_mode != NetworkMode::Host,
        })
    }

    /// The containers TCS reports on: running, in a task that is not
    /// stopped and has an ARN and a family (docs/protocols.md §5.5).
    pub fn tracked(task: &Task) -> impl Iterator<Item = Target> + '_ {
        let task_tracked = task.known_status < TaskStatus::Stopped
            && !task.spec.arn.is_empty()
            && !task.spec.family.is_empty();
        task.containers
            .iter()
            .filter(move |c| task_tracked && c.known_status == ContainerStatus::Running)
            .filter_map(move |c| Target::of(task, c))
    }
}

/// What a stats request gets: the sample in Docker's shape, and the
/// receive and transmit rates (bytes a second) between the last two
/// readings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    pub sample: Option<Value>,
    pub network_rate: Option<(f64, f64)>,
}

struct Series {
    target: Target,
    latest: Reading,
    previous: Option<Reading>,
    read_at: Instant,
    /// Read by the collector's pass (not only on request).
    collected: bool,
    sets: ContainerSets,
}

impl Series {
    fn first(target: Target, reading: Reading, collected: bool) -> Series {
        let mut sets = ContainerSets::default();
        sets.add(&reading, None);
        Series {
            target,
            latest: reading,
            previous: None,
            read_at: Instant::now(),
            collected,
            sets,
        }
    }

    fn push(&mut self, reading: Reading) {
        self.sets.add(&reading, Some(&self.latest));
        self.previous = Some(std::mem::replace(&mut self.latest, reading));
        self.read_at = Instant::now();
    }

    fn stats(&self) -> Stats {
        let t = &self.target;
        Stats {
            sample: Some(docker_stats(
                &self.latest,
                self.previous.as_ref(),
                &t.docker_id,
                &t.docker_name,
            )),
            network_rate: self
                .previous
                .as_ref()
                .and_then(|p| super::stat_sets::network_rates(p, &self.latest)),
        }
    }
}

/// A series is about 1.3 KiB, held in the table itself: after 100
/// containers the table is 170 KiB, kept whole once they are gone unless
/// it is made smaller (docs/footprint.md §2). A quarter full or less, it
/// shrinks to twice what it holds.
fn shrink_when_mostly_empty(series: &mut HashMap<String, Series>) {
    if series.len() * 4 <= series.capacity() {
        series.shrink_to(series.len() * 2);
    }
}

pub struct Collector {
    kernel: Kernel,
    interval: Duration,
    series: Mutex<HashMap<String, Series>>,
}

impl Collector {
    pub fn new(kernel: Kernel, interval: Duration) -> Arc<Self> {
        Arc::new(Self {
            kernel,
            interval,
            series: Mutex::default(),
        })
    }

    fn series(&self) -> MutexGuard<'_, HashMap<String, Series>> {
        self.series.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One pass over the tracked containers: each is read and its sets
    /// grow; containers no longer tracked are forgotten. Blocking file
    /// reads: call it off the async workers.
    pub fn collect(&self, targets: &[Target]) {
        let wanted: HashSet<&str> = targets.iter().map(|t| t.docker_id.as_str()).collect();
        {
            let mut series = self.series();
            series.retain(|id, s| {
                wanted.contains(id.as_str()) || (!s.collected && s.read_at.elapsed() < INTEREST)
            });
            shrink_when_mostly_empty(&mut series);
        }
        let system_cpu_ns = match self.kernel.system_cpu_ns() {
            Ok(ns) => ns,
            Err(e) => {
                tracing::warn!(error = %e, "reading the host's CPU time failed");
                return;
            }
        };
        for target in targets {
            let reading = match self
                .kernel
                .read_with(target.pid, target.own_network, system_cpu_ns)
            {
                Ok(r) => r,
                Err(e) => {
                    // The container may have just exited: the next pass
                    // no longer lists it.
                    tracing::debug!(container = target.docker_id, error = %e, "reading container metrics failed");
                    continue;
                }
            };
            let mut series = self.series();
            match series.get_mut(&target.docker_id) {
                Some(s) => {
                    s.collected = true;
                    s.push(reading);
                }
                None => {
                    series.insert(
                        target.docker_id.clone(),
                        Series::first(target.clone(), reading, true),
                    );
                }
            }
        }
    }

    /// The container's stats for the task metadata endpoint: the latest
    /// reading when it is fresh, else one taken now. Blocking file reads.
    pub fn stats(&self, target: &Target) -> Stats {
        let fresh = FRESH.max(self.interval * 2);
        if let Some(s) = self.series().get(&target.docker_id) {
            if s.read_at.elapsed() < fresh {
                return s.stats();
            }
        }
        let reading = match self.kernel.read(target.pid, target.own_network) {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(container = target.docker_id, error = %e, "reading container stats failed");
                return Stats::default();
            }
        };
        let mut series = self.series();
        series.retain(|_, s| s.collected || s.read_at.elapsed() < INTEREST);
        match series.get_mut(&target.docker_id) {
            Some(s) => {
                s.push(reading);
                s.stats()
            }
            None => {
                let s = Series::first(target.clone(), reading, false);
                let stats = s.stats();
                series.insert(target.docker_id.clone(), s);
                stats
            }
        }
    }

    /// The statistics sets gathered since the last call, per task
    /// (task ARN → (family, version, container metrics)), and a fresh start
    /// for each. Only containers with at least two readings and a CPU and
    /// memory figure are included (docs/protocols.md §5.5).
    pub fn take_task_metrics(&self) -> BTreeMap<String, TaskSets> {
        let mut tasks: BTreeMap<String, TaskSets> = BTreeMap::new();
        for s in self.series().values_mut() {
            if !s.collected {
                continue;
            }
            let Some(metric) = s.sets.take(&s.target.container_name) else {
                continue;
            };
            let entry = tasks
                .entry(s.target.task_arn.clone())
                .or_insert_with(|| TaskSets {
                    family: s.target.family.clone(),
                    version: s.target.version.clone(),
                    containers: Vec::new(),
                });
            entry.containers.push(metric);
        }
        for t in tasks.values_mut() {
            t.containers
                .sort_by(|a, b| a.container_name.cmp(&b.container_name));
        }
        tasks
    }

    /// How many containers are being followed.
    pub fn followed(&self) -> usize {
        self.series().len()
    }

    /// Series the table has room for without growing.
    #[cfg(test)]
    pub fn room(&self) -> usize {
        self.series().capacity()
    }

    /// Runs until `shutdown`: one pass per interval over what `targets`
    /// lists. The passes run on one thread of their own: their reads block,
    /// and a thread that stays keeps its allocations in one heap arena
    /// instead of spreading them over the blocking pool's passing threads.
    pub async fn run<F, Fut>(self: Arc<Self>, targets: F, mut shutdown: watch::Receiver<bool>)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Option<Vec<Target>>>,
    {
        // Room for one pass: a pass still running when the next is due
        // makes that one skipped, not queued.
        let (passes, pending) = std::sync::mpsc::sync_channel::<Vec<Target>>(1);
        let me = self.clone();
        let worker = std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || {
                for list in pending {
                    me.collect(&list);
                }
            });
        if let Err(e) = worker {
            tracing::error!(error = %e, "starting the metrics thread failed; no container metrics");
            return;
        }
        let mut ticks = tokio::time::interval(self.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = shutdown.changed() => return,
            }
            let Some(list) = targets().await else {
                return;
            };
            if list.is_empty() && self.followed() == 0 {
                continue;
            }
            if let Err(std::sync::mpsc::TrySendError::Disconnected(_)) = passes.try_send(list) {
                tracing::error!("the metrics thread ended; no container metrics");
                return;
            }
        }
    }
}

/// One task's container metrics for a publication.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSets {
    pub family: String,
    pub version: String,
    pub containers: Vec<ecs_model::tcs::ContainerMetric>,
}
