//! What wakes the engine without a payload: Docker's event stream, and the
//! periodic re-inspection that catches events Docker never delivered
//! (docs/engine.md §11).

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::{now_ms, Msg};
use crate::docker::DockerApi;

/// Forwards Docker events for the agent's containers to the engine,
/// resubscribing (from the last event seen) whenever the stream ends, and
/// asking for a full re-check after a gap.
pub(super) fn spawn_event_watcher(docker: Arc<dyn DockerApi>, tx: mpsc::UnboundedSender<Msg>) {
    // The subscription only starts when the stream is first polled; asking
    // for events since "now" makes Docker replay anything that happens in
    // between.
    let mut since = Some(now_ms() / 1000 - 1);
    tokio::spawn(async move {
        let mut after_gap = false;
        loop {
            if after_gap {
                // A re-check while the daemon is down (restarting, say)
                // learns nothing, and nothing would ask again: wait until it
                // answers. The new subscription replays from `since`, so
                // nothing that happens during the re-check is missed.
                wait_for_daemon(&*docker).await;
                if tx.send(Msg::Resync).is_err() {
                    return;
                }
            }
            let mut events = docker.container_events(since);
            while let Some(item) = events.next().await {
                match item {
                    Ok(event) => {
                        since = Some(now_ms() / 1000);
                        if tx.send(Msg::DockerEvent(event)).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "Docker event stream failed; resubscribing");
                        break;
                    }
                }
            }
            if tx.is_closed() {
                return;
            }
            after_gap = true;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}

async fn wait_for_daemon(docker: &dyn DockerApi) {
    let mut logged = false;
    while let Err(e) = docker.ping(Duration::from_secs(5)).await {
        if !logged {
            tracing::warn!(error = %e, "Docker does not answer; waiting for it");
            logged = true;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    if logged {
        tracing::info!("Docker answers again; re-checking every container");
    }
}

/// Asks the engine to re-inspect every running container each `every`.
pub(super) fn spawn_resync_ticker(tx: mpsc::UnboundedSender<Msg>, every: Duration) {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(every);
        interval.tick().await;
        loop {
            interval.tick().await;
            if tx.send(Msg::Resync).is_err() {
                return;
            }
        }
    });
}
