//! `moto` in server mode on a free loopback port: the stand-in for ECR,
//! SSM Parameter Store, Secrets Manager, S3 and CloudWatch Logs in tests
//! (installed into the virtual environment by `scripts/setup`). It accepts
//! any credentials and keeps everything in memory; it is stopped when
//! dropped.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::{aws_cli, free_port, venv_bin, wait_for};

/// The account moto answers for.
pub const ACCOUNT_ID: &str = "123456789012";

pub struct Moto {
    child: Child,
    pub port: u16,
    log: tempfile::NamedTempFile,
}

impl Moto {
    /// A moto that takes any keys and allows everything.
    pub fn start() -> Result<Moto> {
        Self::launch(None)
    }

    /// A moto that answers the first `free_requests` requests without
    /// looking at them (to set up users and data), and from then on checks
    /// every request's SigV4 signature against the keys of its IAM users,
    /// and their policies.
    pub fn start_with_auth(free_requests: usize) -> Result<Moto> {
        Self::launch(Some(free_requests))
    }

    /// Creates an IAM user with an access key (two requests), and gives it
    /// every permission when `allowed` (one more); returns the key pair.
    pub fn iam_user(&self, name: &str, allowed: bool) -> Result<(String, String)> {
        self.aws(&["iam", "create-user", "--user-name", name])?;
        let key = self.aws(&["iam", "create-access-key", "--user-name", name])?;
        if allowed {
            let policy = serde_json::json!({"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": "*", "Resource": "*"}]});
            self.aws(&[
                "iam",
                "put-user-policy",
                "--user-name",
                name,
                "--policy-name",
                "all",
                "--policy-document",
                &policy.to_string(),
            ])?;
        }
        let field = |k: &str| {
            key["AccessKey"][k]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| anyhow::anyhow!("no {k} in {key}"))
        };
        Ok((field("AccessKeyId")?, field("SecretAccessKey")?))
    }

    fn launch(free_requests: Option<usize>) -> Result<Moto> {
        let server = venv_bin("moto_server");
        if !server.exists() {
            bail!(
                "moto is not installed at {} (run scripts/setup)",
                server.display()
            );
        }
        let port = free_port()?;
        let log = tempfile::NamedTempFile::new()?;
        let mut command = Command::new(&server);
        if let Some(free) = free_requests {
            command.env("INITIAL_NO_AUTH_ACTION_COUNT", free.to_string());
        }
        let child = command
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::from(log.reopen()?))
            .stderr(Stdio::from(log.reopen()?))
            .spawn()
            .context("starting moto_server")?;
        let moto = Moto { child, port, log };
        wait_for("moto to listen", Duration::from_secs(60), || {
            Ok(std::net::TcpStream::connect(("127.0.0.1", port))
                .ok()
                .map(|_| ()))
        })?;
        Ok(moto)
    }

    /// `http://127.0.0.1:<port>`: every service's endpoint.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Runs `aws <args>` against moto and parses its JSON output (`null`
    /// when it prints nothing).
    pub fn aws(&self, args: &[&str]) -> Result<Value> {
        aws_cli(&self.url(), args)
    }

    /// Runs a Python script with boto3 configured for moto (endpoint,
    /// region, test keys); returns what it prints.
    pub fn python(&self, script: &str) -> Result<String> {
        crate::python(&self.url(), script)
    }

    /// What moto logged (its request lines), for failure messages and to
    /// see which calls were made.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
