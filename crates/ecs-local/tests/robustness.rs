//! Odd and hostile input never crashes the plane: every answer is a
//! modeled 200 or 400, never a dropped connection or a 500.
#![allow(clippy::unwrap_used)]

mod common;

use common::Harness;
use serde_json::json;

const ACTIONS: &[&str] = &[
    "CreateCluster",
    "ListClusters",
    "DescribeClusters",
    "RegisterTaskDefinition",
    "DescribeTaskDefinition",
    "RegisterContainerInstance",
    "DeregisterContainerInstance",
    "ListContainerInstances",
    "DescribeContainerInstances",
    "DiscoverPollEndpoint",
    "RunTask",
    "StopTask",
    "DescribeTasks",
    "ListTasks",
    "SubmitTaskStateChange",
    "SubmitContainerStateChange",
    "SubmitAttachmentStateChanges",
    "StartTask",
    "CreateService",
    "UpdateService",
    "DeleteService",
    "DescribeServices",
    "ListServices",
    "PutAttributes",
    "DeleteAttributes",
    "ListAttributes",
    "UpdateContainerInstancesState",
    "ListTagsForResource",
    "TagResource",
    "UntagResource",
    "ListAccountSettings",
    "PutAccountSetting",
    "DeleteAccountSetting",
    "DescribeCapacityProviders",
    "DeleteCluster",
    "DeregisterTaskDefinition",
    "DeleteTaskDefinitions",
    "ListTaskDefinitions",
    "ListTaskDefinitionFamilies",
];

#[tokio::test]
async fn odd_bodies_get_modeled_answers() {
    let h = Harness::start().await;
    let big = i64::MAX;
    let bodies = [
        json!(null),
        json!([]),
        json!("x"),
        json!({}),
        json!({"cluster": 5}),
        json!({"cluster": "", "task": "", "tasks": [], "containerInstances": [], "taskDefinition": ""}),
        json!({"cluster": "arn:aws:ecs:::", "task": "arn:", "taskDefinition": "arn:aws:ecs:r:a:task-definition/:", "containerInstance": "/"}),
        json!({"count": big, "taskDefinition": "x"}),
        json!({"maxResults": -1}),
        json!({"nextToken": "99999999999999999999999"}),
        json!({"family": "f", "containerDefinitions": [{"name": "a", "image": "i", "memory": big, "cpu": big,
               "portMappings": [{"containerPort": big, "hostPort": -1}]}]}),
        json!({"family": "f", "cpu": "1e309 vcpu", "memory": "NaN gb", "containerDefinitions": [{"name": "a", "image": "i"}]}),
        json!({"task": "x", "status": "RUNNING", "containers": [{"containerName": null}], "executionStoppedAt": 1e308}),
        json!({"totalResources": [{"name": "CPU", "integerValue": big}, {"name": "PORTS", "stringSetValue": ["-1", "99999", "x"]}]}),
        json!({"serviceName": "s", "service": "s", "taskDefinition": "f", "desiredCount": big,
               "deploymentConfiguration": {"maximumPercent": big, "minimumHealthyPercent": -5}}),
        json!({"serviceName": "s2", "taskDefinition": "f", "desiredCount": 2,
               "placementConstraints": [{"type": "memberOf", "expression": "((((((((((((((((((((((((((((((((((a"}],
               "placementStrategy": [{"type": "spread"}]}),
        json!({"filter": "not(not(not(", "resourceArn": "arn:aws:ecs:r:a:service/", "tags": [{"key": "aws:x"}]}),
        json!({"name": "containerInsights", "value": "enabled", "principalArn": "arn:aws:iam::1:user/x"}),
        json!({"capacityProviders": [5, "FARGATE"], "include": ["NOPE"], "services": ["a"]}),
    ];
    for action in ACTIONS {
        for body in &bodies {
            let (status, reply) = h.call(action, body.to_string().as_bytes()).await;
            assert!(
                status == 200 || status == 400,
                "{action} {body} answered {status} {reply}"
            );
            if status == 400 {
                assert!(reply["__type"].is_string(), "{action} {body}: {reply}");
            }
        }
    }
}

#[tokio::test]
async fn huge_sizes_do_not_overflow() {
    let h = Harness::start().await;
    let (_agent_arn, _agent) = common::connected_instance(&h, "default", i64::MAX, i64::MAX).await;
    let def = json!({"family": "huge", "containerDefinitions": [
        {"name": "a", "image": "i", "memory": i64::MAX, "cpu": i64::MAX,
         "linuxParameters": {"maxSwap": i64::MAX, "sharedMemorySize": i64::MAX,
                             "tmpfs": [{"containerPath": "/t", "size": i64::MAX}]},
         "healthCheck": {"command": ["CMD", "true"], "interval": i64::MAX}},
        {"name": "b", "image": "i", "memory": i64::MAX, "cpu": i64::MAX}]});
    let (status, reply) = h
        .call("RegisterTaskDefinition", def.to_string().as_bytes())
        .await;
    assert_eq!(status, 200, "{reply}");
    let (status, reply) = h
        .call("RunTask", br#"{"taskDefinition":"huge","count":3}"#)
        .await;
    assert_eq!(status, 200, "{reply}");
    let (status, reply) = h
        .call(
            "RunTask",
            br#"{"taskDefinition":"huge","overrides":{"containerOverrides":[{"name":"a","memory":-5}]}}"#,
        )
        .await;
    assert_eq!(status, 400, "{reply}");
    assert_eq!(reply["__type"], "InvalidParameterException");
}
