//! The Debian package on this host (docs/operations.md §1.1): installed, its
//! ecs-local and its agent run with the commands their units give (this
//! host has no systemd as PID 1), the instance registers and runs a task,
//! the package is upgraded to a rebuilt one with the task still running
//! and the agent restarted on the new binary, and a purge leaves nothing
//! of the package behind.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use e2e::systemd_unit::ServiceUnit;
use e2e::{
    docker_inspect, free_port, host_routing_lock, require_docker, static_binaries, wait_for,
    workspace_root, Cli,
};

const PACKAGE: &str = "ecs-agent-rs";
const CONFIG: &str = "/etc/ecs/ecs.config";
const LOCAL_CONFIG: &str = "/etc/ecs/ecs-local.config";
const UNIT_DIR: &str = "/lib/systemd/system";
const CLUSTER: &str = "deb-test";
const WAIT: Duration = Duration::from_secs(120);

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn installed_version() -> Option<String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Status} ${Version}", PACKAGE])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.strip_prefix("install ok installed ")
        .map(str::to_string)
}

fn build_deb(version: &str, out: &Path) -> PathBuf {
    let (agent, plane) = static_binaries();
    let built = run(Command::new(workspace_root().join("packaging/deb/build"))
        .arg(version)
        .arg(agent)
        .arg(plane)
        .arg(out));
    PathBuf::from(String::from_utf8_lossy(&built.stdout).trim())
}

/// Puts the host back as it was, also when the test fails: the package
/// purged and the files moved aside put back.
struct Host {
    moved_aside: Vec<(PathBuf, PathBuf)>,
    /// Whether `/etc/ecs` was there before the package.
    had_etc_ecs: bool,
}

impl Host {
    fn take() -> Self {
        assert!(
            installed_version().is_none(),
            "{PACKAGE} is installed on this host; this test would purge it, so purge it first"
        );
        assert!(
            !Path::new("/var/lib/ecs/data/ecs-agent.redb").exists(),
            "an agent's state is in /var/lib/ecs/data; this test would run with it"
        );
        let had_etc_ecs = Path::new("/etc/ecs").exists();
        let mut moved_aside = Vec::new();
        for path in [CONFIG, LOCAL_CONFIG] {
            let path = PathBuf::from(path);
            if path.exists() {
                let aside = path.with_extension("before-deb-test");
                std::fs::rename(&path, &aside).unwrap();
                moved_aside.push((path, aside));
            }
        }
        Self {
            moved_aside,
            had_etc_ecs,
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if installed_version().is_some() {
            let _ = Command::new("/usr/bin/ecs-agent")
                .args(["init", "post-stop"])
                .output();
            let _ = Command::new("dpkg").args(["--purge", PACKAGE]).output();
        }
        let _ = std::fs::remove_file(LOCAL_CONFIG);
        for (path, aside) in &self.moved_aside {
            let _ = std::fs::rename(aside, path);
        }
    }
}

/// One of the package's units, run by hand as systemd would run it; its
/// main process is killed if the test ends without stopping it.
struct Service {
    unit: ServiceUnit,
    env: BTreeMap<String, String>,
    main: Option<Child>,
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(child) = &mut self.main {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Service {
    /// Reads the installed unit and the files it names as they are now.
    fn load(name: &str) -> Self {
        let unit = ServiceUnit::read(&Path::new(UNIT_DIR).join(name)).unwrap();
        let env = unit.environment().unwrap();
        Self {
            unit,
            env,
            main: None,
        }
    }

    fn command(&self, key: &str) -> Command {
        let line = self
            .unit
            .one(key)
            .unwrap_or_else(|| panic!("{key} in the unit"));
        self.unit.command(line, &self.env).unwrap()
    }

    /// `ExecStartPre`, then `ExecStart` in the background, its output in
    /// `log`.
    fn start(&mut self, log: &Path) {
        if self.unit.one("ExecStartPre").is_some() {
            run(&mut self.command("ExecStartPre"));
        }
        let file = std::fs::File::options()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = self
            .command("ExecStart")
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        self.main = Some(child);
    }

    /// `ExecStop`, then `ExecStopPost`, as `systemctl stop` runs them.
    fn stop(&mut self) {
        run(&mut self.command("ExecStop"));
        if let Some(main) = self.main.take() {
            // `init stop` returns once `init start` has ended.
            reap(main);
        }
        if self.unit.one("ExecStopPost").is_some() {
            run(&mut self.command("ExecStopPost"));
        }
    }
}

fn reap(mut child: Child) {
    let deadline = Instant::now() + WAIT;
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the service did not end");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Removes the test task's containers, also when the test fails.
struct TaskContainers(Vec<String>);

impl Drop for TaskContainers {
    fn drop(&mut self) {
        e2e::remove_task_containers(&self.0);
    }
}

fn task_container(cli: &Cli, task_arn: &str) -> String {
    cli.describe_task(CLUSTER, task_arn).unwrap()["containers"][0]["runtimeId"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn install_run_upgrade_with_a_task_running_and_purge() {
    require_docker();
    // pre-start and post-stop change this host's routing.
    let _routing = host_routing_lock().unwrap();
    let work = tempfile::tempdir().unwrap();
    let version = env!("CARGO_PKG_VERSION");
    let first = build_deb(&format!("{version}-1"), work.path());
    let second = build_deb(&format!("{version}-2"), work.path());
    let host = Host::take();

    run(Command::new("dpkg").arg("-i").arg(&first));
    assert_eq!(
        installed_version().as_deref(),
        Some(&*format!("{version}-1"))
    );
    for path in [
        "/usr/bin/ecs-agent",
        "/usr/bin/ecs-local",
        "/lib/systemd/system/ecs.service",
        "/lib/systemd/system/ecs-local.service",
        CONFIG,
    ] {
        assert!(Path::new(path).is_file(), "{path}");
    }
    for dir in ["/var/lib/ecs/data", "/var/log/ecs", "/var/cache/ecs"] {
        assert!(Path::new(dir).is_dir(), "{dir}");
    }
    // The installed units are verified where they are, with the installed
    // binaries.
    let out = run(Command::new("systemd-analyze").args([
        "verify",
        "/lib/systemd/system/ecs.service",
        "/lib/systemd/system/ecs-local.service",
    ]));
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), "");

    // ecs-local from the package, on a port of this test's.
    let port = free_port().unwrap();
    std::fs::write(
        LOCAL_CONFIG,
        format!(
            "ECS_LOCAL_LISTEN=127.0.0.1:{port}\nECS_LOCAL_DATA_DIR={}\n\
             ECS_LOCAL_OPTIONS=--log-format json --heartbeat-interval 5\n",
            work.path().join("plane").display()
        ),
    )
    .unwrap();
    let plane_log = work.path().join("ecs-local.log");
    let mut plane = Service::load("ecs-local.service");
    plane.start(&plane_log);
    let endpoint = format!("http://127.0.0.1:{port}");
    wait_for("ecs-local to listen", WAIT, || {
        Ok(std::net::TcpStream::connect(("127.0.0.1", port))
            .ok()
            .map(|_| ()))
    })
    .unwrap();
    let cli = Cli::at(&endpoint);
    cli.ecs(&["create-cluster", "--cluster-name", CLUSTER])
        .unwrap();
    // ECS_LOCAL_OPTIONS reached the command line: every line is JSON.
    let text = std::fs::read_to_string(&plane_log).unwrap();
    let first = text.lines().next().unwrap_or_default();
    let line: serde_json::Value = serde_json::from_str(first)
        .unwrap_or_else(|e| panic!("ecs-local did not log JSON ({e}): {text}"));
    assert!(line["level"].is_string(), "{first}");

    // The operator's ecs.config, then the agent's service.
    let config = format!(
        "ECS_CLUSTER={CLUSTER}\nECS_BACKEND_HOST={endpoint}\nAWS_DEFAULT_REGION=us-east-1\n\
         AWS_ACCESS_KEY_ID=AKIDEXAMPLE\nAWS_SECRET_ACCESS_KEY=secret\n\
         AWS_EC2_METADATA_DISABLED=true\nECS_IMAGE_PULL_BEHAVIOR=prefer-cached\n\
         ECS_CONTAINER_STOP_TIMEOUT=2s\n"
    );
    std::fs::write(CONFIG, &config).unwrap();
    let agent_log = work.path().join("ecs-service.log");
    let mut agent = Service::load("ecs.service");
    agent.start(&agent_log);
    let logs = || {
        format!(
            "{}\n{}",
            std::fs::read_to_string(&agent_log).unwrap_or_default(),
            std::fs::read_to_string(&plane_log).unwrap_or_default()
        )
    };
    let instance = cli
        .wait_connected_instance(CLUSTER, WAIT)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", logs()));
    let instance_arn = instance["containerInstanceArn"].clone();
    cli.register_simple("deb-sleeper", &["sleep", "600"])
        .unwrap();
    let task_arn = cli.run_task(CLUSTER, "deb-sleeper").unwrap();
    let _task_containers = TaskContainers(vec![task_arn.clone()]);
    cli.wait_task_status(CLUSTER, &task_arn, "RUNNING", WAIT)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", logs()));
    let container = task_container(&cli, &task_arn);
    // The agent writes where the package put its directories.
    assert!(Path::new("/var/lib/ecs/data/ecs-agent.redb").is_file());
    assert!(std::fs::read_to_string("/var/log/ecs/ecs-agent.log")
        .unwrap()
        .contains("Starting Amazon ECS Agent"));

    // Upgrade with the task running: the package is replaced, the agent
    // restarted on the new binary, as `systemctl restart ecs` does.
    run(Command::new("dpkg").arg("-i").arg(&second));
    assert_eq!(
        installed_version().as_deref(),
        Some(&*format!("{version}-2"))
    );
    assert_eq!(
        std::fs::read_to_string(CONFIG).unwrap(),
        config,
        "an upgrade never overwrites ecs.config"
    );
    agent.stop();
    let inspected = docker_inspect(&container).unwrap();
    assert_eq!(inspected["State"]["Running"], true, "the task kept running");
    let connections_before = logs().matches("connected to ACS").count();
    let mut agent = Service::load("ecs.service");
    agent.start(&agent_log);
    wait_for("the upgraded agent to connect", WAIT, || {
        Ok((logs().matches("connected to ACS").count() > connections_before).then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", logs()));
    let again = cli.wait_connected_instance(CLUSTER, WAIT).unwrap();
    assert_eq!(again["containerInstanceArn"], instance_arn);
    assert_eq!(task_container(&cli, &task_arn), container);
    let inspected = docker_inspect(&container).unwrap();
    assert_eq!(inspected["State"]["Running"], true);
    assert_eq!(inspected["RestartCount"], 0);
    // The upgraded agent manages the task.
    cli.ecs(&["stop-task", "--cluster", CLUSTER, "--task", &task_arn])
        .unwrap();
    cli.wait_task_status(CLUSTER, &task_arn, "STOPPED", WAIT)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", logs()));

    // Purge: stop the services as prerm does without systemd, then
    // nothing of the package is left.
    agent.stop();
    drop(plane);
    std::fs::remove_file(LOCAL_CONFIG).unwrap();
    run(Command::new("dpkg").args(["--purge", PACKAGE]));
    assert_eq!(installed_version(), None);
    for path in [
        "/usr/bin/ecs-agent",
        "/usr/bin/ecs-local",
        "/lib/systemd/system/ecs.service",
        "/lib/systemd/system/ecs-local.service",
        CONFIG,
        "/var/lib/ecs/data/ecs-agent.redb",
        "/var/log/ecs/ecs-agent.log",
    ] {
        assert!(!Path::new(path).exists(), "{path} is left after purge");
    }
    for dir in ["/var/lib/ecs/data", "/var/log/ecs", "/var/cache/ecs"] {
        assert!(
            !Path::new(dir).exists(),
            "{dir} was empty and is left after purge"
        );
    }
    if !host.had_etc_ecs {
        assert!(
            !Path::new("/etc/ecs").exists(),
            "/etc/ecs is left after purge"
        );
    }
    drop(host);
}
