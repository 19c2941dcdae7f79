//! The init service running the agent as a container, as ecs-init does
//! (docs/operations.md §3.1): `ECS_INIT_AGENT_IMAGE` names the image of
//! `make release`; the container `ecs-agent` registers and runs a task; an
//! update from ecs-local is loaded into Docker on exit 42 and the new
//! image runs at once; SIGTERM to the init service stops the container
//! with exit 0 and leaves the task running.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use e2e::{binaries, docker_inspect, free_port, require_docker, wait_for, workspace_root, Plane};

const WAIT: Duration = Duration::from_secs(120);
const LATEST: &str = "ecs-agent-rs:latest";

fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker").args(args).output().unwrap()
}

fn image_id(reference: &str) -> String {
    let out = docker(&["image", "inspect", reference, "--format", "{{.Id}}"]);
    assert!(
        out.status.success(),
        "{reference} is missing: `make release` builds it (`make test` does first)"
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Puts `ecs-agent-rs:latest` back on the release image and removes the
/// agent's container, also when the test fails.
struct Restore {
    release: String,
    old: String,
}

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", "ecs-agent"]);
        let _ = docker(&["tag", &self.release, LATEST]);
        let _ = docker(&["rmi", &self.old]);
    }
}

struct InitService(Child);

impl Drop for InitService {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_init_service_runs_updates_and_stops_the_agent_container() {
    require_docker();
    assert!(
        !docker(&["container", "inspect", "ecs-agent"])
            .status
            .success(),
        "a container named ecs-agent exists; this test would replace it"
    );
    let bundle: PathBuf = workspace_root().join(format!(
        "target/image/ecs-agent-rs-v{}.tar",
        env!("CARGO_PKG_VERSION")
    ));
    assert!(
        bundle.is_file(),
        "`make release` writes {}",
        bundle.display()
    );
    // The release image is the bundle's: loaded first, so that a build of
    // another checkout since then cannot stand in for it.
    let loaded = Command::new("docker")
        .args(["load", "-q", "-i"])
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(loaded.status.success(), "{loaded:?}");
    let release = image_id(LATEST);

    // The "installed" image: the release image with one more label, so
    // that the update (the release archive) is seen to replace it.
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    std::fs::write(
        work.join("Dockerfile"),
        format!("FROM {release}\nLABEL e2e.init-container=old\n"),
    )
    .unwrap();
    let built = Command::new("docker")
        .args(["build", "-q", "-t", LATEST])
        .arg(work)
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .unwrap();
    assert!(built.status.success(), "{built:?}");
    let old = image_id(LATEST);
    let _restore = Restore {
        release: release.clone(),
        old: old.clone(),
    };
    assert_ne!(old, release);

    let plane = Plane::start_with_args(
        &work.join("plane"),
        free_port().unwrap(),
        &["--agent-update-bundle", &bundle.display().to_string()],
    )
    .unwrap();
    let cli = plane.cli();
    let cache = work.join("cache");
    for d in ["data", "log", "cache"] {
        std::fs::create_dir_all(work.join(d)).unwrap();
    }
    let config = work.join("ecs.config");
    std::fs::write(
        &config,
        format!(
            "ECS_INIT_AGENT_IMAGE={LATEST}\nECS_BACKEND_HOST={}\nECS_CLUSTER=default\n\
             AWS_DEFAULT_REGION=us-east-1\nAWS_ACCESS_KEY_ID=AKIDEXAMPLE\n\
             AWS_SECRET_ACCESS_KEY=secret\nAWS_EC2_METADATA_DISABLED=true\n\
             ECS_IMAGE_PULL_BEHAVIOR=prefer-cached\nECS_CONTAINER_STOP_TIMEOUT=2s\n\
             ECS_UPDATE_DOWNLOAD_DIR={}\nECS_ENABLE_CONTAINER_METADATA=true\n",
            plane.url(),
            cache.display()
        ),
    )
    .unwrap();
    let service_log = work.join("init.log");
    let log_file = std::fs::File::create(&service_log).unwrap();
    let mut init = InitService(
        Command::new(&binaries().agent)
            .args(["init", "start"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("ECS_INIT_CONFIG_FILES", &config)
            .env("ECS_INIT_PID_FILE", work.join("init.pid"))
            .env("ECS_HOST_DATA_DIR", work)
            .env("ECS_INIT_HOST_LOG_DIR", work.join("log"))
            .stdout(Stdio::from(log_file.try_clone().unwrap()))
            .stderr(Stdio::from(log_file))
            .spawn()
            .unwrap(),
    );
    let logs = || {
        let agent = docker(&["logs", "--tail", "50", "ecs-agent"]);
        format!(
            "{}\n{}{}",
            std::fs::read_to_string(&service_log).unwrap_or_default(),
            String::from_utf8_lossy(&agent.stdout),
            String::from_utf8_lossy(&agent.stderr)
        )
    };

    let instance = cli
        .wait_connected_instance("default", WAIT)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", logs()));
    let arn = instance["containerInstanceArn"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(docker_inspect("ecs-agent").unwrap()["Image"], old.as_str());
    // Its files are in the host directories it was given.
    assert!(work.join("data/ecs-agent.redb").is_file());
    assert!(work.join("log/ecs-agent.log").is_file());
    cli.register_simple("contained", &["sleep", "600"]).unwrap();
    let task_arn = cli.run_task("default", "contained").unwrap();
    let task = cli
        .wait_task_status("default", &task_arn, "RUNNING", WAIT)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", logs()));
    let task_container = task["containers"][0]["runtimeId"]
        .as_str()
        .unwrap()
        .to_string();

    // The init service told the container where its /data is on the
    // host, so the task's metadata file reaches the task.
    wait_for("the task's metadata file", WAIT, || {
        let out = Command::new("docker")
            .args([
                "exec",
                &task_container,
                "sh",
                "-c",
                "cat \"$ECS_CONTAINER_METADATA_FILE\"",
            ])
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        Ok((text.contains(&task_arn) && text.contains("READY")).then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", logs()));

    cli.ecs(&[
        "update-container-agent",
        "--cluster",
        "default",
        "--container-instance",
        &arn,
    ])
    .unwrap();
    wait_for("the update to complete", WAIT, || {
        let v = cli.ecs(&[
            "describe-container-instances",
            "--container-instances",
            &arn,
        ])?;
        Ok((v["containerInstances"][0]["agentUpdateStatus"] == "UPDATED").then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", logs()));
    let text = logs();
    assert!(text.contains("the agent exited: Code(42)"), "{text}");
    assert!(text.contains("installed the update"), "{text}");
    assert_eq!(image_id(LATEST), release, "the bundle's image is loaded");
    assert_eq!(
        docker_inspect("ecs-agent").unwrap()["Image"],
        release.as_str(),
        "the new image runs"
    );
    assert!(!cache.join("desired-image").exists());
    assert_eq!(
        docker_inspect(&task_container).unwrap()["State"]["Running"],
        true
    );

    // SIGTERM to the init service: the container stops cleanly, the task
    // keeps running.
    let status = Command::new("kill")
        .args(["-TERM", &init.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = wait_for("the init service to end", WAIT, || {
        Ok(init.0.try_wait()?.map(|s| s.code()))
    })
    .unwrap();
    assert_eq!(exit, Some(0), "{}", logs());
    let agent = docker_inspect("ecs-agent").unwrap();
    assert_eq!(agent["State"]["Running"], false);
    assert_eq!(agent["State"]["ExitCode"], 0, "{}", logs());
    let inspected = docker_inspect(&task_container).unwrap();
    assert_eq!(inspected["State"]["Running"], true);
    assert_eq!(inspected["RestartCount"], 0);
}
