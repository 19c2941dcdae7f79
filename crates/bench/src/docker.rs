//! The Docker side of each comparison: the same image and command through
//! Docker's API (bollard), with no process start in between; and removal of
//! whatever the bench made.

use std::collections::HashMap;

use anyhow::{Context, Result};
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
    StartContainerOptions, StopContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt;

/// The label on every container the bench creates itself; its value is the
/// run's ID.
pub const RUN_LABEL: &str = "ecs-bench.run";
/// The label the agent puts on every task container.
pub const CLUSTER_LABEL: &str = "com.amazonaws.ecs.cluster";

/// What the agent asks Docker for, for the bench's task definition: the
/// same image, command, memory limit and CPU shares.
#[derive(Debug, Clone)]
pub struct Spec {
    pub image: String,
    pub command: Vec<String>,
    pub memory_mib: i64,
    pub run_id: String,
}

impl Spec {
    fn body(&self) -> ContainerCreateBody {
        ContainerCreateBody {
            image: Some(self.image.clone()),
            cmd: Some(self.command.clone()),
            labels: Some(HashMap::from([(
                RUN_LABEL.to_string(),
                self.run_id.clone(),
            )])),
            host_config: Some(HostConfig {
                memory: Some(self.memory_mib * 1024 * 1024),
                cpu_shares: Some(2),
                network_mode: Some("bridge".into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

/// `docker create` + `docker start`; returns the container ID.
pub async fn create_start(docker: &Docker, spec: &Spec, name: &str) -> Result<String> {
    let options = CreateContainerOptionsBuilder::default().name(name).build();
    let created = docker
        .create_container(Some(options), spec.body())
        .await
        .with_context(|| format!("creating {name}"))?;
    docker
        .start_container(&created.id, None::<StartContainerOptions>)
        .await
        .with_context(|| format!("starting {name}"))?;
    Ok(created.id)
}

/// `docker stop -t <grace>`: returns once the container has exited.
pub async fn stop(docker: &Docker, id: &str, grace_secs: i32) -> Result<()> {
    let options = StopContainerOptionsBuilder::default().t(grace_secs).build();
    docker
        .stop_container(id, Some(options))
        .await
        .with_context(|| format!("stopping {id}"))
}

/// `docker rm -f -v`; a container already gone is fine.
pub async fn remove(docker: &Docker, id: &str) -> Result<()> {
    let options = RemoveContainerOptionsBuilder::default()
        .force(true)
        .v(true)
        .build();
    match docker.remove_container(id, Some(options)).await {
        Ok(()) => Ok(()),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {id}")),
    }
}

/// Removes these containers, `concurrency` at a time.
pub async fn remove_all(docker: &Docker, ids: &[String], concurrency: usize) -> Result<()> {
    let results: Vec<Result<()>> = futures_util::stream::iter(ids.to_vec())
        .map(|id| {
            let docker = docker.clone();
            async move { remove(&docker, &id).await }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    results.into_iter().collect()
}

/// A container carrying a label, running or not.
#[derive(Debug, Clone)]
pub struct Labelled {
    pub id: String,
    pub running: bool,
    pub value: String,
}

/// Every container with `label` (any value).
pub async fn with_label(docker: &Docker, label: &str) -> Result<Vec<Labelled>> {
    let filters = HashMap::from([("label", vec![label])]);
    let options = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    let listed = docker
        .list_containers(Some(options))
        .await
        .context("listing containers")?;
    Ok(listed
        .into_iter()
        .filter_map(|c| {
            let value = c.labels.as_ref()?.get(label)?.clone();
            Some(Labelled {
                id: c.id?,
                running: matches!(
                    c.state,
                    Some(bollard::models::ContainerSummaryStateEnum::RUNNING)
                ),
                value,
            })
        })
        .collect())
}

/// The containers of this run: the bench's own and those the agent made for
/// clusters whose names start with `cluster_prefix`.
pub async fn of_run(docker: &Docker, run_id: &str, cluster_prefix: &str) -> Result<Vec<String>> {
    let mut ids: Vec<String> = with_label(docker, RUN_LABEL)
        .await?
        .into_iter()
        .filter(|c| c.value == run_id)
        .map(|c| c.id)
        .collect();
    ids.extend(
        with_label(docker, CLUSTER_LABEL)
            .await?
            .into_iter()
            .filter(|c| c.value.starts_with(cluster_prefix))
            .map(|c| c.id),
    );
    Ok(ids)
}

/// How many of the agent's containers for `cluster` exist, and how many run.
pub async fn agent_containers(docker: &Docker, cluster: &str) -> Result<(usize, usize)> {
    let all: Vec<Labelled> = with_label(docker, CLUSTER_LABEL)
        .await?
        .into_iter()
        .filter(|c| c.value == cluster)
        .collect();
    let running = all.iter().filter(|c| c.running).count();
    Ok((all.len(), running))
}
