//! The AWS services a task's definition reaches through the agent
//! (docs/aws-services.md): ECR for registry tokens, SSM Parameter Store and
//! Secrets Manager for secrets, S3 for environment files. The four calls
//! are made by the agent itself ([`http`] says why), signed with the task's
//! execution role (or, for ECR without it, the instance's own credentials).
//!
//! Endpoints come from the AWS SDK's standard configuration, read once: the
//! `AWS_ENDPOINT_URL_<SERVICE>` and `AWS_ENDPOINT_URL` variables and the
//! shared config file's `endpoint_url` settings, else Amazon's endpoint for
//! the region.

pub mod arn;
pub mod ecr;
pub mod http;
pub mod json_api;
pub mod s3;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use serde_json::json;
use tokio::sync::OnceCell;

use crate::credentials::RoleCredentials;
use json_api::{ApiError, Service};

/// A failed call, as text fit for a task's stop reason: the service's error
/// code and message, never a secret's value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ServiceError(pub String);

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

    /// Where `service` is: its configured endpoint, else Amazon's for
    /// `region`.
    async fn endpoint(&self, service: &Service, region: &str) -> String {
        configured_endpoint(self.base().await, service.sdk_id)
            .unwrap_or_else(|| json_api::amazon_endpoint(service, region))
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
        let endpoint = match &registry.endpoint_override {
            Some(e) => crate::ecs_client::with_scheme(e),
            None => self.endpoint(&json_api::ECR, &registry.region).await,
        };
        let credentials = self.resolved_credentials(caller).await?;
        // `registryIds` picks the proxy endpoint the answer names, which is
        // the host the pull must go to (a token itself is good for every
        // registry the caller may read).
        let answer = json_api::call(
            &endpoint,
            &json_api::ECR,
            &registry.region,
            &credentials,
            "GetAuthorizationToken",
            &json!({"registryIds": [registry.registry_id]}),
        )
        .await?;
        let token = ecr::Token::from_answer(&answer)?;
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
        let endpoint = self.endpoint(&json_api::SSM, region).await;
        let credentials = self.resolved_credentials(caller).await?;
        let answer = json_api::call(
            &endpoint,
            &json_api::SSM,
            region,
            &credentials,
            "GetParameters",
            &json!({"Names": names, "WithDecryption": true}),
        )
        .await?;
        let invalid: Vec<&str> = answer["InvalidParameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(serde_json::Value::as_str)
            .collect();
        if !invalid.is_empty() {
            return Err(ServiceError(format!(
                "invalid parameters: {}",
                invalid.join(",")
            )));
        }
        let mut values = Vec::new();
        for p in answer["Parameters"].as_array().into_iter().flatten() {
            let (Some(name), Some(value)) = (p["Name"].as_str(), p["Value"].as_str()) else {
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
        let endpoint = self.endpoint(&json_api::SECRETS_MANAGER, region).await;
        let credentials = self.resolved_credentials(caller).await?;
        let mut input = json!({"SecretId": secret.secret_id});
        if let Some(stage) = &secret.version_stage {
            input["VersionStage"] = json!(stage);
        }
        if let Some(id) = &secret.version_id {
            input["VersionId"] = json!(id);
        }
        let answer = json_api::call(
            &endpoint,
            &json_api::SECRETS_MANAGER,
            region,
            &credentials,
            "GetSecretValue",
            &input,
        )
        .await
        .map_err(|e| match e {
            ApiError::Service { code, .. } if code == "ResourceNotFoundException" => ServiceError(format!(
                "ResourceNotFoundException: The task can't retrieve the secret with ARN '{}' from AWS Secrets Manager. Check whether the secret exists in the specified Region",
                secret.secret_id
            )),
            other => ServiceError(format!("secret {}: {other}", secret.secret_id)),
        })?;
        answer["SecretString"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| {
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

/// The domain of Amazon's endpoints in `region`'s partition.
fn amazon_domain(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
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
