#![allow(clippy::unwrap_used)]

use super::*;
use crate::engine::task::{IncomingTask, Task};
use ecs_model::acs;

fn task(container: serde_json::Value) -> Task {
    let acs: ecs_model::acs::Task = serde_json::from_value(serde_json::json!({
        "arn": "arn:aws:ecs:us-east-1:1:task/default/abc",
        "family": "web", "version": "3", "desiredStatus": "RUNNING",
        "volumes": [{"name": "data", "type": "host", "host": {"sourcePath": "/srv/data"}}],
        "containers": [container]
    }))
    .unwrap();
    Task::new(IncomingTask::try_from(&acs).unwrap(), 0)
}

fn ctx() -> CreateContext<'static> {
    CreateContext {
        cluster: "default",
        region: "us-east-1",
        image_env: &[],
        privileged_disabled: false,
        logging_drivers: Box::leak(Box::new(["json-file".to_string(), "none".to_string()])),
        extra_env: &[],
        extra_binds: &[],
        cgroup_parent: None,
        secrets: None,
    }
}

#[test]
fn metadata_and_credentials_uris_are_injected_and_win() {
    let acs: acs::Task = serde_json::from_value(serde_json::json!({
        "arn": "arn:aws:ecs:us-east-1:1:task/default/abc",
        "family": "f", "version": "1", "desiredStatus": "RUNNING",
        "roleCredentials": {"credentialsId": "cred-1", "accessKeyId": "AK"},
        "containers": [{"name": "app", "image": "busybox",
            "environment": {"ECS_CONTAINER_METADATA_URI": "mine",
                            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "mine"}}]
    }))
    .unwrap();
    let t = Task::new(IncomingTask::try_from(&acs).unwrap(), 0);
    let id = t.containers[0].endpoint_id.clone();
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 4);
    let body = build(&t, 0, &ctx()).unwrap();
    let env: Vec<&str> = body["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for expected in [
        format!("ECS_CONTAINER_METADATA_URI=http://169.254.170.2/v3/{id}"),
        format!("ECS_CONTAINER_METADATA_URI_V4=http://169.254.170.2/v4/{id}"),
        format!("ECS_AGENT_URI=http://169.254.170.2/api/{id}"),
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI=/v2/credentials/cred-1".to_string(),
    ] {
        assert!(
            env.contains(&expected.as_str()),
            "{expected} not in {env:?}"
        );
    }
    // Without a task role there is no credentials URI.
    let plain = task(serde_json::json!({"name": "p", "image": "i"}));
    let body = build(&plain, 0, &ctx()).unwrap();
    assert!(!body["Env"]
        .to_string()
        .contains("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"));
}

#[test]
fn base_config_from_the_definition() {
    let t = task(serde_json::json!({
        "name": "app", "image": "busybox", "cpu": 0, "memory": 2,
        "command": ["sleep", "600"], "environment": {"A": "1"},
        "portMappings": [{"containerPort": 80, "hostPort": 8080, "protocol": "tcp"}, {"containerPort": 53, "protocol": "udp"}],
        "mountPoints": [{"sourceVolume": "data", "containerPath": "/data", "readOnly": true}]
    }));
    let body = build(&t, 0, &ctx()).unwrap();
    assert_eq!(body["Image"], "busybox");
    assert_eq!(body["Cmd"], serde_json::json!(["sleep", "600"]));
    let env: Vec<&str> = body["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(env.contains(&"A=1") && env.contains(&"AWS_REGION=us-east-1"));
    let host = &body["HostConfig"];
    assert_eq!(
        host["Memory"],
        4 * 1024 * 1024,
        "raised to Docker's minimum"
    );
    assert_eq!(host["CpuShares"], 2, "0 shares become 2, not Docker's 1024");
    assert_eq!(host["Binds"], serde_json::json!(["/srv/data:/data:ro"]));
    assert_eq!(host["PortBindings"]["80/tcp"][0]["HostPort"], "8080");
    assert_eq!(host["PortBindings"]["53/udp"][0]["HostPort"], "");
    assert!(body["ExposedPorts"].get("53/udp").is_some());
    assert_eq!(
        body["Labels"][labels::TASK_ARN],
        "arn:aws:ecs:us-east-1:1:task/default/abc"
    );
    assert_eq!(body["Labels"][labels::CLUSTER], "default");
    assert_eq!(body["Labels"][labels::TASK_DEFINITION_VERSION], "3");
}

#[test]
fn overlay_merges_like_go_decoding() {
    let t = task(serde_json::json!({
        "name": "app", "image": "busybox", "essential": true, "healthCheckType": "docker",
        "environment": {"AWS_REGION": "eu-west-1"},
        "dockerConfig": {
            "config": "{\"HealthCheck\":{\"test\":[\"CMD-SHELL\",\"exit 0\"],\"Interval\":5000000000},\"labels\":{\"team\":\"a\",\"com.amazonaws.ecs.cluster\":\"spoofed\"},\"user\":\"nobody\",\"NoSuchKey\":1}",
            "hostConfig": "{\"ulimits\":[{\"name\":\"nofile\",\"soft\":1024,\"hard\":2048}],\"logConfig\":{\"type\":\"json-file\",\"config\":{\"max-size\":\"1m\"}},\"CpuShares\":512,\"NetworkMode\":\"host\"}"
        }
    }));
    let body = build(&t, 0, &ctx()).unwrap();
    assert_eq!(body["Healthcheck"]["Test"][1], "exit 0");
    assert_eq!(body["Healthcheck"]["Interval"], 5_000_000_000i64);
    assert_eq!(body["User"], "nobody");
    assert_eq!(body["Labels"]["team"], "a");
    assert_eq!(
        body["Labels"][labels::CLUSTER],
        "default",
        "agent labels win"
    );
    let host = &body["HostConfig"];
    assert_eq!(host["Ulimits"][0]["Name"], "nofile");
    assert_eq!(host["LogConfig"]["Type"], "json-file");
    assert_eq!(
        host["LogConfig"]["Config"]["max-size"], "1m",
        "map keys keep their case"
    );
    assert_eq!(host["CpuShares"], 512);
    assert_eq!(host["NetworkMode"], "host");
    // A region in the container environment is not overridden.
    let env = body["Env"].as_array().unwrap();
    assert!(env.iter().any(|e| e == "AWS_REGION=eu-west-1"));
    assert!(!env
        .iter()
        .any(|e| e.as_str().unwrap().starts_with("AWS_DEFAULT_REGION")));
    // The merged body is a valid Docker create body.
    let typed: bollard::models::ContainerCreateBody = serde_json::from_value(body).unwrap();
    assert_eq!(typed.host_config.unwrap().cpu_shares, Some(512));
}

#[test]
fn bad_overlays_and_mounts_are_errors() {
    let bad_json = task(serde_json::json!({"name": "a", "image": "i",
        "dockerConfig": {"hostConfig": "{not json"}}));
    assert!(matches!(
        build(&bad_json, 0, &ctx()),
        Err(CreateConfigError::Config(_))
    ));
    let no_health =
        task(serde_json::json!({"name": "a", "image": "i", "healthCheckType": "docker"}));
    assert!(matches!(
        build(&no_health, 0, &ctx()),
        Err(CreateConfigError::Config(_))
    ));
    let unknown_volume = task(serde_json::json!({"name": "a", "image": "i",
        "mountPoints": [{"sourceVolume": "nope", "containerPath": "/x"}]}));
    let err = build(&unknown_volume, 0, &ctx()).unwrap_err();
    assert!(err.to_string().starts_with("HostConfigError"), "{err}");
}

#[test]
fn docker_names_follow_the_go_pattern() {
    let t = task(serde_json::json!({"name": "my_app.1", "image": "i"}));
    let name = docker_name(&t, "my_app.1");
    let (prefix, suffix) = name.rsplit_once('-').unwrap();
    assert_eq!(prefix, "ecs-web-3-myapp1");
    assert_eq!(suffix.len(), 20);
    assert!(suffix.chars().all(|c| c.is_ascii_hexdigit()));
}

#[test]
fn privileged_and_log_drivers_follow_the_instance_settings() {
    let privileged = task(serde_json::json!({"name": "p", "image": "i",
        "dockerConfig": {"hostConfig": "{\"Privileged\":true}"}}));
    assert!(build(&privileged, 0, &ctx()).is_ok());
    let refused = CreateContext {
        privileged_disabled: true,
        ..ctx()
    };
    let err = build(&privileged, 0, &refused).unwrap_err();
    assert!(err.to_string().contains("ECS_DISABLE_PRIVILEGED"), "{err}");

    let syslog = task(serde_json::json!({"name": "l", "image": "i",
        "dockerConfig": {"hostConfig": "{\"LogConfig\":{\"Type\":\"syslog\"}}"}}));
    let err = build(&syslog, 0, &ctx()).unwrap_err();
    assert!(
        err.to_string().contains("ECS_AVAILABLE_LOGGING_DRIVERS"),
        "{err}"
    );
}

#[test]
fn dynamic_ports_and_ranges_use_the_assigned_host_ports() {
    let mut t = task(serde_json::json!({"name": "web", "image": "i",
    "portMappings": [
        {"containerPort": 80, "hostPort": 0},
        {"containerPortRange": "9000-9002", "protocol": "udp"}
    ]}));
    t.containers[0].assigned_ports = vec![crate::engine::ports::AssignedPort {
        container_port: 80,
        host_port: 40001,
        protocol: crate::engine::task::Protocol::Tcp,
    }];
    t.containers[0].assigned_ranges = vec![crate::engine::ports::AssignedRange {
        container_start: 9000,
        container_end: 9002,
        host_start: 41000,
        protocol: crate::engine::task::Protocol::Udp,
    }];
    let body = build(&t, 0, &ctx()).unwrap();
    let bindings = &body["HostConfig"]["PortBindings"];
    assert_eq!(bindings["80/tcp"][0]["HostPort"], "40001");
    assert_eq!(bindings["9001/udp"][0]["HostPort"], "41001");
    assert!(body["ExposedPorts"].get("9002/udp").is_some());
    assert!(
        bindings.get("0/tcp").is_none(),
        "a range mapping has no single port"
    );
}

fn env_map(body: &serde_json::Value) -> std::collections::BTreeMap<String, String> {
    body["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let (k, v) = v.as_str().unwrap().split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn vars(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn secrets_win_over_environment_and_environment_over_files() {
    let t = task(serde_json::json!({"name": "app", "image": "i",
        "environment": {"PLAIN": "from-definition", "BOTH": "from-definition"}}));
    let secrets = crate::secrets::ContainerSecrets {
        env: vars(&[("BOTH", "from-secret"), ("TOKEN", "s3cr3t")]),
        log_options: Default::default(),
        env_files: vec![
            vars(&[
                ("PLAIN", "file-1"),
                ("FILE", "file-1"),
                ("AWS_REGION", "eu-west-1"),
            ]),
            vars(&[("FILE", "file-2"), ("LATER", "file-2"), ("TOKEN", "file-2")]),
        ],
    };
    let with = CreateContext {
        secrets: Some(&secrets),
        ..ctx()
    };
    let env = env_map(&build(&t, 0, &with).unwrap());
    assert_eq!(env["PLAIN"], "from-definition");
    assert_eq!(env["BOTH"], "from-secret");
    assert_eq!(env["TOKEN"], "s3cr3t");
    assert_eq!(env["FILE"], "file-1", "earlier files win");
    assert_eq!(env["LATER"], "file-2");
    // A region from a file counts as set: the agent adds none.
    assert_eq!(env["AWS_REGION"], "eu-west-1");
    assert!(!env.contains_key("AWS_DEFAULT_REGION"));
}

fn awslogs_task(extra: serde_json::Value, execution_role: bool) -> Task {
    let mut container = serde_json::json!({"name": "app", "image": "i",
        "logsAuthStrategy": "ExecutionRole",
        "dockerConfig": {"hostConfig":
            "{\"LogConfig\":{\"Type\":\"awslogs\",\"Config\":{\"awslogs-group\":\"g\"}}}"}});
    if let (Some(c), Some(extra)) = (container.as_object_mut(), extra.as_object()) {
        c.extend(extra.clone());
    }
    let mut task = serde_json::json!({
        "arn": "arn:aws:ecs:us-east-1:1:task/default/abc",
        "family": "f", "version": "1", "desiredStatus": "RUNNING",
        "containers": [container]
    });
    if execution_role {
        task["executionRoleCredentials"] = serde_json::json!({"credentialsId": "exec-1"});
    }
    let acs: acs::Task = serde_json::from_value(task).unwrap();
    Task::new(IncomingTask::try_from(&acs).unwrap(), 0)
}

#[test]
fn awslogs_gets_the_execution_roles_credentials_endpoint_and_secret_options() {
    let drivers = ["json-file".to_string(), "awslogs".to_string()];
    let secrets = crate::secrets::ContainerSecrets {
        log_options: vars(&[("awslogs-endpoint", "http://logs.local")]),
        ..Default::default()
    };
    let ctx = CreateContext {
        logging_drivers: &drivers,
        secrets: Some(&secrets),
        ..ctx()
    };
    let body = build(&awslogs_task(serde_json::json!({}), true), 0, &ctx).unwrap();
    let options = &body["HostConfig"]["LogConfig"]["Config"];
    assert_eq!(
        options["awslogs-group"], "g",
        "the user's options pass through"
    );
    assert_eq!(
        options["awslogs-credentials-endpoint"],
        "/v2/credentials/exec-1"
    );
    assert_eq!(options["awslogs-endpoint"], "http://logs.local");
    // The values of log driver secrets stay out of the environment.
    assert!(!body["Env"].to_string().contains("logs.local"));

    let err = build(&awslogs_task(serde_json::json!({}), false), 0, &ctx).unwrap_err();
    assert_eq!(
        err.to_string(),
        "HostConfigError: No execution credentials set for the task"
    );
}

#[test]
fn a_container_without_a_log_driver_gets_no_log_options() {
    let t = awslogs_task(serde_json::json!({"dockerConfig": {}}), true);
    let body = build(&t, 0, &ctx()).unwrap();
    assert!(body["HostConfig"].get("LogConfig").is_none());
}
