//! Crash semantics (docs/architecture.md §3.1): the agent's long-lived tasks
//! run for the life of the process, so one that ends before shutdown is a
//! bug, and a process that goes on without it would stop acking payloads
//! or reporting state while looking alive. Any such end, and any panic
//! anywhere, ends the process with exit code 1, which the init system
//! answers with a restart; the restart resumes from the checkpoint.

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Makes every panic, in any thread or task, end the process with exit
/// code 1 after logging it. Installed by the binary before the agent runs.
pub fn exit_on_panic() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        tracing::error!("internal error, exiting so the agent is restarted: {info}");
        default_hook(info);
        std::process::exit(crate::exit::ExitCode::Error.code());
    }));
}

/// Watches the long-lived tasks until shutdown is requested.
pub struct Supervisor {
    ended_tx: mpsc::UnboundedSender<String>,
    ended_rx: mpsc::UnboundedReceiver<String>,
    stop: watch::Receiver<bool>,
}

impl Supervisor {
    /// `stop` turns true when shutdown is requested; tasks that end after
    /// that end as they should.
    pub fn new(stop: watch::Receiver<bool>) -> Self {
        let (ended_tx, ended_rx) = mpsc::unbounded_channel();
        Self {
            ended_tx,
            ended_rx,
            stop,
        }
    }

    /// Watches `task`; the returned handle completes when it does.
    pub fn watch(&self, name: &'static str, task: JoinHandle<()>) -> JoinHandle<()> {
        let ended = self.ended_tx.clone();
        let stop = self.stop.clone();
        tokio::spawn(async move {
            let how = match task.await {
                Ok(()) => "ended".to_string(),
                Err(e) if e.is_panic() => "panicked".to_string(),
                Err(e) => format!("failed: {e}"),
            };
            if !*stop.borrow() {
                let _ = ended.send(format!("{name} {how} while the agent was running"));
            }
        })
    }

    /// `None` once shutdown is requested; `Some(why)` when a watched task
    /// ended first.
    pub async fn until_stop_or_failure(&mut self) -> Option<String> {
        tokio::select! {
            _ = self.stop.wait_for(|stop| *stop) => None,
            Some(why) = self.ended_rx.recv() => Some(why),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn a_task_that_panics_or_returns_early_is_a_failure() {
        let (_stop_tx, stop) = watch::channel(false);
        let mut supervisor = Supervisor::new(stop);
        let _quiet = supervisor.watch("quiet", tokio::spawn(std::future::pending()));
        supervisor.watch(
            "engine",
            tokio::spawn(async {
                tokio::task::yield_now().await;
                panic!("deliberate");
            }),
        );
        let why = supervisor.until_stop_or_failure().await.unwrap();
        assert_eq!(why, "engine panicked while the agent was running");

        let (_stop_tx, stop) = watch::channel(false);
        let mut supervisor = Supervisor::new(stop);
        supervisor.watch("reporter", tokio::spawn(async {}));
        let why = supervisor.until_stop_or_failure().await.unwrap();
        assert_eq!(why, "reporter ended while the agent was running");
    }

    #[tokio::test]
    async fn tasks_ending_after_shutdown_is_requested_are_fine() {
        let (stop_tx, stop) = watch::channel(false);
        let mut supervisor = Supervisor::new(stop.clone());
        let mut session_stop = stop.clone();
        let session = supervisor.watch(
            "ACS session",
            tokio::spawn(async move {
                let _ = session_stop.wait_for(|s| *s).await;
            }),
        );
        stop_tx.send(true).unwrap();
        assert_eq!(supervisor.until_stop_or_failure().await, None);
        session.await.unwrap();
        assert!(supervisor.ended_rx.try_recv().is_err());
    }
}
