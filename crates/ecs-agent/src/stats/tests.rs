#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::mpsc;

use super::*;

/// A fake Docker: each open hands the test the sending end of that feed.
struct Source {
    opened: Arc<AtomicUsize>,
    feeds: mpsc::UnboundedReceiver<(String, mpsc::UnboundedSender<Result<Value, DockerError>>)>,
}

fn board() -> (Arc<StatsBoard>, Source) {
    let opened = Arc::new(AtomicUsize::new(0));
    let (tx, feeds) = mpsc::unbounded_channel();
    let count = opened.clone();
    let board = StatsBoard::with_feeds(Arc::new(move |id: &str| {
        count.fetch_add(1, Ordering::SeqCst);
        let (sample_tx, sample_rx) = mpsc::unbounded_channel();
        let _ = tx.send((id.to_string(), sample_tx));
        futures_util::stream::unfold(sample_rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })
        .boxed()
    }));
    (board, Source { opened, feeds })
}

fn sample(read: &str, rx: u64) -> Value {
    serde_json::json!({"read": read, "networks": {"eth0": {"rx_bytes": rx, "tx_bytes": rx / 2}}})
}

/// A first request for `c1`'s stats, answered by its feed's first sample;
/// returns the feed's sending end.
async fn first_request(
    board: &Arc<StatsBoard>,
    source: &mut Source,
) -> mpsc::UnboundedSender<Result<Value, DockerError>> {
    let asking = tokio::spawn({
        let board = board.clone();
        async move { board.stats("c1").await }
    });
    let (_, feed) = source.feeds.recv().await.unwrap();
    feed.send(Ok(sample("2026-11-28T00:00:00Z", 1))).unwrap();
    asking.await.unwrap();
    feed
}

#[tokio::test(start_paused = true)]
async fn nothing_is_fed_until_someone_asks_and_then_once() {
    let (board, mut source) = board();
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(source.opened.load(Ordering::SeqCst), 0);
    assert_eq!(board.open_feeds(), 0);

    let asking = tokio::spawn({
        let board = board.clone();
        async move { board.stats("c1").await }
    });
    let (id, feed) = source.feeds.recv().await.unwrap();
    assert_eq!(id, "c1");
    // The first request waits for the feed's first sample.
    tokio::time::sleep(Duration::from_millis(900)).await;
    feed.send(Ok(sample("2026-11-28T00:00:00Z", 1000))).unwrap();
    let first = asking.await.unwrap();
    assert_eq!(first.sample.unwrap()["networks"]["eth0"]["rx_bytes"], 1000);
    assert_eq!(first.network_rate, None);

    feed.send(Ok(sample("2026-11-28T00:00:02Z", 3000))).unwrap();
    tokio::task::yield_now().await;
    let second = board.stats("c1").await;
    assert_eq!(second.network_rate, Some((1000.0, 500.0)));
    assert_eq!(
        source.opened.load(Ordering::SeqCst),
        1,
        "one feed per container"
    );
}

#[tokio::test(start_paused = true)]
async fn a_feed_without_a_sample_answers_empty_after_the_wait_and_stays_open() {
    let (board, mut source) = board();
    let started = Instant::now();
    let stats = board.stats("c1").await;
    assert_eq!(stats, Stats::default());
    assert_eq!(started.elapsed(), FIRST_SAMPLE_WAIT);
    let (_, feed) = source.feeds.recv().await.unwrap();
    feed.send(Ok(sample("2026-11-28T00:00:00Z", 5))).unwrap();
    tokio::task::yield_now().await;
    assert!(board.stats("c1").await.sample.is_some());
    assert_eq!(source.opened.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_feed_nobody_reads_closes_after_the_interest_window() {
    let (board, mut source) = board();
    let feed = first_request(&board, &mut source).await;
    // Docker sends a sample a second; nobody asks again.
    let mut seconds = 0;
    while !feed.is_closed() {
        tokio::time::sleep(Duration::from_secs(1)).await;
        seconds += 1;
        let _ = feed.send(Ok(sample("2026-11-28T00:00:01Z", 2)));
        tokio::task::yield_now().await;
        assert!(seconds <= INTEREST.as_secs() + 2, "the feed stayed open");
    }
    assert!(seconds >= INTEREST.as_secs(), "closed after {seconds} s");
    assert_eq!(board.open_feeds(), 0, "its sample is dropped with it");
}

#[tokio::test(start_paused = true)]
async fn a_request_keeps_its_feed_open() {
    let (board, mut source) = board();
    let feed = first_request(&board, &mut source).await;
    for _ in 0..3 {
        tokio::time::sleep(INTEREST - Duration::from_secs(1)).await;
        assert!(board.stats("c1").await.sample.is_some());
        feed.send(Ok(sample("2026-11-28T00:00:01Z", 2))).unwrap();
        tokio::task::yield_now().await;
        assert!(!feed.is_closed());
    }
    assert_eq!(source.opened.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_feed_that_ends_is_forgotten_and_opened_again_on_the_next_request() {
    let (board, mut source) = board();
    let feed = first_request(&board, &mut source).await;
    // The container stopped: Docker ends the stream.
    drop(feed);
    tokio::task::yield_now().await;
    assert_eq!(board.open_feeds(), 0);
    let again = tokio::spawn({
        let board = board.clone();
        async move { board.stats("c1").await }
    });
    let (_, feed) = source.feeds.recv().await.unwrap();
    feed.send(Err(DockerError::status(404, "no such container")))
        .unwrap();
    assert_eq!(again.await.unwrap(), Stats::default());
    assert_eq!(source.opened.load(Ordering::SeqCst), 2);
    assert_eq!(board.open_feeds(), 0);
}

#[tokio::test]
async fn a_board_without_docker_has_no_samples() {
    assert_eq!(StatsBoard::empty().stats("c1").await, Stats::default());
}
