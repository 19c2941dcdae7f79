//! The measurements. Every comparison runs its two sides in turns (agent,
//! Docker, agent, Docker, ...) in the same run; the agent runs from the
//! release build, with ecs-local, on this machine's Docker.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bollard::Docker;
use e2e::{Agent, AgentOptions, Plane};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::docker::{self, Spec};
use crate::ecs::Ecs;
use crate::logs::{self, LaunchTimings, LogTail};
use crate::procfs::{self, Rss};
use crate::stats::{interleaved, Side};

mod metrics;
mod scale;
pub use metrics::MetricsFigure;
pub use scale::{
    scale, ScaleCall, ScaleFigure, SCALE_CALLS, SCALE_DESCRIBE_TASKS, SCALE_FILL_COUNT,
    SCALE_FILL_WORKERS, SCALE_INSTANCES, SCALE_LIST_MAX, SCALE_PAUSE, SCALE_TASKS,
};

/// How much of each figure to run.
#[derive(Debug, Clone)]
pub struct Settings {
    pub quick: bool,
    /// Fresh starts (new data directory, new registration).
    pub startups: usize,
    /// Restarts with `restart_tasks` tasks in the checkpoint.
    pub restarts: usize,
    /// 100 in a full run; 10 in a quick one, whose budget the launch of
    /// 100 more containers at Docker's pace would take a sixth of.
    pub restart_tasks: usize,
    /// Pause before a memory or CPU reading, for the agent to settle.
    pub settle: Duration,
    pub cpu_window: Duration,
    /// The CPU window with one Docker stats stream per container (figure 8).
    pub streams_window: Duration,
    pub launch_pairs: usize,
    pub burst_pairs: usize,
    pub cycles: usize,
    /// Pause between two timed runs.
    pub pause: Duration,
    /// Timed calls of each kind against ecs-local at scale.
    pub scale_samples: usize,
}

impl Settings {
    pub fn new(quick: bool) -> Settings {
        if quick {
            Settings {
                quick,
                startups: 3,
                restarts: 1,
                restart_tasks: 10,
                settle: Duration::from_secs(3),
                cpu_window: Duration::from_secs(5),
                streams_window: Duration::from_secs(5),
                launch_pairs: 10,
                burst_pairs: 1,
                cycles: 20,
                pause: Duration::from_millis(100),
                scale_samples: 30,
            }
        } else {
            Settings {
                quick,
                // The two 5-minute CPU windows and the 1,000 cycles at
                // Docker's own pace take most of the run (docs/benchmarks.md
                // says how long each part takes).
                startups: 5,
                restarts: 2,
                restart_tasks: BURST_TASKS,
                settle: Duration::from_secs(5),
                cpu_window: Duration::from_secs(300),
                // The streams' cost is steady: half a minute of 100 streams
                // is 3,000 samples.
                streams_window: Duration::from_secs(30),
                launch_pairs: 24,
                burst_pairs: 2,
                cycles: 1000,
                pause: Duration::from_millis(300),
                scale_samples: 200,
            }
        }
    }
}

/// Tasks per burst: `BURST_CALLS` RunTask calls of `BURST_COUNT`.
pub const BURST_CALLS: usize = 10;
pub const BURST_COUNT: i32 = 10;
pub const BURST_TASKS: usize = BURST_CALLS * BURST_COUNT as usize;
/// Docker calls in flight at once on the Docker side of the burst.
pub const BURST_DOCKER_CONCURRENCY: usize = 10;
/// Launch/stop cycles go in RunTask batches of this many ...
pub const CYCLE_BATCH: i32 = 10;
/// ... with this many batches in flight.
pub const CYCLE_WORKERS: usize = 4;
/// How often DescribeTasks is polled while a single launch or stop is timed.
/// Half of it, on average, is added to each timed ECS figure; 5 ms keeps
/// that small at a cost of about 200 DescribeTasks a second on loopback.
pub const FAST_POLL: Duration = Duration::from_millis(5);
/// How often while 100 tasks are awaited (one DescribeTasks of 100).
pub const BURST_POLL: Duration = Duration::from_millis(25);
/// How often RSS is read during the cycles.
pub const RSS_EVERY: Duration = Duration::from_millis(200);
/// The agent's stop timeout and `docker stop -t`, the same on both sides.
pub const STOP_GRACE_SECS: i32 = 10;
/// `ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION`.
pub const CLEANUP_WAIT: &str = "1s";
pub const TASK_MEMORY_MIB: i32 = 32;
/// The wait before memory is read after a cleanup: the agent hands freed
/// heap back 5 s after a burst of cleanups (`ecs_agent::memory::SETTLE`).
const AFTER_CLEANUP: Duration = Duration::from_secs(7);
const WAIT: Duration = Duration::from_secs(180);

/// The command of every container: a shell that exits at once on SIGTERM
/// (busybox `sleep` as PID 1 would ignore it), waiting on a background
/// sleep so the trap runs without delay.
pub fn command() -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        "trap 'exit 0' TERM; sleep 86400 & wait".into(),
    ]
}

/// Two sides of one comparison, in milliseconds.
#[derive(Debug, Clone, Default)]
pub struct Compare {
    pub agent: Vec<f64>,
    pub docker: Vec<f64>,
    pub first: Option<Side>,
}

impl Compare {
    fn push(&mut self, side: Side, ms: f64) {
        self.first.get_or_insert(side);
        match side {
            Side::Agent => self.agent.push(ms),
            Side::Docker => self.docker.push(ms),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Startup {
    pub registered_ms: Option<f64>,
    pub engine_ms: Option<f64>,
    pub connected_ms: f64,
    /// Restarts only: until the introspection endpoint lists every task
    /// RUNNING.
    pub all_listed_ms: Option<f64>,
}

/// One timed launch through the agent.
#[derive(Debug, Clone)]
pub struct AgentLaunch {
    /// RunTask → RUNNING in DescribeTasks.
    pub end_to_end_ms: f64,
    /// The agent's timings line for the task.
    pub timings: Option<LaunchTimings>,
    /// From the RUNNING report queued to SubmitTaskStateChange answered, as
    /// seen in the log (within the tail's polling step).
    pub submit_ms: Option<f64>,
}

#[derive(Debug, Clone, Default)]
pub struct Launch {
    pub compare: Compare,
    pub agent: Vec<AgentLaunch>,
}

#[derive(Debug, Clone, Default)]
pub struct Burst {
    pub compare: Compare,
    /// total_ms of every task's timings line in the agent's bursts.
    pub task_totals_ms: Vec<f64>,
    /// Where the CPU went in each burst, both sides.
    pub cpu: Vec<(Side, BurstCpu)>,
}

/// CPU seconds over one burst: the whole machine's busy time (all cores,
/// every process and the kernel) and the share of the processes only one
/// side needs.
#[derive(Debug, Clone, Copy, Default)]
pub struct BurstCpu {
    pub busy: f64,
    pub agent: f64,
    pub ecs_local: f64,
    /// The bench itself: the Docker side's client, or the ECS side's.
    pub bench: f64,
}

impl BurstCpu {
    fn read(agent: u32, ecs_local: u32) -> Result<BurstCpu> {
        Ok(BurstCpu {
            busy: procfs::system_busy_seconds()?,
            agent: procfs::cpu_seconds(agent)?,
            ecs_local: procfs::cpu_seconds(ecs_local)?,
            bench: procfs::cpu_seconds(std::process::id())?,
        })
    }

    fn since(self, before: BurstCpu) -> BurstCpu {
        BurstCpu {
            busy: self.busy - before.busy,
            agent: self.agent - before.agent,
            ecs_local: self.ecs_local - before.ecs_local,
            bench: self.bench - before.bench,
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct CpuWindow {
    pub seconds: f64,
    pub agent: f64,
    pub dockerd: f64,
    pub containerd: f64,
    pub shims: f64,
    pub shim_count: usize,
}

#[derive(Debug, Clone, Default)]
pub struct Memory {
    pub idle: Option<Rss>,
    pub with_tasks: Option<Rss>,
    pub after_cleanup: Option<Rss>,
    pub cycles: usize,
    pub cycles_seconds: f64,
    /// RSS in KiB every [`RSS_EVERY`] during the cycles.
    pub cycle_samples: Vec<f64>,
    pub after_cycles: Option<Rss>,
}

#[derive(Debug, Clone, Default)]
pub struct Size {
    pub static_bytes: Option<u64>,
    pub static_stripped: Option<u64>,
    pub dynamic_bytes: Option<u64>,
    pub dynamic_stripped: Option<u64>,
    /// `cargo tree -p ecs-agent -e normal --prefix none | sort -u | wc -l`.
    pub dependency_lines: Option<usize>,
    /// The same without the `(*)` repeats: distinct packages.
    pub dependency_packages: Option<usize>,
}

#[derive(Debug, Clone, Default)]
pub struct Results {
    pub size: Size,
    pub round_trip_ms: Vec<f64>,
    pub startups: Vec<Startup>,
    pub restarts: Vec<Startup>,
    pub launch: Launch,
    pub stop: Compare,
    pub burst: Burst,
    pub memory: Memory,
    pub cpu_idle: Option<CpuWindow>,
    pub cpu_busy: Option<CpuWindow>,
    pub metrics: MetricsFigure,
    pub scale: Option<ScaleFigure>,
    /// Whatever looked wrong during the run.
    pub notes: Vec<String>,
    /// Each step of the run and when it began, seconds into the run.
    pub steps: Vec<(String, f64)>,
}

/// The Docker side's `work`, done while the bench polls ecs-local as the
/// ECS side's wait does ([`Ecs::probe`]), so that both sides of a
/// comparison share the machine with the same measuring load.
async fn probed<T>(
    ecs: &Ecs,
    known: &[String],
    awaited: impl Fn() -> usize,
    every: Duration,
    work: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    tokio::select! {
        done = work => done,
        failed = ecs.probe(known, awaited, every) => match failed? {},
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A progress line with the time since the run began.
pub fn step_at(started: Instant, what: &str) {
    let s = started.elapsed().as_secs();
    eprintln!("[{:02}:{:02}] {what}", s / 60, s % 60);
}

/// Kills ecs-local when dropped, without the test harness's clean-up
/// through the AWS CLI: the bench removes its containers by label itself.
pub struct PlaneGuard(Option<Plane>);

impl PlaneGuard {
    pub fn plane(&self) -> Result<&Plane> {
        self.0.as_ref().ok_or_else(|| anyhow!("ecs-local is gone"))
    }
}

impl Drop for PlaneGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            p.kill();
        }
    }
}

pub struct Bench {
    pub settings: Settings,
    pub docker: Docker,
    pub spec: Spec,
    pub run_id: String,
    pub cluster: String,
    pub ecs: Ecs,
    pub task_definition: String,
    pub results: Results,
    started: Instant,
    tmp: PathBuf,
    agent: Option<Agent>,
    agent_options: AgentOptions,
    /// Tasks the launch figure ran, for the probe on the Docker side of
    /// the burst ([`Ecs::probe`]).
    probe_tasks: Vec<String>,
    /// What [`Bench::step`] announced, and when.
    steps: Mutex<Vec<(String, f64)>>,
    // Last, so it outlives the agent when dropped.
    plane: PlaneGuard,
}

impl Bench {
    pub async fn new(
        settings: Settings,
        docker: Docker,
        run_id: &str,
        tmp: &Path,
        started: Instant,
    ) -> Result<Bench> {
        let plane = {
            let dir = tmp.join("plane");
            tokio::task::spawn_blocking(move || Plane::start(&dir)).await??
        };
        let cluster = format!("ecs-bench-{run_id}");
        let ecs = Ecs {
            client: plane.sdk(),
            cluster: cluster.clone(),
        };
        ecs.create_cluster().await?;
        let spec = Spec {
            image: e2e::TEST_IMAGE.to_string(),
            command: command(),
            memory_mib: i64::from(TASK_MEMORY_MIB),
            run_id: run_id.to_string(),
        };
        let task_definition = ecs
            .register("ecs-bench", &spec.image, &spec.command, TASK_MEMORY_MIB)
            .await?;
        let agent_options = agent_options(&cluster, &tmp.join("agent"));
        Ok(Bench {
            settings,
            docker,
            spec,
            run_id: run_id.to_string(),
            cluster,
            ecs,
            task_definition,
            results: Results::default(),
            started,
            tmp: tmp.to_path_buf(),
            agent: None,
            agent_options,
            probe_tasks: Vec::new(),
            steps: Mutex::new(Vec::new()),
            plane: PlaneGuard(Some(plane)),
        })
    }

    /// Announces a step of the run and notes when it began.
    pub fn step(&self, what: &str) {
        step_at(self.started, what);
        self.steps
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((what.to_string(), self.started.elapsed().as_secs_f64()));
    }

    /// The results, with the steps announced so far.
    pub fn take_results(&mut self) -> Results {
        let mut results = std::mem::take(&mut self.results);
        results.steps =
            std::mem::take(&mut *self.steps.lock().unwrap_or_else(PoisonError::into_inner));
        results
    }

    fn note(&mut self, note: String) {
        eprintln!("note: {note}");
        self.results.notes.push(note);
    }

    fn agent(&self) -> Result<&Agent> {
        self.agent
            .as_ref()
            .ok_or_else(|| anyhow!("no agent running"))
    }

    fn agent_pid(&self) -> Result<u32> {
        Ok(self.agent()?.pid())
    }

    /// The agent's log from the start of this data directory.
    fn agent_log_lines(&self) -> Vec<Value> {
        self.agent
            .as_ref()
            .map(|a| logs::parse_lines(&a.log_text()))
            .unwrap_or_default()
    }

    /// Starts an agent and times its start-up from the log.
    async fn start_agent(&self, options: &AgentOptions) -> Result<(Agent, Startup)> {
        let log = options.data_dir.join("ecs-agent.log");
        let offset = std::fs::metadata(&log).map_or(0, |m| m.len());
        let tail = LogTail::start(&log, offset, Duration::from_millis(1));
        let plane_url = self.plane.plane()?.url();
        let t0 = Instant::now();
        let agent = Agent::start_at(&plane_url, options)?;
        let since = |s: logs::Seen| ms(s.at.saturating_duration_since(t0));
        let connected = tail
            .wait("connected to ACS", Duration::from_secs(60), |l| {
                logs::msg(l) == "connected to ACS"
            })
            .await
            .with_context(|| agent_log_tail(&agent))?;
        Ok((
            agent,
            Startup {
                registered_ms: tail
                    .first(|l| logs::msg(l) == "Instance registration completed successfully")
                    .map(since),
                engine_ms: tail
                    .first(|l| logs::msg(l) == "Beginning Polling for updates")
                    .map(since),
                connected_ms: since(connected),
                all_listed_ms: None,
            },
        ))
    }

    /// The stripped sizes and the dependency count.
    pub fn size(&mut self, root: &Path, dynamic: &Path, static_target: &str) -> Result<()> {
        let static_path = static_agent_path(root, static_target);
        let strip_dir = self.tmp.join("strip");
        std::fs::create_dir_all(&strip_dir)?;
        let stripped = |from: &Path, name: &str| -> Result<u64> {
            let to = strip_dir.join(name);
            let status = std::process::Command::new("strip")
                .arg("-o")
                .arg(&to)
                .arg(from)
                .status()
                .context("running strip")?;
            if !status.success() {
                bail!("strip failed: {status}");
            }
            Ok(std::fs::metadata(&to)?.len())
        };
        let size = &mut self.results.size;
        size.dynamic_bytes = Some(std::fs::metadata(dynamic)?.len());
        size.dynamic_stripped = Some(stripped(dynamic, "dynamic")?);
        if static_path.exists() {
            size.static_bytes = Some(std::fs::metadata(&static_path)?.len());
            size.static_stripped = Some(stripped(&static_path, "static")?);
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = std::process::Command::new(cargo)
            .args([
                "tree",
                "-p",
                "ecs-agent",
                "-e",
                "normal",
                "--prefix",
                "none",
            ])
            .current_dir(root)
            .output()
            .context("running cargo tree")?;
        if out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout);
            let lines: HashSet<&str> = text.lines().collect();
            let packages: HashSet<&str> = text
                .lines()
                .map(|l| l.trim_end_matches(" (*)"))
                .filter(|l| !l.trim().is_empty())
                .collect();
            size.dependency_lines = Some(lines.len());
            size.dependency_packages = Some(packages.len());
        }
        if self.results.size.static_bytes.is_none() {
            self.note("the static binary was not there (run `make static` first)".into());
        }
        Ok(())
    }

    /// Checks that the containers' command ends at once on SIGTERM.
    pub async fn check_command(&self) -> Result<()> {
        let name = format!("ecs-bench-{}-check", self.run_id);
        let id = docker::create_start(&self.docker, &self.spec, &name).await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let start = Instant::now();
        let stopped = docker::stop(&self.docker, &id, STOP_GRACE_SECS).await;
        let took = start.elapsed();
        let code = self
            .docker
            .inspect_container(
                &id,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
            .ok()
            .and_then(|c| c.state?.exit_code);
        docker::remove(&self.docker, &id).await?;
        stopped?;
        if took > Duration::from_secs(2) || code != Some(0) {
            bail!("the container command does not exit on SIGTERM: stop took {took:?}, exit code {code:?}");
        }
        Ok(())
    }

    /// Start-up: fresh agents on new data directories, each registering
    /// anew in a cluster of its own; the last one stays as the agent.
    pub async fn startups(&mut self) -> Result<()> {
        for _ in 0..5 {
            let rtt = self.ecs.round_trip().await?;
            self.results.round_trip_ms.push(ms(rtt));
        }
        for _ in 0..20 {
            let rtt = self.ecs.round_trip().await?;
            self.results.round_trip_ms.push(ms(rtt));
        }
        self.results.round_trip_ms.drain(..5);
        for i in 0..self.settings.startups {
            let last = i + 1 == self.settings.startups;
            let options = if last {
                self.agent_options.clone()
            } else {
                let cluster = format!("{}-start{i}", self.cluster);
                self.ecs.for_cluster(&cluster).create_cluster().await?;
                agent_options(&cluster, &self.tmp.join(format!("start{i}")))
            };
            let (agent, startup) = self.start_agent(&options).await?;
            self.results.startups.push(startup);
            if last {
                self.agent = Some(agent);
            } else {
                let code =
                    tokio::task::spawn_blocking(move || agent.terminate(Duration::from_secs(30)))
                        .await??;
                if code != Some(0) {
                    self.note(format!(
                        "an agent stopped with SIGTERM exited with {code:?}"
                    ));
                }
                let _ = std::fs::remove_dir_all(&options.data_dir);
            }
        }
        Ok(())
    }

    pub fn read_rss(&self) -> Result<Rss> {
        procfs::rss(self.agent_pid()?)
    }

    pub async fn cpu_window(&self) -> Result<CpuWindow> {
        self.cpu_window_for(self.settings.cpu_window).await
    }

    /// CPU seconds of the agent, dockerd, containerd and the shims over
    /// `length`, while the bench waits.
    pub async fn cpu_window_for(&self, length: Duration) -> Result<CpuWindow> {
        let (window, ()) = self.cpu_window_over(tokio::time::sleep(length)).await?;
        Ok(window)
    }

    /// The idle window of `cpu_window` or longer: it ends when `alongside`
    /// is done too. What runs alongside must touch neither the agent nor
    /// Docker; it only shares the machine's cores, and a process's CPU
    /// seconds count its own work whoever else runs.
    pub async fn cpu_window_alongside<T>(
        &self,
        alongside: impl std::future::Future<Output = Result<T>>,
    ) -> Result<(CpuWindow, T)> {
        let both = async {
            let ((), out) = tokio::join!(tokio::time::sleep(self.settings.cpu_window), alongside);
            out
        };
        let (window, out) = self.cpu_window_over(both).await?;
        Ok((window, out?))
    }

    /// CPU seconds of the agent, dockerd, containerd and the shims while
    /// `wait` runs.
    async fn cpu_window_over<T>(
        &self,
        wait: impl std::future::Future<Output = T>,
    ) -> Result<(CpuWindow, T)> {
        let agent = self.agent_pid()?;
        let dockerd = procfs::pids_named(|c| c == "dockerd");
        let containerd = procfs::pids_named(|c| c == "containerd");
        let shims = procfs::pids_named(|c| c.starts_with("containerd-shim"));
        let before = [
            procfs::cpu_seconds(agent)?,
            procfs::cpu_seconds_of(&dockerd),
            procfs::cpu_seconds_of(&containerd),
            procfs::cpu_seconds_of(&shims),
        ];
        let t0 = Instant::now();
        let out = wait.await;
        let after = [
            procfs::cpu_seconds(agent)?,
            procfs::cpu_seconds_of(&dockerd),
            procfs::cpu_seconds_of(&containerd),
            procfs::cpu_seconds_of(&shims),
        ];
        if dockerd.is_empty() || containerd.is_empty() {
            bail!("dockerd or containerd not found in /proc");
        }
        let window = CpuWindow {
            seconds: t0.elapsed().as_secs_f64(),
            agent: after[0] - before[0],
            dockerd: after[1] - before[1],
            containerd: after[2] - before[2],
            shims: after[3] - before[3],
            shim_count: shims.len(),
        };
        Ok((window, out))
    }

    /// Launch and stop, one task at a time against one container at a time;
    /// the launched tasks and containers are the ones the stop figure stops.
    pub async fn launch_and_stop(&mut self) -> Result<()> {
        let pairs = self.settings.launch_pairs;
        let log = self.agent()?.log.clone();
        let offset = std::fs::metadata(&log).map_or(0, |m| m.len());
        let tail = LogTail::start(&log, offset, Duration::from_millis(2));
        let mut tasks = Vec::new();
        let mut containers = Vec::new();
        // One pair first, not counted: the first launch of each side pays
        // for connections and caches.
        let warm_up = [Side::Agent, Side::Docker];
        let order: Vec<Side> = warm_up
            .into_iter()
            .chain(interleaved(pairs, Side::Agent))
            .collect();
        for (i, side) in order.iter().enumerate() {
            let t0 = Instant::now();
            match side {
                Side::Agent => {
                    let arn = self
                        .ecs
                        .run(&self.task_definition, 1)
                        .await?
                        .pop()
                        .ok_or_else(|| anyhow!("no task"))?;
                    self.ecs
                        .wait_all(std::slice::from_ref(&arn), "RUNNING", FAST_POLL, WAIT)
                        .await?;
                    tasks.push(arn);
                }
                Side::Docker => {
                    let name = format!("ecs-bench-{}-launch{i}", self.run_id);
                    // The agent's task launched just before: the same
                    // DescribeTasks as the agent side's polling.
                    let known = &tasks[tasks.len().saturating_sub(1)..];
                    let work = docker::create_start(&self.docker, &self.spec, &name);
                    containers.push(probed(&self.ecs, known, || 1, FAST_POLL, work).await?);
                }
            }
            if i >= warm_up.len() {
                self.results.launch.compare.push(*side, ms(t0.elapsed()));
            }
            tokio::time::sleep(self.settings.pause).await;
        }
        // The agent's own account of the timed launches.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let timed = self.results.launch.compare.agent.clone();
        for (arn, end_to_end_ms) in tasks.iter().skip(1).zip(timed) {
            let timings = tail.first(|l| {
                logs::msg(l) == logs::TIMINGS_MSG && logs::field_str(l, "task") == Some(arn)
            });
            let reported = tail.first(|l| logs::is_reported(l, arn, "RUNNING"));
            let submit_ms = match (&timings, reported) {
                (Some(t), Some(r)) => Some(ms(r.at.saturating_duration_since(t.at))),
                _ => None,
            };
            self.results.launch.agent.push(AgentLaunch {
                end_to_end_ms,
                timings: timings.and_then(|s| LaunchTimings::from_line(&s.line)),
                submit_ms,
            });
        }
        drop(tail);
        if self
            .results
            .launch
            .agent
            .iter()
            .all(|a| a.timings.is_none())
        {
            self.note(format!(
                "the agent logged no `{}` line: its launch phases are not shown",
                logs::TIMINGS_MSG
            ));
        }

        self.step("stop: StopTask → STOPPED against docker stop, interleaved");
        let stop_one = |bench: &Bench, side: Side, i: usize| {
            let arn = tasks[i].clone();
            let id = containers[i].clone();
            let ecs = bench.ecs.clone();
            let docker = bench.docker.clone();
            async move {
                let t0 = Instant::now();
                match side {
                    Side::Agent => {
                        ecs.stop(&arn).await?;
                        ecs.wait_all(&[arn], "STOPPED", FAST_POLL, WAIT).await?;
                    }
                    Side::Docker => {
                        let work = docker::stop(&docker, &id, STOP_GRACE_SECS);
                        probed(&ecs, &[arn], || 1, FAST_POLL, work).await?;
                    }
                }
                anyhow::Ok(ms(t0.elapsed()))
            }
        };
        // The warm-up pair first, not counted.
        stop_one(self, Side::Agent, 0).await?;
        stop_one(self, Side::Docker, 0).await?;
        let mut next = HashMap::from([(Side::Agent, 1), (Side::Docker, 1)]);
        for side in interleaved(pairs, Side::Agent) {
            let i = next[&side];
            next.insert(side, i + 1);
            let took = stop_one(self, side, i).await?;
            self.results.stop.push(side, took);
            tokio::time::sleep(self.settings.pause).await;
        }
        docker::remove_all(&self.docker, &containers, 10).await?;
        self.probe_tasks = tasks;
        self.wait_cleaned_up().await
    }

    /// Waits until the agent has removed every container of its stopped
    /// tasks (the cleanup wait is short in this run).
    async fn wait_cleaned_up(&self) -> Result<()> {
        let start = Instant::now();
        loop {
            let (all, _) = docker::agent_containers(&self.docker, &self.cluster).await?;
            if all == 0 {
                return Ok(());
            }
            if start.elapsed() > WAIT {
                bail!("the agent still has {all} containers {WAIT:?} after its tasks stopped");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn launch_burst(&self) -> Result<Vec<String>> {
        self.launch_at_once(BURST_TASKS).await
    }

    /// `tasks` tasks by concurrent RunTask calls of [`BURST_COUNT`] (the
    /// last one of what is left), until all are RUNNING.
    async fn launch_at_once(&self, tasks: usize) -> Result<Vec<String>> {
        let count = BURST_COUNT as usize;
        let arns = self
            .ecs
            .run_concurrently(&self.task_definition, tasks.div_ceil(count), |call| {
                (tasks - call * count).min(count) as i32
            })
            .await?;
        self.ecs
            .wait_all(&arns, "RUNNING", BURST_POLL, WAIT)
            .await?;
        Ok(arns)
    }

    async fn stop_tasks(&self, arns: &[String]) -> Result<()> {
        let t0 = Instant::now();
        self.ecs.stop_all(arns, 10).await?;
        let asked = t0.elapsed();
        self.ecs
            .wait_all(arns, "STOPPED", Duration::from_millis(100), WAIT)
            .await?;
        let stopped = t0.elapsed();
        self.wait_cleaned_up().await?;
        eprintln!(
            "        {} tasks: StopTask calls {asked:.1?}, STOPPED at {stopped:.1?}, cleaned up at {:.1?}",
            arns.len(),
            t0.elapsed()
        );
        Ok(())
    }

    /// Bursts of 100, Docker first so that the last burst is the agent's:
    /// its 100 tasks stay for the memory and CPU figures. Returns them.
    pub async fn burst(&mut self) -> Result<Vec<String>> {
        let order = interleaved(self.settings.burst_pairs, Side::Docker);
        let mut kept = Vec::new();
        let mut launched = HashSet::new();
        let pids = (self.agent_pid()?, self.plane.plane()?.pid());
        for (i, side) in order.iter().enumerate() {
            let last = i + 1 == order.len();
            let cpu = BurstCpu::read(pids.0, pids.1)?;
            let t0 = Instant::now();
            match side {
                Side::Docker => {
                    let ids = self.docker_burst(i).await?;
                    self.results.burst.compare.push(*side, ms(t0.elapsed()));
                    let cpu = BurstCpu::read(pids.0, pids.1)?.since(cpu);
                    self.results.burst.cpu.push((*side, cpu));
                    docker::remove_all(&self.docker, &ids, 10).await?;
                }
                Side::Agent => {
                    let arns = self.launch_burst().await?;
                    self.results.burst.compare.push(*side, ms(t0.elapsed()));
                    let cpu = BurstCpu::read(pids.0, pids.1)?.since(cpu);
                    self.results.burst.cpu.push((*side, cpu));
                    launched.extend(arns.iter().cloned());
                    if last {
                        kept = arns;
                    } else {
                        self.stop_tasks(&arns).await?;
                    }
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        self.results.burst.task_totals_ms = self.task_totals(&launched);
        Ok(kept)
    }

    /// 100 create + start, [`BURST_DOCKER_CONCURRENCY`] in flight at a time,
    /// while the bench probes ecs-local as for the agent's burst: for as
    /// many tasks as containers are not started yet.
    async fn docker_burst(&self, round: usize) -> Result<Vec<String>> {
        use futures_util::StreamExt;
        let not_started = AtomicUsize::new(BURST_TASKS);
        let work = async {
            let results: Vec<Result<String>> = futures_util::stream::iter(0..BURST_TASKS)
                .map(|n| {
                    let name = format!("ecs-bench-{}-burst{round}-{n}", self.run_id);
                    let (docker, spec) = (self.docker.clone(), self.spec.clone());
                    let not_started = &not_started;
                    async move {
                        let created = docker::create_start(&docker, &spec, &name).await;
                        not_started.fetch_sub(1, Ordering::Relaxed);
                        created
                    }
                })
                .buffer_unordered(BURST_DOCKER_CONCURRENCY)
                .collect()
                .await;
            results.into_iter().collect()
        };
        let awaited = || not_started.load(Ordering::Relaxed);
        probed(&self.ecs, &self.probe_tasks, awaited, BURST_POLL, work).await
    }

    /// total_ms of the agent's timings lines for these tasks.
    pub fn task_totals(&self, arns: &HashSet<String>) -> Vec<f64> {
        self.agent_log_lines()
            .iter()
            .filter_map(LaunchTimings::from_line)
            .filter(|t| arns.contains(&t.task))
            .filter_map(|t| t.total_ms.map(|v| v as f64))
            .collect()
    }

    /// With 100 tasks running: memory, then CPU; then they stop and are
    /// cleaned up, and memory is read again.
    pub async fn with_tasks(&mut self, arns: &[String]) -> Result<()> {
        tokio::time::sleep(self.settings.settle).await;
        self.results.memory.with_tasks = Some(self.read_rss()?);
        self.step(&format!(
            "CPU with {} tasks running, {:?}",
            arns.len(),
            self.settings.cpu_window
        ));
        self.results.cpu_busy = Some(self.cpu_window().await?);
        self.step("the same with one Docker stats stream per container");
        self.stats_streams_window().await?;
        self.step("stopping the 100 tasks; waiting for their cleanup");
        self.stop_tasks(arns).await?;
        tokio::time::sleep(self.settings.settle.max(AFTER_CLEANUP)).await;
        self.results.memory.after_cleanup = Some(self.read_rss()?);
        Ok(())
    }

    /// Launch/stop cycles in batches, with RSS read throughout.
    pub async fn cycles(&mut self) -> Result<()> {
        let pid = self.agent_pid()?;
        let samples = Arc::new(Mutex::new(Vec::new()));
        let done = Arc::new(AtomicBool::new(false));
        let sampler = {
            let (samples, done) = (samples.clone(), done.clone());
            tokio::spawn(async move {
                while !done.load(Ordering::Relaxed) {
                    if let Ok(r) = procfs::rss(pid) {
                        samples
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push(r.rss_kib as f64);
                    }
                    tokio::time::sleep(RSS_EVERY).await;
                }
            })
        };
        let batches = self.settings.cycles.div_ceil(CYCLE_BATCH as usize);
        let next = Arc::new(AtomicUsize::new(0));
        let t0 = Instant::now();
        let workers = (0..CYCLE_WORKERS).map(|_| {
            let (ecs, td, next) = (self.ecs.clone(), self.task_definition.clone(), next.clone());
            async move {
                while next.fetch_add(1, Ordering::Relaxed) < batches {
                    let arns = ecs.run(&td, CYCLE_BATCH).await?;
                    ecs.wait_all(&arns, "RUNNING", Duration::from_millis(50), WAIT)
                        .await?;
                    ecs.stop_all(&arns, 10).await?;
                    ecs.wait_all(&arns, "STOPPED", Duration::from_millis(50), WAIT)
                        .await?;
                }
                anyhow::Ok(())
            }
        });
        let results = futures_util::future::join_all(workers).await;
        let elapsed = t0.elapsed();
        done.store(true, Ordering::Relaxed);
        let _ = sampler.await;
        for r in results {
            r?;
        }
        self.results.memory.cycles = batches * CYCLE_BATCH as usize;
        self.results.memory.cycles_seconds = elapsed.as_secs_f64();
        self.results.memory.cycle_samples =
            std::mem::take(&mut *samples.lock().unwrap_or_else(PoisonError::into_inner));
        self.wait_cleaned_up().await?;
        tokio::time::sleep(self.settings.settle.max(AFTER_CLEANUP)).await;
        self.results.memory.after_cycles = Some(self.read_rss()?);
        Ok(())
    }

    /// [`Settings::restart_tasks`] tasks running, then SIGKILL and start
    /// again, timed until the agent is connected and its introspection
    /// endpoint lists them all.
    pub async fn restarts(&mut self) -> Result<()> {
        let tasks = self.settings.restart_tasks;
        self.step(&format!("restart: launching {tasks} tasks"));
        let arns = self.launch_at_once(tasks).await?;
        let wanted: HashSet<String> = arns.iter().cloned().collect();
        for _ in 0..self.settings.restarts {
            tokio::time::sleep(self.settings.settle.min(Duration::from_secs(3))).await;
            if let Some(agent) = self.agent.take() {
                tokio::task::spawn_blocking(move || agent.kill()).await?;
            }
            let options = self.agent_options.clone();
            let t0 = Instant::now();
            let (agent, mut startup) = self.start_agent(&options).await?;
            self.agent = Some(agent);
            let listed = wait_listed(&wanted, Duration::from_secs(60)).await;
            match listed {
                Ok(()) => startup.all_listed_ms = Some(ms(t0.elapsed())),
                Err(e) => self.note(format!(
                    "after a restart the introspection endpoint did not list the {tasks} tasks RUNNING: {e:#}"
                )),
            }
            self.results.restarts.push(startup);
        }
        let statuses = self.ecs.statuses(&arns).await?;
        let not_running = statuses.values().filter(|(s, _)| s != "RUNNING").count();
        if not_running > 0 {
            self.note(format!(
                "{not_running} of the {tasks} tasks were not RUNNING after the restarts"
            ));
        }
        self.step(&format!("restart: stopping the {tasks} tasks"));
        self.stop_tasks(&arns).await
    }

    /// SIGTERM to the agent.
    pub async fn stop_agent(&mut self) -> Result<()> {
        if let Some(agent) = self.agent.take() {
            let code =
                tokio::task::spawn_blocking(move || agent.terminate(Duration::from_secs(60)))
                    .await??;
            if code != Some(0) {
                self.note(format!("the agent exited with {code:?} on SIGTERM"));
            }
        }
        Ok(())
    }

    pub fn idle_memory(&mut self) -> Result<()> {
        self.results.memory.idle = Some(self.read_rss()?);
        Ok(())
    }
}

/// Where `make static` puts the static agent.
pub fn static_agent_path(root: &Path, static_target: &str) -> PathBuf {
    target_dir(root)
        .join(static_target)
        .join("release")
        .join("ecs-agent")
}

pub fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

fn agent_options(cluster: &str, data_dir: &Path) -> AgentOptions {
    let mut options = AgentOptions::new(data_dir)
        .env("ECS_LOGLEVEL", "info")
        .env("ECS_LOG_OUTPUT_FORMAT", "json")
        .env("ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION", CLEANUP_WAIT)
        .env("ECS_CONTAINER_STOP_TIMEOUT", &format!("{STOP_GRACE_SECS}s"));
    options.cluster = cluster.to_string();
    options
}

fn agent_log_tail(agent: &Agent) -> String {
    let text = agent.own_log_text();
    let lines: Vec<&str> = text.lines().collect();
    format!(
        "the agent's last log lines:\n{}",
        lines[lines.len().saturating_sub(15)..].join("\n")
    )
}

/// GET on the introspection endpoint (HTTP/1.0, so the answer ends with the
/// connection); the body.
async fn introspection_get(path: &str) -> Result<String> {
    let fetch = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", 51678)).await?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
            .await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        anyhow::Ok(buf)
    };
    let buf = tokio::time::timeout(Duration::from_secs(5), fetch).await??;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("no HTTP answer"))?;
    if !head.starts_with("HTTP/1.") || head.split_whitespace().nth(1).is_none_or(|c| c != "200") {
        bail!(
            "introspection answered {}",
            head.lines().next().unwrap_or_default()
        );
    }
    Ok(body.to_string())
}

/// Polls `/v1/tasks` every 20 ms until every task of `wanted` is listed
/// with KnownStatus RUNNING.
async fn wait_listed(wanted: &HashSet<String>, timeout: Duration) -> Result<()> {
    let start = Instant::now();
    loop {
        let last = match introspection_get("/v1/tasks").await {
            Ok(body) => {
                let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                let running = v["Tasks"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|t| {
                        t["KnownStatus"] == "RUNNING"
                            && t["Arn"].as_str().is_some_and(|a| wanted.contains(a))
                    })
                    .count();
                if running == wanted.len() {
                    return Ok(());
                }
                format!("{running} of {} listed RUNNING", wanted.len())
            }
            Err(e) => format!("{e:#}"),
        };
        if start.elapsed() > timeout {
            bail!("after {timeout:?}: {last}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
