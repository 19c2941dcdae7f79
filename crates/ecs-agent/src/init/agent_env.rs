//! The environment the init service gives the agent (docs/operations.md
//! §2): ecs-init's defaults, then the init's own environment, then the
//! ecs.config files read the way ecs-init reads them, not the way systemd
//! does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Amazon's file, read first; the operator's file overrides it key by key.
pub const VENDOR_CONFIG_FILE: &str = "/var/lib/ecs/ecs.config";
/// The operator's file.
pub const CONFIG_FILE: &str = crate::host_setup::ECS_CONFIG_FILE;

/// How the init service runs the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runs {
    Process,
    Container,
}

/// Settings ecs-init gives the agent unless the environment or the files
/// say otherwise; the first two are paths, which [`Runs`] decides.
const DEFAULTS: [(&str, &str); 7] = [
    ("ECS_LOGFILE", "/var/log/ecs/ecs-agent.log"),
    ("ECS_DATADIR", "/var/lib/ecs/data"),
    ("ECS_UPDATE_DOWNLOAD_DIR", "/var/cache/ecs"),
    ("ECS_UPDATES_ENABLED", "true"),
    ("ECS_ENABLE_TASK_IAM_ROLE", "true"),
    ("ECS_ENABLE_TASK_IAM_ROLE_NETWORK_HOST", "true"),
    (
        "ECS_AVAILABLE_LOGGING_DRIVERS",
        r#"["json-file","syslog","awslogs","fluentd","none"]"#,
    ),
];

/// `KEY=value` lines as ecs-init's own parser reads them: the text is
/// trimmed and split into lines, each line trimmed and split at its first
/// `=`; a line without `=` is skipped. There is no comment or quote
/// handling (`#A=1` defines `#A`, `A="x"` keeps the quotes), and the last
/// assignment of a key wins.
pub fn parse_ecs_init_file(text: &str) -> Vec<(String, String)> {
    text.trim()
        .lines()
        .map(str::trim)
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The files to read, in order; `ECS_INIT_CONFIG_FILES` (colon-separated)
/// replaces the two standard ones, for tests and unusual layouts.
pub fn config_files(env: &BTreeMap<String, String>) -> Vec<PathBuf> {
    match env.get("ECS_INIT_CONFIG_FILES").filter(|v| !v.is_empty()) {
        Some(list) => list.split(':').map(PathBuf::from).collect(),
        None => vec![
            PathBuf::from(VENDOR_CONFIG_FILE),
            PathBuf::from(CONFIG_FILE),
        ],
    }
}

/// ecs-init's own paths, inside its agent container: the host's
/// `/var/log/ecs` and `/var/lib/ecs/data` mounted at `/log` and `/data`.
const CONTAINER_PATHS: [(&str, &str); 2] = [
    ("ECS_LOGFILE", "/log/ecs-agent.log"),
    ("ECS_DATADIR", "/data"),
];

/// The agent's environment: defaults < `process` < each file in order.
/// A file that cannot be read is skipped, as ecs-init skips it. A
/// container gets no variable of the init service's own environment, as
/// ecs-init gives its container none: pass an empty `process`.
pub fn agent_environment(
    runs: Runs,
    process: impl IntoIterator<Item = (String, String)>,
    files: &[PathBuf],
) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = DEFAULTS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if runs == Runs::Container {
        env.extend(
            CONTAINER_PATHS
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
    }
    env.extend(process);
    for file in files {
        if let Ok(text) = std::fs::read_to_string(file) {
            env.extend(parse_ecs_init_file(&text));
        }
    }
    env
}

/// The directory of staged updates, as the agent sees it.
pub fn update_dir(env: &BTreeMap<String, String>) -> &Path {
    Path::new(
        env.get("ECS_UPDATE_DOWNLOAD_DIR")
            .map(String::as_str)
            .filter(|v| !v.is_empty())
            .unwrap_or("/var/cache/ecs"),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_file_is_read_as_ecs_init_reads_it() {
        let text = "\n  ECS_CLUSTER=\"quoted\"\n#ECS_LOGLEVEL=debug\nnot a pair\n A = b=c \nECS_CLUSTER=last\n";
        let pairs = parse_ecs_init_file(text);
        assert_eq!(
            pairs,
            vec![
                ("ECS_CLUSTER".into(), "\"quoted\"".into()),
                ("#ECS_LOGLEVEL".into(), "debug".into()),
                ("A ".into(), " b=c".into()),
                ("ECS_CLUSTER".into(), "last".into()),
            ]
        );
    }

    #[test]
    fn files_override_the_process_which_overrides_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let vendor = dir.path().join("vendor.config");
        let operator = dir.path().join("ecs.config");
        std::fs::write(&vendor, "ECS_CLUSTER=vendor\nECS_LOGLEVEL=warn\n").unwrap();
        std::fs::write(&operator, "ECS_CLUSTER=mine\n").unwrap();
        let missing = dir.path().join("missing");
        let env = agent_environment(
            Runs::Process,
            [
                ("ECS_DATADIR".to_string(), "/srv/data".to_string()),
                ("ECS_CLUSTER".to_string(), "process".to_string()),
            ],
            &[vendor.clone(), missing, operator.clone()],
        );
        assert_eq!(env["ECS_CLUSTER"], "mine");
        assert_eq!(env["ECS_LOGLEVEL"], "warn");
        assert_eq!(env["ECS_DATADIR"], "/srv/data");
        assert_eq!(env["ECS_LOGFILE"], "/var/log/ecs/ecs-agent.log");
        assert_eq!(update_dir(&env), Path::new("/var/cache/ecs"));
        let env = agent_environment(Runs::Container, [], &[vendor, operator]);
        assert_eq!(env["ECS_CLUSTER"], "mine");
        assert_eq!(env["ECS_DATADIR"], "/data");
        assert_eq!(env["ECS_LOGFILE"], "/log/ecs-agent.log");
    }

    #[test]
    fn the_file_list_can_be_replaced() {
        let mut env = BTreeMap::new();
        assert_eq!(
            config_files(&env),
            vec![
                PathBuf::from(VENDOR_CONFIG_FILE),
                PathBuf::from(CONFIG_FILE)
            ]
        );
        env.insert("ECS_INIT_CONFIG_FILES".into(), "/a:/b".into());
        assert_eq!(
            config_files(&env),
            vec![PathBuf::from("/a"), PathBuf::from("/b")]
        );
    }
}
