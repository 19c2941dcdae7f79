//! Containers that carry the agent's labels but belong to no saved task
//! (docs/engine.md §12.1): left by a checkpoint that was lost or moved
//! away, or by an earlier registration. At start-up they are found and
//! logged; a running one's task is proposed to the backend as a stop
//! candidate with the next task manifest, and its containers are stopped
//! once the backend confirms that the task should not run here.

use super::{labels, TaskEngine};

impl TaskEngine {
    pub(super) async fn find_orphans(&mut self) {
        let found = match self.docker.containers_with_label(labels::TASK_ARN).await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, "could not list the agent's containers; containers of lost tasks are not looked for");
                return;
            }
        };
        let cluster = self.settings.actions.cluster.as_str();
        for c in found {
            let Some(arn) = c.labels.get(labels::TASK_ARN) else {
                continue;
            };
            if self.tasks.contains_key(arn) {
                continue;
            }
            let their_cluster = c.labels.get(labels::CLUSTER).map(String::as_str);
            if their_cluster.is_some_and(|theirs| theirs != cluster) {
                tracing::warn!(
                    task = arn,
                    docker_id = c.docker_id,
                    cluster = their_cluster,
                    "container of another cluster's task is left alone"
                );
                continue;
            }
            if c.running {
                tracing::error!(
                    task = arn,
                    docker_id = c.docker_id,
                    "running container belongs to no saved task; it will be stopped if the backend confirms the task should not run here"
                );
                self.orphans
                    .entry(arn.clone())
                    .or_default()
                    .push(c.docker_id);
            } else {
                tracing::warn!(
                    task = arn,
                    docker_id = c.docker_id,
                    "stopped container belongs to no saved task; left as it is"
                );
            }
        }
    }

    /// The backend confirmed that an orphaned task should not run here.
    pub(super) fn stop_orphan(&mut self, arn: &str) {
        let Some(ids) = self.orphans.remove(arn) else {
            return;
        };
        let grace = self.settings.actions.default_stop_timeout;
        for id in ids {
            tracing::info!(
                task = arn,
                docker_id = id,
                "stopping container of a task the backend does not run here"
            );
            self.spawn_stop(id, grace);
        }
    }
}
