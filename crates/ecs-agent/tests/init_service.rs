//! `ecs-agent init start` and `init stop` as processes, around a stand-in
//! agent (a shell script that exits with the codes it is given), so every
//! answer of the init service to an agent exit is seen for real: restarts
//! with pauses, the end on 0 and 5, the update on 42, signals passed on.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

/// Generous: the init service's pauses total a few seconds at most here.
const DEADLINE: Duration = Duration::from_secs(120);

/// Runs `$DIR/codes` line by line: run N exits with line N; with no line,
/// it waits for SIGTERM and exits 0.
const FAKE_AGENT: &str = r#"#!/bin/sh
n=$(cat "$FAKE_DIR/runs" 2>/dev/null || echo 0)
n=$((n + 1))
echo "$n" >"$FAKE_DIR/runs"
env >"$FAKE_DIR/env.$n"
code=$(sed -n "${n}p" "$FAKE_DIR/codes")
if [ -z "$code" ]; then
    trap 'echo "$n" >"$FAKE_DIR/terminated"; exit 0' TERM
    echo "$n" >"$FAKE_DIR/waiting"
    while :; do sleep 0.05; done
fi
exit "$code"
"#;

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new(codes: &str, config: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let f = Self { dir };
        std::fs::write(f.path("codes"), codes).unwrap();
        write_script(&f.agent(), FAKE_AGENT);
        std::fs::create_dir(f.path("updates")).unwrap();
        std::fs::write(
            f.path("ecs.config"),
            format!(
                "FAKE_DIR={}\nECS_UPDATE_DOWNLOAD_DIR={}\n{config}",
                f.dir.path().display(),
                f.path("updates").display()
            ),
        )
        .unwrap();
        f
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn agent(&self) -> PathBuf {
        self.path("agent")
    }

    fn init(&self, verb: &str) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ecs-agent"));
        cmd.args(["init", verb])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("ECS_INIT_CONFIG_FILES", self.path("ecs.config"))
            .env("ECS_INIT_AGENT_BINARY", self.agent())
            .env("ECS_INIT_PID_FILE", self.path("init.pid"));
        cmd
    }

    fn runs(&self) -> u32 {
        std::fs::read_to_string(self.path("runs"))
            .map(|s| s.trim().parse().unwrap())
            .unwrap_or(0)
    }

    fn wait_for_file(&self, name: &str) -> String {
        let start = Instant::now();
        loop {
            if let Ok(text) = std::fs::read_to_string(self.path(name)) {
                if !text.is_empty() {
                    return text;
                }
            }
            assert!(start.elapsed() < DEADLINE, "{name} never appeared");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn write_script(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn wait(child: &mut Child) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > DEADLINE {
            child.kill().unwrap();
            panic!("init start did not end");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sigterm(pid: u32) {
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn failures_are_restarted_and_a_terminal_exit_ends_the_service_with_five() {
    let f = Fixture::new(
        "1\n2\n1\n5\n",
        "ECS_CLUSTER=\"quoted\"\n#ECS_LOGLEVEL=debug\n",
    );
    let out = f.init("start").output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{log}");
    assert_eq!(f.runs(), 4, "{log}");
    assert_eq!(log.matches("restarting the agent in").count(), 3, "{log}");
    // The agent's environment: ecs-init's defaults, the file read as
    // ecs-init reads it (quotes kept; `#` makes no comment, only a name
    // that is not ECS_LOGLEVEL), the caller's PATH.
    let env = std::fs::read_to_string(f.path("env.1")).unwrap();
    assert!(
        !env.lines().any(|l| l.starts_with("ECS_LOGLEVEL=")),
        "{env}"
    );
    for line in [
        "ECS_CLUSTER=\"quoted\"",
        "ECS_DATADIR=/var/lib/ecs/data",
        "ECS_LOGFILE=/var/log/ecs/ecs-agent.log",
        "ECS_UPDATES_ENABLED=true",
        "ECS_ENABLE_TASK_IAM_ROLE=true",
    ] {
        assert!(env.lines().any(|l| l == line), "{line} not in\n{env}");
    }
    assert!(!f.path("init.pid").exists(), "the pid file is removed");
}

#[test]
fn a_clean_exit_ends_the_service_with_zero() {
    let f = Fixture::new("0\n", "");
    let out = f.init("start").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(f.runs(), 1);
}

#[test]
fn exit_42_installs_the_staged_update_and_starts_it_at_once() {
    let f = Fixture::new("42\n", "");
    // The update is the agent's image as `docker save` writes it; its
    // /agent here is a script that records that it ran, then exits 0.
    let new_agent = "#!/bin/sh\necho updated >\"$FAKE_DIR/updated\"\nexit 0\n";
    let bundle = docker_save_archive(new_agent.as_bytes());
    std::fs::write(f.path("updates/0a1b.ecs-update.tar"), bundle).unwrap();
    std::fs::write(f.path("updates/desired-image"), "0a1b.ecs-update.tar\n").unwrap();
    let out = f.init("start").output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert_eq!(std::fs::read_to_string(f.agent()).unwrap(), new_agent);
    assert_eq!(f.wait_for_file("updated"), "updated\n");
    assert!(log.contains("installed the update"), "{log}");
    assert!(!log.contains("restarting the agent in"), "no pause: {log}");
    assert!(!f.path("updates/desired-image").exists());
}

#[test]
fn exit_42_without_a_staged_update_starts_the_old_agent_again() {
    let f = Fixture::new("42\n0\n", "");
    let out = f.init("start").output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert_eq!(f.runs(), 2);
    assert!(
        log.contains("cannot install the staged update: no update is staged"),
        "{log}"
    );
}

#[test]
fn sigterm_is_passed_on_and_the_service_ends_with_zero() {
    let f = Fixture::new("", "");
    let mut init = f.init("start").spawn().unwrap();
    f.wait_for_file("waiting");
    sigterm(init.id());
    let status = wait(&mut init);
    assert_eq!(status.code(), Some(0));
    assert_eq!(f.wait_for_file("terminated").trim(), "1");
    assert_eq!(f.runs(), 1, "not restarted after a requested stop");
}

#[test]
fn init_stop_stops_a_running_init_start() {
    let f = Fixture::new("", "");
    let mut init = f.init("start").spawn().unwrap();
    f.wait_for_file("waiting");
    let out = f.init("stop").output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // `stop` returns once `start` has ended.
    let status = init.try_wait().unwrap().expect("init start has ended");
    assert_eq!(status.code(), Some(0));
    assert!(f.path("terminated").exists());
    let again = f.init("stop").output().unwrap();
    assert_eq!(again.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&again.stderr).contains("not running"));
}

/// A `docker save` archive of a one-layer image whose `/agent` is `agent`.
fn docker_save_archive(agent: &[u8]) -> Vec<u8> {
    fn add(builder: &mut tar::Builder<Vec<u8>>, name: &str, bytes: &[u8]) {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o755);
        header.set_cksum();
        builder.append_data(&mut header, name, bytes).unwrap();
    }
    let mut layer = tar::Builder::new(Vec::new());
    add(&mut layer, "agent", agent);
    let layer = layer.into_inner().unwrap();
    let manifest = r#"[{"Config":"config.json","RepoTags":["ecs-agent-rs:latest"],"Layers":["layer0/layer.tar"]}]"#;
    let mut outer = tar::Builder::new(Vec::new());
    add(&mut outer, "layer0/layer.tar", &layer);
    add(&mut outer, "config.json", b"{}");
    add(&mut outer, "manifest.json", manifest.as_bytes());
    outer.into_inner().unwrap()
}
