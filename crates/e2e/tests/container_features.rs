//! Container-definition features, each checked on the real Docker engine:
//! a task definition registered with the AWS CLI goes through ecs-local's
//! rendering and the agent's create request, and `docker inspect` (or the
//! container's own behaviour) shows the field took effect.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use e2e::{docker_inspect, require_docker, Agent, AgentOptions, Plane, TEST_IMAGE};
use serde_json::{json, Value};

const CONNECT: Duration = Duration::from_secs(60);
const START: Duration = Duration::from_secs(40);

struct Setup {
    _dir: tempfile::TempDir,
    plane: Plane,
    _agent: Agent,
}

fn setup(env: &[(&str, &str)]) -> Setup {
    require_docker();
    let dir = tempfile::tempdir().unwrap();
    let plane = Plane::start(&dir.path().join("plane")).unwrap();
    let mut options = AgentOptions::new(&dir.path().join("agent"));
    for (k, v) in env {
        options = options.env(k, v);
    }
    let agent = Agent::start(&plane, &options).unwrap();
    plane
        .cli()
        .wait_connected_instance("default", CONNECT)
        .unwrap();
    Setup {
        _dir: dir,
        plane,
        _agent: agent,
    }
}

fn container<'a>(task: &'a Value, name: &str) -> &'a Value {
    task["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap()
}

fn runtime_id(task: &Value, name: &str) -> String {
    container(task, name)["runtimeId"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Registers `family` with these container definitions (and task-level
/// extras) and runs it; returns the task once RUNNING.
fn run(s: &Setup, family: &str, defs: Value, extra: &[&str]) -> (String, Value) {
    let cli = s.plane.cli();
    let mut args = vec![
        "register-task-definition".to_string(),
        "--family".into(),
        family.into(),
        "--container-definitions".into(),
        defs.to_string(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    cli.ecs(&refs).unwrap();
    let arn = cli.run_task("default", family).unwrap();
    let task = cli
        .wait_task_status("default", &arn, "RUNNING", START)
        .unwrap();
    (arn, task)
}

fn exec(id: &str, cmd: &[&str]) -> (bool, String) {
    let out = std::process::Command::new("docker")
        .args(["exec", id])
        .args(cmd)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn container_definition_fields_reach_docker() {
    let s = setup(&[]);
    let defs = json!([{
        "name": "app",
        "image": TEST_IMAGE,
        "entryPoint": ["sh", "-c"],
        "command": ["echo started; echo nofile=$(ulimit -n); sleep 600"],
        "environment": [{"name": "GREETING", "value": "hello"}],
        "workingDirectory": "/tmp",
        "user": "nobody",
        "hostname": "app-host",
        "dockerLabels": {"team": "platform"},
        "cpu": 128,
        "memory": 64,
        "memoryReservation": 32,
        "ulimits": [{"name": "nofile", "softLimit": 1024, "hardLimit": 2048}],
        "readonlyRootFilesystem": true,
        "dnsServers": ["127.0.0.1"],
        "dnsSearchDomains": ["example.internal"],
        "extraHosts": [{"hostname": "db.local", "ipAddress": "10.0.0.5"}],
        "linuxParameters": {
            "capabilities": {"add": ["NET_ADMIN"], "drop": ["MKNOD"]},
            "initProcessEnabled": true,
            "sharedMemorySize": 64,
            "tmpfs": [{"containerPath": "/scratch", "size": 16}],
            "devices": [{"hostPath": "/dev/null", "containerPath": "/dev/mynull", "permissions": ["read"]}]
        },
        "logConfiguration": {"logDriver": "json-file", "options": {"max-size": "1m"}},
        "essential": true
    }]);
    let (_, task) = run(&s, "fields", defs, &[]);
    let id = runtime_id(&task, "app");
    let i = docker_inspect(&id).unwrap();
    let (config, host) = (&i["Config"], &i["HostConfig"]);
    assert_eq!(config["Entrypoint"], json!(["sh", "-c"]), "entryPoint");
    assert_eq!(
        config["Cmd"],
        json!(["echo started; echo nofile=$(ulimit -n); sleep 600"]),
        "command"
    );
    assert!(
        config["Env"]
            .as_array()
            .unwrap()
            .contains(&json!("GREETING=hello")),
        "environment"
    );
    assert_eq!(config["WorkingDir"], "/tmp", "workingDirectory");
    assert_eq!(config["User"], "nobody", "user");
    assert_eq!(config["Hostname"], "app-host", "hostname");
    assert_eq!(config["Labels"]["team"], "platform", "dockerLabels");
    assert_eq!(
        config["Labels"]["com.amazonaws.ecs.container-name"], "app",
        "agent labels"
    );
    assert_eq!(host["CpuShares"], 128, "cpu");
    assert_eq!(host["Memory"], 64 * 1024 * 1024, "memory");
    assert_eq!(
        host["MemoryReservation"],
        32 * 1024 * 1024,
        "memoryReservation"
    );
    assert_eq!(
        host["Ulimits"][0],
        json!({"Name": "nofile", "Soft": 1024, "Hard": 2048}),
        "ulimits"
    );
    assert_eq!(host["ReadonlyRootfs"], true, "readonlyRootFilesystem");
    assert_eq!(host["Dns"], json!(["127.0.0.1"]), "dnsServers");
    assert_eq!(
        host["DnsSearch"],
        json!(["example.internal"]),
        "dnsSearchDomains"
    );
    assert_eq!(
        host["ExtraHosts"],
        json!(["db.local:10.0.0.5"]),
        "extraHosts"
    );
    assert_eq!(host["CapAdd"], json!(["NET_ADMIN"]), "capabilities.add");
    assert_eq!(host["CapDrop"], json!(["MKNOD"]), "capabilities.drop");
    assert_eq!(host["Init"], true, "initProcessEnabled");
    assert_eq!(host["ShmSize"], 64 * 1024 * 1024, "sharedMemorySize");
    assert!(
        host["Tmpfs"]["/scratch"]
            .as_str()
            .unwrap()
            .contains("size=16m"),
        "tmpfs"
    );
    assert_eq!(
        host["Devices"][0]["PathInContainer"], "/dev/mynull",
        "devices"
    );
    assert_eq!(
        host["LogConfig"],
        json!({"Type": "json-file", "Config": {"max-size": "1m"}}),
        "logConfiguration"
    );
    // And they hold inside the running container.
    assert_eq!(exec(&id, &["id", "-un"]).1.trim(), "nobody");
    assert_eq!(exec(&id, &["hostname"]).1.trim(), "app-host");
    assert!(exec(&id, &["cat", "/etc/hosts"]).1.contains("db.local"));
    assert!(
        !exec(&id, &["touch", "/cannot-write"]).0,
        "root filesystem is read-only"
    );
    // The limit is read from the container's own output rather than from a
    // `docker exec`, whose process Docker sets up apart from the container's:
    // in one CI run an exec'd `ulimit -n` answered something other than 1024,
    // and the run did not keep what.
    let logs = e2e::wait_for("the container's nofile line", START, || {
        let out = std::process::Command::new("docker")
            .args(["logs", &id])
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        Ok(text.contains("nofile=").then_some(text))
    })
    .unwrap();
    assert!(logs.contains("nofile=1024\n"), "ulimit nofile: {logs:?}");
}

#[test]
fn run_task_overrides_apply() {
    let s = setup(&[]);
    let defs = json!([{"name": "app", "image": TEST_IMAGE, "command": ["sleep", "600"], "memory": 32,
                       "environment": [{"name": "A", "value": "1"}]}]);
    let cli = s.plane.cli();
    cli.register("overridden", &defs).unwrap();
    let overrides = json!({"containerOverrides": [{"name": "app", "command": ["sleep", "601"],
        "environment": [{"name": "B", "value": "2"}]}]});
    let v = cli
        .ecs(&[
            "run-task",
            "--task-definition",
            "overridden",
            "--overrides",
            &overrides.to_string(),
        ])
        .unwrap();
    let arn = v["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    let task = cli
        .wait_task_status("default", &arn, "RUNNING", START)
        .unwrap();
    let i = docker_inspect(&runtime_id(&task, "app")).unwrap();
    assert_eq!(i["Config"]["Cmd"], json!(["sleep", "601"]));
    let env = i["Config"]["Env"].as_array().unwrap();
    assert!(
        env.contains(&json!("A=1")) && env.contains(&json!("B=2")),
        "{env:?}"
    );
}

#[test]
fn privileged_runs_unless_disabled() {
    let defs = json!([{"name": "p", "image": TEST_IMAGE, "command": ["sleep", "600"], "memory": 32,
                       "privileged": true, "essential": true}]);
    let allowed = setup(&[]);
    let cli = allowed.plane.cli();
    cli.register("priv", &defs).unwrap();
    let arn = cli.run_task("default", "priv").unwrap();
    // Some hosts (sandboxes without every capability) cannot start a
    // privileged container at all; what matters is that the agent asked
    // Docker for one.
    let task = e2e::wait_for("the privileged container to be created", START, || {
        let t = cli.describe_task("default", &arn)?;
        Ok(container(&t, "p")["runtimeId"].is_string().then_some(t))
    })
    .unwrap();
    assert_eq!(
        docker_inspect(&runtime_id(&task, "p")).unwrap()["HostConfig"]["Privileged"],
        true
    );

    let refused = setup(&[("ECS_DISABLE_PRIVILEGED", "true")]);
    let cli = refused.plane.cli();
    cli.register("priv", &defs).unwrap();
    let arn = cli.run_task("default", "priv").unwrap();
    let task = cli
        .wait_task_status("default", &arn, "STOPPED", START)
        .unwrap();
    let reason = container(&task, "p")["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("ECS_DISABLE_PRIVILEGED"), "{task}");
}

#[test]
fn log_drivers_are_limited_to_the_available_ones() {
    let s = setup(&[]);
    let cli = s.plane.cli();
    let defs = json!([{"name": "l", "image": TEST_IMAGE, "command": ["sleep", "600"], "memory": 32,
                       "logConfiguration": {"logDriver": "syslog"}, "essential": true}]);
    cli.register("syslogged", &defs).unwrap();
    // The instance does not advertise the driver, so the plane, like ECS,
    // places nothing (the agent's own refusal, for a backend that placed it
    // anyway, is a unit test of the create request).
    let answer = cli
        .ecs(&[
            "run-task",
            "--cluster",
            "default",
            "--task-definition",
            "syslogged",
        ])
        .unwrap();
    assert_eq!(answer["tasks"], json!([]), "{answer}");
    assert_eq!(answer["failures"][0]["reason"], "ATTRIBUTE", "{answer}");
    let detail = answer["failures"][0]["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("com.amazonaws.ecs.capability.logging-driver.syslog"),
        "{answer}"
    );
}

#[test]
fn network_modes() {
    let s = setup(&[]);
    for mode in ["host", "none", "bridge"] {
        let defs =
            json!([{"name": "n", "image": TEST_IMAGE, "command": ["sleep", "600"], "memory": 32}]);
        let family = format!("net-{mode}");
        let (_, task) = run(&s, &family, defs, &["--network-mode", mode]);
        let i = docker_inspect(&runtime_id(&task, "n")).unwrap();
        assert_eq!(i["HostConfig"]["NetworkMode"], mode, "networkMode {mode}");
    }
}

fn http_get(port: u64) -> String {
    use std::io::{Read, Write};
    let mut stream =
        std::net::TcpStream::connect(("127.0.0.1", u16::try_from(port).unwrap())).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut body = String::new();
    let _ = stream.read_to_string(&mut body);
    body
}

#[test]
fn port_mappings_static_dynamic_udp_and_ranges() {
    let s = setup(&[("ECS_DYNAMIC_HOST_PORT_RANGE", "45100-45199")]);
    let static_port = e2e::free_port().unwrap();
    let defs = json!([{
        "name": "web", "image": TEST_IMAGE, "memory": 32, "essential": true,
        "command": ["httpd", "-f", "-p", "80", "-h", "/var/www"],
        "portMappings": [
            {"containerPort": 80, "hostPort": 0, "protocol": "tcp"},
            {"containerPort": 8080, "hostPort": static_port, "protocol": "tcp"},
            {"containerPort": 53, "protocol": "udp"},
            {"containerPortRange": "7000-7002", "protocol": "tcp"}
        ]
    }]);
    let (_, task) = run(&s, "ports", defs, &[]);
    let bindings = container(&task, "web")["networkBindings"]
        .as_array()
        .unwrap()
        .clone();
    let find = |pred: &dyn Fn(&Value) -> bool| bindings.iter().find(|b| pred(b)).cloned();
    let dynamic = find(&|b| b["containerPort"] == 80).unwrap();
    let host_port = dynamic["hostPort"].as_u64().unwrap();
    assert!(
        (45100..=45199).contains(&host_port),
        "chosen from the configured range: {dynamic}"
    );
    assert!(
        http_get(host_port).contains("hello from ecs-test/busybox"),
        "httpd reached on the dynamic port"
    );
    let fixed = find(&|b| b["containerPort"] == 8080).unwrap();
    assert_eq!(fixed["hostPort"], static_port);
    let udp = find(&|b| b["containerPort"] == 53).unwrap();
    assert_eq!(udp["protocol"], "udp");
    let range = find(&|b| b["containerPortRange"] == "7000-7002").unwrap();
    let host_range = range["hostPortRange"].as_str().unwrap();
    let (a, b) = host_range.split_once('-').unwrap();
    let (a, b): (u64, u64) = (a.parse().unwrap(), b.parse().unwrap());
    assert_eq!(b - a, 2, "contiguous: {range}");
    assert!((45100..=45199).contains(&a));
    assert!(
        bindings.iter().all(|b| b["bindIP"] != "::"),
        "IPv6 bindings are excluded by default"
    );
}

#[test]
fn volumes_host_scratch_docker_and_volumes_from() {
    let s = setup(&[("ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION", "2s")]);
    let host_dir = tempfile::tempdir().unwrap();
    std::fs::write(host_dir.path().join("input.txt"), "from the host").unwrap();
    let shared_name = format!("ecs-e2e-shared-{}", std::process::id());
    let defs = json!([
        {"name": "writer", "image": TEST_IMAGE, "memory": 32, "essential": true,
         "command": ["sh", "-c", "echo scratch-data > /scratch/f; echo task-data > /taskvol/f; echo shared-data > /shared/f; sleep 600"],
         "mountPoints": [
            {"sourceVolume": "host", "containerPath": "/host", "readOnly": true},
            {"sourceVolume": "scratch", "containerPath": "/scratch"},
            {"sourceVolume": "taskvol", "containerPath": "/taskvol"},
            {"sourceVolume": shared_name, "containerPath": "/shared"}
         ]},
        {"name": "reader", "image": TEST_IMAGE, "memory": 32, "essential": false,
         "command": ["sleep", "600"],
         "volumesFrom": [{"sourceContainer": "writer", "readOnly": true}],
         "dependsOn": [{"containerName": "writer", "condition": "START"}]}
    ]);
    // A shared Docker volume is found (or created) by the task volume's name.
    let volumes = json!([
        {"name": "host", "host": {"sourcePath": host_dir.path().display().to_string()}},
        {"name": "scratch", "host": {}},
        {"name": "taskvol", "dockerVolumeConfiguration": {"scope": "task", "driver": "local"}},
        {"name": shared_name, "dockerVolumeConfiguration": {"scope": "shared", "autoprovision": true, "driver": "local"}}
    ]);
    let (arn, task) = run(&s, "volumes", defs, &["--volumes", &volumes.to_string()]);
    let writer = runtime_id(&task, "writer");
    let reader = runtime_id(&task, "reader");
    e2e::wait_for("the writer to write", START, || {
        Ok(exec(&reader, &["cat", "/taskvol/f"]).0.then_some(()))
    })
    .unwrap();
    assert_eq!(
        exec(&writer, &["cat", "/host/input.txt"]).1,
        "from the host",
        "host volume"
    );
    assert!(
        !exec(&writer, &["touch", "/host/x"]).0,
        "readOnly mount point"
    );
    assert_eq!(
        exec(&reader, &["cat", "/scratch/f"]).1.trim(),
        "scratch-data",
        "volumesFrom sees scratch"
    );
    assert_eq!(exec(&reader, &["cat", "/shared/f"]).1.trim(), "shared-data");
    assert!(
        !exec(&reader, &["touch", "/scratch/y"]).0,
        "volumesFrom readOnly"
    );
    let mounts = docker_inspect(&writer).unwrap()["Mounts"]
        .as_array()
        .unwrap()
        .clone();
    let task_volume = mounts
        .iter()
        .find(|m| m["Destination"] == "/taskvol")
        .unwrap()["Name"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        task_volume.starts_with("ecs-volumes-1-taskvol-"),
        "{task_volume}"
    );

    let cli = s.plane.cli();
    cli.ecs(&["stop-task", "--task", &arn]).unwrap();
    cli.wait_task_status("default", &arn, "STOPPED", START)
        .unwrap();
    let volume_exists = |name: &str| {
        std::process::Command::new("docker")
            .args(["volume", "inspect", name])
            .output()
            .unwrap()
            .status
            .success()
    };
    e2e::wait_for("the task volume to be removed", START, || {
        Ok((!volume_exists(&task_volume)).then_some(()))
    })
    .unwrap();
    assert!(
        volume_exists(&shared_name),
        "shared volumes outlive the task"
    );
    let _ = std::process::Command::new("docker")
        .args(["volume", "rm", &shared_name])
        .output();
}

#[test]
fn links_reach_the_linked_container_by_alias() {
    let s = setup(&[]);
    let defs = json!([
        {"name": "web", "image": TEST_IMAGE, "memory": 32, "essential": true,
         "command": ["httpd", "-f", "-p", "80", "-h", "/var/www"]},
        {"name": "client", "image": TEST_IMAGE, "memory": 32, "essential": true,
         "links": ["web:backend"], "command": ["sleep", "600"]}
    ]);
    let (_, task) = run(&s, "linked", defs, &[]);
    let client = runtime_id(&task, "client");
    let (ok, out) = exec(&client, &["wget", "-q", "-O", "-", "http://backend/"]);
    assert!(ok && out.contains("hello from ecs-test/busybox"), "{out}");
}

#[test]
fn per_container_stop_timeout() {
    let s = setup(&[("ECS_CONTAINER_STOP_TIMEOUT", "60s")]);
    let defs = json!([{"name": "stubborn", "image": TEST_IMAGE, "memory": 32, "essential": true,
        "command": ["sh", "-c", "trap '' TERM; while true; do sleep 0.2; done"], "stopTimeout": 2}]);
    let (arn, _) = run(&s, "stubborn", defs, &[]);
    let started = std::time::Instant::now();
    let cli = s.plane.cli();
    cli.ecs(&["stop-task", "--task", &arn]).unwrap();
    let task = cli
        .wait_task_status("default", &arn, "STOPPED", START)
        .unwrap();
    assert_eq!(container(&task, "stubborn")["exitCode"], 137);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "killed after 2 s, not 60 s"
    );
}

#[test]
fn terminal_security_sysctl_swap_and_network_fields() {
    let s = setup(&[]);
    let defs = json!([{
        "name": "misc", "image": TEST_IMAGE, "command": ["sleep", "600"], "essential": true,
        "memory": 64,
        "interactive": true,
        "pseudoTerminal": true,
        "disableNetworking": true,
        "dockerSecurityOptions": ["no-new-privileges"],
        "systemControls": [{"namespace": "kernel.shm_rmid_forced", "value": "1"}],
        "linuxParameters": {"maxSwap": 64, "swappiness": 10}
    }]);
    let (_, task) = run(&s, "misc", defs, &[]);
    let i = docker_inspect(&runtime_id(&task, "misc")).unwrap();
    let (config, host) = (&i["Config"], &i["HostConfig"]);
    assert_eq!(config["OpenStdin"], true, "interactive");
    assert_eq!(config["Tty"], true, "pseudoTerminal");
    assert_eq!(config["NetworkDisabled"], true, "disableNetworking");
    assert_eq!(
        host["SecurityOpt"],
        json!(["no-new-privileges"]),
        "dockerSecurityOptions"
    );
    assert_eq!(
        host["Sysctls"]["kernel.shm_rmid_forced"], "1",
        "systemControls"
    );
    assert_eq!(
        host["MemorySwap"],
        128 * 1024 * 1024,
        "maxSwap (memory + swap)"
    );
    assert_eq!(host["MemorySwappiness"], 10, "swappiness");
}

#[test]
fn shared_volumes_must_match_in_full_when_asked() {
    let s = setup(&[("ECS_SHARED_VOLUME_MATCH_FULL_CONFIG", "true")]);
    let cli = s.plane.cli();
    let name = format!("e2e-match-{}", std::process::id());
    let created = std::process::Command::new("docker")
        .args(["volume", "create", "--label", "owner=e2e", &name])
        .output()
        .unwrap();
    assert!(created.status.success());
    let defs = json!([{"name": "main", "image": TEST_IMAGE, "command": ["sleep", "600"],
        "memory": 32, "essential": true,
        "mountPoints": [{"sourceVolume": name, "containerPath": "/shared"}]}]);
    let volumes = |owner: &str| {
        json!([{"name": name, "dockerVolumeConfiguration": {"scope": "shared",
            "autoprovision": true, "driver": "local", "labels": {"owner": owner}}}])
        .to_string()
    };
    // Same labels: the existing volume is used.
    let (matching, _) = run(
        &s,
        "match-same",
        defs.clone(),
        &["--volumes", &volumes("e2e")],
    );
    // Other labels: the task cannot start, and says why.
    cli.ecs(&[
        "register-task-definition",
        "--family",
        "match-other",
        "--container-definitions",
        &defs.to_string(),
        "--volumes",
        &volumes("someone-else"),
    ])
    .unwrap();
    let arn = cli.run_task("default", "match-other").unwrap();
    let task = cli
        .wait_task_status("default", &arn, "STOPPED", START)
        .unwrap();
    let reason = format!(
        "{} {}",
        task["stoppedReason"],
        container(&task, "main")["reason"]
    );
    assert!(reason.contains("ResourceInitializationError"), "{task}");
    assert!(reason.contains("labels"), "{task}");
    cli.ecs(&["stop-task", "--task", &matching]).unwrap();
    cli.wait_task_status("default", &matching, "STOPPED", START)
        .unwrap();
    e2e::remove_task_containers(&[matching, arn]);
    let _ = std::process::Command::new("docker")
        .args(["volume", "rm", "-f", &name])
        .output();
}
