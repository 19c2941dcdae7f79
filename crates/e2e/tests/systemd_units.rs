//! The systemd units in packaging/systemd: `systemd-analyze verify` finds
//! nothing to say about them, and their restart settings answer the
//! agent's exit codes as docs/operations.md §3 says.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;

use e2e::systemd_unit::ServiceUnit;
use e2e::workspace_root;

fn unit_path(name: &str) -> PathBuf {
    workspace_root().join("packaging/systemd").join(name)
}

#[test]
fn systemd_analyze_verify_has_nothing_to_say() {
    // verify checks that each command exists: the units name the installed
    // paths, so they are checked here with this build's binaries in place.
    let binaries = e2e::binaries();
    let dir = tempfile::tempdir().unwrap();
    let mut units = Vec::new();
    for name in ["ecs.service", "ecs-local.service"] {
        let text = std::fs::read_to_string(unit_path(name))
            .unwrap()
            .replace("/usr/bin/ecs-agent", &binaries.agent.display().to_string())
            .replace("/usr/bin/ecs-local", &binaries.plane.display().to_string());
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        units.push(path);
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(&units)
        .output()
        .expect("systemd-analyze runs (scripts/setup installs systemd)");
    // verify exits 0 after warnings it prints about values it ignores, so
    // its silence is the check.
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    assert_eq!(said.trim(), "", "systemd-analyze verify said something");
}

#[test]
fn the_agent_unit_runs_the_init_service_and_restarts_as_ecs_init_does() {
    let unit = ServiceUnit::read(&unit_path("ecs.service")).unwrap();
    assert_eq!(
        unit.one("ExecStartPre"),
        Some("/usr/bin/ecs-agent init pre-start")
    );
    assert_eq!(unit.one("ExecStart"), Some("/usr/bin/ecs-agent init start"));
    assert_eq!(unit.one("ExecStop"), Some("/usr/bin/ecs-agent init stop"));
    assert_eq!(
        unit.one("ExecStopPost"),
        Some("/usr/bin/ecs-agent init post-stop")
    );
    // `init start` exits 5 when the agent does, and systemd must not
    // restart it then; it restarts after any other failure.
    assert_eq!(unit.one("Restart"), Some("on-failure"));
    assert_eq!(unit.one("RestartPreventExitStatus"), Some("5"));
    assert_eq!(unit.one("RestartSec"), Some("10s"));
    // Only `init start` gets SIGTERM; it passes it on and waits.
    assert_eq!(unit.one("KillMode"), Some("mixed"));
    assert_eq!(
        unit.all("EnvironmentFile"),
        vec!["-/var/lib/ecs/ecs.config", "-/etc/ecs/ecs.config"]
    );
    let local = ServiceUnit::read(&unit_path("ecs-local.service")).unwrap();
    assert_eq!(local.one("Restart"), Some("on-failure"));
    // ecs-local exits 2 on a bad command line: restarting cannot help.
    assert_eq!(local.one("RestartPreventExitStatus"), Some("2"));
}
