#![allow(clippy::unwrap_used)]
use super::*;
use crate::engine::task::IncomingTask;

fn task(cpu: &str, memory: &str, containers: serde_json::Value) -> TaskSpec {
    let mut acs = serde_json::json!({
        "arn": "arn:aws:ecs:us-east-1:123456789012:task/default/abc",
        "family": "web", "version": "1", "desiredStatus": "RUNNING",
        "containers": containers,
    });
    if !cpu.is_empty() {
        acs["cpu"] = serde_json::from_str(cpu).unwrap();
    }
    if !memory.is_empty() {
        acs["memory"] = serde_json::from_str(memory).unwrap();
    }
    let acs: ecs_model::acs::Task = serde_json::from_value(acs).unwrap();
    IncomingTask::try_from(&acs).unwrap().spec
}

fn two(cpu_a: u32, cpu_b: u32, mem: u32) -> serde_json::Value {
    serde_json::json!([
        {"name": "a", "image": "i", "cpu": cpu_a, "memory": mem},
        {"name": "b", "image": "i", "cpu": cpu_b, "memory": mem}
    ])
}

#[test]
fn task_cpu_is_a_quota_else_the_containers_shares() {
    let half = TaskLimits::of(&task("0.5", "256", two(0, 0, 64)), 100_000, None).unwrap();
    assert_eq!(
        half.cpu,
        CpuLimit::Quota {
            quota_us: 50_000,
            period_us: 100_000
        }
    );
    assert_eq!(half.memory_bytes, Some(256 << 20));
    let tiny = TaskLimits::of(&task("0.001", "", two(0, 0, 0)), 100_000, None).unwrap();
    assert_eq!(
        tiny.cpu,
        CpuLimit::Quota {
            quota_us: 1_000,
            period_us: 100_000
        },
        "the kernel's minimum"
    );
    let shares = TaskLimits::of(&task("", "", two(0, 512, 0)), 100_000, Some(100)).unwrap();
    assert_eq!(
        shares.cpu,
        CpuLimit::Shares(2 + 512),
        "each container at least 2"
    );
    assert_eq!((shares.memory_bytes, shares.pids), (None, Some(100)));
    let capped = TaskLimits::of(&task("", "", two(200_000, 200_000, 0)), 100_000, None).unwrap();
    assert_eq!(capped.cpu, CpuLimit::Shares(262_144));
}

#[test]
fn a_container_may_not_ask_for_more_memory_than_its_task() {
    let e = TaskLimits::of(&task("", "128", two(0, 0, 256)), 100_000, None).unwrap_err();
    assert_eq!(
        e.to_string(),
        "container memory limit (256 MiB) greater than task memory limit (128 MiB)"
    );
}

#[test]
fn a_hierarchy_that_cannot_be_written_is_found_at_start() {
    let root = tempfile::tempdir().unwrap();
    // A file where the cpu controller's directory should be.
    std::fs::write(root.path().join("cpu"), "").unwrap();
    assert!(TaskCgroups::new(root.path(), 100_000, None).init().is_err());
    std::fs::remove_file(root.path().join("cpu")).unwrap();
    std::fs::create_dir(root.path().join("cpu")).unwrap();
    TaskCgroups::new(root.path(), 100_000, None).init().unwrap();
    assert!(root.path().join("cpu/ecs").is_dir());
}

#[test]
fn cgroup_v1_gets_a_directory_per_controller_and_loses_it_at_cleanup() {
    let root = tempfile::tempdir().unwrap();
    for c in ["cpu", "cpuacct", "memory", "pids", "blkio"] {
        std::fs::create_dir(root.path().join(c)).unwrap();
    }
    let cgroups = TaskCgroups::new(root.path(), 100_000, Some(64));
    cgroups
        .create("abc", &task("0.25", "128", two(0, 0, 64)))
        .unwrap();
    let read = |p: &str| std::fs::read_to_string(root.path().join(p)).unwrap();
    assert_eq!(read("cpu/ecs/abc/cpu.cfs_quota_us"), "25000");
    assert_eq!(read("cpu/ecs/abc/cpu.cfs_period_us"), "100000");
    assert_eq!(
        read("memory/ecs/abc/memory.limit_in_bytes"),
        (128u64 << 20).to_string()
    );
    assert_eq!(read("pids/ecs/abc/pids.max"), "64");
    // Again (an agent restarted between two containers' creates): fine.
    cgroups
        .create("abc", &task("0.25", "128", two(0, 0, 64)))
        .unwrap();
    assert_eq!(TaskCgroups::parent("abc"), "/ecs/abc");

    // Docker made the directory under the other controllers too. (A real
    // cgroup directory's files go with it; here they are removed first.)
    std::fs::create_dir_all(root.path().join("blkio/ecs/abc")).unwrap();
    for f in [
        "cpu/ecs/abc/cpu.cfs_quota_us",
        "cpu/ecs/abc/cpu.cfs_period_us",
        "memory/ecs/abc/memory.limit_in_bytes",
        "pids/ecs/abc/pids.max",
    ] {
        std::fs::remove_file(root.path().join(f)).unwrap();
    }
    cgroups.remove("abc").unwrap();
    for c in ["cpu", "memory", "pids", "blkio"] {
        assert!(!root.path().join(c).join("ecs/abc").exists(), "{c}");
    }
    cgroups.remove("abc").unwrap();
}

#[test]
fn cgroup_v2_gets_one_directory_with_the_controllers_handed_down() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(
        root.path().join("cgroup.controllers"),
        "cpuset cpu io memory pids",
    )
    .unwrap();
    let cgroups = TaskCgroups::new(root.path(), 50_000, None);
    cgroups
        .create("abc", &task("2", "512", two(0, 0, 0)))
        .unwrap();
    let read = |p: &str| std::fs::read_to_string(root.path().join(p)).unwrap();
    assert_eq!(read("cgroup.subtree_control"), "+cpu +memory +pids");
    assert_eq!(read("ecs/abc/cpu.max"), "100000 50000");
    assert_eq!(read("ecs/abc/memory.max"), (512u64 << 20).to_string());
    assert!(!root.path().join("ecs/abc/pids.max").exists());
    let shares = TaskCgroups::new(root.path(), 100_000, None);
    shares
        .create("def", &task("", "", two(1024, 0, 0)))
        .unwrap();
    // 1026 shares: runc's weight for it.
    assert_eq!(
        read("ecs/def/cpu.weight"),
        (1 + (1024 * 9_999) / 262_142).to_string()
    );
}
