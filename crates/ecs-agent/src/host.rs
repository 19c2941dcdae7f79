//! What this host offers to tasks: CPUs usable by the agent and physical
//! memory, as registered with the cluster (docs/protocols.md §2.2).

use std::path::Path;

/// CPU units (1024 per usable CPU) and memory in MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostResources {
    pub cpu_units: i32,
    pub memory_mib: i32,
}

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot parse {0}")]
    Parse(&'static str),
    #[error("ECS_RESERVED_MEMORY ({reserved} MiB) exceeds the host's memory ({total} MiB)")]
    ReservedMemory { reserved: u16, total: i64 },
}

fn read(path: &str) -> Result<String, HostError> {
    std::fs::read_to_string(Path::new(path)).map_err(|source| HostError::Read {
        path: path.to_string(),
        source,
    })
}

/// Counts the CPUs in a Linux cpu list such as `0-3,8,10-11`. The
/// scheduler's affinity mask is what the agent may use; cgroup quotas are
/// not (docs/protocols.md §2.2).
pub fn count_cpu_list(list: &str) -> Option<u32> {
    let mut count = 0u32;
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        count += match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
                b.checked_sub(a)? + 1
            }
            None => {
                part.parse::<u32>().ok()?;
                1
            }
        };
    }
    (count > 0).then_some(count)
}

/// `MemTotal` in MiB from /proc/meminfo text.
pub fn mem_total_mib(meminfo: &str) -> Option<i64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

pub fn read_host_resources(reserved_memory_mib: u16) -> Result<HostResources, HostError> {
    resources_from(
        &read("/proc/self/status")?,
        &read("/proc/meminfo")?,
        reserved_memory_mib,
    )
}

/// The registered resources from the texts of `/proc/self/status` and
/// `/proc/meminfo`: 1024 CPU units per CPU the agent may run on, and
/// `MemTotal` less `ECS_RESERVED_MEMORY`, which may not exceed it.
pub fn resources_from(
    status: &str,
    meminfo: &str,
    reserved_memory_mib: u16,
) -> Result<HostResources, HostError> {
    let cpus = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .and_then(count_cpu_list)
        .ok_or(HostError::Parse("Cpus_allowed_list in /proc/self/status"))?;
    let total = mem_total_mib(meminfo).ok_or(HostError::Parse("/proc/meminfo"))?;
    let memory = total - i64::from(reserved_memory_mib);
    if memory < 0 {
        return Err(HostError::ReservedMemory {
            reserved: reserved_memory_mib,
            total,
        });
    }
    Ok(HostResources {
        cpu_units: i32::try_from(cpus * 1024).unwrap_or(i32::MAX),
        memory_mib: i32::try_from(memory).unwrap_or(i32::MAX),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(count_cpu_list("0-1"), Some(2));
        assert_eq!(count_cpu_list("0-3,8,10-11\n"), Some(7));
        assert_eq!(count_cpu_list("x"), None);
        assert_eq!(count_cpu_list("3-1"), None);
    }

    #[test]
    fn meminfo() {
        assert_eq!(
            mem_total_mib("MemTotal:       24684016 kB\nMemFree: 1 kB"),
            Some(24105)
        );
    }

    const STATUS: &str = "Name:\tecs-agent\nCpus_allowed:\t3\nCpus_allowed_list:\t0-1\n";
    /// 2048 MiB and a half.
    const MEMINFO: &str = "MemTotal:        2097664 kB\nMemFree:          100000 kB\n";

    #[test]
    fn reserved_memory_is_subtracted_from_mem_total() {
        let whole = resources_from(STATUS, MEMINFO, 0).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            whole,
            HostResources {
                cpu_units: 2048,
                memory_mib: 2048
            }
        );
        let less = resources_from(STATUS, MEMINFO, 300).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(less.memory_mib, 2048 - 300);
        assert_eq!(less.cpu_units, 2048);
        let none_left = resources_from(STATUS, MEMINFO, 2048).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(none_left.memory_mib, 0);
    }

    #[test]
    fn reserving_more_than_the_host_has_is_an_error() {
        match resources_from(STATUS, MEMINFO, 2049) {
            Err(HostError::ReservedMemory { reserved, total }) => {
                assert_eq!((reserved, total), (2049, 2048));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn this_host() {
        let r = read_host_resources(0).unwrap_or_else(|e| panic!("{e}"));
        assert!(r.cpu_units >= 1024 && r.memory_mib > 0);
    }
}
