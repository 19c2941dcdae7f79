//! Settings this agent parses (so bad values are handled as the Go agent
//! handles them) but does not act on yet. Each entry names the variable and
//! says when its value differs from the default; start-up logs one warning
//! for each such entry, so a user who set none of them sees nothing.
//!
//! When later work implements a setting, its entry is deleted here (and
//! its row in docs/compatibility.md changes); nothing else needs to move.

use super::{
    Bool3, Config, DEFAULT_CGROUP_CPU_PERIOD, DEFAULT_CGROUP_PATH, DEFAULT_CNI_PLUGINS_PATH,
    DEFAULT_MANIFEST_PULL_TIMEOUT, DEFAULT_NON_ECS_IMAGE_MINIMUM_AGE,
    DEFAULT_NUM_NON_ECS_CONTAINERS_PER_CYCLE, DEFAULT_NVIDIA_RUNTIME, DEFAULT_POLLING_METRICS_WAIT,
};

/// A variable, and whether the loaded configuration has it changed from
/// its default (from the environment or from the JSON file).
type Entry = (&'static str, fn(&Config) -> bool);

/// Parsed, not acted on yet. Grouped as in the spec's variable tables.
const NOT_SUPPORTED_YET: &[Entry] = &[
    // Registration.
    ("ECS_CONTAINER_INSTANCE_PROPAGATE_TAGS_FROM", |c| {
        c.propagate_tags_from_ec2
    }),
    ("ECS_WARM_POOLS_CHECK", |c| c.warm_pools_check),
    ("ECS_ENABLE_SPOT_INSTANCE_DRAINING", |c| {
        c.spot_instance_draining
    }),
    // Metrics and runtime statistics.
    ("ECS_POLL_METRICS", |c| c.poll_metrics),
    ("ECS_POLLING_METRICS_WAIT_DURATION", |c| {
        c.polling_metrics_wait != DEFAULT_POLLING_METRICS_WAIT
    }),
    ("ECS_ENABLE_RUNTIME_STATS", |c| c.runtime_stats),
    // Images and containers.
    ("ECS_MANIFEST_PULL_TIMEOUT", |c| {
        c.manifest_pull_timeout != DEFAULT_MANIFEST_PULL_TIMEOUT
    }),
    ("ECS_PULL_DEPENDENT_CONTAINERS_UPFRONT", |c| {
        c.dependent_containers_pull_upfront
    }),
    ("ECS_VOLUME_PLUGIN_CAPABILITIES", |c| {
        !c.volume_plugin_capabilities.is_empty()
    }),
    ("ECS_ENABLE_FIRELENS_ASYNC", |c| !c.firelens_async),
    ("ECS_EBSTA_SUPPORTED", |c| !c.ebsta_supported),
    // GPU and Inferentia.
    ("ECS_ENABLE_GPU_SUPPORT", |c| c.gpu_support),
    ("ECS_NVIDIA_RUNTIME", |c| {
        c.nvidia_runtime != DEFAULT_NVIDIA_RUNTIME
    }),
    ("ECS_ENABLE_INF_SUPPORT", |c| c.inferentia_support),
    // Untracked image and container cleanup.
    ("ECS_ENABLE_UNTRACKED_IMAGE_CLEANUP", |c| {
        c.delete_non_ecs_images
    }),
    ("NON_ECS_IMAGE_MINIMUM_CLEANUP_AGE", |c| {
        c.non_ecs_minimum_image_deletion_age != DEFAULT_NON_ECS_IMAGE_MINIMUM_AGE
    }),
    ("NONECS_NUM_CONTAINERS_DELETE_PER_CYCLE", |c| {
        c.num_non_ecs_containers_to_delete_per_cycle != DEFAULT_NUM_NON_ECS_CONTAINERS_PER_CYCLE
    }),
    // Task cgroups.
    ("ECS_ENABLE_TASK_CPU_MEM_LIMIT", |c| {
        c.task_cpu_mem_limit != Bool3::NotSet
    }),
    ("ECS_CGROUP_PATH", |c| c.cgroup_path != DEFAULT_CGROUP_PATH),
    ("ECS_CGROUP_CPU_PERIOD", |c| {
        c.cgroup_cpu_period != DEFAULT_CGROUP_CPU_PERIOD
    }),
    ("ECS_TASK_PIDS_LIMIT", |c| c.task_pids_limit != 0),
    ("ECS_PROPAGATE_TASK_MEMORY_LIMIT_CGROUPV2", |c| {
        c.propagate_task_memory_limit_cgroupv2
    }),
    // Task networking (awsvpc).
    ("ECS_ENABLE_TASK_ENI", |c| c.task_eni_enabled),
    ("ECS_CNI_PLUGINS_PATH", |c| {
        c.cni_plugins_path != DEFAULT_CNI_PLUGINS_PATH
    }),
    ("ECS_AWSVPC_BLOCK_IMDS", |c| c.awsvpc_block_imds),
    ("ECS_AWSVPC_ADDITIONAL_LOCAL_ROUTES", |c| {
        !c.awsvpc_additional_local_routes.is_empty()
    }),
];

impl Config {
    /// The variables set to something other than their default that this
    /// agent parses but does not act on yet, in a fixed order. Empty for a
    /// configuration that changes none of them.
    pub fn unsupported_settings(&self) -> Vec<&'static str> {
        NOT_SUPPORTED_YET
            .iter()
            .filter(|(_, changed)| changed(self))
            .map(|(name, _)| *name)
            .collect()
    }

    /// The start-up warning for one of [`Config::unsupported_settings`].
    pub fn unsupported_setting_warning(name: &str) -> String {
        format!("{name} is set but not supported yet by this agent; it has no effect")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::{Env, FileConfig};
    use super::*;

    fn load(env: &[(&str, &str)], file: &str) -> Config {
        Config::from_sources(
            &Env::from_pairs(env.iter().copied()),
            &FileConfig::parse(file).unwrap(),
            Some((32768, 60999)),
        )
        .unwrap()
        .config
    }

    /// A non-default value for each entry, from the environment.
    const CHANGED: &[(&str, &str)] = &[
        ("ECS_CONTAINER_INSTANCE_PROPAGATE_TAGS_FROM", "ec2_instance"),
        ("ECS_WARM_POOLS_CHECK", "true"),
        ("ECS_ENABLE_SPOT_INSTANCE_DRAINING", "true"),
        ("ECS_POLL_METRICS", "true"),
        ("ECS_POLLING_METRICS_WAIT_DURATION", "15s"),
        ("ECS_ENABLE_RUNTIME_STATS", "true"),
        ("ECS_MANIFEST_PULL_TIMEOUT", "45s"),
        ("ECS_PULL_DEPENDENT_CONTAINERS_UPFRONT", "true"),
        ("ECS_VOLUME_PLUGIN_CAPABILITIES", r#"["efsAuth"]"#),
        ("ECS_ENABLE_FIRELENS_ASYNC", "false"),
        ("ECS_EBSTA_SUPPORTED", "false"),
        ("ECS_ENABLE_GPU_SUPPORT", "true"),
        ("ECS_NVIDIA_RUNTIME", "nvidia-custom"),
        ("ECS_ENABLE_INF_SUPPORT", "true"),
        ("ECS_ENABLE_UNTRACKED_IMAGE_CLEANUP", "true"),
        ("NON_ECS_IMAGE_MINIMUM_CLEANUP_AGE", "2h"),
        ("NONECS_NUM_CONTAINERS_DELETE_PER_CYCLE", "7"),
        ("ECS_ENABLE_TASK_CPU_MEM_LIMIT", "true"),
        ("ECS_CGROUP_PATH", "/cgroup"),
        ("ECS_CGROUP_CPU_PERIOD", "10ms"),
        ("ECS_TASK_PIDS_LIMIT", "100"),
        ("ECS_PROPAGATE_TASK_MEMORY_LIMIT_CGROUPV2", "true"),
        ("ECS_ENABLE_TASK_ENI", "true"),
        ("ECS_CNI_PLUGINS_PATH", "/opt/cni"),
        ("ECS_AWSVPC_BLOCK_IMDS", "true"),
        ("ECS_AWSVPC_ADDITIONAL_LOCAL_ROUTES", r#"["10.0.0.0/8"]"#),
    ];

    #[test]
    fn default_config_has_no_unsupported_settings() {
        assert_eq!(load(&[], "").unsupported_settings(), Vec::<&str>::new());
    }

    #[test]
    fn each_changed_setting_is_named_alone() {
        assert_eq!(CHANGED.len(), NOT_SUPPORTED_YET.len(), "one case per entry");
        for (name, value) in CHANGED {
            assert_eq!(
                load(&[(name, value)], "").unsupported_settings(),
                vec![*name],
                "{name}={value}"
            );
        }
    }

    #[test]
    fn all_changed_settings_are_named_once_in_table_order() {
        let names: Vec<&str> = NOT_SUPPORTED_YET.iter().map(|(n, _)| *n).collect();
        assert_eq!(load(CHANGED, "").unsupported_settings(), names);
    }

    #[test]
    fn values_equal_to_the_defaults_are_not_warned_about() {
        let defaults = [
            ("ECS_CONTAINER_INSTANCE_PROPAGATE_TAGS_FROM", "none"),
            ("ECS_WARM_POOLS_CHECK", "false"),
            ("ECS_POLL_METRICS", "false"),
            ("ECS_POLLING_METRICS_WAIT_DURATION", "10s"),
            ("ECS_MANIFEST_PULL_TIMEOUT", "1m"),
            ("ECS_VOLUME_PLUGIN_CAPABILITIES", "[]"),
            ("ECS_ENABLE_FIRELENS_ASYNC", "true"),
            ("ECS_EBSTA_SUPPORTED", "true"),
            ("ECS_ENABLE_GPU_SUPPORT", "false"),
            ("ECS_NVIDIA_RUNTIME", "nvidia"),
            ("NONECS_NUM_CONTAINERS_DELETE_PER_CYCLE", "5"),
            ("ECS_CGROUP_PATH", "/sys/fs/cgroup"),
            ("ECS_CGROUP_CPU_PERIOD", "100ms"),
            ("ECS_TASK_PIDS_LIMIT", "0"),
            ("ECS_ENABLE_TASK_ENI", "false"),
            ("ECS_AWSVPC_ADDITIONAL_LOCAL_ROUTES", "[]"),
        ];
        assert_eq!(
            load(&defaults, "").unsupported_settings(),
            Vec::<&str>::new()
        );
    }

    /// Agent updates are implemented (`crate::update`): setting them is
    /// not warned about.
    #[test]
    fn update_settings_are_acted_on_and_not_warned_about() {
        let changed = [
            ("ECS_UPDATES_ENABLED", "true"),
            ("ECS_UPDATE_DOWNLOAD_DIR", "/var/cache/ecs"),
        ];
        assert_eq!(
            load(&changed, "").unsupported_settings(),
            Vec::<&str>::new()
        );
    }

    #[test]
    fn json_file_values_count_too() {
        let file = r#"{"PollMetrics": true, "TaskENIEnabled": true, "CgroupPath": "/cgroup"}"#;
        assert_eq!(
            load(&[], file).unsupported_settings(),
            ["ECS_POLL_METRICS", "ECS_CGROUP_PATH", "ECS_ENABLE_TASK_ENI"]
        );
    }

    #[test]
    fn warning_names_the_variable() {
        assert_eq!(
            Config::unsupported_setting_warning("ECS_POLL_METRICS"),
            "ECS_POLL_METRICS is set but not supported yet by this agent; it has no effect"
        );
    }
}
