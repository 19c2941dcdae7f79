//! Services through the Rust SDK, with simulated agents that run whatever
//! they are sent: creation, spread over instances, a rolling update from
//! revision 1 to 2, draining, scaling, deletion, the errors ECS answers,
//! and a restart of the plane with the service intact.
#![allow(clippy::unwrap_used)]

mod common;

use aws_sdk_ecs::error::ProvideErrorMetadata;
use aws_sdk_ecs::types::{
    ContainerDefinition, DeploymentConfiguration, PlacementStrategy, PlacementStrategyType,
};
use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// An agent that acks every payload and reports each task as its desired
/// status says: RUNNING when wanted running, STOPPED when wanted stopped.
fn fake_agent(h: &Harness, mut ws: Ws) -> tokio::task::JoinHandle<()> {
    let addr = h.addr();
    tokio::spawn(async move {
        while let Some(Ok(msg)) = ws.next().await {
            let Message::Text(text) = msg else { continue };
            let frame: Value = serde_json::from_str(text.as_str()).unwrap();
            if frame["type"] != "PayloadMessage" {
                continue;
            }
            ack(&mut ws, &frame).await;
            for task in frame["message"]["tasks"].as_array().into_iter().flatten() {
                let status = match task["desiredStatus"].as_str() {
                    Some("STOPPED") => "STOPPED",
                    _ => "RUNNING",
                };
                let body = json!({"cluster": frame["message"]["clusterArn"],
                    "task": task["arn"], "status": status, "reason": ""});
                post(
                    &addr,
                    &format!("{TARGET}SubmitTaskStateChange"),
                    body.to_string().as_bytes(),
                )
                .await;
            }
        }
    })
}

fn container(image: &str) -> ContainerDefinition {
    ContainerDefinition::builder()
        .name("app")
        .image(image)
        .memory(128)
        .build()
}

async fn register(ecs: &aws_sdk_ecs::Client, image: &str) -> String {
    ecs.register_task_definition()
        .family("web")
        .container_definitions(container(image))
        .send()
        .await
        .unwrap()
        .task_definition()
        .unwrap()
        .task_definition_arn()
        .unwrap()
        .to_owned()
}

async fn describe(ecs: &aws_sdk_ecs::Client, cluster: &str) -> aws_sdk_ecs::types::Service {
    ecs.describe_services()
        .cluster(cluster)
        .services("web")
        .send()
        .await
        .unwrap()
        .services()[0]
        .clone()
}

/// Tasks of the service wanted running: instance id → revisions.
fn placement(st: &ecs_local::store::State) -> BTreeMap<String, Vec<i64>> {
    let mut out: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for t in st.tasks.values() {
        if t.service.as_deref() == Some("web") && t.desired_status() != "STOPPED" {
            out.entry(t.instance_id.clone().unwrap())
                .or_default()
                .push(t.revision);
        }
    }
    out
}

fn all_running(st: &ecs_local::store::State, count: usize, revision: i64) -> bool {
    let live: Vec<_> = st
        .tasks
        .values()
        .filter(|t| t.service.as_deref() == Some("web") && !t.is_stopped())
        .collect();
    live.len() == count
        && live.iter().all(|t| {
            t.last_status() == "RUNNING"
                && t.revision == revision
                && t.desired_status() == "RUNNING"
        })
}

#[tokio::test]
async fn a_service_spreads_rolls_drains_scales_and_is_deleted() {
    let h = Harness::start().await;
    let ecs = h.client();
    ecs.create_cluster()
        .cluster_name("svc")
        .send()
        .await
        .unwrap();
    let mut instances = Vec::new();
    let mut agents = Vec::new();
    for _ in 0..3 {
        let (arn, ws) = connected_instance(&h, "svc", 4096, 4096).await;
        instances.push(arn);
        agents.push(fake_agent(&h, ws));
    }
    let v1 = register(&ecs, "busybox:1").await;

    let created = ecs
        .create_service()
        .cluster("svc")
        .service_name("web")
        .task_definition("web")
        .desired_count(6)
        .placement_strategy(
            PlacementStrategy::builder()
                .r#type(PlacementStrategyType::Spread)
                .field("instanceId")
                .build(),
        )
        .tags(
            aws_sdk_ecs::types::Tag::builder()
                .key("team")
                .value("a")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let service = created.service().unwrap();
    assert_eq!(
        service.service_arn(),
        Some(h.plane.arns().service("svc", "web").as_str())
    );
    assert_eq!(service.status(), Some("ACTIVE"));
    assert_eq!(service.desired_count(), 6);
    assert_eq!(service.task_definition(), Some(v1.as_str()));
    assert_eq!(service.deployments().len(), 1);
    let first = service.deployments()[0].clone();
    assert_eq!(first.status(), Some("PRIMARY"));
    assert!(first.id().unwrap().starts_with("ecs-svc/"));
    assert_eq!(
        service
            .deployment_configuration()
            .unwrap()
            .maximum_percent(),
        Some(200)
    );

    eventually(&h.plane, "6 tasks running", |st| all_running(st, 6, 1)).await;
    h.plane.store().read(|st| {
        let spread: Vec<usize> = placement(st).values().map(Vec::len).collect();
        assert_eq!(spread, vec![2, 2, 2]);
    });
    let listed = ecs
        .list_tasks()
        .cluster("svc")
        .service_name("web")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.task_arns().len(), 6);
    let none = ecs
        .list_tasks()
        .cluster("svc")
        .service_name("other")
        .send()
        .await
        .unwrap();
    assert!(none.task_arns().is_empty());
    let tasks = ecs
        .describe_tasks()
        .cluster("svc")
        .set_tasks(Some(listed.task_arns().to_vec()))
        .send()
        .await
        .unwrap();
    for t in tasks.tasks() {
        assert_eq!(t.group(), Some("service:web"));
        assert_eq!(t.started_by(), first.id());
    }
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let s = describe(&ecs, "svc").await;
        let steady = s
            .events()
            .iter()
            .any(|e| e.message() == Some("(service web) has reached a steady state."));
        if steady {
            assert_eq!((s.running_count(), s.pending_count()), (6, 0));
            assert_eq!(
                s.deployments()[0].rollout_state().map(|r| r.as_str()),
                Some("COMPLETED")
            );
            assert!(s.tags().is_empty(), "tags only with include TAGS");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no steady state: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let with_tags = ecs
        .describe_services()
        .cluster("svc")
        .services("web")
        .include(aws_sdk_ecs::types::ServiceField::Tags)
        .send()
        .await
        .unwrap();
    assert_eq!(with_tags.services()[0].tags()[0].key(), Some("team"));

    // Revision 2, one task at a time: at most 6 + 1 live, never fewer
    // than 5 running.
    let v2 = register(&ecs, "busybox:2").await;
    let updated = ecs
        .update_service()
        .cluster("svc")
        .service("web")
        .task_definition("web")
        .deployment_configuration(
            DeploymentConfiguration::builder()
                .minimum_healthy_percent(83)
                .maximum_percent(116)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let deployments = updated.service().unwrap().deployments();
    assert_eq!(deployments.len(), 2);
    assert_eq!(deployments[0].task_definition(), Some(v2.as_str()));
    assert_eq!(deployments[1].status(), Some("ACTIVE"));
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let (live, running, done) = h.plane.store().read(|st| {
            let live: Vec<_> = st
                .tasks
                .values()
                .filter(|t| t.service.as_deref() == Some("web") && !t.is_stopped())
                .collect();
            let running = live
                .iter()
                .filter(|t| t.last_status() == "RUNNING" && t.desired_status() == "RUNNING")
                .count();
            (live.len(), running, all_running(st, 6, 2))
        });
        assert!(live <= 7, "{live} tasks live");
        assert!(running >= 5, "only {running} running");
        if done {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the update did not finish"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // Draining the first instance moves its two tasks to the others.
    let drained = ecs
        .update_container_instances_state()
        .cluster("svc")
        .container_instances(&instances[0])
        .status(aws_sdk_ecs::types::ContainerInstanceStatus::Draining)
        .send()
        .await
        .unwrap();
    assert!(drained.failures().is_empty());
    let first_id = instances[0].rsplit('/').next().unwrap().to_owned();
    eventually(&h.plane, "the drained instance empty", |st| {
        !placement(st).contains_key(&first_id) && all_running(st, 6, 2)
    })
    .await;
    h.plane.store().read(|st| {
        let spread: Vec<usize> = placement(st).values().map(Vec::len).collect();
        assert_eq!(spread, vec![3, 3]);
    });

    // Scaling in stops at once; deleting needs 0 or force.
    ecs.update_service()
        .cluster("svc")
        .service("web")
        .desired_count(2)
        .send()
        .await
        .unwrap();
    eventually(&h.plane, "2 tasks", |st| all_running(st, 2, 2)).await;
    let err = ecs
        .delete_service()
        .cluster("svc")
        .service("web")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InvalidParameterException"));
    assert_eq!(
        err.message(),
        Some("The service cannot be stopped while it is scaled above 0.")
    );
    let err = ecs
        .delete_cluster()
        .cluster("svc")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some("ClusterContainsContainerInstancesException")
    );
    let deleted = ecs
        .delete_service()
        .cluster("svc")
        .service("web")
        .force(true)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.service().unwrap().status(), Some("DRAINING"));
    eventually(&h.plane, "the service inactive", |st| {
        st.services["svc/web"].status() == "INACTIVE"
    })
    .await;
    let listed = ecs.list_services().cluster("svc").send().await.unwrap();
    assert!(listed.service_arns().is_empty());
    let s = describe(&ecs, "svc").await;
    assert_eq!(s.status(), Some("INACTIVE"));
    for agent in agents {
        agent.abort();
    }
}

#[tokio::test]
async fn service_calls_answer_ecs_errors() {
    let h = Harness::start().await;
    let ecs = h.client();
    register(&ecs, "busybox").await;
    let code = |e: &aws_sdk_ecs::error::SdkError<_, _>| e.code().map(str::to_owned);
    // Errors before any instance exists: the service is still created.
    let err = ecs
        .update_service()
        .service("nope")
        .desired_count(1)
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ServiceNotFoundException"));
    let err = ecs
        .create_service()
        .service_name("web")
        .task_definition("missing")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ClientException"));
    let err = ecs
        .create_service()
        .service_name("bad name")
        .task_definition("web")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InvalidParameterException"));
    let err = ecs
        .create_service()
        .service_name("web")
        .task_definition("web")
        .placement_constraints(
            aws_sdk_ecs::types::PlacementConstraint::builder()
                .r#type(aws_sdk_ecs::types::PlacementConstraintType::MemberOf)
                .expression("attribute:ecs.os-type === linux")
                .build(),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InvalidParameterException"));
    assert!(
        err.message()
            .unwrap()
            .contains("Invalid memberOf expression"),
        "{err:?}"
    );
    let err = ecs
        .create_service()
        .service_name("web")
        .task_definition("web")
        .cluster("nowhere")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err).as_deref(), Some("ClusterNotFoundException"));

    let created = ecs
        .create_service()
        .service_name("web")
        .task_definition("web")
        .desired_count(0)
        .client_token("tok-1")
        .send()
        .await
        .unwrap();
    // The same token gets the same service; another call is refused.
    let again = ecs
        .create_service()
        .service_name("web")
        .task_definition("web")
        .desired_count(0)
        .client_token("tok-1")
        .send()
        .await
        .unwrap();
    assert_eq!(
        again.service().unwrap().created_at(),
        created.service().unwrap().created_at()
    );
    let err = ecs
        .create_service()
        .service_name("web")
        .task_definition("web")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        err.message(),
        Some("Creation of service was not idempotent.")
    );
    let described = ecs
        .describe_services()
        .services("web")
        .services("ghost")
        .send()
        .await
        .unwrap();
    assert_eq!(described.services().len(), 1);
    assert_eq!(described.failures()[0].reason(), Some("MISSING"));
    assert!(described.failures()[0]
        .arn()
        .unwrap()
        .ends_with(":service/default/ghost"));
    let err = ecs
        .delete_cluster()
        .cluster("default")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ClusterContainsServicesException"));
    let cluster = ecs.describe_clusters().send().await.unwrap().clusters()[0].clone();
    assert_eq!(cluster.active_services_count(), 1);

    ecs.delete_service().service("web").send().await.unwrap();
    eventually(&h.plane, "inactive", |st| {
        st.services["default/web"].status() == "INACTIVE"
    })
    .await;
    let err = ecs
        .update_service()
        .service("web")
        .desired_count(1)
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ServiceNotActiveException"));
    // An INACTIVE name can be used again.
    ecs.create_service()
        .service_name("web")
        .task_definition("web")
        .desired_count(0)
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn a_service_survives_a_restart_of_the_plane_and_keeps_running() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let h = Harness {
        plane: start_in(data.clone()).await,
        dir,
    };
    let ecs = h.client();
    let (arn, ws) = connected_instance(&h, "default", 4096, 4096).await;
    let agent = fake_agent(&h, ws);
    register(&ecs, "busybox").await;
    ecs.create_service()
        .service_name("web")
        .task_definition("web")
        .desired_count(2)
        .send()
        .await
        .unwrap();
    eventually(&h.plane, "2 running and steady", |st| {
        all_running(st, 2, 1) && st.services["default/web"].steady
    })
    .await;
    let before = describe(&ecs, "default").await;
    agent.abort();
    let Harness { plane, dir } = h;
    plane.shutdown().await.unwrap();

    let h = Harness {
        plane: start_in(data).await,
        dir,
    };
    let ecs = h.client();
    let after = describe(&ecs, "default").await;
    assert_eq!(after.deployments()[0].id(), before.deployments()[0].id());
    assert_eq!(after.running_count(), 2);
    assert_eq!(after.events().len(), before.events().len());
    // The agent comes back; nothing is started twice.
    let id = arn.rsplit('/').next().unwrap().to_owned();
    let ws = connect_agent(&h, "default", &arn, false).await;
    let agent = fake_agent(&h, ws);
    tokio::time::sleep(QUIET).await;
    h.plane.store().read(|st| {
        assert_eq!(st.tasks_on(&id).count(), 2);
        assert!(all_running(st, 2, 1));
    });
    agent.abort();
}

/// The plane's own series after a scripted workload: API calls (one
/// refused), an agent, a service's tasks, payloads and store writes.
#[tokio::test]
async fn metrics_show_the_planes_own_series() {
    let h = Harness::start().await;
    let ecs = h.client();
    let (_arn, ws) = connected_instance(&h, "default", 4096, 4096).await;
    let agent = fake_agent(&h, ws);
    register(&ecs, "busybox").await;
    ecs.create_service()
        .service_name("web")
        .task_definition("web")
        .desired_count(2)
        .send()
        .await
        .unwrap();
    let _ = ecs
        .describe_services()
        .cluster("nope")
        .services("web")
        .send()
        .await;
    eventually(&h.plane, "2 running", |st| all_running(st, 2, 1)).await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let page = loop {
        let (status, page) = h.get_text("/metrics").await;
        assert_eq!(status, 200);
        let acked = metric(&page, "ecs_local_acs_payloads_acked_total").unwrap_or(0);
        if acked >= 2
            && page
                .contains("ecs_local_service_running_tasks{cluster=\"default\",service=\"web\"} 2")
        {
            break page;
        }
        assert!(tokio::time::Instant::now() < deadline, "{page}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for expected in [
        "ecs_local_api_requests_total{action=\"CreateService\",outcome=\"ok\"} 1",
        "ecs_local_api_requests_total{action=\"DescribeServices\",outcome=\"ClusterNotFoundException\"} 1",
        "ecs_local_api_request_duration_seconds_count{action=\"CreateService\"} 1",
        "ecs_local_agents_connected{cluster=\"default\"} 1",
        "ecs_local_container_instances{cluster=\"default\"} 1",
        "ecs_local_tasks{cluster=\"default\",status=\"RUNNING\"} 2",
        "ecs_local_service_desired_tasks{cluster=\"default\",service=\"web\"} 2",
        "# TYPE ecs_local_store_write_duration_seconds histogram",
    ] {
        assert!(page.contains(expected), "missing {expected}:\n{page}");
    }
    assert!(metric(&page, "ecs_local_acs_payloads_sent_total").unwrap() >= 2);
    assert!(metric(&page, "ecs_local_store_write_duration_seconds_count").unwrap() > 0);
    agent.abort();
}
