//! Parsers for the cgroup files `procfs-core` does not cover, and the one
//! line of `/proc/stat` the collector needs. Each takes the file's text and
//! fails with a description, never a panic (fuzzed: `cgroup_files`).

use std::collections::BTreeMap;

use super::BlkioEntry;

/// `key value` lines (`memory.stat`, `cpu.stat`, `cpuacct.stat`). Lines
/// whose value is not a number are skipped: kernels add fields.
pub fn flat_keyed(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let key = parts.next()?;
            let value = parts.next()?.parse().ok()?;
            Some((key.to_string(), value))
        })
        .collect()
}

/// The value of `key` in `key value` lines, without building a map (the
/// collector reads these files for every container every second).
pub fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let mut parts = line.split_whitespace();
        (parts.next()? == key).then_some(())?;
        parts.next()?.parse().ok()
    })
}

/// A file holding one number, or `max` (cgroup v2 for "no limit").
pub fn single(text: &str) -> Result<Option<u64>, String> {
    let t = text.trim();
    if t == "max" {
        return Ok(None);
    }
    t.parse()
        .map(Some)
        .map_err(|_| format!("not a number: {t:?}"))
}

/// Space-separated numbers (`cpuacct.usage_percpu`).
pub fn numbers(text: &str) -> Result<Vec<u64>, String> {
    text.split_whitespace()
        .map(|n| n.parse().map_err(|_| format!("not a number: {n:?}")))
        .collect()
}

fn device(field: &str) -> Option<(u64, u64)> {
    let (major, minor) = field.split_once(':')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// The operations of cgroup v1's blkio files.
const V1_OPS: [&str; 6] = ["Read", "Write", "Sync", "Async", "Discard", "Total"];

/// cgroup v1 `blkio.throttle.io_service_bytes_recursive` and friends:
/// `major:minor Op value` lines, then a `Total value` line, which is left
/// out (Docker leaves it out too).
pub fn blkio_v1(text: &str) -> Result<Vec<BlkioEntry>, String> {
    let mut entries = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            [] | ["Total", _] => {}
            [dev, op, value] => {
                let (major, minor) = device(dev).ok_or_else(|| format!("bad device {dev:?}"))?;
                // The kernel's operation names; anything else is left out.
                let Some(op) = V1_OPS.iter().find(|o| *o == op) else {
                    continue;
                };
                let value = value
                    .parse()
                    .map_err(|_| format!("bad value in {line:?}"))?;
                entries.push(BlkioEntry {
                    major,
                    minor,
                    op,
                    value,
                });
            }
            _ => return Err(format!("unexpected line {line:?}")),
        }
    }
    Ok(entries)
}

/// cgroup v2 `io.stat`: `major:minor rbytes=… wbytes=… rios=… wios=… …`.
/// Returns (bytes, operations) as Docker shows them on v2: ops `read` and
/// `write`.
pub fn io_stat_v2(text: &str) -> Result<(Vec<BlkioEntry>, Vec<BlkioEntry>), String> {
    let (mut bytes, mut ios) = (Vec::new(), Vec::new());
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let Some(dev) = fields.next() else { continue };
        let (major, minor) = device(dev).ok_or_else(|| format!("bad device {dev:?}"))?;
        for field in fields {
            let Some((key, value)) = field.split_once('=') else {
                return Err(format!("bad field {field:?}"));
            };
            let Ok(value) = value.parse::<u64>() else {
                continue;
            };
            let (list, op) = match key {
                "rbytes" => (&mut bytes, "read"),
                "wbytes" => (&mut bytes, "write"),
                "rios" => (&mut ios, "read"),
                "wios" => (&mut ios, "write"),
                _ => continue,
            };
            list.push(BlkioEntry {
                major,
                minor,
                op,
                value,
            });
        }
    }
    Ok((bytes, ios))
}

/// The host's CPU time from the first line of `/proc/stat` (`cpu  user
/// nice system idle iowait irq softirq …`, in clock ticks): the sum of those
/// seven, in nanoseconds, as Docker computes `system_cpu_usage`.
pub fn system_cpu_ns(first_line: &str, ticks_per_second: u64) -> Result<u64, String> {
    let mut fields = first_line.split_whitespace();
    if fields.next() != Some("cpu") {
        return Err(format!("not the cpu line: {first_line:?}"));
    }
    let mut ticks: u64 = 0;
    for field in fields.take(7) {
        let n: u64 = field
            .parse()
            .map_err(|_| format!("bad tick count {field:?}"))?;
        ticks = ticks.saturating_add(n);
    }
    let per_tick = 1_000_000_000 / ticks_per_second.max(1);
    Ok(ticks.saturating_mul(per_tick))
}
