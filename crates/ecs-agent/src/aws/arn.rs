//! The references a task definition gives to secrets and files: Secrets
//! Manager secrets (with the JSON key and version ECS lets a reference
//! name), SSM parameters by name or ARN, and S3 objects
//! (docs/aws-services.md §3). They come from the task payload, so every
//! parse gives a reason instead of panicking.

/// A Secrets Manager secret and what to take from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRef {
    /// What GetSecretValue is asked for: the secret's ARN without the
    /// ECS suffix, or the name given.
    pub secret_id: String,
    /// Take this key of the secret's JSON object instead of the whole
    /// string.
    pub json_key: Option<String>,
    pub version_stage: Option<String>,
    pub version_id: Option<String>,
}

/// Why a reference cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ReferenceError(pub String);

/// The six colon-separated fields of an ARN, the last one whole
/// (it may hold colons itself).
fn arn_fields(text: &str) -> Option<[&str; 6]> {
    let mut parts = text.splitn(6, ':');
    let fields = [
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    ];
    (fields[0] == "arn").then_some(fields)
}

impl SecretRef {
    /// A secret reference as ECS defines it: a plain secret name or ARN,
    /// or an ARN followed by `:<json-key>:<version-stage>:<version-id>`,
    /// each of the three possibly empty.
    pub fn parse(value_from: &str) -> Result<SecretRef, ReferenceError> {
        let value_from = value_from.trim();
        if value_from.is_empty() {
            return Err(ReferenceError("empty secret reference".into()));
        }
        let Some(fields) = arn_fields(value_from) else {
            return Ok(SecretRef {
                secret_id: value_from.to_string(),
                json_key: None,
                version_stage: None,
                version_id: None,
            });
        };
        let invalid = || {
            ReferenceError(format!(
                "{value_from}: an invalid ARN format for the AWS Secrets Manager secret was specified. Specify a valid ARN and try again."
            ))
        };
        if fields[2] != "secretsmanager" {
            return Err(invalid());
        }
        let resource: Vec<&str> = fields[5].split(':').collect();
        let some = |s: &str| Some(s.to_string()).filter(|s| !s.is_empty());
        match resource.as_slice() {
            ["secret", name] if !name.is_empty() => Ok(SecretRef {
                secret_id: value_from.to_string(),
                json_key: None,
                version_stage: None,
                version_id: None,
            }),
            ["secret", name, key, stage, version] if !name.is_empty() => Ok(SecretRef {
                secret_id: format!(
                    "{}:{}:{}:{}:{}:secret:{name}",
                    fields[0], fields[1], fields[2], fields[3], fields[4]
                ),
                json_key: some(key),
                version_stage: some(stage),
                version_id: some(version),
            }),
            _ => Err(invalid()),
        }
    }

    /// The value to use, from the secret's string: the whole of it, or
    /// the JSON key asked for (a string as it is, any other JSON value as
    /// its JSON text).
    pub fn select(&self, secret: &str) -> Result<String, ReferenceError> {
        let Some(key) = &self.json_key else {
            return Ok(secret.to_string());
        };
        let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(secret)
            .map_err(|_| {
                ReferenceError(format!(
                    "secret {}: the secret's value is not a JSON object, so json key {key} cannot be read from it",
                    self.secret_id
                ))
            })?;
        match object.get(key) {
            Some(serde_json::Value::String(s)) => Ok(s.clone()),
            Some(other) => Ok(other.to_string()),
            None => Err(ReferenceError(format!(
                "retrieved secret from Secrets Manager did not contain json key {key}"
            ))),
        }
    }
}

/// The registry credentials a Secrets Manager secret holds for
/// `repositoryCredentials`: a JSON object with `username` and `password`.
pub fn registry_credentials(secret: &str) -> Result<(String, String), ReferenceError> {
    #[derive(serde::Deserialize)]
    struct Pair {
        #[serde(default)]
        username: String,
        #[serde(default)]
        password: String,
    }
    let pair: Pair = serde_json::from_str(secret).map_err(|_| {
        ReferenceError(
            "asm fetching authorization data: unable to unmarshal secret value, invalid schema"
                .into(),
        )
    })?;
    if pair.username.is_empty() {
        return Err(ReferenceError(
            "asm fetching username: AuthorizationData is malformed, empty field".into(),
        ));
    }
    if pair.password.is_empty() {
        return Err(ReferenceError(
            "asm fetching password: AuthorizationData is malformed, empty field".into(),
        ));
    }
    Ok((pair.username, pair.password))
}

/// An SSM parameter reference reduced to what names one parameter: the
/// name without the ARN around it, its leading `/`, or a `:version` or
/// `:label` selector.
fn ssm_parameter_name(reference: &str) -> &str {
    let name = match arn_fields(reference) {
        Some(fields) => {
            let resource = fields[5];
            resource
                .strip_prefix("parameter/")
                .or_else(|| resource.strip_prefix("parameter"))
                .unwrap_or(resource)
        }
        None => reference,
    };
    let name = name.split(':').next().unwrap_or(name);
    name.trim_start_matches('/')
}

/// Whether the parameter the service answered with (`answered`, a name or
/// an ARN) is the one asked for as `asked` (a name or an ARN, perhaps with
/// a selector).
pub fn ssm_parameter_matches(asked: &str, answered: &str) -> bool {
    ssm_parameter_name(asked) == ssm_parameter_name(answered)
}

/// An S3 object named by its ARN, `arn:<partition>:s3:::<bucket>/<key>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct S3Object {
    pub bucket: String,
    pub key: String,
}

impl S3Object {
    pub fn parse(arn: &str) -> Result<S3Object, ReferenceError> {
        let invalid = |why: &str| {
            ReferenceError(format!(
                "unable to parse bucket and key from s3 ARN specified in environmentFile {arn}: {why}"
            ))
        };
        let fields = arn_fields(arn.trim()).ok_or_else(|| invalid("not an ARN"))?;
        if fields[2] != "s3" {
            return Err(invalid("not an S3 ARN"));
        }
        let (bucket, key) = fields[5]
            .split_once('/')
            .ok_or_else(|| invalid("no object key"))?;
        if bucket.is_empty() || key.is_empty() {
            return Err(invalid("empty bucket or key"));
        }
        Ok(S3Object {
            bucket: bucket.to_string(),
            key: key.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const SECRET: &str = "arn:aws:secretsmanager:us-west-2:123456789012:secret:db-AbCdEf";

    #[test]
    fn a_plain_secret_arn_or_name_is_asked_for_as_it_is() {
        let plain = SecretRef::parse(SECRET).unwrap();
        assert_eq!(plain.secret_id, SECRET);
        assert_eq!(plain.json_key, None);
        let name = SecretRef::parse("db-password").unwrap();
        assert_eq!(name.secret_id, "db-password");
    }

    #[test]
    fn the_ecs_suffix_names_a_json_key_and_a_version() {
        let r = SecretRef::parse(&format!("{SECRET}:password:AWSPREVIOUS:")).unwrap();
        assert_eq!(r.secret_id, SECRET);
        assert_eq!(r.json_key.as_deref(), Some("password"));
        assert_eq!(r.version_stage.as_deref(), Some("AWSPREVIOUS"));
        assert_eq!(r.version_id, None);
        let by_id = SecretRef::parse(&format!("{SECRET}:::v-1")).unwrap();
        assert_eq!(by_id.json_key, None);
        assert_eq!(by_id.version_id.as_deref(), Some("v-1"));
    }

    #[test]
    fn malformed_secret_references_are_refused_with_a_reason() {
        for bad in [
            "",
            "arn:aws:secretsmanager:us-west-2:123456789012:secret:db:key",
            "arn:aws:secretsmanager:us-west-2:123456789012:secret:",
            "arn:aws:ssm:us-west-2:123456789012:parameter/x",
            "arn:aws:secretsmanager:us-west-2:123456789012:secret:a:b:c:d:e",
        ] {
            assert!(SecretRef::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn a_json_key_selects_one_member() {
        let r = SecretRef::parse(&format!("{SECRET}:user::")).unwrap();
        assert_eq!(
            r.select(r#"{"user":"admin","port":5432}"#).unwrap(),
            "admin"
        );
        let port = SecretRef::parse(&format!("{SECRET}:port::")).unwrap();
        assert_eq!(port.select(r#"{"port":5432}"#).unwrap(), "5432");
        let missing = r.select(r#"{"other":"x"}"#).unwrap_err();
        assert!(
            missing.0.contains("did not contain json key user"),
            "{missing}"
        );
        let not_json = r.select("plain text").unwrap_err();
        assert!(
            !not_json.0.contains("plain text"),
            "the value leaked: {not_json}"
        );
        let whole = SecretRef::parse(SECRET).unwrap();
        assert_eq!(whole.select("plain text").unwrap(), "plain text");
    }

    #[test]
    fn registry_credentials_need_both_members() {
        assert_eq!(
            registry_credentials(r#"{"username":"u","password":"p"}"#).unwrap(),
            ("u".to_string(), "p".to_string())
        );
        assert!(registry_credentials(r#"{"username":"u"}"#)
            .unwrap_err()
            .0
            .contains("password"));
        assert!(registry_credentials("u:p")
            .unwrap_err()
            .0
            .contains("schema"));
    }

    #[test]
    fn ssm_answers_are_matched_to_names_and_arns_asked_for() {
        let arn = "arn:aws:ssm:us-west-2:123456789012:parameter/app/db";
        assert!(ssm_parameter_matches("/app/db", "/app/db"));
        assert!(ssm_parameter_matches(arn, "/app/db"));
        assert!(ssm_parameter_matches(arn, arn));
        assert!(ssm_parameter_matches("/app/db:3", "/app/db"));
        assert!(ssm_parameter_matches(
            "arn:aws:ssm:us-west-2:123456789012:parameter/plain",
            "plain"
        ));
        assert!(!ssm_parameter_matches("/app/db", "/app/dbx"));
        assert!(!ssm_parameter_matches("/app/db", "/app"));
    }

    #[test]
    fn s3_arns_name_a_bucket_and_a_key() {
        let o = S3Object::parse("arn:aws:s3:::my-bucket/dir/app.env").unwrap();
        assert_eq!(o.bucket, "my-bucket");
        assert_eq!(o.key, "dir/app.env");
        for bad in [
            "s3://my-bucket/app.env",
            "arn:aws:s3:::my-bucket",
            "arn:aws:s3:::/app.env",
            "arn:aws:sqs:::q/x",
        ] {
            assert!(S3Object::parse(bad).is_err(), "{bad:?} parsed");
        }
    }
}
