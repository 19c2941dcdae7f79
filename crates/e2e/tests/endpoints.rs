//! The agent's local endpoints seen from real containers: credentials and
//! task metadata through `169.254.170.2` (the host's NAT rules, set up and
//! torn down by `ecs-agent host-setup`/`host-teardown`), introspection and
//! the metadata file. The endpoints listen on fixed ports, so every test
//! here holds the host routing lock for its whole run.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::{host_routing, require_docker, wait_for, Agent, AgentOptions, Cli, Plane, TEST_IMAGE};
use serde_json::Value;

const ROLE_ARN: &str = "arn:aws:iam::000000000000:role/e2e-task-role";
const SETTLE: Duration = Duration::from_secs(60);
/// The task endpoint's throttle in the first test: requests a second, and
/// the burst. The rate stays above what the test's own polling of one
/// path needs.
const PROBE_RATE: u32 = 2;
const PROBE_BURST: usize = 60;

/// A plain HTTP/1.1 GET on the host: status and body.
fn get(port: u16, target: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Runs `sh -c script` inside the container; stdout on success.
fn exec(docker_id: &str, script: &str) -> Result<String, String> {
    let out = Command::new("docker")
        .args(["exec", docker_id, "sh", "-c", script])
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// `wget` inside the container; the URL may use the container's variables.
fn fetch_inside(docker_id: &str, url: &str) -> Result<String, String> {
    exec(docker_id, &format!("wget -q -O- \"{url}\""))
}

fn register_with_role(cli: &Cli, family: &str, network_mode: &str) {
    let defs = serde_json::json!([{
        "name": "main", "image": TEST_IMAGE, "command": ["sleep", "600"],
        "memory": 32, "essential": true
    }]);
    cli.ecs(&[
        "register-task-definition",
        "--family",
        family,
        "--task-role-arn",
        ROLE_ARN,
        "--network-mode",
        network_mode,
        "--container-definitions",
        &defs.to_string(),
    ])
    .unwrap();
}

/// What ecs-local issued for a task (its local-only route).
fn issued(plane: &Plane, task_arn: &str) -> Value {
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("task", task_arn)
        .finish();
    let (status, body) = get(plane.port, &format!("/_local/v1/task-credentials?{query}"));
    assert_eq!(status, 200, "{body}");
    json(&body)["taskRoleCredentials"].clone()
}

fn running_container(cli: &Cli, arn: &str) -> String {
    let task = cli
        .wait_task_status("default", arn, "RUNNING", SETTLE)
        .unwrap();
    task["containers"][0]["runtimeId"]
        .as_str()
        .unwrap()
        .to_string()
}

fn env_of(docker_id: &str, name: &str) -> String {
    exec(docker_id, &format!("printf %s \"${name}\"")).unwrap()
}

#[test]
fn bridge_containers_reach_their_own_credentials_and_metadata() {
    require_docker();
    let _routing = host_routing().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let plane = Plane::start(&dir.path().join("plane")).unwrap();
    let agent = Agent::start(
        &plane,
        &AgentOptions::new(&dir.path().join("agent"))
            .env("ECS_ENABLE_TASK_IAM_ROLE", "true")
            .env("ECS_ENABLE_CONTAINER_METADATA", "true")
            // A burst of 60, then a slow refill, so that being throttled
            // does not depend on how fast this machine sends requests.
            .env(
                "ECS_TASK_METADATA_RPS_LIMIT",
                &format!("{PROBE_RATE},{PROBE_BURST}"),
            ),
    )
    .unwrap();
    let cli = plane.cli();
    cli.wait_connected_instance("default", SETTLE).unwrap();
    register_with_role(&cli, "with-role", "bridge");
    let first = cli.run_task("default", "with-role").unwrap();
    let second = cli.run_task("default", "with-role").unwrap();
    let a = running_container(&cli, &first);
    let b = running_container(&cli, &second);

    // Each container fetches its own keys, exactly as ecs-local issued them.
    let mine = issued(&plane, &first);
    let fetched = json(
        &fetch_inside(
            &a,
            "http://169.254.170.2$AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", agent.log_text())),
    );
    assert_eq!(fetched["RoleArn"], ROLE_ARN);
    assert_eq!(fetched["AccessKeyId"], mine["accessKeyId"]);
    assert_eq!(fetched["SecretAccessKey"], mine["secretAccessKey"]);
    assert_eq!(fetched["Token"], mine["sessionToken"]);
    assert_eq!(fetched["Expiration"], mine["expiration"]);
    let keys: Vec<&str> = fetched
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys.len(), 5, "{fetched}");

    // It learns only its own ID; the other task's differs, and an ID it
    // makes up gets nothing.
    let uri_a = env_of(&a, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
    let uri_b = env_of(&b, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
    assert!(uri_a.starts_with("/v2/credentials/"), "{uri_a}");
    assert_ne!(uri_a, uri_b);
    let other = json(&fetch_inside(&b, &format!("http://169.254.170.2{uri_b}")).unwrap());
    assert_eq!(other["AccessKeyId"], issued(&plane, &second)["accessKeyId"]);
    assert_ne!(other["AccessKeyId"], fetched["AccessKeyId"]);
    let guessed = format!("/v2/credentials/{}", uuid::Uuid::new_v4());
    let refused = fetch_inside(&a, &format!("http://169.254.170.2{guessed}")).unwrap_err();
    assert!(refused.contains("400"), "{refused}");
    // The same refusals, with their bodies, from the host.
    let (status, body) = get(51679, &guessed);
    assert_eq!(status, 400);
    assert_eq!(
        body,
        r#"{"code":"InvalidIdInRequest","message":"CredentialsV2Request: Credentials not found","HTTPErrorCode":400}"#
    );
    let (status, _) = get(51679, "/v1/credentials");
    assert_eq!(status, 400);

    // Task metadata v3 and v4 about itself.
    let v4 = json(&fetch_inside(&a, "$ECS_CONTAINER_METADATA_URI_V4").unwrap());
    assert_eq!(v4["DockerId"], a);
    assert_eq!(v4["Name"], "main");
    assert_eq!(v4["KnownStatus"], "RUNNING");
    assert_eq!(v4["Networks"][0]["NetworkMode"], "bridge");
    assert_eq!(v4["Labels"]["com.amazonaws.ecs.task-arn"], first);
    let task = json(&fetch_inside(&a, "$ECS_CONTAINER_METADATA_URI_V4/task").unwrap());
    assert_eq!(task["TaskARN"], first);
    assert_eq!(task["Family"], "with-role");
    assert_eq!(task["LaunchType"], "EC2");
    assert_eq!(task["FaultInjectionEnabled"], false);
    assert_eq!(task["Containers"].as_array().unwrap().len(), 1);
    let v3 = json(&fetch_inside(&a, "$ECS_CONTAINER_METADATA_URI/task").unwrap());
    assert_eq!(v3["TaskARN"], first);
    assert!(v3.get("LaunchType").is_none());
    let tagged = json(&fetch_inside(&a, "$ECS_CONTAINER_METADATA_URI_V4/taskWithTags").unwrap());
    assert_eq!(tagged["TaskARN"], first);
    assert!(tagged.get("Errors").is_none(), "{tagged}");

    // Stats are read from the kernel, in Docker's stats shape.
    let stats = wait_for("a stats sample", SETTLE, || {
        let s = json(&fetch_inside(&a, "$ECS_CONTAINER_METADATA_URI_V4/stats").unwrap());
        Ok(s.get("read").is_some().then_some(s))
    })
    .unwrap();
    let inspect = e2e::docker_inspect(&a).unwrap();
    assert_eq!(stats["id"], inspect["Id"], "{stats}");
    assert_eq!(stats["name"], inspect["Name"], "{stats}");
    assert_eq!(
        stats["memory_stats"]["limit"], inspect["HostConfig"]["Memory"],
        "the task's 32 MiB: {stats}"
    );
    let usage = stats["memory_stats"]["usage"].as_u64().unwrap();
    assert!(usage > 0 && usage < 32 << 20, "{stats}");
    assert!(
        stats["cpu_stats"]["cpu_usage"]["total_usage"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert!(stats["cpu_stats"]["system_cpu_usage"].as_u64().unwrap() > 0);
    assert!(
        stats["networks"]["eth0"]["rx_bytes"].is_u64(),
        "bridge: {stats}"
    );
    for key in [
        "preread",
        "pids_stats",
        "blkio_stats",
        "precpu_stats",
        "storage_stats",
    ] {
        assert!(stats.get(key).is_some(), "{key} missing: {stats}");
    }
    let task_stats = json(&fetch_inside(&a, "$ECS_CONTAINER_METADATA_URI/task/stats").unwrap());
    assert!(task_stats[&a].is_object(), "{task_stats}");

    // The metadata file is complete once the container runs.
    let file = wait_for("the metadata file to be READY", SETTLE, || {
        let text = exec(&a, "cat \"$ECS_CONTAINER_METADATA_FILE\"").unwrap_or_default();
        Ok(text.contains("READY").then_some(text))
    })
    .unwrap();
    let file = json(&file);
    assert_eq!(file["TaskARN"], first);
    assert_eq!(file["ContainerID"], a);
    assert_eq!(file["Networks"][0]["NetworkMode"], "bridge");

    // Introspection finds the task by a short Docker ID.
    let (status, body) = get(51678, &format!("/v1/tasks?dockerid={}", &a[..12]));
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["Arn"], first);

    let (status, body) = get(51678, "/v1/metadata");
    assert_eq!(status, 200);
    let metadata = json(&body);
    assert_eq!(metadata["Cluster"], "default");
    assert!(metadata["ContainerInstanceArn"]
        .as_str()
        .unwrap()
        .contains(":container-instance/default/"));
    let (status, body) = get(51678, "/license");
    assert_eq!(status, 200);
    assert!(body.contains("Apache License"));

    // One source and path may burst PROBE_BURST requests, then PROBE_RATE
    // a second: the burst always passes, and after it no more pass than the
    // rate refilled while they were made, however slow the machine is.
    let probing = Instant::now();
    let mut statuses: Vec<u16> = Vec::new();
    while !statuses.contains(&429) {
        assert!(probing.elapsed() < SETTLE, "never throttled: {statuses:?}");
        statuses.push(get(51679, "/v2/credentials/throttle-probe").0);
    }
    let elapsed = probing.elapsed().as_secs_f64();
    let passed = statuses.len() - 1;
    assert!(
        passed >= PROBE_BURST,
        "refused within the burst: {statuses:?}"
    );
    assert!(statuses[..passed].iter().all(|s| *s == 400), "{statuses:?}");
    let refilled = f64::from(PROBE_RATE) * elapsed;
    assert!(
        passed as f64 <= PROBE_BURST as f64 + refilled + 1e-6,
        "{passed} passed in {elapsed:.3} s"
    );

    // Once the task stops, its credentials are gone.
    cli.ecs(&["stop-task", "--task", &first]).unwrap();
    cli.wait_task_status("default", &first, "STOPPED", SETTLE)
        .unwrap();
    let (status, _) = get(51679, &uri_a);
    assert_eq!(status, 400);
    let (status, _) = get(51679, &uri_b);
    assert_eq!(status, 200);

    // The audit log saw the requests and never an ID.
    let audit = std::fs::read_to_string(dir.path().join("agent/audit.log")).unwrap();
    assert!(audit.contains("\"/v2/credentials\""), "{audit}");
    assert!(audit.contains("GetCredentials 2 default"), "{audit}");
    assert!(
        !audit.contains(&uri_a["/v2/credentials/".len()..]),
        "{audit}"
    );
    // Nor does the agent's own log hold a secret.
    assert!(!agent
        .log_text()
        .contains(mine["secretAccessKey"].as_str().unwrap()));
}

#[test]
fn host_network_tasks_with_a_role_need_the_option() {
    require_docker();
    let _routing = host_routing().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let plane = Plane::start(&dir.path().join("plane")).unwrap();
    let cli = plane.cli();
    register_with_role(&cli, "host-role", "host");

    // Task roles on, host network mode not: the task is not placed here.
    let refusing = Agent::start(
        &plane,
        &AgentOptions::new(&dir.path().join("refusing")).env("ECS_ENABLE_TASK_IAM_ROLE", "true"),
    )
    .unwrap();
    cli.wait_connected_instance("default", SETTLE).unwrap();
    let placed = cli
        .ecs(&[
            "run-task",
            "--cluster",
            "default",
            "--task-definition",
            "host-role",
        ])
        .unwrap();
    assert_eq!(
        placed["tasks"].as_array().map(Vec::len),
        Some(0),
        "{placed}"
    );
    assert_eq!(placed["failures"][0]["reason"], "ATTRIBUTE", "{placed}");
    refusing.terminate(Duration::from_secs(20)).unwrap();

    // With both options the host-network container fetches its keys
    // through the host's OUTPUT redirect.
    let opts = AgentOptions::new(&dir.path().join("allowing"))
        .env("ECS_CLUSTER", "hostnet")
        .env("ECS_ENABLE_TASK_IAM_ROLE", "true")
        .env("ECS_ENABLE_TASK_IAM_ROLE_NETWORK_HOST", "true");
    cli.ecs(&["create-cluster", "--cluster-name", "hostnet"])
        .unwrap();
    let agent = Agent::start(&plane, &opts).unwrap();
    cli.wait_connected_instance("hostnet", SETTLE).unwrap();
    let arn = cli.run_task("hostnet", "host-role").unwrap();
    let task = cli
        .wait_task_status("hostnet", &arn, "RUNNING", SETTLE)
        .unwrap();
    let id = task["containers"][0]["runtimeId"].as_str().unwrap();
    let fetched = json(
        &fetch_inside(
            id,
            "http://169.254.170.2$AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", agent.log_text())),
    );
    assert_eq!(fetched["AccessKeyId"], issued(&plane, &arn)["accessKeyId"]);
    let v4 = json(&fetch_inside(id, "$ECS_CONTAINER_METADATA_URI_V4").unwrap());
    assert_eq!(v4["Networks"][0]["NetworkMode"], "host");
    assert_eq!(v4["Networks"][0]["IPv4Addresses"][0], "");
    cli.ecs(&["stop-task", "--cluster", "hostnet", "--task", &arn])
        .unwrap();
    cli.wait_task_status("hostnet", &arn, "STOPPED", SETTLE)
        .unwrap();
}

/// The first answer once the task endpoint listens.
fn get_when_up(target: &str) -> (u16, String) {
    wait_for("the task endpoint to listen", SETTLE, || {
        Ok(TcpStream::connect(("127.0.0.1", 51679))
            .is_ok()
            .then_some(()))
    })
    .unwrap();
    get(51679, target)
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_are_pending_after_a_restart_until_acs_sends_them_again() {
    use e2e::fake_backend::FakeBackend;
    require_docker();
    let _routing = host_routing().unwrap();
    let backend = FakeBackend::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let opts = AgentOptions::new(dir.path()).env("ECS_ENABLE_TASK_IAM_ROLE", "true");
    let agent = Agent::start_at(&backend.url(), &opts).unwrap();
    backend
        .wait_frame("HeartbeatAckRequest", SETTLE)
        .await
        .expect("agent connected");
    let arn = "arn:aws:ecs:us-east-1:123456789012:task/default/0000000000000000000000000000cred";
    let creds = |key: &str, expiration: &str| {
        serde_json::json!({"credentialsId": "e2e-cred-1", "roleArn": ROLE_ARN,
            "accessKeyId": key, "secretAccessKey": "secret", "sessionToken": "token",
            "expiration": expiration})
    };
    let task = serde_json::json!({
        "arn": arn, "family": "cred", "version": "1", "desiredStatus": "RUNNING",
        "networkMode": "bridge", "launchType": "EC2",
        "roleCredentials": creds("ASIAFIRST", "2030-01-01T00:00:00Z"),
        "containers": [{"name": "main", "image": TEST_IMAGE, "command": ["sleep", "600"],
            "memory": 32, "essential": true, "overrides": "{}"}]
    });
    backend.send_payload("pl-1", 1, vec![task]);
    // The payload's credentials are acked with the payload's message ID.
    let ack = backend
        .wait_frame("IAMRoleCredentialsAckRequest", SETTLE)
        .await
        .expect("credentials ack");
    assert_eq!(
        ack,
        r#"{"type":"IAMRoleCredentialsAckRequest","message":{"credentialsId":"e2e-cred-1","expiration":"2030-01-01T00:00:00Z","messageId":"pl-1"}}"#
    );
    backend
        .wait_task_status(arn, "RUNNING", SETTLE)
        .await
        .expect("task running");
    let (status, body) = get_when_up("/v2/credentials/e2e-cred-1");
    assert_eq!(
        (status, json(&body)["AccessKeyId"].clone()),
        (200, "ASIAFIRST".into())
    );

    // Credentials are never saved: after a restart the known ID answers
    // "not yet" until ACS sends them again.
    agent.kill();
    let agent = Agent::start_at(&backend.url(), &opts).unwrap();
    let (status, body) = get_when_up("/v2/credentials/e2e-cred-1");
    assert_eq!(
        (status, body.as_str()),
        (
            503,
            r#"{"code":"CredentialsUninitialized","message":"CredentialsV2Request: Credentials uninitialized for ID","HTTPErrorCode":503}"#
        ),
        "{}",
        agent.log_text()
    );
    let refresh = |message_id: &str, task_arn: &str| {
        serde_json::json!({"type": "IAMRoleCredentialsMessage", "message": {
            "messageId": message_id, "taskArn": task_arn,
            "taskClusterArn": "arn:aws:ecs:us-east-1:123456789012:cluster/default",
            "roleType": "TaskApplication",
            "roleCredentials": creds("ASIASECOND", "2030-01-01T01:00:00Z")}})
        .to_string()
    };
    backend.send(refresh("cr-2", arn));
    let ack = backend
        .wait_frame("\"cr-2\"", SETTLE)
        .await
        .expect("refresh ack");
    assert_eq!(
        ack,
        r#"{"type":"IAMRoleCredentialsAckRequest","message":{"credentialsId":"e2e-cred-1","expiration":"2030-01-01T01:00:00Z","messageId":"cr-2"}}"#
    );
    let (status, body) = get(51679, "/v2/credentials/e2e-cred-1");
    assert_eq!(
        (status, json(&body)["AccessKeyId"].clone()),
        (200, "ASIASECOND".into())
    );
    // A refresh for a task the agent does not know is not acked: once the
    // agent has logged that it refused it, no ack may follow.
    let unknown =
        "arn:aws:ecs:us-east-1:123456789012:task/default/ffffffffffffffffffffffffffffffff";
    backend.send(refresh("cr-3", unknown));
    tokio::task::block_in_place(|| {
        wait_for("the agent to refuse the refresh", SETTLE, || {
            Ok(agent
                .own_log_text()
                .lines()
                .any(|l| l.contains("this agent does not know") && l.contains(unknown))
                .then_some(()))
        })
    })
    .unwrap();
    assert!(backend
        .wait_frame("\"cr-3\"", Duration::from_secs(3))
        .await
        .is_none());
    e2e::remove_task_containers(&[arn.to_string()]);
    drop(agent);
}
