//! Saving what the engine changed, and what waits for the save
//! (docs/architecture.md §5.4). Docker work, payload acks and the reporter
//! all act on saved state only: when a commit fails, the planned work is
//! dropped (it is planned again), the reports are taken back (they are
//! queued again), the payloads waiting are told so (ACS sends them again),
//! and the save is retried.

use std::sync::Arc;
use std::time::Duration;

use super::actions::{self, Work};
use super::reconcile::{self, Action};
use super::status::{ContainerStatus, TaskStatus};
use super::task::Task;
use super::{AcceptError, Msg, TaskEngine, SAVE_RETRY_DELAY};
use crate::store::Batch;

/// The "already reported" marks of a task, taken before its report is
/// built, so a failed save can give the report back.
struct ReportMarks {
    task: TaskStatus,
    containers: Vec<ContainerStatus>,
}

impl ReportMarks {
    fn of(task: &Task) -> Self {
        Self {
            task: task.reported_status,
            containers: task.containers.iter().map(|c| c.reported_status).collect(),
        }
    }

    fn restore(self, task: &mut Task) {
        task.reported_status = self.task;
        for (c, status) in task.containers.iter_mut().zip(self.containers) {
            c.reported_status = status;
        }
    }
}

impl TaskEngine {
    /// Saves every changed task with the reports it now owes, then starts
    /// the planned Docker work and answers the waiting payloads. A task
    /// whose record did not change and that owes nothing is not written.
    pub(super) async fn save(&mut self) {
        let dirty = std::mem::take(&mut self.dirty);
        let mut batch = Batch {
            enqueue: std::mem::take(&mut self.queued),
            latest_seq: self.latest_seq.take(),
            ..Batch::default()
        };
        let mut written = Vec::new();
        for arn in &dirty {
            let Some(task) = self.tasks.get_mut(arn) else {
                continue;
            };
            let marks = ReportMarks::of(task);
            let report = reconcile::take_report(task, self.settings.exclude_ipv6_port_binding);
            let (bytes, digest) = match crate::store::encode_task(task) {
                Ok(encoded) => encoded,
                Err(e) => {
                    tracing::error!(task = arn, error = %e, "cannot encode the task record");
                    marks.restore(task);
                    continue;
                }
            };
            if report.is_none() && self.saved.get(arn) == Some(&digest) {
                continue;
            }
            batch.put_tasks.push((arn.clone(), bytes));
            batch.enqueue.extend(report);
            written.push((arn.clone(), marks, digest));
        }
        let queued_reports = !batch.enqueue.is_empty();
        let running_reports: Vec<String> = batch
            .enqueue
            .iter()
            .filter(|c| c.status == TaskStatus::Running.backend_string())
            .map(|c| c.task_arn.clone())
            .collect();
        let began = tokio::time::Instant::now();
        match self.store.commit(batch).await {
            Ok(()) => {
                let took = began.elapsed();
                for (arn, _, digest) in written {
                    if let Some(task) = self.tasks.get(&arn) {
                        self.timings
                            .saved(&arn, took, task.known_status == TaskStatus::Running);
                    }
                    self.saved.insert(arn, digest);
                }
                for arn in running_reports {
                    self.timings.running_reported(&arn);
                }
                if queued_reports {
                    self.reports.notify_one();
                }
                for arn in &dirty {
                    self.launch(arn);
                }
                for waiter in self.waiters.drain(..) {
                    let _ = waiter.send(Ok(()));
                }
            }
            Err(e) => {
                tracing::error!(
                    error = %e,
                    "saving task state failed; Docker work and acknowledgements wait until it is saved"
                );
                for (arn, marks, _) in written {
                    if let Some(task) = self.tasks.get_mut(&arn) {
                        marks.restore(task);
                    }
                }
                for arn in &dirty {
                    self.abandon(arn);
                }
                // Rejections and the sequence number are not kept: their
                // payloads were not acked and come again.
                let why = e.to_string();
                for waiter in self.waiters.drain(..) {
                    let _ = waiter.send(Err(AcceptError::NotSaved(why.clone())));
                }
                self.dirty.extend(dirty);
                if !self.save_retry_scheduled {
                    self.save_retry_scheduled = true;
                    self.send_later(SAVE_RETRY_DELAY, Msg::RetrySave);
                }
            }
        }
    }

    /// Forgets the work planned for an unsaved task, so the next pass plans
    /// it again.
    fn abandon(&mut self, arn: &str) {
        let Some(planned) = self.planned.remove(arn) else {
            return;
        };
        let Some(task) = self.tasks.get_mut(arn) else {
            return;
        };
        for (index, _, _) in planned.work {
            if let Some(c) = task.containers.get_mut(index) {
                c.applied_status = None;
            }
        }
        for (index, _) in planned.volumes {
            if let Some(v) = task.volumes.get_mut(index) {
                v.in_flight = false;
            }
        }
        if planned.secrets {
            task.secrets = crate::secrets::SecretsState::Missing;
        }
    }

    /// Starts a saved task's planned Docker work, and what follows a
    /// task's stop.
    fn launch(&mut self, arn: &str) {
        let planned = self.planned.remove(arn).unwrap_or_default();
        let Some(task) = self.tasks.get(arn) else {
            return;
        };
        let snapshot = planned
            .work
            .iter()
            .any(|(_, _, a)| *a == Action::Create)
            .then(|| Box::new(task.clone()));
        let settings = Arc::new(self.settings.actions.clone());
        for (index, target, action) in planned.work {
            let c = &task.containers[index];
            let job = match action {
                Action::ResolveManifest => Work::ResolveManifest {
                    image: c.spec.image.clone(),
                },
                Action::Pull => Work::Pull {
                    image: c.spec.image.clone(),
                    user: crate::images::ContainerRef::new(arn, &c.spec.name),
                    known: c.local_image.clone(),
                    login: c.spec.registry_auth.clone().map(|auth| actions::PullLogin {
                        auth,
                        execution_credentials_id: task.spec.execution_role_credentials_id.clone(),
                    }),
                },
                Action::Create => match &snapshot {
                    Some(task) => Work::Create {
                        task: task.clone(),
                        index,
                    },
                    None => continue,
                },
                Action::Start => match &c.docker_id {
                    Some(id) => Work::Start {
                        docker_id: id.clone(),
                        subject: crate::metadata_file::Subject::of(task, index),
                    },
                    None => continue,
                },
                Action::Stop => match &c.docker_id {
                    Some(id) => Work::Stop {
                        docker_id: id.clone(),
                        grace: if c.spec.stop_timeout_secs > 0 {
                            Duration::from_secs(c.spec.stop_timeout_secs)
                        } else {
                            self.settings.actions.default_stop_timeout
                        },
                    },
                    None => continue,
                },
            };
            tracing::debug!(
                task = arn,
                container = c.spec.name,
                ?target,
                "starting transition"
            );
            let docker = self.docker.clone();
            let settings = settings.clone();
            let tx = self.tx.clone();
            let arn = arn.to_string();
            tokio::spawn(async move {
                let outcome = actions::run(&docker, &settings, job).await;
                let _ = tx.send(Msg::ActionDone {
                    arn,
                    index,
                    target,
                    outcome,
                });
            });
        }
        for (index, volume) in planned.volumes {
            let docker = self.docker.clone();
            let tx = self.tx.clone();
            let arn = arn.to_string();
            let match_full = self.settings.actions.shared_volume_match_full_config;
            tokio::spawn(async move {
                let result = actions::provision_volume(&*docker, &volume, match_full).await;
                let _ = tx.send(Msg::VolumeDone { arn, index, result });
            });
        }
        if planned.secrets {
            let settings = settings.clone();
            let spec = task.spec.clone();
            let tx = self.tx.clone();
            let arn = arn.to_string();
            tokio::spawn(async move {
                let result = actions::fetch_secrets(&settings, &spec).await.map(Arc::new);
                let _ = tx.send(Msg::SecretsDone { arn, result });
            });
        }
        if task.known_status == TaskStatus::Stopped {
            let known_time = task.known_status_time_ms;
            // The task role's credentials end with the task
            // (docs/endpoints.md §7.5); the execution role's last until
            // cleanup, for log drivers.
            self.settings
                .actions
                .credentials
                .remove(arn, crate::credentials::RoleType::TaskApplication);
            if self.cleanups.insert(arn.to_string()) {
                self.schedule_cleanup(arn.to_string(), known_time);
            }
        }
    }
}
