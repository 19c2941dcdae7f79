//! `make demo` (scripts/demo) does what the README promises: it starts
//! ecs-local and ecs-agent, runs a web task, shows it to the user, and on
//! Ctrl-C leaves no process or container behind.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use e2e::{docker_ids_with_label, free_port, require_docker};

/// Kills the demo's whole process group if the test fails half-way.
struct KillGroupOnDrop(std::process::Child);

impl Drop for KillGroupOnDrop {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let group = format!("-{}", self.0.id());
            let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn demo_runs_a_task_and_cleans_up_on_ctrl_c() {
    require_docker();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let port = free_port().unwrap();
    // The binaries the other tests run: the demo's own `cargo build`
    // resolves features without the test targets' and would compile a
    // second copy of much of the dependency tree.
    let built = e2e::binaries().agent.parent().unwrap().to_path_buf();
    let demo = Command::new(root.join("scripts/demo"))
        .env("ECS_LOCAL_PORT", port.to_string())
        .env("ECS_DEMO_BIN_DIR", &built)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        // Its own process group, so "Ctrl-C" reaches every process in it,
        // as a terminal would deliver it.
        .process_group(0)
        .spawn()
        .unwrap();
    let mut demo = KillGroupOnDrop(demo);
    let stdout = demo.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut output = Vec::new();
    let ready = loop {
        match rx.recv_timeout(Duration::from_secs(300)) {
            Ok(line) => {
                let done = line.contains("Press Ctrl-C");
                output.push(line);
                if done {
                    break true;
                }
            }
            Err(_) => break false,
        }
    };
    let text = output.join("\n");
    assert!(ready, "the demo never became ready:\n{text}");
    assert!(text.contains("Status   |  RUNNING"), "{text}");
    assert!(
        text.contains("hello from ecs-test/busybox"),
        "the web task answered:\n{text}"
    );
    assert!(
        text.contains("aws ecs stop-task"),
        "it tells the user how to go on:\n{text}"
    );
    assert_eq!(
        docker_ids_with_label(
            "com.amazonaws.ecs.task-definition-family",
            "ecs-demo-web",
            false
        )
        .len(),
        1
    );

    let pgid = demo.0.id().to_string();
    let ctrl_c = || {
        Command::new("kill")
            .args(["-INT", "--", &format!("-{pgid}")])
            .status()
            .unwrap();
    };
    let mut next_line = |what: &str| -> String {
        loop {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => {
                    output.push(line.clone());
                    if line.contains(what) {
                        return line;
                    }
                }
                Err(e) => panic!("no {what:?} from the demo ({e}):\n{}", output.join("\n")),
            }
        }
    };
    ctrl_c();
    // Once the clean-up has begun, a second Ctrl-C, as an impatient user
    // would press it, must not cut it short.
    next_line("demo: stopping ecs-agent and ecs-local");
    ctrl_c();
    next_line("demo: done; no process or container left behind");
    let status = e2e::wait_for("the demo to exit", Duration::from_secs(60), || {
        Ok(demo.0.try_wait()?)
    })
    .unwrap();
    // The INT trap exits 130 (128 + SIGINT), as a shell does for Ctrl-C;
    // the clean-up on EXIT keeps that status.
    assert_eq!(status.code(), Some(130), "{status:?}");
    // Nothing is left: no process in the group, nothing on the port, no container.
    let left = Command::new("pgrep").args(["-g", &pgid]).output().unwrap();
    assert!(
        left.stdout.is_empty(),
        "processes left: {}",
        String::from_utf8_lossy(&left.stdout)
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "ecs-local still listens"
    );
    assert!(docker_ids_with_label(
        "com.amazonaws.ecs.task-definition-family",
        "ecs-demo-web",
        true
    )
    .is_empty());
}
