//! The ecs-local web console in headless Chromium, with our agent running
//! real containers, under `--require-auth`: from loopback the page lists a
//! task soon after `run-task` and shows it RUNNING, read-only; from the
//! host's Docker bridge address it asks for a key pair first, refuses a
//! wrong one, and then lets the operator stop the task (shown STOPPED with
//! its exit code) and change a service's desired count; a task stopped
//! with `aws ecs stop-task` shows STOPPED with its exit code at loopback. A phone-sized
//! screenshot of each view goes to `target/test-output/console/`.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use e2e::browser::{test_output_dir, Browser, PHONE};
use e2e::{require_docker, Agent, AgentOptions, Plane, ACCESS_KEY, SECRET_KEY, TEST_IMAGE};
use serde_json::json;

const CONNECT: Duration = Duration::from_secs(90);
/// The page polls every 2 s; this leaves room for a loaded machine.
const PAGE: Duration = Duration::from_secs(20);

fn task_card(arn: &str, status: &str) -> String {
    format!("document.querySelector('article[data-task-arn=\"{arn}\"][data-last-status=\"{status}\"]') !== null")
}

/// Sets an input's value as typing would, so the page's handlers see it.
fn type_into(selector: &str, value: &str) -> String {
    format!(
        "(() => {{ const i = document.querySelector({sel}); i.value = {val}; i.dispatchEvent(new Event('input', {{bubbles: true}})); return true; }})()",
        sel = json!(selector),
        val = json!(value)
    )
}

#[test]
fn the_console_shows_tasks_live_and_lets_only_a_signed_in_operator_act() {
    require_docker();
    let shots = test_output_dir("console").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let credentials = dir.path().join("credentials");
    std::fs::write(
        &credentials,
        format!("[ops]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n"),
    )
    .unwrap();
    let port = e2e::free_port().unwrap();
    let listen = format!("0.0.0.0:{port}");
    let plane = Plane::start_with_args(
        &dir.path().join("plane"),
        port,
        &[
            "--listen",
            &listen,
            "--require-auth",
            "--credentials",
            &credentials.display().to_string(),
        ],
    )
    .unwrap();
    let bridge = e2e::docker_bridge_ip().unwrap();
    let _agent = Agent::start(&plane, &AgentOptions::new(&dir.path().join("agent"))).unwrap();
    let cli = plane.cli();
    cli.wait_connected_instance("default", CONNECT).unwrap();
    let definition = json!([{
        "name": "web",
        "image": TEST_IMAGE,
        "command": ["httpd", "-f", "-p", "8080"],
        "memory": 32,
        "essential": true,
        "portMappings": [{"containerPort": 8080, "hostPort": 0, "protocol": "tcp"}],
        "healthCheck": {"command": ["CMD-SHELL", "true"], "interval": 5, "timeout": 2, "retries": 2}
    }]);
    cli.register("console-web", &definition).unwrap();

    // From loopback: read-only, no sign-in needed.
    let mut local = Browser::start(PHONE.0, PHONE.1, &["127.0.0.1"]).unwrap();
    local
        .open(&format!("http://127.0.0.1:{port}/console#tasks"))
        .unwrap();
    local
        .wait_for("the page to read the state", PAGE, || {
            "document.querySelector('#status').innerText.startsWith('Updated')".to_owned()
        })
        .unwrap();
    let arn = cli.run_task("default", "console-web").unwrap();
    local
        .wait_for("the new task listed", PAGE, || {
            format!("document.querySelector('article[data-task-arn=\"{arn}\"]') !== null")
        })
        .unwrap();
    cli.wait_task_status("default", &arn, "RUNNING", CONNECT)
        .unwrap();
    local
        .wait_for("the task shown RUNNING", PAGE, || {
            task_card(&arn, "RUNNING")
        })
        .unwrap();
    local
        .wait_for("its port binding", PAGE, || {
            "document.body.innerText.includes('→8080/tcp')".to_owned()
        })
        .unwrap();
    let text = local.text().unwrap();
    assert!(text.contains("Read-only"), "{text}");
    assert_eq!(
        local
            .eval("document.querySelectorAll('[data-action]').length")
            .unwrap(),
        json!(0),
        "a caller that did not sign in was offered actions"
    );
    // Everything the page loaded came from the plane.
    assert_eq!(
        local
            .eval("performance.getEntriesByType('resource').every(e => e.name.startsWith(location.origin))")
            .unwrap(),
        json!(true)
    );
    // The page's HMAC is RFC 4231's, as the plane's is.
    assert_eq!(
        local
            .eval("(() => { const c = window.ecsLocalConsole; return c.hex(c.hmacSha256(c.utf8('Jefe'), c.utf8('what do ya want for nothing?'))); })()")
            .unwrap(),
        json!("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    );
    local.screenshot(&shots.join("tasks.png")).unwrap();
    for (view, ready) in [
        ("clusters", "article[data-cluster=\"default\"]"),
        ("instances", "article[data-instance-arn]"),
    ] {
        local
            .eval(&format!("location.hash = '{view}'; true"))
            .unwrap();
        local
            .wait_for(&format!("the {view} view"), PAGE, || {
                format!("document.querySelector('{ready}') !== null")
            })
            .unwrap();
        local
            .screenshot(&shots.join(format!("{view}.png")))
            .unwrap();
    }
    let instances = local.text().unwrap();
    assert!(instances.contains("connected"), "{instances}");
    assert!(instances.contains("MiB in use"), "{instances}");

    // From the bridge address: a key pair first.
    let mut remote = Browser::start(PHONE.0, PHONE.1, &[&bridge]).unwrap();
    remote
        .open(&format!("http://{bridge}:{port}/console#tasks"))
        .unwrap();
    remote
        .wait_for("the sign-in form", PAGE, || {
            "!document.getElementById('signin').hidden".to_owned()
        })
        .unwrap();
    assert_eq!(
        remote
            .eval("document.querySelector('[data-task-arn]') === null")
            .unwrap(),
        json!(true),
        "tasks shown before signing in"
    );
    remote.screenshot(&shots.join("sign-in.png")).unwrap();
    remote
        .eval(&type_into("#access-key-id", ACCESS_KEY))
        .unwrap();
    remote
        .eval(&type_into("#secret-access-key", "not-the-secret"))
        .unwrap();
    remote
        .eval("document.getElementById('signin-submit').click(); true")
        .unwrap();
    remote
        .wait_for("the refusal", PAGE, || {
            "document.getElementById('signin-error').innerText.length > 0".to_owned()
        })
        .unwrap();
    remote
        .eval(&type_into("#secret-access-key", SECRET_KEY))
        .unwrap();
    remote
        .eval("document.getElementById('signin-submit').click(); true")
        .unwrap();
    remote
        .wait_for("the operator's view", PAGE, || {
            format!(
                "document.getElementById('who').innerText.includes('{ACCESS_KEY}') && {}",
                task_card(&arn, "RUNNING")
            )
        })
        .unwrap();

    // Stop the task from the page.
    remote
        .eval(&format!(
            "document.querySelector('button[data-action=\"stop-task\"][data-task-arn=\"{arn}\"]').click(); true"
        ))
        .unwrap();
    let stopped = cli
        .wait_task_status("default", &arn, "STOPPED", CONNECT)
        .unwrap();
    assert!(
        stopped["stoppedReason"]
            .as_str()
            .unwrap_or_default()
            .contains(ACCESS_KEY),
        "{stopped}"
    );
    let exit_code = stopped["containers"][0]["exitCode"].clone();
    assert!(exit_code.is_number(), "{stopped}");
    remote
        .wait_for("the task shown STOPPED with its exit code", PAGE, || {
            format!(
                "(() => {{ const card = document.querySelector('article[data-task-arn=\"{arn}\"][data-last-status=\"STOPPED\"]'); return card !== null && card.querySelector('.exit').innerText === '{exit_code}'; }})()"
            )
        })
        .unwrap();
    remote.screenshot(&shots.join("task-stopped.png")).unwrap();

    // A task stopped with the AWS CLI shows up the same on the read-only
    // page at loopback.
    let second = cli.run_task("default", "console-web").unwrap();
    cli.wait_task_status("default", &second, "RUNNING", CONNECT)
        .unwrap();
    local.eval("location.hash = 'tasks'; true").unwrap();
    local
        .wait_for("the second task shown RUNNING", PAGE, || {
            task_card(&second, "RUNNING")
        })
        .unwrap();
    cli.ecs(&["stop-task", "--task", &second]).unwrap();
    let stopped = cli
        .wait_task_status("default", &second, "STOPPED", CONNECT)
        .unwrap();
    let exit_code = stopped["containers"][0]["exitCode"].clone();
    assert!(exit_code.is_number(), "{stopped}");
    local
        .wait_for("the CLI-stopped task shown STOPPED with its exit code", PAGE, || {
            format!(
                "(() => {{ const card = document.querySelector('article[data-task-arn=\"{second}\"][data-last-status=\"STOPPED\"]'); return card !== null && card.querySelector('.exit').innerText === '{exit_code}'; }})()"
            )
        })
        .unwrap();

    // Change a service's desired count from the page.
    cli.register_simple("console-sleep", &["sleep", "600"])
        .unwrap();
    cli.ecs(&[
        "create-service",
        "--service-name",
        "console-svc",
        "--task-definition",
        "console-sleep",
        "--desired-count",
        "1",
    ])
    .unwrap();
    remote.eval("location.hash = 'services'; true").unwrap();
    remote
        .wait_for("the service", PAGE, || {
            "document.querySelector('input[data-service=\"console-svc\"]') !== null".to_owned()
        })
        .unwrap();
    remote
        .eval(&type_into("input[data-service=\"console-svc\"]", "2"))
        .unwrap();
    remote
        .eval("document.querySelector('button[data-action=\"desired-count\"][data-service=\"console-svc\"]').click(); true")
        .unwrap();
    e2e::wait_for("desired count 2", PAGE, || {
        let v = cli.ecs(&["describe-services", "--services", "console-svc"])?;
        Ok((v["services"][0]["desiredCount"] == 2).then_some(()))
    })
    .unwrap();
    e2e::wait_for("two service tasks running", CONNECT, || {
        let v = cli.ecs(&["describe-services", "--services", "console-svc"])?;
        Ok((v["services"][0]["runningCount"] == 2).then_some(()))
    })
    .unwrap();
    remote
        .wait_for("the service shown with two running", PAGE, || {
            "document.querySelector('article[data-service=\"console-svc\"]').innerText.includes('2 running')".to_owned()
        })
        .unwrap();
    remote.screenshot(&shots.join("services.png")).unwrap();
    for shot in [
        "tasks",
        "clusters",
        "instances",
        "sign-in",
        "task-stopped",
        "services",
    ] {
        let bytes = std::fs::read(shots.join(format!("{shot}.png"))).unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "{shot}.png is not a PNG");
    }

    cli.ecs(&[
        "update-service",
        "--service",
        "console-svc",
        "--desired-count",
        "0",
    ])
    .unwrap();
    cli.ecs(&["delete-service", "--service", "console-svc", "--force"])
        .unwrap();
}
