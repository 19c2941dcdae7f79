//! Delivers the outbox: every queued state change goes to the backend with
//! `SubmitTaskStateChange`, in the order it was made for its task, retried
//! with backoff until accepted, then removed. Tasks do not wait on each
//! other: a task whose report keeps failing only delays its own later
//! reports (docs/architecture.md §5.3).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::ecs_client::{ApiError, EcsClient};
use crate::state_change::TaskStateChange;
use crate::store::Store;

/// Where state changes go; the ECS API in production, a recorder in tests.
pub trait StateChangeSink: Send + Sync + 'static {
    fn submit(
        &self,
        change: &TaskStateChange,
    ) -> impl std::future::Future<Output = Result<(), ApiError>> + Send;
}

/// The ECS API as a sink, for one cluster.
pub struct EcsSink {
    pub client: EcsClient,
    pub cluster: String,
}

impl StateChangeSink for EcsSink {
    async fn submit(&self, change: &TaskStateChange) -> Result<(), ApiError> {
        self.client
            .submit_task_state_change(&self.cluster, change)
            .await
    }
}

const MAX_IN_FLIGHT: usize = 10;

fn retry_backoff() -> Backoff {
    Backoff::new(Duration::from_secs(1), Duration::from_secs(30), 1.3, 0.2)
}

/// Runs until the process ends. `wake` is notified whenever the engine
/// queues a change; `settled` is told the task of every change that left
/// the outbox (delivered, or dropped as undeliverable), so that a cleanup
/// waiting on it goes ahead at once (docs/engine.md §14).
pub async fn run<S: StateChangeSink>(
    store: Store,
    sink: Arc<S>,
    wake: Arc<Notify>,
    settled: impl Fn(&str),
) {
    // Per task: when it may be retried, and its backoff.
    let mut waiting: HashMap<String, (Instant, Backoff)> = HashMap::new();
    loop {
        let pending = match store.outbox().await {
            Ok(items) => items,
            Err(e) => {
                tracing::error!(error = %e, "reading the outbox failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        // The head of each task's queue, for tasks not backing off.
        let now = Instant::now();
        let mut seen = HashSet::new();
        let mut heads = Vec::new();
        for (id, change) in pending {
            if !seen.insert(change.task_arn.clone()) {
                continue;
            }
            if waiting
                .get(&change.task_arn)
                .is_some_and(|(at, _)| *at > now)
            {
                continue;
            }
            heads.push((id, change));
            if heads.len() == MAX_IN_FLIGHT {
                break;
            }
        }
        if heads.is_empty() {
            let next_retry = waiting
                .values()
                .map(|(at, _)| *at)
                .filter(|at| *at > now)
                .min();
            match next_retry {
                Some(at) => {
                    tokio::select! {
                        _ = wake.notified() => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                None => wake.notified().await,
            }
            continue;
        }
        let results = futures_util::future::join_all(heads.into_iter().map(|(id, change)| {
            let sink = sink.clone();
            async move {
                let result = sink.submit(&change).await;
                (id, change, result)
            }
        }))
        .await;
        // What left the outbox this round goes in one write: in a burst,
        // one durable commit for ten reports rather than ten.
        let mut done = Vec::new();
        for (id, change, result) in results {
            match result {
                Ok(()) => {
                    tracing::info!(
                        task = change.task_arn,
                        status = change.status,
                        "reported task state"
                    );
                    waiting.remove(&change.task_arn);
                    done.push((id, change.task_arn));
                }
                Err(ApiError::Rejected { code, message }) => {
                    // The backend will never accept it; keeping it would
                    // block the task's later reports forever.
                    tracing::error!(
                        task = change.task_arn,
                        code,
                        message,
                        "state change rejected; dropping it"
                    );
                    waiting.remove(&change.task_arn);
                    done.push((id, change.task_arn));
                }
                Err(e) => {
                    let entry = waiting
                        .entry(change.task_arn.clone())
                        .or_insert_with(|| (Instant::now(), retry_backoff()));
                    let delay = entry.1.next_delay();
                    entry.0 = Instant::now() + delay;
                    tracing::warn!(task = change.task_arn, error = %e, ?delay, "reporting task state failed; will retry");
                }
            }
        }
        if done.is_empty() {
            continue;
        }
        let ids = done.iter().map(|(id, _)| *id).collect();
        match store.dequeue(ids).await {
            Ok(()) => {
                for (_, arn) in &done {
                    settled(arn);
                }
            }
            // They go again: the backend takes a report it already has.
            Err(e) => {
                tracing::error!(error = %e, "removing delivered state changes failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::store::Batch;
    use std::sync::Mutex;

    /// Fails each task's first attempt, then records what it accepts.
    #[derive(Default)]
    struct FlakySink {
        attempts: Mutex<HashMap<String, u32>>,
        accepted: Mutex<Vec<(String, String)>>,
    }

    impl StateChangeSink for FlakySink {
        async fn submit(&self, change: &TaskStateChange) -> Result<(), ApiError> {
            let n = {
                let mut attempts = self.attempts.lock().unwrap();
                let n = attempts.entry(change.task_arn.clone()).or_default();
                *n += 1;
                *n
            };
            if change.status == "BAD" {
                return Err(ApiError::Rejected {
                    code: "InvalidParameterException".into(),
                    message: "no".into(),
                });
            }
            if n == 1 {
                return Err(ApiError::Transient("throttled".into()));
            }
            self.accepted
                .lock()
                .unwrap()
                .push((change.task_arn.clone(), change.status.clone()));
            Ok(())
        }
    }

    fn change(arn: &str, status: &str) -> TaskStateChange {
        TaskStateChange {
            task_arn: arn.into(),
            status: status.into(),
            reason: String::new(),
            containers: vec![],
            pull_started_at_ms: None,
            pull_stopped_at_ms: None,
            execution_stopped_at_ms: None,
        }
    }

    /// Accepts everything.
    #[derive(Default)]
    struct Accepting;

    impl StateChangeSink for Accepting {
        async fn submit(&self, _: &TaskStateChange) -> Result<(), ApiError> {
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_round_of_reports_leaves_the_outbox_in_one_write() {
        let store = Store::in_memory().unwrap();
        let tasks: Vec<String> = (0..MAX_IN_FLIGHT).map(|i| format!("t{i}")).collect();
        store
            .commit(Batch {
                enqueue: tasks.iter().map(|t| change(t, "RUNNING")).collect(),
                ..Batch::default()
            })
            .await
            .unwrap();
        let before = store.write_count();
        let settled = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn(run(
            store.clone(),
            Arc::new(Accepting),
            Arc::new(Notify::new()),
            {
                let settled = settled.clone();
                move |arn: &str| settled.lock().unwrap().push(arn.to_string())
            },
        ));
        while settled.lock().unwrap().len() < tasks.len() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        task.abort();
        assert!(store.outbox().await.unwrap().is_empty());
        assert_eq!(store.write_count() - before, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn delivers_in_order_with_retries_and_drops_rejected() {
        let store = Store::in_memory().unwrap();
        store
            .commit(Batch {
                enqueue: vec![
                    change("a", "RUNNING"),
                    change("b", "BAD"),
                    change("a", "STOPPED"),
                    change("b", "RUNNING"),
                ],
                ..Batch::default()
            })
            .await
            .unwrap();
        let sink = Arc::new(FlakySink::default());
        let wake = Arc::new(Notify::new());
        let settled = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn(run(store.clone(), sink.clone(), wake.clone(), {
            let settled = settled.clone();
            move |arn: &str| settled.lock().unwrap().push(arn.to_string())
        }));
        for _ in 0..200 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if store.outbox().await.unwrap().is_empty() {
                break;
            }
        }
        task.abort();
        assert!(store.outbox().await.unwrap().is_empty());
        let accepted = sink.accepted.lock().unwrap().clone();
        let a: Vec<&str> = accepted
            .iter()
            .filter(|(t, _)| t == "a")
            .map(|(_, s)| s.as_str())
            .collect();
        assert_eq!(a, ["RUNNING", "STOPPED"], "per-task order survives retries");
        let b: Vec<&str> = accepted
            .iter()
            .filter(|(t, _)| t == "b")
            .map(|(_, s)| s.as_str())
            .collect();
        assert_eq!(
            b,
            ["RUNNING"],
            "a rejected change is dropped, later ones still go"
        );
        let mut settled = settled.lock().unwrap().clone();
        settled.sort();
        assert_eq!(
            settled,
            ["a", "a", "b", "b"],
            "every change that left the outbox, the dropped one too, is told"
        );
    }
}
