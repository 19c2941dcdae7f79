//! A registry that Docker reaches as Amazon ECR: the Debian registry over
//! TLS on 127.0.0.1:443, under the names
//! `<account>.dkr.ecr.<region>.amazonaws.com`. For its lifetime this host
//! maps those names to 127.0.0.1 in `/etc/hosts` and Docker trusts a test
//! CA for them (`/etc/docker/certs.d/<name>/ca.crt`); both are undone
//! when it is dropped. The registry accepts one user name and password:
//! tests give it the login moto's ECR hands out for one account, so a pull
//! succeeds only with that account's token.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::registry::{Registry, Tls};

const HOSTS: &str = "/etc/hosts";
const DOCKER_CERTS: &str = "/etc/docker/certs.d";

/// The ECR host name of an account's registry in a region.
pub fn ecr_host(account: &str, region: &str) -> String {
    format!("{account}.dkr.ecr.{region}.amazonaws.com")
}

/// Lines added to `/etc/hosts`, removed again when dropped.
struct HostsEntry {
    marker: String,
}

impl HostsEntry {
    fn add(names: &[String]) -> Result<HostsEntry> {
        let marker = format!("# ecs-e2e {}", std::process::id());
        let mut text = std::fs::read_to_string(HOSTS).context("reading /etc/hosts")?;
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&format!("127.0.0.1 {} {marker}\n", names.join(" ")));
        // Written in place: in a container /etc/hosts is a bind mount.
        std::fs::write(HOSTS, text).context("writing /etc/hosts")?;
        Ok(HostsEntry { marker })
    }
}

impl Drop for HostsEntry {
    fn drop(&mut self) {
        if let Ok(text) = std::fs::read_to_string(HOSTS) {
            let kept: String = text
                .lines()
                .filter(|l| !l.ends_with(&self.marker))
                .map(|l| format!("{l}\n"))
                .collect();
            let _ = std::fs::write(HOSTS, kept);
        }
    }
}

/// Docker's trust of the test CA for one registry name.
struct DockerTrust {
    dir: PathBuf,
}

impl DockerTrust {
    fn add(name: &str, ca: &Path) -> Result<DockerTrust> {
        let dir = Path::new(DOCKER_CERTS).join(name);
        if dir.exists() {
            bail!(
                "{} exists already: another test or a real setup uses this name",
                dir.display()
            );
        }
        std::fs::create_dir_all(&dir)?;
        std::fs::copy(ca, dir.join("ca.crt"))?;
        Ok(DockerTrust { dir })
    }
}

impl Drop for DockerTrust {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn openssl(args: &[&str], dir: &Path) -> Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .context("running openssl (run scripts/setup)")?;
    if !out.status.success() {
        bail!(
            "openssl {}: {}",
            args.first().copied().unwrap_or_default(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// A test CA and a server certificate for `names`, in `dir`:
/// `ca.crt`, `server.crt`, `server.key`.
fn certificates(dir: &Path, names: &[String]) -> Result<()> {
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=ecs-e2e test CA",
        ],
        dir,
    )?;
    openssl(
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            &format!("/CN={}", names[0]),
        ],
        dir,
    )?;
    let sans: Vec<String> = names.iter().map(|n| format!("DNS:{n}")).collect();
    std::fs::write(
        dir.join("server.ext"),
        format!(
            "subjectAltName={}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
            sans.join(",")
        ),
    )?;
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
        dir,
    )
}

/// The registry, with what makes Docker reach it by its ECR names.
pub struct EcrRegistry {
    // Dropped in this order: the registry, then the trust and the names.
    pub registry: Registry,
    _trust: Vec<DockerTrust>,
    _hosts: HostsEntry,
    _certs: tempfile::TempDir,
}

impl EcrRegistry {
    /// Serves the registries of `accounts` in `region` (one storage under
    /// every name), accepting only `username`/`password`.
    pub fn start(
        accounts: &[&str],
        region: &str,
        username: &str,
        password: &str,
    ) -> Result<EcrRegistry> {
        if std::net::TcpStream::connect(("127.0.0.1", 443)).is_ok() {
            bail!("something already listens on 127.0.0.1:443");
        }
        let names: Vec<String> = accounts.iter().map(|a| ecr_host(a, region)).collect();
        let certs = tempfile::tempdir()?;
        certificates(certs.path(), &names)?;
        let trust = names
            .iter()
            .map(|n| DockerTrust::add(n, &certs.path().join("ca.crt")))
            .collect::<Result<Vec<_>>>()?;
        let hosts = HostsEntry::add(&names)?;
        let registry = Registry::start_tls(
            username,
            password,
            Tls {
                host: names[0].clone(),
                certificate: certs.path().join("server.crt"),
                key: certs.path().join("server.key"),
            },
        )?;
        Ok(EcrRegistry {
            registry,
            _trust: trust,
            _hosts: hosts,
            _certs: certs,
        })
    }
}
