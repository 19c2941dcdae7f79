//! SigV4 signatures for the two non-SDK requests the agent signs: the
//! websocket upgrade `GET` (ACS and TCS, docs/protocols.md §3.2) and the
//! header block that starts every frame the agent sends on TCS
//! (docs/protocols.md §5.3).
//!
//! Both sign a `GET` of the websocket URL with signing name `ecs`, signed
//! headers `host;x-amz-date` (plus `x-amz-security-token`), and no
//! `X-Amz-Content-Sha256` header. They differ only in the payload hash: the
//! empty string for the upgrade, the frame's JSON for TCS frames.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;

/// Signing failed: the URL or the credentials are unusable.
#[derive(Debug, thiserror::Error)]
#[error("signing request: {0}")]
pub struct SignError(String);

/// The headers to send: `Authorization`, `X-Amz-Date`, and
/// `X-Amz-Security-Token` when the credentials carry a session token,
/// in that order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    pub authorization: String,
    pub amz_date: String,
    pub security_token: Option<String>,
}

impl SignedHeaders {
    /// Name/value pairs in the order Go's `http.Header.Write` uses for a
    /// TCS frame block (sorted by name, `Host` included).
    pub fn frame_block(&self, host: &str) -> Vec<(String, String)> {
        let mut block = vec![
            ("Authorization".to_string(), self.authorization.clone()),
            ("Host".to_string(), host.to_string()),
            ("X-Amz-Date".to_string(), self.amz_date.clone()),
        ];
        if let Some(token) = &self.security_token {
            block.push(("X-Amz-Security-Token".to_string(), token.clone()));
        }
        block
    }
}

/// Signs `GET url` as the Go agent does, with `body` hashed as the payload.
pub fn sign_get(
    url: &url::Url,
    body: &[u8],
    credentials: &Credentials,
    region: &str,
    time: SystemTime,
) -> Result<SignedHeaders, SignError> {
    let host = host_with_port(url).ok_or_else(|| SignError(format!("no host in {url}")))?;
    let identity: Identity = credentials.clone().into();
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = PayloadChecksumKind::NoHeader;
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("ecs")
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| SignError(e.to_string()))?
        .into();
    let headers = [("host", host.as_str())];
    let request = SignableRequest::new(
        "GET",
        url.as_str(),
        headers.into_iter(),
        SignableBody::Bytes(body),
    )
    .map_err(|e| SignError(e.to_string()))?;
    let (instructions, _signature) = sign(request, &params)
        .map_err(|e| SignError(e.to_string()))?
        .into_parts();
    let mut authorization = None;
    let mut amz_date = None;
    let mut security_token = None;
    for (name, value) in instructions.headers() {
        match name {
            "authorization" => authorization = Some(value.to_string()),
            "x-amz-date" => amz_date = Some(value.to_string()),
            "x-amz-security-token" => security_token = Some(value.to_string()),
            _ => {}
        }
    }
    Ok(SignedHeaders {
        authorization: authorization.ok_or_else(|| SignError("no Authorization".into()))?,
        amz_date: amz_date.ok_or_else(|| SignError("no X-Amz-Date".into()))?,
        security_token,
    })
}

/// `host[:port]` exactly as written in the URL, which is what Go puts in
/// the `Host` header (and therefore what is signed).
pub fn host_with_port(url: &url::Url) -> Option<String> {
    let host = url.host_str()?;
    Some(match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    })
}

/// The text of a TCS frame: signed header block, blank line, JSON.
pub fn signed_tcs_frame(
    url: &url::Url,
    json: &str,
    credentials: &Credentials,
    region: &str,
    time: SystemTime,
) -> Result<String, SignError> {
    let signed = sign_get(url, json.as_bytes(), credentials, region, time)?;
    let host = host_with_port(url).unwrap_or_default();
    Ok(ecs_model::envelope::join_signed_frame(
        &signed.frame_block(&host),
        json,
    ))
}
