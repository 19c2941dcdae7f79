//! EC2 instance metadata (IMDS), which the agent can live without: it
//! supplies the identity document sent at registration and, when none is
//! configured, the region. Off when `ECS_EXTERNAL=true`,
//! `AWS_EC2_METADATA_DISABLED=true` or `-blackhole-ec2-metadata`; the
//! endpoint can be moved with `AWS_EC2_METADATA_SERVICE_ENDPOINT`.

use std::time::Duration;

use aws_credential_types::provider::SharedCredentialsProvider;

/// The whole budget for one metadata lookup, retries included
/// (docs/protocols.md §2.7).
const LOOKUP_BUDGET: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct InstanceMetadata {
    client: Option<aws_config::imds::Client>,
}

/// The instance identity document and its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityDocument {
    pub document: String,
    pub signature: String,
}

impl IdentityDocument {
    /// A member of the document, e.g. `region` or `instanceId`.
    pub fn field(&self, name: &str) -> Option<String> {
        let value: serde_json::Value = serde_json::from_str(&self.document).ok()?;
        value.get(name)?.as_str().map(str::to_string)
    }
}

impl InstanceMetadata {
    pub fn new(enabled: bool, endpoint: Option<&str>) -> Self {
        if !enabled {
            return Self { client: None };
        }
        let mut builder = aws_config::imds::Client::builder()
            .configure(&crate::https::provider_config())
            .connect_timeout(Duration::from_secs(2))
            .read_timeout(Duration::from_secs(5))
            .max_attempts(4);
        if let Some(endpoint) = endpoint {
            match builder.clone().endpoint(endpoint) {
                Ok(b) => builder = b,
                Err(e) => {
                    tracing::warn!(endpoint, error = %e, "ignoring invalid instance metadata endpoint")
                }
            }
        }
        Self {
            client: Some(builder.build()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.client.is_some()
    }

    async fn get(&self, path: &str) -> Option<String> {
        let client = self.client.as_ref()?;
        match tokio::time::timeout(LOOKUP_BUDGET, client.get(path)).await {
            Ok(Ok(value)) => Some(value.as_ref().to_string()),
            Ok(Err(e)) => {
                tracing::warn!(path, error = %e, "instance metadata lookup failed");
                None
            }
            Err(_) => {
                tracing::warn!(path, "instance metadata lookup timed out");
                None
            }
        }
    }

    /// The identity document and signature, or `None` when unavailable
    /// (registration then sends empty strings).
    pub async fn identity_document(&self) -> Option<IdentityDocument> {
        let document = self
            .get("/latest/dynamic/instance-identity/document")
            .await?;
        let signature = self
            .get("/latest/dynamic/instance-identity/signature")
            .await
            .unwrap_or_default();
        Some(IdentityDocument {
            document,
            signature,
        })
    }
}

/// Credentials for the agent's own AWS calls: the SDK's default chain, but
/// without the instance-metadata provider when metadata is off.
pub async fn credentials_provider(imds_enabled: bool, region: &str) -> SharedCredentialsProvider {
    if imds_enabled {
        let chain = aws_config::default_provider::credentials::DefaultCredentialsChain::builder()
            .configure(crate::https::provider_config())
            .region(aws_config::Region::new(region.to_string()))
            .build()
            .await;
        return SharedCredentialsProvider::new(chain);
    }
    let chain = aws_config::meta::credentials::CredentialsProviderChain::first_try(
        "Environment",
        aws_config::environment::EnvironmentVariableCredentialsProvider::new(),
    )
    .or_else(
        "Profile",
        aws_config::profile::ProfileFileCredentialsProvider::builder()
            .configure(&crate::https::provider_config())
            .build(),
    );
    SharedCredentialsProvider::new(chain)
}
