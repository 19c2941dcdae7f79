#![allow(clippy::unwrap_used)]

use super::*;
use ecs_model::acs;

fn parse(task_json: serde_json::Value) -> Result<IncomingTask, TaskParseError> {
    let task: acs::Task = serde_json::from_value(task_json).unwrap();
    IncomingTask::try_from(&task)
}

fn minimal() -> serde_json::Value {
    serde_json::json!({
        "arn": "arn:aws:ecs:us-east-1:123456789012:task/default/5b1f0e8c2d3a4f6e9a7b8c9d0e1f2a3b",
        "family": "web", "version": "3", "desiredStatus": "RUNNING",
        "containers": [{"name": "app", "image": "busybox", "essential": true, "memory": 32}]
    })
}

#[test]
fn golden_payload_task_parses() {
    let Some(dir) = ecs_model::spec::require_or_skip("golden payload parse") else {
        return;
    };
    let text = std::fs::read_to_string(dir.join("samples/acs-payload.json")).unwrap();
    let ecs_model::acs::AcsMessage::PayloadMessage(payload) =
        ecs_model::acs::AcsMessage::decode(&text).unwrap()
    else {
        panic!("not a payload");
    };
    let task = &payload.tasks.unwrap()[0];
    let incoming = IncomingTask::try_from(task).unwrap();
    assert_eq!(incoming.desired_status, TaskStatus::Running);
    assert_eq!(incoming.spec.task_id(), "5b1f0e8c2d3a4f6e9a7b8c9d0e1f2a3b");
    let c = &incoming.spec.containers[0];
    assert_eq!(c.name, "sleeper");
    assert_eq!(
        c.command.as_deref(),
        Some(&["sleep".to_string(), "600".to_string()][..])
    );
    assert!(c.essential && c.docker_health_check);
    assert_eq!(c.memory_mib, 32);
    assert!(c.docker_config.as_deref().unwrap().contains("Healthcheck"));
}

#[test]
fn overrides_replace_command() {
    let mut t = minimal();
    t["containers"][0]["command"] = serde_json::json!(["sleep", "1"]);
    t["containers"][0]["overrides"] = serde_json::json!("{\"command\":[\"sh\",\"-c\",\"exit 3\"]}");
    let spec = parse(t).unwrap().spec;
    assert_eq!(spec.containers[0].command.as_ref().unwrap()[2], "exit 3");
}

#[test]
fn bad_tasks_are_rejected_with_a_reason() {
    type Mutation = fn(&mut serde_json::Value);
    let cases: Vec<(Mutation, &str)> = vec![
        (
            |t| t["arn"] = serde_json::json!("not-an-arn"),
            "invalid task arn",
        ),
        (
            |t| t["desiredStatus"] = serde_json::json!("EXPLODED"),
            "desiredStatus",
        ),
        (|t| t["containers"] = serde_json::json!([]), "no containers"),
        (
            |t| t["containers"][0]["image"] = serde_json::json!(""),
            "missing image",
        ),
        (
            |t| t["volumes"] = serde_json::json!([{"name": "v", "type": "ebs"}]),
            "unknown volume type",
        ),
        (
            |t| t["containers"][0]["overrides"] = serde_json::json!(""),
            "overrides",
        ),
        (
            |t| t["containers"][0]["overrides"] = serde_json::json!("{\"cpu\":1}"),
            "overrides",
        ),
        (
            |t| t["containers"][0]["memory"] = serde_json::json!(-1),
            "memory",
        ),
        (
            |t| {
                t["containers"][0]["dependsOn"] =
                    serde_json::json!([{"containerName": "x", "condition": "MAYBE"}])
            },
            "dependsOn",
        ),
        (
            |t| {
                let c = t["containers"][0].clone();
                t["containers"].as_array_mut().unwrap().push(c);
            },
            "duplicate container",
        ),
    ];
    for (mutate, needle) in cases {
        let mut t = minimal();
        mutate(&mut t);
        let err = parse(t).unwrap_err();
        assert!(err.0.contains(needle), "{err} should mention {needle}");
        assert!(err
            .reason()
            .starts_with("UnrecogniedTaskError: Error loading task - "));
    }
}

#[test]
fn desired_status_only_moves_forward() {
    let mut task = Task::new(parse(minimal()).unwrap(), 0);
    assert_eq!(task.containers[0].desired_status, ContainerStatus::Running);
    assert!(task.raise_desired_status(TaskStatus::Stopped));
    assert!(!task.raise_desired_status(TaskStatus::Running));
    assert_eq!(task.desired_status, TaskStatus::Stopped);
    assert_eq!(task.containers[0].desired_status, ContainerStatus::Stopped);
}

#[test]
fn checkpoint_round_trip_drops_only_applied_status() {
    let mut task = Task::new(parse(minimal()).unwrap(), 7);
    task.containers[0].applied_status = Some(ContainerStatus::Pulled);
    task.containers[0].docker_name = Some("ecs-web-3-app-abc".into());
    let json = serde_json::to_vec(&task).unwrap();
    let back: Task = serde_json::from_slice(&json).unwrap();
    assert_eq!(back.containers[0].applied_status, None);
    assert_eq!(
        back.containers[0].docker_name.as_deref(),
        Some("ecs-web-3-app-abc")
    );
    assert_eq!(back.spec, task.spec);
}

/// Arbitrary JSON, biased toward the members a task payload has.
fn json_value() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
    use proptest::prelude::*;
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(serde_json::Value::from),
        "[a-zA-Z0-9:/{}\"-]{0,12}".prop_map(serde_json::Value::from),
        prop_oneof![
            Just("RUNNING"),
            Just("STOPPED"),
            Just("host"),
            Just("docker"),
            Just("{}")
        ]
        .prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        let key = prop_oneof![
            Just("arn".to_string()),
            Just("desiredStatus".to_string()),
            Just("containers".to_string()),
            Just("name".to_string()),
            Just("image".to_string()),
            Just("volumes".to_string()),
            Just("dependsOn".to_string()),
            Just("overrides".to_string()),
            Just("portMappings".to_string()),
            Just("containerPort".to_string()),
            Just("links".to_string()),
            Just("volumesFrom".to_string()),
            Just("memory".to_string()),
            Just("cpu".to_string()),
            "[a-z]{1,6}",
        ];
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            proptest::collection::btree_map(key, inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest::proptest! {
    /// Whatever the backend sends, parsing and planning never panic: a task
    /// is accepted or rejected with a reason.
    #[test]
    fn arbitrary_payload_tasks_never_panic(value in json_value()) {
        let Ok(task) = serde_json::from_value::<acs::Task>(value) else { return Ok(()) };
        match IncomingTask::try_from(&task) {
            Ok(incoming) => {
                let mut task = Task::new(incoming, 0);
                let _ = crate::engine::reconcile::validate_dependencies(&task);
                let _ = crate::engine::reconcile::plan(&task, 0);
                crate::engine::reconcile::update_known_status(&mut task, 0);
                let _ = crate::engine::reconcile::take_report(&mut task, true);
            }
            Err(e) => proptest::prop_assert!(!e.0.is_empty()),
        }
    }
}

fn with_container(extra: serde_json::Value) -> serde_json::Value {
    let mut t = minimal();
    let c = t["containers"][0].as_object_mut().unwrap();
    c.extend(extra.as_object().unwrap().clone());
    t
}

#[test]
fn secrets_env_files_and_registry_logins_are_read_from_the_payload() {
    let ssm_arn = "arn:aws:ssm:eu-west-1:123456789012:parameter/app/db";
    let t = parse(with_container(serde_json::json!({
        "secrets": [
            {"name": "DB", "valueFrom": ssm_arn, "provider": "ssm", "region": "eu-west-1",
             "type": "ENVIRONMENT_VARIABLE", "target": "CONTAINER"},
            {"name": "splunk-token", "valueFrom": "arn:aws:secretsmanager:us-east-1:1:secret:t",
             "provider": "asm", "target": "LOG_DRIVER"}
        ],
        "environmentFiles": [{"type": "s3", "value": "arn:aws:s3:::b/app.env"}],
        "registryAuthentication": {"type": "ecr", "ecrAuthData": {
            "registryId": "123456789012", "region": "us-west-2",
            "endpointOverride": "ecr.example", "useExecutionRole": true}},
        "logsAuthStrategy": "ExecutionRole"
    })))
    .unwrap();
    let c = &t.spec.containers[0];
    assert_eq!(
        c.secrets,
        vec![
            SecretSpec {
                name: "DB".into(),
                value_from: ssm_arn.into(),
                provider: SecretProvider::Ssm,
                region: Some("eu-west-1".into()),
                target: SecretTarget::Environment,
            },
            SecretSpec {
                name: "splunk-token".into(),
                value_from: "arn:aws:secretsmanager:us-east-1:1:secret:t".into(),
                provider: SecretProvider::Asm,
                region: None,
                target: SecretTarget::LogDriver,
            },
        ]
    );
    assert_eq!(
        c.environment_files,
        vec!["arn:aws:s3:::b/app.env".to_string()]
    );
    assert_eq!(
        c.registry_auth,
        Some(RegistryAuthSpec::Ecr {
            registry: crate::aws::ecr::Registry {
                registry_id: "123456789012".into(),
                region: "us-west-2".into(),
                endpoint_override: Some("ecr.example".into()),
            },
            use_execution_role: true,
        })
    );
    assert!(c.logs_auth_execution_role);

    let asm = parse(with_container(serde_json::json!({
        "registryAuthentication": {"type": "asm", "asmAuthData": {
            "credentialsParameter": "arn:aws:secretsmanager:us-east-1:1:secret:reg"}}
    })))
    .unwrap();
    assert_eq!(
        asm.spec.containers[0].registry_auth,
        Some(RegistryAuthSpec::Asm {
            credentials_parameter: "arn:aws:secretsmanager:us-east-1:1:secret:reg".into(),
            region: None,
        })
    );
}

#[test]
fn malformed_secrets_and_logins_reject_the_task_with_a_reason() {
    for (extra, needle) in [
        (
            serde_json::json!({"secrets": [{"name": "A", "valueFrom": "x", "provider": "vault",
                "type": "ENVIRONMENT_VARIABLE"}]}),
            "unknown provider",
        ),
        (
            serde_json::json!({"secrets": [{"name": "A", "provider": "ssm",
                "type": "ENVIRONMENT_VARIABLE"}]}),
            "secret valueFrom",
        ),
        (
            serde_json::json!({"secrets": [{"name": "A", "valueFrom": "x", "provider": "ssm",
                "type": "MOUNT_POINT"}]}),
            "unsupported type",
        ),
        (
            serde_json::json!({"environmentFiles": [{"type": "http", "value": "x"}]}),
            "unsupported type",
        ),
        (
            serde_json::json!({"registryAuthentication": {"type": "ecr"}}),
            "ecrAuthData",
        ),
        (
            serde_json::json!({"registryAuthentication": {"type": "ecr",
                "ecrAuthData": {"region": "us-west-2"}}}),
            "registryId",
        ),
        (
            serde_json::json!({"registryAuthentication": {"type": "basic"}}),
            "unknown registry authentication type",
        ),
    ] {
        let err = parse(with_container(extra.clone())).unwrap_err();
        assert!(err.0.contains(needle), "{extra}: {err}");
    }
}

#[test]
fn the_checkpoint_keeps_secret_references_but_never_values() {
    let incoming = parse(with_container(serde_json::json!({
        "secrets": [{"name": "DB", "valueFrom": "/app/db", "provider": "ssm",
            "type": "ENVIRONMENT_VARIABLE"}]
    })))
    .unwrap();
    let mut task = Task::new(incoming, 0);
    let mut values = crate::secrets::ContainerSecrets::default();
    values.env.insert("DB".into(), "hunter2-value".into());
    task.secrets = crate::secrets::SecretsState::Ready(std::sync::Arc::new(
        crate::secrets::TaskSecrets::from_containers([("app".to_string(), values)]),
    ));
    let saved = serde_json::to_string(&task).unwrap();
    assert!(saved.contains("/app/db"), "the reference is kept");
    assert!(
        !saved.contains("hunter2-value"),
        "the value was saved: {saved}"
    );
    let debug = format!("{task:?}");
    assert!(
        !debug.contains("hunter2-value"),
        "the value is printed: {debug}"
    );
    let back: Task = serde_json::from_str(&saved).unwrap();
    assert_eq!(back.secrets, crate::secrets::SecretsState::Missing);
}
