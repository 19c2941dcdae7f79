//! What the init service does when the agent exits (docs/operations.md
//! §3), as a pure function of the exit and the run's length, so every
//! exit code's answer is tested without running anything.

use std::time::Duration;

use crate::exit::ExitCode;

/// The first pause after a failure, doubling up to [`MAX_PAUSE`], each
/// with up to 10 % jitter: ecs-init's numbers.
pub const MIN_PAUSE: Duration = Duration::from_millis(500);
pub const MAX_PAUSE: Duration = Duration::from_secs(15);
const JITTER: f64 = 0.10;
/// A run at least this long starts the pauses again from [`MIN_PAUSE`]:
/// unlike ecs-init, whose pauses never shrink, an agent that fails once a
/// day is back in half a second rather than in 15.
pub const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// How the agent process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    /// Killed by this signal (no exit code).
    Signal(i32),
}

/// What to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// The agent ended for good; the init service exits with this code.
    Stop(ExitCode),
    /// Install the staged update, then start the agent at once.
    Update,
    /// Start the agent again after this pause.
    Restart(Duration),
}

/// Exponential pauses between restarts.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: MIN_PAUSE }
    }
}

impl Backoff {
    /// The pause before the next start; `unit` in [0, 1) picks the jitter.
    fn pause(&mut self, unit: f64) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(MAX_PAUSE);
        let spread = base.as_secs_f64() * JITTER;
        Duration::from_secs_f64(base.as_secs_f64() - spread + 2.0 * spread * unit)
    }

    /// The answer to `exit` after a run of `ran`; `unit` in [0, 1).
    pub fn decide(&mut self, exit: Exit, ran: Duration, unit: f64) -> Next {
        if ran >= HEALTHY_RUN {
            self.next = MIN_PAUSE;
        }
        match exit {
            Exit::Code(0) => Next::Stop(ExitCode::Success),
            Exit::Code(5) => Next::Stop(ExitCode::Terminal),
            Exit::Code(42) => Next::Update,
            // 1, 2 (a crash), any other code, or a signal: try again.
            Exit::Code(_) | Exit::Signal(_) => Next::Restart(self.pause(unit)),
        }
    }

    /// The pause after a failed start or a failed update, which are
    /// retried like a failed run.
    pub fn after_failure(&mut self, unit: f64) -> Duration {
        self.pause(unit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHORT: Duration = Duration::from_secs(1);

    #[test]
    fn each_exit_code_has_its_answer() {
        let mut b = Backoff::default();
        assert_eq!(
            b.decide(Exit::Code(0), SHORT, 0.5),
            Next::Stop(ExitCode::Success)
        );
        assert_eq!(
            b.decide(Exit::Code(5), SHORT, 0.5),
            Next::Stop(ExitCode::Terminal)
        );
        assert_eq!(b.decide(Exit::Code(42), SHORT, 0.5), Next::Update);
        for exit in [
            Exit::Code(1),
            Exit::Code(2),
            Exit::Code(77),
            Exit::Signal(9),
        ] {
            assert!(matches!(
                Backoff::default().decide(exit, SHORT, 0.5),
                Next::Restart(_)
            ));
        }
    }

    #[test]
    fn pauses_double_to_fifteen_seconds_with_ten_percent_jitter() {
        let mut b = Backoff::default();
        let pauses: Vec<Duration> = (0..8)
            .map(|_| match b.decide(Exit::Code(1), SHORT, 0.5) {
                Next::Restart(d) => d,
                other => panic!("{other:?}"),
            })
            .collect();
        let secs: Vec<f64> = pauses.iter().map(Duration::as_secs_f64).collect();
        assert_eq!(secs, vec![0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0, 15.0]);
        let mut low = Backoff::default();
        let mut high = Backoff::default();
        assert_eq!(
            low.decide(Exit::Code(1), SHORT, 0.0),
            Next::Restart(Duration::from_millis(450))
        );
        let Next::Restart(top) = high.decide(Exit::Code(1), SHORT, 0.999_999) else {
            panic!()
        };
        assert!(top > Duration::from_millis(549) && top < Duration::from_millis(551));
    }

    #[test]
    fn a_healthy_run_starts_the_pauses_again() {
        let mut b = Backoff::default();
        for _ in 0..6 {
            b.decide(Exit::Code(1), SHORT, 0.5);
        }
        assert_eq!(
            b.decide(Exit::Code(1), SHORT, 0.5),
            Next::Restart(MAX_PAUSE)
        );
        assert_eq!(
            b.decide(Exit::Code(1), HEALTHY_RUN, 0.5),
            Next::Restart(MIN_PAUSE)
        );
    }
}
