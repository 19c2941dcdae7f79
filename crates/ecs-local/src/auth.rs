//! `--require-auth`: SigV4 verification of ECS API requests and of the
//! ACS/TCS websocket upgrades, against the key pairs of an AWS shared
//! credentials file (docs/ecs-local.md §1.7).
//!
//! The canonical request is not written here: the request is signed again
//! with `aws-sigv4`, from the headers the caller says it signed, its
//! `X-Amz-Date`, credential scope and (when signed) session token, and the
//! two signatures are compared in constant time. The query's `+` is read
//! as a space, as the Go agent's signer reads it.

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use std::collections::HashMap;
use std::time::{Duration, SystemTime};

/// How far a request's `X-Amz-Date` may be from the plane's clock.
pub const MAX_SKEW: Duration = Duration::from_secs(5 * 60);

/// The accepted key pairs: access key ID → secret.
#[derive(Clone, Default)]
pub struct Keys {
    secrets: HashMap<String, String>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secrets.
        f.debug_struct("Keys")
            .field("access_key_ids", &self.secrets.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Keys {
    /// Every profile's `aws_access_key_id` / `aws_secret_access_key` pair
    /// of a shared credentials file. A profile with only one of the two is
    /// an error, and so is a file with no pair at all.
    pub fn from_credentials_file(text: &str) -> Result<Self, String> {
        let mut secrets = HashMap::new();
        let mut section = String::new();
        let mut id: Option<String> = None;
        let mut secret: Option<String> = None;
        let mut finish = |section: &str, id: &mut Option<String>, secret: &mut Option<String>| {
            match (id.take(), secret.take()) {
                (Some(i), Some(s)) => {
                    secrets.insert(i, s);
                    Ok(())
                }
                (None, None) => Ok(()),
                _ => Err(format!(
                    "profile [{section}] has only one of aws_access_key_id and aws_secret_access_key"
                )),
            }
        };
        for raw in text.lines() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                finish(&section, &mut id, &mut secret)?;
                section = name.trim().to_owned();
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let value = value.trim().to_owned();
            match key.trim() {
                "aws_access_key_id" => id = Some(value),
                "aws_secret_access_key" => secret = Some(value),
                _ => {}
            }
        }
        finish(&section, &mut id, &mut secret)?;
        if secrets.is_empty() {
            return Err("no aws_access_key_id / aws_secret_access_key pair found".to_owned());
        }
        Ok(Self { secrets })
    }

    /// The secret of an access key ID the file has.
    pub(crate) fn secret(&self, access_key_id: &str) -> Option<&str> {
        self.secrets.get(access_key_id).map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.secrets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }
}

/// Why a request was refused, in the words AWS uses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("Missing Authentication Token")]
    Missing,
    #[error("The security token included in the request is invalid.")]
    UnknownKey,
    #[error("The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.")]
    BadSignature,
    #[error("Signature expired: {0} is now earlier or later than the server's time by more than 5 minutes.")]
    Expired(String),
    #[error("Authorization header is malformed: {0}")]
    Malformed(String),
}

impl AuthError {
    /// The exception name sent as `__type`.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing => "MissingAuthenticationTokenException",
            AuthError::UnknownKey => "UnrecognizedClientException",
            AuthError::BadSignature | AuthError::Expired(_) | AuthError::Malformed(_) => {
                "InvalidSignatureException"
            }
        }
    }
}

/// One request as received: method, path with query, headers (any case),
/// body.
pub struct Received<'a> {
    pub method: &'a str,
    pub path_and_query: &'a str,
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

impl Received<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

struct Authorization<'a> {
    access_key: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn parse_authorization(value: &str) -> Result<Authorization<'_>, AuthError> {
    let malformed = |why: &str| AuthError::Malformed(why.to_owned());
    let rest = value
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or_else(|| malformed("expected AWS4-HMAC-SHA256"))?;
    let mut credential = None;
    let mut signed = None;
    let mut signature = None;
    for part in rest.split(',') {
        let (k, v) = part
            .trim()
            .split_once('=')
            .ok_or_else(|| malformed("expected key=value parts"))?;
        match k {
            "Credential" => credential = Some(v),
            "SignedHeaders" => signed = Some(v),
            "Signature" => signature = Some(v),
            _ => {}
        }
    }
    let credential = credential.ok_or_else(|| malformed("no Credential"))?;
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key, _date, region, service, "aws4_request"] = scope[..] else {
        return Err(malformed(
            "Credential is not <key>/<date>/<region>/<service>/aws4_request",
        ));
    };
    Ok(Authorization {
        access_key,
        region,
        service,
        signed_headers: signed
            .ok_or_else(|| malformed("no SignedHeaders"))?
            .split(';')
            .collect(),
        signature: signature.ok_or_else(|| malformed("no Signature"))?,
    })
}

/// `20261127T201716Z` as a time.
fn amz_date(text: &str) -> Option<SystemTime> {
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    let parsed = time::PrimitiveDateTime::parse(text, &format).ok()?;
    let seconds = u64::try_from(parsed.assume_utc().unix_timestamp()).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(seconds))
}

/// Verifies the request's SigV4 signature at `now` (`None`: no clock check,
/// for recorded requests).
pub fn verify(
    keys: &Keys,
    request: &Received<'_>,
    now: Option<SystemTime>,
) -> Result<(), AuthError> {
    let value = request.header("authorization").ok_or(AuthError::Missing)?;
    let auth = parse_authorization(value)?;
    let secret = keys
        .secrets
        .get(auth.access_key)
        .ok_or(AuthError::UnknownKey)?;
    let date_text = request
        .header("x-amz-date")
        .ok_or_else(|| AuthError::Malformed("no X-Amz-Date".to_owned()))?;
    let time = amz_date(date_text)
        .ok_or_else(|| AuthError::Malformed(format!("bad X-Amz-Date {date_text}")))?;
    if let Some(now) = now {
        let skew = now.duration_since(time).unwrap_or_else(|e| e.duration());
        if skew > MAX_SKEW {
            return Err(AuthError::Expired(date_text.to_owned()));
        }
    }
    if !auth.signed_headers.contains(&"host") {
        return Err(AuthError::Malformed("host is not signed".to_owned()));
    }
    let token = auth
        .signed_headers
        .contains(&"x-amz-security-token")
        .then(|| request.header("x-amz-security-token"))
        .flatten()
        .map(str::to_owned);
    // The signer adds X-Amz-Date and the token itself.
    let mut headers: Vec<(&str, &str)> = Vec::new();
    for name in &auth.signed_headers {
        if matches!(*name, "x-amz-date" | "x-amz-security-token") {
            continue;
        }
        let value = request
            .header(name)
            .ok_or_else(|| AuthError::Malformed(format!("signed header {name} is missing")))?;
        headers.push((name, value));
    }
    let identity = Credentials::new(auth.access_key, secret, token, None, "ecs-local").into();
    let mut settings = SigningSettings::default();
    settings.excluded_headers = Some(Vec::new());
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(auth.region)
        .name(auth.service)
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| AuthError::Malformed(e.to_string()))?
        .into();
    let host = request.header("host").unwrap_or_default();
    let url = format!(
        "http://{host}{}",
        request.path_and_query.replace('+', "%20")
    );
    let signable = SignableRequest::new(
        request.method,
        &url,
        headers.into_iter(),
        SignableBody::Bytes(request.body),
    )
    .map_err(|e| AuthError::Malformed(e.to_string()))?;
    let output = sign(signable, &params).map_err(|e| AuthError::Malformed(e.to_string()))?;
    let expected = output.signature();
    if constant_time_eq(expected.as_bytes(), auth.signature.as_bytes()) {
        Ok(())
    } else {
        Err(AuthError::BadSignature)
    }
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests;
