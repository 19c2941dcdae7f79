//! `ecs-bench`: measures the agent (release build, with ecs-local) against
//! Docker's own API on this machine and writes `docs/benchmarks.md`.
//!
//! ```text
//! ecs-bench [--quick] [--output FILE] [--static-target TRIPLE] [--only scale]
//! ```
//!
//! Leaves nothing behind: the agent and ecs-local are killed, the
//! containers of the run removed (by label) and the temp directory deleted
//! on every way out, errors and Ctrl-C included.

mod docker;
mod ecs;
mod figures;
mod logs;
mod machine;
mod procfs;
mod report;
mod stats;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use bollard::Docker;

use figures::{Bench, Results, Settings};
use report::Report;

/// A figure that can run alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Only {
    /// ecs-local with 10,000 tasks and 100 instances; no agent, no Docker.
    Scale,
}

struct Options {
    quick: bool,
    output: Option<PathBuf>,
    static_target: String,
    only: Option<Only>,
}

const USAGE: &str =
    "usage: ecs-bench [--quick] [--output FILE] [--static-target TRIPLE] [--only scale]

Runs the agent (release build) with ecs-local on this machine's Docker,
measures it against Docker's API, and writes docs/benchmarks.md.
  --quick            a short run (about 3 minutes) with fewer samples
  --output FILE      where to write the report (default: docs/benchmarks.md)
  --static-target T  the target triple `make static` built for
                     (default: x86_64-unknown-linux-gnu)
  --only scale       only figure 9, ecs-local at scale (no agent, no Docker):
                     its section and summary rows replace theirs in the
                     report, the rest of which is kept";

fn parse_args() -> Result<Options> {
    let mut options = Options {
        quick: false,
        output: None,
        static_target: "x86_64-unknown-linux-gnu".into(),
        only: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => options.quick = true,
            "--output" => {
                options.output = Some(
                    args.next()
                        .ok_or_else(|| anyhow!("--output needs a file"))?
                        .into(),
                )
            }
            "--static-target" => {
                options.static_target = args
                    .next()
                    .ok_or_else(|| anyhow!("--static-target needs a triple"))?
            }
            "--only" => {
                options.only = match args.next().as_deref() {
                    Some("scale") => Some(Only::Scale),
                    Some(other) => bail!("--only knows one figure, scale, not {other:?}"),
                    None => bail!("--only needs a figure (scale)"),
                }
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    Ok(options)
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn main() -> ExitCode {
    let options = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e:#}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(bench(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ecs-bench failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn interrupted() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match term.as_mut() {
                Some(t) => { t.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
}

async fn bench(options: Options) -> Result<()> {
    let started = Instant::now();
    let root = workspace_root();
    let output = options
        .output
        .clone()
        .unwrap_or_else(|| root.join("docs").join("benchmarks.md"));
    let only = options.only;
    let docker = match only {
        Some(Only::Scale) => None,
        None => Some(Docker::connect_with_socket_defaults().context("connecting to Docker")?),
    };
    let run_id = format!(
        "{:08x}",
        (std::process::id() as u128
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos())
            & 0xffff_ffff
    );
    let tmp = tempfile::Builder::new()
        .prefix("ecs-bench-")
        .tempdir()
        .context("creating a temp directory")?;
    let mut task = match docker.clone() {
        Some(docker) => tokio::spawn(run(
            options,
            root.clone(),
            docker,
            run_id.clone(),
            tmp.path().to_path_buf(),
            started,
        )),
        None => tokio::spawn(run_scale_alone(
            options,
            root.clone(),
            tmp.path().to_path_buf(),
            started,
        )),
    };
    let outcome = tokio::select! {
        joined = &mut task => joined.unwrap_or_else(|e| Err(anyhow!("the bench stopped: {e}"))),
        () = interrupted() => {
            eprintln!("interrupted: stopping the agent and ecs-local, removing the containers");
            task.abort();
            let _ = task.await;
            Err(anyhow!("interrupted"))
        }
    };
    // The agent and ecs-local are gone with the task; now their containers.
    let cleanup = match &docker {
        Some(docker) => remove_leftovers(docker, &run_id).await,
        None => Ok(()),
    };
    let tmp_path = tmp.path().to_path_buf();
    drop(tmp);
    let mut report = outcome?;
    cleanup?;
    report.duration_secs = started.elapsed().as_secs_f64();
    let (text, lines) = match only {
        Some(Only::Scale) => {
            let earlier = std::fs::read_to_string(&output).ok();
            (
                report::splice_scale(earlier.as_deref(), &report),
                report::scale_summary_lines(&report.results),
            )
        }
        None => (report::render(&report), report::summary_lines(&report)),
    };
    let text = scrub(&text, &[&tmp_path, &root]);
    std::fs::write(&output, text).with_context(|| format!("writing {}", output.display()))?;
    for line in lines {
        println!("{line}");
    }
    println!(
        "wrote {} in {:.1} minutes",
        output.display(),
        started.elapsed().as_secs_f64() / 60.0
    );
    Ok(())
}

/// Removes every container of this run (the bench's and the agent's).
async fn remove_leftovers(docker: &Docker, run_id: &str) -> Result<()> {
    let prefix = format!("ecs-bench-{run_id}");
    let ids = docker::of_run(docker, run_id, &prefix).await?;
    if !ids.is_empty() {
        eprintln!("removing {} container(s) of this run", ids.len());
    }
    docker::remove_all(docker, &ids, 10).await?;
    let left = docker::of_run(docker, run_id, &prefix).await?;
    if !left.is_empty() {
        bail!(
            "{} container(s) of this run could not be removed",
            left.len()
        );
    }
    Ok(())
}

/// The report names no path of this machine.
fn scrub(text: &str, paths: &[&Path]) -> String {
    let mut text = text.to_string();
    for p in paths {
        let p = p.display().to_string();
        if p.len() > 1 {
            text = text.replace(&p, "…");
        }
    }
    text
}

async fn run(
    options: Options,
    root: PathBuf,
    docker: Docker,
    run_id: String,
    tmp: PathBuf,
    started: Instant,
) -> Result<Report> {
    let checkout = machine::checkout(&root);
    eprintln!("building the release binaries (cargo build --release)");
    // The agent that runs is the static binary when `make static` built
    // it: what users copy to their hosts, and what the memory figures are
    // about (a dynamic one maps glibc's pages as well).
    let static_agent = figures::static_agent_path(&root, &options.static_target);
    let run_static = static_agent.exists().then(|| static_agent.clone());
    tokio::task::spawn_blocking(move || e2e::use_release_binaries(run_static).map(|_| ()))
        .await??;
    let agent_binary = figures::target_dir(&root).join("release").join("ecs-agent");
    docker
        .ping()
        .await
        .context("Docker does not answer (run scripts/setup)")?;
    docker
        .inspect_image(e2e::TEST_IMAGE)
        .await
        .with_context(|| {
            format!(
                "the test image {} is missing (run scripts/setup)",
                e2e::TEST_IMAGE
            )
        })?;
    let machine = machine::describe(&docker).await;
    let date = now_text();
    let settings = Settings::new(options.quick);
    let mut bench = Bench::new(settings.clone(), docker, &run_id, &tmp, started).await?;

    bench.step("size: strip and cargo tree");
    bench.size(&root, &agent_binary, &options.static_target)?;
    bench.step("checking that the container command exits on SIGTERM");
    bench.check_command().await?;

    bench.step(&format!("start-up: {} fresh starts", settings.startups));
    bench.startups().await?;

    bench.step(&format!(
        "idle: memory, then CPU over {:?} or more, while figure 9 (ecs-local at scale, \
         neither the agent nor Docker) runs",
        settings.cpu_window
    ));
    tokio::time::sleep(settings.settle).await;
    bench.idle_memory()?;
    let (idle, scale) = bench
        .cpu_window_alongside(figures::scale(&settings, &tmp, started))
        .await?;
    bench.results.cpu_idle = Some(idle);
    bench.results.scale = Some(scale);

    bench.step(&format!(
        "launch: RunTask → RUNNING against create + start, {} pairs",
        settings.launch_pairs
    ));
    bench.launch_and_stop().await?;

    bench.step(&format!("burst: {} pair(s) of 100", settings.burst_pairs));
    let running = bench.burst().await?;
    bench.step("memory with 100 tasks");
    bench.with_tasks(&running).await?;

    bench.step("metrics: the agent's figures against Docker's stats");
    bench.metrics_accuracy().await?;

    bench.step(&format!("{} launch/stop cycles", settings.cycles));
    bench.cycles().await?;

    bench.restarts().await?;
    bench.step("stopping the agent");
    bench.stop_agent().await?;
    let results = bench.take_results();
    drop(bench);
    Ok(Report {
        date,
        duration_secs: 0.0,
        checkout,
        machine,
        settings,
        results,
    })
}

fn now_text() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::macros::format_description!(
            "[year]-[month]-[day] [hour]:[minute]"
        ))
        .unwrap_or_default()
}

/// `--only scale`: ecs-local alone, so neither the agent nor Docker.
async fn run_scale_alone(
    options: Options,
    root: PathBuf,
    tmp: PathBuf,
    started: Instant,
) -> Result<Report> {
    let checkout = machine::checkout(&root);
    eprintln!("building the release binaries (cargo build --release)");
    tokio::task::spawn_blocking(|| e2e::use_release_binaries(None).map(|_| ())).await??;
    let machine = machine::describe_host();
    let date = now_text();
    let settings = Settings::new(options.quick);
    let results = Results {
        scale: Some(figures::scale(&settings, &tmp, started).await?),
        ..Results::default()
    };
    Ok(Report {
        date,
        duration_secs: 0.0,
        checkout,
        machine,
        settings,
        results,
    })
}
