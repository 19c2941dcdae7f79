//! The ECS API driven by the official Rust SDK: clusters, task definitions,
//! container instances, tasks and placement.
#![allow(clippy::unwrap_used)]

mod common;

use aws_sdk_ecs::error::ProvideErrorMetadata;
use aws_sdk_ecs::types::{
    ContainerDefinition, ContainerOverride, KeyValuePair, NetworkMode, PortMapping, TaskOverride,
    TransportProtocol,
};
use common::{
    connect_agent, connected_instance, eventually, post, registration, start_in, Harness, TARGET,
};
use serde_json::{json, Value};

fn container(name: &str, memory: i32) -> ContainerDefinition {
    ContainerDefinition::builder()
        .name(name)
        .image("busybox:latest")
        .memory(memory)
        .command("sleep")
        .command("600")
        .build()
}

#[tokio::test]
async fn clusters_create_list_describe() {
    let h = Harness::start().await;
    let ecs = h.client();
    let created = ecs
        .create_cluster()
        .cluster_name("demo")
        .send()
        .await
        .unwrap();
    let cluster = created.cluster().unwrap();
    assert_eq!(
        cluster.cluster_arn(),
        Some("arn:aws:ecs:us-east-1:000000000000:cluster/demo")
    );
    assert_eq!(cluster.status(), Some("ACTIVE"));
    // Creating it again returns the same cluster.
    let again = ecs
        .create_cluster()
        .cluster_name("demo")
        .send()
        .await
        .unwrap();
    assert_eq!(
        again.cluster().unwrap().cluster_arn(),
        cluster.cluster_arn()
    );

    let listed = ecs.list_clusters().send().await.unwrap();
    assert_eq!(
        listed.cluster_arns(),
        [
            "arn:aws:ecs:us-east-1:000000000000:cluster/default",
            "arn:aws:ecs:us-east-1:000000000000:cluster/demo"
        ]
    );
    let page = ecs.list_clusters().max_results(1).send().await.unwrap();
    assert_eq!(page.cluster_arns().len(), 1);
    let rest = ecs
        .list_clusters()
        .next_token(page.next_token().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(
        rest.cluster_arns(),
        ["arn:aws:ecs:us-east-1:000000000000:cluster/demo"]
    );

    let described = ecs
        .describe_clusters()
        .clusters("demo")
        .clusters("arn:aws:ecs:us-east-1:000000000000:cluster/default")
        .clusters("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(described.clusters().len(), 2);
    assert_eq!(described.failures().len(), 1);
    assert_eq!(described.failures()[0].reason(), Some("MISSING"));

    let err = ecs
        .create_cluster()
        .cluster_name("bad name")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InvalidParameterException"));
    let err = ecs
        .list_container_instances()
        .cluster("nope")
        .send()
        .await
        .unwrap_err();
    assert!(err
        .as_service_error()
        .unwrap()
        .is_cluster_not_found_exception());
}

#[tokio::test]
async fn task_definitions_register_describe_and_validate() {
    let h = Harness::start().await;
    let ecs = h.client();
    let first = ecs
        .register_task_definition()
        .family("web")
        .container_definitions(container("app", 64))
        .send()
        .await
        .unwrap();
    let def = first.task_definition().unwrap();
    assert_eq!(def.revision(), 1);
    assert_eq!(
        def.task_definition_arn(),
        Some("arn:aws:ecs:us-east-1:000000000000:task-definition/web:1")
    );
    assert_eq!(def.status().map(|s| s.as_str()), Some("ACTIVE"));
    let second = ecs
        .register_task_definition()
        .family("web")
        .cpu("256")
        .memory("512")
        .network_mode(NetworkMode::Bridge)
        .container_definitions(
            ContainerDefinition::builder()
                .name("app")
                .image("nginx")
                .port_mappings(
                    PortMapping::builder()
                        .container_port(80)
                        .host_port(8080)
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(second.task_definition().unwrap().revision(), 2);

    // family alone = latest; family:rev and ARN too.
    let latest = ecs
        .describe_task_definition()
        .task_definition("web")
        .send()
        .await
        .unwrap();
    assert_eq!(latest.task_definition().unwrap().revision(), 2);
    assert_eq!(latest.task_definition().unwrap().cpu(), Some("256"));
    let by_rev = ecs
        .describe_task_definition()
        .task_definition("web:1")
        .send()
        .await
        .unwrap();
    let d = by_rev.task_definition().unwrap();
    assert_eq!(d.revision(), 1);
    assert_eq!(d.container_definitions()[0].command(), ["sleep", "600"]);
    let by_arn = ecs
        .describe_task_definition()
        .task_definition("arn:aws:ecs:us-east-1:000000000000:task-definition/web:2")
        .send()
        .await
        .unwrap();
    assert_eq!(by_arn.task_definition().unwrap().revision(), 2);

    let missing = ecs
        .describe_task_definition()
        .task_definition("web:9")
        .send()
        .await
        .unwrap_err();
    assert!(missing.as_service_error().unwrap().is_client_exception());
    assert_eq!(
        missing.message(),
        Some("Unable to describe task definition.")
    );

    // Validation errors surface as ClientException with the reason.
    let no_memory = ecs
        .register_task_definition()
        .family("web")
        .container_definitions(
            ContainerDefinition::builder()
                .name("app")
                .image("x")
                .build(),
        )
        .send()
        .await
        .unwrap_err();
    assert!(no_memory.as_service_error().unwrap().is_client_exception());
    assert!(no_memory
        .message()
        .unwrap()
        .contains("'memory' or 'memoryReservation'"));
    let duplicate = ecs
        .register_task_definition()
        .family("web")
        .container_definitions(container("a", 8))
        .container_definitions(container("a", 8))
        .send()
        .await
        .unwrap_err();
    assert!(duplicate.message().unwrap().contains("unique"));
    let bad_dep = ecs
        .register_task_definition()
        .family("web")
        .container_definitions(
            ContainerDefinition::builder()
                .name("a")
                .image("x")
                .memory(8)
                .depends_on(
                    aws_sdk_ecs::types::ContainerDependency::builder()
                        .container_name("ghost")
                        .condition(aws_sdk_ecs::types::ContainerCondition::Start)
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap_err();
    assert!(bad_dep.message().unwrap().contains("'ghost'"));
    // A rejected registration does not use up a revision.
    let third = ecs
        .register_task_definition()
        .family("web")
        .container_definitions(container("app", 64))
        .send()
        .await
        .unwrap();
    assert_eq!(third.task_definition().unwrap().revision(), 3);
}

#[tokio::test]
async fn unknown_members_are_echoed_by_describe() {
    let h = Harness::start().await;
    let body = serde_json::json!({
        "family": "keep",
        "runtimePlatform": {"operatingSystemFamily": "LINUX", "cpuArchitecture": "X86_64"},
        "containerDefinitions": [{
            "name": "app", "image": "x", "memory": 8,
            "secrets": [{"name": "S", "valueFrom": "arn:aws:ssm:us-east-1:000000000000:parameter/s"}],
            "versionConsistency": "disabled",
            "linuxParameters": {"capabilities": {"add": ["NET_ADMIN"]}}
        }]
    });
    let (status, _) = h
        .call("RegisterTaskDefinition", body.to_string().as_bytes())
        .await;
    assert_eq!(status, 200);
    let (status, described) = h
        .call("DescribeTaskDefinition", br#"{"taskDefinition":"keep"}"#)
        .await;
    assert_eq!(status, 200);
    let td = &described["taskDefinition"];
    assert_eq!(td["runtimePlatform"], body["runtimePlatform"]);
    let c = &td["containerDefinitions"][0];
    assert_eq!(c["secrets"], body["containerDefinitions"][0]["secrets"]);
    assert_eq!(c["versionConsistency"], "disabled");
    assert_eq!(
        c["linuxParameters"],
        body["containerDefinitions"][0]["linuxParameters"]
    );
}

#[tokio::test]
async fn run_describe_list_and_stop_tasks() {
    let h = Harness::start().await;
    let ecs = h.client();
    ecs.create_cluster()
        .cluster_name("work")
        .send()
        .await
        .unwrap();
    let (instance_arn, _agent) = connected_instance(&h, "work", 2048, 1024).await;
    ecs.register_task_definition()
        .family("sleeper")
        .container_definitions(container("main", 128))
        .container_definitions(
            ContainerDefinition::builder()
                .name("side")
                .image("busybox")
                .memory_reservation(32)
                .essential(false)
                .build(),
        )
        .send()
        .await
        .unwrap();

    let run = ecs
        .run_task()
        .cluster("work")
        .task_definition("sleeper")
        .count(2)
        .started_by("tester")
        .overrides(
            TaskOverride::builder()
                .container_overrides(
                    ContainerOverride::builder()
                        .name("main")
                        .command("echo")
                        .environment(KeyValuePair::builder().name("A").value("1").build())
                        .memory(200)
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert!(run.failures().is_empty(), "{:?}", run.failures());
    assert_eq!(run.tasks().len(), 2);
    let task = &run.tasks()[0];
    assert_eq!(task.last_status(), Some("PENDING"));
    assert_eq!(task.desired_status(), Some("RUNNING"));
    assert_eq!(task.container_instance_arn(), Some(instance_arn.as_str()));
    assert_eq!(task.group(), Some("family:sleeper"));
    assert_eq!(task.started_by(), Some("tester"));
    assert_eq!(task.memory(), Some("232"));
    assert_eq!(task.launch_type().map(|l| l.as_str()), Some("EC2"));
    let task_arn = task.task_arn().unwrap().to_owned();
    assert!(task_arn.starts_with("arn:aws:ecs:us-east-1:000000000000:task/work/"));
    let main = &task.containers()[0];
    assert_eq!(main.name(), Some("main"));
    assert_eq!(main.memory(), Some("200"));
    assert_eq!(main.last_status(), Some("PENDING"));
    assert_eq!(main.health_status().map(|s| s.as_str()), Some("UNKNOWN"));
    assert_eq!(task.containers()[1].memory_reservation(), Some("32"));

    // Remaining resources account for both tasks.
    let described = ecs
        .describe_container_instances()
        .cluster("work")
        .container_instances(&instance_arn)
        .send()
        .await
        .unwrap();
    let ci = &described.container_instances()[0];
    assert_eq!(ci.pending_tasks_count(), 2);
    assert!(ci.agent_connected());
    let memory = ci
        .remaining_resources()
        .iter()
        .find(|r| r.name() == Some("MEMORY"))
        .unwrap()
        .integer_value();
    assert_eq!(memory, 1024 - 2 * 232);
    assert_eq!(ci.version_info().unwrap().docker_version(), Some("25.0.8"));

    let id = task_arn.rsplit('/').next().unwrap();
    let by_id = ecs
        .describe_tasks()
        .cluster("work")
        .tasks(id)
        .tasks("ffff")
        .send()
        .await
        .unwrap();
    assert_eq!(by_id.tasks()[0].task_arn(), Some(task_arn.as_str()));
    assert_eq!(by_id.failures()[0].reason(), Some("MISSING"));

    let listed = ecs.list_tasks().cluster("work").send().await.unwrap();
    assert_eq!(listed.task_arns().len(), 2);
    let by_family = ecs
        .list_tasks()
        .cluster("work")
        .family("other")
        .send()
        .await
        .unwrap();
    assert!(by_family.task_arns().is_empty());
    let by_instance = ecs
        .list_tasks()
        .cluster("work")
        .container_instance(&instance_arn)
        .started_by("tester")
        .send()
        .await
        .unwrap();
    assert_eq!(by_instance.task_arns().len(), 2);

    let stopped = ecs
        .stop_task()
        .cluster("work")
        .task(&task_arn)
        .reason("done here")
        .send()
        .await
        .unwrap();
    let t = stopped.task().unwrap();
    assert_eq!(t.desired_status(), Some("STOPPED"));
    assert_eq!(t.stopped_reason(), Some("done here"));
    assert!(t.stopping_at().is_some());
    let running = ecs.list_tasks().cluster("work").send().await.unwrap();
    assert_eq!(running.task_arns().len(), 1);
    let stopped_list = ecs
        .list_tasks()
        .cluster("work")
        .desired_status(aws_sdk_ecs::types::DesiredStatus::Stopped)
        .send()
        .await
        .unwrap();
    assert_eq!(stopped_list.task_arns(), std::slice::from_ref(&task_arn));

    let err = ecs
        .stop_task()
        .cluster("work")
        .task("nope")
        .send()
        .await
        .unwrap_err();
    assert!(err
        .as_service_error()
        .unwrap()
        .is_invalid_parameter_exception());
    let err = ecs
        .run_task()
        .cluster("work")
        .task_definition("ghost")
        .send()
        .await
        .unwrap_err();
    assert!(err.as_service_error().unwrap().is_client_exception());
    let err = ecs
        .run_task()
        .cluster("work")
        .task_definition("sleeper")
        .overrides(
            TaskOverride::builder()
                .container_overrides(ContainerOverride::builder().name("ghost").build())
                .build(),
        )
        .send()
        .await
        .unwrap_err();
    assert!(err.message().unwrap().contains("ghost"));
}

#[tokio::test]
async fn placement_failures() {
    let h = Harness::start().await;
    let ecs = h.client();
    ecs.create_cluster()
        .cluster_name("empty")
        .send()
        .await
        .unwrap();
    ecs.register_task_definition()
        .family("big")
        .container_definitions(container("main", 600))
        .send()
        .await
        .unwrap();
    let err = ecs
        .run_task()
        .cluster("empty")
        .task_definition("big")
        .send()
        .await
        .unwrap_err();
    assert!(err
        .as_service_error()
        .unwrap()
        .is_invalid_parameter_exception());
    assert_eq!(
        err.message(),
        Some("No Container Instances were found in your cluster.")
    );

    ecs.create_cluster()
        .cluster_name("small")
        .send()
        .await
        .unwrap();
    let (instance_arn, _agent) = connected_instance(&h, "small", 1024, 1000).await;
    let run = ecs
        .run_task()
        .cluster("small")
        .task_definition("big")
        .count(3)
        .send()
        .await
        .unwrap();
    assert_eq!(run.tasks().len(), 1);
    assert_eq!(run.failures().len(), 1);
    assert_eq!(run.failures()[0].reason(), Some("RESOURCE:MEMORY"));
    assert_eq!(run.failures()[0].arn(), Some(instance_arn.as_str()));

    ecs.register_task_definition()
        .family("cpu")
        .container_definitions(
            ContainerDefinition::builder()
                .name("m")
                .image("x")
                .memory(8)
                .cpu(4096)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let run = ecs
        .run_task()
        .cluster("small")
        .task_definition("cpu")
        .send()
        .await
        .unwrap();
    assert!(run.tasks().is_empty());
    assert_eq!(run.failures()[0].reason(), Some("RESOURCE:CPU"));

    let port_def = |family: &str| {
        ecs.register_task_definition()
            .family(family)
            .container_definitions(
                ContainerDefinition::builder()
                    .name("web")
                    .image("nginx")
                    .memory(8)
                    .port_mappings(
                        PortMapping::builder()
                            .container_port(80)
                            .host_port(8080)
                            .protocol(TransportProtocol::Tcp)
                            .build(),
                    )
                    .build(),
            )
    };
    port_def("web").send().await.unwrap();
    let first = ecs
        .run_task()
        .cluster("small")
        .task_definition("web")
        .send()
        .await
        .unwrap();
    assert_eq!(first.tasks().len(), 1);
    let second = ecs
        .run_task()
        .cluster("small")
        .task_definition("web")
        .send()
        .await
        .unwrap();
    assert_eq!(second.failures()[0].reason(), Some("RESOURCE:PORTS"));
    // The registered reserved port 22 cannot be taken either.
    ecs.register_task_definition()
        .family("ssh")
        .container_definitions(
            ContainerDefinition::builder()
                .name("ssh")
                .image("x")
                .memory(8)
                .port_mappings(
                    PortMapping::builder()
                        .container_port(22)
                        .host_port(22)
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let ssh = ecs
        .run_task()
        .cluster("small")
        .task_definition("ssh")
        .send()
        .await
        .unwrap();
    assert_eq!(ssh.failures()[0].reason(), Some("RESOURCE:PORTS"));

    // Stopping the port holder (never acked by the agent) frees the port.
    let holder = first.tasks()[0].task_arn().unwrap();
    ecs.stop_task()
        .cluster("small")
        .task(holder)
        .send()
        .await
        .unwrap();
    let third = ecs
        .run_task()
        .cluster("small")
        .task_definition("web")
        .send()
        .await
        .unwrap();
    assert_eq!(third.tasks().len(), 1, "{:?}", third.failures());
}

#[tokio::test]
async fn instances_list_describe_deregister() {
    let h = Harness::start().await;
    let ecs = h.client();
    let (arn, agent) = connected_instance(&h, "default", 1024, 1024).await;
    let listed = ecs.list_container_instances().send().await.unwrap();
    assert_eq!(listed.container_instance_arns(), std::slice::from_ref(&arn));
    let described = ecs
        .describe_container_instances()
        .container_instances(&arn)
        .send()
        .await
        .unwrap();
    let ci = &described.container_instances()[0];
    assert_eq!(ci.status(), Some("ACTIVE"));
    assert!(ci
        .attributes()
        .iter()
        .any(|a| a.name() == "ecs.availability-zone" && a.value() == Some("us-east-1a")));
    assert_eq!(ci.running_tasks_count(), 0);
    assert!(ci.registered_at().is_some());

    ecs.register_task_definition()
        .family("t")
        .container_definitions(container("m", 8))
        .send()
        .await
        .unwrap();
    ecs.run_task().task_definition("t").send().await.unwrap();
    let refused = ecs
        .deregister_container_instance()
        .container_instance(&arn)
        .send()
        .await
        .unwrap_err();
    assert!(refused
        .as_service_error()
        .unwrap()
        .is_invalid_parameter_exception());
    let gone = ecs
        .deregister_container_instance()
        .container_instance(&arn)
        .force(true)
        .send()
        .await
        .unwrap();
    assert_eq!(
        gone.container_instance().unwrap().status(),
        Some("INACTIVE")
    );
    drop(agent);
    let listed = ecs.list_container_instances().send().await.unwrap();
    assert!(listed.container_instance_arns().is_empty());
    let inactive = ecs
        .describe_container_instances()
        .container_instances(&arn)
        .send()
        .await
        .unwrap();
    assert_eq!(inactive.container_instances()[0].status(), Some("INACTIVE"));
    let tasks = ecs
        .list_tasks()
        .desired_status(aws_sdk_ecs::types::DesiredStatus::Stopped)
        .send()
        .await
        .unwrap();
    assert_eq!(tasks.task_arns().len(), 1);
}

#[tokio::test]
async fn state_survives_a_restart() {
    let h = Harness::start().await;
    let ecs = h.client();
    ecs.create_cluster()
        .cluster_name("keep")
        .send()
        .await
        .unwrap();
    ecs.register_task_definition()
        .family("kept")
        .container_definitions(container("m", 8))
        .send()
        .await
        .unwrap();
    let (arn, agent) = connected_instance(&h, "keep", 1024, 1024).await;
    let run = ecs
        .run_task()
        .cluster("keep")
        .task_definition("kept")
        .send()
        .await
        .unwrap();
    let task_arn = run.tasks()[0].task_arn().unwrap().to_owned();
    let seq_before = h.plane.store().read(|st| st.seq);
    assert!(seq_before >= 1, "a payload was sent, so the counter moved");
    drop(agent);

    let Harness { plane, dir } = h;
    plane.shutdown().await.unwrap();
    let plane = common::start_in(dir.path().join("data")).await;
    let h = Harness { plane, dir };
    let ecs = h.client();
    let described = ecs
        .describe_clusters()
        .clusters("keep")
        .send()
        .await
        .unwrap();
    assert_eq!(described.clusters().len(), 1);
    let td = ecs
        .describe_task_definition()
        .task_definition("kept:1")
        .send()
        .await
        .unwrap();
    assert_eq!(td.task_definition().unwrap().revision(), 1);
    let ci = ecs
        .describe_container_instances()
        .cluster("keep")
        .container_instances(&arn)
        .send()
        .await
        .unwrap();
    assert!(!ci.container_instances()[0].agent_connected());
    let tasks = ecs
        .describe_tasks()
        .cluster("keep")
        .tasks(&task_arn)
        .send()
        .await
        .unwrap();
    assert_eq!(tasks.tasks().len(), 1);
    assert_eq!(h.plane.store().read(|st| st.seq), seq_before);
}

#[tokio::test]
async fn task_definitions_are_listed_deregistered_and_deleted() {
    let h = Harness::start().await;
    let ecs = h.client();
    for family in ["web", "web", "web", "worker", "batch"] {
        ecs.register_task_definition()
            .family(family)
            .container_definitions(container("c", 32))
            .send()
            .await
            .unwrap();
    }
    let arn = |family: &str, revision: i32| {
        format!("arn:aws:ecs:us-east-1:000000000000:task-definition/{family}:{revision}")
    };
    let all = ecs.list_task_definitions().send().await.unwrap();
    assert_eq!(
        all.task_definition_arns(),
        [
            arn("batch", 1),
            arn("web", 1),
            arn("web", 2),
            arn("web", 3),
            arn("worker", 1)
        ]
    );
    let web_desc = ecs
        .list_task_definitions()
        .family_prefix("web")
        .sort(aws_sdk_ecs::types::SortOrder::Desc)
        .max_results(2)
        .send()
        .await
        .unwrap();
    assert_eq!(
        web_desc.task_definition_arns(),
        [arn("web", 3), arn("web", 2)]
    );
    let rest = ecs
        .list_task_definitions()
        .family_prefix("web")
        .sort(aws_sdk_ecs::types::SortOrder::Desc)
        .set_next_token(web_desc.next_token().map(str::to_string))
        .send()
        .await
        .unwrap();
    assert_eq!(rest.task_definition_arns(), [arn("web", 1)]);
    assert_eq!(rest.next_token(), None);

    // Deregistering: INACTIVE, with the time; the family's latest ACTIVE
    // revision is what a bare family name means now.
    let gone = ecs
        .deregister_task_definition()
        .task_definition("web:3")
        .send()
        .await
        .unwrap();
    let d = gone.task_definition().unwrap();
    assert_eq!(
        d.status(),
        Some(&aws_sdk_ecs::types::TaskDefinitionStatus::Inactive)
    );
    assert!(d.deregistered_at().is_some());
    let latest = ecs
        .describe_task_definition()
        .task_definition("web")
        .send()
        .await
        .unwrap();
    assert_eq!(latest.task_definition().unwrap().revision(), 2);
    let inactive = ecs
        .list_task_definitions()
        .status(aws_sdk_ecs::types::TaskDefinitionStatus::Inactive)
        .send()
        .await
        .unwrap();
    assert_eq!(inactive.task_definition_arns(), [arn("web", 3)]);
    let no_revision = ecs
        .deregister_task_definition()
        .task_definition("web")
        .send()
        .await
        .unwrap_err();
    assert_eq!(no_revision.code(), Some("InvalidParameterException"));

    // Families: by prefix, and by whether any revision is still ACTIVE.
    ecs.deregister_task_definition()
        .task_definition(arn("batch", 1))
        .send()
        .await
        .unwrap();
    let families = ecs.list_task_definition_families().send().await.unwrap();
    assert_eq!(families.families(), ["batch", "web", "worker"]);
    let active = ecs
        .list_task_definition_families()
        .status(aws_sdk_ecs::types::TaskDefinitionFamilyStatus::Active)
        .family_prefix("w")
        .send()
        .await
        .unwrap();
    assert_eq!(active.families(), ["web", "worker"]);
    let inactive = ecs
        .list_task_definition_families()
        .status(aws_sdk_ecs::types::TaskDefinitionFamilyStatus::Inactive)
        .send()
        .await
        .unwrap();
    assert_eq!(inactive.families(), ["batch"]);

    // Deleting: only INACTIVE revisions; an ACTIVE one is a failure.
    let deleted = ecs
        .delete_task_definitions()
        .task_definitions("web:3")
        .task_definitions("web:2")
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.task_definitions().len(), 1);
    assert_eq!(
        deleted.task_definitions()[0].status(),
        Some(&aws_sdk_ecs::types::TaskDefinitionStatus::DeleteInProgress)
    );
    assert_eq!(deleted.failures().len(), 1);
    assert_eq!(deleted.failures()[0].arn(), Some("web:2"));
    assert!(deleted.failures()[0]
        .reason()
        .unwrap_or_default()
        .contains("ACTIVE"));
}

#[tokio::test]
async fn clusters_are_deleted_only_when_empty_and_can_be_created_again() {
    let h = Harness::start().await;
    let ecs = h.client();
    ecs.create_cluster()
        .cluster_name("temp")
        .send()
        .await
        .unwrap();
    let deleted = ecs.delete_cluster().cluster("temp").send().await.unwrap();
    assert_eq!(deleted.cluster().unwrap().status(), Some("INACTIVE"));
    let listed = ecs.list_clusters().send().await.unwrap();
    assert!(!listed
        .cluster_arns()
        .iter()
        .any(|a| a.ends_with("cluster/temp")));
    let described = ecs
        .describe_clusters()
        .clusters("temp")
        .send()
        .await
        .unwrap();
    assert_eq!(described.clusters()[0].status(), Some("INACTIVE"));
    let refused = ecs.list_tasks().cluster("temp").send().await.unwrap_err();
    assert_eq!(refused.code(), Some("ClusterNotFoundException"));
    let again = ecs
        .delete_cluster()
        .cluster("temp")
        .send()
        .await
        .unwrap_err();
    assert_eq!(again.code(), Some("ClusterNotFoundException"));
    let back = ecs
        .create_cluster()
        .cluster_name("temp")
        .send()
        .await
        .unwrap();
    assert_eq!(back.cluster().unwrap().status(), Some("ACTIVE"));

    // A cluster with a registered instance stays.
    let (_instance, _ws) = connected_instance(&h, "temp", 1024, 1024).await;
    let busy = ecs
        .delete_cluster()
        .cluster("temp")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        busy.code(),
        Some("ClusterContainsContainerInstancesException")
    );
}

#[tokio::test]
async fn a_draining_instance_keeps_its_tasks_and_gets_no_new_ones() {
    let h = Harness::start().await;
    let ecs = h.client();
    let (arn, _agent) = connected_instance(&h, "default", 1024, 1024).await;
    ecs.register_task_definition()
        .family("t")
        .container_definitions(container("m", 8))
        .send()
        .await
        .unwrap();
    let first = ecs.run_task().task_definition("t").send().await.unwrap();
    assert_eq!(first.tasks().len(), 1);

    let draining = ecs
        .update_container_instances_state()
        .container_instances(&arn)
        .container_instances("not-an-instance")
        .status(aws_sdk_ecs::types::ContainerInstanceStatus::Draining)
        .send()
        .await
        .unwrap();
    assert_eq!(draining.container_instances()[0].status(), Some("DRAINING"));
    assert_eq!(draining.failures()[0].reason(), Some("MISSING"));
    // Still registered, still running its task, but not placed on.
    let cluster = ecs.describe_clusters().send().await.unwrap();
    assert_eq!(
        cluster.clusters()[0].registered_container_instances_count(),
        1
    );
    let tasks = ecs.list_tasks().send().await.unwrap();
    assert_eq!(tasks.task_arns().len(), 1);
    assert!(ecs.run_task().task_definition("t").send().await.is_err());
    let draining_only = ecs
        .list_container_instances()
        .status(aws_sdk_ecs::types::ContainerInstanceStatus::Draining)
        .send()
        .await
        .unwrap();
    assert_eq!(
        draining_only.container_instance_arns(),
        std::slice::from_ref(&arn)
    );

    let active = ecs
        .update_container_instances_state()
        .container_instances(&arn)
        .status(aws_sdk_ecs::types::ContainerInstanceStatus::Active)
        .send()
        .await
        .unwrap();
    assert_eq!(active.container_instances()[0].status(), Some("ACTIVE"));
    let second = ecs.run_task().task_definition("t").send().await.unwrap();
    assert_eq!(second.tasks().len(), 1);
    let bad = ecs
        .update_container_instances_state()
        .container_instances(&arn)
        .status(aws_sdk_ecs::types::ContainerInstanceStatus::Deregistering)
        .send()
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Some("InvalidParameterException"));
}

#[tokio::test]
async fn custom_attributes_are_put_listed_deleted_and_survive_re_registration() {
    use aws_sdk_ecs::types::{Attribute, TargetType};
    let h = Harness::start().await;
    let ecs = h.client();
    let (arn, _agent) = connected_instance(&h, "default", 1024, 1024).await;
    let attribute = |name: &str, value: Option<&str>, target: &str| {
        Attribute::builder()
            .name(name)
            .set_value(value.map(str::to_string))
            .target_id(target)
            .build()
            .unwrap()
    };
    let put = ecs
        .put_attributes()
        .attributes(attribute("stack", Some("prod"), &arn))
        .attributes(attribute("gpu.model", Some("none"), &arn))
        .send()
        .await
        .unwrap();
    assert_eq!(put.attributes().len(), 2);
    assert_eq!(
        put.attributes()[0].target_type(),
        Some(&TargetType::ContainerInstance)
    );

    let listed = ecs
        .list_attributes()
        .target_type(TargetType::ContainerInstance)
        .attribute_name("stack")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.attributes().len(), 1);
    assert_eq!(listed.attributes()[0].value(), Some("prod"));
    assert_eq!(listed.attributes()[0].target_id(), Some(arn.as_str()));
    let by_value = ecs
        .list_attributes()
        .target_type(TargetType::ContainerInstance)
        .attribute_name("stack")
        .attribute_value("staging")
        .send()
        .await
        .unwrap();
    assert!(by_value.attributes().is_empty());
    let described = ecs
        .describe_container_instances()
        .container_instances(&arn)
        .send()
        .await
        .unwrap();
    assert!(described.container_instances()[0]
        .attributes()
        .iter()
        .any(|a| a.name() == "stack" && a.value() == Some("prod")));

    // The agent registering again keeps them.
    let mut registration = common::registration("default", 1024, 1024);
    registration["containerInstanceArn"] = serde_json::json!(arn);
    let (status, body) = h
        .call(
            "RegisterContainerInstance",
            registration.to_string().as_bytes(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let listed = ecs
        .list_attributes()
        .target_type(TargetType::ContainerInstance)
        .attribute_name("stack")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.attributes().len(), 1);

    let deleted = ecs
        .delete_attributes()
        .attributes(attribute("stack", None, &arn))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.attributes().len(), 1);
    let listed = ecs
        .list_attributes()
        .target_type(TargetType::ContainerInstance)
        .attribute_name("stack")
        .send()
        .await
        .unwrap();
    assert!(listed.attributes().is_empty());

    let missing = ecs
        .put_attributes()
        .attributes(attribute("stack", Some("prod"), "no-such-instance"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Some("TargetNotFoundException"));
    let bad = ecs
        .put_attributes()
        .attributes(attribute("has space", Some("x"), &arn))
        .send()
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Some("InvalidParameterException"));
}

#[tokio::test]
async fn start_task_runs_on_the_named_instances_only() {
    let h = Harness::start().await;
    let ecs = h.client();
    let (first, _ws1) = connected_instance(&h, "default", 1024, 1024).await;
    let (second, _ws2) = connected_instance(&h, "default", 1024, 1024).await;
    ecs.register_task_definition()
        .family("web")
        .container_definitions(container("main", 600))
        .send()
        .await
        .unwrap();
    let started = ecs
        .start_task()
        .task_definition("web")
        .container_instances(&second)
        .started_by("me")
        .send()
        .await
        .unwrap();
    assert_eq!(started.tasks().len(), 1);
    let task = &started.tasks()[0];
    assert_eq!(task.container_instance_arn(), Some(second.as_str()));
    assert_eq!(task.started_by(), Some("me"));
    assert_eq!(task.group(), Some("family:web"));
    // The second has no room left for another; the first has; a missing
    // one is MISSING; a draining one is refused with its status.
    ecs.update_container_instances_state()
        .container_instances(&first)
        .status(aws_sdk_ecs::types::ContainerInstanceStatus::Draining)
        .send()
        .await
        .unwrap();
    let again = ecs
        .start_task()
        .task_definition("web")
        .container_instances(&second)
        .container_instances(&first)
        .container_instances("0123456789abcdef")
        .send()
        .await
        .unwrap();
    assert!(again.tasks().is_empty());
    let reasons: Vec<(String, String)> = again
        .failures()
        .iter()
        .map(|f| {
            (
                f.arn().unwrap().rsplit('/').next().unwrap().to_owned(),
                f.reason().unwrap().to_owned(),
            )
        })
        .collect();
    let id = |arn: &str| arn.rsplit('/').next().unwrap().to_owned();
    assert!(
        reasons.contains(&(id(&second), "RESOURCE:MEMORY".to_owned())),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&(id(&first), "DRAINING".to_owned())),
        "{reasons:?}"
    );
    assert!(reasons.contains(&("0123456789abcdef".to_owned(), "MISSING".to_owned())));
    let err = ecs
        .start_task()
        .task_definition("web")
        .send()
        .await
        .unwrap_err();
    assert!(err
        .as_service_error()
        .unwrap()
        .is_invalid_parameter_exception());
}

#[tokio::test]
async fn task_definition_and_service_tags_are_kept_listed_and_propagated() {
    use aws_sdk_ecs::types::{PropagateTags, Tag, TaskDefinitionField};
    let h = Harness::start().await;
    let ecs = h.client();
    let (_arn, _ws) = connected_instance(&h, "default", 4096, 4096).await;
    let tag = |k: &str, v: &str| Tag::builder().key(k).value(v).build();
    let registered = ecs
        .register_task_definition()
        .family("web")
        .container_definitions(container("main", 64))
        .tags(tag("team", "a"))
        .tags(tag("app", "web"))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.tags().len(), 2);
    let td_arn = registered
        .task_definition()
        .unwrap()
        .task_definition_arn()
        .unwrap()
        .to_owned();
    let plain = ecs
        .describe_task_definition()
        .task_definition("web")
        .send()
        .await
        .unwrap();
    assert!(plain.tags().is_empty(), "tags only with include TAGS");
    let with = ecs
        .describe_task_definition()
        .task_definition("web:1")
        .include(TaskDefinitionField::Tags)
        .send()
        .await
        .unwrap();
    assert_eq!(with.tags().len(), 2);
    ecs.tag_resource()
        .resource_arn(&td_arn)
        .tags(tag("stage", "dev"))
        .send()
        .await
        .unwrap();
    let listed = ecs
        .list_tags_for_resource()
        .resource_arn(&td_arn)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.tags().len(), 3);

    // RunTask: the definition's tags, with the task's own laid over.
    let run = ecs
        .run_task()
        .task_definition("web")
        .propagate_tags(PropagateTags::TaskDefinition)
        .tags(tag("team", "b"))
        .send()
        .await
        .unwrap();
    let mut tags: Vec<(String, String)> = run.tasks()[0]
        .tags()
        .iter()
        .map(|t| (t.key().unwrap().to_owned(), t.value().unwrap().to_owned()))
        .collect();
    tags.sort();
    assert_eq!(
        tags,
        [("app", "web"), ("stage", "dev"), ("team", "b")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
    );
    let err = ecs
        .run_task()
        .task_definition("web")
        .propagate_tags(PropagateTags::Service)
        .send()
        .await
        .unwrap_err();
    assert!(err
        .as_service_error()
        .unwrap()
        .is_invalid_parameter_exception());

    // A service's tags can be listed, changed, and reach its tasks.
    let service = ecs
        .create_service()
        .service_name("svc")
        .task_definition("web")
        .desired_count(1)
        .tags(tag("owner", "ops"))
        .propagate_tags(PropagateTags::Service)
        .send()
        .await
        .unwrap();
    let service_arn = service.service().unwrap().service_arn().unwrap().to_owned();
    // Tags are copied when a task starts.
    eventually(
        &h.plane,
        "the service's task with the service's tags",
        |st| {
            st.tasks.values().any(|t| {
                t.service.as_deref() == Some("svc")
                    && t.task.tags.as_deref()
                        == Some(
                            &[ecs_model::ecs_api::Tag {
                                key: Some("owner".into()),
                                value: Some("ops".into()),
                            }][..],
                        )
            })
        },
    )
    .await;
    ecs.untag_resource()
        .resource_arn(&service_arn)
        .tag_keys("owner")
        .send()
        .await
        .unwrap();
    ecs.tag_resource()
        .resource_arn(&service_arn)
        .tags(tag("owner", "dev"))
        .send()
        .await
        .unwrap();
    let listed = ecs
        .list_tags_for_resource()
        .resource_arn(&service_arn)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.tags(), [tag("owner", "dev")]);
    // The tags survive a restart with the rest.
    let Harness { plane, dir } = h;
    plane.shutdown().await.unwrap();
    let h = Harness {
        plane: start_in(dir.path().join("data")).await,
        dir,
    };
    let listed = h
        .client()
        .list_tags_for_resource()
        .resource_arn(&td_arn)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.tags().len(), 3);
}

#[tokio::test]
async fn plane_set_members_are_not_echoed_twice_and_deleted_revisions_do_not_run() {
    let h = Harness::start().await;
    let (_arn, _ws) = connected_instance(&h, "default", 1024, 1024).await;
    // A raw client naming members the plane sets: one of each comes back.
    let body = json!({"family": "web", "revision": 7, "status": "X", "taskDefinitionArn": "y",
                      "containerDefinitions": [{"name": "main", "image": "busybox", "memory": 8}],
                      "somethingNew": {"kept": true}});
    let (status, _, raw) = post(
        &h.addr(),
        &format!("{TARGET}RegisterTaskDefinition"),
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(status, 200);
    let text = String::from_utf8(raw).unwrap();
    assert_eq!(text.matches("\"revision\"").count(), 1, "{text}");
    assert_eq!(text.matches("\"status\"").count(), 1, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["taskDefinition"]["revision"], 1);
    assert_eq!(v["taskDefinition"]["somethingNew"]["kept"], true);

    // A revision being deleted cannot run.
    let call = |action: &'static str, body: Value| {
        let h = &h;
        async move { h.call(action, body.to_string().as_bytes()).await }
    };
    call(
        "DeregisterTaskDefinition",
        json!({"taskDefinition": "web:1"}),
    )
    .await;
    let (status, _) = call("RunTask", json!({"taskDefinition": "web:1"})).await;
    assert_eq!(status, 200, "an INACTIVE revision still runs by name");
    call(
        "DeleteTaskDefinitions",
        json!({"taskDefinitions": ["web:1"]}),
    )
    .await;
    let (status, err) = call("RunTask", json!({"taskDefinition": "web:1"})).await;
    assert_eq!(status, 400);
    assert_eq!(err["__type"], "ClientException");
}

#[tokio::test]
async fn tasks_carry_their_instances_zone_and_show_tags_only_when_asked() {
    let h = Harness::start().await;
    let mut body = registration("default", 1024, 1024);
    body["attributes"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "ecs.availability-zone", "value": "us-east-1c"}));
    let (status, registered) = h
        .call("RegisterContainerInstance", body.to_string().as_bytes())
        .await;
    assert_eq!(status, 200, "{registered}");
    let arn = registered["containerInstance"]["containerInstanceArn"]
        .as_str()
        .unwrap()
        .to_owned();
    let _ws = connect_agent(&h, "default", &arn, true).await;
    let ecs = h.client();
    ecs.register_task_definition()
        .family("web")
        .container_definitions(container("main", 8))
        .send()
        .await
        .unwrap();
    let run = ecs
        .run_task()
        .task_definition("web")
        .tags(
            aws_sdk_ecs::types::Tag::builder()
                .key("k")
                .value("v")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let task = &run.tasks()[0];
    assert_eq!(task.availability_zone(), Some("us-east-1c"));
    let arn = task.task_arn().unwrap();
    let plain = ecs.describe_tasks().tasks(arn).send().await.unwrap();
    assert!(plain.tasks()[0].tags().is_empty());
    let with = ecs
        .describe_tasks()
        .tasks(arn)
        .include(aws_sdk_ecs::types::TaskField::Tags)
        .send()
        .await
        .unwrap();
    assert_eq!(with.tasks()[0].tags()[0].key(), Some("k"));
}
