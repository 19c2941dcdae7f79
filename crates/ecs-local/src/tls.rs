//! HTTPS and WSS on the plane's one port (docs/ecs-local.md §1.8): a
//! certificate and key given in PEM files (`--tls-cert`, `--tls-key`), or
//! a certificate issued at each start by a CA of the plane's own, kept in
//! the data directory (`--tls-self-signed`) so that clients told to trust
//! `ca.pem` once keep trusting the plane across restarts.
//!
//! Handshakes run on tasks of their own, so a client that opens a
//! connection and says nothing holds up no one but itself.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// The CA certificate `--tls-self-signed` writes to the data directory:
/// what clients are told to trust (`AWS_CA_BUNDLE`, `--ca-bundle`).
pub const CA_FILE: &str = "ca.pem";
/// Its private key, readable by the owner only.
pub const CA_KEY_FILE: &str = "ca-key.pem";

/// A client that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in flight at most; a connection beyond them is closed at
/// once, so a flood of silent connections cannot use up the process's
/// file descriptors for the 10 s each would be kept.
const MAX_HANDSHAKES: usize = 256;

/// How long the CA and each server certificate are valid.
const CA_VALIDITY: time::Duration = time::Duration::days(3650);
const SERVER_VALIDITY: time::Duration = time::Duration::days(365);

/// Errors loading or making the plane's certificate.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}: no certificate in PEM format")]
    NoCertificate(PathBuf),
    #[error("{path}: not a private key this plane can use: {source}")]
    Key { path: PathBuf, source: rcgen::Error },
    #[error("the certificate and key do not make a TLS server: {0}")]
    Config(#[from] rustls::Error),
    #[error("cannot issue a certificate: {0}")]
    Issue(#[from] rcgen::Error),
}

/// The server configuration of a PEM certificate chain (leaf first) and
/// its private key (PKCS#8, PKCS#1 or SEC1).
pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let read = |path: &Path, source| TlsError::Read {
        path: path.to_owned(),
        source,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| read(cert, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| read(cert, e))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(cert.to_owned()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| read(key, e))?;
    server_config(chain, key)
}

/// What `--tls-self-signed` made.
pub struct SelfSigned {
    pub config: Arc<ServerConfig>,
    /// The CA certificate clients should trust.
    pub ca_path: PathBuf,
    /// Whether the CA was made now (rather than read from the data
    /// directory).
    pub new_ca: bool,
}

/// Issues a server certificate for `names` (DNS names or IP addresses),
/// signed by the CA in `data_dir`, which is made first if it is missing.
pub fn self_signed(data_dir: &Path, names: &[String]) -> Result<SelfSigned, TlsError> {
    let ca_path = data_dir.join(CA_FILE);
    let key_path = data_dir.join(CA_KEY_FILE);
    let (ca_key, new_ca) = match (std::fs::read_to_string(&key_path), ca_path.exists()) {
        (Ok(pem), true) => {
            let key = KeyPair::from_pem(&pem).map_err(|source| TlsError::Key {
                path: key_path.clone(),
                source,
            })?;
            (key, false)
        }
        _ => (make_ca(&ca_path, &key_path)?, true),
    };
    // Only the CA's name and key go into what it signs, and only they
    // make the trust anchor a client takes from ca.pem: rebuilding the
    // parameters from the same key signs certificates that file vouches for.
    let issuer = Issuer::new(ca_params(), ca_key);
    let mut params = CertificateParams::new(names.to_vec())?;
    params.distinguished_name = name("ecs-local");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + SERVER_VALIDITY;
    let server_key = KeyPair::generate()?;
    let cert = params.signed_by(&server_key, &issuer)?;
    let key = PrivateKeyDer::try_from(server_key.serialize_der())
        .map_err(|e| TlsError::Config(rustls::Error::General(format!("generated key: {e}"))))?;
    let config = server_config(vec![cert.der().clone()], key)?;
    Ok(SelfSigned {
        config,
        ca_path,
        new_ca,
    })
}

/// The names a self-signed certificate covers unless told more: the
/// loopback names, the address listened on, and this host's name when
/// listening on every address.
pub fn default_names(listen: IpAddr) -> Vec<String> {
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    if listen.is_unspecified() {
        names.extend(host_name());
    } else if !listen.is_loopback() {
        names.push(listen.to_string());
    }
    names
}

/// This host's name, when it has one.
pub fn host_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

/// The CA's parameters, the same at every start but for its validity.
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = name("ecs-local CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

/// Makes the CA and writes its certificate and key; returns the key.
fn make_ca(ca_path: &Path, key_path: &Path) -> Result<KeyPair, TlsError> {
    let key = KeyPair::generate()?;
    let mut params = ca_params();
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + CA_VALIDITY;
    let cert = params.self_signed(&key)?;
    write_private(key_path, key.serialize_pem().as_bytes())?;
    std::fs::write(ca_path, cert.pem()).map_err(|source| TlsError::Write {
        path: ca_path.to_owned(),
        source,
    })?;
    Ok(key)
}

/// Writes `bytes` to a new file only its owner can read.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let write = |source| TlsError::Write {
        path: path.to_owned(),
        source,
    };
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(write)?;
    file.write_all(bytes).map_err(write)
}

/// TLS 1.2 and 1.3 with ring (the provider everything else in the
/// workspace uses), HTTP/1.1 only: websockets upgrade from it.
fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Connections that finished their TLS handshake, for `axum::serve`.
pub struct TlsListener {
    handshaken: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local_addr: SocketAddr,
}

impl TlsListener {
    /// Accepts on `listener` from now on, until this is dropped.
    pub fn new(listener: TcpListener, config: Arc<ServerConfig>) -> std::io::Result<Self> {
        let local_addr = listener.local_addr()?;
        let (tx, handshaken) = mpsc::channel(64);
        tokio::spawn(accept_loop(listener, TlsAcceptor::from(config), tx));
        Ok(Self {
            handshaken,
            local_addr,
        })
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    tx: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = tx.closed() => return,
        };
        let (stream, peer) = match accepted {
            Ok(connection) => connection,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Out of file descriptors, say: give the process a moment
                // rather than spin.
                tracing::error!(error = %e, "cannot accept a connection");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "too many TLS handshakes in flight; connection closed");
            continue;
        };
        let acceptor = acceptor.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let _slot = slot;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _ = tx.send((tls, peer)).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.handshaken.recv().await {
            Some(connection) => connection,
            // The accept loop only ends once this listener is gone.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn names() -> Vec<String> {
        default_names("127.0.0.1".parse().unwrap())
    }

    #[test]
    fn the_ca_is_made_once_and_kept_private() {
        let dir = tempfile::tempdir().unwrap();
        let first = self_signed(dir.path(), &names()).unwrap();
        assert!(first.new_ca);
        let ca = std::fs::read_to_string(&first.ca_path).unwrap();
        assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join(CA_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let second = self_signed(dir.path(), &names()).unwrap();
        assert!(!second.new_ca);
        assert_eq!(std::fs::read_to_string(&second.ca_path).unwrap(), ca);
    }

    #[test]
    fn a_damaged_ca_key_is_an_error_not_a_new_ca() {
        let dir = tempfile::tempdir().unwrap();
        self_signed(dir.path(), &names()).unwrap();
        std::fs::write(dir.path().join(CA_KEY_FILE), "not a key").unwrap();
        let Err(e) = self_signed(dir.path(), &names()) else {
            panic!("a damaged key was accepted");
        };
        assert!(e.to_string().contains(CA_KEY_FILE), "{e}");
    }

    #[test]
    fn files_without_pem_are_refused_with_their_name() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, "hello").unwrap();
        std::fs::write(&key, "hello").unwrap();
        let Err(e) = from_pem_files(&cert, &key) else {
            panic!("accepted");
        };
        assert!(e.to_string().contains("cert.pem"), "{e}");
        let Err(e) = from_pem_files(&dir.path().join("missing.pem"), &key) else {
            panic!("accepted");
        };
        assert!(e.to_string().contains("missing.pem"), "{e}");
    }

    #[test]
    fn names_cover_loopback_and_the_address_listened_on() {
        let listed = default_names("10.1.2.3".parse().unwrap());
        for expected in ["localhost", "127.0.0.1", "::1", "10.1.2.3"] {
            assert!(listed.iter().any(|n| n == expected), "{listed:?}");
        }
        assert_eq!(names().len(), 3);
    }
}
