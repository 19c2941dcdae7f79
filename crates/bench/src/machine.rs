//! The facts about this machine and this checkout that a reader needs to
//! judge the figures.

use std::process::Command;

use bollard::Docker;

#[derive(Debug, Clone, Default)]
pub struct Machine {
    pub cpu_model: String,
    pub cores: usize,
    pub memory_mib: u64,
    pub kernel: String,
    pub os: String,
    pub docker_version: String,
    pub cgroup: String,
    pub storage_driver: String,
    pub rustc: String,
    /// `/proc/loadavg`'s first three numbers when the run began.
    pub load_at_start: String,
    /// Containers running when the run began that were not the bench's.
    pub other_containers: usize,
}

#[derive(Debug, Clone, Default)]
pub struct Checkout {
    pub commit: String,
    /// Files changed or added since that commit (`git status`), not
    /// counting the report itself.
    pub dirty_files: usize,
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().trim().to_string()
}

fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

pub async fn describe(docker: &Docker) -> Machine {
    let host = describe_host();
    let (docker_version, cgroup, storage_driver) = match docker.info().await {
        Ok(info) => (
            info.server_version.unwrap_or_default(),
            match info.cgroup_version.map(|v| v.to_string()) {
                Some(v) if !v.is_empty() => format!(
                    "v{v} ({} driver)",
                    info.cgroup_driver
                        .map(|d| d.to_string())
                        .unwrap_or_default()
                ),
                _ => "unknown".into(),
            },
            info.driver.unwrap_or_default(),
        ),
        Err(_) => ("unknown".into(), "unknown".into(), "unknown".into()),
    };
    let other_containers = docker
        .list_containers(None::<bollard::query_parameters::ListContainersOptions>)
        .await
        .map_or(0, |l| l.len());
    Machine {
        docker_version,
        cgroup,
        storage_driver,
        other_containers,
        ..host
    }
}

/// What needs no Docker, for a figure that runs without it; Docker's
/// fields say "unknown".
pub fn describe_host() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_mib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib / 1024);
    let kernel =
        first_line(&std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default());
    let os = std::fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "unknown".into());
    let rustc = command_output("rustc", &["--version"])
        .map(|s| first_line(&s))
        .unwrap_or_else(|| "unknown".into());
    let load_at_start = std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    Machine {
        cpu_model,
        cores,
        memory_mib,
        kernel,
        os,
        docker_version: "unknown".into(),
        cgroup: "unknown".into(),
        storage_driver: "unknown".into(),
        rustc,
        load_at_start,
        other_containers: 0,
    }
}

/// The commit checked out, and how many tracked files differ from it.
pub fn checkout(root: &std::path::Path) -> Checkout {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(root)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    };
    Checkout {
        commit: git(&["rev-parse", "--short", "HEAD"])
            .map(|s| first_line(&s))
            .unwrap_or_else(|| "unknown".into()),
        dirty_files: git(&["status", "--porcelain"]).map_or(0, |s| {
            s.lines()
                .filter(|l| !l.trim().is_empty() && !l.ends_with(" docs/benchmarks.md"))
                .count()
        }),
    }
}
