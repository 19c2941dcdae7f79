//! A reading in the JSON shape of Docker's stats API (`GET
//! /containers/<id>/stats`), which the task metadata endpoint serves so
//! that tools written for `docker stats` read it unchanged.

use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;

use super::{BlkioEntry, Reading};

/// Docker's zero time, its `preread` when there is no earlier sample.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// `now` as Docker shows it, with `previous` (an earlier reading of the
/// same container) as its `precpu_stats`.
pub fn docker_stats(now: &Reading, previous: Option<&Reading>, id: &str, name: &str) -> Value {
    let mut out = Map::new();
    out.insert("read".into(), json!(timestamp(now)));
    out.insert(
        "preread".into(),
        json!(previous.map_or_else(|| ZERO_TIME.to_string(), timestamp)),
    );
    out.insert(
        "pids_stats".into(),
        now.pids
            .map_or_else(|| json!({}), |current| json!({ "current": current })),
    );
    out.insert(
        "blkio_stats".into(),
        json!({
            "io_service_bytes_recursive": entries(&now.blkio.service_bytes),
            "io_serviced_recursive": entries(&now.blkio.serviced),
            "io_queue_recursive": [],
            "io_service_time_recursive": [],
            "io_wait_time_recursive": [],
            "io_merged_recursive": [],
            "io_time_recursive": [],
            "sectors_recursive": [],
        }),
    );
    out.insert("num_procs".into(), json!(0));
    out.insert("storage_stats".into(), json!({}));
    out.insert("cpu_stats".into(), cpu(now));
    out.insert(
        "precpu_stats".into(),
        previous.map_or_else(
            || {
                json!({
                    "cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
                    "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
                })
            },
            cpu,
        ),
    );
    let mut memory = Map::new();
    memory.insert("usage".into(), json!(now.memory.usage));
    if let Some(max) = now.memory.max_usage {
        memory.insert("max_usage".into(), json!(max));
    }
    memory.insert("stats".into(), json!(now.memory.stats()));
    memory.insert("limit".into(), json!(now.memory.limit));
    out.insert("memory_stats".into(), Value::Object(memory));
    out.insert(
        "name".into(),
        json!(format!("/{}", name.trim_start_matches('/'))),
    );
    out.insert("id".into(), json!(id));
    if let Some(networks) = &now.networks {
        let networks: Map<String, Value> = networks
            .iter()
            .map(|(name, i)| {
                (
                    name.clone(),
                    json!({
                        "rx_bytes": i.rx_bytes, "rx_packets": i.rx_packets,
                        "rx_errors": i.rx_errors, "rx_dropped": i.rx_dropped,
                        "tx_bytes": i.tx_bytes, "tx_packets": i.tx_packets,
                        "tx_errors": i.tx_errors, "tx_dropped": i.tx_dropped,
                    }),
                )
            })
            .collect();
        out.insert("networks".into(), Value::Object(networks));
    }
    Value::Object(out)
}

fn timestamp(r: &Reading) -> String {
    r.at.format(&Rfc3339)
        .unwrap_or_else(|_| ZERO_TIME.to_string())
}

fn entries(list: &[BlkioEntry]) -> Value {
    list.iter()
        .map(|e| json!({"major": e.major, "minor": e.minor, "op": e.op, "value": e.value}))
        .collect()
}

fn cpu(r: &Reading) -> Value {
    let mut usage = Map::new();
    usage.insert("total_usage".into(), json!(r.cpu.total_ns));
    if !r.cpu.percpu_ns.is_empty() {
        usage.insert("percpu_usage".into(), json!(r.cpu.percpu_ns));
    }
    usage.insert("usage_in_kernelmode".into(), json!(r.cpu.system_ns));
    usage.insert("usage_in_usermode".into(), json!(r.cpu.user_ns));
    json!({
        "cpu_usage": usage,
        "system_cpu_usage": r.system_cpu_ns,
        "online_cpus": r.online_cpus,
        "throttling_data": {
            "periods": r.cpu.periods,
            "throttled_periods": r.cpu.throttled_periods,
            "throttled_time": r.cpu.throttled_ns,
        },
    })
}
