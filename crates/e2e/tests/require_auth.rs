//! `ecs-local --require-auth`: our agent (registration, ACS and TCS
//! upgrades), the AWS CLI and boto3 sign with a pair from the credentials
//! file and get in; a wrong secret does not.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use e2e::{require_docker, Agent, AgentOptions, Plane, ACCESS_KEY, SECRET_KEY};
use serde_json::Value;

const CONNECT: Duration = Duration::from_secs(60);

#[test]
fn signed_clients_and_the_agent_get_in_and_a_wrong_secret_does_not() {
    require_docker();
    let dir = tempfile::tempdir().unwrap();
    let credentials = dir.path().join("credentials");
    std::fs::write(
        &credentials,
        format!(
            "[default]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n"
        ),
    )
    .unwrap();
    let port = e2e::free_port().unwrap();
    let plane = Plane::start_with_args(
        &dir.path().join("plane"),
        port,
        &[
            "--require-auth",
            "--credentials",
            &credentials.display().to_string(),
        ],
    )
    .unwrap();
    let _agent = Agent::start(&plane, &AgentOptions::new(&dir.path().join("agent"))).unwrap();
    let cli = plane.cli();
    // Registration, then the signed ACS upgrade: the instance connects.
    let instance = cli.wait_connected_instance("default", CONNECT).unwrap();
    assert_eq!(instance["agentConnected"], true);
    cli.register_simple("guarded", &["sleep", "600"]).unwrap();
    let arn = cli.run_task("default", "guarded").unwrap();
    cli.wait_task_status("default", &arn, "RUNNING", CONNECT)
        .unwrap();
    // Telemetry arrives over the signed TCS upgrade.
    e2e::wait_for("a TCS frame", CONNECT, || {
        let page = plane.metrics_page()?;
        let frames = page
            .lines()
            .find_map(|l| l.strip_prefix("ecs_local_tcs_frames_received_total "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        Ok((frames > 0).then_some(()))
    })
    .unwrap();

    let script = format!(
        r#"
import boto3, json
good = boto3.client("ecs")
bad = boto3.client("ecs", aws_access_key_id="{ACCESS_KEY}", aws_secret_access_key="not-the-secret")
stranger = boto3.client("ecs", aws_access_key_id="AKIDSTRANGER", aws_secret_access_key="x")
out = {{"clusters": good.list_clusters()["clusterArns"]}}
for name, client in [("bad", bad), ("stranger", stranger)]:
    try:
        client.list_clusters()
        out[name] = None
    except Exception as e:
        out[name] = e.response["Error"]["Code"]
print(json.dumps(out))
"#
    );
    let out: Value = serde_json::from_str(&e2e::python(&plane.url(), &script).unwrap()).unwrap();
    assert_eq!(out["clusters"].as_array().unwrap().len(), 1);
    assert_eq!(out["bad"], "InvalidSignatureException");
    assert_eq!(out["stranger"], "UnrecognizedClientException");

    cli.ecs(&["stop-task", "--task", &arn]).unwrap();
    cli.wait_task_status("default", &arn, "STOPPED", CONNECT)
        .unwrap();
    e2e::remove_task_containers(&[arn]);
}
