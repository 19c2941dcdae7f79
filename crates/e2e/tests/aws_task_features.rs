//! Task features that reach other AWS services, end to end on the real
//! Docker engine with moto standing in for AWS (docs/aws-services.md):
//! secrets and environment files in the container's environment, a
//! missing secret, ECR pulls with the token ECR hands out, and awslogs
//! with the execution role. The agent finds moto through the SDK's
//! standard `AWS_ENDPOINT_URL_<SERVICE>` variables. Agents listen on the
//! fixed endpoint ports and the awslogs test needs them, so every test
//! here holds the host routing lock for its whole run.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use e2e::ecr_registry::{ecr_host, EcrRegistry};
use e2e::moto::{Moto, ACCOUNT_ID};
use e2e::{
    docker_ids_with_label, docker_inspect, host_routing, host_routing_lock, remove_task_containers,
    require_docker, wait_for, Agent, AgentOptions, Cli, Plane, REGION, TEST_IMAGE,
};
use serde_json::{json, Value};

const SETTLE: Duration = Duration::from_secs(120);
const EXECUTION_ROLE: &str = "arn:aws:iam::000000000000:role/e2e-execution";

/// The agent, told where each service is by its own variable.
fn agent_options(dir: &Path, moto: &Moto) -> AgentOptions {
    let url = moto.url();
    AgentOptions::new(dir)
        .env("AWS_ENDPOINT_URL_SSM", &url)
        .env("AWS_ENDPOINT_URL_SECRETS_MANAGER", &url)
        .env("AWS_ENDPOINT_URL_S3", &url)
        .env("AWS_ENDPOINT_URL_ECR", &url)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
}

fn register(cli: &Cli, family: &str, defs: &Value) {
    cli.ecs(&[
        "register-task-definition",
        "--family",
        family,
        "--execution-role-arn",
        EXECUTION_ROLE,
        "--container-definitions",
        &defs.to_string(),
    ])
    .unwrap();
}

fn env_of(docker_id: &str) -> Vec<String> {
    docker_inspect(docker_id).unwrap()["Config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

/// Every file under `dir`, read as bytes, that contains `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap().flatten() {
                stack.push(entry.path());
            }
        } else if let Ok(bytes) = std::fs::read(&path) {
            if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

fn upload(moto: &Moto, bucket: &str, key: &str, text: &str) {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), text).unwrap();
    moto.aws(&[
        "s3api",
        "put-object",
        "--bucket",
        bucket,
        "--key",
        key,
        "--body",
        file.path().to_str().unwrap(),
    ])
    .unwrap();
}

#[test]
fn secrets_and_environment_files_reach_the_container_and_nothing_else() {
    require_docker();
    let _ports = host_routing_lock().unwrap();
    let moto = Moto::start().unwrap();
    // Values nothing else in the test would produce, to look for later.
    let ssm_value = "ssm-value-7c1d0e";
    let ssm_arn_value = "ssm-arn-value-41b2";
    let asm_password = "asm-password-93fa";
    moto.aws(&[
        "ssm",
        "put-parameter",
        "--name",
        "/e2e/db-password",
        "--type",
        "SecureString",
        "--value",
        ssm_value,
    ])
    .unwrap();
    moto.aws(&[
        "ssm",
        "put-parameter",
        "--name",
        "/e2e/by-arn",
        "--type",
        "String",
        "--value",
        ssm_arn_value,
    ])
    .unwrap();
    let secret = moto
        .aws(&[
            "secretsmanager",
            "create-secret",
            "--name",
            "e2e-db",
            "--secret-string",
            &json!({"username": "admin", "password": asm_password}).to_string(),
        ])
        .unwrap();
    let secret_arn = secret["ARN"].as_str().unwrap().to_string();
    moto.aws(&["s3api", "create-bucket", "--bucket", "e2e-env"])
        .unwrap();
    upload(
        &moto,
        "e2e-env",
        "first.env",
        "# first file\nFROM_FILE=first\nORDER=first\nSHARED=file\nSECRET_OVER_FILE=file\n",
    );
    upload(
        &moto,
        "e2e-env",
        "second.env",
        "ORDER=second\nSECOND_ONLY=yes\n",
    );

    let dir = tempfile::tempdir().unwrap();
    let plane = Plane::start(&dir.path().join("plane")).unwrap();
    let agent_dir = dir.path().join("agent");
    let agent = Agent::start(&plane, &agent_options(&agent_dir, &moto)).unwrap();
    let cli = plane.cli();
    cli.wait_connected_instance("default", SETTLE).unwrap();

    let ssm_arn = format!("arn:aws:ssm:{REGION}:{ACCOUNT_ID}:parameter/e2e/by-arn");
    register(
        &cli,
        "with-secrets",
        &json!([{
            "name": "app", "image": TEST_IMAGE, "command": ["sleep", "600"], "memory": 32,
            "essential": true,
            "environment": [{"name": "SHARED", "value": "definition"},
                            {"name": "SECRET_OVER_ENV", "value": "definition"}],
            "secrets": [
                {"name": "DB_PASSWORD", "valueFrom": "/e2e/db-password"},
                {"name": "BY_ARN", "valueFrom": ssm_arn},
                {"name": "ASM_PASSWORD", "valueFrom": format!("{secret_arn}:password::")},
                {"name": "ASM_WHOLE", "valueFrom": secret_arn},
                {"name": "SECRET_OVER_ENV", "valueFrom": "/e2e/db-password"},
                {"name": "SECRET_OVER_FILE", "valueFrom": "/e2e/by-arn"}
            ],
            "environmentFiles": [
                {"type": "s3", "value": "arn:aws:s3:::e2e-env/first.env"},
                {"type": "s3", "value": "arn:aws:s3:::e2e-env/second.env"}
            ]
        }]),
    );
    let arn = cli.run_task("default", "with-secrets").unwrap();
    let task = cli
        .wait_task_status("default", &arn, "RUNNING", SETTLE)
        .unwrap_or_else(|e| panic!("{e}\n{}", agent.log_text()));
    let id = task["containers"][0]["runtimeId"]
        .as_str()
        .unwrap()
        .to_string();
    let env = env_of(&id);
    let has = |pair: &str| assert!(env.contains(&pair.to_string()), "{pair} not in {env:?}");
    has(&format!("DB_PASSWORD={ssm_value}"));
    has(&format!("BY_ARN={ssm_arn_value}"));
    has(&format!("ASM_PASSWORD={asm_password}"));
    has(&format!(
        "ASM_WHOLE={}",
        json!({"username": "admin", "password": asm_password})
    ));
    // Precedence: secrets over `environment`, `environment` and secrets
    // over files, the first file over the second.
    has(&format!("SECRET_OVER_ENV={ssm_value}"));
    has("SHARED=definition");
    has(&format!("SECRET_OVER_FILE={ssm_arn_value}"));
    has("FROM_FILE=first");
    has("ORDER=first");
    has("SECOND_ONLY=yes");

    // A secret that does not exist: the task stops before any container
    // is created, with the reason ECS gives.
    register(
        &cli,
        "missing-secret",
        &json!([{
            "name": "app", "image": TEST_IMAGE, "command": ["sleep", "600"], "memory": 32,
            "essential": true,
            "secrets": [{"name": "GONE", "valueFrom": "/e2e/does-not-exist"}]
        }]),
    );
    let missing = cli.run_task("default", "missing-secret").unwrap();
    let stopped = cli
        .wait_task_status("default", &missing, "STOPPED", SETTLE)
        .unwrap();
    let reason = stopped["stoppedReason"].as_str().unwrap_or_default();
    assert!(
        reason
            .starts_with("ResourceInitializationError: unable to pull secrets or registry auth: "),
        "{stopped}"
    );
    assert!(reason.contains("/e2e/does-not-exist"), "{reason}");
    assert!(
        docker_ids_with_label("com.amazonaws.ecs.task-arn", &missing, true).is_empty(),
        "a container was created"
    );

    // The values are in the container and nowhere the agent writes.
    cli.ecs(&["stop-task", "--cluster", "default", "--task", &arn])
        .unwrap();
    cli.wait_task_status("default", &arn, "STOPPED", SETTLE)
        .unwrap();
    let log = agent.log_text();
    drop(agent);
    for value in [ssm_value, ssm_arn_value, asm_password] {
        assert!(!log.contains(value), "{value} is in the agent's log");
        let found = files_containing(&agent_dir, value);
        assert!(found.is_empty(), "{value} is on disk in {found:?}");
        let plane_files = files_containing(&dir.path().join("plane"), value);
        assert!(
            plane_files.is_empty(),
            "{value} reached the plane: {plane_files:?}"
        );
    }
    remove_task_containers(&[arn, missing]);
}

/// Pulls `reference` with an empty Docker client configuration: no login.
fn anonymous_pull(reference: &str) -> std::process::Output {
    let config = tempfile::tempdir().unwrap();
    Command::new("docker")
        .env("DOCKER_CONFIG", config.path())
        .args(["pull", reference])
        .output()
        .unwrap()
}

fn remove_image(reference: &str) {
    let _ = Command::new("docker")
        .args(["rmi", "-f", reference])
        .output();
}

#[test]
fn ecr_images_are_pulled_with_the_token_ecr_issues() {
    require_docker();
    let _ports = host_routing_lock().unwrap();
    let moto = Moto::start().unwrap();
    // moto's ECR hands out `AWS` / `<account>-auth-token`; the registry
    // takes only the first account's, and serves a second account's name.
    let other_account = "210987654321";
    let registry = EcrRegistry::start(
        &[ACCOUNT_ID, other_account],
        REGION,
        "AWS",
        &format!("{ACCOUNT_ID}-auth-token"),
    )
    .unwrap();
    let image = registry
        .registry
        .push(TEST_IMAGE, "e2e/app:1", false)
        .unwrap();
    assert_eq!(image, format!("{}/e2e/app:1", ecr_host(ACCOUNT_ID, REGION)));
    let other_image = format!("{}/e2e/app:1", ecr_host(other_account, REGION));
    // Only a login gets the image.
    let refused = anonymous_pull(&image);
    assert!(!refused.status.success(), "pulled without a login");

    let dir = tempfile::tempdir().unwrap();
    // ECR is found through the payload's `endpointOverride`, which the
    // plane is told of; the agent's own ECR endpoint is a closed local
    // port, so nothing could leave this machine if the override were lost.
    let plane = Plane::start_with_args(
        &dir.path().join("plane"),
        e2e::free_port().unwrap(),
        &["--ecr-endpoint-override", &moto.url()],
    )
    .unwrap();
    let agent = Agent::start(
        &plane,
        &agent_options(&dir.path().join("agent"), &moto)
            .env("AWS_ENDPOINT_URL_ECR", "http://127.0.0.1:9"),
    )
    .unwrap();
    let cli = plane.cli();
    cli.wait_connected_instance("default", SETTLE).unwrap();

    let pulls_before = registry.registry.manifest_requests("e2e/app");
    register(
        &cli,
        "from-ecr",
        &json!([{
            "name": "app", "image": image, "command": ["sleep", "600"], "memory": 32,
            "essential": true
        }]),
    );
    let arn = cli.run_task("default", "from-ecr").unwrap();
    let task = cli
        .wait_task_status("default", &arn, "RUNNING", SETTLE)
        .unwrap_or_else(|e| {
            panic!(
                "{e}\n{}\n{}",
                agent.log_text(),
                registry.registry.log_text()
            )
        });
    assert!(registry.registry.manifest_requests("e2e/app") > pulls_before);
    let id = task["containers"][0]["runtimeId"].as_str().unwrap();
    assert_eq!(
        docker_inspect(id).unwrap()["Config"]["Image"],
        image.as_str()
    );

    // Another account's token is refused by this registry.
    register(
        &cli,
        "wrong-token",
        &json!([{
            "name": "app", "image": other_image, "command": ["sleep", "600"], "memory": 32,
            "essential": true
        }]),
    );
    let wrong = cli.run_task("default", "wrong-token").unwrap();
    let stopped = cli
        .wait_task_status("default", &wrong, "STOPPED", SETTLE)
        .unwrap();
    let reason = stopped["containers"][0]["reason"]
        .as_str()
        .unwrap_or_default();
    assert!(reason.starts_with("CannotPullContainerError:"), "{stopped}");
    assert!(
        reason.to_ascii_lowercase().contains("unauthorized")
            || reason.contains("no basic auth credentials"),
        "{reason}"
    );

    // A private registry whose login is kept in Secrets Manager
    // (`repositoryCredentials`), read with the execution role.
    let private_password = "registry-password-6d0b";
    let private = e2e::registry::Registry::start("registry-user", private_password).unwrap();
    let private_image = private.push(TEST_IMAGE, "e2e/private:1", false).unwrap();
    let login = moto
        .aws(&[
            "secretsmanager",
            "create-secret",
            "--name",
            "registry-login",
            "--secret-string",
            &json!({"username": "registry-user", "password": private_password}).to_string(),
        ])
        .unwrap();
    register(
        &cli,
        "from-private",
        &json!([{
            "name": "app", "image": private_image, "command": ["sleep", "600"], "memory": 32,
            "essential": true,
            "repositoryCredentials": {"credentialsParameter": login["ARN"]}
        }]),
    );
    let private_arn = cli.run_task("default", "from-private").unwrap();
    cli.wait_task_status("default", &private_arn, "RUNNING", SETTLE)
        .unwrap_or_else(|e| panic!("{e}\n{}\n{}", agent.log_text(), private.log_text()));

    // Neither login reaches the agent's log.
    let log = agent.log_text();
    assert!(!log.contains(&format!("{ACCOUNT_ID}-auth-token")));
    assert!(!log.contains(private_password));

    remove_task_containers(&[arn, wrong, private_arn]);
    remove_image(&image);
    remove_image(&other_image);
    remove_image(&private_image);
}

#[test]
fn awslogs_writes_with_the_execution_role_through_the_credentials_endpoint() {
    require_docker();
    // dockerd's awslogs driver asks 169.254.170.2 for the credentials.
    let _routing = host_routing().unwrap();
    let moto = Moto::start().unwrap();
    // A log option kept as a secret (`secretOptions`).
    moto.aws(&[
        "ssm",
        "put-parameter",
        "--name",
        "/e2e/log-datetime-format",
        "--type",
        "SecureString",
        "--value",
        "%Y-%m-%dT%H:%M:%S",
    ])
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let plane = Plane::start(&dir.path().join("plane")).unwrap();
    let agent_dir = dir.path().join("agent");
    let agent = Agent::start(
        &plane,
        &agent_options(&agent_dir, &moto)
            .env(
                "ECS_AVAILABLE_LOGGING_DRIVERS",
                r#"["json-file","awslogs"]"#,
            )
            .env("ECS_ENABLE_AWSLOGS_EXECUTIONROLE_OVERRIDE", "true"),
    )
    .unwrap();
    let cli = plane.cli();
    cli.wait_connected_instance("default", SETTLE).unwrap();
    register(
        &cli,
        "logged",
        &json!([{
            "name": "app", "image": TEST_IMAGE, "memory": 32, "essential": true,
            "command": ["sh", "-c", "echo hello-from-awslogs; sleep 600"],
            "logConfiguration": {"logDriver": "awslogs", "options": {
                "awslogs-group": "/e2e/app",
                "awslogs-region": REGION,
                "awslogs-stream-prefix": "web",
                "awslogs-create-group": "true",
                "awslogs-endpoint": moto.url()
            }, "secretOptions": [
                {"name": "awslogs-datetime-format", "valueFrom": "/e2e/log-datetime-format"}
            ]}
        }]),
    );
    let arn = cli.run_task("default", "logged").unwrap();
    let task = cli
        .wait_task_status("default", &arn, "RUNNING", SETTLE)
        .unwrap_or_else(|e| panic!("{e}\n{}", agent.log_text()));
    let id = task["containers"][0]["runtimeId"].as_str().unwrap();
    let log_config = &docker_inspect(id).unwrap()["HostConfig"]["LogConfig"];
    assert_eq!(log_config["Type"], "awslogs");
    assert!(log_config["Config"]["awslogs-credentials-endpoint"]
        .as_str()
        .unwrap_or_default()
        .starts_with("/v2/credentials/"));
    assert_eq!(
        log_config["Config"]["awslogs-datetime-format"], "%Y-%m-%dT%H:%M:%S",
        "the secret log option reached Docker"
    );

    let task_id = arn.rsplit('/').next().unwrap();
    let stream = format!("web/app/{task_id}");
    let script = format!(
        "import boto3\n\
         r = boto3.client('logs').get_log_events(logGroupName='/e2e/app', logStreamName='{stream}')\n\
         print('\\n'.join(e['message'] for e in r['events']))\n"
    );
    let lines = wait_for("the line in CloudWatch Logs", SETTLE, || {
        let out = moto.python(&script).unwrap_or_default();
        Ok(out.contains("hello-from-awslogs").then_some(out))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.log_text()));
    assert!(lines.contains("hello-from-awslogs"));
    // dockerd fetched the execution role's keys from the agent.
    let audit = std::fs::read_to_string(agent_dir.join("audit.log")).unwrap_or_default();
    assert!(audit.contains("GetCredentialsExecutionRole"), "{audit}");
    remove_task_containers(&[arn]);
}
