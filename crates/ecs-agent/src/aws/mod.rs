//! The AWS services a task's definition reaches through the agent
//! (docs/aws-services.md): ECR for registry tokens, SSM Parameter Store and
//! Secrets Manager for secrets, S3 for environment files. Each call goes
//! through the official AWS SDK for Rust, signed with the task's execution
//! role (or, for ECR without it, the instance's own credentials).
//!
//! Endpoints come from the SDK's standard configuration, read once: the
//! `AWS_ENDPOINT_URL` and `AWS_ENDPOINT_URL_<SERVICE>` variables and the
//! shared config file's `endpoint_url` settings, else Amazon's endpoint for
//! the region. Every client shares the agent's one HTTPS client.

pub mod arn;
pub mod ecr;

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
    /// `<Code>: <message>` for what the service answered, or the SDK's
    /// account of what went wrong before it could answer.
    pub fn from_sdk<E>(err: &SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        match (err.code(), err.message()) {
            (Some(code), Some(message)) => ServiceError(format!("{code}: {message}")),
            (Some(code), None) => ServiceError(code.to_string()),
            _ => ServiceError(format!(
                "{}",
                aws_smithy_types::error::display::DisplayErrorContext(err)
            )),
        }
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
        match self.s3_get(&self.region, object, caller).await {
            Ok(bytes) => Ok(bytes),
            Err(S3Failure::ElseWhere(region)) if region != self.region => self
                .s3_get(&region, object, caller)
                .await
                .map_err(S3Failure::into_error),
            Err(e) => Err(e.into_error()),
        }
    }

    async fn s3_get(
        &self,
        region: &str,
        object: &arn::S3Object,
        caller: Caller<'_>,
    ) -> Result<Vec<u8>, S3Failure> {
        let conf = aws_sdk_s3::config::Builder::from(self.base().await)
            .region(Region::new(region.to_string()))
            .credentials_provider(self.credentials(caller))
            .build();
        let client = aws_sdk_s3::Client::from_conf(conf);
        let out = client
            .get_object()
            .bucket(&object.bucket)
            .key(&object.key)
            .send()
            .await
            .map_err(|e| {
                let elsewhere = e
                    .raw_response()
                    .and_then(|r| r.headers().get("x-amz-bucket-region"))
                    .map(str::to_string);
                match elsewhere {
                    Some(region) => S3Failure::ElseWhere(region),
                    None => S3Failure::Other(ServiceError::from_sdk(&e)),
                }
            })?;
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| S3Failure::Other(ServiceError(format!("reading the object: {e}"))))?;
        Ok(body.into_bytes().to_vec())
    }
}

/// Why an S3 read failed: the bucket is in another region, or anything
/// else.
enum S3Failure {
    ElseWhere(String),
    Other(ServiceError),
}

impl S3Failure {
    fn into_error(self) -> ServiceError {
        match self {
            S3Failure::ElseWhere(region) => {
                ServiceError(format!("the bucket is in region {region}"))
            }
            S3Failure::Other(e) => e,
        }
    }
}
