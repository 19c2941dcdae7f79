//! A task's secrets and environment files (docs/aws-services.md §3–4):
//! fetched with its execution role before its first container is created,
//! kept in memory only, and handed to the create of each container. The
//! checkpoint keeps the references, never the values, so an agent that
//! restarts before every container exists fetches them again.

pub mod env_file;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures_util::future::join_all;

use crate::aws::arn::{S3Object, SecretRef};
use crate::aws::{AwsServices, Caller};
use crate::engine::task::{SecretProvider, SecretTarget, TaskSpec};

/// GetParameters takes at most this many names.
const SSM_BATCH: usize = 10;

/// What one container gets from its task's secrets and files.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ContainerSecrets {
    /// Variables from `secrets`; they win over `environment`.
    pub env: BTreeMap<String, String>,
    /// Log driver options from `logConfiguration.secretOptions`.
    pub log_options: BTreeMap<String, String>,
    /// Each environment file's variables, in the order given; a variable
    /// already set (by `environment`, a secret or an earlier file) wins.
    pub env_files: Vec<BTreeMap<String, String>>,
}

impl std::fmt::Debug for ContainerSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerSecrets")
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("log_options", &self.log_options.keys().collect::<Vec<_>>())
            .field("env_files", &self.env_files.len())
            .finish()
    }
}

/// Every container's share of a task's secrets, by container name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskSecrets {
    containers: BTreeMap<String, ContainerSecrets>,
}

impl TaskSecrets {
    /// Values already in hand, by container name.
    pub fn from_containers(
        containers: impl IntoIterator<Item = (String, ContainerSecrets)>,
    ) -> Self {
        Self {
            containers: containers.into_iter().collect(),
        }
    }

    pub fn container(&self, name: &str) -> Option<&ContainerSecrets> {
        self.containers.get(name)
    }
}

/// Where a task's fetched values stand. Never saved: after a restart it
/// starts [`SecretsState::Missing`] again.
#[derive(Debug, Clone, Default)]
pub enum SecretsState {
    #[default]
    Missing,
    Fetching,
    Ready(Arc<TaskSecrets>),
}

impl PartialEq for SecretsState {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (SecretsState::Missing, SecretsState::Missing)
            | (SecretsState::Fetching, SecretsState::Fetching) => true,
            (SecretsState::Ready(a), SecretsState::Ready(b)) => Arc::ptr_eq(a, b) || a == b,
            _ => false,
        }
    }
}

/// Whether any container of the task has secrets or environment files.
pub fn needed(spec: &TaskSpec) -> bool {
    spec.containers
        .iter()
        .any(|c| !c.secrets.is_empty() || !c.environment_files.is_empty())
}

/// Why a task's secrets could not be fetched: the task's stop reason
/// follows from it. Names what failed, never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FetchError(pub String);

impl FetchError {
    /// The reason the task stops with, in the words ECS uses.
    pub fn reason(&self) -> String {
        format!(
            "ResourceInitializationError: unable to pull secrets or registry auth: execution resource retrieval failed: {}",
            self.0
        )
    }
}

/// Fetches every secret and environment file of `spec` as `caller` (the
/// execution role), each value once however many containers use it.
/// `default_region` is asked when a secret names none.
pub async fn fetch(
    aws: &AwsServices,
    spec: &TaskSpec,
    caller: Caller<'_>,
    default_region: &str,
) -> Result<TaskSecrets, FetchError> {
    let region_of = |r: &Option<String>| r.clone().unwrap_or_else(|| default_region.to_string());
    let mut ssm: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut asm: BTreeSet<(String, String)> = BTreeSet::new();
    let mut files: BTreeSet<String> = BTreeSet::new();
    for c in &spec.containers {
        for s in &c.secrets {
            match s.provider {
                SecretProvider::Ssm => {
                    ssm.entry(region_of(&s.region))
                        .or_default()
                        .insert(s.value_from.clone());
                }
                SecretProvider::Asm => {
                    asm.insert((region_of(&s.region), s.value_from.clone()));
                }
            }
        }
        files.extend(c.environment_files.iter().cloned());
    }

    let ssm_calls = ssm.iter().flat_map(|(region, names)| {
        let names: Vec<String> = names.iter().cloned().collect();
        names
            .chunks(SSM_BATCH)
            .map(|batch| {
                let (region, batch) = (region.clone(), batch.to_vec());
                async move {
                    let values =
                        aws.ssm_parameters(&region, &batch, caller)
                            .await
                            .map_err(|e| {
                                FetchError(format!(
                                "fetching secret data from SSM Parameter Store in {region}: {e}"
                            ))
                            })?;
                    Ok::<_, FetchError>((region, values))
                }
            })
            .collect::<Vec<_>>()
    });
    let asm_calls = asm.iter().map(|(region, value_from)| async move {
        let reference = SecretRef::parse(value_from).map_err(|e| FetchError(e.0))?;
        let secret = aws
            .secret_string(region, &reference, caller)
            .await
            .map_err(|e| {
                FetchError(format!(
                    "fetching secret data from AWS Secrets Manager in {region}: {e}"
                ))
            })?;
        let value = reference.select(&secret).map_err(|e| FetchError(e.0))?;
        Ok::<_, FetchError>(((region.clone(), value_from.clone()), value))
    });
    let file_calls = files.iter().map(|arn| async move {
        let object = S3Object::parse(arn).map_err(|e| FetchError(e.0))?;
        let bytes = aws.s3_object(&object, caller).await.map_err(|e| {
            FetchError(format!(
                "unable to download env file with key {} from bucket {}: {e}",
                object.key, object.bucket
            ))
        })?;
        let vars = env_file::parse(&bytes)
            .map_err(|e| FetchError(format!("environment file {arn}: {e}")))?;
        Ok::<_, FetchError>((arn.clone(), vars))
    });
    let (ssm_answers, asm_answers, file_answers) = futures_util::join!(
        join_all(ssm_calls.collect::<Vec<_>>()),
        join_all(asm_calls),
        join_all(file_calls)
    );

    let mut values: BTreeMap<(SecretProvider, String, String), String> = BTreeMap::new();
    for answer in ssm_answers {
        let (region, pairs) = answer?;
        for (name, value) in pairs {
            values.insert((SecretProvider::Ssm, region.clone(), name), value);
        }
    }
    for answer in asm_answers {
        let ((region, value_from), value) = answer?;
        values.insert((SecretProvider::Asm, region, value_from), value);
    }
    let mut file_vars = BTreeMap::new();
    for answer in file_answers {
        let (arn, vars) = answer?;
        file_vars.insert(arn, vars);
    }

    let mut secrets = TaskSecrets::default();
    for c in &spec.containers {
        let mut mine = ContainerSecrets::default();
        for s in &c.secrets {
            let key = (s.provider, region_of(&s.region), s.value_from.clone());
            let value = values.get(&key).ok_or_else(|| {
                FetchError(format!(
                    "secret {:?} of container {:?}: no value was returned for {}",
                    s.name, c.name, s.value_from
                ))
            })?;
            let target = match s.target {
                SecretTarget::Environment => &mut mine.env,
                SecretTarget::LogDriver => &mut mine.log_options,
            };
            target.insert(s.name.clone(), value.clone());
        }
        for arn in &c.environment_files {
            if let Some(vars) = file_vars.get(arn) {
                mine.env_files.push(vars.clone());
            }
        }
        if mine != ContainerSecrets::default() {
            secrets.containers.insert(c.name.clone(), mine);
        }
    }
    Ok(secrets)
}
