//! The `ecs-agent` binary's command line: Go-style flags, the print-and-exit
//! commands, and the exit codes the supervisor relies on.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};

fn agent(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ecs-agent"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn version_and_license_print_and_exit_zero() {
    let out = agent(&["-version"], &[]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("Amazon ECS Agent"), "{text}");
    assert!(text.contains("\tVersion: "));
    let out = agent(&["--license"], &[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Apache License"));
}

#[test]
fn bad_flags_exit_terminal_with_usage() {
    for args in [&["-nope"][..], &["-h"], &["-loglevel"]] {
        let out = agent(args, &[]);
        assert_eq!(out.status.code(), Some(5), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("Usage of ecs-agent"));
    }
}

#[test]
fn fatal_config_exits_one_naming_the_variable() {
    let out = agent(
        &[],
        &[
            ("ECS_INSTANCE_ATTRIBUTES", "{not json"),
            ("AWS_DEFAULT_REGION", "us-east-1"),
            ("ECS_AGENT_CONFIG_FILE_PATH", "/nonexistent/config.json"),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(log.contains("ECS_INSTANCE_ATTRIBUTES"), "{log}");
}

#[test]
fn bad_config_file_exits_one() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.json");
    std::fs::write(&file, r#"{"TaskCleanupWaitDuration": "10m"}"#).unwrap();
    let out = agent(
        &[],
        &[("ECS_AGENT_CONFIG_FILE_PATH", file.to_str().unwrap())],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("TaskCleanupWaitDuration"));
}

#[test]
fn logs_are_logfmt_and_honour_loglevel_flag() {
    let out = agent(
        &["-loglevel", "error"],
        &[
            ("ECS_INSTANCE_ATTRIBUTES", "{bad"),
            ("ECS_AGENT_CONFIG_FILE_PATH", "/nonexistent"),
        ],
    );
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(
        !log.contains("level=info"),
        "-loglevel error hides info: {log}"
    );
    let line = log.lines().find(|l| l.contains("level=error")).unwrap();
    assert!(
        line.contains(" time=") && line.contains(" msg=\""),
        "{line}"
    );
}

#[test]
fn healthcheck_fails_without_an_agent() {
    // Nothing listens on 51678 in the test environment: a transport error.
    let out = agent(
        &["-healthcheck"],
        &[("ECS_AGENT_HEALTHCHECK_HOST", "127.0.0.1")],
    );
    if std::net::TcpStream::connect("127.0.0.1:51678").is_err() {
        assert_eq!(out.status.code(), Some(1));
    }
}

/// Settings parsed but not acted on yet: one warning each, right after the
/// configuration is loaded, and none when nothing of the kind is set. A
/// Docker socket that does not exist ends the run before registration.
#[test]
fn unsupported_settings_are_warned_about_once_each_at_start_up() {
    let base = [
        ("AWS_DEFAULT_REGION", "us-east-1"),
        ("ECS_AGENT_CONFIG_FILE_PATH", "/nonexistent/config.json"),
        ("DOCKER_HOST", "unix:///nonexistent/docker.sock"),
    ];
    let out = agent(&["-ecs-attributes"], &base);
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(log.contains("Loading configuration"), "{log}");
    assert!(!log.contains("not supported yet"), "{log}");

    let mut env = base.to_vec();
    env.extend([
        ("ECS_POLL_METRICS", "true"),
        ("ECS_ENABLE_TASK_ENI", "true"),
        ("ECS_WARM_POOLS_CHECK", "false"),
    ]);
    let out = agent(&["-ecs-attributes"], &env);
    let log = String::from_utf8_lossy(&out.stdout);
    for name in ["ECS_POLL_METRICS", "ECS_ENABLE_TASK_ENI"] {
        let message =
            format!("msg=\"{name} is set but not supported yet by this agent; it has no effect\"");
        let lines = log
            .lines()
            .filter(|l| l.starts_with("level=warn ") && l.contains(&message))
            .count();
        assert_eq!(lines, 1, "{name}: {log}");
    }
    // At its default value a setting is not warned about.
    assert!(!log.contains("ECS_WARM_POOLS_CHECK"), "{log}");
}
