#![allow(clippy::unwrap_used)]
//! The updater against a small HTTP server on loopback. Every wait is on an
//! event (a reply, a request reaching the server), never on a clock.

use std::collections::BTreeSet;
use std::sync::Arc;

use aws_smithy_http_client::proxy::ProxyConfig;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Notify};

use super::*;

const CLUSTER: &str = "arn:aws:ecs:us-east-1:123456789012:cluster/default";
const INSTANCE: &str = "arn:aws:ecs:us-east-1:123456789012:container-instance/default/abc";

fn bundle() -> Vec<u8> {
    b"not really a tarball, but any bytes will do".repeat(1000)
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn other_bundle() -> Vec<u8> {
    b"another agent".repeat(1000)
}

/// Serves `body` at `/bundle.tar` and `/held.tar` (the latter only after
/// `release` is notified, so a download can be caught in flight),
/// [`other_bundle`] at `/other.tar`, a redirect to the first at `/moved`,
/// and 404 for anything else. Each
/// request's path is reported on `requests` as soon as it is read.
struct Server {
    url: String,
    release: Arc<Notify>,
    requests: mpsc::UnboundedReceiver<String>,
}

async fn server(body: Vec<u8>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let release = Arc::new(Notify::new());
    let (tx, requests) = mpsc::unbounded_channel();
    let held = release.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (tx, body, held) = (tx.clone(), body.clone(), held.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let path = head.split(' ').nth(1).unwrap_or_default().to_string();
                let _ = tx.send(path.clone());
                let ok = |len: usize| {
                    format!("HTTP/1.1 200 OK\r\ncontent-length: {len}\r\nconnection: close\r\n\r\n")
                };
                match path.as_str() {
                    "/bundle.tar" => {
                        let _ = stream.write_all(ok(body.len()).as_bytes()).await;
                        let _ = stream.write_all(&body).await;
                    }
                    "/other.tar" => {
                        let other = other_bundle();
                        let _ = stream.write_all(ok(other.len()).as_bytes()).await;
                        let _ = stream.write_all(&other).await;
                    }
                    "/held.tar" => {
                        let _ = stream.write_all(ok(body.len()).as_bytes()).await;
                        let _ = stream.write_all(&body[..10]).await;
                        held.notified().await;
                        let _ = stream.write_all(&body[10..]).await;
                    }
                    "/moved" => {
                        let _ = stream
                            .write_all(
                                b"HTTP/1.1 302 Found\r\nlocation: /bundle.tar\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                            )
                            .await;
                    }
                    _ => {
                        let _ = stream
                            .write_all(
                                b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                            )
                            .await;
                    }
                }
                let _ = stream.shutdown().await;
            });
        }
    });
    Server {
        url,
        release,
        requests,
    }
}

struct Harness {
    updater: Arc<Updater>,
    replies: mpsc::UnboundedReceiver<AcsMessage>,
    exit: UpdateExit,
    stop: watch::Receiver<bool>,
    dir: tempfile::TempDir,
}

fn harness(enabled: bool) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let (tx, replies) = mpsc::unbounded_channel();
    let (stop_tx, stop) = watch::channel(false);
    let exit = UpdateExit::new(Arc::new(stop_tx));
    let updater = Arc::new(Updater::new(
        UpdateSettings {
            enabled,
            // A directory that does not exist yet: the download makes it.
            download_dir: dir.path().join("cache"),
        },
        // Loopback only, whatever proxy this machine has configured.
        Downloader::with_proxy("test-agent".into(), ProxyConfig::disabled()),
        tx,
        exit.clone(),
    ));
    Harness {
        updater,
        replies,
        exit,
        stop,
        dir,
    }
}

impl Harness {
    fn cache(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    fn files(&self) -> BTreeSet<String> {
        std::fs::read_dir(self.cache())
            .map(|entries| {
                entries
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    async fn reply(&mut self) -> AcsMessage {
        self.replies.recv().await.unwrap()
    }

    fn no_more_replies(&mut self) {
        assert!(self.replies.try_recv().is_err(), "unexpected reply queued");
    }

    /// Lets every ready task run until the directory holds `expected`
    /// (an aborted download's file is removed when its task is dropped).
    async fn until_files(&self, expected: &BTreeSet<String>) {
        for _ in 0..10_000 {
            if &self.files() == expected {
                return;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(&self.files(), expected);
    }
}

fn stage(id: &str, location: Option<String>, signature: Option<String>) -> StageUpdateMessage {
    StageUpdateMessage {
        cluster_arn: Some(CLUSTER.into()),
        container_instance_arn: Some(INSTANCE.into()),
        message_id: Some(id.into()),
        update_info: Some(UpdateInfo {
            location,
            signature,
        }),
    }
}

fn perform(id: &str) -> PerformUpdateMessage {
    PerformUpdateMessage {
        cluster_arn: Some(CLUSTER.into()),
        container_instance_arn: Some(INSTANCE.into()),
        message_id: Some(id.into()),
        update_info: None,
    }
}

fn ack(id: &str) -> AcsMessage {
    AcsMessage::AckRequest(AckRequest {
        cluster: Some(CLUSTER.into()),
        container_instance: Some(INSTANCE.into()),
        message_id: Some(id.into()),
    })
}

fn nack(id: &str, reason: &str) -> AcsMessage {
    AcsMessage::NackRequest(NackRequest {
        cluster: Some(CLUSTER.into()),
        container_instance: Some(INSTANCE.into()),
        message_id: Some(id.into()),
        reason: Some(reason.into()),
    })
}

/// The reason of a nack for `id`.
fn nack_reason(message: &AcsMessage, id: &str) -> String {
    match message {
        AcsMessage::NackRequest(n) => {
            assert_eq!(n.message_id.as_deref(), Some(id), "{message:?}");
            assert_eq!(n.cluster.as_deref(), Some(CLUSTER));
            assert_eq!(n.container_instance.as_deref(), Some(INSTANCE));
            n.reason.clone().unwrap_or_default()
        }
        other => panic!("expected a nack of {id}, got {other:?}"),
    }
}

#[tokio::test]
async fn a_good_stage_is_downloaded_checked_named_and_acked_then_performed() {
    let server = server(bundle()).await;
    let mut h = harness(true);
    // Surrounding whitespace of the signature is ignored.
    let signature = format!(" {}\n", sha256_hex(&bundle()));
    h.updater.stage(stage(
        "up-1",
        Some(format!("{}/bundle.tar", server.url)),
        Some(signature),
    ));
    assert_eq!(h.reply().await, ack("up-1"));

    let files = h.files();
    assert_eq!(files.len(), 2, "{files:?}");
    let desired = std::fs::read_to_string(h.cache().join(DESIRED_IMAGE_FILE)).unwrap();
    let name = desired.strip_suffix('\n').unwrap();
    assert!(
        files.contains(name),
        "{desired:?} names no file of {files:?}"
    );
    let hex = name.strip_suffix(TARBALL_SUFFIX).unwrap();
    assert_eq!(hex.len(), 32);
    assert!(hex.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(std::fs::read(h.cache().join(name)).unwrap(), bundle());
    assert!(!h.exit.requested());

    h.updater.perform(perform("up-2"));
    assert_eq!(h.reply().await, ack("up-2"));
    assert!(h.exit.requested());
    assert!(*h.stop.borrow(), "the orderly shutdown was started");
}

#[tokio::test]
async fn redirects_are_followed() {
    let mut server = server(bundle()).await;
    let mut h = harness(true);
    h.updater.stage(stage(
        "up-1",
        Some(format!("{}/moved", server.url)),
        Some(sha256_hex(&bundle())),
    ));
    assert_eq!(h.reply().await, ack("up-1"));
    assert_eq!(server.requests.recv().await.unwrap(), "/moved");
    assert_eq!(server.requests.recv().await.unwrap(), "/bundle.tar");
}

#[tokio::test]
async fn a_bad_checksum_is_nacked_the_file_removed_and_the_update_forgotten() {
    let server = server(bundle()).await;
    let mut h = harness(true);
    // An upper-case signature does not match: the comparison is exact.
    let upper = sha256_hex(&bundle()).to_uppercase();
    h.updater.stage(stage(
        "up-1",
        Some(format!("{}/bundle.tar", server.url)),
        Some(upper),
    ));
    let reason = nack_reason(&h.reply().await, "up-1");
    assert!(
        reason.starts_with("Unable to download: Hashsum validation failed"),
        "{reason}"
    );
    assert!(reason.contains(&sha256_hex(&bundle())), "{reason}");
    assert_eq!(h.files(), BTreeSet::new());

    h.updater.perform(perform("up-2"));
    assert_eq!(nack_reason(&h.reply().await, "up-2"), REASON_NOT_DOWNLOADED);
    assert!(!h.exit.requested());
}

#[tokio::test]
async fn failed_downloads_are_nacked_and_leave_nothing() {
    let server = server(bundle()).await;
    let mut h = harness(true);
    let signature = Some(sha256_hex(&bundle()));

    h.updater.stage(stage(
        "missing",
        Some(format!("{}/missing.tar", server.url)),
        signature.clone(),
    ));
    let reason = nack_reason(&h.reply().await, "missing");
    assert!(reason.starts_with("Unable to download: GET "), "{reason}");
    assert!(reason.ends_with("HTTP status 404"), "{reason}");

    // Nothing listens on a port that was just released.
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    h.updater.stage(stage(
        "refused",
        Some(format!("http://127.0.0.1:{refused}/bundle.tar")),
        signature.clone(),
    ));
    let reason = nack_reason(&h.reply().await, "refused");
    assert!(reason.starts_with("Unable to download: GET "), "{reason}");

    h.updater
        .stage(stage("not-a-url", Some("::".into()), signature.clone()));
    let reason = nack_reason(&h.reply().await, "not-a-url");
    assert!(
        reason.starts_with("Unable to download: invalid location"),
        "{reason}"
    );

    h.updater.stage(stage(
        "ftp",
        Some("ftp://127.0.0.1/bundle.tar".into()),
        signature,
    ));
    let reason = nack_reason(&h.reply().await, "ftp");
    assert!(reason.contains("not http or https"), "{reason}");

    assert!(h.files().is_empty(), "{:?}", h.files());
    h.updater.perform(perform("p"));
    assert_eq!(nack_reason(&h.reply().await, "p"), REASON_NOT_DOWNLOADED);
}

#[tokio::test]
async fn duplicate_stages_are_acked_while_downloading_and_after() {
    let mut server = server(bundle()).await;
    let mut h = harness(true);
    let location = Some(format!("{}/held.tar", server.url));
    let signature = Some(sha256_hex(&bundle()));
    h.updater
        .stage(stage("up-1", location.clone(), signature.clone()));
    assert_eq!(server.requests.recv().await.unwrap(), "/held.tar");

    // While the download runs, a duplicate waits for its outcome, and a
    // perform finds nothing staged yet.
    h.updater
        .stage(stage("up-2", location.clone(), signature.clone()));
    h.updater.perform(perform("early"));
    assert_eq!(
        nack_reason(&h.reply().await, "early"),
        REASON_NOT_DOWNLOADED
    );
    h.no_more_replies();

    server.release.notify_one();
    assert_eq!(h.reply().await, ack("up-1"));
    assert_eq!(h.reply().await, ack("up-2"));

    // Once staged, a duplicate is acked at once and downloads nothing.
    h.updater.stage(stage("up-3", location, signature));
    assert_eq!(h.reply().await, ack("up-3"));
    assert!(server.requests.try_recv().is_err(), "downloaded again");
    assert_eq!(h.files().len(), 2, "{:?}", h.files());
}

#[tokio::test]
async fn a_different_stage_nacks_the_one_in_progress_and_replaces_it() {
    let mut server = server(bundle()).await;
    let mut h = harness(true);
    // The first download is caught in flight; it would fail its check.
    h.updater.stage(stage(
        "old",
        Some(format!("{}/held.tar", server.url)),
        Some("0".repeat(64)),
    ));
    assert_eq!(server.requests.recv().await.unwrap(), "/held.tar");

    h.updater.stage(stage(
        "new",
        Some(format!("{}/bundle.tar", server.url)),
        Some(sha256_hex(&bundle())),
    ));
    assert_eq!(
        nack_reason(&h.reply().await, "old"),
        "New update arrived: new"
    );
    assert_eq!(h.reply().await, ack("new"));
    // The abandoned download's file is gone; desired-image names the new one.
    let desired = std::fs::read_to_string(h.cache().join(DESIRED_IMAGE_FILE)).unwrap();
    let name = desired.trim_end().to_string();
    h.until_files(&[DESIRED_IMAGE_FILE.to_string(), name.clone()].into())
        .await;
    assert_eq!(std::fs::read(h.cache().join(&name)).unwrap(), bundle());
    // Released now, the old download has no one left to answer.
    server.release.notify_one();

    // A staged update is replaced too: its (acked) stage is nacked.
    h.updater.stage(stage(
        "newer",
        Some(format!("{}/other.tar", server.url)),
        Some(sha256_hex(&other_bundle())),
    ));
    assert_eq!(
        nack_reason(&h.reply().await, "new"),
        "New update arrived: newer"
    );
    assert_eq!(h.reply().await, ack("newer"));
    let desired = std::fs::read_to_string(h.cache().join(DESIRED_IMAGE_FILE)).unwrap();
    assert_eq!(
        std::fs::read(h.cache().join(desired.trim_end())).unwrap(),
        other_bundle()
    );
    h.updater.perform(perform("go"));
    assert_eq!(h.reply().await, ack("go"));
    assert!(h.exit.requested());
}

#[tokio::test]
async fn perform_without_a_staged_update_is_nacked() {
    let mut h = harness(true);
    h.updater.perform(perform("p"));
    assert_eq!(h.reply().await, nack("p", REASON_NOT_DOWNLOADED));
    assert!(!h.exit.requested());
    assert!(!*h.stop.borrow());
}

#[tokio::test]
async fn with_updates_disabled_both_messages_are_nacked_and_nothing_is_fetched() {
    let mut server = server(bundle()).await;
    let mut h = harness(false);
    h.updater.stage(stage(
        "s",
        Some(format!("{}/bundle.tar", server.url)),
        Some(sha256_hex(&bundle())),
    ));
    assert_eq!(h.reply().await, nack("s", REASON_DISABLED));
    h.updater.perform(perform("p"));
    assert_eq!(h.reply().await, nack("p", REASON_DISABLED));
    assert!(server.requests.try_recv().is_err());
    assert!(!h.cache().exists());
    assert!(!h.exit.requested());
}

#[tokio::test]
async fn invalid_stages_are_nacked_and_unanswerable_ones_ignored() {
    let mut h = harness(true);
    h.updater.stage(stage("a", None, Some("x".into())));
    assert_eq!(
        h.reply().await,
        nack("a", "Invalid update: no location given")
    );
    h.updater.stage(stage("b", Some("http://x".into()), None));
    assert_eq!(
        h.reply().await,
        nack("b", "Invalid update: no signature given")
    );
    h.updater.stage(StageUpdateMessage {
        update_info: None,
        ..stage("c", None, None)
    });
    assert_eq!(
        h.reply().await,
        nack("c", "Invalid update: no update info given")
    );

    // Without a messageId there is nothing to answer to.
    h.updater.stage(StageUpdateMessage {
        message_id: None,
        ..stage("d", Some("http://x".into()), Some("y".into()))
    });
    h.updater.perform(PerformUpdateMessage {
        message_id: None,
        ..perform("e")
    });
    h.no_more_replies();
}

#[test]
fn the_download_dir_defaults_to_the_one_ecs_init_reads() {
    let mut config = crate::config::Config::from_sources(
        &crate::config::Env::from_pairs(std::iter::empty::<(&str, &str)>()),
        &crate::config::FileConfig::parse("").unwrap(),
        Some((32768, 60999)),
    )
    .unwrap()
    .config;
    let settings = UpdateSettings::from_config(&config);
    assert!(!settings.enabled);
    assert_eq!(settings.download_dir, Path::new(DEFAULT_DOWNLOAD_DIR));
    config.updates_enabled = true;
    config.update_download_dir = Some("/srv/updates".into());
    let settings = UpdateSettings::from_config(&config);
    assert!(settings.enabled);
    assert_eq!(settings.download_dir, Path::new("/srv/updates"));
}
