//! Figure 8, container metrics: how close the agent's figures (read from
//! the kernel) are to Docker's own stats of the same containers, and what
//! the collector costs the host against one Docker stats stream per
//! container, the way the Go agent gathers them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use futures_util::StreamExt;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Bench, CpuWindow, WAIT};
use crate::procfs;

/// Paired readings of one container, ours and Docker's, taken one after
/// the other.
#[derive(Debug, Clone, Default)]
pub struct Accuracy {
    pub cpu_ours: Vec<f64>,
    pub cpu_docker: Vec<f64>,
    pub mem_ours: Vec<f64>,
    pub mem_docker: Vec<f64>,
}

/// A CPU window with one Docker stats stream open per running container,
/// read by the bench.
#[derive(Debug, Clone, Copy, Default)]
pub struct StreamsWindow {
    pub window: CpuWindow,
    /// The bench's own CPU seconds in the window: the streams' reader.
    pub reader: f64,
    pub streams: usize,
}

#[derive(Debug, Clone, Default)]
pub struct MetricsFigure {
    /// The CPU-burning container (CPU) and the memory-holding one (memory).
    pub burn: Accuracy,
    pub hold: Accuracy,
    pub streams: Option<StreamsWindow>,
}

/// Readings per container for the accuracy comparison (quick, full).
const ACCURACY_SAMPLES: (usize, usize) = (3, 5);
/// Where the agent serves task metadata (the default port).
const TASK_ENDPOINT_PORT: u16 = 51679;

/// CPU percent of one core (Docker's CLI formula) and memory in use, MiB
/// (usage without the inactive page cache), from one stats sample in
/// Docker's JSON.
fn figures(sample: &Value) -> Option<(f64, f64)> {
    let cpu = &sample["cpu_stats"];
    let pre = &sample["precpu_stats"];
    let total = cpu["cpu_usage"]["total_usage"].as_f64()?;
    let pre_total = pre["cpu_usage"]["total_usage"].as_f64()?;
    let system = cpu["system_cpu_usage"].as_f64()?;
    let pre_system = pre["system_cpu_usage"].as_f64()?;
    let cpus = cpu["online_cpus"].as_f64().unwrap_or(1.0);
    if system <= pre_system {
        return None;
    }
    let cpu_percent = (total - pre_total) / (system - pre_system) * cpus * 100.0;
    let memory = &sample["memory_stats"];
    let stats = &memory["stats"];
    let inactive = stats["total_inactive_file"]
        .as_f64()
        .or_else(|| stats["inactive_file"].as_f64())
        .unwrap_or(0.0);
    let mib = (memory["usage"].as_f64()? - inactive) / (1024.0 * 1024.0);
    Some((cpu_percent, mib))
}

async fn task_endpoint_stats(endpoint_id: &str) -> Result<Value> {
    let fetch = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", TASK_ENDPOINT_PORT)).await?;
        let request = format!("GET /v4/{endpoint_id}/stats HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
        s.write_all(request.as_bytes()).await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        anyhow::Ok(buf)
    };
    let buf = tokio::time::timeout(Duration::from_secs(5), fetch).await??;
    let text = String::from_utf8_lossy(&buf);
    let (_, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("no HTTP answer"))?;
    Ok(serde_json::from_str(body)?)
}

impl Bench {
    /// The running container of `task_arn` and its task endpoint ID.
    async fn container_of(&self, task_arn: &str) -> Result<(String, String)> {
        let ids = crate::docker::with_label(&self.docker, "com.amazonaws.ecs.task-arn").await?;
        let id = ids
            .into_iter()
            .find(|c| c.value == task_arn && c.running)
            .map(|c| c.id)
            .ok_or_else(|| anyhow!("no running container for {task_arn}"))?;
        let info = self
            .docker
            .inspect_container(
                &id,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await?;
        let endpoint = info
            .config
            .and_then(|c| c.env)
            .unwrap_or_default()
            .into_iter()
            .find_map(|e| {
                e.strip_prefix("ECS_CONTAINER_METADATA_URI_V4=")
                    .and_then(|uri| uri.rsplit('/').next().map(str::to_string))
            })
            .ok_or_else(|| anyhow!("{id} has no metadata URI"))?;
        Ok((id, endpoint))
    }

    async fn docker_stats(&self, id: &str) -> Result<Value> {
        let options = bollard::query_parameters::StatsOptionsBuilder::default()
            .stream(false)
            .build();
        let sample = self
            .docker
            .stats(id, Some(options))
            .next()
            .await
            .ok_or_else(|| anyhow!("no stats for {id}"))??;
        Ok(serde_json::to_value(sample)?)
    }

    /// `samples` pairs of readings of the task's container, ours then
    /// Docker's, a second apart (the agent's collector reads every second).
    async fn accuracy(&self, arn: &str, samples: usize) -> Result<Accuracy> {
        let (id, endpoint) = self.container_of(arn).await?;
        let mut into = Accuracy::default();
        for _ in 0..samples {
            let ours = task_endpoint_stats(&endpoint).await?;
            let docker = self.docker_stats(&id).await?;
            let (Some((cpu_o, mem_o)), Some((cpu_d, mem_d))) = (figures(&ours), figures(&docker))
            else {
                bail!("a stats sample without CPU or memory figures: {ours} / {docker}");
            };
            into.cpu_ours.push(cpu_o);
            into.cpu_docker.push(cpu_d);
            into.mem_ours.push(mem_o);
            into.mem_docker.push(mem_d);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        Ok(into)
    }

    /// A task spinning one shell (about one core) and one holding 24 MiB;
    /// each read alternately through the agent's task endpoint and through
    /// Docker's stats API. Both exit on SIGTERM, so their stop is quick.
    pub async fn metrics_accuracy(&mut self) -> Result<()> {
        let command = |c: &str| vec!["sh".to_string(), "-c".to_string(), c.to_string()];
        let image = self.spec.image.clone();
        let burn_td = self
            .ecs
            .register(
                "bench-burn",
                &image,
                &command("trap 'exit 0' TERM; while :; do :; done"),
                64,
            )
            .await?;
        let hold_td = self
            .ecs
            .register(
                "bench-hold",
                &image,
                &command("trap 'exit 0' TERM; dd if=/dev/zero bs=24M count=1 | sleep 86400 & wait"),
                64,
            )
            .await?;
        let mut arns = self.ecs.run(&burn_td, 1).await?;
        arns.extend(self.ecs.run(&hold_td, 1).await?);
        self.ecs
            .wait_all(&arns, "RUNNING", Duration::from_millis(100), WAIT)
            .await?;
        // Two collector readings at least, and Docker's first sample.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let samples = if self.settings.quick {
            ACCURACY_SAMPLES.0
        } else {
            ACCURACY_SAMPLES.1
        };
        // Both containers at once: each pair of readings is of one
        // container, so the other one's readings do not disturb it.
        let (burn, hold) = tokio::join!(
            self.accuracy(&arns[0], samples),
            self.accuracy(&arns[1], samples)
        );
        self.results.metrics.burn = burn?;
        self.results.metrics.hold = hold?;
        self.ecs.stop_all(&arns, 2).await?;
        self.ecs
            .wait_all(&arns, "STOPPED", Duration::from_millis(100), WAIT)
            .await
    }

    /// With the burst's tasks running: one Docker stats stream per running
    /// container, read (and dropped) by the bench, over
    /// [`Settings::streams_window`](super::Settings::streams_window).
    pub async fn stats_streams_window(&mut self) -> Result<()> {
        let ids: Vec<String> =
            crate::docker::with_label(&self.docker, crate::docker::CLUSTER_LABEL)
                .await?
                .into_iter()
                .filter(|c| c.value == self.cluster && c.running)
                .map(|c| c.id)
                .collect();
        let done = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = ids
            .iter()
            .map(|id| {
                let (docker, id, done) = (self.docker.clone(), id.clone(), done.clone());
                tokio::spawn(async move {
                    let options = bollard::query_parameters::StatsOptionsBuilder::default()
                        .stream(true)
                        .build();
                    let mut stream = docker.stats(&id, Some(options));
                    while let Some(sample) = stream.next().await {
                        if done.load(Ordering::Relaxed) {
                            break;
                        }
                        // What an agent does with each sample: decode it.
                        let _ = sample.map(|s| serde_json::to_vec(&s));
                    }
                })
            })
            .collect();
        // Let every stream deliver its first samples before the window.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let me = std::process::id();
        let before = procfs::cpu_seconds(me)?;
        let window = self.cpu_window_for(self.settings.streams_window).await?;
        let reader = procfs::cpu_seconds(me)? - before;
        done.store(true, Ordering::Relaxed);
        for r in readers {
            r.abort();
        }
        self.results.metrics.streams = Some(StreamsWindow {
            window,
            reader,
            streams: ids.len(),
        });
        Ok(())
    }
}
