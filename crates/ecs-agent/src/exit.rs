//! Process exit codes and what the supervisor (ecs-init / systemd) does with
//! them (docs/endpoints.md §2.3).

/// How the agent process ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// Normal end: do not restart.
    Success = 0,
    /// Retryable failure: the supervisor restarts the agent after a back-off.
    Error = 1,
    /// Terminal failure: the supervisor does not restart the agent.
    Terminal = 5,
    /// A staged update is ready: reload the image and restart.
    Update = 42,
}

impl ExitCode {
    pub fn code(self) -> i32 {
        self as i32
    }
}
