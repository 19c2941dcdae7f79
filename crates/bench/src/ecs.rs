//! The ECS side: ecs-local through the AWS SDK for Rust, as a user's
//! program would call it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use aws_sdk_ecs::error::DisplayErrorContext;
use aws_sdk_ecs::types::ContainerDefinition;
use futures_util::StreamExt;

fn sdk_error(e: impl std::error::Error) -> anyhow::Error {
    anyhow!("{}", DisplayErrorContext(e))
}

#[derive(Clone)]
pub struct Ecs {
    pub client: aws_sdk_ecs::Client,
    pub cluster: String,
}

impl Ecs {
    pub fn for_cluster(&self, cluster: &str) -> Ecs {
        Ecs {
            client: self.client.clone(),
            cluster: cluster.to_string(),
        }
    }

    pub async fn create_cluster(&self) -> Result<()> {
        self.client
            .create_cluster()
            .cluster_name(&self.cluster)
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }

    /// One round trip to ecs-local, for the network share of start-up.
    pub async fn round_trip(&self) -> Result<Duration> {
        let start = Instant::now();
        self.client
            .list_clusters()
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(start.elapsed())
    }

    /// Registers a one-container task definition; returns its ARN.
    pub async fn register(
        &self,
        family: &str,
        image: &str,
        command: &[String],
        memory_mib: i32,
    ) -> Result<String> {
        let container = ContainerDefinition::builder()
            .name("main")
            .image(image)
            .set_command(Some(command.to_vec()))
            .memory(memory_mib)
            .essential(true)
            .build();
        let out = self
            .client
            .register_task_definition()
            .family(family)
            .container_definitions(container)
            .send()
            .await
            .map_err(sdk_error)?;
        out.task_definition()
            .and_then(|t| t.task_definition_arn())
            .map(str::to_string)
            .ok_or_else(|| anyhow!("no task definition ARN"))
    }

    /// RunTask with `--count`; returns the ARNs of every task placed.
    pub async fn run(&self, task_definition: &str, count: i32) -> Result<Vec<String>> {
        let out = self
            .client
            .run_task()
            .cluster(&self.cluster)
            .task_definition(task_definition)
            .count(count)
            .started_by("ecs-bench")
            .send()
            .await
            .map_err(sdk_error)?;
        if let Some(f) = out.failures().first() {
            bail!(
                "RunTask placed {} of {count}: {:?} {:?}",
                out.tasks().len(),
                f.reason(),
                f.detail()
            );
        }
        let arns: Vec<String> = out
            .tasks()
            .iter()
            .filter_map(|t| t.task_arn().map(str::to_string))
            .collect();
        if arns.len() != usize::try_from(count).unwrap_or_default() {
            bail!("RunTask placed {} tasks, not {count}", arns.len());
        }
        Ok(arns)
    }

    /// lastStatus of each task (DescribeTasks, 100 at a time), with the
    /// stopped reason of those that stopped.
    pub async fn statuses(&self, arns: &[String]) -> Result<HashMap<String, (String, String)>> {
        let mut all = HashMap::new();
        for chunk in arns.chunks(100) {
            let out = self
                .client
                .describe_tasks()
                .cluster(&self.cluster)
                .set_tasks(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(sdk_error)?;
            for t in out.tasks() {
                if let Some(arn) = t.task_arn() {
                    all.insert(
                        arn.to_string(),
                        (
                            t.last_status().unwrap_or_default().to_string(),
                            t.stopped_reason().unwrap_or_default().to_string(),
                        ),
                    );
                }
            }
        }
        Ok(all)
    }

    /// Polls DescribeTasks every `every` until every task's lastStatus is
    /// `status`, asking only for the tasks still awaited. A task that stops
    /// while RUNNING is awaited is an error.
    pub async fn wait_all(
        &self,
        arns: &[String],
        status: &str,
        every: Duration,
        timeout: Duration,
    ) -> Result<()> {
        let start = Instant::now();
        let mut awaited = arns.to_vec();
        loop {
            let statuses = self.statuses(&awaited).await?;
            let mut still = Vec::with_capacity(awaited.len());
            for arn in awaited {
                match statuses.get(&arn) {
                    Some((s, _)) if s == status => {}
                    Some((s, reason)) if s == "STOPPED" => {
                        bail!("task {arn} stopped while it should become {status}: {reason}")
                    }
                    _ => still.push(arn),
                }
            }
            awaited = still;
            if awaited.is_empty() {
                return Ok(());
            }
            if start.elapsed() > timeout {
                bail!(
                    "{} of {} tasks {status} after {timeout:?}",
                    arns.len() - awaited.len(),
                    arns.len()
                );
            }
            tokio::time::sleep(every).await;
        }
    }

    /// The load [`Ecs::wait_all`] puts on the machine, for the Docker side
    /// of a comparison: DescribeTasks every `every` of as many tasks as
    /// `awaited` says are still awaited (taken from `known`, repeated as
    /// needed), until the future is dropped. Without it the Docker side
    /// would run on a quieter machine than the ECS side, whose polling
    /// costs ecs-local and the bench CPU that dockerd, containerd and runc
    /// then lack (docs/footprint.md §3).
    pub async fn probe(
        &self,
        known: &[String],
        awaited: impl Fn() -> usize,
        every: Duration,
    ) -> Result<std::convert::Infallible> {
        if known.is_empty() {
            bail!("the probe needs a known task to describe");
        }
        loop {
            let wanted: Vec<String> = known.iter().cycle().take(awaited()).cloned().collect();
            if !wanted.is_empty() {
                self.statuses(&wanted).await?;
            }
            tokio::time::sleep(every).await;
        }
    }

    pub async fn stop(&self, arn: &str) -> Result<()> {
        self.client
            .stop_task()
            .cluster(&self.cluster)
            .task(arn)
            .reason("ecs-bench")
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }

    /// StopTask for each, `concurrency` calls at a time.
    pub async fn stop_all(&self, arns: &[String], concurrency: usize) -> Result<()> {
        let results: Vec<Result<()>> = futures_util::stream::iter(arns.to_vec())
            .map(|arn| {
                let ecs = self.clone();
                async move { ecs.stop(&arn).await }
            })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
        results.into_iter().collect()
    }

    /// `calls` RunTask calls, all at once, call `i` of `count_of_call(i)`
    /// tasks; the ARNs.
    pub async fn run_concurrently(
        &self,
        task_definition: &str,
        calls: usize,
        count_of_call: impl Fn(usize) -> i32,
    ) -> Result<Vec<String>> {
        let runs = (0..calls).map(|call| {
            let (ecs, td, count) = (
                self.clone(),
                task_definition.to_string(),
                count_of_call(call),
            );
            async move { ecs.run(&td, count).await }
        });
        let results = futures_util::future::join_all(runs).await;
        let mut arns = Vec::new();
        for r in results {
            arns.extend(r?);
        }
        Ok(arns)
    }
}
