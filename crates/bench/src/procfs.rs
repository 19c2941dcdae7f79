//! What `/proc` says about a process: resident memory and CPU time.

use std::sync::OnceLock;

use anyhow::{anyhow, Context, Result};

/// `VmRSS` and `VmHWM` (peak RSS), in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rss {
    pub rss_kib: u64,
    pub hwm_kib: u64,
    /// Of the RSS: heap, stacks and other private memory (`RssAnon`) ...
    pub anon_kib: u64,
    /// ... and pages of mapped files, almost all the binary's own code and
    /// read-only data (`RssFile`): clean, shared with the page cache.
    pub file_kib: u64,
}

pub fn rss(pid: u32) -> Result<Rss> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading the status of process {pid}"))?;
    parse_status(&status).ok_or_else(|| anyhow!("no VmRSS/VmHWM for process {pid}"))
}

fn parse_status(status: &str) -> Option<Rss> {
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
    };
    Some(Rss {
        rss_kib: kib("VmRSS:")?,
        hwm_kib: kib("VmHWM:")?,
        anon_kib: kib("RssAnon:").unwrap_or(0),
        file_kib: kib("RssFile:").unwrap_or(0),
    })
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 when that fails).
pub fn ticks_per_second() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .filter(|t| *t > 0)
            .unwrap_or(100)
    })
}

/// CPU time used by a process so far, utime + stime, in seconds.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading the stat of process {pid}"))?;
    let ticks = parse_stat_ticks(&stat).ok_or_else(|| anyhow!("bad stat of process {pid}"))?;
    Ok(ticks as f64 / ticks_per_second() as f64)
}

/// utime + stime in ticks: fields 14 and 15, counted after the command
/// name in parentheses (which may hold spaces).
fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// PIDs of the processes whose command name (`/proc/<pid>/comm`) matches.
pub fn pids_named(matches: impl Fn(&str) -> bool) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| matches(comm.trim_end()))
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// Total CPU seconds of a set of processes; ones that went away count 0.
pub fn cpu_seconds_of(pids: &[u32]) -> f64 {
    pids.iter().filter_map(|p| cpu_seconds(*p).ok()).sum()
}

/// CPU seconds the whole machine has spent busy since boot, all cores:
/// `/proc/stat`'s first line less its idle and iowait columns.
pub fn system_busy_seconds() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let ticks = parse_busy_ticks(&stat).ok_or_else(|| anyhow!("bad /proc/stat"))?;
    Ok(ticks as f64 / ticks_per_second() as f64)
}

fn parse_busy_ticks(stat: &str) -> Option<u64> {
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let columns: Vec<u64> = line
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    // user nice system idle iowait irq softirq steal (guest time is in
    // user already).
    let all: u64 = columns.iter().take(8).sum();
    Some(all - columns.get(3)? - columns.get(4)?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn status_and_stat() {
        let status = "Name:\tecs-agent\nVmHWM:\t   12345 kB\nVmRSS:\t    6789 kB\n\
                      RssAnon:\t    1789 kB\nRssFile:\t    5000 kB\n";
        assert_eq!(
            parse_status(status),
            Some(Rss {
                rss_kib: 6789,
                hwm_kib: 12345,
                anon_kib: 1789,
                file_kib: 5000,
            })
        );
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 5 0 1 2 3";
        assert_eq!(parse_stat_ticks(stat), Some(10));
        assert!(cpu_seconds(std::process::id()).is_ok());
        assert!(rss(std::process::id()).unwrap().rss_kib > 0);
    }

    #[test]
    fn busy_time_leaves_out_idle_and_iowait() {
        let stat = "cpu  100 5 50 1000 20 3 2 1 7 0\ncpu0 50 2 25 500 10 1 1 0 3 0\n";
        assert_eq!(parse_busy_ticks(stat), Some(161));
        assert!(system_busy_seconds().unwrap() > 0.0);
    }
}
