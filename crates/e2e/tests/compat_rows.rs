//! Rows of docs/compatibility.md that need the real binaries: registration
//! (the attribute check and its exit 5, the `default` cluster created when
//! missing, transient errors retried), instance metadata switched off
//! (`AWS_EC2_METADATA_DISABLED`, `-blackhole-ec2-metadata`, external
//! mode), and `ECS_RESERVED_MEMORY` in the registered MEMORY resource.
//!
//! A stand-in metadata service on loopback is handed to every agent here
//! through `AWS_EC2_METADATA_SERVICE_ENDPOINT`, so a request that should
//! not happen is seen rather than lost; nothing is ever sent to
//! 169.254.169.254.
#![allow(clippy::unwrap_used)]

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::fake_backend::FakeBackend;
use e2e::{require_docker, Agent, AgentOptions, Plane};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(120);

/// A metadata service that answers nothing and counts its connections.
fn counting_imds() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            seen.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    (url, count)
}

/// Waits until the agent has acked an ACS heartbeat of the fake backend.
async fn connected(backend: &FakeBackend, agent: &Agent) {
    if backend
        .wait_frame("HeartbeatAckRequest", WAIT)
        .await
        .is_none()
    {
        panic!("the agent never connected: {}", agent.log_text());
    }
}

/// Waits for the agent to exit; its exit code.
fn exit_code(agent: &mut Agent) -> Option<i32> {
    e2e::wait_for("the agent to exit", WAIT, || agent.exit_code()).unwrap()
}

fn registered_integer(instance: &Value, name: &str) -> Option<i64> {
    instance["registeredResources"]
        .as_array()?
        .iter()
        .find(|r| r["name"] == name)?["integerValue"]
        .as_i64()
}

/// The Go agent checks that RegisterContainerInstance's response carries
/// every attribute it sent with the same value; when one is missing the
/// instance was not accepted as described, and the agent exits 5 (no
/// restart by the supervisor) without trying again.
#[tokio::test(flavor = "multi_thread")]
async fn an_attribute_the_backend_does_not_echo_makes_the_agent_exit_5() {
    require_docker();
    let backend = FakeBackend::start().await.unwrap();
    backend.leave_out_of_registration("tier");
    let dir = tempfile::tempdir().unwrap();
    let options =
        AgentOptions::new(dir.path()).env("ECS_INSTANCE_ATTRIBUTES", r#"{"tier":"gold"}"#);
    let mut agent = Agent::start_at(&backend.url(), &options).unwrap();
    let started = Instant::now();
    let code = loop {
        if let Some(code) = agent.exit_code().unwrap() {
            break code;
        }
        assert!(
            started.elapsed() < WAIT,
            "the agent is still running: {}",
            agent.log_text()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let log = agent.log_text();
    assert_eq!(code, Some(5), "{log}");
    assert!(log.contains("Attribute validation failed"), "{log}");
    assert!(log.contains("tier"), "{log}");
    let registrations = backend.api_calls("RegisterContainerInstance");
    assert_eq!(registrations.len(), 1, "not retried: {registrations:?}");
    let sent = registrations[0]["attributes"].as_array().unwrap();
    assert!(
        sent.iter()
            .any(|a| a["name"] == "tier" && a["value"] == "gold"),
        "{sent:?}"
    );
}

/// With `ECS_CLUSTER` unset the agent registers in `default`, and when
/// the backend says that cluster does not exist it creates it once and
/// registers again.
#[tokio::test(flavor = "multi_thread")]
async fn a_missing_default_cluster_is_created_when_no_cluster_is_configured() {
    require_docker();
    let backend = FakeBackend::start().await.unwrap();
    backend.fail_next_registration(400, "ClusterNotFoundException");
    let dir = tempfile::tempdir().unwrap();
    let options = AgentOptions::new(dir.path()).without("ECS_CLUSTER");
    let agent = Agent::start_at(&backend.url(), &options).unwrap();
    connected(&backend, &agent).await;
    let created = backend.api_calls("CreateCluster");
    assert_eq!(created.len(), 1, "{created:?}");
    assert_eq!(created[0]["clusterName"], "default");
    let registrations = backend.api_calls("RegisterContainerInstance");
    assert_eq!(registrations.len(), 2, "{registrations:?}");
    assert!(registrations.iter().all(|r| r["cluster"] == "default"));
}

/// Server errors at registration are retried (by the SDK, then by the
/// agent after a backoff) until the backend accepts the instance.
#[tokio::test(flavor = "multi_thread")]
async fn transient_registration_errors_are_retried() {
    require_docker();
    let backend = FakeBackend::start().await.unwrap();
    for _ in 0..3 {
        backend.fail_next_registration(500, "ServerException");
    }
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start_at(&backend.url(), &AgentOptions::new(dir.path())).unwrap();
    connected(&backend, &agent).await;
    let log = agent.log_text();
    assert!(log.contains("registration failed; retrying"), "{log}");
    let registrations = backend.api_calls("RegisterContainerInstance");
    assert_eq!(registrations.len(), 4, "{registrations:?}");
    assert!(backend.api_calls("CreateCluster").is_empty());
}

/// `AWS_EC2_METADATA_DISABLED=true` (as every other test here runs): not
/// even a given metadata address is asked anything.
#[test]
fn disabled_metadata_is_never_asked() {
    require_docker();
    let (imds_url, imds_connections) = counting_imds();
    let dir = tempfile::tempdir().unwrap();
    let plane = Plane::start(&dir.path().join("plane")).unwrap();
    let options = AgentOptions::new(&dir.path().join("agent"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds_url);
    let agent = Agent::start(&plane, &options).unwrap();
    let instance = plane
        .cli()
        .wait_connected_instance("default", WAIT)
        .unwrap();
    let log = agent.log_text();
    assert!(!log.contains("external mode"), "{log}");
    assert_eq!(
        instance["ec2InstanceId"].as_str().unwrap_or_default(),
        "",
        "{instance}"
    );
    assert_eq!(imds_connections.load(Ordering::SeqCst), 0, "{log}");
}

/// `ECS_EXTERNAL=true`: the metadata service is never asked anything (not
/// even with its address given), registration carries no identity
/// document, and the agent says it runs in external mode.
#[test]
fn external_mode_never_asks_instance_metadata() {
    require_docker();
    let (imds_url, imds_connections) = counting_imds();
    let dir = tempfile::tempdir().unwrap();
    let plane = Plane::start(&dir.path().join("plane")).unwrap();
    let options = AgentOptions::new(&dir.path().join("agent"))
        .without("AWS_EC2_METADATA_DISABLED")
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds_url)
        .env("ECS_EXTERNAL", "true");
    let agent = Agent::start(&plane, &options).unwrap();
    let instance = plane
        .cli()
        .wait_connected_instance("default", WAIT)
        .unwrap();
    let log = agent.log_text();
    assert!(
        log.contains("ECS Agent is running in external mode."),
        "{log}"
    );
    assert_eq!(
        instance["ec2InstanceId"].as_str().unwrap_or_default(),
        "",
        "{instance}"
    );
    assert_eq!(imds_connections.load(Ordering::SeqCst), 0, "{log}");
}

/// External mode takes the region from the environment only: without
/// `AWS_DEFAULT_REGION` the configuration is refused (exit 1) before
/// anything else happens.
#[test]
fn external_mode_needs_the_region_in_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let options = AgentOptions::new(dir.path())
        .without("AWS_DEFAULT_REGION")
        .env("ECS_EXTERNAL", "true");
    // No backend is ever reached: the address only has to be well formed.
    let mut agent = Agent::start_at("http://127.0.0.1:9", &options).unwrap();
    let code = exit_code(&mut agent);
    let log = agent.log_text();
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains("AWS_DEFAULT_REGION must be set in the environment in external mode"),
        "{log}"
    );
}

/// `-blackhole-ec2-metadata`: the agent registers without asking the
/// metadata service anything, and is not in external mode.
#[test]
fn blackhole_flag_never_asks_instance_metadata() {
    require_docker();
    let (imds_url, imds_connections) = counting_imds();
    let dir = tempfile::tempdir().unwrap();
    let plane = Plane::start(&dir.path().join("plane")).unwrap();
    let agent_dir = dir.path().join("agent");
    std::fs::create_dir_all(&agent_dir).unwrap();
    let log_path = agent_dir.join("ecs-agent.log");
    let log_file = std::fs::File::create(&log_path).unwrap();
    // The harness starts agents without flags; this one is started by hand
    // with the harness's environment, less the switch that turns metadata
    // off, plus the flag.
    let mut child = Command::new(&e2e::binaries().agent)
        .arg("-blackhole-ec2-metadata")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("ECS_BACKEND_HOST", plane.url())
        .env("ECS_CLUSTER", "default")
        .env("AWS_DEFAULT_REGION", e2e::REGION)
        .env("AWS_ACCESS_KEY_ID", e2e::ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", e2e::SECRET_KEY)
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds_url)
        .env("ECS_DATADIR", &agent_dir)
        .env("ECS_LOGLEVEL", "debug")
        .env("ECS_AUDIT_LOGFILE", agent_dir.join("audit.log"))
        .env(
            "ECS_AGENT_CONFIG_FILE_PATH",
            agent_dir.join("no-config.json"),
        )
        .stdout(Stdio::from(log_file.try_clone().unwrap()))
        .stderr(Stdio::from(log_file))
        .spawn()
        .unwrap();
    let connected = plane.cli().wait_connected_instance("default", WAIT);
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let stopped = e2e::wait_for("the agent to stop", WAIT, || Ok(child.try_wait()?));
    if stopped.is_err() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let instance = connected.unwrap_or_else(|e| panic!("{e:#}\n{log}"));
    assert_eq!(
        instance["ec2InstanceId"].as_str().unwrap_or_default(),
        "",
        "{instance}"
    );
    assert!(!log.contains("external mode"), "{log}");
    assert_eq!(imds_connections.load(Ordering::SeqCst), 0, "{log}");
}

/// `ECS_RESERVED_MEMORY` (MiB) is taken from `MemTotal` in the MEMORY
/// resource the instance registers with.
#[test]
fn reserved_memory_is_subtracted_from_the_registered_memory() {
    require_docker();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let total_mib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .map(|kib| kib.trim().parse::<i64>().unwrap() / 1024)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let plane = Plane::start(&dir.path().join("plane")).unwrap();
    let options = AgentOptions::new(&dir.path().join("agent")).env("ECS_RESERVED_MEMORY", "256");
    let _agent = Agent::start(&plane, &options).unwrap();
    let instance = plane
        .cli()
        .wait_connected_instance("default", WAIT)
        .unwrap();
    assert_eq!(
        registered_integer(&instance, "MEMORY"),
        Some(total_mib - 256),
        "{instance}"
    );
}
