#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use serde_json::{json, Value};

use super::*;
use crate::go_state::bolt;

fn fixture_dir() -> Option<PathBuf> {
    let dir = ecs_model::spec::require_or_skip("Go agent state fixture")?;
    Some(dir.join("samples/go-agent-state"))
}

/// The fixture's `agent.db`, through the bbolt reader, and its JSON dump.
fn fixture() -> Option<(Buckets, Value)> {
    let dir = fixture_dir()?;
    let buckets = bolt::read(&dir.join("agent.db")).unwrap();
    let dump: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("agent.db.json")).unwrap()).unwrap();
    Some((buckets, dump))
}

fn ms(v: &Value) -> Option<i64> {
    model::time_to_ms(v.as_str().unwrap())
}

fn status_name<T: serde::Serialize>(s: T) -> String {
    serde_json::to_value(s)
        .unwrap()
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn the_fixture_is_taken_over_field_by_field() {
    let Some((buckets, dump)) = fixture() else {
        return;
    };
    let imported = import(&buckets, "takeover").unwrap();
    let meta: BTreeMap<&str, &str> = imported
        .seed
        .meta
        .iter()
        .map(|(k, v)| (*k, v.as_str()))
        .collect();
    let go_meta = &dump["metadata"];
    assert_eq!(meta[keys::CLUSTER], go_meta["cluster-name"]);
    assert_eq!(
        meta[keys::CONTAINER_INSTANCE_ARN],
        go_meta["container-instance-arn"]
    );
    assert_eq!(meta[keys::AVAILABILITY_ZONE], go_meta["availability-zone"]);
    // The Go agent ran without instance metadata: no instance ID to carry.
    assert_eq!(go_meta["ec2-instance-id"], "");
    assert!(!meta.contains_key(keys::EC2_INSTANCE_ID));
    assert_eq!(
        meta[keys::TASK_MANIFEST_SEQ_NUM],
        go_meta["task-manifest-seq-num"]
    );

    let go_tasks = dump["tasks"].as_object().unwrap();
    assert_eq!(imported.seed.tasks.len(), go_tasks.len());
    for task in &imported.seed.tasks {
        let go = &go_tasks[task.spec.task_id()];
        assert_eq!(task.arn(), go["Arn"]);
        assert_eq!(task.spec.family, go["Family"]);
        assert_eq!(task.spec.version, go["Version"]);
        assert_eq!(status_name(task.desired_status), go["DesiredStatus"]);
        assert_eq!(status_name(task.known_status), go["KnownStatus"]);
        assert_eq!(status_name(task.reported_status), go["SentStatus"]);
        assert_eq!(Some(task.known_status_time_ms), ms(&go["KnownTime"]));
        assert_eq!(task.execution_stopped_at_ms, ms(&go["ExecutionStoppedAt"]));
        assert_eq!(task.spec.cpu, go["Cpu"].as_f64().unwrap_or(0.0));
        assert_eq!(
            i64::from(task.spec.memory_mib),
            go["Memory"].as_i64().unwrap_or(0)
        );
        let go_containers = go["Containers"].as_array().unwrap();
        assert_eq!(task.containers.len(), go_containers.len());
        for (c, go_c) in task.containers.iter().zip(go_containers) {
            let key = format!("{}-{}", task.spec.task_id(), c.spec.name);
            let entry = &dump["containers"][&key];
            assert_eq!(c.spec.name, go_c["Name"]);
            assert_eq!(c.spec.image, go_c["Image"]);
            assert_eq!(c.docker_id.as_deref(), entry["DockerId"].as_str());
            assert_eq!(c.docker_id.as_deref(), go_c["RuntimeID"].as_str());
            assert_eq!(c.docker_name.as_deref(), entry["DockerName"].as_str());
            assert_eq!(status_name(c.desired_status), go_c["desiredStatus"]);
            assert_eq!(status_name(c.known_status), go_c["KnownStatus"]);
            assert_eq!(status_name(c.reported_status), go_c["SentStatus"]);
            assert_eq!(c.exit_code, go_c["KnownExitCode"].as_i64());
            assert_eq!(c.started_at_ms, ms(&go_c["startedAt"]));
            assert_eq!(c.endpoint_id, go_c["V3EndpointID"]);
            assert_eq!(c.health, HealthStatus::Unknown, "health comes from Docker");
            let bindings: Vec<Value> = c
                .port_bindings
                .iter()
                .map(|b| {
                    json!({"ContainerPort": b.container_port, "ContainerPortRange": "",
                           "HostPort": b.host_port, "BindIp": b.bind_ip,
                           "Protocol": b.protocol.as_str()})
                })
                .collect();
            let go_bindings = go_c["KnownPortBindings"].as_array().cloned();
            assert_eq!(bindings, go_bindings.unwrap_or_default());
            assert_eq!(c.spec.essential, go_c["Essential"]);
            assert_eq!(
                c.spec.docker_health_check,
                go_c["healthCheckType"] == "docker"
            );
            assert_eq!(c.spec.memory_mib, go_c["Memory"].as_u64().unwrap() as u32);
            assert_eq!(
                c.spec.environment.get("GREETING").map(String::as_str),
                go_c["environment"]["GREETING"].as_str()
            );
            let deps: Vec<Value> = c
                .spec
                .depends_on
                .iter()
                .map(|d| json!({"containerName": d.container_name, "condition": status_name(d.condition)}))
                .collect();
            assert_eq!(
                deps,
                go_c["dependsOn"].as_array().cloned().unwrap_or_default()
            );
        }
        let go_volumes = go["resources"]["dockerVolume"].as_array().cloned();
        for (v, go_v) in task.volumes.iter().zip(go_volumes.unwrap_or_default()) {
            assert_eq!(v.name, go_v["name"]);
            assert_eq!(
                v.docker_name,
                go_v["dockerVolumeConfiguration"]["dockerVolumeName"]
            );
            assert_eq!(v.status, ResourceStatus::Created);
            assert!(!v.shared, "a task-scoped volume goes with its task");
        }
    }
    let web = imported
        .seed
        .tasks
        .iter()
        .find(|t| t.spec.family == "web")
        .unwrap();
    assert_eq!(web.volumes.len(), 1);
    assert_eq!(web.containers[0].port_bindings[0].host_port, 32768);

    let go_images = dump["images"].as_object().unwrap();
    assert_eq!(imported.seed.images.len(), go_images.len());
    for image in &imported.seed.images {
        let go = &go_images[&image.image_id];
        assert_eq!(image.names, ["capture/busybox:local"]);
        assert_eq!(Value::from(image.size), go["Image"]["Size"]);
        assert_eq!(Some(image.pulled_at_ms), ms(&go["PulledAt"]));
        assert_eq!(Some(image.last_used_at_ms), ms(&go["LastUsedAt"]));
        assert_eq!(image.pull_succeeded, go["PullSucceeded"]);
    }
    assert_eq!(
        imported.summary,
        Summary {
            cluster: "takeover".into(),
            instance_arn: go_meta["container-instance-arn"].as_str().unwrap().into(),
            tasks: 3,
            running_tasks: 2,
            containers: 4,
            images: 1,
        }
    );
}

fn with_task(buckets: &Buckets, family: &str, change: impl Fn(&mut Value)) -> Buckets {
    let mut buckets = buckets.clone();
    let mut original = Value::Null;
    for value in buckets.get_mut("tasks").unwrap().values_mut() {
        let mut task: Value = serde_json::from_slice(value).unwrap();
        if task["Family"] == family {
            original = task.clone();
            change(&mut task);
            *value = serde_json::to_vec(&task).unwrap();
        }
    }
    // The containers bucket holds the newer copies: the same change is
    // made to them, through the unchanged task.
    let mut changed = original.clone();
    change(&mut changed);
    for value in buckets.get_mut("containers").unwrap().values_mut() {
        let mut entry: Value = serde_json::from_slice(value).unwrap();
        if entry["Container"]["taskARN"] != original["Arn"] {
            continue;
        }
        let name = entry["Container"]["Name"].clone();
        let containers = changed["Containers"].as_array().unwrap();
        entry["Container"] = containers
            .iter()
            .find(|c| c["Name"] == name)
            .unwrap()
            .clone();
        *value = serde_json::to_vec(&entry).unwrap();
    }
    buckets
}

fn refusal(buckets: &Buckets) -> String {
    import(buckets, "takeover").unwrap_err().to_string()
}

#[test]
fn features_this_agent_does_not_run_are_refused_by_name() {
    let Some((buckets, _)) = fixture() else {
        return;
    };
    type Change = fn(&mut Value);
    let cases: Vec<(&str, Change, &str)> = vec![
        ("web", |t| t["NetworkMode"] = json!("awsvpc"), "awsvpc"),
        ("web", |t| t["ENI"] = json!([{"ec2Id": "eni-1"}]), "awsvpc"),
        (
            "web",
            |t| t["associations"] = json!([{"name": "gpu0"}]),
            "associations",
        ),
        ("web", |t| t["NvidiaRuntime"] = json!("nvidia"), "GPUs"),
        (
            "web",
            |t| t["AppMesh"] = json!({"ContainerName": "envoy"}),
            "App Mesh",
        ),
        (
            "pair",
            |t| t["ServiceConnectConfig"]["containerName"] = json!("app"),
            "Service Connect",
        ),
        (
            "web",
            |t| t["resources"]["ssmsecret"] = json!([{"x": 1}]),
            "\"ssmsecret\"",
        ),
        (
            "web",
            |t| {
                t["volumes"] =
                    json!([{"name": "shared", "type": "efs", "efsVolumeConfiguration": {}}])
            },
            "\"efs\"",
        ),
        (
            "web",
            |t| t["SomethingNew"] = json!("on"),
            "\"SomethingNew\"",
        ),
        (
            "web",
            |t| t["Containers"][0]["secrets"] = json!([{"name": "S", "valueFrom": "arn"}]),
            "secrets",
        ),
        (
            "web",
            |t| t["Containers"][0]["firelensConfiguration"] = json!({"type": "fluentbit"}),
            "FireLens",
        ),
        (
            "web",
            |t| t["Containers"][0]["environmentFiles"] = json!([{"value": "arn", "type": "s3"}]),
            "environment files",
        ),
        (
            "web",
            |t| t["Containers"][0]["GPUIDs"] = json!(["0"]),
            "GPUs",
        ),
        (
            "web",
            |t| t["Containers"][0]["managedAgents"] = json!([{"name": "ExecuteCommandAgent"}]),
            "ECS Exec",
        ),
        (
            "web",
            |t| t["Containers"][0]["IsInternal"] = json!("EMPTY_HOST_VOLUME"),
            "agent-internal",
        ),
        ("web", |t| t["KnownStatus"] = json!("BOGUS"), "\"BOGUS\""),
        (
            "web",
            |t| t["Containers"][0]["KnownStatus"] = json!(42),
            "not in a shape",
        ),
        (
            "pair",
            |t| t["Containers"][1]["dependsOn"][0]["condition"] = json!("SOMETIMES"),
            "\"SOMETIMES\"",
        ),
        (
            "web",
            |t| {
                t["Containers"][0]["KnownStatus"] = json!("MANIFEST_PULLED");
                t["Containers"][0]["registryAuthentication"] = json!({"type": "ecr"});
            },
            "registry authentication",
        ),
    ];
    for (family, change, expected) in cases {
        let why = refusal(&with_task(&buckets, family, change));
        assert!(why.contains(expected), "expected {expected:?} in: {why}");
    }
}

#[test]
fn new_members_without_a_value_and_pulled_private_images_are_accepted() {
    let Some((buckets, _)) = fixture() else {
        return;
    };
    let changed = with_task(&buckets, "web", |t| {
        t["SomethingNew"] = Value::Null;
        t["Containers"][0]["AlsoNew"] = json!({});
        // Already running: its image needs no credentials any more.
        t["Containers"][0]["registryAuthentication"] = json!({"type": "ecr"});
    });
    assert_eq!(import(&changed, "takeover").unwrap().seed.tasks.len(), 3);
}

#[test]
fn another_cluster_attachments_and_strange_buckets_are_refused() {
    let Some((buckets, _)) = fixture() else {
        return;
    };
    let why = import(&buckets, "default").unwrap_err().to_string();
    assert!(
        why.contains("\"takeover\"") && why.contains("ECS_CLUSTER=takeover"),
        "{why}"
    );

    let mut with_eni = buckets.clone();
    with_eni
        .get_mut("eniattachments")
        .unwrap()
        .insert(b"eni-1".to_vec(), b"{}".to_vec());
    assert!(refusal(&with_eni).contains("eniattachments"));

    let mut strange = buckets.clone();
    strange.insert("future".into(), BTreeMap::new());
    assert!(refusal(&strange).contains("\"future\""));

    let mut orphan = buckets.clone();
    let entry = orphan["containers"].values().next().unwrap().clone();
    let mut entry: Value = serde_json::from_slice(&entry).unwrap();
    entry["Container"]["taskARN"] = json!("arn:aws:ecs:us-east-1:000000000000:task/takeover/gone");
    orphan
        .get_mut("containers")
        .unwrap()
        .insert(b"gone-x".to_vec(), serde_json::to_vec(&entry).unwrap());
    assert!(refusal(&orphan).contains("does not hold"));

    let mut bad_meta = buckets.clone();
    bad_meta
        .get_mut("metadata")
        .unwrap()
        .insert(b"task-manifest-seq-num".to_vec(), b"\"many\"".to_vec());
    assert!(refusal(&bad_meta).contains("not a number"));
}

#[test]
fn a_change_the_go_agent_had_not_sent_stays_owed() {
    let Some((buckets, _)) = fixture() else {
        return;
    };
    let changed = with_task(&buckets, "web", |t| {
        t["SentStatus"] = json!("NONE");
        t["Containers"][0]["SentStatus"] = json!("NONE");
    });
    let mut imported = import(&changed, "takeover").unwrap();
    let web = imported
        .seed
        .tasks
        .iter_mut()
        .find(|t| t.spec.family == "web")
        .unwrap();
    let report = crate::engine::reconcile::take_report(web, false).unwrap();
    assert_eq!(report.status, "RUNNING");
    assert_eq!(report.containers[0].status, "RUNNING");
    // Once: the next pass owes nothing.
    assert!(crate::engine::reconcile::take_report(web, false).is_none());
}
