//! `ecs-agent init <verb>`: the init service, what ecs-init does around
//! the Go agent on Amazon Linux (docs/operations.md §3). systemd runs
//! `pre-start`, then `start`, which runs the agent as a child process and
//! answers its exit codes, then `post-stop` once it is down.
//!
//! - `pre-start`: the host set-up of `host-setup` and the directories the
//!   agent writes to.
//! - `start`: runs the agent with the environment of [`agent_env`] until it
//!   ends for good, as a child process, or as the container `ecs-agent`
//!   when `ECS_INIT_AGENT_IMAGE` names an image ([`container`]); restarts
//!   it with growing pauses on a failure, installs a staged update and
//!   restarts it at once on exit 42 ([`restart`], [`staged_update`]);
//!   passes SIGTERM and SIGINT on to it and ends with it.
//! - `stop`: asks a running `start` to stop, and waits until it has.
//! - `post-stop`: removes the host set-up.

pub mod agent_env;
pub mod container;
pub mod restart;
pub mod staged_update;
mod supervise;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use agent_env::Runs;

use crate::docker::DockerClient;
use crate::exit::ExitCode;
use crate::flags::Subcommand;

/// Where `start` records its process ID for `stop`, unless
/// `ECS_INIT_PID_FILE` says otherwise.
pub const PID_FILE: &str = "/run/ecs-agent-init.pid";
/// How long `stop` waits for the agent to save its state and end: the
/// agent's own shutdown is bounded well inside it (docs/operations.md §5).
const STOP_WAIT: Duration = Duration::from_secs(60);

/// The init service's verbs, named as ecs-init's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    PreStart,
    Start,
    Stop,
    PostStop,
}

impl Verb {
    pub const ALL: [Verb; 4] = [Verb::PreStart, Verb::Start, Verb::Stop, Verb::PostStop];

    pub fn name(self) -> &'static str {
        match self {
            Verb::PreStart => "pre-start",
            Verb::Start => "start",
            Verb::Stop => "stop",
            Verb::PostStop => "post-stop",
        }
    }

    /// ecs-init also takes `pre-stop`, its old name for `stop`.
    pub fn from_name(name: &str) -> Option<Self> {
        if name == "pre-stop" {
            return Some(Verb::Stop);
        }
        Self::ALL.into_iter().find(|v| v.name() == name)
    }
}

fn say(verb: Verb, message: impl std::fmt::Display) {
    eprintln!("ecs-agent init {}: {message}", verb.name());
}

fn pid_file(env: &BTreeMap<String, String>) -> PathBuf {
    PathBuf::from(
        env.get("ECS_INIT_PID_FILE")
            .filter(|v| !v.is_empty())
            .map(String::as_str)
            .unwrap_or(PID_FILE),
    )
}

/// Runs `verb` and returns the init service's exit code.
pub fn main(verb: Verb) -> ExitCode {
    let process: BTreeMap<String, String> = std::env::vars().collect();
    match verb {
        Verb::PreStart => {
            let files = agent_env::config_files(&process);
            let env = agent_env::agent_environment(Runs::Process, process.clone(), &files);
            // A container's paths are its own: it gets the host's mounted.
            let dirs = if env
                .get("ECS_INIT_AGENT_IMAGE")
                .is_some_and(|v| !v.is_empty())
            {
                let host = container::HostDirs::from_env(&env, agent_env::update_dir(&env));
                vec![host.data.into(), host.log.into(), host.updates.into()]
            } else {
                directories(&env)
            };
            if let Err(e) = make_directories(&dirs) {
                say(verb, e);
                return ExitCode::Error;
            }
            crate::host_setup::main(Subcommand::HostSetup)
        }
        Verb::PostStop => crate::host_setup::main(Subcommand::HostTeardown),
        Verb::Stop => match supervise::stop(&pid_file(&process), STOP_WAIT) {
            Ok(message) => {
                say(verb, message);
                ExitCode::Success
            }
            Err(e) => {
                say(verb, e);
                ExitCode::Error
            }
        },
        Verb::Start => {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    say(verb, format!("cannot start the async runtime: {e}"));
                    return ExitCode::Error;
                }
            };
            match runtime.block_on(prepare_start(&process)) {
                Ok(start) => runtime.block_on(supervise::start(start)),
                Err(e) => {
                    say(verb, e);
                    ExitCode::Error
                }
            }
        }
    }
}

/// What `start` runs, and how: a process, or the container of
/// `ECS_INIT_AGENT_IMAGE` (read from the environment or the files).
async fn prepare_start(process: &BTreeMap<String, String>) -> Result<supervise::Start, String> {
    let files = agent_env::config_files(process);
    let settings = agent_env::agent_environment(Runs::Process, process.clone(), &files);
    let image = settings
        .get("ECS_INIT_AGENT_IMAGE")
        .filter(|v| !v.is_empty())
        .cloned();
    let (runner, env) = match image {
        None => {
            let agent =
                agent_binary(process).map_err(|e| format!("cannot find the agent binary: {e}"))?;
            (supervise::Runner::Process(agent), settings)
        }
        Some(image) => {
            let mut env = agent_env::agent_environment(Runs::Container, [], &files);
            let endpoint = settings
                .get("DOCKER_HOST")
                .filter(|v| !v.is_empty())
                .map(String::as_str)
                .unwrap_or("unix:///var/run/docker.sock");
            let docker = DockerClient::connect(endpoint)
                .await
                .map_err(|e| format!("cannot reach Docker at {endpoint}: {e}"))?;
            let dirs = container::HostDirs::from_env(&settings, agent_env::update_dir(&env));
            // The agent's bind sources (container metadata files) are
            // host paths under it.
            env.insert("ECS_HOST_DATA_DIR".into(), dirs.prefix.clone());
            (
                supervise::Runner::Container {
                    docker,
                    image,
                    dirs,
                },
                env,
            )
        }
    };
    let update_dir = agent_env::update_dir(&env).to_path_buf();
    Ok(supervise::Start {
        runner,
        env,
        update_dir,
        pid_file: pid_file(process),
    })
}

/// The binary to run as the agent: this one, unless `ECS_INIT_AGENT_BINARY`
/// names another. Resolved once, before an update can replace the file.
fn agent_binary(process: &BTreeMap<String, String>) -> std::io::Result<PathBuf> {
    match process
        .get("ECS_INIT_AGENT_BINARY")
        .filter(|v| !v.is_empty())
    {
        Some(path) => Ok(PathBuf::from(path)),
        None => std::env::current_exe(),
    }
}

/// The data directory, the log file's directory and the update directory
/// of an agent run as a process.
fn directories(env: &BTreeMap<String, String>) -> Vec<PathBuf> {
    let get = |k: &str| env.get(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    [
        get("ECS_DATADIR"),
        get("ECS_LOGFILE").and_then(|f| f.parent().map(Path::to_path_buf)),
        Some(agent_env::update_dir(env).to_path_buf()),
    ]
    .into_iter()
    .flatten()
    .collect()
}

fn make_directories(dirs: &[PathBuf]) -> Result<(), String> {
    for dir in dirs {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn verbs_by_name() {
        for verb in Verb::ALL {
            assert_eq!(Verb::from_name(verb.name()), Some(verb));
        }
        assert_eq!(Verb::from_name("pre-stop"), Some(Verb::Stop));
        assert_eq!(Verb::from_name("reload-cache"), None);
    }

    #[test]
    fn pre_start_makes_the_directories() {
        let dir = tempfile::tempdir().unwrap();
        let env: BTreeMap<String, String> = [
            ("ECS_DATADIR", dir.path().join("data")),
            ("ECS_LOGFILE", dir.path().join("log/ecs-agent.log")),
            ("ECS_UPDATE_DOWNLOAD_DIR", dir.path().join("cache")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.display().to_string()))
        .collect();
        make_directories(&directories(&env)).unwrap();
        for d in ["data", "log", "cache"] {
            assert!(dir.path().join(d).is_dir(), "{d}");
        }
    }
}
