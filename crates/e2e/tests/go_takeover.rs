//! Swapping this agent in on a host where the Go agent ran, tasks running
//! (docs/operations.md §11), on real Docker: the Go agent's checkpoint (the
//! recorded fixture, pointed at containers made here as the Go agent makes
//! them) is taken over, the same instance reconnects, its tasks keep
//! running untouched and are managed from then on; what cannot be carried
//! is refused with exit 5, leaving every file and container as it was.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use e2e::{docker_inspect, require_docker, wait_for, Agent, AgentOptions, Plane, TEST_IMAGE};
use ecs_agent::go_state::bolt;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(90);
const CLUSTER: &str = "takeover";
const GO_IMAGE: &str = "capture/busybox:local";

/// Both tests make containers under the fixture's names: one at a time.
static FIXTURE_NAMES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn fixture_dir() -> PathBuf {
    ecs_model::spec::require_or_skip("Go agent state fixture")
        .expect("the Go agent state fixture (../shared/spec)")
        .join("samples/go-agent-state")
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "docker {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The fixture's containers, made again here under the same names, labels,
/// volume and health check, as the Go agent made them; returns the fixture
/// ID of each with the new one.
fn stand_in_containers() -> Vec<(String, String)> {
    docker(&["tag", TEST_IMAGE, GO_IMAGE]);
    let listed: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(fixture_dir().join("containers.json")).unwrap(),
    )
    .unwrap();
    let mut ids = Vec::new();
    for c in listed {
        let name = c["Name"]
            .as_str()
            .unwrap()
            .trim_start_matches('/')
            .to_string();
        let _ = Command::new("docker").args(["rm", "-f", &name]).output();
        let mut args: Vec<String> = vec!["create".into(), "--name".into(), name.clone()];
        for (k, v) in c["Labels"].as_object().unwrap() {
            args.push("--label".into());
            args.push(format!("{k}={}", v.as_str().unwrap()));
        }
        for m in c["Mounts"].as_array().unwrap() {
            args.push("--mount".into());
            args.push(format!(
                "type=volume,source={},target={}",
                m["Name"].as_str().unwrap(),
                m["Destination"].as_str().unwrap()
            ));
        }
        let command: Vec<&str> = if name.contains("-web-") {
            args.extend(["--publish".into(), "8080".into()]);
            vec!["httpd", "-f", "-p", "8080"]
        } else if name.contains("-app-") {
            args.extend([
                "--health-cmd".into(),
                "true".into(),
                "--health-interval".into(),
                "2s".into(),
            ]);
            vec!["sleep", "3600"]
        } else if name.contains("-job-") {
            vec!["sh", "-c", "exit 3"]
        } else {
            vec!["sleep", "3600"]
        };
        args.push(GO_IMAGE.into());
        args.extend(command.iter().map(|s| s.to_string()));
        let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let id = docker(&arg_refs);
        docker(&["start", &id]);
        ids.push((c["Id"].as_str().unwrap().to_string(), id));
    }
    ids
}

/// A copy of the fixture's `agent.db` whose Docker IDs are the stand-ins'.
fn go_checkpoint_for(ids: &[(String, String)], dir: &Path, change: impl Fn(&mut Value)) {
    let mut buckets = bolt::read(&fixture_dir().join("agent.db")).unwrap();
    for bucket in buckets.values_mut() {
        for value in bucket.values_mut() {
            let mut text = String::from_utf8(value.clone()).unwrap();
            for (old, new) in ids {
                text = text.replace(old, new);
            }
            let mut json: Value = serde_json::from_str(&text).unwrap();
            if json.get("Arn").is_some() {
                change(&mut json);
            }
            *value = serde_json::to_vec(&json).unwrap();
        }
    }
    std::fs::create_dir_all(dir).unwrap();
    bolt::write(&dir.join("agent.db"), &buckets).unwrap();
}

fn plane_on_a_copy_of_the_fixture(root: &Path) -> Plane {
    let data = root.join("plane");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::copy(
        fixture_dir().join("plane-data/state.json"),
        data.join("state.json"),
    )
    .unwrap();
    Plane::start(&data).unwrap()
}

fn started_at(id: &str) -> Value {
    docker_inspect(id).unwrap()["State"]["StartedAt"].clone()
}

fn task_arn(id: &str) -> String {
    format!("arn:aws:ecs:us-east-1:000000000000:task/takeover/{id}")
}

fn remove(ids: &[(String, String)]) {
    for (_, id) in ids {
        let _ = Command::new("docker").args(["rm", "-f", id]).output();
    }
    let _ = Command::new("docker")
        .args(["volume", "rm", "ecs-web-1-scratch-8efed9b1e885c6b05e00"])
        .output();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_go_agents_host_is_taken_over_with_its_tasks_running() {
    require_docker();
    let _names = FIXTURE_NAMES.lock().await;
    let root = tempfile::tempdir().unwrap();
    let ids = stand_in_containers();
    let data_dir = root.path().join("data");
    go_checkpoint_for(&ids, &data_dir, |_| {});
    let go_file = std::fs::read(data_dir.join("agent.db")).unwrap();
    // The running ones; the exited one belongs to a stopped task whose
    // cleanup is due at once.
    let before: Vec<(String, Value)> = ids
        .iter()
        .filter(|(old, _)| !old.starts_with("d88c5de0"))
        .map(|(_, id)| (id.clone(), started_at(id)))
        .collect();
    let plane = plane_on_a_copy_of_the_fixture(root.path());
    let cli = plane.cli();
    let options = AgentOptions {
        cluster: CLUSTER.into(),
        ..AgentOptions::new(&data_dir)
    }
    .env("ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION", "5s");
    let agent = Agent::start(&plane, &options).unwrap();
    agent.wait_acs_connected(WAIT).unwrap();
    let log = agent.own_log_text();
    assert!(log.contains("took over the Go agent's state"), "{log}");

    // The same instance, connected again.
    let instance = cli.wait_connected_instance(CLUSTER, WAIT).unwrap();
    assert_eq!(
        instance["containerInstanceArn"],
        "arn:aws:ecs:us-east-1:000000000000:container-instance/takeover/3d5468c47c0e1dc0bb3977c3fdf9b73b"
    );
    let web = task_arn("216dc7a0ffcab7d2b819b217ce825416");
    let pair = task_arn("88c802333ce2ec6d6cfb2fcde136fb2e");
    for arn in [&web, &pair] {
        let task = cli.describe_task(CLUSTER, arn).unwrap();
        assert_eq!(task["lastStatus"], "RUNNING", "{task}");
    }
    // Adopted as they are: same containers, never restarted.
    for (id, started) in &before {
        assert_eq!(&started_at(id), started, "container {id} was restarted");
    }
    assert_eq!(
        std::fs::read(data_dir.join("agent.db")).unwrap(),
        go_file,
        "the Go agent's file is left as it was"
    );
    assert!(data_dir.join("ecs-agent.redb").exists());

    // The taken-over task is managed: StopTask stops its container, and the
    // stopped task (and the one stopped before) is cleaned up on schedule.
    cli.ecs(&["stop-task", "--cluster", CLUSTER, "--task", &web])
        .unwrap();
    cli.wait_task_status(CLUSTER, &web, "STOPPED", WAIT)
        .unwrap();
    let web_id = &ids
        .iter()
        .find(|(old, _)| old.starts_with("cad0d897"))
        .unwrap()
        .1;
    let job_id = &ids
        .iter()
        .find(|(old, _)| old.starts_with("d88c5de0"))
        .unwrap()
        .1;
    wait_for("the stopped tasks' containers to be removed", WAIT, || {
        let gone = |id: &str| docker_inspect(id).is_err();
        Ok((gone(web_id) && gone(job_id)).then_some(()))
    })
    .unwrap();
    // Its task-scoped volume went with it, as the Go agent would have done.
    let volume = Command::new("docker")
        .args([
            "volume",
            "inspect",
            "ecs-web-1-scratch-8efed9b1e885c6b05e00",
        ])
        .output()
        .unwrap();
    assert!(!volume.status.success(), "task volume removed at cleanup");
    let pair_task = cli.describe_task(CLUSTER, &pair).unwrap();
    assert_eq!(pair_task["lastStatus"], "RUNNING");

    // Hand back (docs/operations.md §12): stop, export, and the written
    // agent.db holds the instance and the task still running.
    assert_eq!(agent.terminate(WAIT).unwrap(), Some(0));
    let data = data_dir.display().to_string();
    let printed = e2e::agent_host_command(
        "export-go-state",
        &[
            ("ECS_DATADIR", data.as_str()),
            ("ECS_CLUSTER", CLUSTER),
            ("AWS_DEFAULT_REGION", e2e::REGION),
        ],
    )
    .unwrap();
    let exported = bolt::read(&data_dir.join("agent.db")).unwrap();
    let meta = |key: &str| -> Value {
        serde_json::from_slice(&exported["metadata"][key.as_bytes()]).unwrap()
    };
    assert_eq!(
        meta("container-instance-arn"),
        instance["containerInstanceArn"]
    );
    assert_eq!(meta("cluster-name"), CLUSTER);
    assert_eq!(meta("agent-version"), "1.105.0");
    let tasks: Vec<Value> = exported["tasks"]
        .values()
        .map(|v| serde_json::from_slice(v).unwrap())
        .collect();
    assert_eq!(tasks.len(), 1, "the cleaned-up tasks are gone: {printed}");
    assert_eq!(tasks[0]["Arn"], pair.as_str());
    assert_eq!(tasks[0]["KnownStatus"], "RUNNING");
    let files: Vec<String> = std::fs::read_dir(&data_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        files
            .iter()
            .any(|f| f.starts_with("agent.db.before-export-")),
        "{files:?}"
    );
    assert!(
        files
            .iter()
            .any(|f| f.starts_with("ecs-agent.redb.handed-back-")),
        "{files:?}"
    );
    assert!(!data_dir.join("ecs-agent.redb").exists());

    // What was handed back is taken over again, as from the Go agent:
    // the same instance, the task still running in the same containers.
    let agent = Agent::start(&plane, &options).unwrap();
    agent.wait_acs_connected(WAIT).unwrap();
    assert!(agent
        .own_log_text()
        .contains("took over the Go agent's state"));
    let pair_task = cli.describe_task(CLUSTER, &pair).unwrap();
    assert_eq!(pair_task["lastStatus"], "RUNNING");
    for (id, started) in before.iter().filter(|(id, _)| id != web_id) {
        assert_eq!(&started_at(id), started, "container {id} was restarted");
    }
    drop(agent);
    drop(plane);
    remove(&ids);
}

fn wait_exit(agent: &mut Agent) -> Option<i32> {
    wait_for("the agent to exit", WAIT, || agent.exit_code()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn what_cannot_be_carried_is_refused_with_exit_5_leaving_everything_as_it_was() {
    require_docker();
    let _names = FIXTURE_NAMES.lock().await;
    let root = tempfile::tempdir().unwrap();
    let ids = stand_in_containers();
    let before: Vec<(String, Value)> = ids
        .iter()
        .map(|(_, id)| (id.clone(), started_at(id)))
        .collect();
    let plane = plane_on_a_copy_of_the_fixture(root.path());
    type Change = fn(&mut Value);
    let cases: [(&str, &str, Change); 2] = [
        ("awsvpc", CLUSTER, |t| {
            if t["Family"] == "web" {
                t["NetworkMode"] = "awsvpc".into();
            }
        }),
        ("ECS_CLUSTER=takeover", "default", |_| {}),
    ];
    for (expected, cluster, change) in cases {
        let data_dir = root.path().join(format!("data-{cluster}-{expected}"));
        go_checkpoint_for(&ids, &data_dir, change);
        let go_file = std::fs::read(data_dir.join("agent.db")).unwrap();
        let options = AgentOptions {
            cluster: cluster.into(),
            ..AgentOptions::new(&data_dir)
        };
        let mut agent = Agent::start(&plane, &options).unwrap();
        assert_eq!(wait_exit(&mut agent), Some(5));
        let log = agent.own_log_text();
        assert!(log.contains(expected), "{expected}: {log}");
        assert!(log.contains("Nothing was changed"), "{log}");
        assert_eq!(std::fs::read(data_dir.join("agent.db")).unwrap(), go_file);
        let mut files: Vec<String> = std::fs::read_dir(&data_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        assert_eq!(files, ["agent.db", "ecs-agent.log"], "nothing else written");
    }
    for (id, started) in &before {
        assert_eq!(&started_at(id), started, "container {id} was touched");
    }
    drop(plane);
    remove(&ids);
}
