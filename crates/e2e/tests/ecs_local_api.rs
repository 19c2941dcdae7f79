//! ecs-local's API as the AWS CLI and boto3 use it, unmodified, with no
//! agent: clusters with `include`, task definitions and their tags, account
//! settings, capacity providers, attributes, services, and the errors ECS
//! answers, by exception name.
#![allow(clippy::unwrap_used)]

use e2e::{Cli, Plane};
use serde_json::Value;

fn fails_with(cli: &Cli, args: &[&str], exception: &str) {
    match cli.ecs(args) {
        Ok(v) => panic!("aws ecs {args:?} succeeded: {v}"),
        Err(e) => assert!(
            e.to_string().contains(exception),
            "aws ecs {args:?}: expected {exception}, got {e}"
        ),
    }
}

#[test]
fn the_aws_cli_drives_the_api_without_an_agent() {
    let dir = tempfile::tempdir().unwrap();
    let plane = Plane::start(&dir.path().join("plane")).unwrap();
    let cli = plane.cli();

    // Clusters: tags, settings and statistics only when asked for.
    cli.ecs(&[
        "create-cluster",
        "--cluster-name",
        "prod",
        "--tags",
        "key=team,value=a",
        "--settings",
        "name=containerInsights,value=enabled",
        "--configuration",
        "executeCommandConfiguration={logging=DEFAULT}",
    ])
    .unwrap();
    let plain = cli
        .ecs(&["describe-clusters", "--clusters", "prod"])
        .unwrap();
    assert!(plain["clusters"][0].get("tags").is_none(), "{plain}");
    let full = cli
        .ecs(&[
            "describe-clusters",
            "--clusters",
            "prod",
            "nope",
            "--include",
            "TAGS",
            "SETTINGS",
            "STATISTICS",
            "CONFIGURATIONS",
        ])
        .unwrap();
    let cluster = &full["clusters"][0];
    assert_eq!(
        cluster["configuration"]["executeCommandConfiguration"]["logging"],
        "DEFAULT"
    );
    assert!(plain["clusters"][0].get("configuration").is_none());
    assert_eq!(cluster["tags"][0]["key"], "team");
    assert_eq!(cluster["settings"][0]["value"], "enabled");
    let stats: Vec<&str> = cluster["statistics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert!(stats.contains(&"runningEC2TasksCount"), "{stats:?}");
    assert_eq!(full["failures"][0]["reason"], "MISSING");

    // Task definitions: revisions, tags, listing, deregistration, deletion.
    let defs = r#"[{"name":"main","image":"busybox","memory":32}]"#;
    for _ in 0..2 {
        cli.ecs(&[
            "register-task-definition",
            "--family",
            "web",
            "--container-definitions",
            defs,
            "--tags",
            "key=app,value=web",
        ])
        .unwrap();
    }
    let described = cli
        .ecs(&[
            "describe-task-definition",
            "--task-definition",
            "web:1",
            "--include",
            "TAGS",
        ])
        .unwrap();
    assert_eq!(described["tags"][0]["value"], "web");
    let listed = cli
        .ecs(&[
            "list-task-definitions",
            "--family-prefix",
            "web",
            "--sort",
            "DESC",
        ])
        .unwrap();
    let arns = listed["taskDefinitionArns"].as_array().unwrap();
    assert!(arns[0].as_str().unwrap().ends_with("web:2"), "{listed}");
    cli.ecs(&["deregister-task-definition", "--task-definition", "web:1"])
        .unwrap();
    let deleted = cli
        .ecs(&["delete-task-definitions", "--task-definitions", "web:1"])
        .unwrap();
    assert_eq!(
        deleted["taskDefinitions"][0]["status"],
        "DELETE_IN_PROGRESS"
    );
    let families = cli.ecs(&["list-task-definition-families"]).unwrap();
    assert_eq!(families["families"][0], "web");

    // Account settings and capacity providers.
    let settings = cli
        .ecs(&["list-account-settings", "--name", "containerInsights"])
        .unwrap();
    assert_eq!(settings["settings"][0]["value"], "disabled");
    cli.ecs(&[
        "put-account-setting",
        "--name",
        "containerInsights",
        "--value",
        "enabled",
    ])
    .unwrap();
    let settings = cli
        .ecs(&["list-account-settings", "--name", "containerInsights"])
        .unwrap();
    assert_eq!(settings["settings"][0]["value"], "enabled");
    fails_with(
        &cli,
        &[
            "put-account-setting",
            "--name",
            "containerInsights",
            "--value",
            "maybe",
        ],
        "InvalidParameterException",
    );
    let providers = cli.ecs(&["describe-capacity-providers"]).unwrap();
    let names: Vec<&str> = providers["capacityProviders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["FARGATE", "FARGATE_SPOT"]);

    // Services exist without instances; their tasks wait for some.
    let created = cli
        .ecs(&[
            "create-service",
            "--cluster",
            "prod",
            "--service-name",
            "web",
            "--task-definition",
            "web",
            "--desired-count",
            "1",
            "--placement-constraints",
            "type=memberOf,expression=attribute:ecs.os-type==linux",
        ])
        .unwrap();
    assert_eq!(
        created["service"]["placementConstraints"][0]["type"],
        "memberOf"
    );
    let listed = cli.ecs(&["list-services", "--cluster", "prod"]).unwrap();
    assert_eq!(listed["serviceArns"].as_array().unwrap().len(), 1);
    fails_with(
        &cli,
        &["delete-cluster", "--cluster", "prod"],
        "ClusterContainsServicesException",
    );
    fails_with(
        &cli,
        &[
            "update-service",
            "--cluster",
            "prod",
            "--service",
            "nope",
            "--desired-count",
            "0",
        ],
        "ServiceNotFoundException",
    );
    fails_with(
        &cli,
        &[
            "run-task",
            "--cluster",
            "prod",
            "--task-definition",
            "web",
            "--placement-strategy",
            "type=binpack,field=disk",
        ],
        "InvalidParameterException",
    );
    fails_with(
        &cli,
        &[
            "put-attributes",
            "--cluster",
            "prod",
            "--attributes",
            "name=stack,value=prod,targetId=0123456789abcdef",
        ],
        "TargetNotFoundException",
    );
    fails_with(
        &cli,
        &[
            "list-container-instances",
            "--cluster",
            "prod",
            "--filter",
            "attribute:x ==",
        ],
        "InvalidParameterException",
    );
    fails_with(
        &cli,
        &["list-services-by-namespace", "--namespace", "n"],
        "UnknownOperationException",
    );

    // boto3 sees the same plane.
    let script = r#"
import boto3, json
ecs = boto3.client("ecs")
svc = ecs.describe_services(cluster="prod", services=["web"])["services"][0]
settings = ecs.list_account_settings(name="containerInsights")["settings"]
try:
    ecs.describe_services(cluster="nowhere", services=["web"])
    missing = None
except ecs.exceptions.ClusterNotFoundException as e:
    missing = e.response["Error"]["Code"]
print(json.dumps({"desired": svc["desiredCount"], "setting": settings[0]["value"], "missing": missing}))
"#;
    let out: Value = serde_json::from_str(&e2e::python(&plane.url(), script).unwrap()).unwrap();
    assert_eq!(out["desired"], 1);
    assert_eq!(out["setting"], "enabled");
    assert_eq!(out["missing"], "ClusterNotFoundException");
}

#[test]
fn json_logs_and_the_liveness_route() {
    let dir = tempfile::tempdir().unwrap();
    let port = e2e::free_port().unwrap();
    let plane =
        Plane::start_with_args(&dir.path().join("plane"), port, &["--log-format", "json"]).unwrap();
    assert_eq!(e2e::http_get(port, "/healthz").unwrap().trim(), "ok");
    let cli = plane.cli();
    cli.ecs(&["create-cluster", "--cluster-name", "logged"])
        .unwrap();
    fails_with(
        &cli,
        &["describe-services", "--services", "x", "--cluster", "nope"],
        "ClusterNotFoundException",
    );
    drop(plane);
    let log = std::fs::read_to_string(dir.path().join("plane/ecs-local.log")).unwrap();
    let lines: Vec<Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines.iter().any(|l| l["message"] == "ecs-local listening"),
        "{log}"
    );
    let refused = lines
        .iter()
        .find(|l| l["message"] == "request refused")
        .unwrap_or_else(|| panic!("{log}"));
    assert_eq!(refused["level"], "INFO");
    assert_eq!(refused["code"], "ClusterNotFoundException");
    assert_eq!(refused["action"], "DescribeServices");
}
