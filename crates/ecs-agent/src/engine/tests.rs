//! The engine task itself, against the in-memory Docker under tokio's
//! paused clock: message handling, ordering, timeouts, restarts, events out
//! of order, and Docker errors of every kind. Each test runs the real
//! engine, store and image manager; only the daemon is fake. The real
//! daemon is exercised by the e2e tests.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::status::{ContainerStatus, HealthStatus, TaskStatus};
use super::testing::*;
use super::{AcceptError, CLEANUP_RECHECK};
use crate::config::ImagePullBehavior;
use crate::docker::fake::{FakeDocker, Fault, Op, RunState};
use crate::store::Store;

#[tokio::test(start_paused = true)]
async fn a_task_runs_then_stops_with_each_report_once_and_in_order() {
    let agent = fresh().await;
    agent
        .engine
        .add_tasks(vec![one_container("t1")], Some(7), Instant::now())
        .await
        .unwrap();
    let running = agent.until_task("t1", TaskStatus::Running).await;
    let id = Agent::docker_id(&running, 0);
    let c = agent.docker.container(&id).unwrap();
    assert_eq!(c.state, RunState::Running);
    assert_eq!(c.labels["com.amazonaws.ecs.task-arn"], arn("t1"));
    assert_eq!(agent.store.latest_seq().await.unwrap(), 7);

    agent.engine.stop_tasks(vec![arn("t1")]).unwrap();
    agent.until_task("t1", TaskStatus::Stopped).await;
    assert_eq!(agent.statuses_reported("t1").await, ["RUNNING", "STOPPED"]);
    let stopped = agent.reports("t1").await.pop().unwrap();
    assert_eq!(
        stopped.containers[0].exit_code,
        Some(143),
        "SIGTERM ends it"
    );
    let order: Vec<Op> = agent
        .docker
        .calls()
        .into_iter()
        .map(|(op, _)| op)
        .filter(|op| matches!(op, Op::Create | Op::Start | Op::Stop))
        .collect();
    assert_eq!(order, [Op::Create, Op::Start, Op::Stop]);
}

#[tokio::test(start_paused = true)]
async fn depends_on_orders_the_containers() {
    let agent = fresh().await;
    agent
        .add(vec![task(
            "t2",
            serde_json::json!([
                {"name": "app", "essential": true,
                 "dependsOn": [{"containerName": "init", "condition": "SUCCESS"},
                               {"containerName": "db", "condition": "START"}]},
                {"name": "init", "essential": false},
                {"name": "db", "essential": false}
            ]),
        )])
        .await;
    // `init` and `db` start; `app` waits for `init` to succeed.
    let waiting = agent
        .until("init and db running", |tasks| {
            tasks[0].containers[1].known_status == ContainerStatus::Running
                && tasks[0].containers[2].known_status == ContainerStatus::Running
        })
        .await;
    agent.settle().await;
    assert_eq!(agent.docker.count(Op::Start), 2, "app waits");
    agent.docker.exit(&Agent::docker_id(&waiting[0], 1), 0);
    let running = agent.until_task("t2", TaskStatus::Running).await;
    assert_eq!(running.containers[0].known_status, ContainerStatus::Running);
    let starts: Vec<String> = agent
        .docker
        .calls()
        .into_iter()
        .filter(|(op, _)| *op == Op::Start)
        .map(|(_, id)| id)
        .collect();
    assert_eq!(starts.last(), running.containers[0].docker_id.as_ref());
}

#[tokio::test(start_paused = true)]
async fn a_failed_success_dependency_stops_the_task_without_starting_the_dependent() {
    let agent = fresh().await;
    agent
        .add(vec![task(
            "t3",
            serde_json::json!([
                {"name": "app", "essential": true,
                 "dependsOn": [{"containerName": "init", "condition": "SUCCESS"}]},
                {"name": "init", "essential": false}
            ]),
        )])
        .await;
    let tasks = agent
        .until("init running", |t| {
            t[0].containers[1].known_status == ContainerStatus::Running
        })
        .await;
    agent.docker.exit(&Agent::docker_id(&tasks[0], 1), 1);
    let stopped = agent.until_task("t3", TaskStatus::Stopped).await;
    let app = &stopped.containers[0];
    assert!(
        app.reason
            .as_deref()
            .is_some_and(|r| r.starts_with("CannotStartContainerError")),
        "{app:?}"
    );
    assert_eq!(agent.docker.count(Op::Start), 1, "app never started");
}

#[tokio::test(start_paused = true)]
async fn a_dependency_that_never_turns_healthy_times_out_after_start_timeout() {
    let agent = fresh().await;
    let began = Instant::now();
    agent
        .add(vec![waits_for_healthy_db(
            "t4",
            // The timeout is the dependency's: how long others wait for
            // it to reach their condition.
            serde_json::json!({"startTimeout": 120}),
        )])
        .await;
    let stopped = agent.until_task("t4", TaskStatus::Stopped).await;
    let waited = began.elapsed();
    assert!(
        waited >= Duration::from_secs(120) && waited < Duration::from_secs(140),
        "stopped after {waited:?}"
    );
    assert!(
        stopped.containers[0]
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("CannotStartContainerError")),
        "{:?}",
        stopped.containers[0]
    );
    assert_eq!(agent.docker.count(Op::Start), 1, "only db started");
}

#[tokio::test(start_paused = true)]
async fn a_healthy_dependency_lets_the_dependent_start() {
    let agent = fresh().await;
    agent
        .add(vec![waits_for_healthy_db("t5", serde_json::json!({}))])
        .await;
    let tasks = agent
        .until("db running", |t| {
            t[0].containers[1].known_status == ContainerStatus::Running
        })
        .await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(agent.docker.count(Op::Start), 1);
    agent
        .docker
        .set_health(&Agent::docker_id(&tasks[0], 1), HealthStatus::Healthy);
    let running = agent.until_task("t5", TaskStatus::Running).await;
    assert_eq!(running.containers[1].health, HealthStatus::Healthy);
}

#[tokio::test(start_paused = true)]
async fn docker_errors_become_the_reasons_the_backend_sees() {
    let agent = fresh().await;
    agent
        .docker
        .fail(Op::Create, Fault::Status(500, "driver failed programming"));
    agent.add(vec![one_container("create")]).await;
    let t = agent.until_task("create", TaskStatus::Stopped).await;
    assert_eq!(
        t.containers[0].reason.as_deref(),
        Some("CannotCreateContainerError: driver failed programming")
    );

    agent
        .docker
        .fail(Op::Start, Fault::Status(500, "OCI runtime create failed"));
    agent.add(vec![one_container("start")]).await;
    let t = agent.until_task("start", TaskStatus::Stopped).await;
    assert_eq!(
        t.containers[0].reason.as_deref(),
        Some("CannotStartContainerError: OCI runtime create failed")
    );
    assert_eq!(
        agent
            .statuses_reported("start")
            .await
            .last()
            .map(String::as_str),
        Some("STOPPED")
    );
}

#[tokio::test(start_paused = true)]
async fn a_create_that_never_answers_times_out() {
    let docker = FakeDocker::new();
    docker.add_image(IMAGE);
    docker.fail(Op::Create, Fault::Hang);
    let agent = start(
        docker,
        Store::in_memory().unwrap(),
        Options {
            create_timeout: Duration::from_secs(240),
            ..Options::default()
        },
    )
    .await;
    let began = Instant::now();
    agent.add(vec![one_container("hang")]).await;
    let t = agent.until_task("hang", TaskStatus::Stopped).await;
    assert!(began.elapsed() >= Duration::from_secs(240));
    assert!(
        t.containers[0]
            .reason
            .as_deref()
            .is_some_and(|r| r.starts_with("DockerTimeoutError")),
        "{:?}",
        t.containers[0].reason
    );
}

#[tokio::test(start_paused = true)]
async fn a_refused_stop_is_tried_again() {
    let agent = fresh().await;
    agent.add(vec![one_container("stop")]).await;
    agent.until_task("stop", TaskStatus::Running).await;
    agent
        .docker
        .fail(Op::Stop, Fault::Status(500, "cannot kill container"));
    agent.engine.stop_tasks(vec![arn("stop")]).unwrap();
    let t = agent.until_task("stop", TaskStatus::Stopped).await;
    assert_eq!(agent.docker.count(Op::Stop), 2);
    assert_eq!(t.containers[0].exit_code, Some(143));
    assert_eq!(
        agent.statuses_reported("stop").await,
        ["RUNNING", "STOPPED"]
    );
}

#[tokio::test(start_paused = true)]
async fn a_container_that_ignores_sigterm_is_killed_after_its_grace_period() {
    let agent = fresh().await;
    agent
        .add(vec![task(
            "kill",
            serde_json::json!([{"name": "app", "essential": true, "stopTimeout": 45}]),
        )])
        .await;
    let t = agent.until_task("kill", TaskStatus::Running).await;
    agent.docker.ignore_sigterm(&Agent::docker_id(&t, 0));
    let began = Instant::now();
    agent.engine.stop_tasks(vec![arn("kill")]).unwrap();
    let t = agent.until_task("kill", TaskStatus::Stopped).await;
    assert!(began.elapsed() >= Duration::from_secs(45));
    assert_eq!(t.containers[0].exit_code, Some(137));
}

#[tokio::test(start_paused = true)]
async fn events_out_of_order_duplicated_or_for_strangers_change_nothing_wrong() {
    let agent = fresh().await;
    let stranger = agent.docker.add_running_container("someone-else", &[]);
    agent.add(vec![one_container("events")]).await;
    let t = agent.until_task("events", TaskStatus::Running).await;
    let id = Agent::docker_id(&t, 0);
    // Exit, then a late `start` for the same container, a duplicate `die`,
    // and events for a container the agent does not manage.
    agent.docker.exit(&id, 3);
    agent.docker.replay_event(&id, "start");
    agent.docker.replay_event(&id, "die");
    agent.docker.replay_event(&stranger, "die");
    let t = agent.until_task("events", TaskStatus::Stopped).await;
    agent.settle().await;
    assert_eq!(t.containers[0].exit_code, Some(3));
    assert_eq!(
        agent.statuses_reported("events").await,
        ["RUNNING", "STOPPED"],
        "each status reported once"
    );
    assert_eq!(agent.docker.count(Op::Start), 1, "nothing restarted");
    let report = agent.reports("events").await.pop().unwrap();
    assert_eq!(report.containers[0].exit_code, Some(3));
}

#[tokio::test(start_paused = true)]
async fn an_exit_whose_event_was_lost_is_found_by_the_five_minute_reinspect() {
    let agent = fresh().await;
    agent.add(vec![one_container("lost")]).await;
    let t = agent.until_task("lost", TaskStatus::Running).await;
    let began = Instant::now();
    agent.docker.exit_silently(&Agent::docker_id(&t, 0), 9);
    tokio::time::sleep(Duration::from_secs(200)).await;
    let snapshot = agent.engine.snapshot().await.unwrap();
    assert_eq!(
        snapshot[0].known_status,
        TaskStatus::Running,
        "no event, no news"
    );
    let t = agent.until_task("lost", TaskStatus::Stopped).await;
    let waited = began.elapsed();
    assert!(waited <= Duration::from_secs(301), "found after {waited:?}");
    assert_eq!(t.containers[0].exit_code, Some(9));
}

#[tokio::test(start_paused = true)]
async fn an_oom_kill_is_reported_with_its_reason() {
    let agent = fresh().await;
    agent.add(vec![one_container("oom")]).await;
    let t = agent.until_task("oom", TaskStatus::Running).await;
    agent.docker.oom_kill(&Agent::docker_id(&t, 0));
    let t = agent.until_task("oom", TaskStatus::Stopped).await;
    assert_eq!(
        t.containers[0].reason.as_deref(),
        Some("OutOfMemoryError: Container killed due to memory usage")
    );
    assert_eq!(t.containers[0].exit_code, Some(137));
}

#[tokio::test(start_paused = true)]
async fn a_restart_policy_restarts_the_container_in_place() {
    let agent = fresh().await;
    agent
        .add(vec![task(
            "again",
            serde_json::json!([{"name": "app", "essential": true,
                    "restartPolicy": {"enabled": true, "ignoredExitCodes": [0],
                                      "restartAttemptPeriod": 60}}]),
        )])
        .await;
    let t = agent.until_task("again", TaskStatus::Running).await;
    let id = Agent::docker_id(&t, 0);
    // Too soon after the start: the policy does not restart it yet.
    tokio::time::sleep(Duration::from_secs(61)).await;
    agent.docker.exit(&id, 2);
    agent
        .until("restarted", |_| {
            agent.docker.container(&id).unwrap().start_count == 2
        })
        .await;
    let t = agent.until_task("again", TaskStatus::Running).await;
    assert_eq!(t.containers[0].restart_count, 1);
    assert_eq!(agent.docker.count(Op::Create), 1, "the same container");
    // An ignored exit code ends it.
    tokio::time::sleep(Duration::from_secs(61)).await;
    agent.docker.exit(&id, 0);
    agent.until_task("again", TaskStatus::Stopped).await;
    assert_eq!(agent.docker.container(&id).unwrap().start_count, 2);
}

#[tokio::test(start_paused = true)]
async fn a_missing_image_is_pulled_and_a_failed_pull_is_reported() {
    let docker = FakeDocker::new();
    docker.add_to_registry("registry.local/app:1");
    let agent = start(
        docker,
        Store::in_memory().unwrap(),
        Options {
            pull_behavior: ImagePullBehavior::Default,
            ..Options::default()
        },
    )
    .await;
    agent
        .add(vec![
            task(
                "pulled",
                serde_json::json!([{"name": "app", "essential": true,
                                        "image": "registry.local/app:1"}]),
            ),
            task(
                "unpullable",
                serde_json::json!([{"name": "app", "essential": true,
                                        "image": "registry.local/missing:1"}]),
            ),
        ])
        .await;
    agent.until_task("pulled", TaskStatus::Running).await;
    assert!(agent.docker.has_image("registry.local/app:1"));
    let failed = agent.until_task("unpullable", TaskStatus::Stopped).await;
    let reason = failed.containers[0].reason.clone().unwrap_or_default();
    assert!(reason.starts_with("CannotPullContainerError"), "{reason}");
    assert!(
        agent.docker.count(Op::Pull) >= 2,
        "the failed pull was tried (with retries)"
    );
    // The pull times span the retries: from the first attempt to the end.
    let stopped = agent.reports("unpullable").await.pop().unwrap();
    let (started, ended) = (
        stopped.pull_started_at_ms.unwrap(),
        stopped.pull_stopped_at_ms.unwrap(),
    );
    assert!(ended - started >= 1000, "{started} .. {ended}");
}

#[tokio::test(start_paused = true)]
async fn cleanup_waits_until_the_stopped_report_is_delivered() {
    let docker = FakeDocker::new();
    docker.add_image(IMAGE);
    let agent = start(
        docker,
        Store::in_memory().unwrap(),
        Options {
            cleanup_wait: Duration::from_secs(600),
            ..Options::default()
        },
    )
    .await;
    agent.add(vec![one_container("gc")]).await;
    let t = agent.until_task("gc", TaskStatus::Running).await;
    let id = Agent::docker_id(&t, 0);
    agent.engine.stop_tasks(vec![arn("gc")]).unwrap();
    agent.until_task("gc", TaskStatus::Stopped).await;
    // Well past the wait, but STOPPED is still in the outbox: kept. (Not a
    // whole number of rechecks, so that none falls due at the delivery.)
    tokio::time::sleep(Duration::from_secs(3615)).await;
    agent.settle().await;
    assert_eq!(agent.docker.count(Op::Remove), 0);
    assert_eq!(agent.engine.snapshot().await.unwrap().len(), 1);
    let delivered = Instant::now();
    agent.deliver_reports().await;
    agent
        .until("task forgotten", |tasks| tasks.is_empty())
        .await;
    // Woken by the delivery, not by the next periodic recheck: a report
    // queue slower than the cleanup wait must not keep containers longer.
    // (Paused time: the engine's own work takes none.)
    assert!(
        delivered.elapsed() < CLEANUP_RECHECK / 30,
        "cleaned up {:?} after the delivery",
        delivered.elapsed()
    );
    agent.settle().await;
    assert!(agent.docker.container(&id).is_none(), "container removed");
    assert!(agent.store.load_tasks().await.unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_restarted_engine_adopts_running_containers_and_reports_what_happened_meanwhile() {
    let docker = FakeDocker::new();
    docker.add_image(IMAGE);
    let store = Store::in_memory().unwrap();
    let first = start(docker.clone(), store.clone(), Options::default()).await;
    first
        .add(vec![
            one_container("stays"),
            one_container("exits"),
            one_container("goes"),
        ])
        .await;
    let tasks = first
        .until("all running", |t| {
            t.len() == 3 && t.iter().all(|t| t.known_status == TaskStatus::Running)
        })
        .await;
    first.engine.shutdown().await;
    first.task.await.unwrap();
    let id_of = |id: &str| {
        let t = tasks.iter().find(|t| t.arn() == arn(id)).unwrap();
        Agent::docker_id(t, 0)
    };
    // While the agent is down: one exits, one is removed by hand.
    docker.exit(&id_of("exits"), 4);
    docker.vanish(&id_of("goes"));
    let (creates, starts) = (docker.count(Op::Create), docker.count(Op::Start));

    let second = start(docker.clone(), store, Options::default()).await;
    let exited = second.until_task("exits", TaskStatus::Stopped).await;
    assert_eq!(exited.containers[0].exit_code, Some(4));
    let gone = second.until_task("goes", TaskStatus::Stopped).await;
    assert_eq!(
        gone.containers[0].reason.as_deref(),
        Some("ContainerVanishedError: No container matching saved ID found")
    );
    second.settle().await;
    let stays = second.until_task("stays", TaskStatus::Running).await;
    assert_eq!(Agent::docker_id(&stays, 0), id_of("stays"));
    assert_eq!(
        (docker.count(Op::Create), docker.count(Op::Start)),
        (creates, starts),
        "nothing created or started again"
    );
    assert_eq!(second.statuses_reported("stays").await, ["RUNNING"]);
    assert_eq!(
        second.statuses_reported("exits").await,
        ["RUNNING", "STOPPED"]
    );
}

#[tokio::test(start_paused = true)]
async fn a_docker_restart_is_waited_out_and_what_changed_is_found() {
    let agent = fresh().await;
    agent.add(vec![one_container("daemon")]).await;
    let t = agent.until_task("daemon", TaskStatus::Running).await;
    agent.docker.set_down(true);
    agent.docker.exit_silently(&Agent::docker_id(&t, 0), 137);
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(
        agent.engine.snapshot().await.unwrap()[0].known_status,
        TaskStatus::Running
    );
    let began = Instant::now();
    agent.docker.set_down(false);
    let t = agent.until_task("daemon", TaskStatus::Stopped).await;
    assert!(
        began.elapsed() < Duration::from_secs(60),
        "found at once, not at the five-minute re-check"
    );
    assert_eq!(t.containers[0].exit_code, Some(137));
}

#[tokio::test(start_paused = true)]
async fn a_task_waiting_on_a_dependency_does_not_write_again_and_again() {
    let agent = fresh().await;
    agent
        .add(vec![waits_for_healthy_db("idle", serde_json::json!({}))])
        .await;
    agent
        .until("db running", |t| {
            t[0].containers[1].known_status == ContainerStatus::Running
        })
        .await;
    agent.settle().await;
    let writes = agent.store.write_count();
    // A minute of re-checks, one a second.
    tokio::time::sleep(Duration::from_secs(60)).await;
    agent.settle().await;
    assert_eq!(agent.store.write_count(), writes);
}

#[tokio::test(start_paused = true)]
async fn a_payload_is_acked_only_once_it_is_saved() {
    let docker = FakeDocker::new();
    docker.add_image(IMAGE);
    let (store, disk) = Store::flaky().unwrap();
    let agent = start(docker, store, Options::default()).await;
    disk.fail_writes(true);
    let refused = agent
        .engine
        .add_tasks(vec![one_container("unsaved")], Some(3), Instant::now())
        .await;
    assert!(
        matches!(refused, Err(AcceptError::NotSaved(_))),
        "{refused:?}"
    );
    assert!(agent.store.health().last_error().is_some());
    let rejected = agent
        .engine
        .reject_task(arn("broken"), "UnrecogniedTaskError: bad".into())
        .await;
    assert!(matches!(rejected, Err(AcceptError::NotSaved(_))));
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        agent.docker.count(Op::Create),
        0,
        "no Docker work before the save"
    );

    disk.fail_writes(false);
    // The retry saves the task and starts it; ACS sends the payload again,
    // and this time it is acked.
    agent.until_task("unsaved", TaskStatus::Running).await;
    assert!(agent.store.health().last_error().is_none());
    agent
        .engine
        .add_tasks(vec![one_container("unsaved")], Some(3), Instant::now())
        .await
        .unwrap();
    assert_eq!(agent.store.latest_seq().await.unwrap(), 3);
    assert_eq!(agent.docker.count(Op::Create), 1);
    assert_eq!(agent.statuses_reported("unsaved").await, ["RUNNING"]);
    assert!(
        agent.reports("broken").await.is_empty(),
        "rejection waits for its resend"
    );
}

#[tokio::test(start_paused = true)]
async fn reports_lost_to_a_failed_save_are_queued_again() {
    let docker = FakeDocker::new();
    docker.add_image(IMAGE);
    let (store, disk) = Store::flaky().unwrap();
    let agent = start(docker, store, Options::default()).await;
    agent.add(vec![one_container("report")]).await;
    let t = agent.until_task("report", TaskStatus::Running).await;
    disk.fail_writes(true);
    agent.docker.exit(&Agent::docker_id(&t, 0), 5);
    // The exit is seen, but cannot be saved (nor read back) yet.
    agent.until_task("report", TaskStatus::Stopped).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(agent.store.health().last_error().is_some());
    disk.fail_writes(false);
    let deadline = Instant::now() + Duration::from_secs(60);
    while agent.statuses_reported("report").await.len() < 2 {
        assert!(Instant::now() < deadline, "STOPPED never queued");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        agent.statuses_reported("report").await,
        ["RUNNING", "STOPPED"]
    );
}

#[tokio::test(start_paused = true)]
async fn orphaned_containers_are_found_and_stopped_only_when_confirmed() {
    let docker = FakeDocker::new();
    docker.add_image(IMAGE);
    let lost = arn("lost-record");
    let orphan = docker.add_running_container(
        "ecs-fam-1-app-0123",
        &[
            ("com.amazonaws.ecs.task-arn", lost.as_str()),
            ("com.amazonaws.ecs.cluster", CLUSTER),
        ],
    );
    let other_cluster = docker.add_running_container(
        "ecs-other-1-app-4567",
        &[
            (
                "com.amazonaws.ecs.task-arn",
                "arn:aws:ecs:us-east-1:1:task/other/x",
            ),
            ("com.amazonaws.ecs.cluster", "other"),
        ],
    );
    let agent = start(
        docker.clone(),
        Store::in_memory().unwrap(),
        Options::default(),
    )
    .await;
    assert_eq!(
        agent.engine.orphaned_tasks().await.unwrap(),
        std::slice::from_ref(&lost)
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        docker.count(Op::Stop),
        0,
        "nothing stopped without the backend's word"
    );
    agent.engine.stop_tasks(vec![lost.clone()]).unwrap();
    agent
        .until("orphan stopped", |_| {
            docker.container(&orphan).unwrap().state == RunState::Exited
        })
        .await;
    assert!(agent.engine.orphaned_tasks().await.unwrap().is_empty());
    assert_eq!(
        docker.container(&other_cluster).unwrap().state,
        RunState::Running
    );
}

#[tokio::test(start_paused = true)]
async fn a_task_volume_is_created_before_its_container_and_removed_at_cleanup() {
    let docker = FakeDocker::new();
    docker.add_image(IMAGE);
    let agent = start(
        docker.clone(),
        Store::in_memory().unwrap(),
        Options {
            cleanup_wait: Duration::from_secs(60),
            ..Options::default()
        },
    )
    .await;
    let acs: ecs_model::acs::Task = serde_json::from_value(serde_json::json!({
        "arn": arn("vol"), "family": "fam", "version": "1", "desiredStatus": "RUNNING",
        "volumes": [{"name": "data", "type": "docker",
                     "dockerVolumeConfiguration": {"scope": "task", "driver": "local"}}],
        "containers": [{"name": "app", "image": IMAGE, "essential": true,
                        "mountPoints": [{"sourceVolume": "data", "containerPath": "/data"}]}]
    }))
    .unwrap();
    let incoming = crate::engine::task::IncomingTask::try_from(&acs).unwrap();
    agent.add(vec![incoming]).await;
    let t = agent.until_task("vol", TaskStatus::Running).await;
    let volume = t.volumes[0].docker_name.clone();
    assert!(docker.has_volume(&volume));
    let calls = docker.calls();
    let made = calls.iter().position(|(op, _)| *op == Op::CreateVolume);
    let created = calls.iter().position(|(op, _)| *op == Op::Create);
    assert!(made < created, "volume before container: {calls:?}");
    agent.engine.stop_tasks(vec![arn("vol")]).unwrap();
    agent.until_task("vol", TaskStatus::Stopped).await;
    agent.deliver_reports().await;
    agent
        .until("task forgotten", |tasks| tasks.is_empty())
        .await;
    agent.settle().await;
    assert!(
        !docker.has_volume(&volume),
        "task volume removed with the task"
    );
}

#[tokio::test(start_paused = true)]
async fn a_launch_of_a_cached_image_asks_docker_each_thing_once() {
    let agent = fresh().await;
    agent.add(vec![one_container("lean")]).await;
    agent.until_task("lean", TaskStatus::Running).await;
    let count = |op| agent.docker.count(op);
    // One image inspect, by the manifest step, whose answer the pull step
    // and the create reuse; the container is inspected once, after its
    // start, for its state.
    assert_eq!(
        (
            count(Op::InspectImage),
            count(Op::Create),
            count(Op::Start),
            count(Op::Inspect)
        ),
        (1, 1, 1, 1),
        "{:?}",
        agent.docker.calls()
    );
    // The stop's outcome is inspected once the container has exited; its
    // `stop` and `die` events add nothing.
    agent.engine.stop_tasks(vec![arn("lean")]).unwrap();
    agent.until_task("lean", TaskStatus::Stopped).await;
    agent.settle().await;
    assert_eq!(
        (count(Op::Stop), count(Op::Inspect)),
        (1, 2),
        "{:?}",
        agent.docker.calls()
    );
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_one_image_decides_its_pulls_with_one_inspect() {
    let docker = FakeDocker::new();
    docker.set_call_time(Op::InspectImage, Duration::from_millis(50));
    let (agent, _) = burst(&docker, 20).await;
    agent.until("all running", |t| running(t) == 20).await;
    assert_eq!(docker.count(Op::InspectImage), 1, "{:?}", docker.calls());
}

/// An engine on `docker` (which gets the image) given `n` one-container
/// tasks at once, with when they were given.
async fn burst(docker: &Arc<FakeDocker>, n: usize) -> (Agent, Instant) {
    docker.add_image(IMAGE);
    let agent = start(
        docker.clone(),
        Store::in_memory().unwrap(),
        Options::default(),
    )
    .await;
    let given = Instant::now();
    agent
        .add(
            (0..n)
                .map(|i| one_container(&format!("burst{i}")))
                .collect(),
        )
        .await;
    (agent, given)
}

fn running(tasks: &[super::task::Task]) -> usize {
    tasks
        .iter()
        .filter(|t| t.known_status == TaskStatus::Running)
        .count()
}

#[tokio::test(start_paused = true)]
async fn a_create_that_finds_its_name_taken_adopts_that_container() {
    let docker = FakeDocker::new();
    docker.add_image(IMAGE);
    let settings = std::sync::Arc::new(
        action_settings(&docker, &Store::in_memory().unwrap(), &Options::default()).await,
    );
    let mut task = super::task::Task::new(one_container("taken"), 0);
    let name = super::create_config::docker_name(&task, "app");
    task.containers[0].docker_name = Some(name.clone());
    // Created by an earlier attempt whose answer was lost.
    let existing = docker.add_running_container(&name, &[]);
    let api: std::sync::Arc<dyn crate::docker::DockerApi> = docker.clone();
    let work = super::actions::Work::Create {
        task: Box::new(task),
        index: 0,
    };
    match super::actions::run(&api, &settings, work).await {
        super::reconcile::Outcome::Created { docker_id } => assert_eq!(docker_id, existing),
        other => panic!("{other:?}"),
    }
    assert_eq!(docker.count(Op::Create), 1, "the refused create only");
}

#[tokio::test(start_paused = true)]
async fn a_burst_keeps_at_most_the_docker_slots_creating_and_starting() {
    let docker = FakeDocker::new();
    docker.set_call_time(Op::Create, Duration::from_secs(1));
    docker.set_call_time(Op::Start, Duration::from_secs(1));
    let (agent, _) = burst(&docker, 30).await;
    agent.until("all running", |t| running(t) == 30).await;
    let slots = super::slots::DOCKER_SLOTS;
    // Creates and starts share the slots, so each stays within them, and
    // the burst does fill them.
    let (creates, starts) = (
        docker.max_in_flight(Op::Create),
        docker.max_in_flight(Op::Start),
    );
    assert!(creates <= slots && starts <= slots, "{creates} {starts}");
    assert_eq!(creates.max(starts), slots);
}

/// 30 tasks, creates and starts of 1 s each, 10 slots: with starts
/// served first, the first ten start as soon as the second ten are created
/// and run at 3 s; served in arrival order, they would wait behind all 30
/// creates and run at 4 s. The whole burst takes 6 s either way.
#[tokio::test(start_paused = true)]
async fn a_burst_starts_created_containers_before_creating_more() {
    let docker = FakeDocker::new();
    docker.set_call_time(Op::Create, Duration::from_secs(1));
    docker.set_call_time(Op::Start, Duration::from_secs(1));
    let (agent, began) = burst(&docker, 30).await;
    agent.until("ten running", |t| running(t) >= 10).await;
    let first = began.elapsed();
    assert!(
        first < Duration::from_millis(3500),
        "first ten at {first:?}"
    );
    assert!(
        docker.count(Op::Create) < 30,
        "the last creates wait for the starts"
    );
    agent.until("all running", |t| running(t) == 30).await;
    assert!(began.elapsed() < Duration::from_millis(6500));
}

/// 20 tasks, creates, starts and inspects of 1 s each, 10 slots: the
/// inspect after a start needs no slot, so the second ten are created
/// while the first ten are inspected, and all run at 5 s; an inspect that
/// kept its start's slot would hold the second ten back until 6 s.
#[tokio::test(start_paused = true)]
async fn the_inspect_after_a_start_leaves_its_slot_to_the_next_create() {
    let docker = FakeDocker::new();
    for op in [Op::Create, Op::Start, Op::Inspect] {
        docker.set_call_time(op, Duration::from_secs(1));
    }
    let (agent, began) = burst(&docker, 20).await;
    agent.until("all running", |t| running(t) == 20).await;
    let took = began.elapsed();
    assert!(
        took < Duration::from_millis(5500),
        "all running at {took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_task_runs_in_its_own_cgroup_with_its_limits_until_cleanup() {
    let root = tempfile::tempdir().unwrap();
    for c in ["cpu", "memory"] {
        std::fs::create_dir(root.path().join(c)).unwrap();
    }
    let cgroups = Arc::new(crate::task_cgroup::TaskCgroups::new(
        root.path(),
        100_000,
        None,
    ));
    let docker = FakeDocker::new();
    docker.add_image(IMAGE);
    let agent = start(
        docker,
        Store::in_memory().unwrap(),
        Options {
            cleanup_wait: Duration::from_secs(60),
            task_cgroups: Some(cgroups),
            ..Options::default()
        },
    )
    .await;
    let mut limited = one_container("lim");
    limited.spec.cpu = 0.5;
    limited.spec.memory_mib = 64;
    let mut over = one_container("over");
    over.spec.memory_mib = 64;
    over.spec.containers[0].memory_mib = 128;
    agent.add(vec![limited, over]).await;
    let t = agent.until_task("lim", TaskStatus::Running).await;
    let body = agent
        .docker
        .container(&Agent::docker_id(&t, 0))
        .unwrap()
        .body;
    assert_eq!(body["HostConfig"]["CgroupParent"], "/ecs/lim");
    let read = |p: &str| std::fs::read_to_string(root.path().join(p)).unwrap();
    assert_eq!(read("cpu/ecs/lim/cpu.cfs_quota_us"), "50000");
    assert_eq!(
        read("memory/ecs/lim/memory.limit_in_bytes"),
        (64u64 << 20).to_string()
    );

    // A container asking for more memory than its task: never created.
    let over = agent.until_task("over", TaskStatus::Stopped).await;
    assert!(
        over.containers[0]
            .reason
            .as_deref()
            .unwrap_or_default()
            .starts_with("TaskCgroupError: container memory limit (128 MiB) greater than task"),
        "{:?}",
        over.containers[0].reason
    );
    assert!(over.containers[0].docker_id.is_none());

    // Cleanup removes the cgroup after the containers. (The limit files
    // are the kernel's in a real cgroup; here they must go first.)
    agent.engine.stop_tasks(vec![arn("lim")]).unwrap();
    agent.until_task("lim", TaskStatus::Stopped).await;
    std::fs::remove_file(root.path().join("cpu/ecs/lim/cpu.cfs_quota_us")).unwrap();
    std::fs::remove_file(root.path().join("cpu/ecs/lim/cpu.cfs_period_us")).unwrap();
    std::fs::remove_file(root.path().join("memory/ecs/lim/memory.limit_in_bytes")).unwrap();
    agent.deliver_reports().await;
    tokio::time::sleep(Duration::from_secs(120)).await;
    agent.deliver_reports().await;
    agent
        .until("both forgotten", |tasks| tasks.is_empty())
        .await;
    agent.settle().await;
    assert!(!root.path().join("cpu/ecs/lim").exists());
    assert!(!root.path().join("memory/ecs/lim").exists());
}

/// A task whose container takes one SSM secret; with the execution role's
/// credentials in the payload when `role` is set.
fn task_with_secret(id: &str, role: bool) -> super::task::IncomingTask {
    let mut t = serde_json::json!({
        "arn": arn(id), "family": "fam", "version": "1", "desiredStatus": "RUNNING",
        "containers": [{"name": "app", "essential": true, "image": IMAGE,
            "secrets": [{"name": "DB", "valueFrom": "/app/db", "provider": "ssm",
                "type": "ENVIRONMENT_VARIABLE", "target": "CONTAINER"}]}]
    });
    if role {
        t["executionRoleCredentials"] = serde_json::json!({"credentialsId": "exec-1"});
    }
    let acs: ecs_model::acs::Task = serde_json::from_value(t).unwrap();
    super::task::IncomingTask::try_from(&acs).unwrap()
}

fn execution_role() -> crate::credentials::RoleCredentials {
    crate::credentials::RoleCredentials {
        role_arn: "arn:aws:iam::123456789012:role/exec".into(),
        access_key_id: "AKIDEXAMPLE".into(),
        secret_access_key: "secret".into(),
        session_token: "token".into(),
        expiration: String::new(),
    }
}

#[tokio::test(start_paused = true)]
async fn a_task_whose_secrets_cannot_be_fetched_stops_before_any_container_is_created() {
    let options = Options::default();
    options.credentials.set(
        "exec-1",
        &arn("s1"),
        crate::credentials::RoleType::TaskExecution,
        execution_role(),
    );
    let docker = FakeDocker::new();
    docker.add_image(IMAGE);
    // The test engine's AWS endpoint is a closed port: the fetch fails.
    let agent = start(docker, Store::in_memory().unwrap(), options).await;
    agent.add(vec![task_with_secret("s1", true)]).await;
    let stopped = agent.until_task("s1", TaskStatus::Stopped).await;
    let reason = stopped.terminal_reason.clone().unwrap_or_default();
    assert!(
        reason.starts_with(
            "ResourceInitializationError: unable to pull secrets or registry auth: execution resource retrieval failed: fetching secret data from SSM Parameter Store in us-east-1:"
        ),
        "{reason}"
    );
    assert_eq!(agent.docker.count(Op::Create), 0);
    let reported = agent.reports("s1").await.pop().unwrap();
    assert_eq!(reported.status, "STOPPED");
    assert_eq!(reported.reason, reason);
}

#[tokio::test(start_paused = true)]
async fn secrets_without_execution_role_credentials_stop_the_task() {
    let agent = fresh().await;
    agent.add(vec![task_with_secret("s2", false)]).await;
    let stopped = agent.until_task("s2", TaskStatus::Stopped).await;
    assert_eq!(
        stopped.terminal_reason.as_deref(),
        Some("ResourceInitializationError: unable to pull secrets or registry auth: execution resource retrieval failed: unable to find execution role credentials")
    );
    assert_eq!(agent.docker.count(Op::Create), 0);
}

#[tokio::test(start_paused = true)]
async fn after_a_restart_secrets_wait_for_acs_to_resend_the_credentials() {
    // Known from the checkpoint but not yet re-sent: the fetch waits for
    // them instead of failing at once, then gives up.
    let options = Options::default();
    options.credentials.expect(
        "exec-1",
        &arn("s3"),
        crate::credentials::RoleType::TaskExecution,
    );
    let docker = FakeDocker::new();
    docker.add_image(IMAGE);
    let agent = start(docker, Store::in_memory().unwrap(), options).await;
    let added = Instant::now();
    agent.add(vec![task_with_secret("s3", true)]).await;
    let stopped = agent.until_task("s3", TaskStatus::Stopped).await;
    assert!(Instant::now() - added >= Duration::from_secs(59));
    assert!(stopped
        .terminal_reason
        .unwrap_or_default()
        .ends_with("unable to find execution role credentials"));
}
