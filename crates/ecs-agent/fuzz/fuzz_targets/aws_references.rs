//! What other AWS services hand the agent, and the references a task
//! payload gives to them (docs/aws-services.md): environment files from
//! S3, secret values and their JSON keys, registry credentials from
//! Secrets Manager, ECR tokens, and secret, parameter and object ARNs.
//! Each gives a value or a reason, never a panic.
#![no_main]

use ecs_agent::aws::arn::{registry_credentials, ssm_parameter_matches, S3Object, SecretRef};
use ecs_agent::aws::ecr;
use ecs_agent::secrets::env_file;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = env_file::parse(data);
    let text = String::from_utf8_lossy(data);
    // A reference, then (after the first NUL) a service's answer.
    let (reference, answer) = text.split_once('\0').unwrap_or((&text, ""));
    if let Ok(secret) = SecretRef::parse(reference) {
        if let Ok(value) = secret.select(answer) {
            // Only a key of a JSON object can narrow the value.
            assert!(secret.json_key.is_some() || value == answer);
        }
    }
    let _ = registry_credentials(answer);
    let _ = S3Object::parse(reference);
    let _ = ssm_parameter_matches(reference, answer);
    let _ = ecr::decode(reference);
});
