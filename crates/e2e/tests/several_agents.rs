//! Three agents on this one host (three data directories) join one
//! cluster of ecs-local. A service of 6 tasks spread over `instanceId` runs
//! 2 on each; draining one instance moves its 2 tasks to the other two,
//! which start before the drained ones stop.
//!
//! Only the first agent gets the local endpoints' ports (51678, 51679); the
//! others keep retrying them, which costs them nothing else. The cluster
//! has its own name, so no agent takes another test's containers for its
//! own lost ones.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use e2e::{
    docker_ids_with_label, require_docker, wait_for, Agent, AgentOptions, Cli, Plane, TEST_IMAGE,
};
use serde_json::{json, Value};

const CLUSTER: &str = "trio";
const SETTLE: Duration = Duration::from_secs(180);

/// The service's running tasks by container instance ARN.
fn placement(cli: &Cli) -> BTreeMap<String, Vec<String>> {
    let list = cli
        .ecs(&["list-tasks", "--cluster", CLUSTER, "--service-name", "web"])
        .unwrap();
    let arns: Vec<&str> = list["taskArns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if arns.is_empty() {
        return out;
    }
    let mut args = vec!["describe-tasks", "--cluster", CLUSTER, "--tasks"];
    args.extend(arns);
    let described = cli.ecs(&args).unwrap();
    for t in described["tasks"].as_array().unwrap() {
        if t["lastStatus"] == "RUNNING" && t["desiredStatus"] == "RUNNING" {
            out.entry(t["containerInstanceArn"].as_str().unwrap().to_owned())
                .or_default()
                .push(t["taskArn"].as_str().unwrap().to_owned());
        }
    }
    out
}

fn running_containers(tasks: &[String]) -> usize {
    tasks
        .iter()
        .map(|t| docker_ids_with_label("com.amazonaws.ecs.task-arn", t, false).len())
        .sum()
}

#[test]
fn a_service_spreads_over_three_agents_and_leaves_a_drained_one() {
    require_docker();
    let dir = tempfile::tempdir().unwrap();
    let plane = Plane::start(&dir.path().join("plane")).unwrap();
    let cli = plane.cli();
    cli.ecs(&["create-cluster", "--cluster-name", CLUSTER])
        .unwrap();
    let agents: Vec<Agent> = (0..3)
        .map(|n| {
            let mut options = AgentOptions::new(&dir.path().join(format!("agent{n}")));
            options.cluster = CLUSTER.to_owned();
            Agent::start(&plane, &options).unwrap()
        })
        .collect();
    let instances: Vec<String> = wait_for("three connected instances", SETTLE, || {
        let list = cli
            .ecs(&["list-container-instances", "--cluster", CLUSTER])
            .unwrap();
        let arns: Vec<String> = list["containerInstanceArns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect();
        if arns.len() != 3 {
            return Ok(None);
        }
        let mut args = vec!["describe-container-instances", "--cluster", CLUSTER];
        args.push("--container-instances");
        args.extend(arns.iter().map(String::as_str));
        let described = cli.ecs(&args)?;
        let connected = described["containerInstances"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["agentConnected"] == true);
        Ok(connected.then_some(arns))
    })
    .unwrap();

    cli.register(
        "trio-web",
        &json!([{"name": "main", "image": TEST_IMAGE, "command": ["sleep", "600"],
                 "memory": 16, "essential": true, "stopTimeout": 2}]),
    )
    .unwrap();
    cli.ecs(&[
        "create-service",
        "--cluster",
        CLUSTER,
        "--service-name",
        "web",
        "--task-definition",
        "trio-web",
        "--desired-count",
        "6",
        "--placement-strategy",
        "type=spread,field=instanceId",
    ])
    .unwrap();
    let spread = wait_for("2 tasks on each agent", SETTLE, || {
        let p = placement(&cli);
        let counts: Vec<usize> = p.values().map(Vec::len).collect();
        let all: Vec<String> = p.values().flatten().cloned().collect();
        Ok((counts == [2, 2, 2] && running_containers(&all) == 6).then_some(p))
    })
    .unwrap();

    let drained = &instances[0];
    let moved: Vec<String> = spread[drained].clone();
    let answer: Value = cli
        .ecs(&[
            "update-container-instances-state",
            "--cluster",
            CLUSTER,
            "--container-instances",
            drained,
            "--status",
            "DRAINING",
        ])
        .unwrap();
    assert_eq!(answer["containerInstances"][0]["status"], "DRAINING");
    let after = wait_for("the drained instance to be empty", SETTLE, || {
        let p = placement(&cli);
        let counts: Vec<usize> = p.values().map(Vec::len).collect();
        let all: Vec<String> = p.values().flatten().cloned().collect();
        let done = !p.contains_key(drained)
            && counts == [3, 3]
            && running_containers(&all) == 6
            && running_containers(&moved) == 0;
        Ok(done.then_some(p))
    })
    .unwrap();
    for tasks in spread.values().chain(after.values()) {
        assert!(!tasks.is_empty());
    }
    let events: Vec<String> = cli
        .ecs(&[
            "describe-services",
            "--cluster",
            CLUSTER,
            "--services",
            "web",
        ])
        .unwrap()["services"][0]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_owned())
        .collect();
    for task in &moved {
        let id = task.rsplit('/').next().unwrap();
        assert!(
            events
                .iter()
                .any(|e| e.starts_with("(service web) has stopped") && e.contains(id)),
            "no stop event for {id}: {events:?}"
        );
    }

    cli.ecs(&[
        "delete-service",
        "--cluster",
        CLUSTER,
        "--service",
        "web",
        "--force",
    ])
    .unwrap();
    let everything: Vec<String> = spread
        .values()
        .chain(after.values())
        .flatten()
        .cloned()
        .collect();
    wait_for("the service's containers to stop", SETTLE, || {
        Ok((running_containers(&everything) == 0).then_some(()))
    })
    .unwrap();
    drop(agents);
    e2e::remove_task_containers(&everything);
}
