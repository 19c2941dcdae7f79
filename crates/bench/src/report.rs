//! `docs/benchmarks.md`: the machine, the method, and one section per
//! figure, each with its table and what it means for a user.

use std::fmt::Write as _;

use crate::figures::{
    Compare, CpuWindow, Results, ScaleCall, ScaleFigure, Settings, Startup, BURST_CALLS,
    BURST_COUNT, BURST_DOCKER_CONCURRENCY, BURST_POLL, BURST_TASKS, CLEANUP_WAIT, CYCLE_BATCH,
    CYCLE_WORKERS, FAST_POLL, RSS_EVERY, SCALE_CALLS, SCALE_DESCRIBE_TASKS, SCALE_FILL_COUNT,
    SCALE_FILL_WORKERS, SCALE_INSTANCES, SCALE_LIST_MAX, SCALE_PAUSE, SCALE_TASKS, STOP_GRACE_SECS,
    TASK_MEMORY_MIB,
};
use crate::logs::PHASES;
use crate::machine::{Checkout, Machine};
use crate::procfs::Rss;
use crate::stats::{percentile, ratio, window_mean, Side, Summary};

/// Goals, shown beside each figure; never asserted.
pub const LAUNCH_TARGET: f64 = 1.03;
pub const BURST_TARGET: f64 = 1.0;
pub const STOP_TARGET: f64 = 1.05;
pub const IDLE_RSS_TARGET_MIB: f64 = 10.0;
pub const BUSY_RSS_TARGET_MIB: f64 = 20.0;
pub const CLEANUP_RSS_TOLERANCE: f64 = 0.10;
pub const IDLE_CPU_TARGET_PERCENT: f64 = 0.05;
pub const STARTUP_TARGET_MS: f64 = 100.0;
/// Round trips before the agent is connected: RegisterContainerInstance,
/// DiscoverPollEndpoint and the ACS websocket upgrade.
pub const STARTUP_ROUND_TRIPS: f64 = 3.0;
pub const STATIC_SIZE_TARGET: u64 = 12_000_000;
/// RSS that grows by more than this between the 10–20 % window and the
/// last 10 % of the cycles does not level off.
pub const LEVEL_OFF_TOLERANCE: f64 = 0.05;
/// ecs-local at scale (issue: 10,000 tasks, 100 instances): each call's
/// p99, and its peak RSS in bytes (200 MB, not MiB).
pub const SCALE_P99_TARGET_MS: f64 = 50.0;
pub const SCALE_RSS_TARGET_BYTES: u64 = 200_000_000;

const SCALE_HEADING: &str = "## 9. ecs-local at scale";
/// How every summary row of the scale figure starts: `--only scale`
/// replaces the rows that do.
const SCALE_ROW: &str = "| ecs-local at scale";
const NOTES_HEADING: &str = "## Notes from this run";

pub struct Report {
    pub date: String,
    pub duration_secs: f64,
    pub checkout: Checkout,
    pub machine: Machine,
    pub settings: Settings,
    pub results: Results,
}

fn fmt_ms(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.2} s", v / 1000.0)
    } else if v >= 100.0 {
        format!("{v:.0} ms")
    } else {
        format!("{v:.1} ms")
    }
}

/// 10000 as "10,000".
fn fmt_count(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn fmt_mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn fmt_bytes(b: u64) -> String {
    format!("{:.2} MB ({:.2} MiB)", b as f64 / 1e6, b as f64 / 1048576.0)
}

/// A ratio as `1.03×`, with a third decimal when two would print the
/// target itself, so that a verdict at the boundary can be read: `1.052×`
/// against "at most 1.05×".
fn ratio_text(r: f64, target: f64) -> String {
    let two = format!("{r:.2}");
    if two == format!("{target:.2}") && r != target {
        format!("{r:.3}×")
    } else {
        format!("{two}×")
    }
}

fn verdict(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "met",
        Some(false) => "missed",
        None => "not measured",
    }
}

fn row(out: &mut String, label: &str, s: Option<Summary>) {
    match s {
        Some(s) => {
            let _ = writeln!(
                out,
                "| {label} | {} | {} | {} | {} |",
                s.runs,
                fmt_ms(s.median),
                fmt_ms(s.min),
                fmt_ms(s.max)
            );
        }
        None => {
            let _ = writeln!(out, "| {label} | 0 | – | – | – |");
        }
    }
}

fn table_head(out: &mut String, first: &str) {
    let _ = writeln!(out, "| {first} | runs | median | min | max |");
    let _ = writeln!(out, "|---|---:|---:|---:|---:|");
}

fn order_text(c: &Compare) -> &'static str {
    match c.first {
        Some(Side::Docker) => "Docker, agent, Docker, agent, ...",
        _ => "agent, Docker, agent, Docker, ...",
    }
}

/// The comparison table and its ratio line; returns the ratio.
fn compare(out: &mut String, c: &Compare, agent: &str, docker: &str) -> Option<f64> {
    table_head(out, "side");
    let (a, d) = (Summary::of(&c.agent), Summary::of(&c.docker));
    row(out, agent, a);
    row(out, docker, d);
    let r = ratio(a, d);
    let _ = writeln!(out);
    let _ = writeln!(out, "Runs alternated {}.", order_text(c));
    r
}

fn cpu_percent(cpu_seconds: f64, w: &CpuWindow) -> f64 {
    if w.seconds > 0.0 {
        cpu_seconds / w.seconds * 100.0
    } else {
        0.0
    }
}

/// RSS, peak RSS, and the RSS split into anonymous and file-backed.
fn rss_cells(r: Option<Rss>) -> (String, String, String, String) {
    match r {
        Some(r) => (
            fmt_mib(r.rss_kib),
            fmt_mib(r.hwm_kib),
            fmt_mib(r.anon_kib),
            fmt_mib(r.file_kib),
        ),
        None => ("–".into(), "–".into(), "–".into(), "–".into()),
    }
}

/// `restart_tasks`: how many tasks the restarts had, or `None` for fresh
/// starts.
fn startup_rows(out: &mut String, runs: &[Startup], restart_tasks: Option<usize>) {
    let restart = restart_tasks.is_some();
    table_head(out, "from process start to");
    let collect =
        |f: &dyn Fn(&Startup) -> Option<f64>| -> Vec<f64> { runs.iter().filter_map(f).collect() };
    if !restart {
        row(
            out,
            "RegisterContainerInstance answered (`Instance registration completed successfully`)",
            Summary::of(&collect(&|s| s.registered_ms)),
        );
    }
    row(
        out,
        if restart {
            "engine started, every container re-inspected (`Beginning Polling for updates`)"
        } else {
            "engine started (`Beginning Polling for updates`)"
        },
        Summary::of(&collect(&|s| s.engine_ms)),
    );
    row(
        out,
        "connected to ACS (`connected to ACS`)",
        Summary::of(&collect(&|s| Some(s.connected_ms))),
    );
    if let Some(tasks) = restart_tasks {
        row(
            out,
            &format!("introspection `/v1/tasks` lists all {tasks} tasks RUNNING"),
            Summary::of(&collect(&|s| s.all_listed_ms)),
        );
    }
}

/// The whole document.
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let res = &r.results;
    let s = &r.settings;
    let m = &r.machine;
    let mode = if s.quick { "quick (`--quick`)" } else { "full" };

    // Everything the summary needs, computed once.
    let launch_a = Summary::of(&res.launch.compare.agent);
    let launch_d = Summary::of(&res.launch.compare.docker);
    let launch_ratio = ratio(launch_a, launch_d);
    let burst_ratio = ratio(
        Summary::of(&res.burst.compare.agent),
        Summary::of(&res.burst.compare.docker),
    );
    let stop_ratio = ratio(Summary::of(&res.stop.agent), Summary::of(&res.stop.docker));
    let mem = &res.memory;
    let idle_ok = mem
        .idle
        .map(|r| r.rss_kib as f64 / 1024.0 < IDLE_RSS_TARGET_MIB);
    let busy_ok = mem
        .with_tasks
        .map(|r| r.rss_kib as f64 / 1024.0 < BUSY_RSS_TARGET_MIB);
    let back_ok = match (mem.idle, mem.after_cleanup) {
        (Some(i), Some(a)) => {
            Some((a.rss_kib as f64) <= i.rss_kib as f64 * (1.0 + CLEANUP_RSS_TOLERANCE))
        }
        _ => None,
    };
    let idle_cpu_pct = res.cpu_idle.map(|w| cpu_percent(w.agent, &w));
    let rtt = Summary::of(&res.round_trip_ms);
    let startup_target = STARTUP_TARGET_MS + STARTUP_ROUND_TRIPS * rtt.map_or(0.0, |r| r.median);
    let connected = Summary::of(
        &res.startups
            .iter()
            .map(|s| s.connected_ms)
            .collect::<Vec<_>>(),
    );
    let size_ok = res.size.static_stripped.map(|b| b < STATIC_SIZE_TARGET);
    let growth = level_off(&mem.cycle_samples);

    let _ = writeln!(out, "# Benchmarks");
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Written by `make bench` (the `ecs-bench` tool in `crates/bench`); run it again rather than editing this file. \
         The numbers are this machine's on the day below: they change when the agent, Docker or the machine does."
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "* Date: {} (UTC)", r.date);
    let _ = writeln!(out, "* Mode: {mode}, {:.1} minutes", r.duration_secs / 60.0);
    let tree = if r.checkout.dirty_files == 0 {
        "clean tree".to_string()
    } else {
        format!(
            "dirty tree: {} file(s) changed or added since that commit; the binaries were built from the working tree",
            r.checkout.dirty_files
        )
    };
    let _ = writeln!(out, "* Commit: `{}` ({tree})", r.checkout.commit);
    let _ = writeln!(out);

    let _ = writeln!(out, "## Summary");
    let _ = writeln!(out);
    let _ = writeln!(out, "| figure | result | target | |");
    let _ = writeln!(out, "|---|---:|---|---|");
    let ratio_line = |out: &mut String, name: &str, r: Option<f64>, target: f64| {
        let _ = writeln!(
            out,
            "| {name} | {} | at most {target:.2}× Docker | {} |",
            r.map_or("–".into(), |r| format!(
                "{} Docker",
                ratio_text(r, target)
            )),
            verdict(r.map(|r| r <= target))
        );
    };
    ratio_line(&mut out, "launch, one task", launch_ratio, LAUNCH_TARGET);
    ratio_line(&mut out, "burst, 100 tasks", burst_ratio, BURST_TARGET);
    ratio_line(&mut out, "stop, one task", stop_ratio, STOP_TARGET);
    let _ = writeln!(
        out,
        "| RSS idle | {} | under {IDLE_RSS_TARGET_MIB:.0} MiB | {} |",
        rss_cells(mem.idle).0,
        verdict(idle_ok)
    );
    let _ = writeln!(
        out,
        "| RSS with 100 tasks | {} | under {BUSY_RSS_TARGET_MIB:.0} MiB | {} |",
        rss_cells(mem.with_tasks).0,
        verdict(busy_ok)
    );
    let _ = writeln!(
        out,
        "| RSS after they are cleaned up | {} | within {:.0} % of idle | {} |",
        rss_cells(mem.after_cleanup).0,
        CLEANUP_RSS_TOLERANCE * 100.0,
        verdict(back_ok)
    );
    let _ = writeln!(
        out,
        "| CPU idle | {} | under {IDLE_CPU_TARGET_PERCENT} % of a core | {} |",
        idle_cpu_pct.map_or("–".into(), |p| format!("{p:.3} % of a core")),
        verdict(idle_cpu_pct.map(|p| p < IDLE_CPU_TARGET_PERCENT))
    );
    let _ = writeln!(
        out,
        "| start-up to connected | {} | under {} (100 ms + {STARTUP_ROUND_TRIPS:.0} round trips) | {} |",
        connected.map_or("–".into(), |c| fmt_ms(c.median)),
        fmt_ms(startup_target),
        verdict(connected.map(|c| c.median < startup_target))
    );
    let _ = writeln!(
        out,
        "| stripped static binary | {} | under 12 MB | {} |",
        res.size
            .static_stripped
            .map_or("–".into(), |b| format!("{:.2} MB", b as f64 / 1e6)),
        verdict(size_ok)
    );
    let (cpu_r, mem_r) = metrics_ratios(res);
    let _ = writeln!(
        out,
        "| container metrics against Docker's (CPU, memory) | {} | within 5 % | {} |",
        match (cpu_r, mem_r) {
            (Some(c), Some(m)) => format!("{c:.3}×, {m:.3}×"),
            _ => "–".into(),
        },
        verdict(
            cpu_r
                .zip(mem_r)
                .map(|(c, m)| (c - 1.0).abs() <= 0.05 && (m - 1.0).abs() <= 0.05)
        )
    );
    let share = metrics_cost_share(res);
    let _ = writeln!(
        out,
        "| metrics cost against Docker stats streams | {} | at most 0.2× | {} |",
        share.map_or("–".into(), |s| format!("{s:.3}×")),
        verdict(share.map(|s| s <= 0.2))
    );
    scale_summary_rows(&mut out, res);
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "A ratio is the agent's median divided by Docker's, both measured in this run: 1.00× would mean \
         the agent adds nothing to what Docker itself costs, 2.00× that the same work takes twice as long through ECS. \
         Targets are goals, not tests: nothing here is asserted anywhere."
    );
    let _ = writeln!(out);

    // Machine.
    let _ = writeln!(out, "## Machine");
    let _ = writeln!(out);
    let _ = writeln!(out, "| | |");
    let _ = writeln!(out, "|---|---|");
    let _ = writeln!(out, "| CPU | {} × {} |", m.cores, m.cpu_model);
    let _ = writeln!(out, "| memory | {} MiB |", m.memory_mib);
    let _ = writeln!(out, "| kernel | {} |", m.kernel);
    let _ = writeln!(out, "| OS | {} |", m.os);
    let _ = writeln!(
        out,
        "| Docker | {} ({} storage) |",
        m.docker_version, m.storage_driver
    );
    let _ = writeln!(out, "| cgroup | {} |", m.cgroup);
    let _ = writeln!(out, "| Rust | {} |", m.rustc);
    let _ = writeln!(out, "| load average at the start | {} |", m.load_at_start);
    let _ = writeln!(
        out,
        "| other containers running at the start | {} |",
        m.other_containers
    );
    let _ = writeln!(out);

    // Method.
    let _ = writeln!(out, "## Method");
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "* **What runs.** The release builds of `ecs-local` (`cargo build --release`) and `ecs-agent` \
         (the static binary of `make static` when it is there, else `cargo build --release`), \
         started as the end-to-end tests start them (`crates/e2e`), on this machine's Docker engine, in a \
         cluster of the bench's own. The agent runs with `ECS_LOGLEVEL=info`, `ECS_LOG_OUTPUT_FORMAT=json`, \
         `ECS_IMAGE_PULL_BEHAVIOR=prefer-cached`, `ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION={CLEANUP_WAIT}` and \
         `ECS_CONTAINER_STOP_TIMEOUT={STOP_GRACE_SECS}s`; ecs-local sends ACS heartbeats every 5 s."
    );
    let _ = writeln!(
        out,
        "* **The task.** One essential container of the cached local image `{}`, {TASK_MEMORY_MIB} MiB hard \
         memory limit, running `sh -c 'trap \"exit 0\" TERM; sleep 86400 & wait'`: a shell that exits at once \
         on SIGTERM (busybox `sleep` as PID 1 ignores SIGTERM, which would turn every stop into the stop \
         timeout). The bench checks that it exits with code 0 within 2 s of `docker stop` before it starts.",
        e2e::TEST_IMAGE
    );
    let _ = writeln!(
        out,
        "* **The Docker side** of every comparison is the same container (image, command, memory limit, CPU \
         shares 2, bridge network) created, started and stopped through the Docker Engine API with `bollard` \
         from the bench's own process, so no CLI process start is counted. Its containers carry a label of \
         the run, and are removed by it at the end, whatever happens."
    );
    let _ = writeln!(
        out,
        "* **The ECS side** goes through the AWS SDK for Rust against ecs-local on loopback: RunTask, then \
         DescribeTasks every {} ms until `lastStatus` is RUNNING (every {} ms while 100 tasks are awaited, \
         one call for the tasks not RUNNING yet); StopTask, then DescribeTasks until STOPPED. The polling \
         interval is part of every ECS figure: on average half an interval.",
        FAST_POLL.as_millis(),
        BURST_POLL.as_millis()
    );
    let _ = writeln!(
        out,
        "* **The same measuring load on both sides.** That polling costs ecs-local and the bench CPU (a \
         DescribeTasks of one task about 0.2 ms in each), which Docker's own work then lacks on this \
         machine: measured alone, Docker's create + start took 4–7 % longer while a client polled \
         DescribeTasks every 5 ms (docs/footprint.md §3). So while the Docker side of a comparison is timed, \
         the bench polls ecs-local the same way, at the same interval, for as many tasks as the Docker \
         side still awaits (one, or the containers of a burst not started yet), describing tasks the \
         agent ran before."
    );
    let _ = writeln!(
        out,
        "* **Interleaving.** Every ratio comes from one run in which the two sides take turns, so a slow \
         moment of the machine falls on both. One uncounted pair goes first (connections, caches). Each side \
         is summarised by its median, min and max; the ratio is the agent's median over Docker's."
    );
    let _ = writeln!(
        out,
        "* **The agent's share** comes from its log: its `task launch timings` line (phases in whole \
         milliseconds, from the ACS frame read to the RUNNING report queued), and the moment the \
         `reported task state` line for RUNNING appeared. JSON log times have whole seconds only, so the \
         bench notes when each line appears by reading the log file every 1–2 ms; start-up milestones are \
         timed the same way, from just before the process is spawned."
    );
    let _ = writeln!(
        out,
        "* **Memory** is `VmRSS` and `VmHWM` (peak) from `/proc/<pid>/status`; **CPU** is utime + stime from \
         `/proc/<pid>/stat` (clock ticks of 10 ms) over a window in which the bench itself waits; containerd's \
         shims (one per running container) are shown apart from containerd."
    );
    let _ = writeln!(
        out,
        "* **Amounts in this mode:** {} launch and {} stop pairs, {} burst pair(s), {} s CPU windows ({} s \
         with the stats streams), {} \
         launch/stop cycles, {} fresh start(s), {} restart(s) with {} tasks, {} timed calls of each \
         kind against ecs-local at scale.",
        s.launch_pairs,
        s.launch_pairs,
        s.burst_pairs,
        s.cpu_window.as_secs(),
        s.streams_window.as_secs(),
        mem.cycles.max(s.cycles),
        s.startups,
        s.restarts,
        s.restart_tasks,
        s.scale_samples
    );
    let _ = writeln!(out);

    // 1. Launch.
    let _ = writeln!(out, "## 1. Launch overhead");
    let _ = writeln!(out);
    let r1 = compare(
        &mut out,
        &res.launch.compare,
        "agent: RunTask → RUNNING in DescribeTasks",
        "Docker API: create + start",
    );
    let _ = writeln!(
        out,
        "Ratio of medians: **{}** (target at most {LAUNCH_TARGET:.2}×: {}).",
        r1.map_or("–".into(), |r| ratio_text(r, LAUNCH_TARGET)),
        verdict(r1.map(|r| r <= LAUNCH_TARGET))
    );
    let _ = writeln!(out);
    let launches = &res.launch.agent;
    let with_timings: Vec<_> = launches.iter().filter(|l| l.timings.is_some()).collect();
    let mut agent_total_median = None;
    if with_timings.is_empty() {
        let _ = writeln!(
            out,
            "The agent logged no `task launch timings` lines, so its own share is not broken down here."
        );
    } else {
        let _ = writeln!(
            out,
            "Where the agent's time goes, from its `task launch timings` line of each timed task ({} tasks):",
            with_timings.len()
        );
        let _ = writeln!(out);
        table_head(&mut out, "agent phase");
        for (key, what) in PHASES {
            let v: Vec<f64> = with_timings
                .iter()
                .filter_map(|l| l.timings.as_ref()?.phases.get(key).map(|v| *v as f64))
                .collect();
            row(&mut out, what, Summary::of(&v));
        }
        let totals: Vec<f64> = with_timings
            .iter()
            .filter_map(|l| l.timings.as_ref()?.total_ms.map(|v| v as f64))
            .collect();
        row(
            &mut out,
            "**agent total: ACS frame read → RUNNING report queued** (`total_ms`)",
            Summary::of(&totals),
        );
        let submits: Vec<f64> = launches.iter().filter_map(|l| l.submit_ms).collect();
        row(
            &mut out,
            "report sent: queued → SubmitTaskStateChange answered (from the log, ±2 ms)",
            Summary::of(&submits),
        );
        let agent_share: Vec<f64> = launches
            .iter()
            .filter_map(|l| Some(l.timings.as_ref()?.total_ms? as f64 + l.submit_ms?))
            .collect();
        row(
            &mut out,
            "**agent share: ACS frame read → RUNNING state change sent**",
            Summary::of(&agent_share),
        );
        let outside: Vec<f64> = launches
            .iter()
            .filter_map(|l| {
                Some(l.end_to_end_ms - l.timings.as_ref()?.total_ms? as f64 - l.submit_ms?)
            })
            .collect();
        row(
            &mut out,
            "outside the agent: RunTask, ACS delivery, ecs-local, DescribeTasks polling",
            Summary::of(&outside),
        );
        agent_total_median = Summary::of(&agent_share).map(|s| s.median);
        let _ = writeln!(out);
        let biggest = PHASES
            .iter()
            .filter_map(|(key, what)| {
                let v: Vec<f64> = with_timings
                    .iter()
                    .filter_map(|l| l.timings.as_ref()?.phases.get(key).map(|v| *v as f64))
                    .collect();
                Some((what, Summary::of(&v)?.median))
            })
            .max_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((what, median)) = biggest {
            let phase = what.split(':').next().unwrap_or(what);
            let _ = writeln!(
                out,
                "The largest agent phase is {phase} ({} median). Create and start are Docker's own work, \
                 asked for by the agent.",
                fmt_ms(median)
            );
            let _ = writeln!(out);
        }
    }
    if let (Some(a), Some(d)) = (launch_a, launch_d) {
        let _ = write!(
            out,
            "**For a user:** a one-container task on an ECS host with this agent is RUNNING, as \
             DescribeTasks sees it, {} after RunTask; Docker alone starts the same container in {} \
             ({} as long).",
            fmt_ms(a.median),
            fmt_ms(d.median),
            launch_ratio.map_or("–".into(), |r| format!("{r:.2}×"))
        );
        if let Some(share) = agent_total_median {
            let _ = write!(
                out,
                " Of that, {} is the agent's own (Docker's create and start included); the rest is the \
                 control plane's part, which with Amazon ECS is its own API and delivery latency instead \
                 of ecs-local's.",
                fmt_ms(share)
            );
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(out);

    // 2. Burst.
    let _ = writeln!(out, "## 2. Burst: {BURST_TASKS} tasks at once");
    let _ = writeln!(out);
    let r2 = compare(
        &mut out,
        &res.burst.compare,
        &format!(
            "agent: {BURST_CALLS} concurrent RunTask `--count {BURST_COUNT}` → all {BURST_TASKS} RUNNING"
        ),
        &format!(
            "Docker API: {BURST_TASKS} create + start, {BURST_DOCKER_CONCURRENCY} in flight at a time"
        ),
    );
    let _ = writeln!(
        out,
        "Ratio of medians: **{}** (target at most {BURST_TARGET:.2}×: {}). Docker first in each pair, so \
         that the last agent burst's tasks stay for the memory and CPU figures.",
        r2.map_or("–".into(), |r| ratio_text(r, BURST_TARGET)),
        verdict(r2.map(|r| r <= BURST_TARGET))
    );
    let _ = writeln!(out);
    if let Some(t) = Summary::of(&res.burst.task_totals_ms) {
        let _ = writeln!(
            out,
            "Within the agent's bursts, each task's `total_ms` (ACS frame read → RUNNING report queued): \
             median {}, min {}, max {} over {} tasks.",
            fmt_ms(t.median),
            fmt_ms(t.min),
            fmt_ms(t.max),
            t.runs
        );
        let _ = writeln!(out);
    }
    burst_cpu(&mut out, &res.burst);
    if let (Some(a), Some(d)) = (
        Summary::of(&res.burst.compare.agent),
        Summary::of(&res.burst.compare.docker),
    ) {
        let _ = writeln!(
            out,
            "**For a user:** a service scaling out by {BURST_TASKS} tasks on one host has them all RUNNING in \
             {} through the agent, against {} for the same containers created directly with {} calls in \
             flight: the gap is what the agent's scheduling of Docker calls, its state saves and its \
             reports add, or save, when many tasks arrive together.",
            fmt_ms(a.median),
            fmt_ms(d.median),
            BURST_DOCKER_CONCURRENCY
        );
        let _ = writeln!(out);
    }

    // 3. Stop.
    let _ = writeln!(out, "## 3. Stop");
    let _ = writeln!(out);
    let r3 = compare(
        &mut out,
        &res.stop,
        "agent: StopTask → STOPPED in DescribeTasks",
        &format!("Docker API: stop (`t={STOP_GRACE_SECS}`)"),
    );
    let _ = writeln!(
        out,
        "Ratio of medians: **{}** (target at most {STOP_TARGET:.2}×: {}). The tasks and containers stopped \
         are the ones the launch figure started.",
        r3.map_or("–".into(), |r| ratio_text(r, STOP_TARGET)),
        verdict(r3.map(|r| r <= STOP_TARGET))
    );
    let _ = writeln!(out);
    if let (Some(a), Some(d)) = (Summary::of(&res.stop.agent), Summary::of(&res.stop.docker)) {
        let _ = writeln!(
            out,
            "**For a user:** a task whose container exits on SIGTERM is STOPPED in DescribeTasks {} after \
             StopTask; `docker stop` of the same container returns in {}. The difference is the stop's \
             delivery over ACS, the agent noticing the exit, and the STOPPED report.",
            fmt_ms(a.median),
            fmt_ms(d.median)
        );
        let _ = writeln!(out);
    }

    // 4. Memory.
    let _ = writeln!(out, "## 4. Memory");
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| agent | RSS | peak RSS | of the RSS: anonymous | file-backed | target | |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---|---|");
    let (i_rss, i_hwm, i_anon, i_file) = rss_cells(mem.idle);
    let _ = writeln!(
        out,
        "| idle after registration | {i_rss} | {i_hwm} | {i_anon} | {i_file} | under {IDLE_RSS_TARGET_MIB:.0} MiB | {} |",
        verdict(idle_ok)
    );
    let (b_rss, b_hwm, b_anon, b_file) = rss_cells(mem.with_tasks);
    let _ = writeln!(
        out,
        "| with {BURST_TASKS} running tasks | {b_rss} | {b_hwm} | {b_anon} | {b_file} | under {BUSY_RSS_TARGET_MIB:.0} MiB | {} |",
        verdict(busy_ok)
    );
    let (c_rss, c_hwm, c_anon, c_file) = rss_cells(mem.after_cleanup);
    let _ = writeln!(
        out,
        "| after those stopped and were cleaned up | {c_rss} | {c_hwm} | {c_anon} | {c_file} | within {:.0} % of idle | {} |",
        CLEANUP_RSS_TOLERANCE * 100.0,
        verdict(back_ok)
    );
    let (y_rss, y_hwm, y_anon, y_file) = rss_cells(mem.after_cycles);
    let _ = writeln!(
        out,
        "| after {} launch/stop cycles and their cleanup | {y_rss} | {y_hwm} | {y_anon} | {y_file} | | |",
        mem.cycles
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Anonymous memory is the agent's heap and stacks; file-backed is almost all the binary's own code \
         and read-only data, mapped from the file and shared with the page cache (docs/footprint.md §2 \
         explains both)."
    );
    let _ = writeln!(out);
    if mem.cycles > 0 {
        let _ = writeln!(
            out,
            "The cycles ran as RunTask batches of {CYCLE_BATCH} (RUNNING, then StopTask, then STOPPED), {CYCLE_WORKERS} \
             batches in flight: {} cycles in {:.0} s ({:.1} tasks launched and stopped per second), with RSS read \
             every {} ms ({} readings, {} to {}).",
            mem.cycles,
            mem.cycles_seconds,
            mem.cycles as f64 / mem.cycles_seconds.max(0.001),
            RSS_EVERY.as_millis(),
            mem.cycle_samples.len(),
            Summary::of(&mem.cycle_samples).map_or("–".into(), |s| fmt_mib(s.min as u64)),
            Summary::of(&mem.cycle_samples).map_or("–".into(), |s| fmt_mib(s.max as u64)),
        );
        if let Some((early, late, change)) = growth {
            let _ = writeln!(
                out,
                "Mean RSS over the 10–20 % window of the readings: {}; over the last 10 %: {} ({:+.1} %): {}.",
                fmt_mib(early as u64),
                fmt_mib(late as u64),
                change * 100.0,
                if change <= LEVEL_OFF_TOLERANCE {
                    "it levels off"
                } else {
                    "it is still growing (more than 5 %), which suggests memory kept per task launched"
                }
            );
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(
        out,
        "**For a user:** this is the memory the agent takes from the host's tasks: idle, with {BURST_TASKS} \
         tasks, and after a long run of launches and stops, which shows whether it keeps anything per \
         task once the task is gone."
    );
    let _ = writeln!(out);

    // 5. CPU.
    let _ = writeln!(out, "## 5. CPU");
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "CPU seconds (utime + stime) and share of one core over each window. The idle window lasts {} s \
         or until figure 9 is done, whichever is later: that figure runs in it, on a plane of its own that \
         neither the agent nor Docker hears from, so it only shares the cores with them, and a process's \
         CPU seconds count its own work whoever else runs.",
        s.cpu_window.as_secs()
    );
    let _ = writeln!(out);
    let idle = res.cpu_idle.unwrap_or_default();
    let busy = res.cpu_busy.unwrap_or_default();
    let _ = writeln!(
        out,
        "| process | idle, {:.0} s | % of a core | {BURST_TASKS} tasks running, {:.0} s | % of a core |",
        idle.seconds, busy.seconds
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|");
    for (name, a, b) in [
        ("ecs-agent", idle.agent, busy.agent),
        ("dockerd", idle.dockerd, busy.dockerd),
        ("containerd", idle.containerd, busy.containerd),
    ] {
        let _ = writeln!(
            out,
            "| {name} | {a:.2} s | {:.3} % | {b:.2} s | {:.3} % |",
            cpu_percent(a, &idle),
            cpu_percent(b, &busy)
        );
    }
    let _ = writeln!(
        out,
        "| containerd shims ({} idle, {} busy) | {:.2} s | {:.3} % | {:.2} s | {:.3} % |",
        idle.shim_count,
        busy.shim_count,
        idle.shims,
        cpu_percent(idle.shims, &idle),
        busy.shims,
        cpu_percent(busy.shims, &busy)
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Agent idle: {} (target under {IDLE_CPU_TARGET_PERCENT} % of a core: {}). One clock tick is {:.3} % of \
         a core over this idle window, so smaller values are not resolved.",
        idle_cpu_pct.map_or("–".into(), |p| format!("{p:.3} % of a core")),
        verdict(idle_cpu_pct.map(|p| p < IDLE_CPU_TARGET_PERCENT)),
        if idle.seconds > 0.0 {
            1.0 / crate::procfs::ticks_per_second() as f64 / idle.seconds * 100.0
        } else {
            0.0
        }
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "**For a user:** this is the CPU the agent costs a host doing nothing, and one running {BURST_TASKS} \
         tasks; dockerd's and containerd's columns show what the agent's Docker calls (inspects and the \
         event stream; a stats feed only for a container whose stats are being read) cost Docker on its \
         behalf."
    );
    let _ = writeln!(out);

    // 6. Start-up.
    let _ = writeln!(out, "## 6. Start-up");
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Fresh starts, each on a new data directory registering a new container instance:"
    );
    let _ = writeln!(out);
    startup_rows(&mut out, &res.startups, None);
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "One ECS API round trip to ecs-local (ListClusters through the SDK from the bench): median {}. \
         Target: connected under 100 ms + {STARTUP_ROUND_TRIPS:.0} round trips (RegisterContainerInstance, \
         DiscoverPollEndpoint, the ACS websocket upgrade) = {}: {}.",
        rtt.map_or("–".into(), |r| fmt_ms(r.median)),
        fmt_ms(startup_target),
        verdict(connected.map(|c| c.median < startup_target))
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Restarts: the agent SIGKILLed with {} tasks running, started again on the same data \
         directory{}:",
        s.restart_tasks,
        if s.restart_tasks < BURST_TASKS {
            format!(" ({BURST_TASKS} in a full run)")
        } else {
            String::new()
        }
    );
    let _ = writeln!(out);
    startup_rows(&mut out, &res.restarts, Some(s.restart_tasks));
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "**For a user:** how soon after boot (or after a crash) the host takes tasks again, and how long \
         after a restart its running tasks are all accounted for."
    );
    let _ = writeln!(out);

    // 7. Size.
    let _ = writeln!(out, "## 7. Size");
    let _ = writeln!(out);
    let _ = writeln!(out, "| `ecs-agent` binary | as built | stripped |");
    let _ = writeln!(out, "|---|---:|---:|");
    let cell = |b: Option<u64>| b.map_or("not built".to_string(), fmt_bytes);
    let _ = writeln!(
        out,
        "| static (`make static`, `+crt-static`) | {} | {} |",
        cell(res.size.static_bytes),
        cell(res.size.static_stripped)
    );
    let _ = writeln!(
        out,
        "| dynamically linked (`cargo build --release`) | {} | {} |",
        cell(res.size.dynamic_bytes),
        cell(res.size.dynamic_stripped)
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Stripped static binary target: under 12 MB (12,000,000 bytes): {}.",
        verdict(size_ok)
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Dependencies: `cargo tree -p ecs-agent -e normal --prefix none | sort -u | wc -l` gives {} \
         ({} distinct packages once the `(*)` repeats are folded).",
        res.size
            .dependency_lines
            .map_or("–".into(), |n| n.to_string()),
        res.size
            .dependency_packages
            .map_or("–".into(), |n| n.to_string())
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "**For a user:** the size of what is copied to every host, and how much third-party code is in it."
    );
    let _ = writeln!(out);

    metrics_section(&mut out, res);
    scale_section(&mut out, r, false);
    run_time_section(&mut out, r);

    // Notes.
    let _ = writeln!(out, "{NOTES_HEADING}");
    let _ = writeln!(out);
    if res.notes.is_empty() {
        let _ = writeln!(out, "Nothing unexpected was seen.");
    } else {
        for n in &res.notes {
            let _ = writeln!(out, "* {n}");
        }
    }
    out
}

/// Where the CPU went during the bursts: medians of each side's runs, and
/// the agent side's own share of the machine's busy time.
fn burst_cpu(out: &mut String, burst: &crate::figures::Burst) {
    let runs = &burst.cpu;
    let of = |side: Side, f: &dyn Fn(&crate::figures::BurstCpu) -> f64| {
        let values: Vec<f64> = runs
            .iter()
            .filter(|(s, _)| *s == side)
            .map(|(_, c)| f(c))
            .collect();
        Summary::of(&values).map(|s| s.median)
    };
    let cell = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.2} s"));
    let (Some(agent_busy), Some(docker_busy)) =
        (of(Side::Agent, &|c| c.busy), of(Side::Docker, &|c| c.busy))
    else {
        return;
    };
    let _ = writeln!(
        out,
        "CPU seconds during the bursts (medians of each side's runs): the machine's busy time on all cores \
         (every process and the kernel: dockerd, containerd, runc and the network set-up take nearly all \
         of it), and the processes of the comparison:"
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| side | machine busy | ecs-agent | ecs-local | the bench (client) |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|");
    for (side, name, busy) in [
        (Side::Agent, "agent", agent_busy),
        (Side::Docker, "Docker API", docker_busy),
    ] {
        let _ = writeln!(
            out,
            "| {name} | {:.1} s | {} | {} | {} |",
            busy,
            cell(of(side, &|c| c.agent)),
            cell(of(side, &|c| c.ecs_local)),
            cell(of(side, &|c| c.bench)),
        );
    }
    let _ = writeln!(out);
    // Every process of the comparison, per side: on the Docker side the
    // bench itself makes the Docker calls the agent makes on the other.
    let ours = |side: Side| of(side, &|c| c.agent + c.ecs_local + c.bench).unwrap_or(0.0);
    let extra = ours(Side::Agent) - ours(Side::Docker);
    let cores = Summary::of(&burst.compare.agent)
        .filter(|w| w.median > 0.0)
        .map(|w| agent_busy / (w.median / 1000.0));
    // How far apart one side's runs were, in percent of their median.
    let spread = [&burst.compare.agent, &burst.compare.docker]
        .into_iter()
        .filter_map(|v| Summary::of(v))
        .filter(|s| s.runs > 1)
        .map(|s| (s.max - s.min) / s.median * 100.0)
        .reduce(f64::max);
    let _ = writeln!(
        out,
        "The processes of the comparison took {:.2} s on the agent side and {:.2} s on the Docker side, \
         where the bench itself makes the Docker calls: the agent side's extra work is {extra:.2} s, \
         {:.1} % of its busy time.{}{}",
        ours(Side::Agent),
        ours(Side::Docker),
        extra / agent_busy * 100.0,
        cores.map_or(String::new(), |c| format!(
            " The machine was busy on {c:.1} cores on average, so that share is about what the agent \
             adds to the burst's length."
        )),
        spread.map_or(String::new(), |p| format!(
            " From one run to the next, a side's burst length varied by up to {p:.0} % of its median."
        ))
    );
    let _ = writeln!(out);
}

/// Where the run's time went, step by step, from the bench's own progress
/// lines; the building before it is not counted.
fn run_time_section(out: &mut String, r: &Report) {
    let steps = &r.results.steps;
    if steps.is_empty() {
        return;
    }
    let _ = writeln!(out, "## Run time");
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "The run took {:.1} minutes, the building before it not counted. Its steps:",
        r.duration_secs / 60.0
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "| step | began at | took |");
    let _ = writeln!(out, "|---|---:|---:|");
    for (i, (what, began)) in steps.iter().enumerate() {
        let ended = steps.get(i + 1).map_or(r.duration_secs, |(_, next)| *next);
        let _ = writeln!(
            out,
            "| {what} | {} | {:.0} s |",
            fmt_clock(*began),
            (ended - began).max(0.0)
        );
    }
    let _ = writeln!(out);
    if !r.settings.quick {
        let _ = writeln!(
            out,
            "A full run was meant to take at most 15 minutes. Here the amounts it measures cannot: the two \
             CPU windows of {} s and the {} launch/stop cycles, which go at Docker's own pace ({:.0} s), \
             leave too little for the bursts of 100 containers, also at Docker's pace, and the rest.",
            r.settings.cpu_window.as_secs(),
            r.results.memory.cycles,
            r.results.memory.cycles_seconds
        );
        let _ = writeln!(out);
    }
}

/// Seconds into the run as minutes and seconds.
fn fmt_clock(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    format!("{:02}:{:02}", s / 60, s % 60)
}

/// The agent's median over Docker's: CPU of the spinning task, memory of
/// the holding one.
fn metrics_ratios(res: &crate::figures::Results) -> (Option<f64>, Option<f64>) {
    let m = &res.metrics;
    (
        ratio(
            Summary::of(&m.burn.cpu_ours),
            Summary::of(&m.burn.cpu_docker),
        ),
        ratio(
            Summary::of(&m.hold.mem_ours),
            Summary::of(&m.hold.mem_docker),
        ),
    )
}

/// (agent + dockerd + containerd + shims with the collector) over (reader +
/// dockerd + containerd + shims with the stats streams), as rates.
fn metrics_cost(res: &crate::figures::Results) -> Option<(f64, f64)> {
    let (s, busy) = (res.metrics.streams?, res.cpu_busy?);
    let ours = cpu_percent(
        busy.agent + busy.dockerd + busy.containerd + busy.shims,
        &busy,
    );
    let w = &s.window;
    let theirs = cpu_percent(s.reader + w.dockerd + w.containerd + w.shims, w);
    Some((ours, theirs))
}

fn metrics_cost_share(res: &crate::figures::Results) -> Option<f64> {
    let (ours, theirs) = metrics_cost(res)?;
    (theirs > 0.0).then(|| ours / theirs)
}

/// Figure 8: the agent's container figures against Docker's, and the
/// collector's cost against one Docker stats stream per container.
fn metrics_section(out: &mut String, res: &crate::figures::Results) {
    let m = &res.metrics;
    let _ = writeln!(out, "## 8. Container metrics");
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "The agent reads its containers from the kernel (cgroups, `/proc/<pid>/net/dev`; docs/metrics.md). \
         Accuracy: a task spinning one shell and a task holding 24 MiB, each read {} times through the \
         agent's task metadata endpoint (`/v4/<id>/stats`) and, right after, through Docker's stats API; \
         CPU in Docker's CLI formula (percent of one core), memory as usage without the inactive page cache.",
        m.burn.cpu_ours.len()
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| figure | agent (median) | Docker (median) | agent / Docker |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|");
    for (label, ours, docker, unit) in [
        (
            "CPU of the spinning task",
            &m.burn.cpu_ours,
            &m.burn.cpu_docker,
            "%",
        ),
        (
            "memory of the holding task",
            &m.hold.mem_ours,
            &m.hold.mem_docker,
            " MiB",
        ),
    ] {
        let (o, d) = (Summary::of(ours), Summary::of(docker));
        let r = ratio(o, d);
        let _ = writeln!(
            out,
            "| {label} | {} | {} | {} |",
            o.map_or("–".into(), |s| format!("{:.1}{unit}", s.median)),
            d.map_or("–".into(), |s| format!("{:.1}{unit}", s.median)),
            r.map_or("–".into(), |r| format!("{r:.3}"))
        );
    }
    let (cpu_r, mem_r) = metrics_ratios(res);
    let accurate = cpu_r
        .zip(mem_r)
        .map(|(c, m)| (c - 1.0).abs() <= 0.05 && (m - 1.0).abs() <= 0.05);
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Target: within 5 % of Docker's figures: {}.",
        verdict(accurate)
    );
    let _ = writeln!(out);
    if let (Some(s), Some(busy), Some((ours, theirs))) =
        (m.streams, res.cpu_busy, metrics_cost(res))
    {
        let rate = |secs: f64, w: &CpuWindow| cpu_percent(secs, w);
        let w = &s.window;
        let _ = writeln!(
            out,
            "Cost, with the {} tasks of figure 5 running: the busy window of figure 5 (the agent's collector \
             reading every container each second) against a window right after it of {:.0} s in which the \
             bench also holds one Docker stats stream open per running container ({} streams) and decodes \
             every sample, as the Go agent does; the agent's own CPU is left out of that side, the reader's \
             counted instead.",
            BURST_TASKS, w.seconds, s.streams
        );
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "| side | agent or reader | dockerd | containerd | shims | together, % of a core |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
        let _ = writeln!(
            out,
            "| kernel collector | {:.3} % | {:.3} % | {:.3} % | {:.3} % | {ours:.3} % |",
            rate(busy.agent, &busy),
            rate(busy.dockerd, &busy),
            rate(busy.containerd, &busy),
            rate(busy.shims, &busy)
        );
        let _ = writeln!(
            out,
            "| Docker stats streams | {:.3} % | {:.3} % | {:.3} % | {:.3} % | {theirs:.3} % |",
            rate(s.reader, w),
            rate(w.dockerd, w),
            rate(w.containerd, w),
            rate(w.shims, w)
        );
        let _ = writeln!(out);
        let share = metrics_cost_share(res);
        let _ = writeln!(
            out,
            "Ours is {} of the streams' cost (target at most one fifth: {}).",
            share.map_or("–".into(), |s| format!("{s:.3}")),
            verdict(share.map(|s| s <= 0.2))
        );
        let _ = writeln!(out);
    }
    let _ = writeln!(
        out,
        "**For a user:** the utilisation ECS shows for a service (and scales it on) comes from these \
         figures; reading them from the kernel gives the same numbers as Docker for a fraction of the CPU \
         that Docker's stats streams take from a busy host."
    );
    let _ = writeln!(out);
}

fn scale_call_name(call: ScaleCall) -> &'static str {
    match call {
        ScaleCall::Describe => "DescribeTasks",
        ScaleCall::List => "ListTasks",
        ScaleCall::Run => "RunTask",
    }
}

fn scale_p99(f: &ScaleFigure, call: ScaleCall) -> Option<f64> {
    percentile(f.samples(call), 99.0)
}

/// VmHWM at the end is the peak of ecs-local's whole run.
fn scale_rss_ok(f: &ScaleFigure) -> Option<bool> {
    f.at_end
        .map(|r| r.hwm_kib.saturating_mul(1024) < SCALE_RSS_TARGET_BYTES)
}

fn scale_summary_rows(out: &mut String, res: &Results) {
    let f = res.scale.as_ref();
    for call in SCALE_CALLS {
        let p99 = f.and_then(|f| scale_p99(f, call));
        let _ = writeln!(
            out,
            "{SCALE_ROW} ({} tasks): {} p99 | {} | under {SCALE_P99_TARGET_MS:.0} ms | {} |",
            fmt_count(SCALE_TASKS),
            scale_call_name(call),
            p99.map_or("–".into(), fmt_ms),
            verdict(p99.map(|v| v < SCALE_P99_TARGET_MS))
        );
    }
    let _ = writeln!(
        out,
        "{SCALE_ROW} ({} tasks): ecs-local's peak RSS | {} | under {:.0} MB | {} |",
        fmt_count(SCALE_TASKS),
        f.and_then(|f| f.at_end)
            .map_or("–".into(), |r| fmt_mib(r.hwm_kib)),
        SCALE_RSS_TARGET_BYTES as f64 / 1e6,
        verdict(f.and_then(scale_rss_ok))
    );
}

/// "slowest", "2nd slowest", ...
fn nth_slowest(k: usize) -> String {
    match k {
        0 | 1 => "slowest".into(),
        2 => "2nd slowest".into(),
        3 => "3rd slowest".into(),
        k => format!("{k}th slowest"),
    }
}

/// Figure 9: ecs-local's API latency and memory with a large store.
/// `alone` when it ran by itself (`--only scale`), not in the run the rest
/// of the report comes from.
fn scale_section(out: &mut String, r: &Report, alone: bool) {
    let _ = writeln!(out, "{SCALE_HEADING}");
    let _ = writeln!(out);
    let Some(f) = r.results.scale.as_ref() else {
        let _ = writeln!(out, "Not measured in this run.");
        let _ = writeln!(out);
        return;
    };
    let n = f.describe_ms.len();
    let rank = (0.99 * n as f64 - 1e-9).ceil().max(1.0) as usize;
    let _ = writeln!(
        out,
        "ecs-local by itself, with no agent and no Docker: a plane of its own, run during figure 5's idle \
         window unless it ran alone. {} container instances registered through the \
         ECS API, each with a simulated agent on the ACS websocket that acks every payload and at once \
         reports its task RUNNING with SubmitTaskStateChange, as an agent would once the container \
         started (placement only uses instances whose agent is connected). The store is filled to {} \
         tasks by RunTask calls of count {SCALE_FILL_COUNT}, {SCALE_FILL_WORKERS} at a time, of a \
         one-container task definition, all of them RUNNING before anything is timed. Then {n} calls of \
         each kind below take turns, {} ms apart, each round starting with the next kind, after one \
         untimed round. Each call is one JSON 1.1 POST on a kept-alive loopback connection, without an \
         SDK (so the time is ecs-local's and loopback's), timed from its first byte sent to the \
         answer's last byte read. Percentiles are nearest-rank: the p99 of {n} calls is the {} of them.",
        f.instances,
        fmt_count(f.tasks_filled),
        SCALE_PAUSE.as_millis(),
        nth_slowest(n + 1 - rank.min(n))
    );
    let _ = writeln!(out);
    if alone {
        let tree = if r.checkout.dirty_files == 0 {
            "clean tree".to_string()
        } else {
            format!("dirty tree, {} file(s) changed", r.checkout.dirty_files)
        };
        let _ = writeln!(
            out,
            "This figure ran by itself (`ecs-bench --only scale`, {}) on {} (UTC) at commit `{}` ({tree}), \
             in {:.1} minutes on {} × {} with a load average of {} at its start; the rest of this \
             file comes from the run described at its top.",
            if r.settings.quick { "quick" } else { "full" },
            r.date,
            r.checkout.commit,
            r.duration_secs / 60.0,
            r.machine.cores,
            r.machine.cpu_model,
            r.machine.load_at_start
        );
        let _ = writeln!(out);
    }
    let _ = writeln!(
        out,
        "| call, with {} tasks in the store | runs | p50 | p99 | max | p99 target | |",
        fmt_count(f.tasks_filled)
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---|---|");
    for call in SCALE_CALLS {
        let samples = f.samples(call);
        let what = match call {
            ScaleCall::Describe => {
                format!("DescribeTasks of {SCALE_DESCRIBE_TASKS} random known tasks")
            }
            ScaleCall::List => {
                format!("ListTasks of cluster default, maxResults {SCALE_LIST_MAX}")
            }
            ScaleCall::Run => "RunTask, count 1 (a task more each time)".to_string(),
        };
        let cell = |p: f64| percentile(samples, p).map_or("–".into(), fmt_ms);
        let p99 = scale_p99(f, call);
        let _ = writeln!(
            out,
            "| {what} | {} | {} | {} | {} | under {SCALE_P99_TARGET_MS:.0} ms | {} |",
            samples.len(),
            cell(50.0),
            cell(99.0),
            cell(100.0),
            verdict(p99.map(|v| v < SCALE_P99_TARGET_MS))
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "ecs-local's memory (`VmRSS`, `VmHWM`, `RssAnon`, `RssFile` from `/proc/<pid>/status`):"
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| when | tasks in the store | RSS | peak RSS | anonymous | file-backed |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
    for (when, tasks, rss) in [
        (
            format!("filled, {} s later", r.settings.settle.as_secs()),
            f.tasks_filled,
            f.after_fill,
        ),
        (
            "after the timed calls".to_string(),
            f.tasks_at_end,
            f.at_end,
        ),
    ] {
        let (rss, hwm, anon, file) = rss_cells(rss);
        let _ = writeln!(
            out,
            "| {when} | {} | {rss} | {hwm} | {anon} | {file} |",
            fmt_count(tasks)
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Target: peak RSS under {:.0} MB ({:.1} MiB): {}.",
        SCALE_RSS_TARGET_BYTES as f64 / 1e6,
        SCALE_RSS_TARGET_BYTES as f64 / 1048576.0,
        verdict(scale_rss_ok(f))
    );
    let _ = writeln!(out);
    let tenth = f.fill_run_ms.len() / 10;
    let median_of = |v: &[f64]| Summary::of(v).map_or("–".into(), |s| fmt_ms(s.median));
    let cpu_share = if f.fill_secs > 0.0 {
        f.cpu_fill_secs / f.fill_secs * 100.0
    } else {
        0.0
    };
    let _ = writeln!(
        out,
        "Where the time went: registering the {} instances and connecting their agents took {:.1} s; \
         the fill {:.1} s from the first RunTask until all {} tasks were reported RUNNING, {:.1} s of \
         it the {} RunTask calls themselves. A RunTask of {SCALE_FILL_COUNT} during the fill took {} \
         (median of the first tenth of the calls, the store nearly empty) and {} (the last tenth, near \
         {} tasks); p99 over the fill {}. ecs-local used {:.1} CPU seconds in the fill ({cpu_share:.0} % \
         of a core) and {:.1} s over the {:.1} s of timed calls. Its database, `state.redb`, held {} at \
         the end, on {} (every store update is one durable transaction, its fsync within the call that \
         made it).",
        f.instances,
        f.connect_secs,
        f.fill_secs,
        fmt_count(f.tasks_filled),
        f.fill_calls_secs,
        fmt_count(f.fill_run_ms.len()),
        median_of(&f.fill_run_ms[..tenth]),
        median_of(&f.fill_run_ms[f.fill_run_ms.len() - tenth..]),
        fmt_count(f.tasks_filled),
        percentile(&f.fill_run_ms, 99.0).map_or("–".into(), fmt_ms),
        f.cpu_fill_secs,
        f.cpu_measure_secs,
        f.measure_secs,
        f.db_bytes
            .map_or("–".into(), |b| format!("{:.1} MB", b as f64 / 1e6)),
        f.data_fs
    );
    let _ = writeln!(out);
    if !f.notes.is_empty() {
        let _ = writeln!(out, "Seen during this figure:");
        let _ = writeln!(out);
        for n in &f.notes {
            let _ = writeln!(out, "* {n}");
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(
        out,
        "**For a user:** how soon ecs-local answers the calls a script or a console makes most once it \
         holds a large cluster ({SCALE_INSTANCES} hosts, {} tasks), and the memory it needs for \
         that.",
        fmt_count(SCALE_TASKS)
    );
    let _ = writeln!(out);
}

/// The report written before with this run's scale figure in place of
/// its own: the section and its summary rows replaced (or added), the rest
/// kept. A report without a summary is written anew.
pub fn splice_scale(earlier: Option<&str>, r: &Report) -> String {
    let Some(earlier) = earlier.filter(|t| t.lines().any(|l| l == "## Summary")) else {
        return render(r);
    };
    let mut rows = String::new();
    scale_summary_rows(&mut rows, &r.results);
    let mut section = String::new();
    scale_section(&mut section, r, true);
    splice(earlier, &rows, &section)
}

fn splice(earlier: &str, rows: &str, section: &str) -> String {
    let mut lines: Vec<&str> = earlier.lines().collect();
    match lines.iter().position(|l| *l == SCALE_HEADING) {
        Some(start) => {
            let end = lines[start + 1..]
                .iter()
                .position(|l| l.starts_with("## "))
                .map_or(lines.len(), |i| start + 1 + i);
            lines.splice(start..end, section.lines());
        }
        None => {
            let at = lines
                .iter()
                .position(|l| *l == NOTES_HEADING)
                .unwrap_or(lines.len());
            lines.splice(at..at, section.lines());
        }
    }
    lines.retain(|l| !l.starts_with(SCALE_ROW));
    if let Some(summary) = lines.iter().position(|l| *l == "## Summary") {
        let table = lines[summary..]
            .iter()
            .position(|l| l.starts_with('|'))
            .map(|i| summary + i);
        if let Some(table) = table {
            let end = lines[table..]
                .iter()
                .position(|l| !l.starts_with('|'))
                .map_or(lines.len(), |i| table + i);
            lines.splice(end..end, rows.lines());
        }
    }
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

/// Terminal lines for the scale figure.
pub fn scale_summary_lines(res: &Results) -> Vec<String> {
    let Some(f) = res.scale.as_ref() else {
        return Vec::new();
    };
    let p = |call| {
        let v = f.samples(call);
        format!(
            "{} p50 {} p99 {} max {}",
            scale_call_name(call),
            percentile(v, 50.0).map_or("–".into(), fmt_ms),
            percentile(v, 99.0).map_or("–".into(), fmt_ms),
            percentile(v, 100.0).map_or("–".into(), fmt_ms)
        )
    };
    vec![
        format!(
            "ecs-local at scale ({} tasks, {} instances): {}; {}; {}",
            fmt_count(f.tasks_filled),
            f.instances,
            p(ScaleCall::Describe),
            p(ScaleCall::List),
            p(ScaleCall::Run)
        ),
        format!(
            "ecs-local at scale: RSS {} after the fill, {} at the end, peak {}; fill {:.1} s",
            rss_cells(f.after_fill).0,
            rss_cells(f.at_end).0,
            rss_cells(f.at_end).1,
            f.fill_secs
        ),
    ]
}

/// Mean of the 10–20 % window, mean of the last 10 %, and the relative
/// change between them.
pub fn level_off(samples: &[f64]) -> Option<(f64, f64, f64)> {
    let early = window_mean(samples, 0.1, 0.2)?;
    let late = window_mean(samples, 0.9, 1.0)?;
    (early > 0.0).then(|| (early, late, late / early - 1.0))
}

/// A short text summary for the terminal.
pub fn summary_lines(r: &Report) -> Vec<String> {
    let res = &r.results;
    let line = |name: &str, c: &Compare| {
        let (a, d) = (Summary::of(&c.agent), Summary::of(&c.docker));
        format!(
            "{name}: agent {} / Docker {} (median) = {}",
            a.map_or("–".into(), |s| fmt_ms(s.median)),
            d.map_or("–".into(), |s| fmt_ms(s.median)),
            ratio(a, d).map_or("–".into(), |r| format!("{r:.2}×"))
        )
    };
    let mut lines = vec![
        line("launch", &res.launch.compare),
        line("burst", &res.burst.compare),
        line("stop", &res.stop),
    ];
    let rss = |r: Option<Rss>| rss_cells(r).0;
    lines.push(format!(
        "RSS: idle {}, 100 tasks {}, after cleanup {}, after cycles {}",
        rss(res.memory.idle),
        rss(res.memory.with_tasks),
        rss(res.memory.after_cleanup),
        rss(res.memory.after_cycles)
    ));
    if let Some(w) = res.cpu_idle {
        lines.push(format!(
            "agent CPU idle: {:.3} % of a core",
            cpu_percent(w.agent, &w)
        ));
    }
    let connected: Vec<f64> = res.startups.iter().map(|s| s.connected_ms).collect();
    if let Some(c) = Summary::of(&connected) {
        lines.push(format!(
            "start-up to connected: {} median",
            fmt_ms(c.median)
        ));
    }
    let (cpu_r, mem_r) = metrics_ratios(res);
    lines.push(format!(
        "metrics against Docker's: CPU {}, memory {}; cost against stats streams {}",
        cpu_r.map_or("–".into(), |r| format!("{r:.3}×")),
        mem_r.map_or("–".into(), |r| format!("{r:.3}×")),
        metrics_cost(res).map_or("–".into(), |(o, t)| format!(
            "{o:.2} % vs {t:.2} % of a core"
        ))
    ));
    lines.extend(scale_summary_lines(res));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ratio_at_its_targets_boundary_shows_which_side_it_is_on() {
        assert_eq!(ratio_text(1.0516, 1.05), "1.052×");
        assert_eq!(ratio_text(1.0484, 1.05), "1.048×");
        assert_eq!(ratio_text(1.05, 1.05), "1.05×");
        assert_eq!(ratio_text(1.0712, 1.03), "1.07×");
    }

    #[test]
    fn levelling_off() {
        let flat: Vec<f64> = (0..100)
            .map(|i| if i < 5 { 1000.0 } else { 5000.0 })
            .collect();
        let (early, late, change) = level_off(&flat).unwrap_or_default();
        assert_eq!((early, late, change), (5000.0, 5000.0, 0.0));
        let growing: Vec<f64> = (0..100).map(|i| 1000.0 + f64::from(i) * 10.0).collect();
        let (_, _, change) = level_off(&growing).unwrap_or_default();
        assert!(change > LEVEL_OFF_TOLERANCE);
        assert!(level_off(&[]).is_none());
    }

    #[test]
    fn the_scale_figure_replaces_its_own_section_and_rows() {
        let earlier = "# Benchmarks\n\n## Summary\n\n| figure | result | target | |\n|---|---:|---|---|\n\
                       | launch | 1.0× | x | met |\n\nA ratio is ...\n\n## 8. Container metrics\n\ntext\n\n\
                       ## Notes from this run\n\nNothing unexpected was seen.\n";
        let rows = "| ecs-local at scale: a | 1 ms | under 50 ms | met |\n";
        let section = "## 9. ecs-local at scale\n\nfirst\n\n";
        let once = splice(earlier, rows, section);
        assert_eq!(
            once,
            "# Benchmarks\n\n## Summary\n\n| figure | result | target | |\n|---|---:|---|---|\n\
             | launch | 1.0× | x | met |\n| ecs-local at scale: a | 1 ms | under 50 ms | met |\n\n\
             A ratio is ...\n\n## 8. Container metrics\n\ntext\n\n## 9. ecs-local at scale\n\nfirst\n\n\
             ## Notes from this run\n\nNothing unexpected was seen.\n"
        );
        let twice = splice(
            &once,
            "| ecs-local at scale: b | 2 ms | under 50 ms | met |\n",
            "## 9. ecs-local at scale\n\nsecond\n\n",
        );
        assert_eq!(
            twice,
            once.replace("scale: a | 1 ms", "scale: b | 2 ms")
                .replace("first", "second")
        );
    }

    #[test]
    fn each_step_of_the_run_lasts_until_the_next_or_the_end() {
        let r = Report {
            date: String::new(),
            duration_secs: 100.0,
            checkout: Checkout::default(),
            machine: Machine::default(),
            settings: Settings::new(true),
            results: crate::figures::Results {
                steps: vec![("first".into(), 0.0), ("second".into(), 62.4)],
                ..Default::default()
            },
        };
        let mut out = String::new();
        run_time_section(&mut out, &r);
        assert!(out.contains("| first | 00:00 | 62 s |"), "{out}");
        assert!(out.contains("| second | 01:02 | 38 s |"), "{out}");
    }

    #[test]
    fn nth_slowest_reads_well() {
        assert_eq!(nth_slowest(1), "slowest");
        assert_eq!(nth_slowest(3), "3rd slowest");
        assert_eq!(nth_slowest(4), "4th slowest");
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(fmt_ms(12.34), "12.3 ms");
        assert_eq!(fmt_ms(123.4), "123 ms");
        assert_eq!(fmt_ms(4321.0), "4.32 s");
        assert_eq!(fmt_mib(10240), "10.0 MiB");
        assert_eq!(fmt_count(10_000), "10,000");
        assert_eq!(fmt_count(1_234_567), "1,234,567");
        assert_eq!(fmt_count(100), "100");
        assert_eq!(fmt_count(0), "0");
    }
}
