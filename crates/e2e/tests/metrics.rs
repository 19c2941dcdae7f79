//! Container metrics end to end: the agent reads its containers from the
//! kernel, publishes them over TCS, and ecs-local shows them on its
//! `/metrics` page, close to what Docker's own stats say.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use e2e::{require_docker, wait_for, Agent, AgentOptions, Plane, TEST_IMAGE};
use serde_json::json;

const CONNECT: Duration = Duration::from_secs(60);
/// Two TCS publications (every 20 s) and then some, on a loaded machine.
const PUBLISHED: Duration = Duration::from_secs(120);

/// The value of the series whose labels contain `task="<id>"` and
/// `container="main"`, if the page has it.
fn series(page: &str, metric: &str, task_id: &str) -> Option<f64> {
    page.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")))
        .find(|l| l.contains(&format!("task=\"{task_id}\"")) && l.contains("container=\"main\""))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Docker's own figure for the container: (CPU percent of one core, memory
/// in MiB), from `docker stats --no-stream`.
fn docker_stats(id: &str) -> (f64, f64) {
    let out = std::process::Command::new("docker")
        .args([
            "stats",
            "--no-stream",
            "--format",
            "{{.CPUPerc}} {{.MemUsage}}",
            id,
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut parts = text.split_whitespace();
    let cpu: f64 = parts.next().unwrap().trim_end_matches('%').parse().unwrap();
    let mem = parts.next().unwrap();
    let mib = if let Some(v) = mem.strip_suffix("MiB") {
        v.parse().unwrap()
    } else if let Some(v) = mem.strip_suffix("KiB") {
        v.parse::<f64>().unwrap() / 1024.0
    } else {
        panic!("unexpected memory figure in {text:?}")
    };
    (cpu, mib)
}

#[test]
fn a_busy_task_and_a_memory_holding_task_appear_on_the_metrics_page() {
    require_docker();
    let dir = tempfile::tempdir().unwrap();
    let plane = Plane::start(&dir.path().join("plane")).unwrap();
    let agent = Agent::start(&plane, &AgentOptions::new(&dir.path().join("agent"))).unwrap();
    let cli = plane.cli();
    cli.wait_connected_instance("default", CONNECT).unwrap();
    let one = |command: &str| {
        json!([{
            "name": "main", "image": TEST_IMAGE, "memory": 96, "essential": true,
            "command": ["sh", "-c", command],
        }])
    };
    // One shell spinning: about one core, half of a 2-CPU host.
    cli.register("burn", &one("trap 'exit 0' TERM; while :; do :; done"))
        .unwrap();
    // 24 MiB held: dd fills its buffer, then blocks writing it to a pipe
    // nobody reads.
    cli.register("hold", &one("dd if=/dev/zero bs=24M count=1 | sleep 600"))
        .unwrap();
    let burn = cli.run_task("default", "burn").unwrap();
    let hold = cli.run_task("default", "hold").unwrap();
    let burn_task = cli
        .wait_task_status("default", &burn, "RUNNING", CONNECT)
        .unwrap();
    let hold_task = cli
        .wait_task_status("default", &hold, "RUNNING", CONNECT)
        .unwrap();
    let id = |arn: &str| arn.rsplit('/').next().unwrap().to_string();
    let (burn_id, hold_id) = (id(&burn), id(&hold));

    let page = wait_for("both tasks on /metrics with their load", PUBLISHED, || {
        let page = plane.metrics_page()?;
        let cpu = series(&page, "ecs_container_cpu_utilization_percent", &burn_id);
        let mib = series(&page, "ecs_container_memory_utilized_mib", &hold_id);
        Ok((cpu.is_some_and(|c| c > 10.0) && mib.is_some_and(|m| m >= 20.0)).then_some(page))
    })
    .unwrap_or_else(|e| {
        panic!(
            "{e}\npage:\n{}\nagent log:\n{}",
            plane.metrics_page().unwrap_or_default(),
            agent.log_text()
        )
    });

    // The page's own shape: task series beside container series, labelled.
    assert!(
        page.contains("# TYPE ecs_task_cpu_utilization_percent gauge"),
        "{page}"
    );
    assert!(
        page.contains(&format!(
            "family=\"burn\",revision=\"1\",task=\"{burn_id}\""
        )),
        "{page}"
    );
    assert!(
        series(&page, "ecs_container_network_rx_bytes", &burn_id).is_some(),
        "{page}"
    );

    // Close to Docker's own view (loosely: the two are read at different
    // moments on a busy machine; the 5 % comparison is a benchmark's).
    let runtime = |task: &serde_json::Value| {
        task["containers"][0]["runtimeId"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (_, docker_mib) = docker_stats(&runtime(&hold_task));
    let ours = series(&page, "ecs_container_memory_utilized_mib", &hold_id).unwrap();
    assert!(
        (ours - docker_mib).abs() <= 0.25 * docker_mib + 1.0,
        "memory: ours {ours} MiB, Docker's {docker_mib} MiB"
    );
    let (docker_cpu, _) = docker_stats(&runtime(&burn_task));
    let ours = series(&page, "ecs_container_cpu_utilization_percent", &burn_id).unwrap();
    // Docker counts 100 % per core; ours is a share of the whole host.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    assert!(
        docker_cpu > 10.0 && ours * cpus > 10.0,
        "ours {ours} % of the host, Docker {docker_cpu} % of a core"
    );
    for arn in [&burn, &hold] {
        cli.ecs(&["stop-task", "--task", arn]).unwrap();
    }
}
