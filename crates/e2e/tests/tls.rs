//! `ecs-local --tls-self-signed`: the AWS CLI and boto3 over HTTPS with
//! the plane's CA (`--ca-bundle`, `verify=`) or without verification; our
//! agent registering over HTTPS and connecting ACS and TCS over WSS with
//! `-k`, and with `AWS_CA_BUNDLE` instead; and an agent with neither
//! refused at registration.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use e2e::{require_docker, Agent, AgentOptions, Plane};
use serde_json::Value;

const CONNECT: Duration = Duration::from_secs(60);

fn connected_instances(plane: &Plane) -> usize {
    let cli = plane.cli();
    let list = cli
        .ecs(&["list-container-instances", "--cluster", "default"])
        .unwrap();
    let arns: Vec<&str> = list["containerInstanceArns"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    if arns.is_empty() {
        return 0;
    }
    let mut args = vec![
        "describe-container-instances",
        "--cluster",
        "default",
        "--container-instances",
    ];
    args.extend(arns);
    let described = cli.ecs(&args).unwrap();
    described["containerInstances"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["agentConnected"] == true)
        .count()
}

#[test]
fn clients_and_agents_reach_a_tls_plane_only_when_they_trust_it_or_say_k() {
    require_docker();
    let dir = tempfile::tempdir().unwrap();
    let port = e2e::free_port().unwrap();
    let plane =
        Plane::start_with_args(&dir.path().join("plane"), port, &["--tls-self-signed"]).unwrap();
    let url = plane.url();
    assert!(url.starts_with("https://"), "{url}");
    let ca = plane.ca_bundle.clone().unwrap();
    assert!(ca.exists(), "no {}", ca.display());
    let ca_text = ca.display().to_string();

    // The AWS CLI: with the CA, without verification, and with neither.
    let cli = plane.cli();
    assert_eq!(
        cli.ecs(&["list-clusters"]).unwrap()["clusterArns"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    e2e::aws_cli(&url, &["ecs", "list-clusters", "--no-verify-ssl"]).unwrap();
    let refused = e2e::aws_cli(&url, &["ecs", "list-clusters"]).unwrap_err();
    assert!(
        refused.to_string().to_lowercase().contains("certificate"),
        "{refused}"
    );
    // boto3 with verify= the CA.
    let script = format!(
        "import boto3\nprint(len(boto3.client('ecs', verify='{ca_text}').list_clusters()['clusterArns']))"
    );
    assert_eq!(e2e::python(&url, &script).unwrap().trim(), "1");

    // Our agent with -k: registration over HTTPS, ACS and TCS over WSS, a task.
    let insecure = Agent::start(
        &plane,
        &AgentOptions::new(&dir.path().join("agent-k")).arg("-k"),
    )
    .unwrap();
    cli.wait_connected_instance("default", CONNECT).unwrap();
    cli.register_simple("secured", &["sleep", "600"]).unwrap();
    let arn = cli.run_task("default", "secured").unwrap();
    cli.wait_task_status("default", &arn, "RUNNING", CONNECT)
        .unwrap();
    e2e::wait_for("TCS over WSS", CONNECT, || {
        Ok(insecure
            .own_log_text()
            .contains("connected to TCS")
            .then_some(()))
    })
    .unwrap();
    cli.ecs(&["stop-task", "--task", &arn]).unwrap();
    cli.wait_task_status("default", &arn, "STOPPED", CONNECT)
        .unwrap();
    e2e::remove_task_containers(&[arn]);
    insecure.terminate(Duration::from_secs(30)).unwrap();

    // With AWS_CA_BUNDLE and no -k: a second instance, connected.
    let trusting = Agent::start(
        &plane,
        &AgentOptions::new(&dir.path().join("agent-ca")).env("AWS_CA_BUNDLE", &ca_text),
    )
    .unwrap();
    trusting.wait_acs_connected(CONNECT).unwrap();
    // The first agent's connection may still be closing.
    e2e::wait_for("one connected instance", CONNECT, || {
        Ok((connected_instances(&plane) == 1).then_some(()))
    })
    .unwrap();
    trusting.terminate(Duration::from_secs(30)).unwrap();

    // With neither: refused at registration, for the certificate.
    let stranger =
        Agent::start(&plane, &AgentOptions::new(&dir.path().join("agent-none"))).unwrap();
    e2e::wait_for("the registration refusal", CONNECT, || {
        let log = stranger.own_log_text();
        Ok(log.contains("UnknownIssuer").then_some(()))
    })
    .unwrap();
    assert!(!stranger.own_log_text().contains("connected to ACS"));
    e2e::wait_for("no connected instance", CONNECT, || {
        Ok((connected_instances(&plane) == 0).then_some(()))
    })
    .unwrap();
    stranger.kill();

    // A bundle that is not one stops the agent at once, naming it.
    let bad = dir.path().join("not-a-bundle.pem");
    std::fs::write(&bad, "hello").unwrap();
    let mut damaged = Agent::start(
        &plane,
        &AgentOptions::new(&dir.path().join("agent-bad"))
            .env("AWS_CA_BUNDLE", &bad.display().to_string()),
    )
    .unwrap();
    let code = e2e::wait_for("the agent to exit", CONNECT, || damaged.exit_code()).unwrap();
    assert_eq!(code, Some(1));
    assert!(damaged.own_log_text().contains("not-a-bundle.pem"));
}

/// The binary's flags, without Docker: `--tls-name` puts a name in the
/// certificate, `--host-name` lets the console answer a name the
/// certificate does not have, any other name is refused (DNS rebinding),
/// and certificate files that cannot be read stop the plane with exit 1
/// and their name.
#[test]
fn tls_and_host_name_flags_reach_the_certificate_and_the_console() {
    let dir = tempfile::tempdir().unwrap();
    let port = e2e::free_port().unwrap();
    let plane = Plane::start_with_args(
        &dir.path().join("plane"),
        port,
        &[
            "--tls-self-signed",
            "--tls-name",
            "plane.test",
            "--host-name",
            "other.test",
        ],
    )
    .unwrap();
    let ca = plane.ca_bundle.clone().unwrap();
    let script = format!(
        r#"
import http.client, json, socket, ssl
def session(server_name, host, verify):
    ctx = ssl.create_default_context(cafile="{ca}")
    if not verify:
        ctx.check_hostname = False
    try:
        conn = http.client.HTTPSConnection("127.0.0.1", {port}, context=ctx)
        raw = socket.create_connection(("127.0.0.1", {port}))
        conn.sock = ctx.wrap_socket(raw, server_hostname=server_name)
        conn.request("GET", "/console/api/session", headers={{"Host": host}})
        return conn.getresponse().status
    except ssl.SSLCertVerificationError:
        return "unverified"
out = {{
    "plane.test": session("plane.test", "plane.test", True),
    "other.test in the certificate": session("other.test", "other.test", True),
    "other.test": session("plane.test", "other.test:{port}", False),
    "evil.test": session("plane.test", "evil.test:{port}", False),
}}
print(json.dumps(out))
"#,
        ca = ca.display()
    );
    let out: Value = serde_json::from_str(&e2e::python(&plane.url(), &script).unwrap()).unwrap();
    assert_eq!(out["plane.test"], 200, "{out}");
    assert_eq!(out["other.test in the certificate"], "unverified", "{out}");
    assert_eq!(out["other.test"], 200, "{out}");
    assert_eq!(out["evil.test"], 403, "{out}");
    drop(plane);

    let missing = dir.path().join("no-such-cert.pem");
    let out = std::process::Command::new(&e2e::binaries().plane)
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("other"))
        .arg("--tls-cert")
        .arg(&missing)
        .arg("--tls-key")
        .arg(&missing)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no-such-cert.pem"), "{stderr}");
}
