//! Names of the container instance attributes placement asks for (the
//! capabilities agents advertise when they register), in one place. A task
//! that needs one of them is only placed on an instance that has it
//! (RunTask failure reason `ATTRIBUTE` otherwise), and its task definition
//! lists them in `requiresAttributes`, as ECS does.

/// A task role: credentials served to the containers.
pub const TASK_IAM_ROLE: &str = "com.amazonaws.ecs.capability.task-iam-role";

/// A task role in `host` network mode.
pub const TASK_IAM_ROLE_NETWORK_HOST: &str =
    "com.amazonaws.ecs.capability.task-iam-role-network-host";

/// A container `secrets` entry held in SSM Parameter Store.
pub const SECRETS_SSM_ENVIRONMENT_VARIABLES: &str =
    "ecs.capability.secrets.ssm.environment-variables";

/// A container `secrets` entry held in Secrets Manager.
pub const SECRETS_ASM_ENVIRONMENT_VARIABLES: &str =
    "ecs.capability.secrets.asm.environment-variables";

/// A `logConfiguration.secretOptions` entry held in SSM Parameter Store.
pub const SECRETS_SSM_LOG_DRIVER: &str = "ecs.capability.secrets.ssm.bootstrap.log-driver";

/// A `logConfiguration.secretOptions` entry held in Secrets Manager.
pub const SECRETS_ASM_LOG_DRIVER: &str = "ecs.capability.secrets.asm.bootstrap.log-driver";

/// `repositoryCredentials`: registry credentials held in Secrets Manager.
pub const PRIVATE_REGISTRY_AUTHENTICATION_ASM: &str =
    "ecs.capability.private-registry-authentication.secretsmanager";

/// `environmentFiles` in S3.
pub const ENV_FILES_S3: &str = "ecs.capability.env-files.s3";

/// An image in Amazon ECR.
pub const ECR_AUTH: &str = "com.amazonaws.ecs.capability.ecr-auth";

/// An image in Amazon ECR pulled with the task execution role.
pub const EXECUTION_ROLE_ECR_PULL: &str = "ecs.capability.execution-role-ecr-pull";

/// `awslogs` authenticated with the task execution role.
pub const EXECUTION_ROLE_AWSLOGS: &str = "ecs.capability.execution-role-awslogs";

/// Prefix of the attribute of each logging driver (see [`logging_driver`]).
pub const LOGGING_DRIVER_PREFIX: &str = "com.amazonaws.ecs.capability.logging-driver.";

/// The attribute of a container's log driver, such as
/// `com.amazonaws.ecs.capability.logging-driver.awslogs`.
pub fn logging_driver(driver: &str) -> String {
    format!("{LOGGING_DRIVER_PREFIX}{driver}")
}
