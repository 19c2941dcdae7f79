//! What ACS and TCS connections share (docs/protocols.md §3): the URL
//! with its Go-encoded query, the SigV4-signed upgrade, TLS (with `-k`), and
//! how a connection's end is classified for the reconnect rules.

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
        Some(tokio_tungstenite::Connector::Rustls(
            crate::trust::client_config(accept_insecure_cert)
                .map_err(|e| WsError::Protocol(e.to_string()))?,
        ))
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
