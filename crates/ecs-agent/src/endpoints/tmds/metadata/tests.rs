#![allow(clippy::unwrap_used)]
use super::*;
use crate::endpoints::fixtures::{self, DOCKER_ID, TASK_ARN};
use crate::endpoints::json::go_json;

fn ctx<'a>(
    details: &'a HashMap<String, ContainerDetails>,
    tags: Option<&'a Tags>,
) -> TaskContext<'a> {
    TaskContext {
        cluster: "default",
        availability_zone: Some("us-west-2a"),
        details,
        tags,
    }
}

#[test]
fn v4_task_matches_the_spec_example() {
    let details = fixtures::details();
    let task = fixtures::running_task();
    let body = go_json(&task_response(&task, &ctx(&details, None), Version::V4));
    let container_arn = task.containers[0].spec.container_arn.clone().unwrap();
    // A documented v4 task response (docs/endpoints.md §8.4), without
    // VPCID and AvailabilityZoneID (instance metadata this host does not
    // have).
    let expected = format!(
        r#"{{"Cluster":"default","TaskARN":"{TASK_ARN}","Family":"web","Revision":"7","DesiredStatus":"RUNNING","KnownStatus":"RUNNING","Limits":{{"CPU":0.5,"Memory":1024}},"PullStartedAt":"2024-03-01T10:00:00.8Z","PullStoppedAt":"2024-03-01T10:00:02.2Z","AvailabilityZone":"us-west-2a","LaunchType":"EC2","Containers":[{{"DockerId":"{DOCKER_ID}","Name":"app","DockerName":"ecs-web-7-app-e8c4d2b6a1f0c3e5d7b9","Image":"nginx:1.25","ImageID":"sha256:6c0e5d4b3a291807f6e5d4c3b2a19080f7e6d5c4b3a2918070f6e5d4c3b2a190","Ports":[{{"ContainerPort":80,"Protocol":"tcp","HostPort":32768,"HostIp":"0.0.0.0"}}],"Labels":{{"com.amazonaws.ecs.cluster":"default","com.amazonaws.ecs.container-name":"app","com.amazonaws.ecs.task-arn":"{TASK_ARN}","com.amazonaws.ecs.task-definition-family":"web","com.amazonaws.ecs.task-definition-version":"7"}},"DesiredStatus":"RUNNING","KnownStatus":"RUNNING","Limits":{{"CPU":256,"Memory":512}},"CreatedAt":"2024-03-01T10:00:02.51Z","StartedAt":"2024-03-01T10:00:03.1Z","Type":"NORMAL","Volumes":[{{"DockerName":"vol1","Source":"/var/lib/docker/volumes/vol1/_data","Destination":"/data"}}],"LogDriver":"awslogs","LogOptions":{{"awslogs-group":"/ecs/web","awslogs-region":"us-west-2","awslogs-stream":"ecs/app/0a1b2c3d4e5f60718293a4b5c6d7e8f9"}},"ContainerARN":"{container_arn}","Networks":[{{"NetworkMode":"bridge","IPv4Addresses":["172.17.0.4"]}}]}}],"FaultInjectionEnabled":false}}"#
    );
    assert_eq!(body, expected);
}

#[test]
fn v3_task_keeps_containers_after_known_status_and_has_no_v4_fields() {
    let details = fixtures::details();
    let task = fixtures::running_task();
    let body = go_json(&task_response(&task, &ctx(&details, None), Version::V3));
    let containers_at = body.find(r#""Containers""#).unwrap();
    assert!(body.find(r#""KnownStatus":"RUNNING""#).unwrap() < containers_at);
    assert!(containers_at < body.find(r#""Limits":{"CPU":0.5"#).unwrap());
    for v4_only in [
        "LaunchType",
        "FaultInjectionEnabled",
        "LogDriver",
        "ContainerARN",
        "HostIp",
    ] {
        assert!(!body.contains(v4_only), "{v4_only} in {body}");
    }
    assert!(body.contains(r#""Type":"NORMAL","Networks":[{"NetworkMode":"bridge","IPv4Addresses":["172.17.0.4"]}],"Volumes""#), "{body}");
}

#[test]
fn statuses_limits_and_host_mode_quirks() {
    let mut task = fixtures::running_task();
    task.spec.cpu = 0.0;
    task.spec.memory_mib = 0;
    task.spec.network_mode = crate::engine::task::NetworkMode::Host;
    let c = &mut task.containers[0];
    c.spec.cpu = 0;
    c.known_status = ContainerStatus::Stopped;
    c.exit_code = Some(3);
    c.finished_at_ms = Some(1_709_287_300_000);
    let mut details = fixtures::details();
    let d = details.get_mut(DOCKER_ID).unwrap();
    d.networks = vec![crate::docker::NetworkDetails {
        name: "host".into(),
        ..Default::default()
    }];
    let body = go_json(&task_response(&task, &ctx(&details, None), Version::V3));
    assert!(
        !body.contains(r#""Limits":{"CPU":0"#),
        "task limits must be left out: {body}"
    );
    assert!(
        body.contains(r#""KnownStatus":"STOPPED","ExitCode":3,"Limits":{"CPU":2,"Memory":512}"#),
        "{body}"
    );
    assert!(
        body.contains(r#""FinishedAt":"2024-03-01T10:01:40Z""#),
        "{body}"
    );
    assert!(
        body.contains(r#"{"NetworkMode":"host","IPv4Addresses":[""]}"#),
        "{body}"
    );
}

#[test]
fn tags_and_their_errors() {
    let details = fixtures::details();
    let task = fixtures::running_task();
    let tags = Tags {
        task: Some(BTreeMap::from([("team".to_string(), "a&b".to_string())])),
        instance: None,
        errors: vec![TagError {
            error_field: "ContainerInstanceTags",
            error_code: "AccessDeniedException".into(),
            error_message: "denied".into(),
            status_code: Some(400),
            request_id: "req-1".into(),
            resource_arn: fixtures::INSTANCE_ARN.into(),
        }],
    };
    let v4 = go_json(&task_response(
        &task,
        &ctx(&details, Some(&tags)),
        Version::V4,
    ));
    assert!(v4.contains(r#""TaskTags":{"team":"a\u0026b"}"#), "{v4}");
    assert!(v4.contains(&format!(
        r#""LaunchType":"EC2","Errors":[{{"ErrorField":"ContainerInstanceTags","ErrorCode":"AccessDeniedException","ErrorMessage":"denied","StatusCode":400,"RequestId":"req-1","ResourceARN":"{}"}}],"Containers""#,
        fixtures::INSTANCE_ARN
    )), "{v4}");
    let v3 = go_json(&task_response(
        &task,
        &ctx(&details, Some(&tags)),
        Version::V3,
    ));
    assert!(!v3.contains("Errors"));
}
