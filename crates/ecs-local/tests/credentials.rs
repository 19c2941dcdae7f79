//! Task IAM role credentials end to end against a running plane: task
//! definitions with roles registered through the AWS SDK, credentials in
//! payloads, `IAMRoleCredentialsMessage`s on `sendCredentials=true`
//! handshakes and on refresh, acks, placement on instances with the
//! task-iam-role attributes, the `/_local` route, restarts, and tags.
#![allow(clippy::unwrap_used)]

mod common;

use aws_sdk_ecs::error::ProvideErrorMetadata;
use aws_sdk_ecs::types::{ContainerDefinition, NetworkMode, Tag, TaskOverride};
use common::{
    ack, connect_agent, frames_within, next_of_type, register_instance, send_json, Harness, Ws,
};
use ecs_model::acs::AcsMessage;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

const TASK_ROLE: &str = "arn:aws:iam::000000000000:role/web-task";
const EXEC_ROLE: &str = "arn:aws:iam::000000000000:role/web-exec";
const IAM: &str = "com.amazonaws.ecs.capability.task-iam-role";
const IAM_HOST: &str = "com.amazonaws.ecs.capability.task-iam-role-network-host";
const CREDS: &str = "IAMRoleCredentialsMessage";
const SECS: Duration = common::PATIENCE;

fn container() -> ContainerDefinition {
    ContainerDefinition::builder()
        .name("app")
        .image("busybox:latest")
        .memory(32)
        .command("sleep")
        .command("600")
        .build()
}

/// Registers, through the SDK, `web` (task and execution role), `plain` (no
/// role) and `hosted` (task role, host network mode).
async fn register_definitions(h: &Harness) {
    let ecs = h.client();
    let web = ecs
        .register_task_definition()
        .family("web")
        .task_role_arn(TASK_ROLE)
        .execution_role_arn(EXEC_ROLE)
        .container_definitions(container())
        .send()
        .await
        .unwrap();
    let def = web.task_definition().unwrap();
    assert_eq!(def.task_role_arn(), Some(TASK_ROLE));
    assert_eq!(def.execution_role_arn(), Some(EXEC_ROLE));
    ecs.register_task_definition()
        .family("plain")
        .container_definitions(container())
        .send()
        .await
        .unwrap();
    ecs.register_task_definition()
        .family("hosted")
        .task_role_arn(TASK_ROLE)
        .network_mode(NetworkMode::Host)
        .container_definitions(container())
        .send()
        .await
        .unwrap();
}

async fn run(h: &Harness, definition: &str) -> String {
    let out = h
        .client()
        .run_task()
        .task_definition(definition)
        .send()
        .await
        .unwrap();
    assert!(out.failures().is_empty(), "{:?}", out.failures());
    out.tasks()[0].task_arn().unwrap().to_owned()
}

/// What `/_local/v1/task-credentials` shows for a task.
async fn issued(h: &Harness, task_arn: &str) -> Value {
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("task", task_arn)
        .finish();
    let (status, body) = h.get(&format!("/_local/v1/task-credentials?{query}")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["taskArn"], task_arn);
    body
}

/// Sends the `IAMRoleCredentialsAckRequest` an agent sends for a set.
async fn ack_credentials(ws: &mut Ws, message_id: &Value, credentials: &Value) {
    send_json(
        ws,
        &json!({"type": "IAMRoleCredentialsAckRequest", "message": {
            "messageId": message_id,
            "credentialsId": credentials["credentialsId"],
            "expiration": credentials["expiration"]}}),
    )
    .await;
}

fn task_id(arn: &str) -> String {
    arn.rsplit('/').next().unwrap().to_owned()
}

/// Whether the plane recorded the agent's ack of each role's current keys.
fn acked(st: &ecs_local::store::State, arn: &str) -> (Option<bool>, Option<bool>) {
    let t = &st.tasks[&task_id(arn)];
    (
        t.task_role_credentials.as_ref().map(|c| c.acked),
        t.execution_role_credentials.as_ref().map(|c| c.acked),
    )
}

fn assert_credentials_shape(c: &Value, role: &str) {
    assert_eq!(c["roleArn"], role);
    let id = c["credentialsId"].as_str().unwrap();
    assert_eq!(
        uuid::Uuid::parse_str(id).unwrap().get_version_num(),
        4,
        "{id}"
    );
    let key = c["accessKeyId"].as_str().unwrap();
    assert!(key.starts_with("ASIA") && key.len() == 20, "{key}");
    assert_eq!(c["secretAccessKey"].as_str().unwrap().len(), 40);
    assert!(c["sessionToken"].as_str().unwrap().len() >= 100);
    let expiration = c["expiration"].as_str().unwrap();
    let parsed =
        time::OffsetDateTime::parse(expiration, &time::format_description::well_known::Rfc3339)
            .unwrap();
    assert!(expiration.ends_with('Z') && !expiration.contains('.'));
    let left = parsed - time::OffsetDateTime::now_utc();
    assert!(
        left > time::Duration::minutes(59) && left <= time::Duration::hours(1),
        "{expiration}"
    );
}

#[tokio::test]
async fn payloads_carry_the_definition_roles_and_the_local_route_shows_the_same_keys() {
    let h = Harness::start().await;
    register_definitions(&h).await;
    let described = h
        .client()
        .describe_task_definition()
        .task_definition("web")
        .send()
        .await
        .unwrap();
    let def = described.task_definition().unwrap();
    assert_eq!(def.task_role_arn(), Some(TASK_ROLE));
    assert_eq!(def.execution_role_arn(), Some(EXEC_ROLE));
    let required: Vec<&str> = def.requires_attributes().iter().map(|a| a.name()).collect();
    assert_eq!(required, [IAM]);

    let instance = register_instance(&h, "default", &[IAM]).await;
    let mut ws = connect_agent(&h, "default", &instance, false).await;

    let web = run(&h, "web").await;
    let payload = next_of_type(&mut ws, "PayloadMessage", SECS).await;
    assert!(matches!(
        AcsMessage::decode(&payload.to_string()).unwrap(),
        AcsMessage::PayloadMessage(_)
    ));
    let task = &payload["message"]["tasks"][0];
    assert_eq!(task["arn"], web.as_str());
    assert_credentials_shape(&task["roleCredentials"], TASK_ROLE);
    assert_credentials_shape(&task["executionRoleCredentials"], EXEC_ROLE);
    assert_ne!(
        task["roleCredentials"]["credentialsId"],
        task["executionRoleCredentials"]["credentialsId"]
    );
    let shown = issued(&h, &web).await;
    assert_eq!(shown["taskRoleCredentials"], task["roleCredentials"]);
    assert_eq!(
        shown["executionRoleCredentials"],
        task["executionRoleCredentials"]
    );

    // The agent acks the payload and one credentials ack per role, with
    // the payload's message id (docs/protocols.md §4.5).
    ack(&mut ws, &payload).await;
    let message_id = &payload["message"]["messageId"];
    ack_credentials(&mut ws, message_id, &task["roleCredentials"]).await;
    ack_credentials(&mut ws, message_id, &task["executionRoleCredentials"]).await;
    common::eventually(&h.plane, "credentials acked", |st| {
        acked(st, &web) == (Some(true), Some(true))
    })
    .await;

    // A task without roles carries none.
    let plain = run(&h, "plain").await;
    let payload = next_of_type(&mut ws, "PayloadMessage", SECS).await;
    let task = &payload["message"]["tasks"][0];
    assert_eq!(task["arn"], plain.as_str());
    assert!(task.get("roleCredentials").is_none(), "{task}");
    assert!(task.get("executionRoleCredentials").is_none(), "{task}");
    let shown = issued(&h, &plain).await;
    assert_eq!(shown["taskRoleCredentials"], Value::Null);
    assert_eq!(shown["executionRoleCredentials"], Value::Null);

    // RunTask overrides replace the definition's roles; DescribeTasks shows
    // the task role override.
    let override_role = "arn:aws:iam::000000000000:role/override";
    let out = h
        .client()
        .run_task()
        .task_definition("plain")
        .overrides(TaskOverride::builder().task_role_arn(override_role).build())
        .send()
        .await
        .unwrap();
    let overridden = out.tasks()[0].task_arn().unwrap().to_owned();
    let payload = next_of_type(&mut ws, "PayloadMessage", SECS).await;
    let task = &payload["message"]["tasks"][0];
    assert_eq!(task["roleCredentials"]["roleArn"], override_role);
    assert!(task.get("executionRoleCredentials").is_none());
    let described = h
        .client()
        .describe_tasks()
        .tasks(&overridden)
        .send()
        .await
        .unwrap();
    assert_eq!(
        described.tasks()[0].overrides().unwrap().task_role_arn(),
        Some(override_role)
    );

    // The route: by id too, and its errors.
    let (status, body) = h
        .get(&format!(
            "/_local/v1/task-credentials?task={}",
            task_id(&web)
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["taskArn"], web.as_str());
    let (status, body) = h.get("/_local/v1/task-credentials?task=nope").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"], "TaskNotFound");
    let (status, body) = h.get("/_local/v1/task-credentials").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "MissingParameter");
}

#[tokio::test]
async fn a_send_credentials_handshake_gets_one_message_per_role_of_each_live_task() {
    let h = Harness::start().await;
    register_definitions(&h).await;
    let instance = register_instance(&h, "default", &[IAM, IAM_HOST]).await;
    let mut ws = connect_agent(&h, "default", &instance, false).await;
    let mut tasks = Vec::new();
    for definition in ["web", "hosted", "plain", "web"] {
        tasks.push(run(&h, definition).await);
        let payload = next_of_type(&mut ws, "PayloadMessage", SECS).await;
        // The last one is never acked; the others are, and the credentials
        // of the first one too.
        if tasks.len() < 4 {
            ack(&mut ws, &payload).await;
        }
        if tasks.len() == 1 {
            let task = &payload["message"]["tasks"][0];
            for member in ["roleCredentials", "executionRoleCredentials"] {
                ack_credentials(&mut ws, &payload["message"]["messageId"], &task[member]).await;
            }
        }
    }
    let (web, hosted, plain, stopped) = (&tasks[0], &tasks[1], &tasks[2], &tasks[3]);
    common::eventually(&h.plane, "acks", |st| {
        acked(st, web) == (Some(true), Some(true)) && !st.tasks[&task_id(hosted)].needs_delivery()
    })
    .await;
    assert_eq!(
        h.plane.store().read(|st| acked(st, hosted)),
        (Some(false), None)
    );
    // Stopping a task the agent never acked stops it at once.
    let (status, _) = h
        .call("StopTask", json!({"task": stopped}).to_string().as_bytes())
        .await;
    assert_eq!(status, 200);
    // Nothing is pushed on this connection (watched for a moment: this
    // can pass wrongly, never fail wrongly).
    assert!(frames_within(&mut ws, CREDS, common::QUIET)
        .await
        .is_empty());
    drop(ws);

    // A reconnecting agent (sendCredentials=false) gets what it never
    // acked: the hosted task's credentials.
    let mut ws = connect_agent(&h, "default", &instance, false).await;
    let resent = common::exactly_frames(&mut ws, CREDS, 1).await;
    assert_eq!(resent[0]["message"]["taskArn"], hosted.as_str());
    assert_eq!(resent[0]["message"]["roleType"], "TaskApplication");
    drop(ws);

    // A restarted agent has no credentials: it asks for them.
    let mut ws = connect_agent(&h, "default", &instance, true).await;
    let messages = common::exactly_frames(&mut ws, CREDS, 3).await;
    let got: BTreeSet<(String, String)> = messages
        .iter()
        .map(|m| {
            let m = &m["message"];
            (
                m["taskArn"].as_str().unwrap().to_owned(),
                m["roleType"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want: BTreeSet<(String, String)> = [
        (web.clone(), "TaskApplication".to_owned()),
        (web.clone(), "TaskExecution".to_owned()),
        (hosted.clone(), "TaskApplication".to_owned()),
    ]
    .into_iter()
    .collect();
    assert_eq!(got, want, "{messages:#?}");
    assert_eq!(messages.len(), 3, "one message per role: {messages:#?}");
    assert!(!got.iter().any(|(t, _)| t == plain || t == stopped));
    for frame in &messages {
        assert!(matches!(
            AcsMessage::decode(&frame.to_string()).unwrap(),
            AcsMessage::IAMRoleCredentialsMessage(_)
        ));
        let m = &frame["message"];
        assert_eq!(
            m["taskClusterArn"],
            "arn:aws:ecs:us-east-1:000000000000:cluster/default"
        );
        assert!(!m["messageId"].as_str().unwrap().is_empty());
        let shown = issued(&h, m["taskArn"].as_str().unwrap()).await;
        let member = match m["roleType"].as_str().unwrap() {
            "TaskApplication" => "taskRoleCredentials",
            _ => "executionRoleCredentials",
        };
        assert_eq!(m["roleCredentials"], shown[member]);
        // The agent acks each one (acs-credentials-ack.json).
        ack_credentials(&mut ws, &m["messageId"], &m["roleCredentials"]).await;
    }
    // Acks are accepted and recorded; the connection stays up.
    common::eventually(&h.plane, "hosted credentials acked", |st| {
        acked(st, hosted) == (Some(true), None)
    })
    .await;
    next_of_type(&mut ws, "HeartbeatMessage", SECS).await;
    drop(ws);

    // A later connection (sendCredentials=false) gets nothing: all acked.
    let mut ws = connect_agent(&h, "default", &instance, false).await;
    assert!(frames_within(&mut ws, CREDS, common::QUIET)
        .await
        .is_empty());
}

#[tokio::test]
async fn credentials_are_refreshed_at_half_life_and_stop_with_the_task() {
    // Credentials live 2 s, so they are refreshed about every second.
    let h = Harness::start_with(|c| c.credentials_ttl = Duration::from_secs(2)).await;
    register_definitions(&h).await;
    let instance = register_instance(&h, "default", &[IAM]).await;
    let mut ws = connect_agent(&h, "default", &instance, false).await;
    let web = run(&h, "web").await;
    let payload = next_of_type(&mut ws, "PayloadMessage", SECS).await;
    ack(&mut ws, &payload).await;
    let first = payload["message"]["tasks"][0]["roleCredentials"].clone();

    let mut refreshed = None;
    let deadline = tokio::time::Instant::now() + SECS;
    while refreshed.is_none() {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let frame = next_of_type(&mut ws, CREDS, left).await;
        if frame["message"]["roleType"] == "TaskApplication" {
            refreshed = Some(frame);
        }
    }
    let frame = refreshed.unwrap();
    let m = &frame["message"];
    assert_eq!(m["taskArn"], web.as_str());
    let new = &m["roleCredentials"];
    assert_eq!(new["credentialsId"], first["credentialsId"], "same id");
    assert_eq!(new["roleArn"], TASK_ROLE);
    assert_ne!(new["accessKeyId"], first["accessKeyId"]);
    assert_ne!(new["secretAccessKey"], first["secretAccessKey"]);
    assert_ne!(new["sessionToken"], first["sessionToken"]);
    assert!(new["expiration"].as_str() > first["expiration"].as_str());
    // What the route shows follows the refresh (or a later one).
    let shown = issued(&h, &web).await;
    assert_eq!(
        shown["taskRoleCredentials"]["credentialsId"],
        first["credentialsId"]
    );
    assert_ne!(
        shown["taskRoleCredentials"]["accessKeyId"],
        first["accessKeyId"]
    );
    ack_credentials(&mut ws, &m["messageId"], new).await;

    // Once the task is STOPPED, refreshing stops.
    let (status, _) = h
        .call(
            "SubmitTaskStateChange",
            json!({"cluster": "default", "task": web, "status": "STOPPED", "reason": ""})
                .to_string()
                .as_bytes(),
        )
        .await;
    assert_eq!(status, 200);
    let id = task_id(&web);
    common::eventually(&h.plane, "task stopped", |st| st.tasks[&id].is_stopped()).await;
    // The plane rotates keys only for tasks its store shows not STOPPED,
    // in the same store update, so from here on the keys stay as they are.
    // Refreshes sent before the stop may still be unread on the socket;
    // the last of each role carries the keys shown now. The 2.5 s watch
    // (about two refresh periods) can only pass wrongly, never fail
    // wrongly.
    let before = issued(&h, &web).await;
    let late = frames_within(&mut ws, CREDS, Duration::from_millis(2500)).await;
    assert_eq!(issued(&h, &web).await, before, "refreshed after STOPPED");
    for (role, member) in [
        ("TaskApplication", "taskRoleCredentials"),
        ("TaskExecution", "executionRoleCredentials"),
    ] {
        if let Some(last) = late.iter().rfind(|f| f["message"]["roleType"] == role) {
            assert_eq!(
                last["message"]["roleCredentials"], before[member],
                "pushed after STOPPED: {late:#?}"
            );
        }
    }
}

#[tokio::test]
async fn task_roles_are_placed_only_on_instances_with_the_iam_attributes() {
    let h = Harness::start().await;
    register_definitions(&h).await;
    let bare = register_instance(&h, "default", &[]).await;
    let _bare_ws = connect_agent(&h, "default", &bare, false).await;
    let ecs = h.client();

    let out = ecs.run_task().task_definition("web").send().await.unwrap();
    assert!(out.tasks().is_empty());
    let failures = out.failures();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].arn(), Some(bare.as_str()));
    assert_eq!(failures[0].reason(), Some("ATTRIBUTE"));
    assert!(failures[0].detail().unwrap().contains(IAM));
    // An override adds a task role to a definition without one.
    let out = ecs
        .run_task()
        .task_definition("plain")
        .overrides(TaskOverride::builder().task_role_arn(TASK_ROLE).build())
        .send()
        .await
        .unwrap();
    assert_eq!(out.failures()[0].reason(), Some("ATTRIBUTE"));
    // Without a role the bare instance is fine.
    run(&h, "plain").await;

    let iam = register_instance(&h, "default", &[IAM]).await;
    let _iam_ws = connect_agent(&h, "default", &iam, false).await;
    let out = ecs.run_task().task_definition("web").send().await.unwrap();
    assert!(out.failures().is_empty());
    assert_eq!(out.tasks()[0].container_instance_arn(), Some(iam.as_str()));
    // Host network mode also needs task-iam-role-network-host.
    let out = ecs
        .run_task()
        .task_definition("hosted")
        .send()
        .await
        .unwrap();
    assert!(out.tasks().is_empty());
    let reasons: BTreeSet<(String, String)> = out
        .failures()
        .iter()
        .map(|f| {
            (
                f.arn().unwrap().to_owned(),
                f.detail().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert!(out
        .failures()
        .iter()
        .all(|f| f.reason() == Some("ATTRIBUTE")));
    assert!(reasons.contains(&(bare.clone(), format!("Missing attribute: {IAM}"))));
    assert!(reasons.contains(&(iam.clone(), format!("Missing attribute: {IAM_HOST}"))));

    let host = register_instance(&h, "default", &[IAM, IAM_HOST]).await;
    let _host_ws = connect_agent(&h, "default", &host, false).await;
    let out = ecs
        .run_task()
        .task_definition("hosted")
        .send()
        .await
        .unwrap();
    assert_eq!(out.tasks()[0].container_instance_arn(), Some(host.as_str()));
}

#[tokio::test]
async fn issued_credentials_survive_a_plane_restart() {
    let h = Harness::start().await;
    register_definitions(&h).await;
    let instance = register_instance(&h, "default", &[IAM]).await;
    let mut ws = connect_agent(&h, "default", &instance, false).await;
    let web = run(&h, "web").await;
    next_of_type(&mut ws, "PayloadMessage", SECS).await;
    let before = issued(&h, &web).await;
    drop(ws);

    let Harness { plane, dir } = h;
    plane.shutdown().await.unwrap();
    let h = Harness {
        plane: common::start_in(dir.path().join("data")).await,
        dir,
    };
    assert_eq!(issued(&h, &web).await, before);
    let mut ws = connect_agent(&h, "default", &instance, true).await;
    let messages = common::exactly_frames(&mut ws, CREDS, 2).await;
    for m in &messages {
        let member = match m["message"]["roleType"].as_str().unwrap() {
            "TaskApplication" => "taskRoleCredentials",
            _ => "executionRoleCredentials",
        };
        assert_eq!(m["message"]["roleCredentials"], before[member]);
    }
}

#[tokio::test]
async fn tags_of_tasks_and_container_instances() {
    let h = Harness::start().await;
    register_definitions(&h).await;
    let instance = register_instance(&h, "default", &[]).await;
    let _ws = connect_agent(&h, "default", &instance, false).await;
    let ecs = h.client();
    let tag = |k: &str, v: &str| Tag::builder().key(k).value(v).build();
    let out = ecs
        .run_task()
        .task_definition("plain")
        .tags(tag("team", "blue"))
        .send()
        .await
        .unwrap();
    let task = out.tasks()[0].task_arn().unwrap().to_owned();
    let listed = |arn: String| {
        let ecs = ecs.clone();
        async move {
            let out = ecs
                .list_tags_for_resource()
                .resource_arn(arn)
                .send()
                .await
                .unwrap();
            out.tags()
                .iter()
                .map(|t| {
                    (
                        t.key().unwrap_or_default().to_owned(),
                        t.value().unwrap_or_default().to_owned(),
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(listed(task.clone()).await, [("team".into(), "blue".into())]);
    ecs.tag_resource()
        .resource_arn(&task)
        .tags(tag("team", "red"))
        .tags(tag("tier", "web"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        listed(task.clone()).await,
        [("team".into(), "red".into()), ("tier".into(), "web".into())]
    );
    ecs.untag_resource()
        .resource_arn(&task)
        .tag_keys("team")
        .send()
        .await
        .unwrap();
    assert_eq!(listed(task.clone()).await, [("tier".into(), "web".into())]);

    assert!(listed(instance.clone()).await.is_empty());
    ecs.tag_resource()
        .resource_arn(&instance)
        .tags(tag("rack", "7"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        listed(instance.clone()).await,
        [("rack".into(), "7".into())]
    );
    let (_, described) = h
        .call(
            "DescribeContainerInstances",
            json!({"containerInstances": [instance.clone()], "include": ["TAGS"]})
                .to_string()
                .as_bytes(),
        )
        .await;
    assert_eq!(
        described["containerInstances"][0]["tags"],
        json!([{"key": "rack", "value": "7"}])
    );
    // Without `include`, no tags, as ECS answers.
    let (_, described) = h
        .call(
            "DescribeContainerInstances",
            json!({"containerInstances": [instance]})
                .to_string()
                .as_bytes(),
        )
        .await;
    assert!(described["containerInstances"][0].get("tags").is_none());

    let missing =
        "arn:aws:ecs:us-east-1:000000000000:task/default/0123456789abcdef0123456789abcdef";
    let err = ecs
        .tag_resource()
        .resource_arn(missing)
        .tags(tag("a", "b"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ResourceNotFoundException"));
    let err = ecs
        .list_tags_for_resource()
        .resource_arn(missing)
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InvalidParameterException"));
    let err = ecs
        .tag_resource()
        .resource_arn(&task)
        .tags(tag("aws:reserved", "x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InvalidParameterException"));
}
