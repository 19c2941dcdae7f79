//! The first end-to-end path: a task defined with the AWS CLI runs on the
//! host's Docker engine through ecs-local and ecs-agent, is reported back,
//! stops, and survives an agent restart.
#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::Duration;

use e2e::{
    docker_ids_with_label, docker_inspect, require_docker, Agent, AgentOptions, Plane, TEST_IMAGE,
};
use serde_json::Value;

const CONNECT: Duration = Duration::from_secs(60);
const START: Duration = Duration::from_secs(30);
/// A failing pull is tried five times with backoff (about 15 s) first.
const PULL_RETRIES: Duration = Duration::from_secs(90);

fn setup() -> (tempfile::TempDir, Plane) {
    require_docker();
    let dir = tempfile::tempdir().unwrap();
    let plane = Plane::start(&dir.path().join("plane")).unwrap();
    (dir, plane)
}

fn task_container(task: &Value) -> Value {
    task["containers"][0].clone()
}

#[test]
fn instance_registers_and_connects() {
    let (dir, plane) = setup();
    let _agent = Agent::start(&plane, &AgentOptions::new(&dir.path().join("agent"))).unwrap();
    let instance = plane
        .cli()
        .wait_connected_instance("default", CONNECT)
        .unwrap();
    assert_eq!(instance["status"], "ACTIVE");
    assert_eq!(instance["agentConnected"], true);
    let resources: Vec<&str> = instance["registeredResources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(resources, ["CPU", "MEMORY", "PORTS", "PORTS_UDP"]);
    let attrs: Vec<&str> = instance["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert!(attrs.contains(&"ecs.os-type"), "{attrs:?}");
    assert!(attrs.contains(&"ecs.capability.container-ordering"));
}

fn tunables_of(agent: &Agent) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{}/environ", agent.pid())).unwrap();
    environ
        .split(|b| *b == 0)
        .filter_map(|kv| std::str::from_utf8(kv).ok())
        .find_map(|kv| kv.strip_prefix("GLIBC_TUNABLES="))
        .map(str::to_string)
}

/// glibc reads its tunables only at a process's start: the agent starts
/// itself again, in the same process, with its allocator settings, unless
/// whoever started it set their own (docs/footprint.md §2).
#[test]
fn the_agent_runs_with_its_allocator_settings_unless_given_others() {
    let (dir, plane) = setup();
    let agent = Agent::start(&plane, &AgentOptions::new(&dir.path().join("agent"))).unwrap();
    plane
        .cli()
        .wait_connected_instance("default", CONNECT)
        .unwrap();
    // The harness starts it with no GLIBC_TUNABLES: the agent set it.
    // (What `/proc/<pid>/environ` shows of it is what glibc left after
    // parsing it in place, so the log says which settings apply.)
    assert!(tunables_of(&agent).is_some());
    assert!(agent.log_text().contains("allocator tuned"));
    // The start again did not rename it (`ps`, `pgrep ecs-agent`).
    assert_eq!(process_name(&agent), "ecs-agent");
    drop(agent);

    let agent = Agent::start(
        &plane,
        &AgentOptions::new(&dir.path().join("agent2"))
            .env("GLIBC_TUNABLES", "glibc.malloc.arena_max=2"),
    )
    .unwrap();
    agent.wait_acs_connected(CONNECT).unwrap();
    assert!(!agent.log_text().contains("allocator tuned"));
    assert!(agent
        .log_text()
        .contains("GLIBC_TUNABLES is set: the agent's allocator settings are not applied"));
    assert_eq!(process_name(&agent), "ecs-agent");
}

/// What `ps` shows as the process's name.
fn process_name(agent: &Agent) -> String {
    std::fs::read_to_string(format!("/proc/{}/comm", agent.pid()))
        .unwrap()
        .trim_end()
        .to_string()
}

#[test]
fn task_runs_stops_and_reports_exit_codes() {
    let (dir, plane) = setup();
    let _agent = Agent::start(&plane, &AgentOptions::new(&dir.path().join("agent"))).unwrap();
    let cli = plane.cli();
    cli.wait_connected_instance("default", CONNECT).unwrap();
    cli.register_simple("sleeper", &["sleep", "600"]).unwrap();
    let arn = cli.run_task("default", "sleeper").unwrap();

    let task = cli
        .wait_task_status("default", &arn, "RUNNING", START)
        .unwrap();
    let container = task_container(&task);
    let runtime_id = container["runtimeId"].as_str().unwrap().to_string();
    assert_eq!(container["lastStatus"], "RUNNING");
    let running = docker_ids_with_label("com.amazonaws.ecs.task-arn", &arn, false);
    assert_eq!(
        running,
        vec![runtime_id.clone()],
        "docker ps shows the task's container"
    );
    let inspect = docker_inspect(&runtime_id).unwrap();
    let labels = &inspect["Config"]["Labels"];
    assert_eq!(labels["com.amazonaws.ecs.container-name"], "main");
    assert_eq!(
        labels["com.amazonaws.ecs.task-definition-family"],
        "sleeper"
    );
    assert_eq!(labels["com.amazonaws.ecs.task-definition-version"], "1");
    assert_eq!(labels["com.amazonaws.ecs.cluster"], "default");
    assert_eq!(inspect["HostConfig"]["Memory"], 32 * 1024 * 1024);

    cli.ecs(&["stop-task", "--cluster", "default", "--task", &arn])
        .unwrap();
    let task = cli
        .wait_task_status("default", &arn, "STOPPED", START)
        .unwrap();
    let inspect = docker_inspect(&runtime_id).unwrap();
    assert_eq!(
        inspect["State"]["Running"], false,
        "the container is stopped"
    );
    let exit_code = task_container(&task)["exitCode"].as_i64();
    // busybox sleep as PID 1 ignores SIGTERM: SIGKILL after the stop timeout.
    assert_eq!(exit_code, Some(137), "{task}");
    assert_eq!(task_container(&task)["lastStatus"], "STOPPED");
}

#[test]
fn essential_container_exit_stops_the_task() {
    let (dir, plane) = setup();
    let _agent = Agent::start(&plane, &AgentOptions::new(&dir.path().join("agent"))).unwrap();
    let cli = plane.cli();
    cli.wait_connected_instance("default", CONNECT).unwrap();
    cli.register_simple("exiter", &["sh", "-c", "exit 3"])
        .unwrap();
    let arn = cli.run_task("default", "exiter").unwrap();
    let task = cli
        .wait_task_status("default", &arn, "STOPPED", START)
        .unwrap();
    assert_eq!(task_container(&task)["exitCode"], 3, "{task}");
    let reason = task["stoppedReason"].as_str().unwrap_or_default();
    assert!(reason.contains("Essential container"), "{reason}");
}

#[test]
fn multi_container_task_follows_its_essential_container() {
    let (dir, plane) = setup();
    let _agent = Agent::start(&plane, &AgentOptions::new(&dir.path().join("agent"))).unwrap();
    let cli = plane.cli();
    cli.wait_connected_instance("default", CONNECT).unwrap();
    let defs = serde_json::json!([
        {"name": "web", "image": TEST_IMAGE, "command": ["sleep", "600"], "memory": 32, "essential": true,
         "dependsOn": [{"containerName": "init", "condition": "SUCCESS"}]},
        {"name": "init", "image": TEST_IMAGE, "command": ["sh", "-c", "exit 0"], "memory": 16, "essential": false},
        {"name": "side", "image": TEST_IMAGE, "command": ["sh", "-c", "sleep 1; exit 7"], "memory": 16, "essential": false}
    ]);
    cli.register("trio", &defs).unwrap();
    let arn = cli.run_task("default", "trio").unwrap();
    let task = cli
        .wait_task_status("default", &arn, "RUNNING", START)
        .unwrap();
    let by_name = |task: &Value, name: &str| -> Value {
        task["containers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .cloned()
            .unwrap()
    };
    // init ran to completion before web started.
    assert_eq!(by_name(&task, "init")["exitCode"], 0, "{task}");
    // A non-essential exit leaves the task running.
    e2e::wait_for("side to stop", START, || {
        let t = cli.describe_task("default", &arn)?;
        Ok((by_name(&t, "side")["lastStatus"] == "STOPPED").then_some(()))
    })
    .unwrap();
    let task = cli.describe_task("default", &arn).unwrap();
    assert_eq!(task["lastStatus"], "RUNNING");
    assert_eq!(by_name(&task, "side")["exitCode"], 7);
    cli.ecs(&["stop-task", "--cluster", "default", "--task", &arn])
        .unwrap();
    let task = cli
        .wait_task_status("default", &arn, "STOPPED", START)
        .unwrap();
    assert_eq!(by_name(&task, "web")["lastStatus"], "STOPPED");
}

#[test]
fn restarted_agent_keeps_its_instance_and_tasks() {
    let (dir, plane) = setup();
    let options = AgentOptions::new(&dir.path().join("agent"));
    let agent = Agent::start(&plane, &options).unwrap();
    let cli = plane.cli();
    let before = cli.wait_connected_instance("default", CONNECT).unwrap();
    cli.register_simple("survivor", &["sleep", "600"]).unwrap();
    let arn = cli.run_task("default", "survivor").unwrap();
    let task = cli
        .wait_task_status("default", &arn, "RUNNING", START)
        .unwrap();
    let runtime_id = task_container(&task)["runtimeId"]
        .as_str()
        .unwrap()
        .to_string();

    agent.kill();
    let agent = Agent::start(&plane, &options).unwrap();
    // The restarted agent registers before it connects to ACS, so once it
    // is connected the plane shows the registration it made.
    agent.wait_acs_connected(CONNECT).unwrap();
    let after = cli.wait_connected_instance("default", CONNECT).unwrap();
    assert_eq!(
        after["containerInstanceArn"],
        before["containerInstanceArn"]
    );
    let list = cli.ecs(&["list-container-instances"]).unwrap();
    assert_eq!(list["containerInstanceArns"].as_array().unwrap().len(), 1);

    cli.ecs(&["stop-task", "--task", &arn]).unwrap();
    let task = cli
        .wait_task_status("default", &arn, "STOPPED", START)
        .unwrap();
    assert_eq!(task_container(&task)["runtimeId"], runtime_id.as_str());
    assert_eq!(
        docker_inspect(&runtime_id).unwrap()["State"]["Running"],
        false
    );
    assert_eq!(
        docker_ids_with_label("com.amazonaws.ecs.task-arn", &arn, true).len(),
        1,
        "no duplicate container after the restart"
    );
}

#[test]
fn container_that_exits_while_the_agent_is_down_is_reported() {
    let (dir, plane) = setup();
    let options = AgentOptions::new(&dir.path().join("agent"));
    let agent = Agent::start(&plane, &options).unwrap();
    let cli = plane.cli();
    cli.wait_connected_instance("default", CONNECT).unwrap();
    cli.register_simple("mortal", &["sleep", "600"]).unwrap();
    let arn = cli.run_task("default", "mortal").unwrap();
    let task = cli
        .wait_task_status("default", &arn, "RUNNING", START)
        .unwrap();
    let runtime_id = task_container(&task)["runtimeId"]
        .as_str()
        .unwrap()
        .to_string();
    agent.kill();
    let status = Command::new("docker")
        .args(["kill", "-s", "KILL", &runtime_id])
        .status()
        .unwrap();
    assert!(status.success());
    let _agent = Agent::start(&plane, &options).unwrap();
    let task = cli
        .wait_task_status("default", &arn, "STOPPED", CONNECT)
        .unwrap();
    assert_eq!(task_container(&task)["exitCode"], 137, "{task}");
}

#[test]
fn failed_pull_falls_back_to_the_cached_image() {
    require_docker();
    // An image name whose registry refuses connections: every pull attempt
    // fails at once (never leaving loopback), and the cached copy runs.
    let image = "127.0.0.1:1/ecs-test/busybox:cached";
    let tagged = Command::new("docker")
        .args(["tag", TEST_IMAGE, image])
        .status()
        .unwrap();
    assert!(tagged.success());
    let (dir, plane) = setup();
    let options =
        AgentOptions::new(&dir.path().join("agent")).env("ECS_IMAGE_PULL_BEHAVIOR", "default");
    let agent = Agent::start(&plane, &options).unwrap();
    let cli = plane.cli();
    cli.wait_connected_instance("default", CONNECT).unwrap();
    let defs = serde_json::json!([{"name": "main", "image": image, "command": ["sleep", "600"], "memory": 32, "essential": true}]);
    cli.register("cached", &defs).unwrap();
    let arn = cli.run_task("default", "cached").unwrap();
    let task = cli
        .wait_task_status("default", &arn, "RUNNING", PULL_RETRIES)
        .unwrap_or_else(|e| panic!("{e}\nagent log:\n{}", agent.log_text()));

    // The pull was really made, retried, and failed: five attempts, each
    // refused by the registry, all logged before the task ran.
    let log = agent.log_text();
    let attempts: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("image pull attempt failed") && l.contains(image))
        .collect();
    assert_eq!(attempts.len(), 5, "five failed attempts:\n{log}");
    for (n, line) in attempts.iter().enumerate() {
        assert!(line.contains(&format!("attempt={}", n + 1)), "{line}");
        assert!(line.contains("connection refused"), "{line}");
    }
    // The failure is reported on the container, and the task's pull
    // times are set and come before it started.
    let container = task_container(&task);
    let reason = container["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("CannotPullContainerError") && reason.contains("connection refused"),
        "the pull failure is the container's reason: {task}"
    );
    let at = |key: &str| {
        task[key]
            .as_f64()
            .unwrap_or_else(|| panic!("no {key} in {task}"))
    };
    assert!(at("pullStartedAt") <= at("pullStoppedAt"), "{task}");
    assert!(at("pullStoppedAt") <= at("startedAt"), "{task}");
    // And what ran is the cached image.
    let runtime_id = container["runtimeId"].as_str().unwrap();
    let inspect = docker_inspect(runtime_id).unwrap();
    assert_eq!(inspect["Config"]["Image"], image);
    assert_eq!(inspect["State"]["Running"], true);
    let cached_id = Command::new("docker")
        .args(["image", "inspect", image, "--format", "{{.Id}}"])
        .output()
        .unwrap();
    assert_eq!(
        inspect["Image"].as_str().unwrap(),
        String::from_utf8_lossy(&cached_id.stdout).trim()
    );

    cli.ecs(&["stop-task", "--task", &arn]).unwrap();
    cli.wait_task_status("default", &arn, "STOPPED", START)
        .unwrap();
}

#[test]
fn missing_image_stops_the_task_with_a_reason() {
    let (dir, plane) = setup();
    let _agent = Agent::start(&plane, &AgentOptions::new(&dir.path().join("agent"))).unwrap();
    let cli = plane.cli();
    cli.wait_connected_instance("default", CONNECT).unwrap();
    let defs = serde_json::json!([{"name": "main", "image": "127.0.0.1:1/no/such-image:x", "memory": 32, "essential": true}]);
    cli.register("ghost", &defs).unwrap();
    let arn = cli.run_task("default", "ghost").unwrap();
    let task = cli
        .wait_task_status("default", &arn, "STOPPED", PULL_RETRIES)
        .unwrap();
    let reason = task_container(&task)["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        reason.starts_with("Cannot"),
        "a clear container reason: {task}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sdk_drives_the_same_path() {
    let (dir, plane) = setup();
    let _agent = Agent::start(&plane, &AgentOptions::new(&dir.path().join("agent"))).unwrap();
    let cli = plane.cli();
    tokio::task::block_in_place(|| cli.wait_connected_instance("default", CONNECT)).unwrap();
    let sdk = plane.sdk();
    let def = aws_sdk_ecs::types::ContainerDefinition::builder()
        .name("main")
        .image(TEST_IMAGE)
        .command("sleep")
        .command("600")
        .memory(32)
        .essential(true)
        .build();
    sdk.register_task_definition()
        .family("sdk-sleeper")
        .container_definitions(def)
        .send()
        .await
        .unwrap();
    let run = sdk
        .run_task()
        .task_definition("sdk-sleeper")
        .send()
        .await
        .unwrap();
    let arn = run.tasks()[0].task_arn().unwrap().to_string();
    let task =
        tokio::task::block_in_place(|| cli.wait_task_status("default", &arn, "RUNNING", START))
            .unwrap();
    assert!(task_container(&task)["runtimeId"].is_string());
    let described = sdk.describe_tasks().tasks(&arn).send().await.unwrap();
    assert_eq!(described.tasks()[0].last_status(), Some("RUNNING"));
    sdk.stop_task().task(&arn).send().await.unwrap();
    tokio::task::block_in_place(|| cli.wait_task_status("default", &arn, "STOPPED", START))
        .unwrap();
}

#[test]
fn stopped_task_containers_are_removed_after_the_cleanup_wait() {
    let (dir, plane) = setup();
    let options = AgentOptions::new(&dir.path().join("agent"))
        .env("ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION", "2s");
    let _agent = Agent::start(&plane, &options).unwrap();
    let cli = plane.cli();
    cli.wait_connected_instance("default", CONNECT).unwrap();
    cli.register_simple("brief", &["sh", "-c", "exit 0"])
        .unwrap();
    let arn = cli.run_task("default", "brief").unwrap();
    cli.wait_task_status("default", &arn, "STOPPED", START)
        .unwrap();
    e2e::wait_for("the task's container to be removed", START, || {
        Ok(
            docker_ids_with_label("com.amazonaws.ecs.task-arn", &arn, true)
                .is_empty()
                .then_some(()),
        )
    })
    .unwrap();
}

#[test]
fn stop_sends_sigterm_before_sigkill() {
    let (dir, plane) = setup();
    let options =
        AgentOptions::new(&dir.path().join("agent")).env("ECS_CONTAINER_STOP_TIMEOUT", "30s");
    let _agent = Agent::start(&plane, &options).unwrap();
    let cli = plane.cli();
    cli.wait_connected_instance("default", CONNECT).unwrap();
    // A container that exits 42 on SIGTERM: its exit code proves which
    // signal came first, and the stop takes far less than the 30 s timeout.
    cli.register_simple(
        "graceful",
        &[
            "sh",
            "-c",
            "trap 'exit 42' TERM; while true; do sleep 0.2; done",
        ],
    )
    .unwrap();
    let arn = cli.run_task("default", "graceful").unwrap();
    cli.wait_task_status("default", &arn, "RUNNING", START)
        .unwrap();
    let started = std::time::Instant::now();
    cli.ecs(&["stop-task", "--task", &arn]).unwrap();
    let task = cli
        .wait_task_status("default", &arn, "STOPPED", START)
        .unwrap();
    assert_eq!(task_container(&task)["exitCode"], 42, "{task}");
    assert!(started.elapsed() < Duration::from_secs(20));
}
