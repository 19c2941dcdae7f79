//! Image handling end to end: pulls from a private registry (started per
//! test on loopback, with htpasswd authentication) using the engine-wide
//! credentials in both formats, wrong credentials and unreachable
//! registries stopping the task, and the `once` and `prefer-cached` pull
//! behaviours, told apart by the registry's own request log.
#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use e2e::registry::Registry;
use e2e::{free_port, require_docker, Agent, AgentOptions, Cli, Plane, TEST_IMAGE};
use serde_json::{json, Value};

const CONNECT: Duration = Duration::from_secs(60);
/// Long enough for a pull's five attempts with backoff (about 15 s).
const SETTLE: Duration = Duration::from_secs(90);
const USER: &str = "ecs-e2e";

/// Local image tags a test made; removed when dropped (declare it before
/// the plane, so the plane's containers go first).
struct LocalImages(Vec<String>);

impl Drop for LocalImages {
    fn drop(&mut self) {
        for image in &self.0 {
            let _ = Command::new("docker").args(["rmi", image]).output();
        }
    }
}

/// A name no other test (or test run) uses.
fn unique(what: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{what}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

fn present_locally(image: &str) -> bool {
    Command::new("docker")
        .args(["image", "inspect", image])
        .output()
        .unwrap()
        .status
        .success()
}

/// Standard base64 (with padding), for the `dockercfg` `auth` member.
fn base64(text: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in text.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn start(
    options: impl FnOnce(AgentOptions) -> AgentOptions,
) -> (tempfile::TempDir, Plane, Agent, AgentOptions) {
    require_docker();
    let dir = tempfile::tempdir().unwrap();
    let plane = Plane::start(&dir.path().join("plane")).unwrap();
    let options = options(AgentOptions::new(&dir.path().join("agent")));
    let agent = Agent::start(&plane, &options).unwrap();
    plane
        .cli()
        .wait_connected_instance("default", CONNECT)
        .unwrap();
    (dir, plane, agent, options)
}

/// Registers a one-container task definition for `image` and runs it.
fn run_image(cli: &Cli, family: &str, image: &str) -> String {
    let defs = json!([{"name": "main", "image": image, "command": ["sleep", "600"],
                       "memory": 32, "essential": true}]);
    cli.register(family, &defs).unwrap();
    cli.run_task("default", family).unwrap()
}

fn container_reason(task: &Value) -> String {
    task["containers"][0]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Agent log lines reporting a failed pull attempt of `image`.
fn failed_attempts(agent: &Agent, image: &str) -> usize {
    agent
        .log_text()
        .lines()
        .filter(|l| l.contains("image pull attempt failed") && l.contains(image))
        .count()
}

/// The full path (through ECS_ENGINE_AUTH_TYPE/DATA, the agent, Docker
/// and the registry) for one credentials format.
fn private_image_runs(auth_type: &str, auth_data: impl FnOnce(&Registry, &str) -> Value) {
    let password = unique("pw");
    let registry = Registry::start(USER, &password).unwrap();
    let repository = format!("e2e/{}", unique(auth_type));
    let image = registry
        .push(TEST_IMAGE, &format!("{repository}:1"), false)
        .unwrap();
    let _images = LocalImages(vec![image.clone()]);
    assert!(!present_locally(&image), "the task must really pull");
    let data = auth_data(&registry, &password).to_string();
    let (_dir, plane, agent, _) = start(|o| {
        o.env("ECS_IMAGE_PULL_BEHAVIOR", "always")
            .env("ECS_ENGINE_AUTH_TYPE", auth_type)
            .env("ECS_ENGINE_AUTH_DATA", &data)
    });
    let cli = plane.cli();
    let pushed = registry.manifest_requests(&repository);
    let arn = run_image(&cli, auth_type, &image);
    let task = cli
        .wait_task_status("default", &arn, "RUNNING", SETTLE)
        .unwrap_or_else(|e| panic!("{e}\nagent log:\n{}", agent.log_text()));
    assert!(
        registry.manifest_requests(&repository) > pushed,
        "the image came from the registry"
    );
    assert!(present_locally(&image));
    assert!(task["pullStartedAt"].is_number(), "{task}");
    assert_eq!(container_reason(&task), "");
    let log = agent.log_text();
    assert!(!log.contains(&password), "the password reached the log");
    assert!(!log.contains(&base64(&format!("{USER}:{password}"))));
}

#[test]
fn private_registry_with_docker_auth_pulls_and_runs() {
    private_image_runs("docker", |registry, password| {
        // The scheme is stripped from keys, as the Go agent does.
        json!({format!("http://{}", registry.host()):
            {"username": USER, "password": password, "email": "e2e@example.com"}})
    });
}

#[test]
fn private_registry_with_dockercfg_auth_pulls_and_runs() {
    private_image_runs("dockercfg", |registry, password| {
        json!({registry.host():
            {"auth": base64(&format!("{USER}:{password}")), "email": "e2e@example.com"}})
    });
}

#[test]
fn wrong_credentials_stop_the_task_with_cannot_pull_container_error() {
    let registry = Registry::start(USER, &unique("right")).unwrap();
    let repository = format!("e2e/{}", unique("wrong"));
    let image = registry
        .push(TEST_IMAGE, &format!("{repository}:1"), false)
        .unwrap();
    let _images = LocalImages(vec![image.clone()]);
    let wrong = unique("wrong-password");
    let data = json!({registry.host(): {"username": USER, "password": wrong}}).to_string();
    let (_dir, plane, agent, _) = start(|o| {
        o.env("ECS_IMAGE_PULL_BEHAVIOR", "always")
            .env("ECS_ENGINE_AUTH_TYPE", "docker")
            .env("ECS_ENGINE_AUTH_DATA", &data)
    });
    let cli = plane.cli();
    let arn = run_image(&cli, "wrongcreds", &image);
    let task = cli
        .wait_task_status("default", &arn, "STOPPED", SETTLE)
        .unwrap_or_else(|e| panic!("{e}\nagent log:\n{}", agent.log_text()));
    let reason = container_reason(&task);
    assert!(reason.starts_with("CannotPullContainerError"), "{task}");
    assert!(reason.contains("unauthorized"), "{reason}");
    let stopped = task["stoppedReason"].as_str().unwrap_or_default();
    assert!(stopped.starts_with("CannotPullContainerError"), "{task}");
    assert_eq!(
        failed_attempts(&agent, &image),
        1,
        "an authentication error is not retried"
    );
    assert!(
        !agent.log_text().contains(&wrong),
        "the password reached the log"
    );
    assert!(!present_locally(&image));
}

#[test]
fn always_with_an_unreachable_registry_stops_the_task() {
    // A cached copy exists, but `always` never falls back to it. Nothing
    // listens on the port, so every attempt fails at once.
    let image = format!(
        "127.0.0.1:{}/e2e/{}:1",
        free_port().unwrap(),
        unique("always")
    );
    let tagged = Command::new("docker")
        .args(["tag", TEST_IMAGE, &image])
        .status()
        .unwrap();
    assert!(tagged.success());
    let _images = LocalImages(vec![image.clone()]);
    let (_dir, plane, agent, _) = start(|o| o.env("ECS_IMAGE_PULL_BEHAVIOR", "always"));
    let cli = plane.cli();
    let arn = run_image(&cli, "always", &image);
    let task = cli
        .wait_task_status("default", &arn, "STOPPED", SETTLE)
        .unwrap_or_else(|e| panic!("{e}\nagent log:\n{}", agent.log_text()));
    let reason = container_reason(&task);
    assert!(reason.starts_with("CannotPullContainerError"), "{task}");
    assert!(reason.contains("connection refused"), "{reason}");
    assert!(
        task["containers"][0]["runtimeId"].is_null(),
        "never created: {task}"
    );
    assert_eq!(
        failed_attempts(&agent, &image),
        5,
        "five attempts, then the task stops"
    );
}

#[test]
fn once_pulls_the_first_time_and_not_the_second() {
    let password = unique("pw");
    let registry = Registry::start(USER, &password).unwrap();
    let repository = format!("e2e/{}", unique("once"));
    let image = registry
        .push(TEST_IMAGE, &format!("{repository}:1"), false)
        .unwrap();
    let _images = LocalImages(vec![image.clone()]);
    let data = json!({registry.host(): {"username": USER, "password": password}}).to_string();
    let (_dir, plane, agent, options) = start(|o| {
        o.env("ECS_IMAGE_PULL_BEHAVIOR", "once")
            .env("ECS_ENGINE_AUTH_TYPE", "docker")
            .env("ECS_ENGINE_AUTH_DATA", &data)
    });
    let cli = plane.cli();
    let pushed = registry.manifest_requests(&repository);
    let first = run_image(&cli, "once", &image);
    let task = cli
        .wait_task_status("default", &first, "RUNNING", SETTLE)
        .unwrap_or_else(|e| panic!("{e}\nagent log:\n{}", agent.log_text()));
    let after_first = registry.manifest_requests(&repository);
    assert!(after_first > pushed, "the first task pulls");
    assert!(task["pullStartedAt"].is_number(), "{task}");

    let second = cli.run_task("default", "once").unwrap();
    let task = cli
        .wait_task_status("default", &second, "RUNNING", SETTLE)
        .unwrap();
    assert_eq!(
        registry.manifest_requests(&repository),
        after_first,
        "the second task does not pull"
    );
    assert!(task["pullStartedAt"].is_null(), "{task}");

    // The record of the successful pull survives a restart.
    agent.kill();
    let agent = Agent::start(&plane, &options).unwrap();
    agent.wait_acs_connected(CONNECT).unwrap();
    cli.wait_connected_instance("default", CONNECT).unwrap();
    let third = cli.run_task("default", "once").unwrap();
    cli.wait_task_status("default", &third, "RUNNING", SETTLE)
        .unwrap_or_else(|e| panic!("{e}\nagent log:\n{}", agent.log_text()));
    assert_eq!(
        registry.manifest_requests(&repository),
        after_first,
        "nor does a task after a restart"
    );
}

#[test]
fn prefer_cached_never_pulls_a_present_image() {
    let password = unique("pw");
    let registry = Registry::start(USER, &password).unwrap();
    let cached_repo = format!("e2e/{}", unique("cached"));
    let missing_repo = format!("e2e/{}", unique("missing"));
    let cached = registry
        .push(TEST_IMAGE, &format!("{cached_repo}:1"), true)
        .unwrap();
    let missing = registry
        .push(TEST_IMAGE, &format!("{missing_repo}:1"), false)
        .unwrap();
    let _images = LocalImages(vec![cached.clone(), missing.clone()]);
    let data = json!({registry.host(): {"username": USER, "password": password}}).to_string();
    let (_dir, plane, agent, _) = start(|o| {
        o.env("ECS_IMAGE_PULL_BEHAVIOR", "prefer-cached")
            .env("ECS_ENGINE_AUTH_TYPE", "docker")
            .env("ECS_ENGINE_AUTH_DATA", &data)
    });
    let cli = plane.cli();
    let (cached_before, missing_before) = (
        registry.manifest_requests(&cached_repo),
        registry.manifest_requests(&missing_repo),
    );
    let arn = run_image(&cli, "cached", &cached);
    let task = cli
        .wait_task_status("default", &arn, "RUNNING", SETTLE)
        .unwrap_or_else(|e| panic!("{e}\nagent log:\n{}", agent.log_text()));
    assert_eq!(
        registry.manifest_requests(&cached_repo),
        cached_before,
        "a present image is not pulled"
    );
    assert!(task["pullStartedAt"].is_null(), "{task}");
    // An image that is not present is pulled.
    let arn = run_image(&cli, "missing", &missing);
    cli.wait_task_status("default", &arn, "RUNNING", SETTLE)
        .unwrap();
    assert!(registry.manifest_requests(&missing_repo) > missing_before);
}
