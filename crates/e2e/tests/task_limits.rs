//! Task-level CPU and memory limits on the real Docker engine: the task's
//! own cgroup, its containers inside it, the kernel enforcing its memory,
//! and the cgroup gone after cleanup.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use e2e::{docker_inspect, require_docker, wait_for, Agent, AgentOptions, Plane, TEST_IMAGE};
use serde_json::json;

const CONNECT: Duration = Duration::from_secs(60);
const SETTLE: Duration = Duration::from_secs(90);
const CGROUP: &str = "/sys/fs/cgroup";

fn register(cli: &e2e::Cli, family: &str, cpu: &str, memory: &str, command: &str) {
    let defs = json!([{
        "name": "main", "image": TEST_IMAGE, "memoryReservation": 8, "essential": true,
        "command": ["sh", "-c", command],
    }]);
    cli.ecs(&[
        "register-task-definition",
        "--family",
        family,
        "--cpu",
        cpu,
        "--memory",
        memory,
        "--container-definitions",
        &defs.to_string(),
    ])
    .unwrap();
}

#[test]
fn a_task_with_limits_runs_in_its_cgroup_and_the_kernel_holds_it_to_them() {
    require_docker();
    if Path::new(CGROUP).join("cgroup.controllers").exists() {
        eprintln!("skipped: this test reads cgroup v1 files; the v2 writer is unit-tested");
        return;
    }
    let driver = std::process::Command::new("docker")
        .args(["info", "--format", "{{.CgroupDriver}}"])
        .output()
        .unwrap();
    let driver = String::from_utf8_lossy(&driver.stdout).trim().to_string();
    if driver != "cgroupfs" {
        eprintln!("skipped: Docker's {driver} cgroup driver; task cgroups need cgroupfs (docs/engine.md §7.7)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let plane = Plane::start(&dir.path().join("plane")).unwrap();
    let options = AgentOptions::new(&dir.path().join("agent"))
        .env("ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION", "1s");
    let agent = Agent::start(&plane, &options).unwrap();
    let cli = plane.cli();
    let instance = cli.wait_connected_instance("default", CONNECT).unwrap();
    let attributes = instance["attributes"].to_string();
    assert!(
        attributes.contains("ecs.capability.task-cpu-mem-limit"),
        "{attributes}"
    );

    // Half a vCPU and 64 MiB.
    register(&cli, "limited", "512", "64", "sleep 600");
    let arn = cli.run_task("default", "limited").unwrap();
    let task = cli
        .wait_task_status("default", &arn, "RUNNING", SETTLE)
        .unwrap();
    let task_id = arn.rsplit('/').next().unwrap().to_string();
    let docker_id = task["containers"][0]["runtimeId"]
        .as_str()
        .unwrap()
        .to_string();
    let inspect = docker_inspect(&docker_id).unwrap();
    assert_eq!(
        inspect["HostConfig"]["CgroupParent"],
        format!("/ecs/{task_id}")
    );
    let read = |p: String| std::fs::read_to_string(Path::new(CGROUP).join(p)).unwrap();
    assert_eq!(
        read(format!("cpu/ecs/{task_id}/cpu.cfs_quota_us")).trim(),
        "50000"
    );
    assert_eq!(
        read(format!("cpu/ecs/{task_id}/cpu.cfs_period_us")).trim(),
        "100000"
    );
    assert_eq!(
        read(format!("memory/ecs/{task_id}/memory.limit_in_bytes")).trim(),
        (64u64 << 20).to_string()
    );
    // The container's own cgroup is inside the task's.
    assert!(Path::new(CGROUP)
        .join(format!("memory/ecs/{task_id}/{docker_id}"))
        .exists());

    // 32 MiB for the task, and a container that wants 64 at once: the kernel
    // kills it, and the agent says why.
    register(
        &cli,
        "greedy",
        "256",
        "32",
        "exec dd if=/dev/zero of=/dev/null bs=64M count=1",
    );
    let greedy = cli.run_task("default", "greedy").unwrap();
    let stopped = cli
        .wait_task_status("default", &greedy, "STOPPED", SETTLE)
        .unwrap();
    let reason = stopped["containers"][0]["reason"]
        .as_str()
        .unwrap_or_default();
    assert!(reason.starts_with("OutOfMemoryError"), "{stopped}");
    assert_eq!(stopped["containers"][0]["exitCode"], 137, "{stopped}");

    // Cleanup takes the cgroup away with the containers.
    cli.ecs(&["stop-task", "--task", &arn]).unwrap();
    cli.wait_task_status("default", &arn, "STOPPED", SETTLE)
        .unwrap();
    for controller in ["cpu", "memory"] {
        let path = Path::new(CGROUP).join(format!("{controller}/ecs/{task_id}"));
        wait_for(&format!("{} to go", path.display()), SETTLE, || {
            Ok((!path.exists()).then_some(()))
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", agent.log_text()));
    }
}
