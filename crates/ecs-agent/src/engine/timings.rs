//! Where a task's launch spends its time, from the ACS payload's arrival to
//! the RUNNING report queued: one info line per task, `task launch
//! timings`, so the agent's own share of a launch can be measured on a real
//! host (docs/benchmarks.md). Kept in memory only, for tasks still
//! launching; a restart simply loses the line.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use super::reconcile::Outcome;
use super::status::ContainerStatus;

/// The milestones of one launch; each is the latest of its containers.
#[derive(Debug, Clone)]
struct Timeline {
    received: Instant,
    accepted: Instant,
    saved: Option<Instant>,
    pulled: Option<Instant>,
    created: Option<Instant>,
    started: Option<Instant>,
    running: Option<Instant>,
    /// Time spent in commits that wrote this task.
    saving: Duration,
}

#[derive(Debug, Default)]
pub(super) struct LaunchTimings {
    launching: HashMap<String, Timeline>,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The time from one milestone to the next; a milestone a launch skipped
/// (no pull under `prefer-cached`, say) takes no time.
fn step(from: Instant, to: Option<Instant>) -> (Instant, u64) {
    match to {
        Some(to) => (to, ms(to.saturating_duration_since(from))),
        None => (from, 0),
    }
}

impl LaunchTimings {
    /// A new task from a payload that arrived at `received`.
    pub(super) fn accepted(&mut self, arn: &str, received: Instant) {
        self.launching.insert(
            arn.to_string(),
            Timeline {
                received,
                accepted: Instant::now(),
                saved: None,
                pulled: None,
                created: None,
                started: None,
                running: None,
                saving: Duration::ZERO,
            },
        );
    }

    /// A commit that wrote the task took `took`; `running`: the task is
    /// known RUNNING in what it wrote.
    pub(super) fn saved(&mut self, arn: &str, took: Duration, running: bool) {
        if let Some(t) = self.launching.get_mut(arn) {
            let now = Instant::now();
            t.saving += took;
            t.saved.get_or_insert(now);
            if running {
                t.running.get_or_insert(now);
            }
        }
    }

    pub(super) fn action_done(&mut self, arn: &str, target: ContainerStatus, outcome: &Outcome) {
        let Some(t) = self.launching.get_mut(arn) else {
            return;
        };
        let now = Some(Instant::now());
        match (target, outcome) {
            (ContainerStatus::Pulled, Outcome::Pulled { .. }) => t.pulled = now,
            (ContainerStatus::Created, Outcome::Created { .. }) => t.created = now,
            (ContainerStatus::Running, Outcome::Done(_)) => t.started = now,
            _ => {}
        }
    }

    /// The task's RUNNING report is queued: its launch is over.
    pub(super) fn running_reported(&mut self, arn: &str) {
        let Some(t) = self.launching.remove(arn) else {
            return;
        };
        let now = Instant::now();
        let (at, payload_ms) = step(t.received, Some(t.accepted));
        let (at, save_ms) = step(at, t.saved);
        let (at, pull_ms) = step(at, t.pulled);
        let (at, create_ms) = step(at, t.created);
        let (at, start_ms) = step(at, t.started);
        let (at, running_ms) = step(at, t.running);
        let (_, report_ms) = step(at, Some(now));
        tracing::info!(
            task = arn,
            payload_ms,
            save_ms,
            pull_ms,
            create_ms,
            start_ms,
            running_ms,
            report_ms,
            saving_ms = ms(t.saving),
            total_ms = ms(now.saturating_duration_since(t.received)),
            "task launch timings"
        );
    }

    /// The task is gone without a RUNNING report (it stopped first).
    pub(super) fn forget(&mut self, arn: &str) {
        self.launching.remove(arn);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn phases_follow_each_other_and_add_up() {
        let mut timings = LaunchTimings::default();
        let received = Instant::now();
        tokio::time::advance(Duration::from_millis(2)).await;
        timings.accepted("t", received);
        tokio::time::advance(Duration::from_millis(3)).await;
        timings.saved("t", Duration::from_millis(1), false);
        tokio::time::advance(Duration::from_millis(40)).await;
        timings.action_done(
            "t",
            ContainerStatus::Created,
            &Outcome::Created {
                docker_id: "d".into(),
            },
        );
        tokio::time::advance(Duration::from_millis(50)).await;
        timings.action_done("t", ContainerStatus::Running, &Outcome::Done(None));
        timings.saved("t", Duration::from_millis(1), true);
        let t = timings.launching["t"].clone();
        assert_eq!(step(t.received, Some(t.accepted)).1, 2);
        assert_eq!(step(t.accepted, t.saved).1, 3);
        assert_eq!(
            step(t.saved.unwrap(), t.pulled),
            (t.saved.unwrap(), 0),
            "no pull"
        );
        assert_eq!(step(t.saved.unwrap(), t.created).1, 40);
        assert_eq!(step(t.created.unwrap(), t.started).1, 50);
        assert_eq!(t.saving, Duration::from_millis(2));
        timings.running_reported("t");
        assert!(timings.launching.is_empty(), "logged once, then dropped");
        timings.running_reported("t");
    }
}
