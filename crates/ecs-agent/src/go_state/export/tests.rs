#![allow(clippy::unwrap_used)]

use serde_json::{json, Value};

use super::*;
use crate::engine::ports::AssignedRange;
use crate::engine::task::{IncomingTask, PortBinding, Protocol};
use crate::state_change::{ContainerStateChange, TaskStateChange};

const ARN: &str = "arn:aws:ecs:us-east-1:123456789012:task/prod/0123456789abcdef0123456789abcdef";
const INSTANCE: &str = "arn:aws:ecs:us-east-1:123456789012:container-instance/prod/ffff";

/// A task as a payload gives it, made by the agent's own parser.
fn task(acs: Value) -> Task {
    let acs: ecs_model::acs::Task = serde_json::from_value(acs).unwrap();
    Task::new(IncomingTask::try_from(&acs).unwrap(), 1_700_000_000_000)
}

fn one_container(container: Value) -> Value {
    json!({
        "arn": ARN, "family": "web", "version": "3", "desiredStatus": "RUNNING",
        "launchType": "EC2", "group": "family:web",
        "containers": [container]
    })
}

/// Every container RUNNING with a Docker container, reported and delivered.
fn running(mut t: Task) -> Task {
    for (i, c) in t.containers.iter_mut().enumerate() {
        c.known_status = ContainerStatus::Running;
        c.desired_status = ContainerStatus::Running;
        c.reported_status = ContainerStatus::Running;
        c.docker_id = Some(format!("{i:064x}"));
        c.docker_name = Some(format!("ecs-web-3-{}-00", c.spec.name));
        c.started_at_ms = Some(1_700_000_001_000);
    }
    t.known_status = TaskStatus::Running;
    t.reported_status = TaskStatus::Running;
    for v in &mut t.volumes {
        v.status = ResourceStatus::Created;
    }
    t
}

/// The task after its essential container exited with `code`.
fn stopped(mut t: Task, code: i64) -> Task {
    t = running(t);
    t.raise_desired_status(TaskStatus::Stopped);
    for c in &mut t.containers {
        c.known_status = ContainerStatus::Stopped;
        c.reported_status = ContainerStatus::Stopped;
        c.exit_code = Some(code);
    }
    t.known_status = TaskStatus::Stopped;
    t.reported_status = TaskStatus::Stopped;
    t.execution_stopped_at_ms = Some(1_700_000_002_000);
    t
}

fn state(tasks: Vec<Task>) -> ExportState {
    ExportState {
        cluster: Some("prod".into()),
        container_instance_arn: Some(INSTANCE.into()),
        ec2_instance_id: Some("i-0abc".into()),
        availability_zone: Some("us-east-1b".into()),
        latest_seq: 7,
        tasks,
        images: vec![ImageRecord {
            image_id: "sha256:aaaa".into(),
            names: vec!["busybox".into()],
            size: 4_000_000,
            pulled_at_ms: 1_699_999_999_000,
            last_used_at_ms: 1_700_000_000_500,
            pull_succeeded: true,
        }],
        outbox: Vec::new(),
        settings: ExportSettings {
            region: "us-east-1".into(),
            configured_cluster: "prod".into(),
            cgroups: CgroupSettings::default(),
        },
    }
}

fn value(buckets: &Buckets, bucket: &str, key: &str) -> Value {
    let bytes = buckets[bucket]
        .get(key.as_bytes())
        .unwrap_or_else(|| panic!("no {bucket}/{key}"));
    serde_json::from_slice(bytes).unwrap()
}

fn go_task_of(buckets: &Buckets) -> Value {
    value(buckets, "tasks", task_id(ARN))
}

fn container_of(buckets: &Buckets, name: &str) -> Value {
    value(buckets, "containers", &format!("{}-{name}", task_id(ARN)))
}

fn app() -> Value {
    json!({"name": "app", "image": "busybox", "essential": true, "memory": 32})
}

#[test]
fn buckets_metadata_and_the_go_agents_record_types() {
    let b = to_go_buckets(&state(vec![running(task(one_container(app())))])).unwrap();
    assert_eq!(
        b.keys().map(String::as_str).collect::<Vec<_>>(),
        BUCKETS.to_vec()
    );
    assert!(b["eniattachments"].is_empty() && b["resattachments"].is_empty());
    let meta = |k: &str| value(&b, "metadata", k);
    assert_eq!(meta(keys::AGENT_VERSION), json!("1.105.0"));
    assert_eq!(meta(keys::CLUSTER), json!("prod"));
    assert_eq!(meta(keys::CONTAINER_INSTANCE_ARN), json!(INSTANCE));
    assert_eq!(meta(keys::EC2_INSTANCE_ID), json!("i-0abc"));
    assert_eq!(meta(keys::AVAILABILITY_ZONE), json!("us-east-1b"));
    // A JSON string, as the Go agent stores the number.
    assert_eq!(meta(keys::TASK_MANIFEST_SEQ_NUM), json!("7"));
    assert_eq!(b["metadata"].len(), 6);

    // Every record reads back as the Go agent's records.
    let _: GoTask = serde_json::from_value(go_task_of(&b)).unwrap();
    let _: GoDockerContainer = serde_json::from_value(container_of(&b, "app")).unwrap();
    let image: GoImageState = serde_json::from_value(value(&b, "images", "sha256:aaaa")).unwrap();
    assert_eq!(image.image.names, Some(vec!["busybox".to_string()]));
    assert_eq!(image.image.size, 4_000_000);
    assert!(image.pull_succeeded);
    assert_eq!(image.pulled_at, "2023-11-14T22:13:19Z");
    assert_eq!(image.managed_env_keys, json!({}));

    // The Docker container's record is the task's copy of it.
    let t = go_task_of(&b);
    let c = container_of(&b, "app");
    assert_eq!(c["Container"], t["Containers"][0]);
    assert_eq!(c["DockerId"], json!(format!("{:064x}", 0)));
    assert_eq!(c["DockerName"], json!("ecs-web-3-app-00"));
    assert_eq!(c["Container"]["RuntimeID"], c["DockerId"]);
}

#[test]
fn no_payload_yet_is_sequence_zero() {
    let mut s = state(vec![]);
    s.latest_seq = -1;
    let b = to_go_buckets(&s).unwrap();
    assert_eq!(
        value(&b, "metadata", keys::TASK_MANIFEST_SEQ_NUM),
        json!("0")
    );
    assert!(b["tasks"].is_empty() && b["containers"].is_empty());
}

#[test]
fn task_identity_and_definition() {
    let mut acs = one_container(json!({
        "name": "app", "image": "busybox", "essential": true, "cpu": 256, "memory": 128,
        "command": ["sh", "-c", "sleep 1"], "entryPoint": ["/bin/env"],
        "environment": {"A": "1"}, "links": [], "startTimeout": 60, "stopTimeout": 20,
        "containerArn": "arn:aws:ecs:us-east-1:123456789012:container/prod/x/1",
        "dockerConfig": {"config": "{\"Labels\":{}}", "hostConfig": "{}", "version": "1.17"}
    }));
    acs["cpu"] = json!(0.5);
    acs["memory"] = json!(512);
    acs["serviceName"] = json!("svc");
    acs["pidMode"] = json!("host");
    acs["roleCredentials"] = json!({"credentialsId": "cred-task"});
    acs["executionRoleCredentials"] = json!({"credentialsId": "cred-exec"});
    let b = to_go_buckets(&state(vec![running(task(acs))])).unwrap();
    let t = go_task_of(&b);
    assert_eq!(t["Arn"], json!(ARN));
    assert_eq!(t["Family"], json!("web"));
    assert_eq!(t["Version"], json!("3"));
    assert_eq!(t["ServiceName"], json!("svc"));
    assert_eq!(t["Group"], json!("family:web"));
    assert_eq!(t["Cpu"], json!(0.5));
    assert_eq!(t["Memory"], json!(512));
    assert_eq!(t["PidMode"], json!("host"));
    assert_eq!(t["LaunchType"], json!("EC2"));
    assert_eq!(t["NetworkMode"], json!("bridge"));
    assert_eq!(t["credentialsID"], json!("cred-task"));
    assert_eq!(t["executionCredentialsID"], json!("cred-exec"));
    assert_eq!(t["KnownTime"], json!("2023-11-14T22:13:20Z"));
    assert_eq!(t["PullStartedAt"], json!(ZERO_TIME));
    assert_eq!(
        t["ServiceConnectConfig"]["containerName"],
        json!("service-connect")
    );
    assert_eq!(t["PlatformFields"], json!({}));
    // The task cgroup as the Go agent would have made it.
    assert_eq!(t["MemoryCPULimitsEnabled"], json!(true));
    assert_eq!(
        t["resources"],
        json!({"cgroup": [{
            "cgroupRoot": "/ecs/0123456789abcdef0123456789abcdef",
            "cgroupMountPath": "/sys/fs/cgroup",
            "createdAt": ZERO_TIME,
            "desiredStatus": "CREATED",
            "knownStatus": "CREATED",
            "resourceSpec": {"memory": {"limit": 536_870_912}, "cpu": {"quota": 50_000, "period": 100_000}}
        }]})
    );
    assert_eq!(
        t["Containers"][0]["TransitionDependencySet"],
        json!({"PULLED": {"ContainerDependencies": null,
            "ResourceDependencies": [{"Name": "cgroup", "RequiredStatus": 1}]}})
    );
    assert_eq!(t["volumes"], Value::Null);

    let c = &t["Containers"][0];
    assert_eq!(c["Name"], json!("app"));
    assert_eq!(c["taskARN"], json!(ARN));
    assert_eq!(c["Image"], json!("busybox"));
    assert_eq!(c["ImageID"], json!("sha256:aaaa"));
    assert_eq!(c["Command"], json!(["sh", "-c", "sleep 1"]));
    assert_eq!(c["EntryPoint"], json!(["/bin/env"]));
    assert_eq!(c["Cpu"], json!(256));
    assert_eq!(c["Memory"], json!(128));
    assert_eq!(c["Essential"], json!(true));
    assert_eq!(c["Links"], Value::Null);
    assert_eq!(c["StartTimeout"], json!(60));
    assert_eq!(c["StopTimeout"], json!(20));
    assert_eq!(
        c["ContainerArn"],
        json!("arn:aws:ecs:us-east-1:123456789012:container/prod/x/1")
    );
    assert_eq!(
        c["dockerConfig"],
        json!({"config": "{\"Labels\":{}}", "hostConfig": "{}", "version": "1.17"})
    );
    assert_eq!(c["IsInternal"], json!("NORMAL"));
    assert_eq!(c["overrides"], json!({"command": null}));
    assert_eq!(c["startedAt"], json!("2023-11-14T22:13:21Z"));
    assert!(c.get("healthCheckType").is_none());
    assert!(c.get("dependsOn").is_none());
    assert!(c.get("restartPolicy").is_none() && c.get("restartTracker").is_none());

    // What the Go agent adds to the environment: the endpoints (from the
    // endpoint ID), the credentials URI, and the region of a created
    // container.
    let id = t["Containers"][0]["V3EndpointID"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        c["environment"],
        json!({
            "A": "1",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "/v2/credentials/cred-task",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "ECS_AGENT_URI": format!("http://169.254.170.2/api/{id}"),
            "ECS_CONTAINER_METADATA_URI": format!("http://169.254.170.2/v3/{id}"),
            "ECS_CONTAINER_METADATA_URI_V4": format!("http://169.254.170.2/v4/{id}"),
        })
    );
}

#[test]
fn the_region_is_left_to_the_task_definition_and_to_uncreated_containers() {
    let own_region = json!({"name": "app", "image": "busybox", "essential": true,
        "environment": {"AWS_DEFAULT_REGION": "eu-west-1"}});
    let b = to_go_buckets(&state(vec![running(task(one_container(own_region)))])).unwrap();
    let env = &go_task_of(&b)["Containers"][0]["environment"];
    assert_eq!(env["AWS_DEFAULT_REGION"], json!("eu-west-1"));
    assert!(env.get("AWS_REGION").is_none());

    // Stopped before it was created: no region, no Docker record.
    let mut t = task(one_container(app()));
    t.raise_desired_status(TaskStatus::Stopped);
    t.containers[0].known_status = ContainerStatus::Stopped;
    t.known_status = TaskStatus::Stopped;
    let b = to_go_buckets(&state(vec![t])).unwrap();
    let c = &go_task_of(&b)["Containers"][0];
    assert!(c["environment"].get("AWS_REGION").is_none());
    assert!(c["environment"].get("ECS_CONTAINER_METADATA_URI").is_some());
    assert_eq!(c["ContainerPortSet"], Value::Null);
    assert!(b["containers"].is_empty());
}

#[test]
fn every_status_maps_to_the_go_agents_string() {
    let container_cases = [
        (ContainerStatus::None, "NONE"),
        (ContainerStatus::ManifestPulled, "MANIFEST_PULLED"),
        (ContainerStatus::Pulled, "PULLED"),
        (ContainerStatus::Created, "CREATED"),
        (ContainerStatus::Running, "RUNNING"),
        (
            ContainerStatus::ResourcesProvisioned,
            "RESOURCES_PROVISIONED",
        ),
        (ContainerStatus::Stopped, "STOPPED"),
    ];
    for (status, text) in container_cases {
        assert_eq!(status.name(), text);
    }
    let task_cases = [
        (TaskStatus::None, "NONE"),
        (TaskStatus::ManifestPulled, "MANIFEST_PULLED"),
        (TaskStatus::Created, "CREATED"),
        (TaskStatus::Running, "RUNNING"),
        (TaskStatus::Stopped, "STOPPED"),
    ];
    for (status, text) in task_cases {
        assert_eq!(status.name(), text);
    }

    // Settled at each container status: known = desired.
    for (status, text) in container_cases {
        if status == ContainerStatus::Stopped {
            continue;
        }
        let mut t = task(one_container(app()));
        let c = &mut t.containers[0];
        c.known_status = status;
        c.desired_status = status;
        c.reported_status = status.min(ContainerStatus::Running);
        if status >= ContainerStatus::Created {
            c.docker_id = Some("d".into());
        }
        t.known_status = status.task_status();
        t.desired_status = status.task_status();
        t.reported_status = status.task_status();
        let b = to_go_buckets(&state(vec![t])).unwrap();
        let go = go_task_of(&b);
        assert_eq!(go["Containers"][0]["KnownStatus"], json!(text), "{text}");
        assert_eq!(go["Containers"][0]["desiredStatus"], json!(text), "{text}");
        assert_eq!(
            go["KnownStatus"],
            json!(status.task_status().name()),
            "{text}"
        );
    }

    let b = to_go_buckets(&state(vec![stopped(task(one_container(app())), 0)])).unwrap();
    let go = go_task_of(&b);
    assert_eq!(go["KnownStatus"], json!("STOPPED"));
    assert_eq!(go["DesiredStatus"], json!("STOPPED"));
    assert_eq!(go["SentStatus"], json!("STOPPED"));
    assert_eq!(go["Containers"][0]["KnownStatus"], json!("STOPPED"));
    assert_eq!(go["Containers"][0]["desiredStatus"], json!("STOPPED"));
    assert_eq!(go["Containers"][0]["SentStatus"], json!("STOPPED"));
}

#[test]
fn a_stopped_task_keeps_exit_code_reason_and_stop_time() {
    let mut t = stopped(task(one_container(app())), 3);
    t.containers[0].reason = Some("CannotStartContainerError: no such file".into());
    let b = to_go_buckets(&state(vec![t])).unwrap();
    let go = go_task_of(&b);
    assert_eq!(go["ExecutionStoppedAt"], json!("2023-11-14T22:13:22Z"));
    let c = &go["Containers"][0];
    assert_eq!(c["KnownExitCode"], json!(3));
    assert_eq!(
        c["ApplyingError"],
        json!({"error": "no such file", "name": "CannotStartContainerError"})
    );
    // The Docker container is still there for the Go agent to remove.
    assert_eq!(
        container_of(&b, "app")["Container"]["KnownExitCode"],
        json!(3)
    );
    assert_eq!(
        applying_error("plain words: here"),
        GoNamedError {
            error: "plain words: here".into(),
            name: String::new()
        }
    );
}

#[test]
fn port_bindings_and_ranges() {
    let mut t = running(task(one_container(json!({
        "name": "app", "image": "busybox", "essential": true,
        "portMappings": [
            {"containerPort": 8080, "hostPort": 0, "protocol": "tcp"},
            {"containerPortRange": "9000-9001", "protocol": "udp"}
        ]
    }))));
    let c = &mut t.containers[0];
    c.port_bindings = vec![
        PortBinding {
            container_port: 8080,
            host_port: 32768,
            bind_ip: "0.0.0.0".into(),
            protocol: Protocol::Tcp,
        },
        PortBinding {
            container_port: 9000,
            host_port: 40000,
            bind_ip: "0.0.0.0".into(),
            protocol: Protocol::Udp,
        },
    ];
    c.assigned_ranges = vec![AssignedRange {
        container_start: 9000,
        container_end: 9001,
        host_start: 40000,
        protocol: Protocol::Udp,
    }];
    let b = to_go_buckets(&state(vec![t])).unwrap();
    let c = &go_task_of(&b)["Containers"][0];
    assert_eq!(
        c["portMappings"],
        json!([
            {"ContainerPort": 8080, "ContainerPortRange": "", "HostPort": 0, "BindIp": "", "Protocol": "tcp"},
            {"ContainerPort": 0, "ContainerPortRange": "9000-9001", "HostPort": 0, "BindIp": "", "Protocol": "udp"}
        ])
    );
    assert_eq!(
        c["KnownPortBindings"],
        json!([
            {"ContainerPort": 8080, "ContainerPortRange": "", "HostPort": 32768, "BindIp": "0.0.0.0", "Protocol": "tcp"},
            {"ContainerPort": 9000, "ContainerPortRange": "", "HostPort": 40000, "BindIp": "0.0.0.0", "Protocol": "udp"}
        ])
    );
    assert_eq!(c["ContainerHasPortRange"], json!(true));
    assert_eq!(c["ContainerPortSet"], json!({"8080": {}}));
    assert_eq!(
        c["ContainerPortRangeMap"],
        json!({"9000-9001": "40000-40001"})
    );
}

#[test]
fn volumes_become_go_volumes_resources_and_dependencies() {
    let acs = json!({
        "arn": ARN, "family": "web", "version": "3", "desiredStatus": "RUNNING",
        "volumes": [
            {"name": "data", "type": "docker",
             "dockerVolumeConfiguration": {"scope": "task", "driver": "local", "labels": {"k": "v"}}},
            {"name": "logs", "type": "host", "host": {"sourcePath": "/var/log/app"}},
            {"name": "tmp", "type": "host"},
            {"name": "shared", "type": "docker",
             "dockerVolumeConfiguration": {"scope": "shared", "autoprovision": false}},
            {"name": "unused-efs", "type": "efs"}
        ],
        "containers": [{
            "name": "app", "image": "busybox", "essential": true,
            "mountPoints": [
                {"sourceVolume": "data", "containerPath": "/data"},
                {"sourceVolume": "logs", "containerPath": "/logs", "readOnly": true},
                {"sourceVolume": "tmp", "containerPath": "/tmp"},
                {"sourceVolume": "shared", "containerPath": "/shared"}
            ]
        }]
    });
    let t = running(task(acs));
    let data = t.volume("data").unwrap().docker_name.clone();
    let tmp = t.volume("tmp").unwrap().docker_name.clone();
    let b = to_go_buckets(&state(vec![t])).unwrap();
    let go = go_task_of(&b);
    assert_eq!(
        go["volumes"],
        json!([
            {"dockerVolumeConfiguration": {"scope": "task", "autoprovision": false,
                "mountPoint": data, "driver": "local", "driverOpts": null,
                "labels": {"k": "v"}, "dockerVolumeName": data},
             "name": "data", "type": "docker"},
            {"host": {"sourcePath": "/var/log/app"}, "name": "logs", "type": "host"},
            {"host": {"hostPath": tmp}, "name": "tmp", "type": "host"},
            {"dockerVolumeConfiguration": {"scope": "shared", "autoprovision": false,
                "mountPoint": "", "driver": "local", "driverOpts": null,
                "labels": null, "dockerVolumeName": "shared"},
             "name": "shared", "type": "docker"}
        ])
    );
    // The Go agent's resources: the scratch volume and the task-scoped
    // Docker volume; a shared volume it did not provision is not one.
    assert_eq!(
        go["resources"]["dockerVolume"],
        json!([
            {"name": "tmp", "dockerVolumeConfiguration": {"scope": "task", "autoprovision": false,
                "mountPoint": tmp, "driver": "local", "driverOpts": {}, "labels": {},
                "dockerVolumeName": tmp},
             "createdAt": ZERO_TIME, "desiredStatus": "CREATED", "knownStatus": "CREATED"},
            {"name": "data", "dockerVolumeConfiguration": {"scope": "task", "autoprovision": false,
                "mountPoint": data, "driver": "local", "driverOpts": null, "labels": {"k": "v"},
                "dockerVolumeName": data},
             "createdAt": ZERO_TIME, "desiredStatus": "CREATED", "knownStatus": "CREATED"}
        ])
    );
    let c = &go["Containers"][0];
    assert_eq!(
        c["TransitionDependencySet"],
        json!({"PULLED": {"ContainerDependencies": null, "ResourceDependencies": [
            {"Name": "cgroup", "RequiredStatus": 1},
            {"Name": "tmp", "RequiredStatus": 1},
            {"Name": "data", "RequiredStatus": 1}
        ]}})
    );
    assert_eq!(
        c["mountPoints"][1],
        json!({"sourceVolume": "logs", "containerPath": "/logs", "readOnly": true})
    );
}

#[test]
fn task_cgroups_as_the_go_agent_makes_them() {
    let two = json!({
        "arn": ARN, "family": "web", "version": "3", "desiredStatus": "RUNNING",
        "containers": [
            {"name": "app", "image": "busybox", "essential": true, "cpu": 512},
            {"name": "side", "image": "busybox", "essential": false}
        ]
    });
    let cgroup = |s: &ExportState| {
        let b = to_go_buckets(s).unwrap();
        let t = go_task_of(&b);
        (t["resources"]["cgroup"][0].clone(), t)
    };
    // No task CPU: the containers' shares, each at least 2.
    let mut s = state(vec![running(task(two.clone()))]);
    let (c, _) = cgroup(&s);
    assert_eq!(c["resourceSpec"], json!({"cpu": {"shares": 514}}));
    // The unified hierarchy, the pids limit and another CPU period.
    s.settings.cgroups = CgroupSettings {
        enabled: true,
        v2: true,
        mount_path: "/sys/fs/cgroup".into(),
        cpu_period_us: 50_000,
        pids_limit: 100,
    };
    let mut with_cpu = two.clone();
    with_cpu["cpu"] = json!(1.5);
    s.tasks = vec![running(task(with_cpu))];
    let (c, _) = cgroup(&s);
    assert_eq!(
        c["cgroupRoot"],
        json!("ecstasks-0123456789abcdef0123456789abcdef.slice")
    );
    assert_eq!(
        c["resourceSpec"],
        json!({"cpu": {"quota": 75_000, "period": 50_000}, "pids": {"limit": 100}})
    );
    // Stopped before anything was pulled: never made.
    let mut t = task(two.clone());
    t.raise_desired_status(TaskStatus::Stopped);
    for c in &mut t.containers {
        c.known_status = ContainerStatus::Stopped;
    }
    t.known_status = TaskStatus::Stopped;
    let (c, _) = cgroup(&state(vec![t]));
    assert_eq!(c["knownStatus"], json!("NONE"));
    assert_eq!(c["desiredStatus"], json!("REMOVED"));
    // ECS_ENABLE_TASK_CPU_MEM_LIMIT=false: the Go agent makes none.
    let mut s = state(vec![running(task(two))]);
    s.settings.cgroups.enabled = false;
    let (c, t) = cgroup(&s);
    assert_eq!(c, Value::Null);
    assert!(t.get("MemoryCPULimitsEnabled").is_none());
    assert_eq!(t["resources"], json!({}));
    assert_eq!(t["Containers"][0]["TransitionDependencySet"], json!({}));
}

#[test]
fn a_stopped_task_wants_its_volumes_removed() {
    let acs = json!({
        "arn": ARN, "family": "web", "version": "3", "desiredStatus": "RUNNING",
        "volumes": [{"name": "data", "type": "docker", "dockerVolumeConfiguration": {"scope": "task"}}],
        "containers": [{"name": "app", "image": "busybox", "essential": true,
            "mountPoints": [{"sourceVolume": "data", "containerPath": "/data"}]}]
    });
    let b = to_go_buckets(&state(vec![stopped(task(acs), 0)])).unwrap();
    for kind in ["dockerVolume", "cgroup"] {
        let r = &go_task_of(&b)["resources"][kind][0];
        assert_eq!(r["desiredStatus"], json!("REMOVED"), "{kind}");
        assert_eq!(r["knownStatus"], json!("CREATED"), "{kind}");
    }
}

#[test]
fn depends_on_links_and_volumes_from_in_the_go_agents_order() {
    let acs = json!({
        "arn": ARN, "family": "web", "version": "3", "desiredStatus": "RUNNING",
        "containers": [
            {"name": "db", "image": "busybox", "essential": true, "healthCheckType": "docker",
             "dockerConfig": {"config": "{\"Healthcheck\":{\"Test\":[\"CMD\",\"true\"]}}"}},
            {"name": "files", "image": "busybox", "essential": false},
            {"name": "app", "image": "busybox", "essential": true,
             "dependsOn": [{"containerName": "db", "condition": "HEALTHY"}],
             "volumesFrom": [{"sourceContainer": "files", "readOnly": true}],
             "links": ["db:database"]}
        ]
    });
    let b = to_go_buckets(&state(vec![running(task(acs))])).unwrap();
    let go = go_task_of(&b);
    let db = &go["Containers"][0];
    assert_eq!(db["healthCheckType"], json!("docker"));
    let app = &go["Containers"][2];
    assert_eq!(
        app["dependsOn"],
        json!([
            {"containerName": "db", "condition": "HEALTHY"},
            {"containerName": "files", "condition": "CREATE"},
            {"containerName": "db", "condition": "START"}
        ])
    );
    assert_eq!(app["Links"], json!(["db:database"]));
    assert_eq!(
        app["volumesFrom"],
        json!([{"sourceContainer": "files", "readOnly": true}])
    );
    assert_eq!(
        app["TransitionDependencySet"]["PULLED"]["ContainerDependencies"],
        Value::Null
    );
    assert_eq!(b["containers"].len(), 3);
}

#[test]
fn restart_policy_comes_with_its_tracker() {
    let mut t = running(task(one_container(json!({
        "name": "app", "image": "busybox", "essential": true,
        "restartPolicy": {"enabled": true, "ignoredExitCodes": [0], "restartAttemptPeriod": 60}
    }))));
    t.containers[0].restart_count = 2;
    t.containers[0].last_restart_at_ms = Some(1_700_000_003_000);
    let b = to_go_buckets(&state(vec![t])).unwrap();
    let c = &go_task_of(&b)["Containers"][0];
    let policy = json!({"enabled": true, "ignoredExitCodes": [0], "restartAttemptPeriod": 60});
    assert_eq!(c["restartPolicy"], policy);
    assert_eq!(
        c["restartTracker"],
        json!({"restartCount": 2, "lastRestartAt": "2023-11-14T22:13:23Z", "restartPolicy": policy})
    );
}

fn change(status: &str, containers: &[(&str, &str)]) -> TaskStateChange {
    TaskStateChange {
        task_arn: ARN.into(),
        status: status.into(),
        reason: String::new(),
        containers: containers
            .iter()
            .map(|(name, status)| ContainerStateChange {
                container_name: (*name).into(),
                runtime_id: None,
                status: (*status).into(),
                exit_code: None,
                reason: None,
                image_digest: None,
                network_bindings: Vec::new(),
            })
            .collect(),
        pull_started_at_ms: None,
        pull_stopped_at_ms: None,
        execution_stopped_at_ms: None,
    }
}

#[test]
fn pending_reports_lower_the_sent_status() {
    let two = json!({
        "arn": ARN, "family": "web", "version": "3", "desiredStatus": "RUNNING",
        "containers": [
            {"name": "app", "image": "busybox", "essential": true},
            {"name": "side", "image": "busybox", "essential": false}
        ]
    });
    let sent = |t: Task, outbox: Vec<TaskStateChange>| {
        let mut s = state(vec![t]);
        s.outbox = outbox
            .into_iter()
            .enumerate()
            .map(|(i, c)| (i as u64 + 1, c))
            .collect();
        let go = go_task_of(&to_go_buckets(&s).unwrap());
        (
            go["SentStatus"].as_str().unwrap().to_string(),
            go["Containers"][0]["SentStatus"]
                .as_str()
                .unwrap()
                .to_string(),
            go["Containers"][1]["SentStatus"]
                .as_str()
                .unwrap()
                .to_string(),
        )
    };
    let s = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());

    // Everything delivered.
    assert_eq!(
        sent(running(task(two.clone())), vec![]),
        s("RUNNING", "RUNNING", "RUNNING")
    );
    // RUNNING not yet accepted for the task and one container: the Go
    // agent is to send it again.
    assert_eq!(
        sent(
            running(task(two.clone())),
            vec![change("RUNNING", &[("app", "RUNNING")])]
        ),
        s("MANIFEST_PULLED", "MANIFEST_PULLED", "RUNNING")
    );
    // A PENDING then a RUNNING report waiting: below the lowest.
    assert_eq!(
        sent(
            running(task(two.clone())),
            vec![
                change("PENDING", &[("app", "PENDING")]),
                change("RUNNING", &[("app", "RUNNING"), ("side", "RUNNING")]),
            ]
        ),
        s("NONE", "NONE", "MANIFEST_PULLED")
    );
    // STOPPED waiting: the backend has RUNNING; the Go agent reports the
    // stop before it cleans the task up.
    assert_eq!(
        sent(
            stopped(task(two), 1),
            vec![change(
                "STOPPED",
                &[("app", "STOPPED"), ("side", "STOPPED")]
            )]
        ),
        s("RUNNING", "RUNNING", "RUNNING")
    );
}

#[test]
fn tasks_in_transition_are_refused() {
    // Desired RUNNING, still being created.
    let mut t = task(one_container(app()));
    t.containers[0].known_status = ContainerStatus::Pulled;
    t.known_status = TaskStatus::ManifestPulled;
    let e = to_go_buckets(&state(vec![t])).unwrap_err();
    assert!(matches!(e, ExportError::InTransition { .. }), "{e}");
    assert!(
        e.to_string().contains("wait until every task has settled"),
        "{e}"
    );
    assert!(e.is_refusal());

    // Being stopped.
    let mut t = running(task(one_container(app())));
    t.raise_desired_status(TaskStatus::Stopped);
    let e = to_go_buckets(&state(vec![t])).unwrap_err();
    assert!(
        e.to_string().contains("known RUNNING, desired STOPPED"),
        "{e}"
    );

    // A task that runs while one of its containers still waits.
    let acs = json!({
        "arn": ARN, "family": "web", "version": "3", "desiredStatus": "RUNNING",
        "containers": [
            {"name": "app", "image": "busybox", "essential": true},
            {"name": "side", "image": "busybox", "essential": false}
        ]
    });
    let mut t = running(task(acs));
    t.containers[1].known_status = ContainerStatus::ManifestPulled;
    let e = to_go_buckets(&state(vec![t])).unwrap_err();
    assert!(
        e.to_string()
            .contains("container side known MANIFEST_PULLED, desired RUNNING"),
        "{e}"
    );

    // A non-essential container that exited while the task runs is settled.
    let mut t = running(task(json!({
        "arn": ARN, "family": "web", "version": "3", "desiredStatus": "RUNNING",
        "containers": [
            {"name": "app", "image": "busybox", "essential": true},
            {"name": "side", "image": "busybox", "essential": false}
        ]
    })));
    t.containers[1].known_status = ContainerStatus::Stopped;
    t.containers[1].exit_code = Some(0);
    assert!(to_go_buckets(&state(vec![t])).is_ok());
}

#[test]
fn what_the_go_agent_cannot_start_with_is_refused() {
    let mut s = state(vec![running(task(one_container(app())))]);
    s.container_instance_arn = None;
    assert!(matches!(to_go_buckets(&s), Err(ExportError::NotRegistered)));

    let mut s = state(vec![]);
    s.settings.configured_cluster = "default".into();
    let e = to_go_buckets(&s).unwrap_err();
    assert!(e.to_string().contains("ECS_CLUSTER=prod"), "{e}");

    // A running task whose container mounts a volume type this agent
    // keeps no configuration of.
    let acs = json!({
        "arn": ARN, "family": "web", "version": "3", "desiredStatus": "RUNNING",
        "volumes": [{"name": "fs", "type": "efs"}],
        "containers": [{"name": "app", "image": "busybox", "essential": true,
            "mountPoints": [{"sourceVolume": "fs", "containerPath": "/fs"}]}]
    });
    let e = to_go_buckets(&state(vec![running(task(acs.clone()))])).unwrap_err();
    assert!(matches!(e, ExportError::Unrepresentable { .. }), "{e}");
    // Stopped, the Go agent only cleans it up and needs no volume.
    let b = to_go_buckets(&state(vec![stopped(task(acs), 1)])).unwrap();
    assert_eq!(go_task_of(&b)["volumes"], Value::Null);

    // Running without a Docker container.
    let mut t = running(task(one_container(app())));
    t.containers[0].docker_id = None;
    t.containers[0].docker_name = None;
    let e = to_go_buckets(&state(vec![t])).unwrap_err();
    assert!(e.to_string().contains("has no Docker container"), "{e}");
}

#[test]
fn awsvpc_tasks_are_handed_back_as_the_bridge_tasks_they_run_as() {
    let mut acs = one_container(app());
    acs["networkMode"] = json!("awsvpc");
    let b = to_go_buckets(&state(vec![running(task(acs))])).unwrap();
    assert_eq!(go_task_of(&b)["NetworkMode"], json!("bridge"));
}

#[test]
fn a_created_container_not_yet_known_to_docker_keeps_its_reserved_name() {
    let mut t = stopped(task(one_container(app())), 0);
    t.containers[0].docker_id = None;
    let b = to_go_buckets(&state(vec![t])).unwrap();
    let c = container_of(&b, "app");
    assert_eq!(c["DockerId"], json!(""));
    assert_eq!(c["DockerName"], json!("ecs-web-3-app-00"));
}

// ---------------------------------------------------------------------------
// The fixture: the Go agent 1.105's own `agent.db` with three tasks
// (`samples/go-agent-state/`). This agent's state for the same host is
// built here from the fixture's facts (the task definitions as the payload
// gave them, and what the agent learned while running them), exported, and
// compared with the Go agent's file bucket by bucket, key by key and field
// by field, JSON type and value.

mod fixture {
    use super::*;
    use crate::go_state::model::time_to_ms;
    use crate::go_state::{bolt, import};

    /// Members compared in each `tasks` value.
    const TASK_FIELDS: &[&str] = &[
        "Arn",
        "Family",
        "Version",
        "ServiceName",
        "Group",
        "Containers",
        "associations",
        "resources",
        "volumes",
        "Cpu",
        "Memory",
        "DesiredStatus",
        "KnownStatus",
        "KnownTime",
        "PullStartedAt",
        "PullStoppedAt",
        "ExecutionStoppedAt",
        "SentStatus",
        "executionCredentialsID",
        "credentialsID",
        "ENI",
        "AppMesh",
        "PlatformFields",
        "MemoryCPULimitsEnabled",
        "PidMode",
        "IpcMode",
        "LaunchType",
        "ServiceConnectConfig",
        "NetworkMode",
    ];

    /// Members compared in each container (of a task, and under
    /// `Container` in the `containers` bucket).
    const CONTAINER_FIELDS: &[&str] = &[
        "Name",
        "RuntimeID",
        "taskARN",
        "dependsOn",
        "managedAgents",
        "V3EndpointID",
        "Image",
        "ImageID",
        "ImageDigest",
        "Command",
        "Cpu",
        "GPUIDs",
        "Memory",
        "Links",
        "firelensConfiguration",
        "volumesFrom",
        "mountPoints",
        "portMappings",
        "secrets",
        "Essential",
        "EntryPoint",
        "environment",
        "environmentFiles",
        "overrides",
        "dockerConfig",
        "credentialSpecs",
        "registryAuthentication",
        "healthCheckType",
        "LogsAuthStrategy",
        "StartTimeout",
        "StopTimeout",
        "desiredStatus",
        "KnownStatus",
        "TransitionDependencySet",
        "RunDependencies",
        "IsInternal",
        "ApplyingError",
        "SentStatus",
        "metadataFileUpdated",
        "KnownExitCode",
        "KnownPortBindings",
        "SteadyStateStatus",
        "ContainerArn",
        "containerTornDown",
        "startedAt",
        "ContainerHasPortRange",
        "ContainerPortSet",
        "ContainerPortRangeMap",
        "restartPolicy",
        "restartTracker",
    ];

    /// Members left out of the comparison, and why.
    const LEFT_OUT: &[(&str, &str)] = &[
        (
            "RestartAggregationDataForStats",
            "the Go agent's stats carried across restarts of a container (restart policy), so its counters continue: this agent keeps none, so the export omits it and the Go agent starts from the zero value, which is what the fixture holds (no restarts)",
        ),
    ];

    /// Times, compared to the millisecond: this agent keeps milliseconds;
    /// the Go agent reads them as times either way.
    const TIMES: &[&str] = &[
        "KnownTime",
        "PullStartedAt",
        "PullStoppedAt",
        "ExecutionStoppedAt",
        "startedAt",
        "PulledAt",
        "LastUsedAt",
    ];

    fn dump() -> Option<Value> {
        let dir = ecs_model::spec::require_or_skip("Go agent state fixture (export)")?;
        let text =
            std::fs::read_to_string(dir.join("samples/go-agent-state/agent.db.json")).unwrap();
        Some(serde_json::from_str(&text).unwrap())
    }

    fn ms(text: &Value) -> Option<i64> {
        time_to_ms(text.as_str().unwrap())
    }

    /// The fixture's container record, as the agent learned it: Docker ID
    /// and name, endpoint ID, start time, statuses and exit code.
    fn learned(go: &Value, c: &mut Container, docker: &Value) {
        c.docker_id = Some(docker["DockerId"].as_str().unwrap().into());
        c.docker_name = Some(docker["DockerName"].as_str().unwrap().into());
        c.endpoint_id = go["V3EndpointID"].as_str().unwrap().into();
        c.started_at_ms = ms(&go["startedAt"]);
        let status = match go["KnownStatus"].as_str().unwrap() {
            "RUNNING" => ContainerStatus::Running,
            "STOPPED" => ContainerStatus::Stopped,
            other => panic!("fixture status {other}"),
        };
        c.known_status = status;
        c.desired_status = status;
        c.reported_status = status;
        c.exit_code = go["KnownExitCode"].as_i64();
    }

    fn acs_task(arn: &str, family: &str, containers: Value) -> Value {
        json!({
            "arn": arn, "family": family, "version": "1", "desiredStatus": "RUNNING",
            "launchType": "EC2", "group": format!("family:{family}"), "networkMode": "bridge",
            "containers": containers
        })
    }

    /// This agent's state for the fixture's host.
    fn our_state(dump: &Value) -> ExportState {
        let tasks = dump["tasks"].as_object().unwrap();
        let go = |id: &str| &tasks[id];
        let docker = |key: &str| &dump["containers"][key];
        let arn = |id: &str| go(id)["Arn"].as_str().unwrap().to_string();
        let container_arn = |id: &str, i: usize| go(id)["Containers"][i]["ContainerArn"].clone();
        let host_config = "{\"NetworkMode\":\"bridge\"}";

        // web:1: task cpu/memory, a dynamic port, a variable, a label, and a
        // task-scoped Docker volume.
        let web_id = "216dc7a0ffcab7d2b819b217ce825416";
        let mut acs = acs_task(
            &arn(web_id),
            "web",
            json!([{
                "name": "web", "image": "capture/busybox:local", "cpu": 0, "memory": 0,
                "essential": true, "command": ["httpd", "-f", "-p", "8080"],
                "environment": {"GREETING": "hello"},
                "portMappings": [{"containerPort": 8080, "hostPort": 0, "protocol": "tcp"}],
                "mountPoints": [{"sourceVolume": "scratch", "containerPath": "/scratch", "readOnly": false}],
                "containerArn": container_arn(web_id, 0),
                "dockerConfig": {"config": "{\"Labels\":{\"team\":\"fixtures\"}}",
                    "hostConfig": host_config, "version": "1.17"}
            }]),
        );
        acs["cpu"] = json!(0.125);
        acs["memory"] = json!(64);
        acs["volumes"] = json!([{"name": "scratch", "type": "docker",
            "dockerVolumeConfiguration": {"scope": "task", "autoprovision": false, "driver": "local"}}]);
        let mut web = task(acs);
        learned(
            &go(web_id)["Containers"][0],
            &mut web.containers[0],
            docker(&format!("{web_id}-web")),
        );
        web.containers[0].port_bindings = ["0.0.0.0", "::"]
            .iter()
            .map(|ip| PortBinding {
                container_port: 8080,
                host_port: 32768,
                bind_ip: (*ip).into(),
                protocol: Protocol::Tcp,
            })
            .collect();
        web.volumes[0].docker_name = go(web_id)["volumes"][0]["dockerVolumeConfiguration"]
            ["dockerVolumeName"]
            .as_str()
            .unwrap()
            .into();
        web.volumes[0].status = ResourceStatus::Created;

        // pair:1: `app` with a Docker health check, `sidecar` waiting on it.
        let pair_id = "88c802333ce2ec6d6cfb2fcde136fb2e";
        let health = "{\"Healthcheck\":{\"Interval\":5000000000,\"Retries\":3,\"StartPeriod\":0,\"Test\":[\"CMD-SHELL\",\"true\"],\"Timeout\":2000000000}}";
        let mut pair = task(acs_task(
            &arn(pair_id),
            "pair",
            json!([
                {"name": "app", "image": "capture/busybox:local", "cpu": 0, "memory": 32,
                 "essential": true, "command": ["sleep", "3600"], "healthCheckType": "docker",
                 "containerArn": container_arn(pair_id, 0),
                 "dockerConfig": {"config": health, "hostConfig": host_config, "version": "1.17"}},
                {"name": "sidecar", "image": "capture/busybox:local", "cpu": 0, "memory": 16,
                 "essential": false, "command": ["sleep", "3600"],
                 "dependsOn": [{"containerName": "app", "condition": "HEALTHY"}],
                 "containerArn": container_arn(pair_id, 1),
                 "dockerConfig": {"config": "{}", "hostConfig": host_config, "version": "1.17"}}
            ]),
        ));
        for (i, name) in ["app", "sidecar"].iter().enumerate() {
            learned(
                &go(pair_id)["Containers"][i],
                &mut pair.containers[i],
                docker(&format!("{pair_id}-{name}")),
            );
        }

        // once:1: exited with code 3, its container kept.
        let once_id = "937bcc788f74971c73105a2afcec87d9";
        let mut once = task(acs_task(
            &arn(once_id),
            "once",
            json!([{"name": "job", "image": "capture/busybox:local", "cpu": 0, "memory": 16,
                "essential": true, "command": ["sh", "-c", "exit 3"],
                "containerArn": container_arn(once_id, 0),
                "dockerConfig": {"config": "{}", "hostConfig": host_config, "version": "1.17"}}]),
        ));
        learned(
            &go(once_id)["Containers"][0],
            &mut once.containers[0],
            docker(&format!("{once_id}-job")),
        );
        once.raise_desired_status(TaskStatus::Stopped);

        let mut out = Vec::new();
        for (id, mut t) in [(web_id, web), (pair_id, pair), (once_id, once)] {
            let g = go(id);
            let status = match g["KnownStatus"].as_str().unwrap() {
                "RUNNING" => TaskStatus::Running,
                _ => TaskStatus::Stopped,
            };
            t.known_status = status;
            t.reported_status = status;
            t.known_status_time_ms = ms(&g["KnownTime"]).unwrap();
            t.execution_stopped_at_ms = ms(&g["ExecutionStoppedAt"]);
            out.push(t);
        }

        let meta = |k: &str| dump["metadata"][k].as_str().map(str::to_string);
        let (image_id, image) = dump["images"].as_object().unwrap().iter().next().unwrap();
        ExportState {
            cluster: meta(keys::CLUSTER),
            container_instance_arn: meta(keys::CONTAINER_INSTANCE_ARN),
            ec2_instance_id: meta(keys::EC2_INSTANCE_ID),
            availability_zone: meta(keys::AVAILABILITY_ZONE),
            latest_seq: meta(keys::TASK_MANIFEST_SEQ_NUM).unwrap().parse().unwrap(),
            tasks: out,
            images: vec![ImageRecord {
                image_id: image_id.clone(),
                names: vec!["capture/busybox:local".into()],
                size: image["Image"]["Size"].as_i64().unwrap(),
                pulled_at_ms: ms(&image["PulledAt"]).unwrap(),
                last_used_at_ms: ms(&image["LastUsedAt"]).unwrap(),
                pull_succeeded: image["PullSucceeded"].as_bool().unwrap(),
            }],
            outbox: Vec::new(),
            settings: ExportSettings {
                region: "us-east-1".into(),
                configured_cluster: "takeover".into(),
                // The capture host: cgroup v1, the Go agent's defaults.
                cgroups: CgroupSettings::default(),
            },
        }
    }

    /// A member's value as compared: times to the millisecond.
    fn normalised(name: &str, value: Option<&Value>) -> Option<Value> {
        let v = value?;
        if TIMES.contains(&name) {
            return Some(json!(ms(v)));
        }
        Some(v.clone())
    }

    /// Compares one record: every member is either compared or left out
    /// with a reason, on both sides; compared members must be equal (both
    /// absent counts as equal).
    fn compare(what: &str, fields: &[&str], ours: &Value, theirs: &Value) {
        let known =
            |k: &String| fields.contains(&k.as_str()) || LEFT_OUT.iter().any(|(f, _)| f == k);
        for (side, v) in [("fixture", theirs), ("export", ours)] {
            for k in v.as_object().unwrap().keys() {
                assert!(
                    known(k),
                    "{what}: {side} member {k} is neither compared nor left out"
                );
            }
        }
        for f in fields {
            if *f == "Containers" {
                let ours = ours[f].as_array().unwrap();
                let theirs = theirs[f].as_array().unwrap();
                assert_eq!(ours.len(), theirs.len(), "{what}: Containers");
                for (o, t) in ours.iter().zip(theirs) {
                    let name = format!("{what}/Containers/{}", t["Name"]);
                    compare(&name, CONTAINER_FIELDS, o, t);
                }
                continue;
            }
            if *f == "Container" {
                let name = format!("{what}/Container");
                compare(&name, CONTAINER_FIELDS, &ours[f], &theirs[f]);
                continue;
            }
            assert_eq!(
                normalised(f, ours.get(*f)),
                normalised(f, theirs.get(*f)),
                "{what}: member {f}"
            );
        }
    }

    #[test]
    fn the_export_matches_the_go_agents_own_file() {
        let Some(dump) = dump() else { return };
        matches_the_dump(&to_go_buckets(&our_state(&dump)).unwrap(), &dump);
    }

    /// What the store would give the export after a take-over of `buckets`.
    fn state_after_import(buckets: &Buckets, dump: &Value) -> ExportState {
        let imported = import::import(buckets, "takeover").unwrap();
        let meta = |k: &str| {
            imported
                .seed
                .meta
                .iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| v.clone())
        };
        ExportState {
            cluster: meta(keys::CLUSTER),
            container_instance_arn: meta(keys::CONTAINER_INSTANCE_ARN),
            ec2_instance_id: meta(keys::EC2_INSTANCE_ID),
            availability_zone: meta(keys::AVAILABILITY_ZONE),
            latest_seq: meta(keys::TASK_MANIFEST_SEQ_NUM).map_or(-1, |s| s.parse().unwrap()),
            tasks: imported.seed.tasks,
            images: imported.seed.images,
            outbox: Vec::new(),
            settings: our_state(dump).settings,
        }
    }

    fn fixture_buckets() -> Option<Buckets> {
        let dir = ecs_model::spec::require_or_skip("Go agent state fixture")?;
        Some(bolt::read(&dir.join("samples/go-agent-state/agent.db")).unwrap())
    }

    /// The take-over and the hand-back together: the Go agent's file read
    /// by `import` and written again by the export is the Go agent's file.
    #[test]
    fn importing_and_exporting_gives_the_go_agents_file_back() {
        let (Some(dump), Some(buckets)) = (dump(), fixture_buckets()) else {
            return;
        };
        let state = state_after_import(&buckets, &dump);
        matches_the_dump(&to_go_buckets(&state).unwrap(), &dump);
    }

    /// Import, export (through the file format), import again: the same
    /// state, so a host can go back and forth.
    #[test]
    fn import_export_import_gives_the_same_state() {
        let (Some(dump), Some(buckets)) = (dump(), fixture_buckets()) else {
            return;
        };
        let first = state_after_import(&buckets, &dump);
        let written = bolt::encode(&to_go_buckets(&first).unwrap()).unwrap();
        let second = state_after_import(&bolt::parse(&written).unwrap(), &dump);
        assert_eq!(second.tasks, first.tasks);
        assert_eq!(second.images, first.images);
        assert_eq!(
            (
                &second.cluster,
                &second.container_instance_arn,
                second.latest_seq
            ),
            (
                &first.cluster,
                &first.container_instance_arn,
                first.latest_seq
            )
        );
        assert_eq!(second.ec2_instance_id, first.ec2_instance_id);
        assert_eq!(second.availability_zone, first.availability_zone);
    }

    /// Compares exported buckets with the fixture's dump, bucket by bucket,
    /// key by key, member by member.
    fn matches_the_dump(buckets: &Buckets, dump: &Value) {
        let ours: BTreeMap<&str, BTreeMap<String, Value>> = buckets
            .iter()
            .map(|(b, keys)| {
                let values = keys
                    .iter()
                    .map(|(k, v)| {
                        (
                            String::from_utf8(k.clone()).unwrap(),
                            serde_json::from_slice(v).unwrap(),
                        )
                    })
                    .collect();
                (b.as_str(), values)
            })
            .collect();
        let theirs = dump.as_object().unwrap();
        assert_eq!(
            ours.keys().copied().collect::<Vec<_>>(),
            theirs.keys().map(String::as_str).collect::<Vec<_>>(),
            "buckets"
        );
        for (bucket, values) in theirs {
            let values = values.as_object().unwrap();
            let mine = &ours[bucket.as_str()];
            assert_eq!(
                mine.keys().collect::<Vec<_>>(),
                values.keys().collect::<Vec<_>>(),
                "keys of bucket {bucket}"
            );
            for (key, theirs) in values {
                let what = format!("{bucket}/{key}");
                let ours = &mine[key];
                match bucket.as_str() {
                    "tasks" => compare(&what, TASK_FIELDS, ours, theirs),
                    "containers" => compare(
                        &what,
                        &["DockerId", "DockerName", "Container"],
                        ours,
                        theirs,
                    ),
                    "images" => {
                        compare(
                            &what,
                            &[
                                "Image",
                                "PulledAt",
                                "LastUsedAt",
                                "PullSucceeded",
                                "ManagedEnvKeys",
                            ],
                            ours,
                            theirs,
                        );
                    }
                    // Metadata values are JSON strings: compared whole.
                    _ => assert_eq!(ours, theirs, "{what}"),
                }
            }
        }
    }
}
