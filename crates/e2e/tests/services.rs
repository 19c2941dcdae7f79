//! A service on the real agent and Docker, driven with the AWS CLI and
//! boto3: its tasks run, one killed with `docker kill` is replaced, a
//! rolling update moves it from revision 1 to 2, a revision whose tasks exit
//! at once trips the circuit breaker, which rolls back to revision 2, and
//! deleting the service stops its containers.
#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::Duration;

use e2e::{
    docker_ids_with_label, require_docker, wait_for, Agent, AgentOptions, Cli, Plane, TEST_IMAGE,
};
use serde_json::{json, Value};

const CONNECT: Duration = Duration::from_secs(60);
/// Generous: a loaded machine makes the test slow, never wrong.
const SETTLE: Duration = Duration::from_secs(180);

fn register(cli: &Cli, command: &str) -> String {
    cli.register(
        "svc-web",
        &json!([{
            "name": "main",
            "image": TEST_IMAGE,
            "command": ["sh", "-c", command],
            "memory": 32,
            "essential": true,
            "stopTimeout": 2
        }]),
    )
    .unwrap()
}

fn describe(cli: &Cli) -> Value {
    let v = cli
        .ecs(&[
            "describe-services",
            "--cluster",
            "default",
            "--services",
            "web",
        ])
        .unwrap();
    v["services"][0].clone()
}

/// The service's tasks wanted running: (ARN, task definition ARN, last status).
fn tasks(cli: &Cli) -> Vec<(String, String, String)> {
    let list = cli
        .ecs(&[
            "list-tasks",
            "--cluster",
            "default",
            "--service-name",
            "web",
        ])
        .unwrap();
    let arns: Vec<&str> = list["taskArns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    if arns.is_empty() {
        return Vec::new();
    }
    let mut args = vec!["describe-tasks", "--cluster", "default", "--tasks"];
    args.extend(arns);
    let described = cli.ecs(&args).unwrap();
    described["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["taskArn"].as_str().unwrap().to_owned(),
                t["taskDefinitionArn"].as_str().unwrap().to_owned(),
                t["lastStatus"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Waits until the service has `count` tasks, all RUNNING on `definition`,
/// one deployment whose rollout COMPLETED, and one running container each.
fn wait_settled(cli: &Cli, count: usize, definition: &str) -> Vec<String> {
    wait_for("the service to settle", SETTLE, || {
        let tasks = tasks(cli);
        let on_it = tasks
            .iter()
            .filter(|(_, d, s)| d == definition && s == "RUNNING")
            .count();
        let service = describe(cli);
        let deployments = service["deployments"].as_array().unwrap();
        let done = deployments.len() == 1
            && deployments[0]["rolloutState"] == "COMPLETED"
            && service["runningCount"] == count;
        let arns: Vec<String> = tasks.into_iter().map(|t| t.0).collect();
        let containers: usize = arns
            .iter()
            .map(|a| docker_ids_with_label("com.amazonaws.ecs.task-arn", a, false).len())
            .sum();
        Ok((done && on_it == count && arns.len() == count && containers == count).then_some(arns))
    })
    .unwrap()
}

fn events(cli: &Cli) -> Vec<String> {
    describe(cli)["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_service_is_kept_running_updated_rolled_back_and_deleted() {
    require_docker();
    let dir = tempfile::tempdir().unwrap();
    let plane = Plane::start(&dir.path().join("plane")).unwrap();
    let agent = Agent::start(&plane, &AgentOptions::new(&dir.path().join("agent"))).unwrap();
    let cli = plane.cli();
    cli.wait_connected_instance("default", CONNECT).unwrap();
    let v1 = register(&cli, "sleep 600");

    let created = cli
        .ecs(&[
            "create-service",
            "--service-name",
            "web",
            "--task-definition",
            "svc-web",
            "--desired-count",
            "2",
        ])
        .unwrap();
    assert_eq!(created["service"]["status"], "ACTIVE");
    let first = wait_settled(&cli, 2, &v1);

    // A container killed by hand: its task stops and another replaces it.
    let victim = &first[0];
    let container = docker_ids_with_label("com.amazonaws.ecs.task-arn", victim, false);
    let status = Command::new("docker")
        .args(["kill", &container[0]])
        .status()
        .unwrap();
    assert!(status.success());
    let replaced = wait_settled(&cli, 2, &v1);
    assert!(!replaced.contains(victim), "{replaced:?}");
    assert!(replaced.contains(&first[1]), "the other task is untouched");
    let stopped = cli.describe_task("default", victim).unwrap();
    assert_eq!(stopped["lastStatus"], "STOPPED");
    assert_eq!(stopped["stopCode"], "EssentialContainerExited");
    assert!(events(&cli)
        .iter()
        .any(|e| e.starts_with("(service web) has started 1 task: ")));

    // boto3 sees the same service.
    let script = r#"
import boto3, json
ecs = boto3.client("ecs")
arns = ecs.list_services(cluster="default")["serviceArns"]
svc = ecs.describe_services(cluster="default", services=arns)["services"][0]
print(json.dumps({"arns": arns, "running": svc["runningCount"], "strategy": svc["schedulingStrategy"]}))
"#;
    let out: Value = serde_json::from_str(&e2e::python(&plane.url(), script).unwrap()).unwrap();
    assert_eq!(out["arns"].as_array().unwrap().len(), 1);
    assert_eq!(out["running"], 2);
    assert_eq!(out["strategy"], "REPLICA");

    // A rolling update to revision 2.
    let v2 = register(&cli, "sleep 601");
    cli.ecs(&[
        "update-service",
        "--service",
        "web",
        "--task-definition",
        "svc-web",
    ])
    .unwrap();
    let second = wait_settled(&cli, 2, &v2);
    assert!(second.iter().all(|t| !replaced.contains(t)));

    // Revision 3 exits at once: the circuit breaker fails it and rolls
    // back to revision 2, whose tasks keep running throughout.
    let v3 = register(&cli, "exit 3");
    cli.ecs(&[
        "update-service",
        "--service",
        "web",
        "--task-definition",
        &v3,
        "--deployment-configuration",
        "deploymentCircuitBreaker={enable=true,rollback=true},maximumPercent=200,minimumHealthyPercent=100",
    ])
    .unwrap();
    wait_for("the breaker to roll back", SETTLE, || {
        let events = events(&cli);
        let failed = events
            .iter()
            .any(|e| e.ends_with("deployment failed: tasks failed to start."));
        let service = describe(&cli);
        let head = service["deployments"][0]["taskDefinition"].clone();
        Ok((failed && head == v2.as_str()).then_some(()))
    })
    .unwrap();
    // Revision 3's tasks reach RUNNING before they exit, so some of
    // revision 2's may have been stopped meanwhile, as in ECS; the
    // rollback brings the service back to two tasks of revision 2.
    let after = wait_settled(&cli, 2, &v2);

    // Deleting with force stops the containers; the service goes INACTIVE.
    let deleted = cli
        .ecs(&["delete-service", "--service", "web", "--force"])
        .unwrap();
    assert_eq!(deleted["service"]["status"], "DRAINING");
    wait_for("the service to be INACTIVE", SETTLE, || {
        Ok((describe(&cli)["status"] == "INACTIVE").then_some(()))
    })
    .unwrap();
    wait_for("the containers to stop", SETTLE, || {
        let left: usize = after
            .iter()
            .map(|a| docker_ids_with_label("com.amazonaws.ecs.task-arn", a, false).len())
            .sum();
        Ok((left == 0).then_some(()))
    })
    .unwrap();
    let listed = cli.ecs(&["list-services"]).unwrap();
    assert!(listed["serviceArns"].as_array().unwrap().is_empty());
    drop(agent);
    let mut all = first;
    all.extend(replaced);
    all.extend(second);
    e2e::remove_task_containers(&all);
}
