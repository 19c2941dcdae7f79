//! Task-level CPU and memory limits: one cgroup per task, `/ecs/<task id>`,
//! that the task's containers run under (Docker's `CgroupParent`), with the
//! task's CPU quota or shares, memory limit and process limit
//! (docs/engine.md §7.7). Written directly to the cgroup filesystem, for
//! Docker's `cgroupfs` driver on cgroup v1 or v2; the `systemd` driver
//! (slices made through systemd) is not supported yet, and the agent turns
//! task cgroups off under it.

use std::path::{Path, PathBuf};

use crate::engine::task::TaskSpec;
use crate::metrics::CgroupVersion;

/// Where every task cgroup lives, under each controller (v1) or the root
/// (v2).
pub const ECS_CGROUP: &str = "ecs";
const MIN_SHARES: u64 = 2;
const MAX_SHARES: u64 = 262_144;
/// The kernel refuses a CFS quota under 1 ms.
const MIN_QUOTA_US: u64 = 1_000;

#[derive(Debug, thiserror::Error)]
pub enum TaskCgroupError {
    #[error(
        "container memory limit ({container} MiB) greater than task memory limit ({task} MiB)"
    )]
    ContainerOverTask { container: u32, task: u32 },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuLimit {
    /// A hard limit: `quota_us` of CPU time every `period_us`.
    Quota { quota_us: u64, period_us: u64 },
    /// A relative weight (no task `cpu`): the containers' shares summed.
    Shares(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskLimits {
    pub cpu: CpuLimit,
    pub memory_bytes: Option<u64>,
    pub pids: Option<u64>,
}

impl TaskLimits {
    /// The limits ECS gives a task: task `cpu` (vCPU) as a quota of the
    /// period, else the sum of its containers' shares (each at least 2,
    /// the total capped at 262144); task `memory`, which no container may
    /// exceed.
    pub fn of(
        task: &TaskSpec,
        period_us: u64,
        pids: Option<u64>,
    ) -> Result<TaskLimits, TaskCgroupError> {
        let cpu = if task.cpu > 0.0 {
            #[allow(
                clippy::cast_precision_loss,
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss
            )]
            let quota_us = (task.cpu * period_us as f64) as u64;
            CpuLimit::Quota {
                quota_us: quota_us.max(MIN_QUOTA_US),
                period_us,
            }
        } else {
            let shares: u64 = task
                .containers
                .iter()
                .map(|c| u64::from(c.cpu).max(MIN_SHARES))
                .sum();
            CpuLimit::Shares(shares.clamp(MIN_SHARES, MAX_SHARES))
        };
        let memory_bytes = if task.memory_mib > 0 {
            if let Some(c) = task
                .containers
                .iter()
                .find(|c| c.memory_mib > task.memory_mib)
            {
                return Err(TaskCgroupError::ContainerOverTask {
                    container: c.memory_mib,
                    task: task.memory_mib,
                });
            }
            Some(u64::from(task.memory_mib) * 1024 * 1024)
        } else {
            None
        };
        Ok(TaskLimits {
            cpu,
            memory_bytes,
            pids,
        })
    }
}

/// The task cgroups of this host.
#[derive(Debug, Clone)]
pub struct TaskCgroups {
    /// `ECS_CGROUP_PATH` (default `/sys/fs/cgroup`).
    root: PathBuf,
    version: CgroupVersion,
    /// `ECS_CGROUP_CPU_PERIOD` in µs.
    period_us: u64,
    /// `ECS_TASK_PIDS_LIMIT`.
    pids: Option<u64>,
}

impl TaskCgroups {
    pub fn new(root: &Path, period_us: u64, pids: Option<u64>) -> Self {
        let version = if root.join("cgroup.controllers").exists() {
            CgroupVersion::V2
        } else {
            CgroupVersion::V1
        };
        Self {
            root: root.to_path_buf(),
            version,
            period_us,
            pids,
        }
    }

    /// Makes the `ecs` parent cgroup, proving the hierarchy is writable
    /// (an agent in a container without the host's cgroups mounted
    /// read-write cannot make task cgroups, and must not fail every task
    /// for it).
    pub fn init(&self) -> Result<(), TaskCgroupError> {
        match self.version {
            CgroupVersion::V1 => make_dir(&self.root.join("cpu").join(ECS_CGROUP)),
            CgroupVersion::V2 => make_dir(&self.root.join(ECS_CGROUP)),
        }
    }

    /// The task's containers' `CgroupParent`.
    pub fn parent(task_id: &str) -> String {
        format!("/{ECS_CGROUP}/{task_id}")
    }

    /// Creates (or finds) the task's cgroup and writes its limits; safe to
    /// repeat. Before the task's first container is created.
    pub fn create(&self, task_id: &str, task: &TaskSpec) -> Result<TaskLimits, TaskCgroupError> {
        let limits = TaskLimits::of(task, self.period_us, self.pids)?;
        match self.version {
            CgroupVersion::V1 => self.create_v1(task_id, &limits)?,
            CgroupVersion::V2 => self.create_v2(task_id, &limits)?,
        }
        Ok(limits)
    }

    fn create_v1(&self, task_id: &str, limits: &TaskLimits) -> Result<(), TaskCgroupError> {
        let dir = |controller: &str| self.root.join(controller).join(ECS_CGROUP).join(task_id);
        let cpu = dir("cpu");
        make_dir(&cpu)?;
        match limits.cpu {
            CpuLimit::Quota {
                quota_us,
                period_us,
            } => {
                write(&cpu.join("cpu.cfs_period_us"), &period_us.to_string())?;
                write(&cpu.join("cpu.cfs_quota_us"), &quota_us.to_string())?;
            }
            CpuLimit::Shares(shares) => write(&cpu.join("cpu.shares"), &shares.to_string())?,
        }
        if let Some(bytes) = limits.memory_bytes {
            let memory = dir("memory");
            make_dir(&memory)?;
            write(&memory.join("memory.limit_in_bytes"), &bytes.to_string())?;
        }
        if let Some(pids) = limits.pids {
            let dir = dir("pids");
            make_dir(&dir)?;
            write(&dir.join("pids.max"), &pids.to_string())?;
        }
        Ok(())
    }

    fn create_v2(&self, task_id: &str, limits: &TaskLimits) -> Result<(), TaskCgroupError> {
        let parent = self.root.join(ECS_CGROUP);
        let dir = parent.join(task_id);
        make_dir(&dir)?;
        // The controllers must be handed down to the task's cgroup (and
        // from it to its containers').
        for d in [&self.root, &parent, &dir] {
            enable_controllers(d)?;
        }
        match limits.cpu {
            CpuLimit::Quota {
                quota_us,
                period_us,
            } => write(&dir.join("cpu.max"), &format!("{quota_us} {period_us}"))?,
            CpuLimit::Shares(shares) => {
                // runc's mapping of shares [2, 262144] to weight [1, 10000].
                let weight = 1 + ((shares - MIN_SHARES) * 9_999) / (MAX_SHARES - MIN_SHARES);
                write(&dir.join("cpu.weight"), &weight.to_string())?;
            }
        }
        if let Some(bytes) = limits.memory_bytes {
            write(&dir.join("memory.max"), &bytes.to_string())?;
        }
        if let Some(pids) = limits.pids {
            write(&dir.join("pids.max"), &pids.to_string())?;
        }
        Ok(())
    }

    /// Removes the task's cgroup, once its containers are removed. One that
    /// is already gone is fine.
    pub fn remove(&self, task_id: &str) -> Result<(), TaskCgroupError> {
        let dirs: Vec<PathBuf> = match self.version {
            CgroupVersion::V2 => vec![self.root.join(ECS_CGROUP).join(task_id)],
            // Docker made the task's directory under every controller for
            // the containers it put there.
            CgroupVersion::V1 => std::fs::read_dir(&self.root)
                .map_err(|source| TaskCgroupError::Io {
                    path: self.root.clone(),
                    source,
                })?
                .filter_map(Result::ok)
                .map(|e| e.path().join(ECS_CGROUP).join(task_id))
                .collect(),
        };
        for dir in dirs {
            match std::fs::remove_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(TaskCgroupError::Io { path: dir, source }),
            }
        }
        Ok(())
    }
}

/// Hands `cpu`, `memory` and `pids` down from `dir` to its children, as far
/// as `dir` has them (v2).
fn enable_controllers(dir: &Path) -> Result<(), TaskCgroupError> {
    let available = std::fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
    let wanted: Vec<String> = ["cpu", "memory", "pids"]
        .iter()
        .filter(|c| available.split_whitespace().any(|a| a == **c))
        .map(|c| format!("+{c}"))
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    write(&dir.join("cgroup.subtree_control"), &wanted.join(" "))
}

fn make_dir(path: &Path) -> Result<(), TaskCgroupError> {
    std::fs::create_dir_all(path).map_err(|source| TaskCgroupError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn write(path: &Path, value: &str) -> Result<(), TaskCgroupError> {
    std::fs::write(path, value).map_err(|source| TaskCgroupError::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests;
