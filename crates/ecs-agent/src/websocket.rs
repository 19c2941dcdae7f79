//! What ACS and TCS connections share (docs/protocols.md §3): the URL
//! with its Go-encoded query, the SigV4-signed upgrade, TLS (with `-k`), and
//! how a connection's end is classified for the reconnect rules.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::signer;

pub type WsStream = WebSocketStream<MaybeTlsStream<TcpStream>>;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum WsError {
    #[error("unknown scheme in {0:?}")]
    Scheme(String),
    #[error(transparent)]
    Sign(#[from] signer::SignError),
    #[error("websocket handshake timed out")]
    Timeout,
    /// The server answered the upgrade with an error status.
    #[error("handshake refused with HTTP {status}: {body}")]
    Refused { status: u16, body: String },
    #[error("websocket: {0}")]
    Protocol(String),
}

/// Go's `url.QueryEscape`: everything but `A-Za-z0-9-_.~` is escaped, and a
/// space becomes `+`.
fn query_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `<endpoint>` + `/` if missing + `ws?` + the query with keys sorted.
pub fn ws_url(
    endpoint: &str,
    mut params: Vec<(&str, String)>,
) -> Result<url::Url, url::ParseError> {
    params.sort_by(|a, b| a.0.cmp(b.0));
    let query: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{}={}", query_escape(k), query_escape(v)))
        .collect();
    let slash = if endpoint.ends_with('/') { "" } else { "/" };
    url::Url::parse(&format!("{endpoint}{slash}ws?{}", query.join("&")))
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

/// The TLS configuration of the websockets, built once per process for
/// each `-k` setting: reading the host's trusted roots costs a directory
/// scan and a parse of every certificate, which a reconnect need not repeat.
/// ring is the provider, as for the SDK's calls (`crate::https`).
fn tls_config(accept_insecure_cert: bool) -> Result<Arc<rustls::ClientConfig>, WsError> {
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
    let config = Arc::new(build_tls_config(accept_insecure_cert)?);
    Ok(cell.get_or_init(|| config).clone())
}

fn build_tls_config(accept_insecure_cert: bool) -> Result<rustls::ClientConfig, WsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])
        .map_err(|e| WsError::Protocol(e.to_string()))?;
    if accept_insecure_cert {
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            .with_no_client_auth());
    }
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// Opens a websocket to `url` (http:// → ws://, https:// → wss://) with the
/// SigV4-signed upgrade the backend expects.
pub async fn connect(
    url: &url::Url,
    credentials: &Credentials,
    region: &str,
    time: SystemTime,
    accept_insecure_cert: bool,
) -> Result<WsStream, WsError> {
    let scheme = match url.scheme() {
        "http" => "ws",
        "https" => "wss",
        _ => return Err(WsError::Scheme(url.to_string())),
    };
    let signed = signer::sign_get(url, b"", credentials, region, time)?;
    let mut ws = url.clone();
    ws.set_scheme(scheme)
        .map_err(|()| WsError::Scheme(url.to_string()))?;
    let mut request = ws
        .as_str()
        .into_client_request()
        .map_err(|e| WsError::Protocol(e.to_string()))?;
    let headers = request.headers_mut();
    let mut put = |name: &'static str, value: &str| -> Result<(), WsError> {
        let value = http::HeaderValue::from_str(value)
            .map_err(|e| WsError::Protocol(format!("header {name}: {e}")))?;
        headers.insert(name, value);
        Ok(())
    };
    put("Authorization", &signed.authorization)?;
    put("X-Amz-Date", &signed.amz_date)?;
    if let Some(token) = &signed.security_token {
        put("X-Amz-Security-Token", token)?;
    }
    let connector = if scheme == "wss" {
        Some(tokio_tungstenite::Connector::Rustls(tls_config(
            accept_insecure_cert,
        )?))
    } else {
        None
    };
    let attempt = tokio_tungstenite::connect_async_tls_with_config(request, None, false, connector);
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, attempt).await {
        Err(_) => Err(WsError::Timeout),
        Ok(Ok((stream, _response))) => Ok(stream),
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(response))) => {
            let status = response.status().as_u16();
            let body = response
                .body()
                .as_deref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            Err(WsError::Refused { status, body })
        }
        Ok(Err(e)) => Err(WsError::Protocol(e.to_string())),
    }
}

/// A close frame with code 1000, 1001, 1006 or 1011 (or none) means
/// "reconnect at once"; any other code means back off (docs/protocols.md §3.7).
pub fn close_is_clean(frame: &Option<CloseFrame>) -> Result<(), String> {
    match frame {
        None => Ok(()),
        Some(f) => match f.code {
            CloseCode::Normal | CloseCode::Away | CloseCode::Abnormal | CloseCode::Error => Ok(()),
            code => Err(format!(
                "closed by server with code {}: {}",
                u16::from(code),
                f.reason
            )),
        },
    }
}

/// A connection that ended without a close frame but in an orderly way
/// counts as 1006; a reset does not.
pub fn read_error_is_clean(e: &tokio_tungstenite::tungstenite::Error) -> bool {
    use tokio_tungstenite::tungstenite::error::ProtocolError;
    use tokio_tungstenite::tungstenite::Error;
    matches!(
        e,
        Error::ConnectionClosed
            | Error::AlreadyClosed
            | Error::Protocol(ProtocolError::ResetWithoutClosingHandshake)
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn query_escaping_is_gos() {
        assert_eq!(
            query_escape("DockerVersion: 20.10.24+dfsg1"),
            "DockerVersion%3A+20.10.24%2Bdfsg1"
        );
        assert_eq!(query_escape("a~b*c"), "a~b%2Ac");
    }
}
