//! The agent's container image from `make release`, run with the original
//! README's `docker run` recipe (docs/operations.md §1.2): it registers,
//! runs a task, serves its endpoints and the container metadata file,
//! writes its log file in the mounted
//! log directory, reports healthy, stops cleanly on `docker stop`, and a
//! new container on the same volumes is the same instance with the same
//! task, whose container never stopped.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use e2e::{docker_inspect, http_get, require_docker, wait_for, Plane};
use serde_json::Value;

const IMAGE: &str = concat!("ecs-agent-rs:", env!("CARGO_PKG_VERSION"));
/// Not `ecs-agent`, the recipe's name, which a real agent on this host
/// may hold.
const NAME: &str = "ecs-agent-image-test";
const CLUSTER: &str = "image-test";
const WAIT: Duration = Duration::from_secs(120);

fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker").args(args).output().unwrap()
}

fn require_image() {
    let out = docker(&["image", "inspect", IMAGE, "--format", "{{.Id}}"]);
    assert!(
        out.status.success(),
        "the image {IMAGE} is missing: `make release` builds it (`make test` does first)"
    );
}

/// Removes the agent's container, also when the test fails.
struct AgentContainer;

impl Drop for AgentContainer {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", NAME]);
    }
}

/// The README's recipe, with this test's directories in place of the
/// host's `/var/log/ecs`, `/var/lib/ecs/data` and `/etc/ecs/ecs.config`.
fn run_recipe(host: &Path) -> AgentContainer {
    let _ = docker(&["rm", "-f", NAME]);
    let log = format!("--volume={}:/log", host.join("log").display());
    let data = format!("--volume={}:/data", host.join("data").display());
    let env_file = format!("--env-file={}", host.join("ecs.config").display());
    let out = docker(&[
        "run",
        &format!("--name={NAME}"),
        "--detach=true",
        "--restart=on-failure:10",
        "--volume=/var/run/docker.sock:/var/run/docker.sock",
        &log,
        &data,
        "--net=host",
        &env_file,
        "--env=ECS_LOGFILE=/log/ecs-agent.log",
        "--env=ECS_DATADIR=/data/",
        "--env=ECS_ENABLE_TASK_IAM_ROLE=true",
        "--env=ECS_ENABLE_TASK_IAM_ROLE_NETWORK_HOST=true",
        IMAGE,
    ]);
    assert!(
        out.status.success(),
        "docker run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    AgentContainer
}

fn agent_logs() -> String {
    let out = docker(&["logs", NAME]);
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn task_container_id(task: &Value) -> String {
    task["containers"][0]["runtimeId"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn the_readme_recipe_runs_the_image_and_a_new_container_resumes() {
    require_docker();
    require_image();
    let dir = tempfile::tempdir().unwrap();
    let host = dir.path();
    std::fs::create_dir_all(host.join("log")).unwrap();
    std::fs::create_dir_all(host.join("data")).unwrap();
    let plane = Plane::start(&host.join("plane")).unwrap();
    std::fs::write(
        host.join("ecs.config"),
        format!(
            "ECS_CLUSTER={CLUSTER}\nECS_BACKEND_HOST={}\nAWS_DEFAULT_REGION=us-east-1\n\
             AWS_ACCESS_KEY_ID=AKIDEXAMPLE\nAWS_SECRET_ACCESS_KEY=secret\n\
             AWS_EC2_METADATA_DISABLED=true\nECS_IMAGE_PULL_BEHAVIOR=prefer-cached\n\
             ECS_CONTAINER_STOP_TIMEOUT=2s\nECS_ENABLE_CONTAINER_METADATA=true\n\
             ECS_HOST_DATA_DIR={}\n",
            plane.url(),
            // What the container sees at /data is <this>/data on the host.
            host.display()
        ),
    )
    .unwrap();
    let cli = plane.cli();
    cli.ecs(&["create-cluster", "--cluster-name", CLUSTER])
        .unwrap();

    let container = run_recipe(host);
    let instance = cli
        .wait_connected_instance(CLUSTER, WAIT)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", agent_logs()));
    let instance_arn = instance["containerInstanceArn"]
        .as_str()
        .unwrap()
        .to_string();

    cli.register_simple("image-sleeper", &["sleep", "600"])
        .unwrap();
    let task_arn = cli.run_task(CLUSTER, "image-sleeper").unwrap();
    let task = cli
        .wait_task_status(CLUSTER, &task_arn, "RUNNING", WAIT)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", agent_logs()));
    let task_container = task_container_id(&task);

    // Its endpoints, on the host's loopback (host network).
    let metadata: Value = serde_json::from_str(&http_get(51678, "/v1/metadata").unwrap()).unwrap();
    assert_eq!(metadata["ContainerInstanceArn"], instance_arn.as_str());
    let tasks = http_get(51678, "/v1/tasks").unwrap();
    assert!(tasks.contains(&task_arn), "{tasks}");
    let env = docker_inspect(&task_container).unwrap()["Config"]["Env"].clone();
    let v4 = env
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .find_map(|e| e.strip_prefix("ECS_CONTAINER_METADATA_URI_V4="))
        .unwrap()
        .to_string();
    let path = v4.split_once("169.254.170.2").unwrap().1;
    let tmds: Value = serde_json::from_str(&http_get(51679, &format!("{path}/task")).unwrap())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(tmds["TaskARN"], task_arn.as_str());

    // The container metadata file reaches the task's container through
    // the host path of the agent's /data.
    wait_for("the task's metadata file", WAIT, || {
        let out = docker(&[
            "exec",
            &task_container,
            "sh",
            "-c",
            "cat \"$ECS_CONTAINER_METADATA_FILE\"",
        ]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        Ok((text.contains(&task_arn) && text.contains("READY")).then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", agent_logs()));

    // Its log file, in the host directory mounted at /log.
    let log = wait_for("the agent's log file", WAIT, || {
        let text = std::fs::read_to_string(host.join("log/ecs-agent.log")).unwrap_or_default();
        Ok(text.contains("Starting Amazon ECS Agent").then_some(text))
    })
    .unwrap();
    assert!(log.contains(&instance_arn), "{log}");

    // The image's own health check, run as Docker runs it.
    let health = docker_inspect(NAME).unwrap()["Config"]["Healthcheck"]["Test"].clone();
    assert_eq!(
        health,
        serde_json::json!(["CMD", "/agent", "--healthcheck"])
    );
    let exec = docker(&["exec", NAME, "/agent", "--healthcheck"]);
    assert_eq!(exec.status.code(), Some(0));

    // `docker stop`: SIGTERM, state saved, exit 0; the task's container
    // keeps running.
    let out = docker(&["stop", "--time=60", NAME]);
    assert!(out.status.success());
    let state = docker_inspect(NAME).unwrap()["State"].clone();
    assert_eq!(state["ExitCode"], 0, "{}", agent_logs());
    assert_eq!(
        docker_inspect(&task_container).unwrap()["State"]["Running"],
        true
    );

    // A new container on the same volumes: the same instance, the same
    // task, the same container.
    drop(container);
    let _container = run_recipe(host);
    wait_for("the new agent to connect", WAIT, || {
        let text = std::fs::read_to_string(host.join("log/ecs-agent.log")).unwrap_or_default();
        Ok((text.matches("connected to ACS").count() >= 2).then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", agent_logs()));
    let again = cli.wait_connected_instance(CLUSTER, WAIT).unwrap();
    assert_eq!(again["containerInstanceArn"], instance_arn.as_str());
    let task = cli.describe_task(CLUSTER, &task_arn).unwrap();
    assert_eq!(task["lastStatus"], "RUNNING");
    assert_eq!(task_container_id(&task), task_container);
    let inspected = docker_inspect(&task_container).unwrap();
    assert_eq!(inspected["State"]["Running"], true);
    assert_eq!(inspected["RestartCount"], 0);

    // Healthy as Docker sees it, once its first check has run.
    wait_for("the agent container to be healthy", WAIT, || {
        let health = docker_inspect(NAME)?["State"]["Health"]["Status"].clone();
        Ok((health == "healthy").then_some(()))
    })
    .unwrap();

    // The new agent still runs the task: a stop goes through it.
    cli.ecs(&["stop-task", "--cluster", CLUSTER, "--task", &task_arn])
        .unwrap();
    cli.wait_task_status(CLUSTER, &task_arn, "STOPPED", WAIT)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", agent_logs()));
}
