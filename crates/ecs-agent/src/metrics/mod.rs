//! Container statistics read straight from the kernel (docs/metrics.md):
//! the container's cgroups (v1 or v2, whichever the host runs) for CPU,
//! memory, block I/O and processes, its network namespace
//! (`/proc/<pid>/net/dev`) for its interfaces, and `/proc/stat` for the
//! host's CPU time. No Docker call is made: Docker's own stats stream costs
//! dockerd, containerd and the container's shim a sample a second for every
//! container watched (docs/footprint.md §2).
//!
//! `/proc` formats are parsed with `procfs-core`; the cgroup files, which it
//! does not cover, are flat `key value` or `major:minor …` lines parsed in
//! [`parse`].

mod collector;
mod docker_json;
mod kernel;
pub mod parse;
pub mod stat_sets;

use std::collections::BTreeMap;
use std::path::PathBuf;

pub use collector::{Collector, Stats, Target, TaskSets};
pub use docker_json::docker_stats;
pub use kernel::Kernel;

/// How often containers are read when `ECS_POLL_METRICS` is off: the
/// interval of Docker's stats stream, which the Go agent reads then.
pub const STREAM_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Which cgroup hierarchy the host runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    V1,
    V2,
}

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {detail}")]
    Parse { path: PathBuf, detail: String },
    #[error("process {pid} is in no cgroup with the {controller} controller")]
    NoCgroup { pid: u32, controller: &'static str },
}

/// One reading of a container.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub at: time::OffsetDateTime,
    pub cpu: Cpu,
    pub memory: Memory,
    pub blkio: Blkio,
    pub pids: Option<u64>,
    /// Per interface, `lo` left out; `None` for a container on the host's
    /// network, whose counters are the host's (Docker shows none either).
    pub networks: Option<BTreeMap<String, Interface>>,
    /// The host's CPU time since boot, all CPUs (Docker's
    /// `system_cpu_usage`), in nanoseconds.
    pub system_cpu_ns: u64,
    pub online_cpus: u32,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cpu {
    pub total_ns: u64,
    /// Per CPU (cgroup v1 only).
    pub percpu_ns: Vec<u64>,
    pub user_ns: u64,
    pub system_ns: u64,
    pub periods: u64,
    pub throttled_periods: u64,
    pub throttled_ns: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Memory {
    pub version: CgroupVersion,
    pub usage: u64,
    /// The peak (v1 `max_usage_in_bytes`; v2 `memory.peak` where the kernel
    /// has it).
    pub max_usage: Option<u64>,
    /// The hard limit, or the host's memory when there is none.
    pub limit: u64,
    /// `memory.stat` as read, parsed only when Docker's JSON is wanted: a
    /// map of its forty-odd keys for every container every second would
    /// churn the heap for nothing (docs/metrics.md §3).
    pub stat: String,
}

impl Memory {
    /// Every `memory.stat` figure.
    pub fn stats(&self) -> BTreeMap<String, u64> {
        parse::flat_keyed(&self.stat)
    }

    /// Page cache: `cache` on cgroup v1, `inactive_file` on v2.
    pub fn cache(&self) -> u64 {
        let key = match self.version {
            CgroupVersion::V1 => "cache",
            CgroupVersion::V2 => "inactive_file",
        };
        parse::keyed(&self.stat, key).unwrap_or(0)
    }

    /// What ECS calls memory in use: usage without the page cache.
    pub fn in_use(&self) -> u64 {
        self.usage.saturating_sub(self.cache())
    }
}

/// One `major:minor op value` figure, as Docker shows block I/O.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlkioEntry {
    pub major: u64,
    pub minor: u64,
    /// One of the kernel's names (a static string: a reading a second per
    /// container should not allocate one per entry).
    pub op: &'static str,
    pub value: u64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Blkio {
    pub service_bytes: Vec<BlkioEntry>,
    pub serviced: Vec<BlkioEntry>,
}

impl Blkio {
    fn sum(&self, op: &str) -> u64 {
        self.service_bytes
            .iter()
            .filter(|e| e.op.eq_ignore_ascii_case(op))
            .fold(0u64, |acc, e| acc.saturating_add(e.value))
    }

    pub fn read_bytes(&self) -> u64 {
        self.sum("read")
    }

    pub fn write_bytes(&self) -> u64 {
        self.sum("write")
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Interface {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

impl Reading {
    /// Receive and transmit totals over all interfaces.
    pub fn network_totals(&self) -> Option<(u64, u64)> {
        let networks = self.networks.as_ref()?;
        Some(networks.values().fold((0u64, 0u64), |(rx, tx), i| {
            (rx.saturating_add(i.rx_bytes), tx.saturating_add(i.tx_bytes))
        }))
    }
}

/// A host made of one of the fixture trees (`v1`, `v2`), whose container
/// has PID 4242.
#[cfg(test)]
pub(crate) fn fixture_kernel(name: &str) -> Kernel {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("src/metrics/fixtures")
        .join(name);
    Kernel::at(&root)
}

#[cfg(test)]
mod tests;
