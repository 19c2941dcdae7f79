//! One signed HTTPS exchange with an AWS service, as the agent makes them
//! (docs/aws-services.md §1): SigV4 signing with `aws-sigv4`, the agent's
//! rustls-with-ring connector, a bounded answer, a timeout per attempt and
//! a few attempts for what another attempt may fix.
//!
//! The SDK crates of ECR, SSM, Secrets Manager and S3 would add about
//! 1.5 MB of code for the four calls the agent makes (their endpoint rules,
//! every shape and error of each service, and S3's checksum tables), and
//! with it as much resident memory on every host (docs/footprint.md §1–2).

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
use aws_smithy_types::body::SdkBody;
use http_body_util::BodyExt;

use super::ServiceError;

/// An answer larger than this is refused, not held in memory.
pub const MAX_ANSWER_BYTES: usize = 8 * 1024 * 1024;
/// How long one attempt may take, connection to last byte.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts for answers another attempt may fix, with a pause between.
const ATTEMPTS: u32 = 3;
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// What the service answered.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// S3's `x-amz-bucket-region`, when given.
    pub bucket_region: Option<String>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// How a request is signed: the service's signing name, and S3's own
/// rules (the path signed as sent, the payload hash in a header).
#[derive(Debug, Clone, Copy)]
pub struct Signing<'a> {
    pub service: &'a str,
    pub region: &'a str,
    pub s3: bool,
}

/// The headers that sign `method url` with `headers` and `body`.
pub fn signed_headers(
    method: &str,
    url: &url::Url,
    headers: &[(&str, &str)],
    body: &[u8],
    signing: Signing<'_>,
    credentials: &Credentials,
    time: SystemTime,
) -> Result<Vec<(String, String)>, ServiceError> {
    let failed = |e: &dyn std::fmt::Display| ServiceError(format!("signing: {e}"));
    let host = crate::signer::host_with_port(url)
        .ok_or_else(|| ServiceError(format!("no host in {url}")))?;
    let identity = credentials.clone().into();
    let mut settings = SigningSettings::default();
    if signing.s3 {
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    }
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(signing.region)
        .name(signing.service)
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| failed(&e))?
        .into();
    let mut all: Vec<(&str, &str)> = vec![("host", host.as_str())];
    all.extend_from_slice(headers);
    let request = SignableRequest::new(
        method,
        url.as_str(),
        all.iter().copied(),
        SignableBody::Bytes(body),
    )
    .map_err(|e| failed(&e))?;
    let (instructions, _) = sign(request, &params).map_err(|e| failed(&e))?.into_parts();
    let mut out: Vec<(String, String)> = all
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    out.extend(
        instructions
            .headers()
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    Ok(out)
}

/// `<Code>: <Message>` of an XML error document, or the status alone.
pub fn xml_error_text(status: u16, body: &[u8]) -> String {
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

/// The one connection pool of these calls, built at the first.
fn connector() -> &'static Connector {
    static CONNECTOR: std::sync::OnceLock<Connector> = std::sync::OnceLock::new();
    CONNECTOR.get_or_init(|| {
        Connector::builder()
            .proxy_config(aws_smithy_http_client::proxy::ProxyConfig::from_env())
            .tls_provider(Provider::Rustls(CryptoMode::Ring))
            .tls_context(crate::https::tls_context())
            .build()
    })
}

/// Sends `method url` with `headers` and `body`, signed afresh for each
/// attempt. Answers with a 5xx status, and failures to connect or read,
/// are tried again; any other answer is returned as it is.
pub async fn send(
    method: &str,
    url: &url::Url,
    headers: &[(&str, &str)],
    body: &[u8],
    signing: Signing<'_>,
    credentials: &Credentials,
) -> Result<Answer, ServiceError> {
    let mut last = String::new();
    for attempt in 1..=ATTEMPTS {
        if attempt > 1 {
            tokio::time::sleep(RETRY_PAUSE).await;
        }
        let signed = signed_headers(
            method,
            url,
            headers,
            body,
            signing,
            credentials,
            SystemTime::now(),
        )?;
        let once = send_once(method, url, &signed, body);
        match tokio::time::timeout(ATTEMPT_TIMEOUT, once).await {
            Ok(Ok(answer)) if answer.status >= 500 => {
                last = format!("HTTP status {}", answer.status);
            }
            Ok(Ok(answer)) => return Ok(answer),
            Ok(Err(Failure::Again(why))) => last = why,
            Ok(Err(Failure::Final(e))) => return Err(e),
            Err(_) => last = format!("timed out after {ATTEMPT_TIMEOUT:?}"),
        }
    }
    Err(ServiceError(last))
}

enum Failure {
    /// Worth another attempt.
    Again(String),
    Final(ServiceError),
}

async fn send_once(
    method: &str,
    url: &url::Url,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<Answer, Failure> {
    let mut request = http::Request::builder().method(method).uri(url.as_str());
    for (name, value) in headers {
        if name != "host" {
            request = request.header(name.as_str(), value.as_str());
        }
    }
    let request = request
        .body(SdkBody::from(body.to_vec()))
        .map_err(|e| e.to_string())
        .and_then(|r| HttpRequest::try_from(r).map_err(|e| e.to_string()))
        .map_err(|e| Failure::Final(ServiceError(format!("building the request: {e}"))))?;
    let response = connector().call(request).await.map_err(|e| {
        Failure::Again(format!(
            "could not reach the service: {}",
            aws_smithy_types::error::display::DisplayErrorContext(&e)
        ))
    })?;
    let status = response.status().as_u16();
    let bucket_region = response
        .headers()
        .get("x-amz-bucket-region")
        .map(str::to_string);
    let mut stream = Box::pin(response.into_body());
    let mut bytes = Vec::new();
    while let Some(frame) = stream.frame().await {
        let data = frame
            .map_err(|e| Failure::Again(format!("reading the answer: {e}")))?
            .into_data()
            .unwrap_or_default();
        if bytes.len() + data.len() > MAX_ANSWER_BYTES {
            return Err(Failure::Final(ServiceError(format!(
                "the answer is larger than {} MiB",
                MAX_ANSWER_BYTES / (1024 * 1024)
            ))));
        }
        bytes.extend_from_slice(&data);
    }
    Ok(Answer {
        status,
        bucket_region,
        body: bytes,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn header(headers: &[(String, String)], name: &str) -> String {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }

    #[test]
    fn s3_requests_carry_the_payload_hash_and_json_ones_do_not() {
        let creds = Credentials::new("AKID", "secret", Some("token".into()), None, "test");
        let url = url::Url::parse("https://b.s3.us-east-1.amazonaws.com/k%20x.env").unwrap();
        let s3 = Signing {
            service: "s3",
            region: "us-east-1",
            s3: true,
        };
        let headers =
            signed_headers("GET", &url, &[], &[], s3, &creds, SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(header(&headers, "host"), "b.s3.us-east-1.amazonaws.com");
        assert_eq!(
            header(&headers, "x-amz-content-sha256"),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(header(&headers, "x-amz-security-token"), "token");
        let auth = header(&headers, "authorization");
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKID/19700101/us-east-1/s3/aws4_request"),
            "{auth}"
        );

        let url = url::Url::parse("https://ssm.eu-west-1.amazonaws.com/").unwrap();
        let json = Signing {
            service: "ssm",
            region: "eu-west-1",
            s3: false,
        };
        let target = [("x-amz-target", "AmazonSSM.GetParameters")];
        let headers = signed_headers(
            "POST",
            &url,
            &target,
            b"{}",
            json,
            &creds,
            SystemTime::UNIX_EPOCH,
        )
        .unwrap();
        assert_eq!(header(&headers, "x-amz-content-sha256"), "");
        let auth = header(&headers, "authorization");
        assert!(auth.contains("/eu-west-1/ssm/aws4_request"), "{auth}");
        assert!(
            auth.contains("x-amz-target"),
            "the target is signed: {auth}"
        );
    }

    #[test]
    fn xml_error_documents_read_as_code_and_message() {
        let body = b"<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>";
        assert_eq!(
            xml_error_text(404, body),
            "NoSuchKey: The specified key does not exist."
        );
        assert_eq!(xml_error_text(403, b""), "HTTP status 403");
    }
}
