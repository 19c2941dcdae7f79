//! The agent's identity as it reports it: version block, one-line form, and
//! the User-Agent the ECS backend sees.
//!
//! The version is this crate's own, not a Go release number, so the backend
//! can never mistake this agent for a Go build with different behaviour
//! (docs/protocols.md §2.1).

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Short git hash of the build, when the build recorded one.
pub const GIT_HASH: &str = match option_env!("ECS_AGENT_GIT_HASH") {
    Some(h) => h,
    None => "unknown",
};

/// The block printed by `-version`.
pub fn version_block() -> String {
    format!("Amazon ECS Agent (Rust):\n\tVersion: {VERSION}\n\tCommit: {GIT_HASH}\n")
}

/// The one-line form used by introspection and logs.
pub fn one_line() -> String {
    format!("Amazon ECS Agent - v{VERSION} ({GIT_HASH})")
}

/// `Amazon ECS Agent - v<version> (<hash>) (linux; <os family>) (+http://aws.amazon.com/ecs/)`
pub fn user_agent(detailed_os_family: &str) -> String {
    format!(
        "Amazon ECS Agent - v{VERSION} ({GIT_HASH}) (linux; {detailed_os_family}) (+http://aws.amazon.com/ecs/)"
    )
}
