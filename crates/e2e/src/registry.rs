//! A private Docker registry for one test: Debian's `docker-registry`
//! binary on loopback, with htpasswd (bcrypt) authentication and storage
//! in a temporary directory. Docker treats 127.0.0.0/8 registries as
//! insecure, so plain HTTP on a free port works without daemon settings;
//! a registry that must look like a remote one (an ECR host name) is
//! served over TLS on port 443 instead (see `crate::ecr_registry`).
//! The docker CLI logs in with its own temporary config directory, so no
//! credentials land in the user's `~/.docker`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::{free_port, wait_for};

/// A running registry, stopped (and its storage removed) when dropped.
pub struct Registry {
    child: Child,
    dir: tempfile::TempDir,
    pub port: u16,
    /// The registry part of image names.
    host: String,
    pub username: String,
    pub password: String,
}

/// Serving the registry over TLS (see [`Registry::start_tls`]).
pub struct Tls {
    /// The name image references use (resolved to 127.0.0.1 by the test).
    pub host: String,
    pub certificate: PathBuf,
    pub key: PathBuf,
}

impl Registry {
    /// Starts a registry on a free loopback port, over plain HTTP, that
    /// accepts only `username`/`password`.
    pub fn start(username: &str, password: &str) -> Result<Registry> {
        let port = free_port()?;
        Self::start_on(username, password, port, None)
    }

    /// Starts a registry on 127.0.0.1:443 over TLS, for image names whose
    /// registry part is `tls.host` with no port.
    pub fn start_tls(username: &str, password: &str, tls: Tls) -> Result<Registry> {
        Self::start_on(username, password, 443, Some(tls))
    }

    fn start_on(username: &str, password: &str, port: u16, tls: Option<Tls>) -> Result<Registry> {
        let dir = tempfile::tempdir()?;
        let htpasswd = Command::new("htpasswd")
            .args(["-Bbn", username, password])
            .output()
            .context("running htpasswd (run scripts/setup: apache2-utils)")?;
        if !htpasswd.status.success() {
            bail!("htpasswd: {}", String::from_utf8_lossy(&htpasswd.stderr));
        }
        std::fs::write(dir.path().join("htpasswd"), &htpasswd.stdout)?;
        let tls_config = tls.as_ref().map_or(String::new(), |t| {
            format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                t.certificate.display(),
                t.key.display()
            )
        });
        let config = format!(
            "version: 0.1\n\
             log:\n  level: info\n\
             storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:{port}\n{tls_config}\
             auth:\n  htpasswd:\n    realm: ecs-e2e\n    path: {htpasswd}\n",
            storage = dir.path().join("storage").display(),
            htpasswd = dir.path().join("htpasswd").display(),
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config)?;
        let log = std::fs::File::create(dir.path().join("registry.log"))?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .context("starting docker-registry (run scripts/setup: docker-registry)")?;
        let registry = Registry {
            child,
            dir,
            port,
            host: tls.map_or_else(|| format!("127.0.0.1:{port}"), |t| t.host),
            username: username.into(),
            password: password.into(),
        };
        wait_for("the registry to listen", Duration::from_secs(20), || {
            Ok(std::net::TcpStream::connect(("127.0.0.1", port))
                .ok()
                .map(|_| ()))
        })?;
        Ok(registry)
    }

    /// The registry part of image names: `127.0.0.1:<port>`, or the TLS
    /// host name.
    pub fn host(&self) -> String {
        self.host.clone()
    }

    fn docker_config(&self) -> PathBuf {
        self.dir.path().join("docker-config")
    }

    fn docker(&self, args: &[&str], stdin: Option<&str>) -> Result<()> {
        let mut cmd = Command::new("docker");
        cmd.env("DOCKER_CONFIG", self.docker_config())
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if stdin.is_some() {
            cmd.stdin(Stdio::piped());
        }
        let mut child = cmd.spawn().context("running the docker CLI")?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            use std::io::Write;
            pipe.write_all(text.as_bytes())?;
        }
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "docker {}: {}",
                args.first().copied().unwrap_or_default(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// Pushes the local image `source` as `<host>/<name>` and returns that
    /// reference; the local tag is removed again when `keep_local` is
    /// false, so a task using it has to pull.
    pub fn push(&self, source: &str, name: &str, keep_local: bool) -> Result<String> {
        let host = self.host();
        self.docker(
            &["login", &host, "-u", &self.username, "--password-stdin"],
            Some(&self.password),
        )?;
        let reference = format!("{host}/{name}");
        self.docker(&["tag", source, &reference], None)?;
        self.docker(&["push", &reference], None)?;
        if !keep_local {
            self.docker(&["rmi", &reference], None)?;
        }
        Ok(reference)
    }

    /// The registry's log, for failure messages.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// How many requests for `repository`'s manifests the registry has
    /// served (pushes, pulls and refused attempts alike): a pull shows as
    /// a rise in this count.
    pub fn manifest_requests(&self, repository: &str) -> usize {
        let log = self.log_text();
        let needle = format!("/v2/{repository}/manifests/");
        log.lines()
            .filter(|l| l.contains(&needle) && l.contains(" HTTP/1.1\""))
            .count()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
