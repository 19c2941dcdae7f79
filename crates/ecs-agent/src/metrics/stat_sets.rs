//! The statistics sets TCS publishes (docs/protocols.md §5.5): each figure
//! of each reading since the last publication folded into `{min, max,
//! sampleCount, sum}`, so a container costs a few numbers however many
//! readings a publication covers.

use ecs_model::tcs::{
    CWStatsSet, ContainerMetric, NetworkStatsSet, StorageStatsSet, UDoubleCWStatsSet, ULongStatsSet,
};

use super::Reading;

const MIB: u64 = 1024 * 1024;

/// `{min, max, sampleCount, sum}` of doubles.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DoubleSet {
    min: f64,
    max: f64,
    count: i64,
    sum: f64,
}

impl DoubleSet {
    pub fn push(&mut self, v: f64) {
        if !v.is_finite() {
            return;
        }
        if self.count == 0 {
            (self.min, self.max) = (v, v);
        } else {
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
        self.count += 1;
        self.sum += v;
    }

    pub fn count(&self) -> i64 {
        self.count
    }

    fn cw(&self) -> CWStatsSet {
        CWStatsSet {
            min: Some(self.min),
            max: Some(self.max),
            sample_count: Some(self.count),
            sum: Some(self.sum),
        }
    }

    fn udouble(&self) -> UDoubleCWStatsSet {
        UDoubleCWStatsSet {
            min: Some(self.min),
            max: Some(self.max),
            sample_count: Some(self.count),
            sum: Some(self.sum),
        }
    }
}

/// `{min, max, sampleCount, sum}` of unsigned counters, sent with the
/// overflow fields ECS defines for values past `i64::MAX`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CounterSet {
    min: u64,
    max: u64,
    count: i64,
    sum: u128,
}

/// (base, overflow): a value past 2^63−1 is sent as 2^63−1 with the rest
/// modulo 2^63−1 in the overflow field (docs/protocols.md §5.5).
pub fn split_overflow(v: u128) -> (i64, i64) {
    const CAP: u128 = i64::MAX as u128;
    if v > CAP {
        (i64::MAX, i64::try_from(v % CAP).unwrap_or(i64::MAX))
    } else {
        (i64::try_from(v).unwrap_or(i64::MAX), 0)
    }
}

impl CounterSet {
    pub fn push(&mut self, v: u64) {
        if self.count == 0 {
            (self.min, self.max) = (v, v);
        } else {
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
        self.count += 1;
        self.sum += u128::from(v);
    }

    pub fn ulong(&self) -> ULongStatsSet {
        let (min, overflow_min) = split_overflow(u128::from(self.min));
        let (max, overflow_max) = split_overflow(u128::from(self.max));
        let (sum, overflow_sum) = split_overflow(self.sum);
        ULongStatsSet {
            min: Some(min),
            max: Some(max),
            overflow_min: Some(overflow_min),
            overflow_max: Some(overflow_max),
            overflow_sum: Some(overflow_sum),
            sample_count: Some(self.count),
            sum: Some(sum),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
struct NetworkSets {
    rx_bytes: CounterSet,
    rx_packets: CounterSet,
    rx_dropped: CounterSet,
    rx_errors: CounterSet,
    tx_bytes: CounterSet,
    tx_packets: CounterSet,
    tx_dropped: CounterSet,
    tx_errors: CounterSet,
    rx_rate: DoubleSet,
    tx_rate: DoubleSet,
}

/// One container's sets since its last publication.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerSets {
    readings: u32,
    cpu: DoubleSet,
    memory: DoubleSet,
    read_bytes: CounterSet,
    write_bytes: CounterSet,
    network: Option<NetworkSets>,
}

/// CPU utilisation between two readings: 100 × Δ(CPU time ÷ host CPUs) ÷
/// Δ(wall time), so 100 means the whole host was busy.
pub fn cpu_percent(previous: &Reading, now: &Reading) -> Option<f64> {
    let wall_ns = (now.at - previous.at).whole_nanoseconds();
    if wall_ns <= 0 || now.cpu.total_ns < previous.cpu.total_ns {
        return None;
    }
    #[allow(clippy::cast_precision_loss)]
    let used = (now.cpu.total_ns - previous.cpu.total_ns) as f64;
    #[allow(clippy::cast_precision_loss)]
    let wall = wall_ns as f64;
    Some(100.0 * used / f64::from(now.online_cpus.max(1)) / wall)
}

/// Receive and transmit bytes a second between two readings.
pub fn network_rates(previous: &Reading, now: &Reading) -> Option<(f64, f64)> {
    let (rx0, tx0) = previous.network_totals()?;
    let (rx1, tx1) = now.network_totals()?;
    let seconds = (now.at - previous.at).as_seconds_f64();
    if seconds <= 0.0 {
        return None;
    }
    #[allow(clippy::cast_precision_loss)]
    let rate = |a: u64, b: u64| b.saturating_sub(a) as f64 / seconds;
    Some((rate(rx0, rx1), rate(tx0, tx1)))
}

impl ContainerSets {
    /// Folds in `now`; `previous` is the reading before it, if any (CPU and
    /// rates need two).
    pub fn add(&mut self, now: &Reading, previous: Option<&Reading>) {
        self.readings = self.readings.saturating_add(1);
        #[allow(clippy::cast_precision_loss)]
        self.memory.push((now.memory.in_use() / MIB) as f64);
        self.read_bytes.push(now.blkio.read_bytes());
        self.write_bytes.push(now.blkio.write_bytes());
        if let Some(cpu) = previous.and_then(|p| cpu_percent(p, now)) {
            self.cpu.push(cpu);
        }
        if let Some(networks) = &now.networks {
            let net = self.network.get_or_insert_with(NetworkSets::default);
            let total = |f: fn(&super::Interface) -> u64| {
                networks
                    .values()
                    .fold(0u64, |acc, i| acc.saturating_add(f(i)))
            };
            net.rx_bytes.push(total(|i| i.rx_bytes));
            net.rx_packets.push(total(|i| i.rx_packets));
            net.rx_dropped.push(total(|i| i.rx_dropped));
            net.rx_errors.push(total(|i| i.rx_errors));
            net.tx_bytes.push(total(|i| i.tx_bytes));
            net.tx_packets.push(total(|i| i.tx_packets));
            net.tx_dropped.push(total(|i| i.tx_dropped));
            net.tx_errors.push(total(|i| i.tx_errors));
            if let Some((rx, tx)) = previous.and_then(|p| network_rates(p, now)) {
                net.rx_rate.push(rx);
                net.tx_rate.push(tx);
            }
        }
    }

    /// The container's metric, and a fresh start; `None` (and the sets
    /// kept) while it has fewer than two readings or no CPU or memory
    /// figure yet (docs/protocols.md §5.5).
    pub fn take(&mut self, name: &str) -> Option<ContainerMetric> {
        if self.readings < 2 || self.cpu.count() == 0 || self.memory.count() == 0 {
            return None;
        }
        let sets = std::mem::take(self);
        Some(ContainerMetric {
            container_name: Some(name.to_string()),
            cpu_stats_set: Some(sets.cpu.cw()),
            memory_stats_set: Some(sets.memory.cw()),
            storage_stats_set: Some(StorageStatsSet {
                read_size_bytes: Some(sets.read_bytes.ulong()),
                write_size_bytes: Some(sets.write_bytes.ulong()),
            }),
            network_stats_set: sets.network.map(|n| NetworkStatsSet {
                rx_bytes: Some(n.rx_bytes.ulong()),
                rx_bytes_per_second: (n.rx_rate.count() > 0).then(|| n.rx_rate.udouble()),
                rx_dropped: Some(n.rx_dropped.ulong()),
                rx_errors: Some(n.rx_errors.ulong()),
                rx_packets: Some(n.rx_packets.ulong()),
                tx_bytes: Some(n.tx_bytes.ulong()),
                tx_bytes_per_second: (n.tx_rate.count() > 0).then(|| n.tx_rate.udouble()),
                tx_dropped: Some(n.tx_dropped.ulong()),
                tx_errors: Some(n.tx_errors.ulong()),
                tx_packets: Some(n.tx_packets.ulong()),
            }),
            ..ContainerMetric::default()
        })
    }
}
