//! S3 GetObject for environment files (docs/aws-services.md §4), signed by
//! the agent itself with `aws-sigv4`. The SDK's S3 client would add about
//! a megabyte of code (its endpoint rules and the checksum tables of every
//! algorithm S3 offers), and with it a megabyte of resident memory on every
//! host (docs/footprint.md §1–2), for one GET of a small file.
//!
//! The endpoint still comes from the SDK's standard configuration (see
//! [`super::AwsServices`]): a configured endpoint is addressed path-style,
//! `<endpoint>/<bucket>/<key>`, as S3-compatible services expect; Amazon's
//! own is addressed virtual-hosted, `https://<bucket>.s3.<region>.amazonaws.com/<key>`
//! (path-style for bucket names with dots, which the wildcard certificate
//! does not cover).

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use aws_smithy_http_client::Connector;
use aws_smithy_runtime_api::client::http::HttpConnector;
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_types::body::SdkBody;
use http_body_util::BodyExt;

use super::arn::S3Object;
use super::ServiceError;

/// An environment file larger than this is refused, not held in memory.
pub const MAX_OBJECT_BYTES: usize = 8 * 1024 * 1024;
/// How long one attempt may take, connection to last byte.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts for answers that another attempt may fix (5xx, a dropped
/// connection), with this pause between them.
const ATTEMPTS: u32 = 3;
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// Why a read failed.
#[derive(Debug)]
pub enum S3Failure {
    /// The bucket lives in this other region (S3's `x-amz-bucket-region`).
    ElseWhere(String),
    Other(ServiceError),
}

/// Where `object` is, at `endpoint` (a configured one) or at Amazon's
/// endpoint for `region`.
pub fn object_url(
    endpoint: Option<&str>,
    region: &str,
    object: &S3Object,
) -> Result<url::Url, ServiceError> {
    let key = encode_key(&object.key);
    let text = match endpoint {
        Some(endpoint) => format!(
            "{}/{}/{key}",
            endpoint.trim_end_matches('/'),
            encode_key(&object.bucket)
        ),
        None => {
            let domain = if region.starts_with("cn-") {
                "amazonaws.com.cn"
            } else {
                "amazonaws.com"
            };
            if virtual_hostable(&object.bucket) {
                format!("https://{}.s3.{region}.{domain}/{key}", object.bucket)
            } else {
                format!("https://s3.{region}.{domain}/{}/{key}", object.bucket)
            }
        }
    };
    url::Url::parse(&text).map_err(|e| ServiceError(format!("invalid S3 URL {text:?}: {e}")))
}

/// A bucket name that can be a DNS label of the wildcard certificate.
fn virtual_hostable(bucket: &str) -> bool {
    (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !bucket.starts_with('-')
        && !bucket.ends_with('-')
}

/// An object key in a URL path: every byte but the unreserved ones and `/`
/// percent-encoded, as S3 signs it.
fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The headers that sign `GET url` for S3 in `region`.
pub fn signed_headers(
    url: &url::Url,
    region: &str,
    credentials: &Credentials,
    time: SystemTime,
) -> Result<Vec<(String, String)>, ServiceError> {
    let host = crate::signer::host_with_port(url)
        .ok_or_else(|| ServiceError(format!("no host in {url}")))?;
    let identity = credentials.clone().into();
    let mut settings = SigningSettings::default();
    // S3's own rules: the path is signed as sent (no second encoding, no
    // normalisation), and the payload hash goes in a header.
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("s3")
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| ServiceError(format!("signing: {e}")))?
        .into();
    let request = SignableRequest::new(
        "GET",
        url.as_str(),
        [("host", host.as_str())].into_iter(),
        SignableBody::Bytes(&[]),
    )
    .map_err(|e| ServiceError(format!("signing: {e}")))?;
    let (instructions, _) = sign(request, &params)
        .map_err(|e| ServiceError(format!("signing: {e}")))?
        .into_parts();
    let mut headers = vec![("host".to_string(), host)];
    headers.extend(
        instructions
            .headers()
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    Ok(headers)
}

/// `<Code>: <Message>` of an S3 error document, or the status alone.
pub fn error_text(status: u16, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let element = |name: &str| {
        let open = format!("<{name}>");
        let close = format!("</{name}>");
        let start = text.find(&open)? + open.len();
        let end = text[start..].find(&close)? + start;
        Some(text[start..end].to_string())
    };
    match (element("Code"), element("Message")) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code,
        _ => format!("HTTP status {status}"),
    }
}

/// The one connection pool of these reads, built at the first.
fn connector() -> &'static Connector {
    static CONNECTOR: std::sync::OnceLock<Connector> = std::sync::OnceLock::new();
    CONNECTOR.get_or_init(|| {
        Connector::builder()
            .proxy_config(aws_smithy_http_client::proxy::ProxyConfig::from_env())
            .tls_provider(Provider::Rustls(CryptoMode::Ring))
            .build()
    })
}

enum Attempt {
    Done(Vec<u8>),
    Failed(S3Failure),
    /// Worth another attempt.
    Again(String),
}

/// Reads `object` at `url`, signed for `region` with `credentials`.
pub async fn get(
    url: &url::Url,
    region: &str,
    credentials: &Credentials,
) -> Result<Vec<u8>, S3Failure> {
    let mut last = String::new();
    for attempt in 1..=ATTEMPTS {
        if attempt > 1 {
            tokio::time::sleep(RETRY_PAUSE).await;
        }
        let once = tokio::time::timeout(ATTEMPT_TIMEOUT, get_once(url, region, credentials));
        match once.await {
            Ok(Attempt::Done(bytes)) => return Ok(bytes),
            Ok(Attempt::Failed(failure)) => return Err(failure),
            Ok(Attempt::Again(why)) => last = why,
            Err(_) => last = format!("timed out after {ATTEMPT_TIMEOUT:?}"),
        }
    }
    Err(S3Failure::Other(ServiceError(last)))
}

async fn get_once(url: &url::Url, region: &str, credentials: &Credentials) -> Attempt {
    let failed = |why: String| Attempt::Failed(S3Failure::Other(ServiceError(why)));
    let headers = match signed_headers(url, region, credentials, SystemTime::now()) {
        Ok(h) => h,
        Err(e) => return Attempt::Failed(S3Failure::Other(e)),
    };
    let mut request = http::Request::builder()
        .method(http::Method::GET)
        .uri(url.as_str());
    for (name, value) in &headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let request = match request
        .body(SdkBody::empty())
        .map_err(|e| e.to_string())
        .and_then(|r| HttpRequest::try_from(r).map_err(|e| e.to_string()))
    {
        Ok(r) => r,
        Err(e) => return failed(format!("building the request: {e}")),
    };
    let response = match connector().call(request).await {
        Ok(r) => r,
        Err(e) => return Attempt::Again(connector_error(&e)),
    };
    let status = response.status().as_u16();
    let elsewhere = response
        .headers()
        .get("x-amz-bucket-region")
        .map(str::to_string);
    let mut body = Box::pin(response.into_body());
    let mut bytes = Vec::new();
    while let Some(frame) = body.frame().await {
        let data = match frame {
            Ok(frame) => frame.into_data().unwrap_or_default(),
            Err(e) => return Attempt::Again(format!("reading the object: {e}")),
        };
        if bytes.len() + data.len() > MAX_OBJECT_BYTES {
            return failed(format!(
                "the object is larger than {} MiB",
                MAX_OBJECT_BYTES / (1024 * 1024)
            ));
        }
        bytes.extend_from_slice(&data);
    }
    match status {
        200..=299 => Attempt::Done(bytes),
        301 | 400 if elsewhere.as_deref().is_some_and(|r| r != region) => {
            Attempt::Failed(S3Failure::ElseWhere(elsewhere.unwrap_or_default()))
        }
        500..=599 => Attempt::Again(error_text(status, &bytes)),
        _ => failed(error_text(status, &bytes)),
    }
}

fn connector_error(e: &ConnectorError) -> String {
    format!(
        "{}",
        aws_smithy_types::error::display::DisplayErrorContext(e)
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn object(bucket: &str, key: &str) -> S3Object {
        S3Object {
            bucket: bucket.into(),
            key: key.into(),
        }
    }

    #[test]
    fn amazon_is_addressed_virtual_hosted_and_other_endpoints_path_style() {
        let o = object("my-bucket", "dir/app file.env");
        assert_eq!(
            object_url(None, "eu-west-1", &o).unwrap().as_str(),
            "https://my-bucket.s3.eu-west-1.amazonaws.com/dir/app%20file.env"
        );
        assert_eq!(
            object_url(None, "cn-north-1", &o).unwrap().as_str(),
            "https://my-bucket.s3.cn-north-1.amazonaws.com.cn/dir/app%20file.env"
        );
        assert_eq!(
            object_url(None, "us-east-1", &object("with.dots", "a.env"))
                .unwrap()
                .as_str(),
            "https://s3.us-east-1.amazonaws.com/with.dots/a.env"
        );
        assert_eq!(
            object_url(Some("http://127.0.0.1:4566/"), "us-east-1", &o)
                .unwrap()
                .as_str(),
            "http://127.0.0.1:4566/my-bucket/dir/app%20file.env"
        );
    }

    #[test]
    fn requests_are_signed_for_s3_with_the_payload_hash_in_a_header() {
        let url = url::Url::parse("https://b.s3.us-east-1.amazonaws.com/k%20x.env").unwrap();
        let creds = Credentials::new("AKID", "secret", Some("token".into()), None, "test");
        let headers = signed_headers(&url, "us-east-1", &creds, SystemTime::UNIX_EPOCH).unwrap();
        let get = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        assert_eq!(get("host"), "b.s3.us-east-1.amazonaws.com");
        assert_eq!(
            get("x-amz-content-sha256"),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(get("x-amz-security-token"), "token");
        let auth = get("authorization");
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKID/19700101/us-east-1/s3/aws4_request"),
            "{auth}"
        );
        assert!(
            auth.contains(
                "SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token"
            ),
            "{auth}"
        );
    }

    #[test]
    fn s3_error_documents_read_as_code_and_message() {
        let body = b"<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>";
        assert_eq!(
            error_text(404, body),
            "NoSuchKey: The specified key does not exist."
        );
        assert_eq!(error_text(403, b""), "HTTP status 403");
    }
}
