//! The reconciliation safety net of ACS (docs/protocols.md §4.8): the server's
//! periodic list of tasks that should run here, the stop candidates the
//! agent proposes from it, and the server's confirmation.

use std::collections::HashSet;
use std::sync::Mutex;

use ecs_model::acs::{
    AckRequest, TaskIdentifier, TaskManifestMessage, TaskStopVerificationAck,
    TaskStopVerificationMessage,
};

/// What to do with a manifest.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Missing `messageId`, `clusterArn`, `containerInstanceArn` or
    /// `timeline`: ignored.
    Invalid,
    /// `timeline <= latestSeq`: discarded silently, no ack.
    Stale,
    Accepted {
        timeline: i64,
        ack: AckRequest,
        /// Sent only when there is at least one candidate.
        verification: Option<TaskStopVerificationMessage>,
    },
}

/// Compares a manifest with the tasks that run here: those this agent
/// wants RUNNING, and those of orphaned containers (docs/engine.md §12.1).
/// `latest_seq` is the persisted `latestSeq` (see
/// [`crate::store::Store::raise_latest_seq`]).
pub fn consider(
    manifest: &TaskManifestMessage,
    latest_seq: i64,
    running_here: &[String],
) -> Verdict {
    let present = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
    let (Some(message_id), Some(cluster_arn), Some(instance_arn), Some(timeline)) = (
        present(&manifest.message_id),
        present(&manifest.cluster_arn),
        present(&manifest.container_instance_arn),
        manifest.timeline,
    ) else {
        return Verdict::Invalid;
    };
    if timeline <= latest_seq {
        return Verdict::Stale;
    }
    // Entries without an ARN or a status count as not listed (the Go agent
    // would crash on them).
    let listed: HashSet<&str> = manifest
        .tasks
        .iter()
        .flatten()
        .filter(|t| t.desired_status.as_deref() == Some("RUNNING"))
        .filter_map(|t| t.task_arn.as_deref())
        .collect();
    let candidates: Vec<TaskIdentifier> = running_here
        .iter()
        .filter(|arn| !listed.contains(arn.as_str()))
        .map(|arn| TaskIdentifier {
            desired_status: Some("STOPPED".into()),
            task_arn: Some(arn.clone()),
            task_cluster_arn: Some(cluster_arn.clone()),
        })
        .collect();
    Verdict::Accepted {
        timeline,
        ack: AckRequest {
            cluster: Some(cluster_arn),
            container_instance: Some(instance_arn),
            message_id: Some(message_id.clone()),
        },
        verification: (!candidates.is_empty()).then_some(TaskStopVerificationMessage {
            message_id: Some(message_id),
            stop_candidates: Some(candidates),
        }),
    }
}

/// The `messageId` of the last accepted manifest, shared by every ACS
/// session of the process; a verification ack must match it.
#[derive(Debug, Default)]
pub struct PendingVerification {
    message_id: Mutex<Option<String>>,
}

impl PendingVerification {
    fn slot(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.message_id
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A newer manifest replaces the older one, so a late ack for the
    /// older one is rejected.
    pub fn accepted(&self, message_id: &str) {
        *self.slot() = Some(message_id.to_string());
    }

    /// The tasks to stop, if the ack answers the last manifest; the
    /// stored ID is cleared so the same ack cannot apply twice.
    pub fn confirmed(&self, ack: &TaskStopVerificationAck) -> Option<Vec<String>> {
        let id = ack.message_id.as_deref().filter(|id| !id.is_empty())?;
        let mut slot = self.slot();
        if slot.as_deref() != Some(id) {
            return None;
        }
        *slot = None;
        Some(
            ack.stop_tasks
                .iter()
                .flatten()
                .filter_map(|t| t.task_arn.clone())
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use ecs_model::acs::AcsMessage;

    fn sample(name: &str) -> Option<String> {
        let dir = ecs_model::spec::require_or_skip("task manifest samples")?;
        Some(std::fs::read_to_string(dir.join("samples").join(name)).unwrap())
    }

    fn manifest(text: &str) -> TaskManifestMessage {
        match AcsMessage::decode(text).unwrap() {
            AcsMessage::TaskManifestMessage(m) => m,
            other => panic!("not a manifest: {}", other.type_name()),
        }
    }

    const RUNNING: &str =
        "arn:aws:ecs:us-east-1:123456789012:task/default/7c2e1d9b3a4f5e6d8c7b6a5f4e3d2c1b";

    #[test]
    fn the_recorded_round_gives_the_recorded_frames() {
        let (Some(stale), Some(current), Some(ack), Some(verification), Some(confirmation)) = (
            sample("acs-task-manifest.stale.json"),
            sample("acs-task-manifest.json"),
            sample("acs-ack-manifest.json"),
            sample("acs-task-stop-verification.json"),
            sample("acs-task-stop-verification-ack.json"),
        ) else {
            return;
        };
        // The recording had seen payload seqNum 3.
        assert_eq!(
            consider(&manifest(&stale), 3, &[RUNNING.into()]),
            Verdict::Stale
        );
        let Verdict::Accepted {
            timeline,
            ack: our_ack,
            verification: Some(our_verification),
        } = consider(&manifest(&current), 3, &[RUNNING.into()])
        else {
            panic!("not accepted with a candidate")
        };
        assert_eq!(timeline, 4);
        assert_eq!(AcsMessage::AckRequest(our_ack).encode(), ack.trim());
        assert_eq!(
            AcsMessage::TaskStopVerificationMessage(our_verification).encode(),
            verification.trim()
        );
        let pending = PendingVerification::default();
        pending.accepted("66cc77dd-manifest-0002");
        let AcsMessage::TaskStopVerificationAck(confirm) =
            AcsMessage::decode(&confirmation).unwrap()
        else {
            panic!("not a verification ack")
        };
        assert_eq!(pending.confirmed(&confirm), Some(vec![RUNNING.to_string()]));
        // Once only.
        assert_eq!(pending.confirmed(&confirm), None);
    }

    #[test]
    fn listed_running_tasks_are_kept_and_broken_entries_do_not_count() {
        let m: TaskManifestMessage = serde_json::from_value(serde_json::json!({
            "messageId": "m", "clusterArn": "c", "containerInstanceArn": "i", "timeline": 9,
            "tasks": [
                {"taskArn": "keep", "desiredStatus": "RUNNING"},
                {"taskArn": "going", "desiredStatus": "STOPPED"},
                {"desiredStatus": "RUNNING"},
                {"taskArn": "no-status"}
            ]
        }))
        .unwrap();
        let local: Vec<String> = ["keep", "going", "no-status"].map(String::from).to_vec();
        let Verdict::Accepted {
            verification: Some(v),
            ..
        } = consider(&m, 8, &local)
        else {
            panic!("expected candidates")
        };
        let arns: Vec<_> = v
            .stop_candidates
            .unwrap()
            .into_iter()
            .map(|t| t.task_arn.unwrap())
            .collect();
        assert_eq!(arns, ["going", "no-status"]);
        let Verdict::Accepted { verification, .. } = consider(&m, 8, &["keep".into()]) else {
            panic!("expected accepted")
        };
        assert_eq!(verification, None);
        assert_eq!(consider(&m, 9, &local), Verdict::Stale);
        let mut invalid = m;
        invalid.container_instance_arn = None;
        assert_eq!(consider(&invalid, -1, &local), Verdict::Invalid);
    }

    #[test]
    fn a_newer_manifest_makes_the_older_ack_stale() {
        let pending = PendingVerification::default();
        pending.accepted("first");
        pending.accepted("second");
        let ack = |id: &str| TaskStopVerificationAck {
            message_id: Some(id.into()),
            generated_at: None,
            stop_tasks: Some(vec![TaskIdentifier {
                task_arn: Some("t".into()),
                ..TaskIdentifier::default()
            }]),
        };
        assert_eq!(pending.confirmed(&ack("first")), None);
        assert_eq!(pending.confirmed(&ack("")), None);
        assert_eq!(pending.confirmed(&ack("second")), Some(vec!["t".into()]));
    }
}
