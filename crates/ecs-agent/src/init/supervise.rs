//! The `start` loop and the `stop` verb of the init service.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::process::Command;
use tokio::signal::unix::{signal, SignalKind};

use super::restart::{Backoff, Exit, Next};
use super::{container, say, staged_update, Verb};
use crate::docker::DockerClient;
use crate::exit::ExitCode;

/// How the agent runs: a child process of this one, or a container.
pub enum Runner {
    /// The binary to run; an update replaces it.
    Process(PathBuf),
    /// The image to run as the container `ecs-agent`; an update loads a
    /// new image under the same name.
    Container {
        docker: DockerClient,
        image: String,
        dirs: container::HostDirs,
    },
}

/// One run of the agent.
enum Launched {
    Child(tokio::process::Child),
    Container,
}

impl Runner {
    fn describe(&self) -> String {
        match self {
            Runner::Process(binary) => binary.display().to_string(),
            Runner::Container { image, .. } => format!("container {} of {image}", container::NAME),
        }
    }

    async fn launch(&self, env: &BTreeMap<String, String>) -> Result<Launched, String> {
        match self {
            Runner::Process(binary) => Command::new(binary)
                .env_clear()
                .envs(env)
                .stdin(std::process::Stdio::null())
                .spawn()
                .map(Launched::Child)
                .map_err(|e| e.to_string()),
            Runner::Container {
                docker,
                image,
                dirs,
            } => container::start(docker, container::create_body(image, env, dirs))
                .await
                .map(|()| Launched::Container)
                .map_err(|e| e.to_string()),
        }
    }

    async fn wait(&self, launched: &mut Launched) -> Exit {
        match (self, launched) {
            (_, Launched::Child(child)) => match child.wait().await {
                Ok(status) => match (status.code(), status.signal()) {
                    (Some(code), _) => Exit::Code(code),
                    (None, Some(sig)) => Exit::Signal(sig),
                    (None, None) => Exit::Code(1),
                },
                Err(e) => {
                    say(Verb::Start, format!("lost the agent process: {e}"));
                    Exit::Code(1)
                }
            },
            (Runner::Container { docker, .. }, Launched::Container) => {
                match container::wait(docker).await {
                    Ok(code) => Exit::Code(i32::try_from(code).unwrap_or(1)),
                    Err(e) => {
                        say(Verb::Start, format!("lost the agent container: {e}"));
                        Exit::Code(1)
                    }
                }
            }
            (Runner::Process(_), Launched::Container) => Exit::Code(1),
        }
    }

    /// SIGTERM to the agent, then waits for it to save its state and end.
    async fn stop(&self, launched: &mut Launched) {
        match (self, launched) {
            (_, Launched::Child(child)) => {
                if let Some(pid) = child.id() {
                    send_signal(pid, libc::SIGTERM);
                }
                match child.wait().await {
                    Ok(status) => say(Verb::Start, format!("the agent stopped: {status}")),
                    Err(e) => say(Verb::Start, format!("lost the agent process: {e}")),
                }
            }
            (Runner::Container { docker, .. }, Launched::Container) => {
                match container::stop(docker).await {
                    Ok(()) => say(Verb::Start, "the agent container stopped"),
                    Err(e) => say(Verb::Start, format!("cannot stop the agent container: {e}")),
                }
            }
            (Runner::Process(_), Launched::Container) => {}
        }
    }

    /// Installs the staged update; returns the bundle it came from.
    async fn install_update(&self, update_dir: &Path) -> Result<PathBuf, String> {
        match self {
            Runner::Process(binary) => {
                staged_update::apply(update_dir, binary).map_err(|e| e.to_string())
            }
            Runner::Container { docker, .. } => {
                staged_update::load_into_docker(update_dir, docker).await
            }
        }
    }
}

/// What `start` runs.
pub struct Start {
    pub runner: Runner,
    pub env: BTreeMap<String, String>,
    pub update_dir: PathBuf,
    pub pid_file: PathBuf,
}

/// Sends `sig` to process `pid`; false when there is no such process.
#[allow(unsafe_code)]
fn send_signal(pid: u32, sig: i32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        // 0 and negative IDs address process groups, never one process.
        return false;
    }
    // SAFETY: kill(2) takes no pointer; a stale pid is at worst ESRCH.
    unsafe { libc::kill(pid, sig) == 0 }
}

fn jitter() -> f64 {
    rand::random::<f64>()
}

/// Runs the agent until it ends for good or this process is asked to stop.
pub async fn start(s: Start) -> ExitCode {
    let verb = Verb::Start;
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        _ => {
            say(verb, "cannot install signal handlers");
            return ExitCode::Error;
        }
    };
    if let Err(e) = std::fs::write(&s.pid_file, format!("{}\n", std::process::id())) {
        say(
            verb,
            format!(
                "cannot write {} ({e}); `init stop` will not find this process",
                s.pid_file.display()
            ),
        );
    }
    let code = run_until_done(&s, &mut term, &mut int).await;
    let _ = std::fs::remove_file(&s.pid_file);
    code
}

async fn run_until_done(
    s: &Start,
    term: &mut tokio::signal::unix::Signal,
    int: &mut tokio::signal::unix::Signal,
) -> ExitCode {
    let verb = Verb::Start;
    let mut backoff = Backoff::default();
    loop {
        say(
            verb,
            format!("starting the agent ({})", s.runner.describe()),
        );
        let started = Instant::now();
        let mut launched = match s.runner.launch(&s.env).await {
            Ok(launched) => launched,
            Err(e) => {
                let pause = backoff.after_failure(jitter());
                say(
                    verb,
                    format!("cannot start the agent: {e}; retrying in {pause:.1?}"),
                );
                if pause_or_stop(pause, term, int).await {
                    return ExitCode::Success;
                }
                continue;
            }
        };
        let stop_requested = tokio::select! {
            exit = s.runner.wait(&mut launched) => Err(exit),
            _ = term.recv() => Ok("SIGTERM"),
            _ = int.recv() => Ok("SIGINT"),
        };
        let exit = match stop_requested {
            Ok(what) => {
                // The init service ends with 0 whatever the agent answers:
                // it was asked to stop, and a restart by systemd would
                // undo that.
                say(
                    verb,
                    format!("{what} received; stopping the agent (its tasks keep running)"),
                );
                s.runner.stop(&mut launched).await;
                return ExitCode::Success;
            }
            Err(exit) => exit,
        };
        say(verb, format!("the agent exited: {exit:?}"));
        match backoff.decide(exit, started.elapsed(), jitter()) {
            Next::Stop(code) => return code,
            Next::Update => match s.runner.install_update(&s.update_dir).await {
                Ok(bundle) => say(
                    verb,
                    format!(
                        "installed the update from {}; starting it",
                        bundle.display()
                    ),
                ),
                Err(e) => {
                    let pause = backoff.after_failure(jitter());
                    say(
                        verb,
                        format!("cannot install the staged update: {e}; starting the agent as it is in {pause:.1?}"),
                    );
                    if pause_or_stop(pause, term, int).await {
                        return ExitCode::Success;
                    }
                }
            },
            Next::Restart(pause) => {
                say(verb, format!("restarting the agent in {pause:.1?}"));
                if pause_or_stop(pause, term, int).await {
                    return ExitCode::Success;
                }
            }
        }
    }
}

/// Waits `pause`; true when a stop signal came first.
async fn pause_or_stop(
    pause: Duration,
    term: &mut tokio::signal::unix::Signal,
    int: &mut tokio::signal::unix::Signal,
) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(pause) => false,
        _ = term.recv() => true,
        _ = int.recv() => true,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StopError {
    #[error("{path}: {source}")]
    PidFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} does not hold a process ID")]
    BadPid(PathBuf),
    #[error("process {pid} is still running after {waited:?}")]
    StillRunning { pid: u32, waited: Duration },
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists() && !zombie(pid)
}

fn zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // The state follows the command name, which is in parentheses
            // and may hold spaces.
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(|s| s == "Z"))
        })
        .unwrap_or(false)
}

/// `stop`: SIGTERM to the `start` process named in `pid_file`, then waits
/// up to `wait` for it to end. Nothing running is not an error.
pub fn stop(pid_file: &Path, wait: Duration) -> Result<String, StopError> {
    let text = match std::fs::read_to_string(pid_file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok("not running".into());
        }
        Err(source) => {
            return Err(StopError::PidFile {
                path: pid_file.to_path_buf(),
                source,
            })
        }
    };
    let pid: u32 = text
        .trim()
        .parse()
        .map_err(|_| StopError::BadPid(pid_file.to_path_buf()))?;
    if !send_signal(pid, libc::SIGTERM) {
        let _ = std::fs::remove_file(pid_file);
        return Ok(format!("process {pid} was not running"));
    }
    let deadline = Instant::now() + wait;
    while alive(pid) {
        if Instant::now() >= deadline {
            return Err(StopError::StillRunning { pid, waited: wait });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(format!("stopped process {pid}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn stop_without_a_running_start_is_fine_and_a_bad_pid_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("init.pid");
        assert_eq!(stop(&file, Duration::ZERO).unwrap(), "not running");
        std::fs::write(&file, "nonsense").unwrap();
        assert!(matches!(
            stop(&file, Duration::ZERO),
            Err(StopError::BadPid(_))
        ));
        std::fs::write(&file, "0\n").unwrap();
        assert!(stop(&file, Duration::ZERO)
            .unwrap()
            .contains("was not running"));
    }

    #[test]
    fn stop_waits_for_the_process_to_end() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("init.pid");
        let mut child = std::process::Command::new("sleep")
            .arg("600")
            .spawn()
            .unwrap();
        std::fs::write(&file, format!("{}\n", child.id())).unwrap();
        // The child is reaped here, by another thread, as its parent would.
        let reaper = std::thread::spawn(move || child.wait().unwrap());
        let message = stop(&file, Duration::from_secs(600)).unwrap();
        assert!(message.starts_with("stopped process"), "{message}");
        assert_eq!(reaper.join().unwrap().signal(), Some(libc::SIGTERM));
    }
}
