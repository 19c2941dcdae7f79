//! S3 GetObject for environment files (docs/aws-services.md §4), sent
//! through [`super::http`].
//!
//! The endpoint still comes from the SDK's standard configuration (see
//! [`super::AwsServices`]): a configured endpoint is addressed path-style,
//! `<endpoint>/<bucket>/<key>`, as S3-compatible services expect; Amazon's
//! own is addressed virtual-hosted, `https://<bucket>.s3.<region>.amazonaws.com/<key>`
//! (path-style for bucket names with dots, which the wildcard certificate
//! does not cover).

use aws_credential_types::Credentials;

use super::arn::S3Object;
use super::http::{self, Signing};
use super::ServiceError;

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
            let domain = super::amazon_domain(region);
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

/// Reads the object at `url`, signed for `region` with `credentials`.
pub async fn get(
    url: &url::Url,
    region: &str,
    credentials: &Credentials,
) -> Result<Vec<u8>, S3Failure> {
    let signing = Signing {
        service: "s3",
        region,
        s3: true,
    };
    let answer = http::send("GET", url, &[], &[], signing, credentials)
        .await
        .map_err(S3Failure::Other)?;
    if answer.ok() {
        return Ok(answer.body);
    }
    match answer.bucket_region {
        Some(elsewhere) if matches!(answer.status, 301 | 400) && elsewhere != region => {
            Err(S3Failure::ElseWhere(elsewhere))
        }
        _ => Err(S3Failure::Other(ServiceError(http::xml_error_text(
            answer.status,
            &answer.body,
        )))),
    }
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
}
