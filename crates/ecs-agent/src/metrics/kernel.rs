//! Where a container's figures live on this host, and reading them.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use procfs_core::net::InterfaceDeviceStatus;
use procfs_core::{FromBufRead, Meminfo, ProcessCGroups};

use super::{parse, Blkio, CgroupVersion, Cpu, Interface, Memory, MetricsError, Reading};

/// Linux reports `cpuacct.stat` and `/proc/stat` in USER_HZ, which is 100 on
/// every architecture the agent runs on (it is part of the kernel's ABI,
/// not the configured tick rate).
const USER_HZ: u64 = 100;

/// The host as the collector sees it: its filesystem root (`/`, or a
/// fixture tree in tests), its cgroup version, memory and CPUs.
#[derive(Debug, Clone)]
pub struct Kernel {
    root: PathBuf,
    version: CgroupVersion,
    mem_total: u64,
    online_cpus: u32,
}

impl Kernel {
    /// This host.
    pub fn host() -> Kernel {
        Self::at(Path::new("/"))
    }

    /// A host whose filesystem root is `root` (fixture trees in tests).
    pub fn at(root: &Path) -> Kernel {
        let version = if root.join("sys/fs/cgroup/cgroup.controllers").exists() {
            CgroupVersion::V2
        } else {
            CgroupVersion::V1
        };
        let mem_total = std::fs::File::open(root.join("proc/meminfo"))
            .ok()
            .and_then(|f| Meminfo::from_buf_read(BufReader::new(f)).ok())
            .map_or(u64::MAX, |m| m.mem_total);
        // The CPUs online, as Docker counts them: one `cpuN` line each in
        // /proc/stat.
        let online_cpus = std::fs::read_to_string(root.join("proc/stat"))
            .map(|stat| {
                stat.lines()
                    .filter(|l| {
                        l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit)
                    })
                    .count()
            })
            .ok()
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(1)
            .max(1);
        Kernel {
            root: root.to_path_buf(),
            version,
            mem_total,
            online_cpus,
        }
    }

    pub fn version(&self) -> CgroupVersion {
        self.version
    }

    /// Reads the container whose main process is `pid`. `own_network`:
    /// the container has its own network namespace (not host mode).
    pub fn read(&self, pid: u32, own_network: bool) -> Result<Reading, MetricsError> {
        self.read_with(pid, own_network, self.system_cpu_ns()?)
    }

    /// [`Kernel::read`] with the host's CPU time already read (once for a
    /// whole pass of the collector).
    pub fn read_with(
        &self,
        pid: u32,
        own_network: bool,
        system_cpu_ns: u64,
    ) -> Result<Reading, MetricsError> {
        let at = time::OffsetDateTime::now_utc();
        let proc_dir = self.root.join("proc").join(pid.to_string());
        let groups: ProcessCGroups = parse_proc(&proc_dir.join("cgroup"))?;
        let (cpu, memory, blkio, pids) = match self.version {
            CgroupVersion::V1 => self.read_v1(pid, &groups)?,
            CgroupVersion::V2 => self.read_v2(pid, &groups)?,
        };
        let networks = if own_network {
            let devices: InterfaceDeviceStatus = parse_proc(&proc_dir.join("net/dev"))?;
            Some(
                devices
                    .0
                    .into_iter()
                    .filter(|(name, _)| name != "lo")
                    .map(|(name, d)| {
                        let interface = Interface {
                            rx_bytes: d.recv_bytes,
                            rx_packets: d.recv_packets,
                            rx_errors: d.recv_errs,
                            rx_dropped: d.recv_drop,
                            tx_bytes: d.sent_bytes,
                            tx_packets: d.sent_packets,
                            tx_errors: d.sent_errs,
                            tx_dropped: d.sent_drop,
                        };
                        (name, interface)
                    })
                    .collect(),
            )
        } else {
            None
        };
        Ok(Reading {
            at,
            cpu,
            memory,
            blkio,
            pids,
            networks,
            system_cpu_ns,
            online_cpus: self.online_cpus,
        })
    }

    /// The host's CPU time since boot, all CPUs, in nanoseconds.
    pub fn system_cpu_ns(&self) -> Result<u64, MetricsError> {
        let path = self.root.join("proc/stat");
        let file = std::fs::File::open(&path).map_err(|source| MetricsError::Io {
            path: path.clone(),
            source,
        })?;
        // Only the first line: the rest (per-interrupt counts) can be long.
        let mut line = String::new();
        BufReader::new(file)
            .read_line(&mut line)
            .map_err(|source| MetricsError::Io {
                path: path.clone(),
                source,
            })?;
        parse::system_cpu_ns(&line, USER_HZ).map_err(|detail| MetricsError::Parse { path, detail })
    }

    /// The directory of `controller` for this process (v1).
    fn v1_dir(
        &self,
        pid: u32,
        groups: &ProcessCGroups,
        controller: &'static str,
    ) -> Result<PathBuf, MetricsError> {
        let group = groups
            .0
            .iter()
            .find(|g| g.hierarchy != 0 && g.controllers.iter().any(|c| c == controller))
            .ok_or(MetricsError::NoCgroup { pid, controller })?;
        Ok(self
            .root
            .join("sys/fs/cgroup")
            .join(controller)
            .join(group.pathname.trim_start_matches('/')))
    }

    fn read_v1(
        &self,
        pid: u32,
        groups: &ProcessCGroups,
    ) -> Result<(Cpu, Memory, Blkio, Option<u64>), MetricsError> {
        let cpuacct = self.v1_dir(pid, groups, "cpuacct")?;
        let ticks = read(&cpuacct.join("cpuacct.stat"))?;
        let tick_ns = 1_000_000_000 / USER_HZ;
        let throttling = self
            .v1_dir(pid, groups, "cpu")
            .ok()
            .and_then(|dir| read(&dir.join("cpu.stat")).ok())
            .unwrap_or_default();
        let cpu = Cpu {
            total_ns: number(&cpuacct.join("cpuacct.usage"))?.unwrap_or(0),
            percpu_ns: {
                let path = cpuacct.join("cpuacct.usage_percpu");
                parse::numbers(&read(&path)?)
                    .map_err(|detail| MetricsError::Parse { path, detail })?
            },
            user_ns: parse::keyed(&ticks, "user")
                .unwrap_or(0)
                .saturating_mul(tick_ns),
            system_ns: parse::keyed(&ticks, "system")
                .unwrap_or(0)
                .saturating_mul(tick_ns),
            periods: parse::keyed(&throttling, "nr_periods").unwrap_or(0),
            throttled_periods: parse::keyed(&throttling, "nr_throttled").unwrap_or(0),
            throttled_ns: parse::keyed(&throttling, "throttled_time").unwrap_or(0),
        };
        let mem = self.v1_dir(pid, groups, "memory")?;
        let memory = Memory {
            version: CgroupVersion::V1,
            usage: number(&mem.join("memory.usage_in_bytes"))?.unwrap_or(0),
            max_usage: number(&mem.join("memory.max_usage_in_bytes"))?,
            limit: number(&mem.join("memory.limit_in_bytes"))?
                .unwrap_or(u64::MAX)
                .min(self.mem_total),
            stat: read(&mem.join("memory.stat"))?,
        };
        // Block I/O and process counts are best effort: a host without
        // those controllers still gets CPU and memory.
        let blkio = match self.v1_dir(pid, groups, "blkio") {
            Ok(dir) => Blkio {
                service_bytes: blkio_file(&dir.join("blkio.throttle.io_service_bytes_recursive"))?,
                serviced: blkio_file(&dir.join("blkio.throttle.io_serviced_recursive"))?,
            },
            Err(_) => Blkio::default(),
        };
        let pids = self
            .v1_dir(pid, groups, "pids")
            .ok()
            .and_then(|dir| number(&dir.join("pids.current")).ok().flatten());
        Ok((cpu, memory, blkio, pids))
    }

    fn read_v2(
        &self,
        pid: u32,
        groups: &ProcessCGroups,
    ) -> Result<(Cpu, Memory, Blkio, Option<u64>), MetricsError> {
        let group = groups
            .0
            .iter()
            .find(|g| g.hierarchy == 0)
            .ok_or(MetricsError::NoCgroup {
                pid,
                controller: "unified",
            })?;
        let dir = self
            .root
            .join("sys/fs/cgroup")
            .join(group.pathname.trim_start_matches('/'));
        let stat = read(&dir.join("cpu.stat"))?;
        let usec = |key: &str| parse::keyed(&stat, key).unwrap_or(0).saturating_mul(1000);
        let cpu = Cpu {
            total_ns: usec("usage_usec"),
            percpu_ns: Vec::new(),
            user_ns: usec("user_usec"),
            system_ns: usec("system_usec"),
            periods: parse::keyed(&stat, "nr_periods").unwrap_or(0),
            throttled_periods: parse::keyed(&stat, "nr_throttled").unwrap_or(0),
            throttled_ns: usec("throttled_usec"),
        };
        let peak = dir.join("memory.peak");
        let memory = Memory {
            version: CgroupVersion::V2,
            usage: number(&dir.join("memory.current"))?.unwrap_or(0),
            max_usage: if peak.exists() { number(&peak)? } else { None },
            limit: number(&dir.join("memory.max"))?
                .unwrap_or(u64::MAX)
                .min(self.mem_total),
            stat: read(&dir.join("memory.stat"))?,
        };
        let io = dir.join("io.stat");
        let blkio = if io.exists() {
            let (service_bytes, serviced) = parse::io_stat_v2(&read(&io)?)
                .map_err(|detail| MetricsError::Parse { path: io, detail })?;
            Blkio {
                service_bytes,
                serviced,
            }
        } else {
            Blkio::default()
        };
        let pids = number(&dir.join("pids.current")).ok().flatten();
        Ok((cpu, memory, blkio, pids))
    }
}

fn read(path: &Path) -> Result<String, MetricsError> {
    std::fs::read_to_string(path).map_err(|source| MetricsError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn number(path: &Path) -> Result<Option<u64>, MetricsError> {
    parse::single(&read(path)?).map_err(|detail| MetricsError::Parse {
        path: path.to_path_buf(),
        detail,
    })
}

fn blkio_file(path: &Path) -> Result<Vec<super::BlkioEntry>, MetricsError> {
    parse::blkio_v1(&read(path)?).map_err(|detail| MetricsError::Parse {
        path: path.to_path_buf(),
        detail,
    })
}

fn parse_proc<T: FromBufRead>(path: &Path) -> Result<T, MetricsError> {
    let file = std::fs::File::open(path).map_err(|source| MetricsError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    T::from_buf_read(BufReader::new(file)).map_err(|e| MetricsError::Parse {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })
}
