//! The cgroup and /proc/stat text the metrics collector parses: numbers or
//! a reason, never a panic (docs/metrics.md §2).
#![no_main]

use ecs_agent::metrics::parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = parse::flat_keyed(&text);
    let _ = parse::keyed(&text, "cache");
    let _ = parse::single(&text);
    let _ = parse::numbers(&text);
    let _ = parse::blkio_v1(&text);
    let _ = parse::io_stat_v2(&text);
    let _ = parse::system_cpu_ns(&text, 100);
});
