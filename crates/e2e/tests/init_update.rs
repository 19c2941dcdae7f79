//! An agent update from the control plane to the new binary running, with
//! the real parts end to end (docs/operations.md §6.3): ecs-local offers
//! the image archive `make release` writes; the agent, run by `ecs-agent
//! init start`, downloads and checks it and exits 42; the init service
//! takes `/agent` out of the archive, puts it in place of the agent binary
//! and starts it at once; the instance comes back UPDATED with its task
//! still running in the same container.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use e2e::{
    docker_inspect, free_port, require_docker, static_binaries, wait_for, workspace_root, Plane,
};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(120);

/// The update bundle `make release` writes next to the image.
fn release_bundle() -> PathBuf {
    let path = workspace_root().join(format!(
        "target/image/ecs-agent-rs-v{}.tar",
        env!("CARGO_PKG_VERSION")
    ));
    assert!(
        path.is_file(),
        "{} is missing: `make release` writes it (`make test` does first)",
        path.display()
    );
    path
}

/// `/agent` of the image in the bundle, as `docker` itself reads it.
fn agent_in_image(work: &Path) -> Vec<u8> {
    let name = format!("ecs-agent-rs:{}", env!("CARGO_PKG_VERSION"));
    let created = Command::new("docker")
        .args(["create", &name])
        .output()
        .unwrap();
    assert!(created.status.success(), "the image {name} is missing");
    let id = String::from_utf8_lossy(&created.stdout).trim().to_string();
    let out = work.join("agent-from-image");
    let copied = Command::new("docker")
        .args(["cp", &format!("{id}:/agent")])
        .arg(&out)
        .status()
        .unwrap();
    let _ = Command::new("docker").args(["rm", &id]).output();
    assert!(copied.success());
    std::fs::read(out).unwrap()
}

/// `ecs-agent init start`, killed with whatever it runs if the test fails.
struct InitService(Child);

impl Drop for InitService {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

fn describe(plane: &Plane, arn: &str) -> Value {
    plane
        .cli()
        .ecs(&[
            "describe-container-instances",
            "--cluster",
            "default",
            "--container-instances",
            arn,
        ])
        .unwrap()["containerInstances"][0]
        .clone()
}

#[test]
fn an_update_from_ecs_local_installs_the_image_agent_and_the_instance_comes_back_updated() {
    require_docker();
    let bundle = release_bundle();
    let (static_agent, _) = static_binaries();
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    let plane = Plane::start_with_args(
        &work.join("plane"),
        free_port().unwrap(),
        &["--agent-update-bundle", &bundle.display().to_string()],
    )
    .unwrap();
    let cli = plane.cli();

    // The "installed" agent: a copy the update may replace.
    let installed = work.join("bin/ecs-agent");
    std::fs::create_dir_all(installed.parent().unwrap()).unwrap();
    std::fs::copy(&static_agent, &installed).unwrap();
    let new_agent = agent_in_image(work);
    assert_ne!(
        std::fs::read(&installed).unwrap(),
        new_agent,
        "the image holds the stripped binary, so the update is visible"
    );
    let config = work.join("ecs.config");
    std::fs::write(
        &config,
        format!(
            "ECS_BACKEND_HOST={}\nECS_CLUSTER=default\nAWS_DEFAULT_REGION=us-east-1\n\
             AWS_ACCESS_KEY_ID=AKIDEXAMPLE\nAWS_SECRET_ACCESS_KEY=secret\n\
             AWS_EC2_METADATA_DISABLED=true\nECS_IMAGE_PULL_BEHAVIOR=prefer-cached\n\
             ECS_CONTAINER_STOP_TIMEOUT=2s\nECS_DATADIR={}\nECS_LOGFILE={}\n\
             ECS_UPDATE_DOWNLOAD_DIR={}\nECS_AUDIT_LOGFILE={}\n\
             ECS_AGENT_CONFIG_FILE_PATH={}\n",
            plane.url(),
            work.join("data").display(),
            work.join("log/ecs-agent.log").display(),
            work.join("cache").display(),
            work.join("log/audit.log").display(),
            work.join("no-config.json").display(),
        ),
    )
    .unwrap();
    std::fs::create_dir_all(work.join("cache")).unwrap();
    let service_log = work.join("init.log");
    let log_file = std::fs::File::create(&service_log).unwrap();
    // The init service runs from the installed binary, as systemd runs it.
    let _init = InitService(
        Command::new(&installed)
            .args(["init", "start"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("ECS_INIT_CONFIG_FILES", &config)
            .env("ECS_INIT_PID_FILE", work.join("init.pid"))
            .stdout(Stdio::from(log_file.try_clone().unwrap()))
            .stderr(Stdio::from(log_file))
            .spawn()
            .unwrap(),
    );
    let logs = || std::fs::read_to_string(&service_log).unwrap_or_default();

    let instance = cli
        .wait_connected_instance("default", WAIT)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", logs()));
    let arn = instance["containerInstanceArn"]
        .as_str()
        .unwrap()
        .to_string();
    cli.register_simple("updated-sleeper", &["sleep", "600"])
        .unwrap();
    let task_arn = cli.run_task("default", "updated-sleeper").unwrap();
    let task = cli
        .wait_task_status("default", &task_arn, "RUNNING", WAIT)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", logs()));
    let container = task["containers"][0]["runtimeId"]
        .as_str()
        .unwrap()
        .to_string();

    cli.ecs(&[
        "update-container-agent",
        "--cluster",
        "default",
        "--container-instance",
        &arn,
    ])
    .unwrap();
    wait_for("the update to complete", WAIT, || {
        Ok((describe(&plane, &arn)["agentUpdateStatus"] == "UPDATED").then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", logs()));

    let log = logs();
    assert!(log.contains("the agent exited: Code(42)"), "{log}");
    assert!(log.contains("installed the update"), "{log}");
    assert_eq!(
        std::fs::read(&installed).unwrap(),
        new_agent,
        "the image's agent is in place"
    );
    assert!(!work.join("cache/desired-image").exists());
    let instance = describe(&plane, &arn);
    assert_eq!(instance["agentConnected"], true);
    let task = cli.describe_task("default", &task_arn).unwrap();
    assert_eq!(task["lastStatus"], "RUNNING");
    let inspected = docker_inspect(&container).unwrap();
    assert_eq!(inspected["State"]["Running"], true);
    assert_eq!(inspected["RestartCount"], 0);
    // The new agent runs the task: a stop goes through it.
    cli.ecs(&["stop-task", "--task", &task_arn]).unwrap();
    cli.wait_task_status("default", &task_arn, "STOPPED", WAIT)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", logs()));
}
