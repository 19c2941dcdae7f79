//! The agent's Docker client against the real engine: create, start,
//! inspect, events, stop with a grace period, and remove.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use ecs_agent::docker::{DockerApi, DockerClient};
use ecs_agent::engine::status::ContainerStatus;
use futures_util::StreamExt;

const IMAGE: &str = "ecs-test/busybox:latest";

async fn docker() -> DockerClient {
    let client = DockerClient::connect("unix:///var/run/docker.sock")
        .await
        .unwrap_or_else(|e| panic!("Docker is required for these tests (run scripts/setup): {e}"));
    client.ping(Duration::from_secs(5)).await.unwrap();
    assert!(
        client.inspect_image(IMAGE).await.unwrap().is_some(),
        "the test image {IMAGE} is missing (run scripts/setup)"
    );
    client
}

fn body(cmd: &[&str]) -> serde_json::Value {
    serde_json::json!({
        "Image": IMAGE,
        "Cmd": cmd,
        "Labels": {"com.amazonaws.ecs.task-arn": "arn:aws:ecs:us-east-1:1:task/integ/docker-client"},
        "HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": ""}]}},
        "ExposedPorts": {"80/tcp": {}}
    })
}

fn name(tag: &str) -> String {
    format!("ecs-integ-{tag}-{}", std::process::id())
}

#[tokio::test]
async fn container_lifecycle_and_events() {
    let docker = docker().await;
    // The subscription starts when the stream is first polled; `since`
    // makes Docker replay what happened before that.
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        - 1;
    let events = docker.container_events(Some(since));
    tokio::pin!(events);
    let id = docker
        .create_container(
            &name("life"),
            body(&["httpd", "-f", "-p", "80", "-h", "/var/www"]),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    let created = docker.inspect_container(&id).await.unwrap().unwrap();
    assert_eq!(created.status, ContainerStatus::Created);
    docker
        .start_container(&id, Duration::from_secs(60))
        .await
        .unwrap();
    let running = docker.inspect_container(&id).await.unwrap().unwrap();
    assert_eq!(running.status, ContainerStatus::Running);
    assert!(running
        .port_bindings
        .iter()
        .any(|b| b.container_port == 80 && b.host_port > 0));
    docker
        .stop_container(&id, Duration::from_secs(1))
        .await
        .unwrap();
    let stopped = docker.inspect_container(&id).await.unwrap().unwrap();
    assert_eq!(stopped.status, ContainerStatus::Stopped);
    assert!(stopped.exit_code.is_some());

    let mut actions = Vec::new();
    while let Ok(Some(Ok(event))) =
        tokio::time::timeout(Duration::from_secs(60), events.next()).await
    {
        if event.docker_id == id {
            actions.push(event.action.clone());
            if event.action == "die" {
                break;
            }
        }
    }
    assert!(
        actions.contains(&"start".to_string()) && actions.contains(&"die".to_string()),
        "{actions:?}"
    );

    docker.remove_container(&id).await.unwrap();
    assert!(docker.inspect_container(&id).await.unwrap().is_none());
}

#[tokio::test]
async fn exit_codes_and_missing_things() {
    let docker = docker().await;
    let id = docker
        .create_container(
            &name("exit"),
            body(&["sh", "-c", "exit 3"]),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    docker
        .start_container(&id, Duration::from_secs(60))
        .await
        .unwrap();
    // Polled for up to a minute: a loaded machine may take a while.
    let mut observed = None;
    for _ in 0..600 {
        let o = docker.inspect_container(&id).await.unwrap().unwrap();
        if o.status == ContainerStatus::Stopped {
            observed = Some(o);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(observed.unwrap().exit_code, Some(3));
    docker.remove_container(&id).await.unwrap();
    assert!(docker
        .inspect_image("127.0.0.1:1/no/such:image")
        .await
        .unwrap()
        .is_none());
    let err = docker
        .start_container("no-such-container-xyz", Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(err.is_not_found());
    let bad = serde_json::json!({"Image": IMAGE, "HostConfig": {"Memory": "lots"}});
    assert!(docker
        .create_container(&name("bad"), bad, Duration::from_secs(5))
        .await
        .is_err());
}

#[tokio::test]
async fn pull_from_an_unreachable_registry_fails_fast() {
    let docker = docker().await;
    let started = std::time::Instant::now();
    let err = docker
        .pull_image(
            "127.0.0.1:1/ecs-test/none:latest",
            None,
            Duration::from_secs(60),
            Duration::from_secs(60),
        )
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(30), "{err}");
}
