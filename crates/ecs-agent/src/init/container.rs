//! The agent run as a container by the init service, as ecs-init runs the
//! Go agent (docs/operations.md §3.1): one container named `ecs-agent` on
//! the host network, with the host's Docker socket, data, log, update and
//! cgroup directories mounted, removed and created again at each start.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::docker::{DockerApi, DockerClient, DockerError};
use crate::engine::status::ContainerStatus;

/// ecs-init's container name.
pub const NAME: &str = "ecs-agent";
/// How often a running agent container is looked at.
const POLL: Duration = Duration::from_secs(1);
/// The agent saves its state and exits within seconds of SIGTERM; this
/// is the most `docker stop` waits before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(60);
const CALL_LIMIT: Duration = Duration::from_secs(120);

/// Where the agent's directories are on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostDirs {
    /// `ECS_HOST_DATA_DIR` as the Go agent reads it: the host directory
    /// whose `data` the container sees at `/data`; the agent prefixes the
    /// bind sources it gives Docker with it.
    pub prefix: String,
    pub data: String,
    pub log: String,
    /// The update directory, mounted at the same path, so that the
    /// agent's `desired-image` is where the init service reads it.
    pub updates: String,
}

impl HostDirs {
    /// `<ECS_HOST_DATA_DIR>/data` (default `/var/lib/ecs/data`),
    /// `ECS_INIT_HOST_LOG_DIR` (default `/var/log/ecs`), and the agent's
    /// update directory.
    pub fn from_env(env: &BTreeMap<String, String>, updates: &Path) -> Self {
        let get = |k: &str, default: &str| {
            env.get(k)
                .filter(|v| !v.is_empty())
                .cloned()
                .unwrap_or_else(|| default.to_string())
        };
        let prefix = get("ECS_HOST_DATA_DIR", "/var/lib/ecs");
        Self {
            data: Path::new(&prefix).join("data").display().to_string(),
            prefix,
            log: get("ECS_INIT_HOST_LOG_DIR", "/var/log/ecs"),
            updates: updates.display().to_string(),
        }
    }
}

/// The Docker create body of the agent's container.
pub fn create_body(
    image: &str,
    env: &BTreeMap<String, String>,
    dirs: &HostDirs,
) -> serde_json::Value {
    let env: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    serde_json::json!({
        "Image": image,
        "Env": env,
        "HostConfig": {
            "NetworkMode": "host",
            "UsernsMode": "host",
            // Unlike ecs-init's default: the metrics collector reads the
            // tasks' processes under /proc (docs/metrics.md).
            "PidMode": "host",
            "Init": true,
            "CapAdd": ["NET_ADMIN", "SYS_ADMIN"],
            "Binds": [
                "/var/run:/var/run",
                format!("{}:/log", dirs.log),
                format!("{}:/data", dirs.data),
                format!("{0}:{0}", dirs.updates),
                "/etc/ecs:/etc/ecs",
                "/sys/fs/cgroup:/sys/fs/cgroup",
            ],
            "LogConfig": {
                "Type": "json-file",
                "Config": {"max-size": "16m", "max-file": "4"},
            },
        },
    })
}

/// Removes a container left by an earlier run, running or not.
pub async fn remove_existing(docker: &DockerClient) -> Result<(), DockerError> {
    match docker.inspect_container(NAME).await? {
        None => Ok(()),
        Some(found) => {
            if found.status == ContainerStatus::Running {
                docker.stop_container(NAME, STOP_GRACE).await?;
            }
            docker.remove_container(NAME).await
        }
    }
}

/// Creates and starts the agent's container.
pub async fn start(docker: &DockerClient, body: serde_json::Value) -> Result<(), DockerError> {
    remove_existing(docker).await?;
    docker.create_container(NAME, body, CALL_LIMIT).await?;
    docker.start_container(NAME, CALL_LIMIT).await
}

/// Waits until the container is no longer running; its exit code.
pub async fn wait(docker: &DockerClient) -> Result<i64, DockerError> {
    loop {
        match docker.inspect_container(NAME).await? {
            None => return Err(DockerError::status(404, "the agent container vanished")),
            Some(o) if o.status == ContainerStatus::Running => {}
            Some(o) => return Ok(o.exit_code.unwrap_or(-1)),
        }
        tokio::time::sleep(POLL).await;
    }
}

/// `docker stop`: SIGTERM, the agent saves its state and exits.
pub async fn stop(docker: &DockerClient) -> Result<(), DockerError> {
    docker.stop_container(NAME, STOP_GRACE).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_container_is_laid_out_as_ecs_init_lays_it_out() {
        let env: BTreeMap<String, String> = [("ECS_CLUSTER", "c"), ("ECS_DATADIR", "/data")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let dirs = HostDirs::from_env(&BTreeMap::new(), Path::new("/var/cache/ecs"));
        assert_eq!(dirs.data, "/var/lib/ecs/data");
        assert_eq!(dirs.prefix, "/var/lib/ecs");
        assert_eq!(dirs.log, "/var/log/ecs");
        let body = create_body("ecs-agent-rs:latest", &env, &dirs);
        assert_eq!(body["Image"], "ecs-agent-rs:latest");
        assert_eq!(
            body["Env"],
            serde_json::json!(["ECS_CLUSTER=c", "ECS_DATADIR=/data"])
        );
        let host = &body["HostConfig"];
        assert_eq!(host["NetworkMode"], "host");
        assert_eq!(host["Init"], true);
        let binds: Vec<&str> = host["Binds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b.as_str().unwrap())
            .collect();
        for bind in [
            "/var/run:/var/run",
            "/var/log/ecs:/log",
            "/var/lib/ecs/data:/data",
            "/var/cache/ecs:/var/cache/ecs",
        ] {
            assert!(binds.contains(&bind), "{bind} in {binds:?}");
        }
        // The body is one Docker accepts.
        let _: bollard::models::ContainerCreateBody = serde_json::from_value(body).unwrap();
    }
}
