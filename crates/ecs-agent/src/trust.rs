//! What the agent's TLS clients trust (docs/protocols.md §3.3): the host's
//! root certificates, plus those of the PEM file `AWS_CA_BUNDLE` names (as
//! every AWS SDK reads it), or, under `-k`, any certificate at all. The ECS
//! API client and the ACS and TCS websockets all follow it, as the Go
//! agent's do; the other AWS calls (ECR, S3, Secrets Manager, …) honour
//! `AWS_CA_BUNDLE` but never `-k`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// The certificates of `AWS_CA_BUNDLE`, checked to be usable as roots.
#[derive(Debug, Clone)]
pub struct CaBundle {
    pem: Vec<u8>,
    certs: Vec<CertificateDer<'static>>,
}

#[derive(Debug, thiserror::Error)]
pub enum CaBundleError {
    #[error("AWS_CA_BUNDLE {path}: cannot read it: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("AWS_CA_BUNDLE {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl CaBundle {
    /// Reads and checks the file: at least one certificate, each one a
    /// usable trust anchor (a damaged one would otherwise surface only as
    /// an unverifiable server, far from its cause).
    pub fn load(path: &Path) -> Result<Self, CaBundleError> {
        let pem = std::fs::read(path).map_err(|source| CaBundleError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(pem).map_err(|message| CaBundleError::Invalid {
            path: path.to_owned(),
            message,
        })
    }

    fn parse(pem: Vec<u8>) -> Result<Self, String> {
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("not PEM: {e}"))?;
        if certs.is_empty() {
            return Err("no certificate in it".to_owned());
        }
        let mut roots = rustls::RootCertStore::empty();
        for (n, cert) in certs.iter().enumerate() {
            roots
                .add(cert.clone())
                .map_err(|e| format!("certificate {}: {e}", n + 1))?;
        }
        Ok(Self { pem, certs })
    }

    /// The file as read, for the SDK's trust store.
    pub fn pem(&self) -> &[u8] {
        &self.pem
    }
}

static CA_BUNDLE: OnceLock<CaBundle> = OnceLock::new();

/// Adds the bundle's certificates to what every TLS client of this process
/// trusts. Called once at start-up, before the first connection: clients
/// built before it do not see it.
pub fn trust_ca_bundle(bundle: CaBundle) {
    let _ = CA_BUNDLE.set(bundle);
}

/// The bundle trusted beside the host's roots, if any.
pub fn ca_bundle() -> Option<&'static CaBundle> {
    CA_BUNDLE.get()
}

/// The rustls configuration of the websockets (and, under `-k`, of the ECS
/// API client), built once per process for each `-k` setting: reading the
/// host's trusted roots costs a directory scan and a parse of every
/// certificate, which a reconnect need not repeat. ring is the provider,
/// as for the SDK's calls (`crate::https`).
pub fn client_config(
    accept_insecure_cert: bool,
) -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    static VERIFIED: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    static INSECURE: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    let cell = if accept_insecure_cert {
        &INSECURE
    } else {
        &VERIFIED
    };
    if let Some(config) = cell.get() {
        return Ok(config.clone());
    }
    let config = Arc::new(build_client_config(accept_insecure_cert, ca_bundle())?);
    Ok(cell.get_or_init(|| config).clone())
}

fn build_client_config(
    accept_insecure_cert: bool,
    bundle: Option<&CaBundle>,
) -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])?;
    Ok(if accept_insecure_cert {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            .with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        for cert in bundle.map(|b| b.certs.as_slice()).unwrap_or_default() {
            let _ = roots.add(cert.clone());
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    })
}

/// Accepts any server certificate: what `-k` asks for.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ca_pem() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["test CA".to_owned()]).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).unwrap().pem()
    }

    #[test]
    fn a_bundle_of_certificates_loads() {
        let pem = format!("{}{}", ca_pem(), ca_pem());
        let bundle = CaBundle::parse(pem.clone().into_bytes()).unwrap();
        assert_eq!(bundle.certs.len(), 2);
        assert_eq!(bundle.pem(), pem.as_bytes());
    }

    #[test]
    fn files_without_a_usable_certificate_are_refused_with_their_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bundle.pem");
        for text in [
            "",
            "hello",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
        ] {
            std::fs::write(&path, text).unwrap();
            let e = CaBundle::load(&path).unwrap_err().to_string();
            assert!(e.contains("bundle.pem"), "{text:?}: {e}");
        }
        let e = CaBundle::load(&dir.path().join("missing.pem"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.pem"), "{e}");
    }
}
