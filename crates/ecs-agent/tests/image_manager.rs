//! The image manager against the real Docker engine: it records which
//! containers use which image, keeps that across a restart, and a cleanup
//! cycle removes exactly the images no container uses, least recently used
//! first, never while a pull holds the lock. Every image here is a
//! throwaway copy of the test image made by `docker commit`, so it has an
//! ID of its own and removing it touches nothing else.
#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use ecs_agent::config::ImagePullBehavior;
use ecs_agent::docker::{DockerApi, DockerClient};
use ecs_agent::images::{
    CleanupSettings, ContainerRef, EngineAuth, ImageManager, ImageSettings, PullError,
};
use ecs_agent::store::Store;

const TEST_IMAGE: &str = "ecs-test/busybox:latest";

async fn docker() -> DockerClient {
    let client = DockerClient::connect("unix:///var/run/docker.sock")
        .await
        .unwrap_or_else(|e| panic!("Docker is required for these tests (run scripts/setup): {e}"));
    assert!(
        client.inspect_image(TEST_IMAGE).await.unwrap().is_some(),
        "the test image {TEST_IMAGE} is missing (run scripts/setup)"
    );
    client
}

fn docker_cli(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Throwaway images, each with an ID of its own; whatever is left of them
/// is removed when dropped.
struct Throwaways {
    names: Vec<String>,
}

impl Throwaways {
    fn new() -> Self {
        Self { names: Vec::new() }
    }

    /// A new image `<repo>:<tag>` (unique to this process and test).
    fn make(&mut self, test: &str, label: &str) -> String {
        let name = format!("ecs-integ-images/{test}-{label}:{}", std::process::id());
        self.make_named(&name)
    }

    fn make_named(&mut self, name: &str) -> String {
        let container = docker_cli(&["create", TEST_IMAGE, "true"]);
        docker_cli(&[
            "commit",
            "--change",
            &format!("LABEL ecs.integ.image={name}"),
            &container,
            name,
        ]);
        docker_cli(&["rm", &container]);
        self.names.push(name.to_string());
        name.to_string()
    }
}

impl Drop for Throwaways {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = Command::new("docker").args(["rmi", name]).output();
        }
    }
}

fn settings(minimum_age: Duration, per_cycle: usize, exclusions: &[&str]) -> ImageSettings {
    ImageSettings {
        pull_behavior: ImagePullBehavior::Default,
        pull_timeout: Duration::from_secs(60),
        pull_inactivity_timeout: Duration::from_secs(60),
        cleanup: Some(CleanupSettings {
            interval: Duration::from_secs(3600),
            minimum_age,
            images_per_cycle: per_cycle,
            exclusions: exclusions.iter().map(|e| e.to_string()).collect(),
        }),
    }
}

async fn manager(store: Store, settings: ImageSettings) -> ImageManager {
    ImageManager::new(
        Arc::new(docker().await),
        store,
        settings,
        EngineAuth::default(),
    )
    .await
    .unwrap()
}

fn user(task: &str, name: &str) -> ContainerRef {
    ContainerRef::new(&format!("arn:aws:ecs:us-east-1:1:task/integ/{task}"), name)
}

async fn present(docker: &DockerClient, image: &str) -> bool {
    docker.inspect_image(image).await.unwrap().is_some()
}

/// Lets the clock move past the images' pull times, so a minimum age of
/// zero counts them as old enough.
async fn tick() {
    tokio::time::sleep(Duration::from_millis(20)).await;
}

#[tokio::test]
async fn cleanup_removes_unused_images_least_recently_used_first() {
    let docker = docker().await;
    let mut images = Throwaways::new();
    let used = images.make("lru", "used");
    let first = images.make("lru", "first");
    let second = images.make("lru", "second");
    let excluded = images.make("lru", "excluded");
    let store = Store::in_memory().unwrap();
    let m = manager(store.clone(), settings(Duration::ZERO, 1, &[&excluded])).await;
    for (image, task) in [
        (&used, "t1"),
        (&first, "t2"),
        (&second, "t3"),
        (&excluded, "t4"),
    ] {
        assert!(m
            .record_reference(image, &user(task, "c"), true)
            .await
            .unwrap());
    }
    // Task cleanup order sets the last-used order: `first` is the oldest.
    for task in ["t2", "t3", "t4"] {
        tick().await;
        m.remove_reference(&user(task, "c")).await;
    }
    tick().await;

    let report = m.cleanup_once().await;
    assert_eq!(report.removed, vec![first.clone()], "one image per cycle");
    assert!(!present(&docker, &first).await);
    assert!(present(&docker, &second).await);
    let report = m.cleanup_once().await;
    assert_eq!(report.removed, vec![second.clone()]);
    assert!(!present(&docker, &second).await);
    let report = m.cleanup_once().await;
    assert!(
        report.removed.is_empty() && report.failed.is_empty(),
        "{report:?}"
    );

    assert!(present(&docker, &used).await, "an image in use stays");
    assert!(present(&docker, &excluded).await, "an excluded image stays");
    assert!(present(&docker, TEST_IMAGE).await);
    let mut tracked: Vec<String> = m.tracked().into_iter().flat_map(|(r, _)| r.names).collect();
    tracked.sort();
    let mut expected = vec![used.clone(), excluded.clone()];
    expected.sort();
    assert_eq!(tracked, expected);
    // The saved states match: removed images are deleted from the store.
    let saved = store.load_images().await.unwrap();
    let mut saved: Vec<String> = saved.into_iter().flat_map(|r| r.names).collect();
    saved.sort();
    assert_eq!(saved, expected);
}

#[tokio::test]
async fn fresh_images_stay_until_the_minimum_age() {
    let docker = docker().await;
    let mut images = Throwaways::new();
    let fresh = images.make("fresh", "a");
    let m = manager(
        Store::in_memory().unwrap(),
        settings(Duration::from_secs(3600), 5, &[]),
    )
    .await;
    m.record_reference(&fresh, &user("t", "c"), true)
        .await
        .unwrap();
    m.remove_reference(&user("t", "c")).await;
    tick().await;
    assert_eq!(m.cleanup_once().await.removed, Vec::<String>::new());
    assert!(present(&docker, &fresh).await);
}

#[tokio::test]
async fn cleanup_waits_for_running_pulls() {
    let docker = docker().await;
    let mut images = Throwaways::new();
    let image = images.make("lock", "a");
    let m = manager(
        Store::in_memory().unwrap(),
        settings(Duration::ZERO, 5, &[]),
    )
    .await;
    m.record_reference(&image, &user("t", "c"), true)
        .await
        .unwrap();
    m.remove_reference(&user("t", "c")).await;
    tick().await;

    let permit = m.pull_permit().await;
    let cleanup = tokio::spawn({
        let m = m.clone();
        async move { m.cleanup_once().await }
    });
    // Half a second for a cleanup that did not wait to remove the image:
    // this can pass wrongly, never fail wrongly.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!cleanup.is_finished(), "cleanup must wait for the pull");
    assert!(present(&docker, &image).await);
    drop(permit);
    let report = tokio::time::timeout(Duration::from_secs(30), cleanup)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.removed, vec![image.clone()]);
    assert!(!present(&docker, &image).await);
}

#[tokio::test]
async fn periodic_cleanup_runs_on_its_interval() {
    let docker = docker().await;
    let mut images = Throwaways::new();
    let image = images.make("periodic", "a");
    let mut s = settings(Duration::ZERO, 5, &[]);
    if let Some(c) = s.cleanup.as_mut() {
        c.interval = Duration::from_secs(1);
    }
    let m = manager(Store::in_memory().unwrap(), s).await;
    m.record_reference(&image, &user("t", "c"), true)
        .await
        .unwrap();
    let cycles = m.spawn_periodic_cleanup().unwrap();
    // In use: several cycles pass and the image stays (a check that can
    // pass wrongly, if the cycles were slower, but never fail wrongly).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(present(&docker, &image).await);
    m.remove_reference(&user("t", "c")).await;
    let mut gone = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if !present(&docker, &image).await {
            gone = true;
            break;
        }
    }
    cycles.abort();
    assert!(gone, "the next cycle removes the unused image");

    let mut off = settings(Duration::ZERO, 5, &[]);
    off.cleanup = None;
    let m = manager(Store::in_memory().unwrap(), off).await;
    assert!(m.spawn_periodic_cleanup().is_none());
}

#[tokio::test]
async fn image_states_survive_a_restart_and_references_come_back_from_tasks() {
    let docker = docker().await;
    let mut images = Throwaways::new();
    let image = images.make("restart", "a");
    let dir = tempfile::tempdir().unwrap();
    let mut once = settings(Duration::ZERO, 5, &[]);
    once.pull_behavior = ImagePullBehavior::Once;
    {
        let m = manager(Store::open(dir.path()).unwrap(), once.clone()).await;
        m.record_reference(&image, &user("t", "c"), true)
            .await
            .unwrap();
        assert!(!m.pull_required(&image).await, "once: pulled already");
    }
    let m = manager(Store::open(dir.path()).unwrap(), once).await;
    let tracked = m.tracked();
    assert_eq!(tracked.len(), 1);
    assert_eq!(tracked[0].0.names, vec![image.clone()]);
    assert!(tracked[0].0.pull_succeeded);
    assert!(tracked[0].1.is_empty(), "references are not saved");
    assert!(!m.pull_required(&image).await, "once: the record survives");
    assert!(m.pull_required("ecs-integ-images/never-pulled:1").await);

    // The engine hands over its tasks' containers at start-up.
    m.restore_references(vec![(image.clone(), user("t", "c"))])
        .await;
    tick().await;
    assert!(m.cleanup_once().await.removed.is_empty());
    assert!(present(&docker, &image).await);
    m.remove_reference(&user("t", "c")).await;
    tick().await;
    assert_eq!(m.cleanup_once().await.removed, vec![image.clone()]);
    assert!(m.tracked().is_empty());
}

#[tokio::test]
async fn a_failed_pull_times_out_overall_and_still_records_the_cached_image() {
    let docker = docker().await;
    let mut images = Throwaways::new();
    // A registry that refuses connections, on loopback: every attempt
    // fails at once, and the overall timeout ends the retries.
    let image = images.make_named(&format!(
        "127.0.0.1:1/ecs-integ-images/cached:{}",
        std::process::id()
    ));
    let mut s = settings(Duration::ZERO, 5, &[]);
    s.pull_timeout = Duration::from_secs(3);
    let m = manager(Store::in_memory().unwrap(), s).await;
    let started = std::time::Instant::now();
    let err = m
        .pull_for(&image, &user("t", "c"), None, async { Ok(None) })
        .await
        .unwrap_err()
        .error;
    assert_eq!(err, PullError::Timeout(Duration::from_secs(3)));
    assert_eq!(
        err.to_string(),
        "DockerTimeoutError: Could not transition to pulled; timed out after waiting 3s"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    let tracked = m.tracked();
    assert_eq!(tracked.len(), 1);
    assert_eq!(tracked[0].0.names, vec![image.clone()]);
    assert!(!tracked[0].0.pull_succeeded);
    assert_eq!(tracked[0].1, [user("t", "c")]);
    assert!(present(&docker, &image).await);
}

#[tokio::test]
async fn prefer_cached_and_once_skip_the_pull_but_record_the_user() {
    let mut images = Throwaways::new();
    // Pulling this would fail: any pull shows up as an error.
    let image = images.make_named(&format!(
        "127.0.0.1:1/ecs-integ-images/skip:{}",
        std::process::id()
    ));
    let mut s = settings(Duration::ZERO, 5, &[]);
    s.pull_behavior = ImagePullBehavior::PreferCached;
    let m = manager(Store::in_memory().unwrap(), s.clone()).await;
    let ready = m
        .pull_for(&image, &user("t", "c"), None, async { Ok(None) })
        .await
        .unwrap();
    assert_eq!(ready.pull_started_ms, None);
    let local = ready.image.unwrap();
    // What a step before found is used, not asked again.
    let decision = m.pull_decision(&image, Some(local.clone())).await;
    assert!(!decision.required);
    assert_eq!(decision.local.as_ref(), Some(&local));
    assert_eq!(m.tracked()[0].1, [user("t", "c")]);

    s.pull_behavior = ImagePullBehavior::Once;
    s.pull_timeout = Duration::from_secs(2);
    let m = manager(Store::in_memory().unwrap(), s).await;
    // Never pulled: `once` pulls (and fails here), even with a local copy,
    // and a pull makes what was known out of date.
    let decision = m.pull_decision(&image, Some(local)).await;
    assert_eq!((decision.required, decision.local), (true, None));
    assert!(m
        .pull_for(&image, &user("t", "c"), None, async { Ok(None) })
        .await
        .is_err());
}
