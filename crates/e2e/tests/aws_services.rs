//! The agent's clients of other AWS services (docs/aws-services.md)
//! against moto in server mode: what each call returns, how failures
//! read, and a whole task's secrets and environment files fetched at
//! once. The agent runs these inside its process; so does this test.
#![allow(clippy::unwrap_used)]

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use e2e::moto::{Moto, ACCOUNT_ID};
use ecs_agent::aws::arn::{S3Object, SecretRef};
use ecs_agent::aws::ecr::Registry;
use ecs_agent::aws::{AwsServices, Caller};
use ecs_agent::credentials::RoleCredentials;

const REGION: &str = e2e::REGION;

fn role() -> RoleCredentials {
    RoleCredentials {
        role_arn: format!("arn:aws:iam::{ACCOUNT_ID}:role/exec"),
        access_key_id: "ASIAEXAMPLEEXAMPLE12".into(),
        secret_access_key: "secret".into(),
        session_token: "token".into(),
        expiration: String::new(),
    }
}

/// Clients whose every call goes to `moto`.
fn services(moto: &Moto) -> AwsServices {
    let instance = SharedCredentialsProvider::new(Credentials::new(
        "AKIDINSTANCE",
        "secret",
        None,
        None,
        "test",
    ));
    AwsServices::new(REGION, instance).with_endpoint_url(&moto.url())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn ssm_parameters_by_name_and_by_arn_with_secure_strings_decrypted() {
    let moto = Moto::start().unwrap();
    moto.aws(&[
        "ssm",
        "put-parameter",
        "--name",
        "/app/db",
        "--value",
        "s3cr3t",
        "--type",
        "SecureString",
    ])
    .unwrap();
    moto.aws(&[
        "ssm",
        "put-parameter",
        "--name",
        "plain",
        "--value",
        "v",
        "--type",
        "String",
    ])
    .unwrap();
    let aws = services(&moto);
    let role = role();
    let caller = Caller::Role {
        id: "exec-1",
        credentials: &role,
    };
    let arn = format!("arn:aws:ssm:{REGION}:{ACCOUNT_ID}:parameter/plain");
    let rt = runtime();
    let mut values = rt
        .block_on(aws.ssm_parameters(REGION, &["/app/db".to_string(), arn.clone()], caller))
        .unwrap();
    values.sort();
    assert_eq!(
        values,
        vec![
            ("/app/db".to_string(), "s3cr3t".to_string()),
            (arn, "v".to_string())
        ]
    );
    let missing = rt
        .block_on(aws.ssm_parameters(
            REGION,
            &["/app/db".to_string(), "/nope".to_string()],
            caller,
        ))
        .unwrap_err();
    assert_eq!(missing.0, "invalid parameters: /nope");
}

#[test]
fn secrets_manager_values_whole_by_json_key_and_by_version_stage() {
    let moto = Moto::start().unwrap();
    let created = moto
        .aws(&[
            "secretsmanager",
            "create-secret",
            "--name",
            "db",
            "--secret-string",
            r#"{"user":"admin","password":"first"}"#,
        ])
        .unwrap();
    let arn = created["ARN"].as_str().unwrap().to_string();
    moto.aws(&[
        "secretsmanager",
        "put-secret-value",
        "--secret-id",
        "db",
        "--secret-string",
        r#"{"user":"admin","password":"second"}"#,
    ])
    .unwrap();
    let aws = services(&moto);
    let role = role();
    let caller = Caller::Role {
        id: "exec-1",
        credentials: &role,
    };
    let rt = runtime();
    let get = |reference: &str| {
        let r = SecretRef::parse(reference).unwrap();
        rt.block_on(aws.secret_string(REGION, &r, caller))
            .and_then(|s| r.select(&s).map_err(|e| ecs_agent::aws::ServiceError(e.0)))
    };
    assert_eq!(
        get(&arn).unwrap(),
        r#"{"user":"admin","password":"second"}"#
    );
    assert_eq!(get(&format!("{arn}:password::")).unwrap(), "second");
    assert_eq!(
        get(&format!("{arn}:password:AWSPREVIOUS:")).unwrap(),
        "first"
    );
    assert_eq!(
        get("db").unwrap(),
        r#"{"user":"admin","password":"second"}"#
    );
    let missing = get(&format!(
        "arn:aws:secretsmanager:{REGION}:{ACCOUNT_ID}:secret:gone"
    ))
    .unwrap_err();
    assert!(
        missing
            .0
            .starts_with("ResourceNotFoundException: The task can't retrieve the secret"),
        "{missing}"
    );
}

#[test]
fn s3_objects_are_read_and_a_missing_one_is_named() {
    let moto = Moto::start().unwrap();
    moto.aws(&["s3api", "create-bucket", "--bucket", "envs"])
        .unwrap();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), "A=1\n").unwrap();
    moto.aws(&[
        "s3api",
        "put-object",
        "--bucket",
        "envs",
        "--key",
        "dir/app.env",
        "--body",
        file.path().to_str().unwrap(),
    ])
    .unwrap();
    let aws = services(&moto);
    let role = role();
    let caller = Caller::Role {
        id: "exec-1",
        credentials: &role,
    };
    let rt = runtime();
    let object = S3Object::parse("arn:aws:s3:::envs/dir/app.env").unwrap();
    assert_eq!(
        rt.block_on(aws.s3_object(&object, caller)).unwrap(),
        b"A=1\n"
    );
    let missing = S3Object::parse("arn:aws:s3:::envs/none.env").unwrap();
    let err = rt.block_on(aws.s3_object(&missing, caller)).unwrap_err();
    assert!(err.0.starts_with("NoSuchKey"), "{err}");
}

#[test]
fn ecr_logins_come_from_the_endpoint_override_and_decode() {
    let moto = Moto::start().unwrap();
    // No endpoint but the payload's override: the call can only succeed
    // if the override is used.
    let aws = AwsServices::new(
        REGION,
        SharedCredentialsProvider::new(Credentials::new(
            "AKIDINSTANCE",
            "secret",
            None,
            None,
            "test",
        )),
    );
    let registry = Registry {
        registry_id: ACCOUNT_ID.into(),
        region: REGION.into(),
        endpoint_override: Some(moto.url()),
    };
    let rt = runtime();
    let auth = rt
        .block_on(aws.ecr_login(&registry, Caller::Instance))
        .unwrap();
    assert_eq!(auth.username.as_deref(), Some("AWS"));
    assert_eq!(
        auth.password.as_deref(),
        Some(format!("{ACCOUNT_ID}-auth-token").as_str())
    );
    assert_eq!(
        auth.server_address.as_deref(),
        Some(format!("https://{ACCOUNT_ID}.dkr.ecr.{REGION}.amazonaws.com").as_str())
    );
}

#[test]
fn a_tasks_secrets_and_environment_files_are_fetched_together() {
    let moto = Moto::start().unwrap();
    moto.aws(&[
        "ssm",
        "put-parameter",
        "--name",
        "/app/token",
        "--value",
        "tok",
        "--type",
        "SecureString",
    ])
    .unwrap();
    let created = moto
        .aws(&[
            "secretsmanager",
            "create-secret",
            "--name",
            "creds",
            "--secret-string",
            r#"{"password":"pw"}"#,
        ])
        .unwrap();
    let secret_arn = created["ARN"].as_str().unwrap().to_string();
    moto.aws(&["s3api", "create-bucket", "--bucket", "envs"])
        .unwrap();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), "# settings\nFROM_FILE=yes\nLEVEL=debug\n").unwrap();
    moto.aws(&[
        "s3api",
        "put-object",
        "--bucket",
        "envs",
        "--key",
        "app.env",
        "--body",
        file.path().to_str().unwrap(),
    ])
    .unwrap();
    let acs: ecs_model::acs::Task = serde_json::from_value(serde_json::json!({
        "arn": format!("arn:aws:ecs:{REGION}:{ACCOUNT_ID}:task/default/abc"),
        "family": "f", "version": "1", "desiredStatus": "RUNNING",
        "containers": [
            {"name": "app", "image": "i",
             "secrets": [
                {"name": "TOKEN", "valueFrom": "/app/token", "provider": "ssm",
                 "type": "ENVIRONMENT_VARIABLE", "target": "CONTAINER"},
                {"name": "PASSWORD", "valueFrom": format!("{secret_arn}:password::"),
                 "provider": "asm", "type": "ENVIRONMENT_VARIABLE", "target": "CONTAINER"}],
             "environmentFiles": [{"type": "s3", "value": "arn:aws:s3:::envs/app.env"}]},
            {"name": "sidecar", "image": "i",
             "secrets": [{"name": "TOKEN", "valueFrom": "/app/token", "provider": "ssm",
                 "target": "LOG_DRIVER"}]}
        ]
    }))
    .unwrap();
    let spec = ecs_agent::engine::task::IncomingTask::try_from(&acs)
        .unwrap()
        .spec;
    let aws = services(&moto);
    let role = role();
    let caller = Caller::Role {
        id: "exec-1",
        credentials: &role,
    };
    let secrets = runtime()
        .block_on(ecs_agent::secrets::fetch(&aws, &spec, caller, REGION))
        .unwrap();
    let app = secrets.container("app").unwrap();
    assert_eq!(app.env["TOKEN"], "tok");
    assert_eq!(app.env["PASSWORD"], "pw");
    assert_eq!(app.env_files.len(), 1);
    assert_eq!(app.env_files[0]["FROM_FILE"], "yes");
    let sidecar = secrets.container("sidecar").unwrap();
    assert_eq!(sidecar.log_options["TOKEN"], "tok");
    assert!(sidecar.env.is_empty());
}

/// Keys of a moto IAM user, as an execution role's would be.
fn keys(pair: &(String, String)) -> RoleCredentials {
    RoleCredentials {
        role_arn: format!("arn:aws:iam::{ACCOUNT_ID}:role/exec"),
        access_key_id: pair.0.clone(),
        secret_access_key: pair.1.clone(),
        session_token: String::new(),
        expiration: String::new(),
    }
}

#[test]
fn signatures_are_verified_and_denied_calls_fail() {
    // Ten requests set things up; moto checks every one after them.
    let moto = Moto::start_with_auth(10).unwrap();
    let allowed = moto.iam_user("agent", true).unwrap();
    let denied = moto.iam_user("nobody", false).unwrap();
    moto.aws(&["s3api", "create-bucket", "--bucket", "envs"])
        .unwrap();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), "A=1\n").unwrap();
    moto.aws(&[
        "s3api",
        "put-object",
        "--bucket",
        "envs",
        "--key",
        "dir/my app+1.env",
        "--body",
        file.path().to_str().unwrap(),
    ])
    .unwrap();
    moto.aws(&[
        "ssm",
        "put-parameter",
        "--name",
        "/app/db",
        "--value",
        "v",
        "--type",
        "String",
    ])
    .unwrap();
    moto.aws(&[
        "secretsmanager",
        "create-secret",
        "--name",
        "db",
        "--secret-string",
        "s",
    ])
    .unwrap();
    let aws = services(&moto);
    let rt = runtime();
    let object = S3Object::parse("arn:aws:s3:::envs/dir/my app+1.env").unwrap();
    let names = ["/app/db".to_string()];

    let good = keys(&allowed);
    let caller = Caller::Role {
        id: "exec-1",
        credentials: &good,
    };
    assert_eq!(
        rt.block_on(aws.s3_object(&object, caller)).unwrap(),
        b"A=1\n"
    );
    assert_eq!(
        rt.block_on(aws.ssm_parameters(REGION, &names, caller))
            .unwrap(),
        vec![("/app/db".to_string(), "v".to_string())]
    );
    let secret = SecretRef::parse("db").unwrap();
    assert_eq!(
        rt.block_on(aws.secret_string(REGION, &secret, caller))
            .unwrap(),
        "s"
    );
    let registry = Registry {
        registry_id: ACCOUNT_ID.into(),
        region: REGION.into(),
        endpoint_override: Some(moto.url()),
    };
    assert!(rt.block_on(aws.ecr_login(&registry, caller)).is_ok());

    // One changed byte of the secret key: every signature is wrong.
    let mut bad = keys(&allowed);
    bad.secret_access_key.push('x');
    let caller = Caller::Role {
        id: "exec-2",
        credentials: &bad,
    };
    let s3 = rt.block_on(aws.s3_object(&object, caller)).unwrap_err();
    assert!(s3.0.contains("SignatureDoesNotMatch"), "{s3}");
    assert!(rt
        .block_on(aws.ssm_parameters(REGION, &names, caller))
        .is_err());

    // Right keys, no permission.
    let nobody = keys(&denied);
    let caller = Caller::Role {
        id: "exec-3",
        credentials: &nobody,
    };
    let s3 = rt.block_on(aws.s3_object(&object, caller)).unwrap_err();
    assert!(s3.0.contains("AccessDenied"), "{s3}");
    let ssm = rt
        .block_on(aws.ssm_parameters(REGION, &names, caller))
        .unwrap_err();
    assert!(ssm.0.starts_with("AccessDenied: "), "{ssm}");
}
