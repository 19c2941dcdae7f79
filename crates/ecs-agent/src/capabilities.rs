//! The attributes the agent registers with. The rule (docs/protocols.md §2.3):
//! advertise a capability only when this agent implements the feature behind
//! it, so the scheduler never places a task the agent cannot run.

use crate::config::Config;

const CAP: &str = "com.amazonaws.ecs.capability.";
const ECS_CAP: &str = "ecs.capability.";

/// A registration attribute: name, and a value for the few that carry one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub name: String,
    pub value: Option<String>,
}

impl Attribute {
    fn flag(name: String) -> Self {
        Self { name, value: None }
    }

    fn valued(name: &str, value: &str) -> Self {
        Self {
            name: name.to_string(),
            value: Some(value.to_string()),
        }
    }
}

/// Docker API versions the agent knows, oldest first.
const KNOWN_API_VERSIONS: &[(u32, u32)] = &[
    (1, 17),
    (1, 18),
    (1, 19),
    (1, 20),
    (1, 21),
    (1, 22),
    (1, 23),
    (1, 24),
    (1, 25),
    (1, 26),
    (1, 27),
    (1, 28),
    (1, 29),
    (1, 30),
    (1, 31),
    (1, 32),
    (1, 33),
    (1, 34),
    (1, 35),
    (1, 36),
    (1, 37),
    (1, 38),
    (1, 39),
    (1, 40),
    (1, 41),
    (1, 42),
    (1, 43),
    (1, 44),
];

/// Minimum Docker API version of each logging driver.
fn logging_driver_min_version(driver: &str) -> Option<(u32, u32)> {
    Some(match driver {
        "json-file" | "syslog" => (1, 18),
        "journald" | "none" => (1, 19),
        "gelf" | "fluentd" => (1, 20),
        "awslogs" => (1, 21),
        "splunk" => (1, 22),
        "logentries" => (1, 25),
        "sumologic" => (1, 29),
        _ => return None,
    })
}

/// `"1.41"` → (1, 41).
pub fn parse_api_version(text: &str) -> Option<(u32, u32)> {
    let (major, minor) = text.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// The Docker API versions supported against a daemon speaking `daemon`.
pub fn supported_api_versions(daemon: (u32, u32)) -> Vec<(u32, u32)> {
    KNOWN_API_VERSIONS
        .iter()
        .copied()
        .filter(|v| *v <= daemon)
        .collect()
}

/// The attributes for RegisterContainerInstance. Custom attributes
/// (`ECS_INSTANCE_ATTRIBUTES`) are only sent on the first registration.
/// `task_cgroups`: task-level CPU and memory limits are on
/// (docs/engine.md §7.7).
pub fn attributes(
    config: &Config,
    daemon_api: (u32, u32),
    first_registration: bool,
    task_cgroups: bool,
) -> Vec<Attribute> {
    let supported = supported_api_versions(daemon_api);
    let has = |v: (u32, u32)| supported.contains(&v);
    let mut attrs = Vec::new();

    // Ordering dependencies (dependsOn, links, volumesFrom) are implemented.
    attrs.push(Attribute::flag(format!("{ECS_CAP}container-ordering")));
    if !config.privileged_disabled {
        attrs.push(Attribute::flag(format!("{CAP}privileged-container")));
    }
    for v in supported
        .iter()
        .filter(|v| **v < (1, 33) && ![(1, 26), (1, 27), (1, 31)].contains(v))
    {
        attrs.push(Attribute::flag(format!(
            "{CAP}docker-remote-api.{}.{}",
            v.0, v.1
        )));
    }
    for driver in &config.available_logging_drivers {
        if logging_driver_min_version(driver).is_some_and(has) {
            attrs.push(Attribute::flag(format!("{CAP}logging-driver.{driver}")));
        }
    }
    if config.selinux_capable {
        attrs.push(Attribute::flag(format!("{CAP}selinux")));
    }
    if config.apparmor_capable {
        attrs.push(Attribute::flag(format!("{CAP}apparmor")));
    }
    if has((1, 24)) && !config.disable_docker_health_check {
        attrs.push(Attribute::flag(format!("{ECS_CAP}container-health-check")));
    }
    // Task role credentials are served on the task endpoint
    // (docs/endpoints.md §7.6: Docker API 1.19 for host network mode).
    if config.task_iam_role_enabled {
        attrs.push(Attribute::flag(format!("{CAP}task-iam-role")));
        if config.task_iam_role_enabled_for_network_host && has((1, 19)) {
            attrs.push(Attribute::flag(format!("{CAP}task-iam-role-network-host")));
        }
    }
    // Registry logins, secrets and environment files through other AWS
    // services (docs/aws-services.md).
    if has((1, 19)) {
        attrs.push(Attribute::flag(format!("{CAP}ecr-auth")));
        attrs.push(Attribute::flag(format!("{ECS_CAP}execution-role-ecr-pull")));
    }
    for name in [
        "ecr-endpoint",
        "private-registry-authentication.secretsmanager",
        "secrets.ssm.environment-variables",
        "secrets.ssm.bootstrap.log-driver",
        "secrets.asm.environment-variables",
        "secrets.asm.bootstrap.log-driver",
        "env-files.s3",
    ] {
        attrs.push(Attribute::flag(format!("{ECS_CAP}{name}")));
    }
    if config.override_awslogs_execution_role {
        attrs.push(Attribute::flag(format!("{ECS_CAP}execution-role-awslogs")));
    }
    if task_cgroups {
        attrs.push(Attribute::flag(format!("{ECS_CAP}task-cpu-mem-limit")));
        attrs.push(Attribute::flag(format!(
            "{ECS_CAP}increased-task-cpu-limit"
        )));
    }
    attrs.push(Attribute::valued("ecs.os-type", "linux"));
    attrs.push(Attribute::valued("ecs.os-family", "LINUX"));
    attrs.push(Attribute::valued(
        "ecs.os-type-detailed",
        config.detailed_os_family.as_deref().unwrap_or("LINUX"),
    ));
    if first_registration {
        for (name, value) in &config.instance_attributes {
            attrs.push(Attribute::valued(name, value));
        }
    }
    attrs
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::{Env, FileConfig};

    fn config(env: &[(&str, &str)]) -> Config {
        Config::from_sources(
            &Env::from_pairs(env.iter().copied()),
            &FileConfig::default(),
            None,
        )
        .unwrap()
        .config
    }

    fn names(attrs: &[Attribute]) -> Vec<&str> {
        attrs.iter().map(|a| a.name.as_str()).collect()
    }

    #[test]
    fn registry_secrets_and_env_file_capabilities_are_advertised() {
        let attrs = attributes(&config(&[]), (1, 41), true, false);
        let n = names(&attrs);
        for name in [
            "com.amazonaws.ecs.capability.ecr-auth",
            "ecs.capability.execution-role-ecr-pull",
            "ecs.capability.ecr-endpoint",
            "ecs.capability.private-registry-authentication.secretsmanager",
            "ecs.capability.secrets.ssm.environment-variables",
            "ecs.capability.secrets.ssm.bootstrap.log-driver",
            "ecs.capability.secrets.asm.environment-variables",
            "ecs.capability.secrets.asm.bootstrap.log-driver",
            "ecs.capability.env-files.s3",
        ] {
            assert!(n.contains(&name), "{name} missing");
        }
        // The awslogs one follows its switch, as ecs-init sets it.
        assert!(!n.contains(&"ecs.capability.execution-role-awslogs"));
        let on = attributes(
            &config(&[("ECS_ENABLE_AWSLOGS_EXECUTIONROLE_OVERRIDE", "true")]),
            (1, 41),
            true,
            false,
        );
        assert!(names(&on).contains(&"ecs.capability.execution-role-awslogs"));
    }

    #[test]
    fn task_role_capabilities_follow_the_two_settings() {
        let has = |env: &[(&str, &str)], name: &str| {
            names(&attributes(&config(env), (1, 41), true, false))
                .contains(&format!("com.amazonaws.ecs.capability.{name}").as_str())
        };
        assert!(!has(&[], "task-iam-role"));
        let roles = [("ECS_ENABLE_TASK_IAM_ROLE", "true")];
        assert!(has(&roles, "task-iam-role"));
        assert!(!has(&roles, "task-iam-role-network-host"));
        let both = [
            ("ECS_ENABLE_TASK_IAM_ROLE", "true"),
            ("ECS_ENABLE_TASK_IAM_ROLE_NETWORK_HOST", "true"),
        ];
        assert!(has(&both, "task-iam-role-network-host"));
    }

    #[test]
    fn task_limits_are_advertised_only_with_task_cgroups() {
        let with = names(&attributes(&config(&[]), (1, 41), true, true))
            .into_iter()
            .filter(|n| n.contains("task-cpu-mem-limit") || n.contains("increased-task-cpu"))
            .map(str::to_string)
            .collect::<Vec<_>>();
        assert_eq!(
            with,
            [
                "ecs.capability.task-cpu-mem-limit",
                "ecs.capability.increased-task-cpu-limit"
            ]
        );
        assert!(!names(&attributes(&config(&[]), (1, 41), true, false))
            .iter()
            .any(|n| n.contains("task-cpu-mem-limit")));
    }

    #[test]
    fn docker_remote_api_list_matches_the_go_agent() {
        let attrs = attributes(&config(&[]), (1, 41), true, false);
        let apis: Vec<&str> = names(&attrs)
            .into_iter()
            .filter_map(|n| n.strip_prefix("com.amazonaws.ecs.capability.docker-remote-api."))
            .collect();
        assert_eq!(
            apis,
            [
                "1.17", "1.18", "1.19", "1.20", "1.21", "1.22", "1.23", "1.24", "1.25", "1.28",
                "1.29", "1.30", "1.32"
            ]
        );
    }

    #[test]
    fn config_switches_change_attributes() {
        let attrs = attributes(
            &config(&[
                ("ECS_DISABLE_PRIVILEGED", "true"),
                ("ECS_SELINUX_CAPABLE", "true"),
                (
                    "ECS_AVAILABLE_LOGGING_DRIVERS",
                    r#"["json-file","awslogs","sumologic"]"#,
                ),
                ("ECS_INSTANCE_ATTRIBUTES", r#"{"stack":"prod"}"#),
                ("ECS_DETAILED_OS_FAMILY", "debian_12"),
            ]),
            (1, 28),
            true,
            false,
        );
        let n = names(&attrs);
        assert!(!n.contains(&"com.amazonaws.ecs.capability.privileged-container"));
        assert!(n.contains(&"com.amazonaws.ecs.capability.selinux"));
        assert!(n.contains(&"com.amazonaws.ecs.capability.logging-driver.awslogs"));
        // sumologic needs API 1.29.
        assert!(!n.contains(&"com.amazonaws.ecs.capability.logging-driver.sumologic"));
        assert!(attrs.contains(&Attribute::valued("stack", "prod")));
        assert!(attrs.contains(&Attribute::valued("ecs.os-type-detailed", "debian_12")));
        let again = attributes(
            &config(&[("ECS_INSTANCE_ATTRIBUTES", r#"{"stack":"prod"}"#)]),
            (1, 41),
            false,
            false,
        );
        assert!(
            !names(&again).contains(&"stack"),
            "custom attributes only on first registration"
        );
    }
}
