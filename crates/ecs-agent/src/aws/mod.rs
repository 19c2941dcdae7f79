//! The AWS services a task's definition reaches through the agent
//! (docs/aws-services.md): ECR for registry tokens, SSM Parameter Store and
//! Secrets Manager for secrets, S3 for environment files. ECR, SSM and
//! Secrets Manager calls go through the official AWS SDK for Rust; the one
//! S3 read is signed by the agent itself ([`s3`] says why). All are signed
//! with the task's execution role (or, for ECR without it, the instance's
//! own credentials).
//!
//! Endpoints come from the SDK's standard configuration, read once: the
//! `AWS_ENDPOINT_URL` and `AWS_ENDPOINT_URL_<SERVICE>` variables and the
//! shared config file's `endpoint_url` settings, else Amazon's endpoint for
//! the region. Every client shares the agent's one HTTPS client.

pub mod arn;
pub mod ecr;
pub mod s3;

use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use tokio::sync::OnceCell;

use crate::credentials::RoleCredentials;

/// How long one attempt of a call may take, and how long connecting may.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A failed call, as text fit for a task's stop reason: the service's error
/// code and message, never a secret's value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ServiceError(pub String);

impl ServiceError {
    /// `<Code>: <message>` for what the service answered, else what went
    /// wrong before it could. Never the SDK's own account of a response:
    /// that quotes the raw body, which for a secret is its value.
    pub fn from_sdk<E>(err: &SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let status = || err.raw_response().map_or(0, |r| r.status().as_u16());
        let text = match err {
            SdkError::ServiceError(_) => match (err.code(), err.message()) {
                (Some(code), Some(message)) => format!("{code}: {message}"),
                (Some(code), None) => code.to_string(),
                _ => format!("HTTP status {}", status()),
            },
            // An answer the SDK could not read. Only an error answer's body
            // is quoted (some services answer errors in XML).
            SdkError::ResponseError(r) if !r.raw().status().is_success() => s3::error_text(
                r.raw().status().as_u16(),
                r.raw().body().bytes().unwrap_or_default(),
            ),
            SdkError::ResponseError(r) => format!(
                "unreadable answer (HTTP status {})",
                r.raw().status().as_u16()
            ),
            SdkError::DispatchFailure(d) => match d.as_connector_error() {
                Some(e) => format!(
                    "could not reach the service: {}",
                    aws_smithy_types::error::display::DisplayErrorContext(e)
                ),
                None => "could not reach the service".to_string(),
            },
            SdkError::TimeoutError(_) => "timed out".to_string(),
            SdkError::ConstructionFailure(_) => "could not build the request".to_string(),
            _ => "the call failed".to_string(),
        };
        ServiceError(text)
    }
}

/// Whose credentials sign a call.
#[derive(Debug, Clone, Copy)]
pub enum Caller<'a> {
    /// The instance's own (the agent's credential chain).
    Instance,
    /// A task role's, by its credentials ID (what caches are keyed on).
    Role {
        id: &'a str,
        credentials: &'a RoleCredentials,
    },
}

impl Caller<'_> {
    /// What caches keep apart: the credentials ID and role ARN, empty for
    /// the instance.
    fn cache_identity(&self) -> (String, String) {
        match self {
            Caller::Instance => (String::new(), String::new()),
            Caller::Role { id, credentials } => (id.to_string(), credentials.role_arn.clone()),
        }
    }
}

/// The agent's clients of other AWS services.
pub struct AwsServices {
    /// The agent's region: where S3 is asked first.
    region: String,
    instance_credentials: SharedCredentialsProvider,
    /// The SDK configuration from the environment and shared config files,
    /// loaded at the first call (most agents never make one).
    base: OnceCell<SdkConfig>,
    /// One endpoint for every service, over what the environment says
    /// (a test seam: unit tests point it at a closed port).
    endpoint_url: Option<String>,
    ecr_tokens: ecr::TokenCache,
}

impl std::fmt::Debug for AwsServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsServices")
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl AwsServices {
    pub fn new(region: &str, instance_credentials: SharedCredentialsProvider) -> Self {
        Self {
            region: region.to_string(),
            instance_credentials,
            base: OnceCell::new(),
            endpoint_url: None,
            ecr_tokens: ecr::TokenCache::default(),
        }
    }

    /// Sends every call to `url`, whatever the environment says.
    pub fn with_endpoint_url(mut self, url: &str) -> Self {
        self.endpoint_url = Some(url.to_string());
        self
    }

    async fn base(&self) -> &SdkConfig {
        self.base
            .get_or_init(|| async {
                let mut loader = aws_config::defaults(BehaviorVersion::latest());
                if let Some(url) = &self.endpoint_url {
                    loader = loader.endpoint_url(url);
                }
                loader
                    .http_client(crate::https::client())
                    .region(Region::new(self.region.clone()))
                    .credentials_provider(self.instance_credentials.clone())
                    .timeout_config(
                        aws_config::timeout::TimeoutConfig::builder()
                            .connect_timeout(CONNECT_TIMEOUT)
                            .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                            .build(),
                    )
                    .load()
                    .await
            })
            .await
    }

    fn credentials(&self, caller: Caller<'_>) -> SharedCredentialsProvider {
        match caller {
            Caller::Instance => self.instance_credentials.clone(),
            Caller::Role { credentials, .. } => SharedCredentialsProvider::new(Credentials::new(
                credentials.access_key_id.clone(),
                credentials.secret_access_key.clone(),
                Some(credentials.session_token.clone()).filter(|t| !t.is_empty()),
                None,
                "ecs-task-role",
            )),
        }
    }

    /// A registry login for an ECR image (docs/aws-services.md §2).
    pub async fn ecr_login(
        &self,
        registry: &ecr::Registry,
        caller: Caller<'_>,
    ) -> Result<crate::docker::RegistryAuth, ServiceError> {
        let key = ecr::TokenKey::new(registry, caller);
        if let Some(auth) = self.ecr_tokens.get(&key, std::time::SystemTime::now()) {
            return Ok(auth);
        }
        let mut conf = aws_sdk_ecr::config::Builder::from(self.base().await)
            .region(Region::new(registry.region.clone()))
            .credentials_provider(self.credentials(caller));
        if let Some(endpoint) = &registry.endpoint_override {
            conf = conf.endpoint_url(crate::ecs_client::with_scheme(endpoint));
        }
        let client = aws_sdk_ecr::Client::from_conf(conf.build());
        // Deprecated because a token is good for every registry the caller
        // may read, but the registry ID still picks the proxy endpoint the
        // answer names, which is the host the pull must go to.
        #[allow(deprecated)]
        let out = client
            .get_authorization_token()
            .registry_ids(&registry.registry_id)
            .send()
            .await
            .map_err(|e| ServiceError::from_sdk(&e))?;
        let token = ecr::Token::from_answer(out.authorization_data())?;
        let auth = token.auth.clone();
        self.ecr_tokens
            .put(key, token, std::time::SystemTime::now());
        Ok(auth)
    }

    /// Values of SSM parameters (names or ARNs), SecureStrings decrypted,
    /// by the name they were asked for. At most ten per call, as the API
    /// allows; a name the service does not know fails the whole call.
    pub async fn ssm_parameters(
        &self,
        region: &str,
        names: &[String],
        caller: Caller<'_>,
    ) -> Result<Vec<(String, String)>, ServiceError> {
        let conf = aws_sdk_ssm::config::Builder::from(self.base().await)
            .region(Region::new(region.to_string()))
            .credentials_provider(self.credentials(caller))
            .build();
        let client = aws_sdk_ssm::Client::from_conf(conf);
        let out = client
            .get_parameters()
            .set_names(Some(names.to_vec()))
            .with_decryption(true)
            .send()
            .await
            .map_err(|e| ServiceError::from_sdk(&e))?;
        if !out.invalid_parameters().is_empty() {
            return Err(ServiceError(format!(
                "invalid parameters: {}",
                out.invalid_parameters().join(",")
            )));
        }
        let mut values = Vec::new();
        for p in out.parameters() {
            let (Some(name), Some(value)) = (p.name(), p.value()) else {
                continue;
            };
            // The service names a parameter asked for by ARN by its name
            // (and one asked for with a `:version` by its bare name): map
            // each answer back to what was asked.
            for asked in names.iter().filter(|n| arn::ssm_parameter_matches(n, name)) {
                values.push((asked.clone(), value.to_string()));
            }
        }
        Ok(values)
    }

    /// A Secrets Manager secret's string value.
    pub async fn secret_string(
        &self,
        region: &str,
        secret: &arn::SecretRef,
        caller: Caller<'_>,
    ) -> Result<String, ServiceError> {
        let conf = aws_sdk_secretsmanager::config::Builder::from(self.base().await)
            .region(Region::new(region.to_string()))
            .credentials_provider(self.credentials(caller))
            .build();
        let client = aws_sdk_secretsmanager::Client::from_conf(conf);
        let out = client
            .get_secret_value()
            .secret_id(&secret.secret_id)
            .set_version_stage(secret.version_stage.clone())
            .set_version_id(secret.version_id.clone())
            .send()
            .await
            .map_err(|e| {
                let not_found = e
                    .as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception());
                if not_found {
                    ServiceError(format!(
                        "ResourceNotFoundException: The task can't retrieve the secret with ARN '{}' from AWS Secrets Manager. Check whether the secret exists in the specified Region",
                        secret.secret_id
                    ))
                } else {
                    ServiceError(format!(
                        "secret {}: {}",
                        secret.secret_id,
                        ServiceError::from_sdk(&e)
                    ))
                }
            })?;
        out.secret_string().map(str::to_string).ok_or_else(|| {
            ServiceError(format!(
                "secret {}: the secret has no string value",
                secret.secret_id
            ))
        })
    }

    /// An S3 object's bytes. The bucket is asked in the agent's region
    /// first; when S3 answers that it lives elsewhere, there.
    pub async fn s3_object(
        &self,
        object: &arn::S3Object,
        caller: Caller<'_>,
    ) -> Result<Vec<u8>, ServiceError> {
        let endpoint = configured_endpoint(self.base().await, "S3");
        let credentials = self.resolved_credentials(caller).await?;
        let read = |region: String| {
            let endpoint = endpoint.clone();
            let credentials = credentials.clone();
            async move {
                let url = s3::object_url(endpoint.as_deref(), &region, object)
                    .map_err(s3::S3Failure::Other)?;
                s3::get(&url, &region, &credentials).await
            }
        };
        match read(self.region.clone()).await {
            Ok(bytes) => Ok(bytes),
            Err(s3::S3Failure::ElseWhere(region)) => match read(region.clone()).await {
                Ok(bytes) => Ok(bytes),
                Err(s3::S3Failure::ElseWhere(_)) => Err(ServiceError(format!(
                    "the bucket is in region {region}, which redirects again"
                ))),
                Err(s3::S3Failure::Other(e)) => Err(e),
            },
            Err(s3::S3Failure::Other(e)) => Err(e),
        }
    }

    /// The keys `caller` signs with.
    async fn resolved_credentials(&self, caller: Caller<'_>) -> Result<Credentials, ServiceError> {
        use aws_credential_types::provider::ProvideCredentials as _;
        self.credentials(caller)
            .provide_credentials()
            .await
            .map_err(|e| ServiceError(format!("no credentials: {e}")))
    }
}

/// The endpoint the SDK's standard configuration gives `service_id` (as
/// the SDK spells it: `AWS_ENDPOINT_URL_<ID>`, then `AWS_ENDPOINT_URL`,
/// then the shared config file), if any.
fn configured_endpoint(base: &SdkConfig, service_id: &str) -> Option<String> {
    let key = aws_types::service_config::ServiceConfigKey::builder()
        .service_id(service_id)
        .env("AWS_ENDPOINT_URL")
        .profile("endpoint_url")
        .build()
        .ok()?;
    base.service_config()
        .and_then(|c| c.load_config(key))
        .or_else(|| base.endpoint_url().map(str::to_string))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use aws_sdk_ssm::operation::get_parameters::GetParametersError;
    use aws_smithy_types::body::SdkBody;

    fn unreadable(status: u16, body: &str) -> SdkError<GetParametersError, HttpResponse> {
        let raw = HttpResponse::new(status.try_into().unwrap(), SdkBody::from(body.to_string()));
        SdkError::response_error("malformed", raw)
    }

    #[test]
    fn an_answer_the_sdk_could_not_read_is_never_quoted() {
        let secret = unreadable(200, r#"{"Parameters":[{"Name":"/db","Value":"hunter2""#);
        assert_eq!(
            ServiceError::from_sdk(&secret).0,
            "unreadable answer (HTTP status 200)"
        );
        // Error answers in XML (as some services give them) are read.
        let denied = unreadable(
            403,
            "<ErrorResponse><Error><Code>AccessDenied</Code><Message>not authorized</Message></Error></ErrorResponse>",
        );
        assert_eq!(
            ServiceError::from_sdk(&denied).0,
            "AccessDenied: not authorized"
        );
    }
}
