//! The AWS JSON 1.1 protocol, which ECR, SSM and Secrets Manager speak:
//! one signed `POST /` per operation, named by `X-Amz-Target`, with a JSON
//! body each way, and errors as `{"__type": …, "message": …}`.

use aws_credential_types::Credentials;
use serde_json::Value;

use super::http::{self, Signing};
use super::ServiceError;

/// What the agent needs to know of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Service {
    /// The SDK's service ID, which names its endpoint setting
    /// (`AWS_ENDPOINT_URL_<ID>`, spaces as `_`).
    pub sdk_id: &'static str,
    /// The name its requests are signed for.
    pub signing_name: &'static str,
    /// The first labels of its Amazon host name.
    pub endpoint_prefix: &'static str,
    /// What its `X-Amz-Target` starts with.
    pub target_prefix: &'static str,
}

pub const SSM: Service = Service {
    sdk_id: "SSM",
    signing_name: "ssm",
    endpoint_prefix: "ssm",
    target_prefix: "AmazonSSM",
};

pub const SECRETS_MANAGER: Service = Service {
    sdk_id: "Secrets Manager",
    signing_name: "secretsmanager",
    endpoint_prefix: "secretsmanager",
    target_prefix: "secretsmanager",
};

pub const ECR: Service = Service {
    sdk_id: "ECR",
    signing_name: "ecr",
    endpoint_prefix: "api.ecr",
    target_prefix: "AmazonEC2ContainerRegistry_V20150921",
};

/// Amazon's endpoint for `service` in `region`.
pub fn amazon_endpoint(service: &Service, region: &str) -> String {
    let domain = super::amazon_domain(region);
    format!("https://{}.{region}.{domain}", service.endpoint_prefix)
}

/// A failed operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The service refused: its error code (without namespace) and message.
    #[error("{code}: {message}")]
    Service { code: String, message: String },
    #[error("{0}")]
    Other(ServiceError),
}

impl From<ApiError> for ServiceError {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::Other(e) => e,
            service => ServiceError(service.to_string()),
        }
    }
}

/// The error a JSON 1.1 answer with `status` and `body` reports. Services
/// that answer errors in XML (some stand-ins do) are read as XML. Only
/// error answers come here, so quoting them never quotes a secret.
pub fn error_of(status: u16, body: &[u8]) -> ApiError {
    let Ok(Value::Object(doc)) = serde_json::from_slice::<Value>(body) else {
        let text = http::xml_error_text(status, body);
        return match text.split_once(": ") {
            Some((code, message)) if !code.contains(' ') => ApiError::Service {
                code: code.to_string(),
                message: message.to_string(),
            },
            _ => ApiError::Other(ServiceError(text)),
        };
    };
    let code = doc
        .get("__type")
        .or_else(|| doc.get("code"))
        .and_then(Value::as_str)
        .map(|t| {
            // `com.amazonaws.ssm#ParameterNotFound`, sometimes with
            // `:<url>` after it.
            let t = t.rsplit('#').next().unwrap_or(t);
            t.split(':').next().unwrap_or(t).to_string()
        });
    let message = doc
        .get("message")
        .or_else(|| doc.get("Message"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    match code {
        Some(code) => ApiError::Service { code, message },
        None => ApiError::Other(ServiceError(format!("HTTP status {status}"))),
    }
}

/// Calls `operation` of `service` at `endpoint` in `region` with `input`.
pub async fn call(
    endpoint: &str,
    service: &Service,
    region: &str,
    credentials: &Credentials,
    operation: &str,
    input: &Value,
) -> Result<Value, ApiError> {
    let url = url::Url::parse(endpoint).map_err(|e| {
        ApiError::Other(ServiceError(format!("invalid endpoint {endpoint:?}: {e}")))
    })?;
    let target = format!("{}.{operation}", service.target_prefix);
    let headers = [
        ("content-type", "application/x-amz-json-1.1"),
        ("x-amz-target", target.as_str()),
    ];
    let body = input.to_string();
    let signing = Signing {
        service: service.signing_name,
        region,
        s3: false,
    };
    let answer = http::send(
        "POST",
        &url,
        &headers,
        body.as_bytes(),
        signing,
        credentials,
    )
    .await
    .map_err(ApiError::Other)?;
    if !answer.ok() {
        return Err(error_of(answer.status, &answer.body));
    }
    serde_json::from_slice(&answer.body).map_err(|_| {
        // Never quoted: a successful answer may hold a secret.
        ApiError::Other(ServiceError(format!(
            "unreadable answer to {operation} (HTTP status {})",
            answer.status
        )))
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn amazon_endpoints_follow_the_partition() {
        assert_eq!(
            amazon_endpoint(&SSM, "eu-west-1"),
            "https://ssm.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            amazon_endpoint(&ECR, "cn-north-1"),
            "https://api.ecr.cn-north-1.amazonaws.com.cn"
        );
        assert_eq!(
            amazon_endpoint(&SECRETS_MANAGER, "us-east-1"),
            "https://secretsmanager.us-east-1.amazonaws.com"
        );
    }

    #[test]
    fn errors_read_as_code_and_message_in_json_or_xml() {
        assert_eq!(
            error_of(
                400,
                br#"{"__type":"com.amazonaws.secretsmanager#ResourceNotFoundException","message":"Secrets Manager can't find the specified secret."}"#
            ),
            ApiError::Service {
                code: "ResourceNotFoundException".into(),
                message: "Secrets Manager can't find the specified secret.".into()
            }
        );
        assert_eq!(
            error_of(
                400,
                br#"{"__type":"ThrottlingException:http://internal","Message":"Rate exceeded"}"#
            )
            .to_string(),
            "ThrottlingException: Rate exceeded"
        );
        assert_eq!(
            error_of(
                403,
                b"<ErrorResponse><Error><Code>AccessDenied</Code><Message>not authorized</Message></Error></ErrorResponse>"
            )
            .to_string(),
            "AccessDenied: not authorized"
        );
        assert_eq!(error_of(502, b"bad gateway").to_string(), "HTTP status 502");
    }
}
