#![allow(clippy::unwrap_used)]

use super::*;

fn load(env: &[(&str, &str)], file: &str) -> Result<Loaded, ConfigError> {
    Config::from_sources(
        &Env::from_pairs(env.iter().copied()),
        &FileConfig::parse(file).unwrap(),
        Some((32768, 60999)),
    )
}

fn config(env: &[(&str, &str)], file: &str) -> Config {
    load(env, file).unwrap().config
}

/// The 31 variables of the original agent README, with their documented
/// defaults when nothing is set.
#[test]
fn readme_variables_have_documented_defaults() {
    let c = config(&[], "");
    assert_eq!(c.cluster, ""); // registration then uses "default"
    assert_eq!(c.cluster_or_default(), "default");
    assert_eq!(c.aws_region, None);
    assert!(c.instance_attributes.is_empty());
    assert_eq!(c.reserved_ports, vec![22, 2375, 2376, 51678, 51679]);
    assert!(c.reserved_ports_udp.is_empty());
    assert_eq!(c.reserved_memory_mib, 0);
    assert!(!c.updates_enabled);
    assert_eq!(c.update_download_dir, None);
    assert!(!c.disable_metrics);
    assert_eq!(c.docker_endpoint, "unix:///var/run/docker.sock");
    assert_eq!(c.engine_auth_type, None);
    assert_eq!(c.engine_auth_data, None);
    assert_eq!(c.available_logging_drivers, vec!["json-file", "none"]);
    assert!(!c.privileged_disabled);
    assert!(!c.selinux_capable);
    assert!(!c.apparmor_capable);
    assert_eq!(c.docker_stop_timeout, GoDuration(30 * SECOND));
    assert_eq!(c.task_cleanup_wait, GoDuration(3 * HOUR));
    assert!(!c.image_cleanup_disabled);
    assert_eq!(c.image_cleanup_interval, GoDuration(30 * MINUTE));
    assert_eq!(c.minimum_image_deletion_age, GoDuration(HOUR));
    assert_eq!(c.num_images_to_delete_per_cycle, 5);
    assert!(!c.task_iam_role_enabled);
    assert!(!c.task_iam_role_enabled_for_network_host);
    assert_eq!(c.data_dir, PathBuf::from("/data/"));
    assert!(!c.checkpoint);
    // AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN are read by the
    // AWS SDK credential chain; ECS_LOGLEVEL and ECS_LOGFILE by the logger.
}

#[test]
fn readme_variables_are_parsed() {
    let c = config(
        &[
            ("ECS_CLUSTER", " prod "),
            ("AWS_DEFAULT_REGION", "eu-west-1"),
            ("ECS_INSTANCE_ATTRIBUTES", r#"{"tier":"gpu"}"#),
            ("ECS_RESERVED_PORTS", "[22, 8080]"),
            ("ECS_RESERVED_PORTS_UDP", "[53]"),
            ("ECS_RESERVED_MEMORY", "256"),
            ("ECS_UPDATES_ENABLED", "true"),
            ("ECS_UPDATE_DOWNLOAD_DIR", "/var/cache/ecs"),
            ("ECS_DISABLE_METRICS", "1"),
            ("DOCKER_HOST", "unix:///run/docker.sock"),
            ("ECS_ENGINE_AUTH_TYPE", "docker"),
            (
                "ECS_ENGINE_AUTH_DATA",
                r#"{"r":{"username":"u","password":"p"}}"#,
            ),
            ("ECS_AVAILABLE_LOGGING_DRIVERS", r#"["json-file","syslog"]"#),
            ("ECS_DISABLE_PRIVILEGED", "true"),
            ("ECS_SELINUX_CAPABLE", "T"),
            ("ECS_APPARMOR_CAPABLE", "TRUE"),
            ("ECS_CONTAINER_STOP_TIMEOUT", "2s"),
            ("ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION", "10m"),
            ("ECS_DISABLE_IMAGE_CLEANUP", "true"),
            ("ECS_IMAGE_CLEANUP_INTERVAL", "15m"),
            ("ECS_IMAGE_MINIMUM_CLEANUP_AGE", "30m"),
            ("ECS_NUM_IMAGES_DELETE_PER_CYCLE", "9"),
            ("ECS_ENABLE_TASK_IAM_ROLE", "true"),
            ("ECS_ENABLE_TASK_IAM_ROLE_NETWORK_HOST", "true"),
            ("ECS_DATADIR", "/var/lib/ecs/data"),
        ],
        "",
    );
    assert_eq!(c.cluster, "prod");
    assert_eq!(c.aws_region.as_deref(), Some("eu-west-1"));
    assert_eq!(c.instance_attributes["tier"], "gpu");
    assert_eq!(c.reserved_ports, vec![22, 8080]);
    assert_eq!(c.reserved_ports_udp, vec![53]);
    assert_eq!(c.reserved_memory_mib, 256);
    assert!(c.updates_enabled);
    assert_eq!(c.update_download_dir.as_deref(), Some("/var/cache/ecs"));
    assert!(c.disable_metrics);
    assert_eq!(c.docker_endpoint, "unix:///run/docker.sock");
    assert_eq!(c.engine_auth_type.as_deref(), Some("docker"));
    assert!(c.engine_auth_data.is_some());
    assert_eq!(format!("{:?}", c.engine_auth_data), "Some([redacted])");
    assert_eq!(c.available_logging_drivers, vec!["json-file", "syslog"]);
    assert!(c.privileged_disabled && c.selinux_capable && c.apparmor_capable);
    assert_eq!(c.docker_stop_timeout, GoDuration(2 * SECOND));
    assert_eq!(c.task_cleanup_wait, GoDuration(10 * MINUTE));
    assert!(c.image_cleanup_disabled);
    assert_eq!(c.image_cleanup_interval, GoDuration(15 * MINUTE));
    assert_eq!(c.minimum_image_deletion_age, GoDuration(30 * MINUTE));
    assert_eq!(c.num_images_to_delete_per_cycle, 9);
    assert!(c.task_iam_role_enabled && c.task_iam_role_enabled_for_network_host);
    assert_eq!(c.data_dir, PathBuf::from("/var/lib/ecs/data"));
    // ECS_DATADIR in the environment turns checkpointing on when
    // ECS_CHECKPOINT says nothing.
    assert!(c.checkpoint);
}

#[test]
fn environment_beats_file_beats_default() {
    let file = r#"{"Cluster":"from-file","ReservedMemory":128,"DockerStopTimeout":5000000000}"#;
    let c = config(&[("ECS_CLUSTER", "from-env")], file);
    assert_eq!(c.cluster, "from-env");
    assert_eq!(c.reserved_memory_mib, 128);
    assert_eq!(c.docker_stop_timeout, GoDuration(5 * SECOND));
}

#[test]
fn zero_values_mean_unset() {
    let c = config(
        &[
            ("ECS_RESERVED_PORTS", "[]"),
            ("ECS_RESERVED_MEMORY", "0"),
            ("ECS_NUM_IMAGES_DELETE_PER_CYCLE", "0"),
            ("ECS_CONTAINER_STOP_TIMEOUT", "0s"),
        ],
        r#"{"ReservedMemory":64}"#,
    );
    assert_eq!(c.reserved_ports, vec![22, 2375, 2376, 51678, 51679]);
    assert_eq!(c.reserved_memory_mib, 64);
    assert_eq!(c.num_images_to_delete_per_cycle, 5);
    assert_eq!(c.docker_stop_timeout, GoDuration(30 * SECOND));
}

#[test]
fn bool3_false_in_env_beats_true_in_file_but_plain_bool_does_not() {
    let file = r#"{"PrivilegedDisabled":true,"TaskIAMRoleEnabledForNetworkHost":true}"#;
    let c = config(
        &[
            ("ECS_DISABLE_PRIVILEGED", "false"),
            ("ECS_ENABLE_TASK_IAM_ROLE_NETWORK_HOST", "false"),
        ],
        file,
    );
    assert!(!c.privileged_disabled);
    assert!(c.task_iam_role_enabled_for_network_host);
}

#[test]
fn bad_values_warn_and_fall_back_naming_the_variable() {
    let loaded = load(
        &[
            ("ECS_DISABLE_PRIVILEGED", "yes"),
            ("ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION", "600"),
            ("ECS_RESERVED_MEMORY", "lots"),
            ("ECS_RESERVED_PORTS", "22,80"),
            ("ECS_NUM_IMAGES_DELETE_PER_CYCLE", "-3"),
            ("ECS_IMAGE_CLEANUP_INTERVAL", "1m"),
            ("ECS_CONTAINER_STOP_TIMEOUT", "10ms"),
            ("ECS_ENABLE_TASK_IAM_ROLE_NETWORK_HOST", "maybe"),
        ],
        "",
    )
    .unwrap();
    let c = &loaded.config;
    assert!(!c.privileged_disabled);
    assert_eq!(c.task_cleanup_wait, GoDuration(3 * HOUR));
    assert_eq!(c.reserved_memory_mib, 0);
    assert_eq!(c.reserved_ports, vec![22, 2375, 2376, 51678, 51679]);
    assert_eq!(c.num_images_to_delete_per_cycle, 5);
    assert_eq!(c.image_cleanup_interval, GoDuration(30 * MINUTE));
    assert_eq!(c.docker_stop_timeout, GoDuration(SECOND));
    let all = loaded.warnings.join("\n");
    for var in [
        "ECS_DISABLE_PRIVILEGED",
        "ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION",
        "ECS_RESERVED_MEMORY",
        "ECS_RESERVED_PORTS",
        "ECS_CONTAINER_STOP_TIMEOUT",
        "ECS_ENABLE_TASK_IAM_ROLE_NETWORK_HOST",
    ] {
        assert!(all.contains(var), "no warning names {var}: {all}");
    }
}

#[test]
fn fatal_values_are_errors_naming_the_variable() {
    for (var, value, needle) in [
        ("ECS_INSTANCE_ATTRIBUTES", "{bad", "ECS_INSTANCE_ATTRIBUTES"),
        (
            "ECS_CONTAINER_INSTANCE_TAGS",
            r#"{"a":1}"#,
            "ECS_CONTAINER_INSTANCE_TAGS",
        ),
        (
            "ECS_AVAILABLE_LOGGING_DRIVERS",
            r#"["json-file","bogus"]"#,
            "bogus (ECS_AVAILABLE_LOGGING_DRIVERS)",
        ),
        (
            "ECS_AWSVPC_ADDITIONAL_LOCAL_ROUTES",
            "nope",
            "ECS_AWSVPC_ADDITIONAL_LOCAL_ROUTES",
        ),
    ] {
        let err = load(&[(var, value)], "").unwrap_err();
        assert!(err.to_string().contains(needle), "{err}");
    }
    let err = load(&[], r#"{"TaskCleanupWaitDuration":"10m"}"#).unwrap_err();
    assert!(err.to_string().contains("TaskCleanupWaitDuration"), "{err}");
    let err = load(&[], r#"{"DockerStopTimeout":1000}"#).unwrap_err();
    assert!(err.to_string().contains("stop timeout"), "{err}");
}

#[test]
fn checkpoint_rules() {
    assert!(!config(&[], "").checkpoint);
    assert!(config(&[("ECS_CHECKPOINT", "true")], "").checkpoint);
    assert!(!config(&[("ECS_DATADIR", "/d"), ("ECS_CHECKPOINT", "false")], "").checkpoint);
    assert!(config(&[], r#"{"Checkpoint":true}"#).checkpoint);
    // A data dir from the file alone does not turn checkpointing on.
    assert!(!config(&[], r#"{"DataDir":"/d"}"#).checkpoint);
}

#[test]
fn pull_behavior_and_port_range() {
    assert_eq!(
        config(&[("ECS_IMAGE_PULL_BEHAVIOR", "prefer-cached")], "").image_pull_behavior,
        ImagePullBehavior::PreferCached
    );
    assert_eq!(
        config(&[("ECS_IMAGE_PULL_BEHAVIOR", "Always")], "").image_pull_behavior,
        ImagePullBehavior::Default
    );
    assert_eq!(
        config(&[], r#"{"ImagePullBehavior":2}"#).image_pull_behavior,
        ImagePullBehavior::Once
    );
    assert_eq!(config(&[], "").dynamic_host_port_range, (32768, 60999));
    assert_eq!(
        config(&[("ECS_DYNAMIC_HOST_PORT_RANGE", "40000-40010")], "").dynamic_host_port_range,
        (40000, 40010)
    );
    let loaded = load(&[("ECS_DYNAMIC_HOST_PORT_RANGE", "x")], "").unwrap();
    assert_eq!(loaded.config.dynamic_host_port_range, (32768, 60999));
    assert!(loaded
        .warnings
        .iter()
        .any(|w| w.contains("dynamicHostPortRange")));
}

#[test]
fn prometheus_reserves_its_port() {
    let c = config(&[("ECS_ENABLE_PROMETHEUS_METRICS", "true")], "");
    assert_eq!(c.reserved_ports.last(), Some(&51680));
}

#[test]
fn metadata_rate_limits() {
    let c = config(&[("ECS_TASK_METADATA_RPS_LIMIT", " 10 , 20 ")], "");
    assert_eq!(
        (
            c.task_metadata_steady_state_rate,
            c.task_metadata_burst_rate
        ),
        (10, 20)
    );
    let c = config(&[("ECS_TASK_METADATA_RPS_LIMIT", "10")], "");
    assert_eq!(
        (
            c.task_metadata_steady_state_rate,
            c.task_metadata_burst_rate
        ),
        (40, 60)
    );
}

#[test]
fn external_mode_needs_region_in_environment() {
    let err = load(&[("ECS_EXTERNAL", "true")], r#"{"AWSRegion":"us-east-1"}"#).unwrap_err();
    assert!(err.to_string().contains("AWS_DEFAULT_REGION"));
    let c = config(
        &[
            ("ECS_EXTERNAL", "true"),
            ("AWS_DEFAULT_REGION", "us-east-1"),
        ],
        "",
    );
    assert!(c.external && c.no_iid);
}

#[test]
fn deprecated_cluster_arn_key() {
    let loaded = load(&[], r#"{"ClusterArn":"arn:aws:ecs:us-east-1:1:cluster/x"}"#).unwrap();
    assert_eq!(loaded.config.cluster, "arn:aws:ecs:us-east-1:1:cluster/x");
    assert!(loaded.warnings.iter().any(|w| w.contains("ClusterArn")));
}
