//! Tasks and Docker details shared by the endpoint tests.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::Arc;

use crate::docker::{ContainerDetails, MountDetails, NetworkDetails};
use crate::endpoints::{AgentView, TaskSource};
use crate::engine::status::{ContainerStatus, TaskStatus};
use crate::engine::task::{IncomingTask, PortBinding, Protocol, Task};

pub const TASK_ARN: &str =
    "arn:aws:ecs:us-west-2:111122223333:task/default/0a1b2c3d4e5f60718293a4b5c6d7e8f9";
pub const INSTANCE_ARN: &str =
    "arn:aws:ecs:us-west-2:111122223333:container-instance/default/4f1e0c9a2b7d4e3f9a6b5c4d3e2f1a0b";
pub const DOCKER_ID: &str = "3f5d9c0e8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e";
pub const ENDPOINT_ID: &str = "c2b9a8e4-1f3d-4b6a-9e8d-7c6b5a4f3e2d";

/// A running `web` task (revision 7) with one `app` container on
/// nginx, port 80 bound to 32768.
pub fn running_task() -> Task {
    let acs: ecs_model::acs::Task = serde_json::from_value(serde_json::json!({
        "arn": TASK_ARN, "family": "web", "version": "7", "desiredStatus": "RUNNING",
        "networkMode": "bridge", "cpu": 0.5, "memory": 1024,
        "roleCredentials": {"credentialsId": "cred-1"},
        "containers": [{"name": "app", "image": "nginx:1.25", "cpu": 256, "memory": 512,
            "containerArn": "arn:aws:ecs:us-west-2:111122223333:container/default/0a1b2c3d4e5f60718293a4b5c6d7e8f9/5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d",
            "portMappings": [{"containerPort": 80, "hostPort": 0, "protocol": "tcp"}]}]
    }))
    .unwrap();
    let mut task = Task::new(IncomingTask::try_from(&acs).unwrap(), 0);
    task.known_status = TaskStatus::Running;
    task.pull_started_at_ms = Some(1_709_287_200_800);
    task.pull_stopped_at_ms = Some(1_709_287_202_200);
    let c = &mut task.containers[0];
    c.known_status = ContainerStatus::Running;
    c.docker_id = Some(DOCKER_ID.into());
    c.docker_name = Some("ecs-web-7-app-e8c4d2b6a1f0c3e5d7b9".into());
    c.started_at_ms = Some(1_709_287_203_100);
    c.endpoint_id = ENDPOINT_ID.into();
    c.port_bindings = vec![PortBinding {
        container_port: 80,
        host_port: 32768,
        bind_ip: "0.0.0.0".into(),
        protocol: Protocol::Tcp,
    }];
    task
}

pub fn details() -> HashMap<String, ContainerDetails> {
    let labels = [
        ("com.amazonaws.ecs.cluster", "default"),
        ("com.amazonaws.ecs.container-name", "app"),
        ("com.amazonaws.ecs.task-arn", TASK_ARN),
        ("com.amazonaws.ecs.task-definition-family", "web"),
        ("com.amazonaws.ecs.task-definition-version", "7"),
    ];
    HashMap::from([(
        DOCKER_ID.to_string(),
        ContainerDetails {
            name: "/ecs-web-7-app-e8c4d2b6a1f0c3e5d7b9".into(),
            image: "nginx:1.25".into(),
            image_id: "sha256:6c0e5d4b3a291807f6e5d4c3b2a19080f7e6d5c4b3a2918070f6e5d4c3b2a190"
                .into(),
            created_at_ms: Some(1_709_287_202_510),
            running: true,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            network_mode: "bridge".into(),
            networks: vec![NetworkDetails {
                name: "bridge".into(),
                ipv4: "172.17.0.4".into(),
                ipv6: String::new(),
            }],
            mounts: vec![MountDetails {
                name: "vol1".into(),
                source: "/var/lib/docker/volumes/vol1/_data".into(),
                destination: "/data".into(),
            }],
            log_driver: "awslogs".into(),
            log_options: [
                ("awslogs-group", "/ecs/web"),
                ("awslogs-region", "us-west-2"),
                ("awslogs-stream", "ecs/app/0a1b2c3d4e5f60718293a4b5c6d7e8f9"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            health: None,
            port_bindings: Vec::new(),
        },
    )])
}

pub fn view(tasks: Vec<Task>) -> AgentView {
    AgentView {
        cluster: "default".into(),
        instance_arn: INSTANCE_ARN.into(),
        availability_zone: Some("us-west-2a".into()),
        tasks: TaskSource::Fixed(Arc::new(tasks)),
        checkpoint: Default::default(),
    }
}
