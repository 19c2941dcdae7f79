//! `make test-in-docker` (README, "Running the tests in a container"):
//! the test image is built locally, and a test command runs inside it,
//! with this tree, the Docker socket and the toolchain mounted.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use e2e::{require_docker, workspace_root};

#[test]
fn make_test_in_docker_runs_cargo_test_inside_the_container() {
    require_docker();
    // Tests of this workspace, run by cargo inside the container; the
    // marker file Docker puts in every container shows where they ran,
    // and the Docker socket, iptables and /proc/sys are the host's. The
    // workspace-wide selection is `make test`'s, so cargo finds it built.
    let inside = "test -f /.dockerenv && docker version --format '{{.Server.Version}}' \
                  && iptables -t nat -S >/dev/null \
                  && test -w /proc/sys/net/ipv4/conf/all/route_localnet \
                  && cargo test --workspace --lib -- init::restart";
    let out = Command::new("make")
        .arg("-C")
        .arg(workspace_root())
        .arg("test-in-docker")
        .arg(format!("TEST_IN_DOCKER_CMD=sh -c \"{inside}\""))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("test result: ok. 3 passed"), "{text}");
}
