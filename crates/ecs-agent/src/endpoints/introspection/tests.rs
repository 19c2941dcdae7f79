#![allow(clippy::unwrap_used)]
use super::*;
use crate::endpoints::fixtures::{self, DOCKER_ID, TASK_ARN};

fn ask(target: &str, tasks: &[Task]) -> Reply {
    route(
        &Request::get(target),
        &fixtures::view(tasks.to_vec()),
        tasks,
        &fixtures::details(),
    )
}

#[test]
fn metadata_has_the_documented_fields_in_order() {
    let reply = ask("/v1/metadata", &[]);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header_value("Content-Type"), Some("application/json"));
    assert_eq!(
        reply.body_text(),
        format!(
            r#"{{"Cluster":"default","ContainerInstanceArn":"{}","Version":"{}"}}"#,
            fixtures::INSTANCE_ARN,
            crate::version::one_line()
        )
    );
}

#[tokio::test]
async fn metadata_flags_a_checkpoint_that_cannot_be_written() {
    let (store, disk) = crate::store::Store::flaky().unwrap();
    let mut view = fixtures::view(vec![]);
    view.checkpoint = store.health();
    disk.fail_writes(true);
    assert!(store.put_meta(vec![("k", "v".into())]).await.is_err());
    let reply = route(
        &Request::get("/v1/metadata"),
        &view,
        &[],
        &fixtures::details(),
    );
    let body: serde_json::Value = serde_json::from_str(&reply.body_text()).unwrap();
    assert_eq!(body["CheckpointHealthy"], false);
    assert!(body["CheckpointError"]
        .as_str()
        .unwrap()
        .contains("injected write failure"));
    // Healthy again: the fields are gone, the shape is the Go agent's.
    disk.fail_writes(false);
    store.put_meta(vec![("k", "v".into())]).await.unwrap();
    let reply = route(
        &Request::get("/v1/metadata"),
        &view,
        &[],
        &fixtures::details(),
    );
    assert!(!reply.body_text().contains("Checkpoint"));
}

#[test]
fn tasks_match_the_spec_example_field_by_field() {
    let task = fixtures::running_task();
    let reply = ask("/v1/tasks", &[task]);
    assert_eq!(reply.status, 200);
    let expected = format!(
        r#"{{"Tasks":[{{"Arn":"{TASK_ARN}","DesiredStatus":"RUNNING","KnownStatus":"RUNNING","Family":"web","Version":"7","Containers":[{{"DockerId":"{DOCKER_ID}","DockerName":"ecs-web-7-app-e8c4d2b6a1f0c3e5d7b9","Name":"app","Image":"nginx:1.25","ImageID":"sha256:6c0e5d4b3a291807f6e5d4c3b2a19080f7e6d5c4b3a2918070f6e5d4c3b2a190","CreatedAt":"2024-03-01T10:00:02.51Z","StartedAt":"2024-03-01T10:00:03.1Z","Ports":[{{"ContainerPort":80,"Protocol":"tcp","HostPort":32768,"HostIp":"0.0.0.0"}}],"Volumes":[{{"DockerName":"vol1","Source":"/var/lib/docker/volumes/vol1/_data","Destination":"/data"}}]}}]}}]}}"#
    );
    assert_eq!(reply.body_text(), expected);
    assert_eq!(ask("/v1/tasks", &[]).body_text(), r#"{"Tasks":[]}"#);
}

#[test]
fn queries_select_one_task_or_fail_with_the_empty_task() {
    let task = fixtures::running_task();
    let mut other = fixtures::running_task();
    other.spec.arn = TASK_ARN.replace("0a1b", "ffff");
    other.containers[0].docker_id = Some(format!("3f5d9c0e8b7a{}", "0".repeat(52)));
    let tasks = [task, other];
    let one = ask(&format!("/v1/tasks?taskarn={TASK_ARN}"), &tasks);
    assert_eq!(one.status, 200);
    assert!(one
        .body_text()
        .starts_with(&format!(r#"{{"Arn":"{TASK_ARN}""#)));
    let full = ask(&format!("/v1/tasks?dockerid={DOCKER_ID}"), &tasks);
    assert_eq!(full.status, 200);
    assert!(full.body_text().contains(TASK_ARN));

    let empty = r#"{"Arn":"","KnownStatus":"","Family":"","Version":"","Containers":null}"#;
    for (query, status) in [
        (format!("taskarn={TASK_ARN}&dockerid=3f5d"), 400),
        ("taskarn=arn:aws:ecs:nowhere".to_string(), 404),
        ("dockerid=ffffffff".to_string(), 404),
        // Both tasks' IDs start with 3f5d9c0e8b7a: ambiguous.
        ("dockerid=3f5d9c0e8b7a".to_string(), 400),
        // The Go agent's quirk: an empty short ID matches every container.
        ("dockerid=".to_string(), 400),
        // Longer than 12 characters must match in full.
        ("dockerid=3f5d9c0e8b7a6".to_string(), 404),
    ] {
        let reply = ask(&format!("/v1/tasks?{query}"), &tasks);
        assert_eq!(
            (reply.status, reply.body_text().as_str()),
            (status, empty),
            "{query}"
        );
    }
    // A unique short prefix selects its task.
    let short = ask("/v1/tasks?dockerid=3f5d9c0e8b7a", &tasks[..1]);
    assert_eq!(short.status, 200);
}

#[test]
fn desired_status_is_left_out_when_it_would_mislead() {
    let mut task = fixtures::running_task();
    task.known_status = TaskStatus::Stopped;
    let body = ask("/v1/tasks", &[task]).body_text();
    assert!(!body.contains("DesiredStatus"), "{body}");
    assert!(body.contains(r#""KnownStatus":"STOPPED""#));
}

#[test]
fn unclean_paths_redirect_and_unknown_paths_list_the_commands() {
    let moved = ask("//v1/./tasks?taskarn=x", &[]);
    assert_eq!(moved.status, 301);
    assert_eq!(moved.header_value("Location"), Some("/v1/tasks?taskarn=x"));
    for path in ["/", "/nothing", "/v1/metadata/"] {
        let reply = ask(path, &[]);
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(
            reply.body_text(),
            r#"{"AvailableCommands":["/v1/metadata","/v1/tasks","/license"]}"#
        );
    }
}

#[test]
fn license_joins_the_three_texts() {
    let reply = ask("/license", &[]);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header_value("Content-Type"), Some("text/plain"));
    let text = reply.body_text();
    let separator = format!("\n{}\n", "=".repeat(80));
    assert_eq!(text.matches(&separator).count(), 2);
    assert!(text.contains("Apache License"));
}
