//! The instance health checks TCS reports (the Go agent's "doctor",
//! docs/protocols.md §4.2, §5.6): one `ContainerRuntime` check, a Docker
//! ping run each time an ACS heartbeat arrives, and the record of whether
//! its latest result was published yet.

use std::sync::{Mutex, MutexGuard};

use ecs_model::tcs::{InstanceStatus, InstanceStatusMetadata, PublishInstanceStatusRequest};

use super::{tcs_time, TcsContext};
use crate::engine::now_ms;

/// The only check the Docker agent runs.
pub const CONTAINER_RUNTIME: &str = "ContainerRuntime";

#[derive(Debug)]
struct CheckState {
    status: &'static str,
    last_status_change_ms: i64,
    /// When the latest check ran.
    checked_ms: i64,
    /// When the check before it ran: what the Go agent reports as
    /// `lastUpdated` (it lags one heartbeat, docs/protocols.md §5.6).
    previous_check_ms: i64,
    /// Bumped by every check, so a publish only marks what it sent.
    generation: u64,
    published: Option<u64>,
}

/// The latest `ContainerRuntime` result, shared by the check loop and the
/// TCS connection.
#[derive(Debug)]
pub struct InstanceStatusBoard {
    state: Mutex<CheckState>,
}

impl InstanceStatusBoard {
    /// `INITIALIZING` until the first check, and not yet published: the
    /// first tick after start reports it (docs/protocols.md §5.6).
    pub fn new(now_ms: i64) -> Self {
        Self {
            state: Mutex::new(CheckState {
                status: "INITIALIZING",
                last_status_change_ms: now_ms,
                checked_ms: now_ms,
                previous_check_ms: now_ms,
                generation: 0,
                published: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, CheckState> {
        // The state is a few plain values, always consistent: a panic
        // elsewhere cannot leave it half-written.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records one check result (`OK` or `IMPAIRED`) and marks it unpublished.
    pub fn record(&self, runtime_ok: bool, now_ms: i64) {
        let mut s = self.lock();
        let status = if runtime_ok { "OK" } else { "IMPAIRED" };
        if status != s.status {
            s.last_status_change_ms = now_ms;
        }
        s.status = status;
        s.previous_check_ms = s.checked_ms;
        s.checked_ms = now_ms;
        s.generation += 1;
    }

    /// The request to send when the latest result is not published yet,
    /// with the generation to pass to [`Self::mark_published`] once sent.
    pub fn pending(
        &self,
        cluster: &str,
        instance_arn: &str,
    ) -> Option<(u64, PublishInstanceStatusRequest)> {
        let s = self.lock();
        if s.published == Some(s.generation) {
            return None;
        }
        let request = PublishInstanceStatusRequest {
            metadata: Some(InstanceStatusMetadata {
                cluster: Some(cluster.to_string()),
                container_instance: Some(instance_arn.to_string()),
                request_id: Some(uuid::Uuid::new_v4().to_string()),
            }),
            statuses: Some(vec![InstanceStatus {
                last_status_change: Some(tcs_time(s.last_status_change_ms)),
                last_updated: Some(tcs_time(s.previous_check_ms)),
                status: Some(s.status.to_string()),
                status_reason: None,
                r#type: Some(CONTAINER_RUNTIME.to_string()),
            }]),
            timestamp: None,
        };
        Some((s.generation, request))
    }

    /// The result of `generation` reached the server.
    pub fn mark_published(&self, generation: u64) {
        let mut s = self.lock();
        if s.published.is_none_or(|p| p < generation) {
            s.published = Some(generation);
        }
    }
}

/// Runs the check each time the ACS session reports a heartbeat.
pub async fn check_loop(ctx: &TcsContext, board: &InstanceStatusBoard) {
    loop {
        ctx.acs_heartbeats.notified().await;
        let ok = ctx.host.runtime_responds().await;
        if !ok {
            tracing::warn!("container runtime did not answer its health check ping");
        }
        board.record(ok, now_ms());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn status(board: &InstanceStatusBoard) -> Option<(u64, InstanceStatus)> {
        board
            .pending("c", "i")
            .map(|(g, r)| (g, r.statuses.unwrap().remove(0)))
    }

    #[test]
    fn initial_report_then_one_per_check() {
        let board = InstanceStatusBoard::new(1_000);
        let (g, first) = status(&board).unwrap();
        assert_eq!(first.status.as_deref(), Some("INITIALIZING"));
        assert_eq!(first.r#type.as_deref(), Some("ContainerRuntime"));
        board.mark_published(g);
        assert!(status(&board).is_none(), "nothing new until a check runs");

        board.record(true, 4_000);
        let (g, ok) = status(&board).unwrap();
        assert_eq!(ok.status.as_deref(), Some("OK"));
        assert_eq!(ok.last_status_change, Some(4.0));
        // lastUpdated lags one check, as in the recorded Go traffic.
        assert_eq!(ok.last_updated, Some(1.0));
        board.mark_published(g);

        board.record(true, 9_000);
        let (g2, again) = status(&board).unwrap();
        assert_eq!(again.last_status_change, Some(4.0), "status unchanged");
        assert_eq!(again.last_updated, Some(4.0));
        // A check that lands while a publish is in flight stays pending.
        board.record(false, 12_000);
        board.mark_published(g2);
        let (_, impaired) = status(&board).unwrap();
        assert_eq!(impaired.status.as_deref(), Some("IMPAIRED"));
        assert_eq!(impaired.last_status_change, Some(12.0));
    }

    #[test]
    fn every_request_has_a_fresh_request_id() {
        let board = InstanceStatusBoard::new(0);
        let id = |b: &InstanceStatusBoard| {
            b.pending("c", "i")
                .unwrap()
                .1
                .metadata
                .unwrap()
                .request_id
                .unwrap()
        };
        assert_ne!(id(&board), id(&board));
    }
}
