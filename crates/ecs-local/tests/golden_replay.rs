//! Replays the ECS API requests the Go agent recorded (spec/samples) and
//! checks the answers it depends on.
#![allow(clippy::unwrap_used)]

mod common;

use common::{recorded_request, sample, Harness, TARGET};
use ecs_local::lifecycle::{new_task, TaskSpec};
use ecs_local::store::StoreError;
use serde_json::{json, Value};

const RECORDED_INSTANCE: &str =
    "arn:aws:ecs:us-east-1:123456789012:container-instance/default/701bbc45062742f4a14a0c8f8f3a5e0d";
const RUN1_TASK: &str =
    "arn:aws:ecs:us-east-1:123456789012:task/default/5b1f0e8c2d3a4f6e9a7b8c9d0e1f2a3b";
const RUN2_TASK: &str =
    "arn:aws:ecs:us-east-1:123456789012:task/default/7c2e1d9b3a4f5e6d8c7b6a5f4e3d2c1b";

async fn replay(h: &Harness, spec: &std::path::Path, name: &str) -> (u16, Value) {
    let (target, body) = recorded_request(spec, name);
    let (status, _, body) = common::post(&h.addr(), &target, &body).await;
    (status, serde_json::from_slice(&body).unwrap())
}

fn assert_attributes_echoed(request: &Value, response: &Value) {
    let sent = request["attributes"].as_array().unwrap();
    let got = response["containerInstance"]["attributes"]
        .as_array()
        .unwrap();
    for attribute in sent {
        assert!(got.contains(attribute), "attribute {attribute} not echoed");
    }
    assert!(got.contains(&json!({"name": "ecs.availability-zone", "value": "us-east-1a"})));
    assert_eq!(got.len(), sent.len() + 1);
}

#[tokio::test]
async fn registration_and_discovery_answer_what_the_agent_needs() {
    let Some(spec) = common::spec() else { return };
    let h = Harness::start().await;

    let (status, first) = replay(&h, &spec, "register-container-instance.request.http").await;
    assert_eq!(status, 200, "{first}");
    let request: Value = serde_json::from_slice(
        &recorded_request(&spec, "register-container-instance.request.http").1,
    )
    .unwrap();
    assert_attributes_echoed(&request, &first);
    let ci = &first["containerInstance"];
    let arn = ci["containerInstanceArn"].as_str().unwrap();
    assert!(arn.starts_with("arn:aws:ecs:us-east-1:000000000000:container-instance/default/"));
    assert_eq!(arn.rsplit('/').next().unwrap().len(), 32);
    assert_eq!(ci["ec2InstanceId"], "i-0fa4e5c0ffee00001");
    assert_eq!(ci["status"], "ACTIVE");
    assert_eq!(ci["agentConnected"], false);
    assert_eq!(ci["registeredResources"], request["totalResources"]);
    assert_eq!(ci["remainingResources"], request["totalResources"]);

    let (status, again) = replay(&h, &spec, "re-register.request.http").await;
    assert_eq!(status, 200, "{again}");
    let request: Value =
        serde_json::from_slice(&recorded_request(&spec, "re-register.request.http").1).unwrap();
    assert_eq!(
        again["containerInstance"]["containerInstanceArn"],
        RECORDED_INSTANCE
    );
    assert_attributes_echoed(&request, &again);
    // Re-registering the same ARN again keeps it and bumps the version.
    let (_, third) = replay(&h, &spec, "re-register.request.http").await;
    assert_eq!(
        third["containerInstance"]["containerInstanceArn"],
        RECORDED_INSTANCE
    );
    assert_eq!(third["containerInstance"]["version"], 2);

    let (status, dpe) = replay(&h, &spec, "discover-poll-endpoint.request.http").await;
    assert_eq!(status, 200);
    assert_eq!(
        dpe,
        json!({"endpoint": format!("http://{}/acs", h.addr()), "telemetryEndpoint": format!("http://{}/tcs/", h.addr())})
    );
}

#[tokio::test]
async fn registration_into_a_missing_cluster_is_cluster_not_found() {
    let Some(spec) = common::spec() else { return };
    let h = Harness::start().await;
    let (_, body) = recorded_request(&spec, "register-container-instance.request.http");
    let mut request: Value = serde_json::from_slice(&body).unwrap();
    request["cluster"] = json!("nope");
    let (status, body) = h
        .call("RegisterContainerInstance", request.to_string().as_bytes())
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["__type"], "ClusterNotFoundException");
}

/// Puts tasks with the recorded ARNs on the recorded instance, the way
/// RunTask would have.
async fn seed_recorded_tasks(h: &Harness, spec: &std::path::Path) {
    let (status, _) = replay(h, spec, "re-register.request.http").await;
    assert_eq!(status, 200);
    for family in ["golden-capture", "golden-capture-digest"] {
        let def = json!({"family": family, "containerDefinitions": [
            {"name": "sleeper", "image": "busybox:local", "memory": 32, "command": ["sleep", "600"]}]});
        let (status, _) = h
            .call("RegisterTaskDefinition", def.to_string().as_bytes())
            .await;
        assert_eq!(status, 200);
    }
    let arns = h.plane.arns().clone();
    h.plane
        .store()
        .update(|st| {
            for (arn, family) in [
                (RUN1_TASK, "golden-capture"),
                (RUN2_TASK, "golden-capture-digest"),
            ] {
                let spec = TaskSpec {
                    task_arn: arn.to_owned(),
                    cluster: "default".to_owned(),
                    family: family.to_owned(),
                    revision: 1,
                    instance_id: "701bbc45062742f4a14a0c8f8f3a5e0d".to_owned(),
                    ..TaskSpec::default()
                };
                let record = new_task(&arns, st, spec, 1.0).unwrap();
                st.tasks.insert(record.id.clone(), record);
            }
            Ok::<_, StoreError>(())
        })
        .unwrap();
}

async fn describe_task(h: &Harness, arn: &str) -> Value {
    let (status, body) = h
        .call(
            "DescribeTasks",
            json!({"tasks": [arn]}).to_string().as_bytes(),
        )
        .await;
    assert_eq!(status, 200);
    body["tasks"][0].clone()
}

async fn remaining_memory(h: &Harness) -> i64 {
    let (_, body) = h
        .call(
            "DescribeContainerInstances",
            json!({"containerInstances": [RECORDED_INSTANCE]})
                .to_string()
                .as_bytes(),
        )
        .await;
    body["containerInstances"][0]["remainingResources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "MEMORY")
        .unwrap()["integerValue"]
        .as_i64()
        .unwrap()
}

#[tokio::test]
async fn recorded_state_changes_are_applied() {
    let Some(spec) = common::spec() else { return };
    let h = Harness::start().await;
    seed_recorded_tasks(&h, &spec).await;
    assert_eq!(remaining_memory(&h).await, 24105 - 64);

    let (status, ack) = replay(&h, &spec, "submit-task-state-change.running.request.http").await;
    assert_eq!(status, 200);
    assert_eq!(ack, json!({"acknowledgment": "ACK"}));
    let task = describe_task(&h, RUN1_TASK).await;
    assert_eq!(task["lastStatus"], "RUNNING");
    assert!(task["startedAt"].is_number());
    assert_eq!(task["containers"][0]["lastStatus"], "RUNNING");
    assert_eq!(
        task["containers"][0]["runtimeId"],
        "d5e88f77b56918e6cbc574e607a451853ee97cea2500d68f4547c75286bddcdc"
    );

    let (status, _) = replay(&h, &spec, "submit-task-state-change.stopped.request.http").await;
    assert_eq!(status, 200);
    let task = describe_task(&h, RUN1_TASK).await;
    assert_eq!(task["lastStatus"], "STOPPED");
    assert_eq!(task["desiredStatus"], "STOPPED");
    assert_eq!(task["containers"][0]["exitCode"], 137);
    assert_eq!(task["executionStoppedAt"].as_f64(), Some(1795810756.202));
    assert!(task["stoppedAt"].is_number());
    assert_eq!(task["stoppedReason"], "Essential container in task exited");
    assert_eq!(task["stopCode"], "EssentialContainerExited");
    // The stopped task no longer holds memory.
    assert_eq!(remaining_memory(&h).await, 24105 - 32);

    // Going backwards is ignored.
    let (status, _) = replay(&h, &spec, "submit-task-state-change.running.request.http").await;
    assert_eq!(status, 200);
    assert_eq!(describe_task(&h, RUN1_TASK).await["lastStatus"], "STOPPED");

    let (status, _) = replay(&h, &spec, "submit-task-state-change.pending.request.http").await;
    assert_eq!(status, 200);
    let task = describe_task(&h, RUN2_TASK).await;
    assert_eq!(task["lastStatus"], "PENDING");
    assert_eq!(
        task["containers"][0]["imageDigest"],
        "sha256:160ee9d43a11196779426b4c6b267775f93730b9e9bb1ebf35053874e8e74617"
    );
    for name in [
        "submit-task-state-change.digest-task.running.json",
        "submit-task-state-change.digest-task.stopped.json",
    ] {
        let (status, _, _) = common::post(
            &h.addr(),
            &format!("{TARGET}SubmitTaskStateChange"),
            &sample(&spec, name),
        )
        .await;
        assert_eq!(status, 200);
    }
    let task = describe_task(&h, RUN2_TASK).await;
    assert_eq!(task["lastStatus"], "STOPPED");
    assert_eq!(task["executionStoppedAt"].as_f64(), Some(1795810898.616));
    assert_eq!(remaining_memory(&h).await, 24105);
}

#[tokio::test]
async fn state_change_for_an_unknown_task_is_acknowledged() {
    let Some(spec) = common::spec() else { return };
    let h = Harness::start().await;
    let (status, body) = replay(&h, &spec, "submit-task-state-change.running.request.http").await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"acknowledgment": "ACK"}));
    let (status, body) = h
        .call(
            "SubmitContainerStateChange",
            br#"{"cluster":"default","task":"nope","containerName":"x","status":"RUNNING"}"#,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"acknowledgment": "ACK"}));
}

#[tokio::test]
async fn protocol_errors_have_ecs_shapes() {
    let h = Harness::start().await;
    let (status, head, body) =
        common::post(&h.addr(), &format!("{TARGET}FlyToTheMoon"), b"{}").await;
    assert_eq!(status, 400);
    let head = head.to_ascii_lowercase();
    assert!(
        head.contains("content-type: application/x-amz-json-1.1"),
        "{head}"
    );
    assert!(head.contains("x-amzn-requestid: "), "{head}");
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["__type"], "UnknownOperationException");

    let (status, body) = h.call("ListClusters", b"{not json").await;
    assert_eq!(status, 400);
    assert_eq!(body["__type"], "SerializationException");
    let (status, body) = h.call("DescribeTasks", br#"{"tasks":"not a list"}"#).await;
    assert_eq!(status, 400);
    assert_eq!(body["__type"], "SerializationException");
    let (status, body) = h.call("ListClusters", b"").await;
    assert_eq!(status, 200, "{body}");
    let (status, _, _) = common::post(&h.addr(), "", b"{}").await;
    assert_eq!(status, 400);
    let (status, body) = h
        .call("DescribeTasks", br#"{"tasks":["x"],"cluster":"ghost"}"#)
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["__type"], "ClusterNotFoundException");
    assert_eq!(body["message"], "Cluster not found.");
}
