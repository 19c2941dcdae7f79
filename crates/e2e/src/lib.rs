//! Harness for the end-to-end tests: builds and starts the real `ecs-local`
//! and `ecs-agent` binaries against the host's Docker engine, and drives
//! them with the AWS CLI and the AWS SDK for Rust, exactly as a user would.
//!
//! Nothing here talks to anything but loopback and the local Docker
//! socket: instance metadata is disabled for every agent.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

pub mod browser;
pub mod ecr_registry;
pub mod fake_backend;
pub mod moto;
pub mod registry;
pub mod systemd_unit;

/// The image every test runs; `scripts/setup` builds it with `docker import`.
pub const TEST_IMAGE: &str = "ecs-test/busybox:latest";

/// Fake static credentials: the plane does not verify signatures.
pub const ACCESS_KEY: &str = "AKIAIOSFODNN7EXAMPLE";
pub const SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
pub const REGION: &str = "us-east-1";

/// The repository's root directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Paths of the two binaries, built once per test process so the tests
/// always run the current code.
pub struct Binaries {
    pub agent: PathBuf,
    pub plane: PathBuf,
    /// Which cargo profile built them.
    pub profile: Profile,
}

/// The cargo profile the binaries are built with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// `cargo build`: what the tests run, the default.
    Debug,
    /// `cargo build --release`: what users run; for measurements.
    Release,
}

static BINARIES: OnceLock<Binaries> = OnceLock::new();

/// Builds `ecs-agent` and `ecs-local` with `profile` and returns their paths.
pub fn build_binaries(profile: Profile) -> Result<Binaries> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut args = vec!["build", "--bin", "ecs-agent", "--bin", "ecs-local"];
    if profile == Profile::Release {
        args.push("--release");
    }
    let status = Command::new(cargo)
        .args(&args)
        .current_dir(workspace_root())
        .status();
    match status {
        Ok(s) if s.success() => {}
        other => bail!("building ecs-agent and ecs-local failed: {other:?}"),
    }
    let dir = target_dir().join(match profile {
        Profile::Debug => "debug",
        Profile::Release => "release",
    });
    Ok(Binaries {
        agent: dir.join("ecs-agent"),
        plane: dir.join("ecs-local"),
        profile,
    })
}

/// The binaries every [`Plane`] and [`Agent`] of this process starts: the
/// debug build, unless [`use_release_binaries`] was called first.
///
/// `make test` builds them with the whole workspace first and says so with
/// `ECS_E2E_BINARIES_BUILT=1`: a `cargo build` of the two binaries alone
/// resolves dependency features without the test targets' and would
/// compile a second copy of much of the tree (minutes on two cores).
pub fn binaries() -> &'static Binaries {
    BINARIES.get_or_init(|| {
        if std::env::var_os("ECS_E2E_BINARIES_BUILT").is_some() {
            let dir = target_dir().join("debug");
            return Binaries {
                agent: dir.join("ecs-agent"),
                plane: dir.join("ecs-local"),
                profile: Profile::Debug,
            };
        }
        build_binaries(Profile::Debug).unwrap_or_else(|e| panic!("{e:#}"))
    })
}

/// Makes every later [`Plane`] and [`Agent`] of this process start the
/// release binaries, built first (a benchmark measures what users run);
/// `agent`, when given, is the agent binary to start instead of the one
/// built (the static one). Fails when this process already started the
/// debug ones.
pub fn use_release_binaries(agent: Option<PathBuf>) -> Result<&'static Binaries> {
    if BINARIES.get().is_none() {
        let mut built = build_binaries(Profile::Release)?;
        if let Some(agent) = agent {
            built.agent = agent;
        }
        let _ = BINARIES.set(built);
    }
    let chosen = binaries();
    if chosen.profile != Profile::Release {
        bail!("this process already uses the debug binaries");
    }
    Ok(chosen)
}

/// The static `ecs-agent` and `ecs-local` that `make static` builds (and
/// `make test` first): what the image and the Debian package hold.
pub fn static_binaries() -> (PathBuf, PathBuf) {
    let dir = target_dir().join("x86_64-unknown-linux-gnu/release");
    let (agent, plane) = (dir.join("ecs-agent"), dir.join("ecs-local"));
    for binary in [&agent, &plane] {
        assert!(
            binary.is_file(),
            "{} is missing: `make static` builds it (`make test` does first)",
            binary.display()
        );
    }
    (agent, plane)
}

/// Fails the test with a clear message when no Docker engine answers, or
/// the test image is missing: these tests never pass by skipping.
pub fn require_docker() {
    let out = Command::new("docker")
        .args(["image", "inspect", TEST_IMAGE, "--format", "{{.Id}}"])
        .output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "Docker is not usable or the test image {TEST_IMAGE} is missing (run scripts/setup): {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!("the docker CLI cannot run (run scripts/setup): {e}"),
    }
}

/// A plain `GET` over HTTP/1.0 to `127.0.0.1:<port><path>`; the body.
pub fn http_get(port: u16, path: &str) -> Result<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("no HTTP header in {response:?}"))?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(anyhow!("GET {path}: {head}"));
    }
    Ok(body.to_string())
}

pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Polls `check` until it returns `Some`, or fails after `timeout`.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let start = Instant::now();
    let mut last_error = None;
    loop {
        match check() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_error = Some(e),
        }
        if start.elapsed() > timeout {
            return Err(anyhow!(
                "timed out after {timeout:?} waiting for {what}; last error: {last_error:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A child process killed when dropped.
struct Process {
    child: Child,
}

impl Process {
    fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `ecs-local`.
pub struct Plane {
    process: Process,
    pub port: u16,
    /// `https` when started with a TLS flag.
    scheme: &'static str,
    /// The CA clients must trust (`--tls-self-signed`'s `ca.pem`).
    pub ca_bundle: Option<PathBuf>,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    killed: bool,
}

impl Plane {
    pub fn start(data_dir: &Path) -> Result<Plane> {
        Self::start_on(data_dir, free_port()?)
    }

    /// Starts on a given port (to restart a plane where agents expect it).
    pub fn start_on(data_dir: &Path, port: u16) -> Result<Plane> {
        Self::start_with_args(data_dir, port, &[])
    }

    /// Starts on a given port with more flags (`--agent-update-bundle`, …).
    pub fn start_with_args(data_dir: &Path, port: u16, args: &[&str]) -> Result<Plane> {
        std::fs::create_dir_all(data_dir)?;
        let log = data_dir.join("ecs-local.log");
        let listen = format!("127.0.0.1:{port}");
        let default_listen = ["--listen", listen.as_str()];
        // A test that names its own address (beyond loopback) replaces it.
        let default_listen = if args.contains(&"--listen") {
            &default_listen[..0]
        } else {
            &default_listen[..]
        };
        let child = Command::new(&binaries().plane)
            .args(default_listen)
            .args([
                "--data-dir",
                &data_dir.display().to_string(),
                "--heartbeat-interval",
                "5",
            ])
            .args(args)
            .stdout(Stdio::from(std::fs::File::create(&log)?))
            .stderr(Stdio::from(
                std::fs::File::options().append(true).open(&log)?,
            ))
            .spawn()
            .context("starting ecs-local")?;
        let tls = args
            .iter()
            .any(|a| *a == "--tls-self-signed" || *a == "--tls-cert");
        let self_signed = args.contains(&"--tls-self-signed");
        let plane = Plane {
            process: Process { child },
            port,
            scheme: if tls { "https" } else { "http" },
            ca_bundle: self_signed.then(|| data_dir.join("ca.pem")),
            data_dir: data_dir.to_path_buf(),
            log,
            killed: false,
        };
        wait_for("ecs-local to listen", Duration::from_secs(20), || {
            Ok(std::net::TcpStream::connect(("127.0.0.1", port))
                .ok()
                .map(|_| ()))
        })?;
        Ok(plane)
    }

    pub fn url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme, self.port)
    }

    /// ecs-local's process ID (to read `/proc/<pid>/…`).
    pub fn pid(&self) -> u32 {
        self.process.child.id()
    }

    /// ecs-local's `GET /metrics` page.
    pub fn metrics_page(&self) -> Result<String> {
        http_get(self.port, "/metrics")
    }

    /// The AWS CLI pointed at this plane.
    pub fn cli(&self) -> Cli {
        Cli {
            endpoint: self.url(),
            ca_bundle: self.ca_bundle.clone(),
        }
    }

    /// The AWS SDK for Rust pointed at this plane.
    pub fn sdk(&self) -> aws_sdk_ecs::Client {
        use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
        // The workspace builds the SDK without its default client
        // (docs/footprint.md §1): this is the same one.
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let config = aws_sdk_ecs::Config::builder()
            .behavior_version(aws_sdk_ecs::config::BehaviorVersion::latest())
            .http_client(http)
            .region(aws_sdk_ecs::config::Region::new(REGION))
            .credentials_provider(aws_credential_types::Credentials::new(
                ACCESS_KEY, SECRET_KEY, None, None, "e2e",
            ))
            .endpoint_url(self.url())
            .build();
        aws_sdk_ecs::Client::from_conf(config)
    }

    /// Kills the plane and leaves its tasks' containers running, as a
    /// crash would; a plane started again on the same data dir cleans up.
    pub fn kill(mut self) {
        self.process.signal("-KILL");
        self.killed = true;
    }
}

impl Drop for Plane {
    fn drop(&mut self) {
        if self.killed {
            return;
        }
        // Remove what the tests' tasks left in Docker.
        if let Ok(tasks) = self.cli().all_task_arns() {
            remove_task_containers(&tasks);
        }
        self.process.signal("-KILL");
    }
}

/// The host's address on Docker's default bridge (`docker0`): a
/// non-loopback address of this host that traffic never leaves it for.
/// Some engines leave the bridge network's IPAM gateway unset (only its
/// subnet is listed); the bridge interface itself then holds the address.
pub fn docker_bridge_ip() -> Result<String> {
    let gateway = bridge_network_field("{{range .IPAM.Config}}{{.Gateway}}{{end}}")?;
    if !gateway.is_empty() {
        return Ok(gateway);
    }
    let interface = bridge_network_field(
        r#"{{if .Options}}{{index .Options "com.docker.network.bridge.name"}}{{end}}"#,
    )?;
    let interface = match interface.as_str() {
        "" | "<no value>" => "docker0",
        name => name,
    };
    interface_ipv4(interface).with_context(|| {
        format!("no gateway on Docker's bridge network, nor an address on {interface}")
    })
}

/// One field of `docker network inspect bridge`, by Go template.
fn bridge_network_field(template: &str) -> Result<String> {
    let out = Command::new("docker")
        .args(["network", "inspect", "bridge", "--format", template])
        .output()
        .context("docker network inspect")?;
    if !out.status.success() {
        bail!(
            "docker network inspect bridge: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The first IPv4 address of a network interface, from `ip -4 -o addr`.
fn interface_ipv4(interface: &str) -> Result<String> {
    let out = Command::new("ip")
        .args(["-4", "-o", "addr", "show", "dev", interface])
        .output()
        .context("ip addr")?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse_inet(&text)
        .ok_or_else(|| anyhow!("`ip -4 -o addr show dev {interface}` printed {text:?}"))
}

/// The address of the first `inet A.B.C.D/N` in `ip -o` output.
fn parse_inet(text: &str) -> Option<String> {
    let mut words = text.split_whitespace();
    words.find(|w| *w == "inet")?;
    let address = words.next()?.split('/').next()?;
    address.parse::<std::net::Ipv4Addr>().ok()?;
    Some(address.to_owned())
}

/// Removes every container labelled with one of these task ARNs.
pub fn remove_task_containers(task_arns: &[String]) {
    for arn in task_arns {
        for id in docker_ids_with_label("com.amazonaws.ecs.task-arn", arn, true) {
            let _ = Command::new("docker")
                .args(["rm", "-f", &id])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// IDs of containers with `label=value` (stopped ones too when `all`).
pub fn docker_ids_with_label(label: &str, value: &str, all: bool) -> Vec<String> {
    let mut args = vec!["ps", "-q", "--no-trunc"];
    if all {
        args.push("-a");
    }
    let filter = format!("label={label}={value}");
    args.extend(["--filter", &filter]);
    Command::new("docker")
        .args(&args)
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(str::to_string)
                .filter(|l| !l.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// `docker inspect` of one container, as JSON.
pub fn docker_inspect(id: &str) -> Result<Value> {
    let out = Command::new("docker").args(["inspect", id]).output()?;
    if !out.status.success() {
        bail!(
            "docker inspect {id}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let list: Value = serde_json::from_slice(&out.stdout)?;
    list.get(0)
        .cloned()
        .ok_or_else(|| anyhow!("no such container {id}"))
}

/// Settings of one agent run.
#[derive(Clone)]
pub struct AgentOptions {
    pub cluster: String,
    pub data_dir: PathBuf,
    pub extra_env: Vec<(String, String)>,
    /// Variables of the default test environment to leave out.
    pub removed_env: Vec<String>,
    /// Command-line flags (`-k`).
    pub args: Vec<String>,
}

impl AgentOptions {
    pub fn new(data_dir: &Path) -> Self {
        Self {
            cluster: "default".into(),
            data_dir: data_dir.to_path_buf(),
            extra_env: Vec::new(),
            removed_env: Vec::new(),
            args: Vec::new(),
        }
    }

    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn without(mut self, key: &str) -> Self {
        self.removed_env.push(key.into());
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.extra_env.push((key.into(), value.into()));
        self
    }
}

/// A running `ecs-agent`.
pub struct Agent {
    process: Process,
    pub log: PathBuf,
    /// Where this process's output starts in `log`: an agent restarted on
    /// the same data directory appends to the log of the one before.
    log_start: usize,
}

impl Agent {
    pub fn start(plane: &Plane, options: &AgentOptions) -> Result<Agent> {
        Self::start_at(&plane.url(), options)
    }

    /// Starts an agent whose ECS endpoint is `backend` (a plane, or a fake).
    pub fn start_at(backend: &str, options: &AgentOptions) -> Result<Agent> {
        std::fs::create_dir_all(&options.data_dir)?;
        let log = options.data_dir.join("ecs-agent.log");
        let log_start = std::fs::metadata(&log).map_or(0, |m| m.len() as usize);
        let mut cmd = Command::new(&binaries().agent);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("ECS_BACKEND_HOST", backend)
            .env("ECS_CLUSTER", &options.cluster)
            .env("AWS_DEFAULT_REGION", REGION)
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("ECS_DATADIR", &options.data_dir)
            .env("ECS_IMAGE_PULL_BEHAVIOR", "prefer-cached")
            .env("ECS_CONTAINER_STOP_TIMEOUT", "2s")
            .env("ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION", "10m")
            .env("ECS_LOGLEVEL", "debug")
            .env("ECS_AUDIT_LOGFILE", options.data_dir.join("audit.log"))
            .env(
                "ECS_AGENT_CONFIG_FILE_PATH",
                options.data_dir.join("no-config.json"),
            );
        for k in &options.removed_env {
            cmd.env_remove(k);
        }
        for (k, v) in &options.extra_env {
            cmd.env(k, v);
        }
        cmd.args(&options.args);
        let child = cmd
            .stdout(Stdio::from(
                std::fs::File::options()
                    .create(true)
                    .append(true)
                    .open(&log)?,
            ))
            .stderr(Stdio::from(
                std::fs::File::options()
                    .create(true)
                    .append(true)
                    .open(&log)?,
            ))
            .spawn()
            .context("starting ecs-agent")?;
        Ok(Agent {
            process: Process { child },
            log,
            log_start,
        })
    }

    /// The agent's process ID (to read `/proc/<pid>/…`).
    pub fn pid(&self) -> u32 {
        self.process.child.id()
    }

    /// SIGKILL: the agent gets no chance to save anything.
    pub fn kill(self) {
        drop(self);
    }

    /// SIGTERM, then wait for the exit code.
    pub fn terminate(self, timeout: Duration) -> Result<Option<i32>> {
        self.stop_with("-TERM", timeout)
    }

    /// `signal` (`-TERM`, `-INT`), then wait for the exit code.
    pub fn stop_with(mut self, signal: &str, timeout: Duration) -> Result<Option<i32>> {
        self.process.signal(signal);
        let start = Instant::now();
        loop {
            if let Some(status) = self.process.child.try_wait()? {
                return Ok(status.code());
            }
            if start.elapsed() > timeout {
                bail!("agent did not exit within {timeout:?} after {signal}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Whether the process has exited, and with what code.
    pub fn exit_code(&mut self) -> Result<Option<Option<i32>>> {
        Ok(self.process.child.try_wait()?.map(|s| s.code()))
    }

    /// The whole log, of this process and of any agent before it on the
    /// same data directory.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Only what this process wrote to the log.
    pub fn own_log_text(&self) -> String {
        let bytes = std::fs::read(&self.log).unwrap_or_default();
        String::from_utf8_lossy(bytes.get(self.log_start..).unwrap_or_default()).into_owned()
    }

    /// Waits until this process (not an agent before it on the same data
    /// directory) has connected to ACS: after that, the plane delivers
    /// tasks to it and shows its registration.
    pub fn wait_acs_connected(&self, timeout: Duration) -> Result<()> {
        wait_for("the agent to connect to ACS", timeout, || {
            Ok(self
                .own_log_text()
                .contains("connected to ACS")
                .then_some(()))
        })
    }
}

/// The real AWS CLI (`scripts/setup` installs it in the workspace venv).
pub struct Cli {
    endpoint: String,
    /// Passed as `--ca-bundle`.
    ca_bundle: Option<PathBuf>,
}

impl Cli {
    /// The AWS CLI pointed at any ECS endpoint.
    pub fn at(endpoint: &str) -> Self {
        Self {
            endpoint: endpoint.to_string(),
            ca_bundle: None,
        }
    }
}

pub fn aws_cli_path() -> PathBuf {
    std::env::var_os("ECS_E2E_AWS_CLI")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin/aws"))
}

/// Runs `aws <args> --endpoint-url <endpoint>` with the test keys and
/// region and nothing from this host's AWS configuration, and parses its
/// JSON output (`null` when it prints nothing).
pub fn aws_cli(endpoint: &str, args: &[&str]) -> Result<Value> {
    let cli = aws_cli_path();
    if !cli.exists() {
        bail!(
            "the AWS CLI is not installed at {} (run scripts/setup)",
            cli.display()
        );
    }
    let mut command = Command::new(&cli);
    command
        .args(args)
        .args(["--endpoint-url", endpoint, "--output", "json"])
        .env("AWS_PAGER", "");
    let out = with_test_aws_env(&mut command)
        .output()
        .context("running the AWS CLI")?;
    if !out.status.success() {
        bail!(
            "aws {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    if out.stdout.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&out.stdout).context("parsing AWS CLI output")
}

/// A program of the virtualenv `scripts/setup` made (next to the AWS CLI).
pub(crate) fn venv_bin(name: &str) -> PathBuf {
    aws_cli_path()
        .parent()
        .map(|dir| dir.join(name))
        .unwrap_or_else(|| PathBuf::from(name))
}

/// Runs a Python `script` of the virtualenv (boto3 is installed there)
/// with the test keys and region and `AWS_ENDPOINT_URL` set to `endpoint`;
/// returns what it printed.
pub fn python(endpoint: &str, script: &str) -> Result<String> {
    let mut command = Command::new(venv_bin("python"));
    command
        .args(["-c", script])
        .env("AWS_ENDPOINT_URL", endpoint);
    let out = with_test_aws_env(&mut command)
        .output()
        .context("running python")?;
    if !out.status.success() {
        bail!("python: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The test keys and region, no instance metadata, and no AWS
/// configuration files of this host, for an AWS client run by a test.
pub fn with_test_aws_env(command: &mut Command) -> &mut Command {
    command
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_DEFAULT_REGION", REGION)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
}

impl Cli {
    /// Runs `aws ecs <args> --endpoint-url …` and parses its JSON output.
    pub fn ecs(&self, args: &[&str]) -> Result<Value> {
        let bundle = self.ca_bundle.as_ref().map(|p| p.display().to_string());
        let mut all = vec!["ecs"];
        all.extend_from_slice(args);
        if let Some(bundle) = &bundle {
            all.extend(["--ca-bundle", bundle]);
        }
        aws_cli(&self.endpoint, &all)
    }

    pub fn describe_task(&self, cluster: &str, arn: &str) -> Result<Value> {
        let v = self.ecs(&["describe-tasks", "--cluster", cluster, "--tasks", arn])?;
        v["tasks"]
            .get(0)
            .cloned()
            .ok_or_else(|| anyhow!("task {arn} not found: {v}"))
    }

    /// Waits until the task's lastStatus is `status`; returns the task.
    pub fn wait_task_status(
        &self,
        cluster: &str,
        arn: &str,
        status: &str,
        timeout: Duration,
    ) -> Result<Value> {
        wait_for(&format!("task {arn} to be {status}"), timeout, || {
            let task = self.describe_task(cluster, arn)?;
            Ok((task["lastStatus"] == status).then_some(task))
        })
    }

    /// Every task ARN the plane knows, running or stopped, in every cluster.
    pub fn all_task_arns(&self) -> Result<Vec<String>> {
        let clusters = self.ecs(&["list-clusters"])?;
        let mut arns = Vec::new();
        for cluster in clusters["clusterArns"].as_array().into_iter().flatten() {
            let Some(cluster) = cluster.as_str() else {
                continue;
            };
            for status in ["RUNNING", "STOPPED"] {
                let list = self.ecs(&[
                    "list-tasks",
                    "--cluster",
                    cluster,
                    "--desired-status",
                    status,
                ])?;
                for arn in list["taskArns"].as_array().into_iter().flatten() {
                    if let Some(a) = arn.as_str() {
                        arns.push(a.to_string());
                    }
                }
            }
        }
        Ok(arns)
    }

    /// Registers a one-container task definition and returns its ARN.
    pub fn register_simple(&self, family: &str, command: &[&str]) -> Result<String> {
        let defs = serde_json::json!([{
            "name": "main",
            "image": TEST_IMAGE,
            "command": command,
            "memory": 32,
            "essential": true
        }]);
        self.register(family, &defs)
    }

    pub fn register(&self, family: &str, container_definitions: &Value) -> Result<String> {
        let v = self.ecs(&[
            "register-task-definition",
            "--family",
            family,
            "--container-definitions",
            &container_definitions.to_string(),
        ])?;
        v["taskDefinition"]["taskDefinitionArn"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("no task definition ARN in {v}"))
    }

    /// `run-task`; returns the new task's ARN.
    pub fn run_task(&self, cluster: &str, task_definition: &str) -> Result<String> {
        let v = self.ecs(&[
            "run-task",
            "--cluster",
            cluster,
            "--task-definition",
            task_definition,
        ])?;
        let task = v["tasks"]
            .get(0)
            .ok_or_else(|| anyhow!("run-task placed nothing: {v}"))?;
        if task["lastStatus"] != "PENDING" {
            bail!("run-task returned a task that is not PENDING: {task}");
        }
        task["taskArn"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("no task ARN in {v}"))
    }

    /// Waits until exactly one container instance is registered and
    /// connected; returns it.
    pub fn wait_connected_instance(&self, cluster: &str, timeout: Duration) -> Result<Value> {
        wait_for("the agent's instance to connect", timeout, || {
            let list = self.ecs(&["list-container-instances", "--cluster", cluster])?;
            let arns: Vec<&str> = list["containerInstanceArns"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            if arns.len() != 1 {
                return Ok(None);
            }
            let v = self.ecs(&[
                "describe-container-instances",
                "--cluster",
                cluster,
                "--container-instances",
                arns[0],
            ])?;
            let instance = v["containerInstances"][0].clone();
            Ok((instance["agentConnected"] == true).then_some(instance))
        })
    }
}

/// The name of the lock file, in the temp directory, that every test
/// changing this host's ECS routing (sysctls, iptables) holds.
pub const HOST_ROUTING_LOCK_FILE: &str = "ecs-agent-host-routing.lock";

/// Exclusive use of this host's ECS routing: a process-wide mutex, so
/// threads of one test binary take turns, and an exclusive `flock` on
/// [`HOST_ROUTING_LOCK_FILE`], so test binaries and other processes do too.
/// Both are released when this is dropped. Not re-entrant: a thread that
/// already holds one must not ask for another.
pub struct HostRoutingLock {
    // Fields drop in this order: the file lock first, then the mutex.
    _file: std::fs::File,
    _guard: std::sync::MutexGuard<'static, ()>,
}

/// Waits for, and takes, [`HostRoutingLock`].
pub fn host_routing_lock() -> Result<HostRoutingLock> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let guard = LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let path = std::env::temp_dir().join(HOST_ROUTING_LOCK_FILE);
    let file = std::fs::File::options()
        .create(true)
        .read(true)
        .write(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    file.lock()
        .with_context(|| format!("locking {}", path.display()))?;
    Ok(HostRoutingLock {
        _file: file,
        _guard: guard,
    })
}

/// Runs `ecs-agent <command>` (`host-setup`, `host-teardown`, `export-go-state`) with only
/// `PATH` and `env` in its environment, and no JSON config file; returns
/// its stdout, or an error holding both outputs when it does not exit 0.
/// Callers of `host-setup` and `host-teardown` hold a [`HostRoutingLock`].
pub fn agent_host_command(command: &str, env: &[(&str, &str)]) -> Result<String> {
    let mut cmd = Command::new(&binaries().agent);
    cmd.arg(command)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env(
            "ECS_AGENT_CONFIG_FILE_PATH",
            std::env::temp_dir().join("ecs-agent-host-routing-no-config.json"),
        );
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd
        .output()
        .with_context(|| format!("running ecs-agent {command}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "ecs-agent {command} exited with {}:\n{stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(stdout)
}

/// This host set up as ecs-init would (`ecs-agent host-setup`): containers
/// reach `169.254.170.2:80` as `127.0.0.1:51679`, and so does the host.
/// Holds the [`HostRoutingLock`]; dropping it runs `ecs-agent
/// host-teardown`, then releases the lock.
pub struct HostRouting {
    /// What `host-setup` printed.
    pub setup_output: String,
    _lock: HostRoutingLock,
}

/// Takes the [`HostRoutingLock`] and runs `ecs-agent host-setup` with the
/// default configuration. A failed set-up is torn down before the error is
/// returned.
pub fn host_routing() -> Result<HostRouting> {
    let lock = host_routing_lock()?;
    match agent_host_command("host-setup", &[]) {
        Ok(setup_output) => Ok(HostRouting {
            setup_output,
            _lock: lock,
        }),
        Err(e) => {
            let _ = agent_host_command("host-teardown", &[]);
            Err(e)
        }
    }
}

impl Drop for HostRouting {
    fn drop(&mut self) {
        if let Err(e) = agent_host_command("host-teardown", &[]) {
            eprintln!("host-teardown after the test failed: {e:#}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_inet;

    #[test]
    fn the_bridge_address_is_read_from_ip_addr_output() {
        let line = "5: docker0    inet 172.17.0.1/16 brd 172.17.255.255 scope global docker0\\       valid_lft forever preferred_lft forever\n";
        assert_eq!(parse_inet(line).as_deref(), Some("172.17.0.1"));
        assert_eq!(parse_inet(""), None);
        assert_eq!(
            parse_inet("5: docker0    inet6 fe80::1/64 scope link"),
            None
        );
        assert_eq!(parse_inet("5: docker0    inet not-an-address/16"), None);
    }
}
