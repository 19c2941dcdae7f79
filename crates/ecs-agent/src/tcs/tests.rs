//! Unit tests of the TCS session's pure parts: the URL.
#![allow(clippy::unwrap_used)]

use super::*;

const INSTANCE: &str =
    "arn:aws:ecs:us-east-1:123456789012:container-instance/default/701bbc45062742f4a14a0c8f8f3a5e0d";

/// The query, sorted and form-encoded, with the bare Docker version.
#[test]
fn url_matches_the_go_agent() {
    let url = tcs_url(
        "http://127.0.0.1:5102/",
        "default",
        INSTANCE,
        "1.105.1",
        "a8b3e7d3",
        Some("20.10.24+dfsg1"),
    )
    .unwrap();
    assert_eq!(
        url.as_str(),
        "http://127.0.0.1:5102/ws?agentHash=a8b3e7d3&agentVersion=1.105.1&cluster=default&containerInstance=arn%3Aaws%3Aecs%3Aus-east-1%3A123456789012%3Acontainer-instance%2Fdefault%2F701bbc45062742f4a14a0c8f8f3a5e0d&dockerVersion=20.10.24%2Bdfsg1"
    );
    // No Docker version known: the parameter is left out.
    let bare = tcs_url("http://h:1", "c", "i", "v", "h", None).unwrap();
    assert_eq!(
        bare.as_str(),
        "http://h:1/ws?agentHash=h&agentVersion=v&cluster=c&containerInstance=i"
    );
    assert!(tcs_url("http://h:1", "c", "i", "v", "h", Some(""))
        .unwrap()
        .query()
        .is_some_and(|q| !q.contains("dockerVersion")));
}

/// Byte for byte the request target of the recorded upgrade, parameters in
/// the same order.
#[test]
fn url_matches_the_recorded_upgrade() {
    let Some(dir) = ecs_model::spec::require_or_skip("recorded TCS upgrade URL") else {
        return;
    };
    for file in [
        "tcs-upgrade.request.txt",
        "tcs-upgrade.session-token.request.txt",
    ] {
        let raw = std::fs::read(dir.join("samples").join(file)).unwrap();
        let text = String::from_utf8(raw).unwrap();
        let target = text
            .split("\r\n")
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap();
        let url = tcs_url(
            "http://127.0.0.1:5102/",
            "default",
            INSTANCE,
            "1.105.1",
            "a8b3e7d3",
            Some("20.10.24+dfsg1"),
        )
        .unwrap();
        let ours = format!("{}?{}", url.path(), url.query().unwrap());
        assert_eq!(ours, target, "{file}");
    }
}

#[test]
fn timestamps_are_seconds_with_millisecond_fractions() {
    assert_eq!(tcs_time(1_795_810_656_758), 1_795_810_656.758);
    let json = serde_json::to_string(&ecs_model::tcs::PublishMetricsRequest {
        timestamp: Some(tcs_time(1_795_810_636_758)),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(json, r#"{"timestamp":1795810636.758}"#);
}

#[test]
fn only_heartbeats_and_acks_keep_the_connection_alive() {
    assert!(keeps_alive(
        r#"{"type":"HeartbeatMessage","message":{"healthy":true}}"#
    ));
    assert!(keeps_alive(
        r#"{"type":"AckPublishMetric","message":{"message":"ok"}}"#
    ));
    assert!(keeps_alive(r#"{"type":"AckPublishHealth","message":{}}"#));
    assert!(keeps_alive(
        r#"{"type":"AckPublishInstanceStatus","message":{}}"#
    ));
    assert!(!keeps_alive(
        r#"{"type":"ServerException","message":{"message":"x"}}"#
    ));
    assert!(!keeps_alive(
        r#"{"type":"StopTelemetrySessionMessage","message":{}}"#
    ));
    assert!(!keeps_alive(r#"{"type":"Nope","message":{}}"#));
    assert!(!keeps_alive("garbage"));
}

/// A host whose discovery always fails, recording when it was asked.
struct Unreachable {
    asked: std::sync::Mutex<Vec<tokio::time::Instant>>,
}

impl TcsHost for Unreachable {
    fn telemetry_endpoint(&self) -> BoxFuture<'_, Result<String, TcsError>> {
        Box::pin(async move {
            self.asked.lock().unwrap().push(tokio::time::Instant::now());
            Err(TcsError::NoEndpoint)
        })
    }

    fn tasks(&self) -> BoxFuture<'_, Option<Vec<Task>>> {
        Box::pin(async { Some(Vec::new()) })
    }

    fn runtime_responds(&self) -> BoxFuture<'_, bool> {
        Box::pin(async { true })
    }
}

fn context(host: Arc<dyn TcsHost>) -> TcsContext {
    TcsContext {
        host,
        credentials: SharedCredentialsProvider::new(aws_credential_types::Credentials::new(
            "AKID", "secret", None, None, "test",
        )),
        region: "us-east-1".into(),
        cluster: "default".into(),
        instance_arn: INSTANCE.into(),
        agent_version: "1.105.1".into(),
        agent_hash: "a8b3e7d3".into(),
        docker_version: None,
        accept_insecure_cert: false,
        disable_metrics: false,
        acs_heartbeats: Arc::new(Notify::new()),
        settings: TcsSettings::default(),
    }
}

/// While TCS is down the queue keeps 15 ticks; later ticks wait 1 s for
/// room and are dropped, and the publisher keeps ticking.
#[tokio::test(start_paused = true)]
async fn full_queue_keeps_fifteen_ticks_and_drops_the_rest() {
    let ctx = context(Arc::new(Unreachable {
        asked: Default::default(),
    }));
    let (tx, mut rx) = mpsc::channel(ctx.settings.queue_capacity);
    let publisher = publish::publish_loop(&ctx, tx);
    tokio::pin!(publisher);
    // 30 ticks (one at once, then every 20 s) with nobody reading.
    let _ = tokio::time::timeout(Duration::from_secs(29 * 20 + 10), &mut publisher).await;
    let mut queued = Vec::new();
    while let Ok(c) = rx.try_recv() {
        queued.push(c);
    }
    assert_eq!(queued.len(), 15);
    // Each kept tick is its own collection.
    let ids: std::collections::BTreeSet<String> = queued
        .iter()
        .map(|c| c.metrics[0].metadata.clone().unwrap().message_id.unwrap())
        .collect();
    assert_eq!(ids.len(), 15);
    // Not stuck: the next tick is queued again.
    let _ = tokio::time::timeout(Duration::from_secs(20), &mut publisher).await;
    assert!(rx.try_recv().is_ok());
}

/// Failed attempts back off 1 s, doubling, capped at 60 s, with at most
/// 20 % added (docs/protocols.md §5.4).
#[tokio::test(start_paused = true)]
async fn failed_connections_back_off_from_one_second_to_a_minute() {
    let host = Arc::new(Unreachable {
        asked: Default::default(),
    });
    let ctx = Arc::new(context(host.clone()));
    let (_stop, stop_rx) = watch::channel(false);
    let _ = tokio::time::timeout(Duration::from_secs(300), run(ctx, stop_rx)).await;
    let asked = host.asked.lock().unwrap().clone();
    let gaps: Vec<Duration> = asked.windows(2).map(|w| w[1] - w[0]).collect();
    let bases = [1, 2, 4, 8, 16, 32, 60, 60];
    assert!(gaps.len() >= bases.len(), "{gaps:?}");
    for (gap, base) in gaps.iter().zip(bases) {
        let base = Duration::from_secs(base);
        assert!(
            *gap >= base && *gap <= base.mul_f64(1.2),
            "gap {gap:?} outside {base:?} + 20 %: {gaps:?}"
        );
    }
}

/// Shutdown ends the whole session promptly.
#[tokio::test(start_paused = true)]
async fn shutdown_ends_the_session() {
    let ctx = Arc::new(context(Arc::new(Unreachable {
        asked: Default::default(),
    })));
    let (stop, stop_rx) = watch::channel(false);
    let session = tokio::spawn(run(ctx, stop_rx));
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_millis(10), session)
        .await
        .unwrap()
        .unwrap();
}
