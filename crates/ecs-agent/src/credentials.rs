//! Task IAM role credentials as ACS delivers them, kept in memory only and
//! served by the credentials endpoint (docs/endpoints.md §7,
//! docs/protocols.md §4.7). The IDs come from the backend; the agent never
//! makes one up.

use std::collections::HashMap;
use std::sync::Mutex;

use ecs_model::acs::{self, IAMRoleCredentials, IAMRoleCredentialsAckRequest};

/// Which role a credential set belongs to; decides the audit event and
/// when the set is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RoleType {
    /// The task role, injected into containers; dropped when the task stops.
    TaskApplication,
    /// The execution role, used by the agent and log drivers; dropped at
    /// task cleanup.
    TaskExecution,
}

impl RoleType {
    pub fn parse(text: &str) -> Option<RoleType> {
        match text {
            "TaskApplication" => Some(RoleType::TaskApplication),
            "TaskExecution" => Some(RoleType::TaskExecution),
            _ => None,
        }
    }

    /// The audit log's event type.
    pub fn audit_event(self) -> &'static str {
        match self {
            RoleType::TaskApplication => "GetCredentials",
            RoleType::TaskExecution => "GetCredentialsExecutionRole",
        }
    }
}

/// One served credential set. `Debug` leaves the secrets out.
#[derive(Clone, PartialEq, Eq)]
pub struct RoleCredentials {
    pub role_arn: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
    /// Opaque: served exactly as the backend sent it.
    pub expiration: String,
}

impl std::fmt::Debug for RoleCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoleCredentials")
            .field("role_arn", &self.role_arn)
            .field("expiration", &self.expiration)
            .finish_non_exhaustive()
    }
}

/// Why a credential set from ACS was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    #[error("credentials without a credentialsId")]
    MissingId,
}

impl RoleCredentials {
    /// Splits an ACS credential set into its ID and what is served.
    pub fn from_acs(
        creds: &IAMRoleCredentials,
    ) -> Result<(String, RoleCredentials), CredentialsError> {
        let id = creds
            .credentials_id
            .clone()
            .filter(|id| !id.is_empty())
            .ok_or(CredentialsError::MissingId)?;
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        Ok((
            id,
            RoleCredentials {
                role_arn: text(&creds.role_arn),
                access_key_id: text(&creds.access_key_id),
                secret_access_key: text(&creds.secret_access_key),
                session_token: text(&creds.session_token),
                expiration: text(&creds.expiration),
            },
        ))
    }
}

/// Whether this instance runs tasks with a task role at all
/// (`ECS_ENABLE_TASK_IAM_ROLE`), and in host network mode
/// (`ECS_ENABLE_TASK_IAM_ROLE_NETWORK_HOST`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RolePolicy {
    pub task_roles: bool,
    pub host_network: bool,
}

impl RolePolicy {
    /// Why this instance refuses the task, if it does. The backend only
    /// places such tasks on instances that advertise the capability, so a
    /// refusal means the two disagree.
    pub fn refusal(&self, task: &acs::Task) -> Option<String> {
        let has_role = task
            .role_credentials
            .as_ref()
            .and_then(|c| c.credentials_id.as_deref())
            .is_some_and(|id| !id.is_empty());
        if !has_role {
            return None;
        }
        if !self.task_roles {
            return Some(
                "TaskIAMRoleError: the task has a task role, but ECS_ENABLE_TASK_IAM_ROLE is not true on this instance".into(),
            );
        }
        if task.network_mode.as_deref() == Some("host") && !self.host_network {
            return Some(
                "TaskIAMRoleError: the task uses host network mode with a task role, but ECS_ENABLE_TASK_IAM_ROLE_NETWORK_HOST is not true on this instance".into(),
            );
        }
        None
    }
}

/// Why an `IAMRoleCredentialsMessage` was not acked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefreshError {
    #[error("credentials message without {0}")]
    Missing(&'static str),
    #[error("credentials message with unknown roleType {0:?}")]
    RoleType(String),
}

impl CredentialsStore {
    /// Stores the credential sets a payload task carries; returns the acks
    /// to send once the task is accepted (docs/protocols.md §4.5).
    pub fn take_from_payload(
        &self,
        task: &acs::Task,
        message_id: &str,
    ) -> Vec<IAMRoleCredentialsAckRequest> {
        let Some(task_arn) = task.arn.as_deref() else {
            return Vec::new();
        };
        let sets = [
            (RoleType::TaskApplication, task.role_credentials.as_ref()),
            (
                RoleType::TaskExecution,
                task.execution_role_credentials.as_ref(),
            ),
        ];
        let mut acks = Vec::new();
        for (role_type, creds) in sets {
            let Some(creds) = creds else { continue };
            match RoleCredentials::from_acs(creds) {
                Ok((id, credentials)) => {
                    let expiration = credentials.expiration.clone();
                    self.set(&id, task_arn, role_type, credentials);
                    acks.push(IAMRoleCredentialsAckRequest {
                        message_id: Some(message_id.to_string()),
                        credentials_id: Some(id),
                        expiration: Some(expiration),
                    });
                }
                Err(e) => tracing::warn!(task = task_arn, error = %e, "ignoring task credentials"),
            }
        }
        acks
    }

    /// Stores a refresh; returns the task it is for and the ack to send if
    /// that task is known.
    pub fn take_refresh(
        &self,
        message: &acs::IAMRoleCredentialsMessage,
    ) -> Result<(String, IAMRoleCredentialsAckRequest), RefreshError> {
        let present = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        let message_id = present(&message.message_id).ok_or(RefreshError::Missing("messageId"))?;
        let task_arn = present(&message.task_arn).ok_or(RefreshError::Missing("taskArn"))?;
        let creds = message
            .role_credentials
            .as_ref()
            .ok_or(RefreshError::Missing("roleCredentials"))?;
        let role_text = message.role_type.clone().unwrap_or_default();
        let role_type = RoleType::parse(&role_text).ok_or(RefreshError::RoleType(role_text))?;
        let (id, credentials) =
            RoleCredentials::from_acs(creds).map_err(|_| RefreshError::Missing("credentialsId"))?;
        let expiration = credentials.expiration.clone();
        self.set(&id, &task_arn, role_type, credentials);
        Ok((
            task_arn,
            IAMRoleCredentialsAckRequest {
                message_id: Some(message_id),
                credentials_id: Some(id),
                expiration: Some(expiration),
            },
        ))
    }
}

/// What a lookup by ID finds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Unknown,
    /// Known from the saved state, but ACS has not re-sent the credentials
    /// since this process started.
    Pending,
    Ready {
        task_arn: String,
        role_type: RoleType,
        credentials: RoleCredentials,
    },
}

#[derive(Debug, Clone)]
struct Entry {
    task_arn: String,
    role_type: RoleType,
    credentials: Option<RoleCredentials>,
}

/// Every credential set the agent holds, by credentials ID.
#[derive(Debug, Default)]
pub struct CredentialsStore {
    entries: Mutex<HashMap<String, Entry>>,
}

impl CredentialsStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// An ID from the saved state whose credentials ACS will send again.
    pub fn expect(&self, id: &str, task_arn: &str, role_type: RoleType) {
        self.entries()
            .entry(id.to_string())
            .or_insert_with(|| Entry {
                task_arn: task_arn.to_string(),
                role_type,
                credentials: None,
            });
    }

    /// Stores a set under its ID. Older IDs of the same task and role get
    /// the new keys too: containers keep the URI they were started with.
    pub fn set(&self, id: &str, task_arn: &str, role_type: RoleType, credentials: RoleCredentials) {
        let mut entries = self.entries();
        for entry in entries.values_mut() {
            if entry.task_arn == task_arn && entry.role_type == role_type {
                entry.credentials = Some(credentials.clone());
            }
        }
        entries.insert(
            id.to_string(),
            Entry {
                task_arn: task_arn.to_string(),
                role_type,
                credentials: Some(credentials),
            },
        );
    }

    pub fn lookup(&self, id: &str) -> Lookup {
        match self.entries().get(id) {
            None => Lookup::Unknown,
            Some(Entry {
                credentials: None, ..
            }) => Lookup::Pending,
            Some(Entry {
                task_arn,
                role_type,
                credentials: Some(credentials),
            }) => Lookup::Ready {
                task_arn: task_arn.clone(),
                role_type: *role_type,
                credentials: credentials.clone(),
            },
        }
    }

    /// Drops every set of one role of a task.
    pub fn remove(&self, task_arn: &str, role_type: RoleType) {
        self.entries()
            .retain(|_, e| !(e.task_arn == task_arn && e.role_type == role_type));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn creds(key: &str) -> RoleCredentials {
        RoleCredentials {
            role_arn: "arn:aws:iam::1:role/r".into(),
            access_key_id: key.into(),
            secret_access_key: "secret".into(),
            session_token: "token".into(),
            expiration: "2026-11-28T02:18:40Z".into(),
        }
    }

    #[test]
    fn pending_until_acs_sends_then_ready_then_gone() {
        let store = CredentialsStore::new();
        assert_eq!(store.lookup("id-1"), Lookup::Unknown);
        store.expect("id-1", "task-a", RoleType::TaskApplication);
        assert_eq!(store.lookup("id-1"), Lookup::Pending);
        store.set("id-1", "task-a", RoleType::TaskApplication, creds("AK1"));
        let Lookup::Ready { credentials, .. } = store.lookup("id-1") else {
            panic!("not ready")
        };
        assert_eq!(credentials.access_key_id, "AK1");
        store.remove("task-a", RoleType::TaskApplication);
        assert_eq!(store.lookup("id-1"), Lookup::Unknown);
    }

    #[test]
    fn a_refresh_under_a_new_id_updates_the_old_one_and_roles_stay_apart() {
        let store = CredentialsStore::new();
        store.set("old", "task-a", RoleType::TaskApplication, creds("AK1"));
        store.set("exec", "task-a", RoleType::TaskExecution, creds("EX1"));
        store.set("new", "task-a", RoleType::TaskApplication, creds("AK2"));
        for id in ["old", "new"] {
            let Lookup::Ready { credentials, .. } = store.lookup(id) else {
                panic!("{id} not ready")
            };
            assert_eq!(credentials.access_key_id, "AK2");
        }
        store.remove("task-a", RoleType::TaskApplication);
        assert_eq!(store.lookup("new"), Lookup::Unknown);
        assert!(matches!(store.lookup("exec"), Lookup::Ready { .. }));
    }

    #[test]
    fn the_recorded_refresh_is_stored_and_acked_like_the_go_agent() {
        let Some(dir) = ecs_model::spec::require_or_skip("credentials refresh sample") else {
            return;
        };
        let text = std::fs::read_to_string(dir.join("samples/acs-credentials.json")).unwrap();
        let acs::AcsMessage::IAMRoleCredentialsMessage(message) =
            acs::AcsMessage::decode(&text).unwrap()
        else {
            panic!("not a credentials message")
        };
        let store = CredentialsStore::new();
        let (task_arn, ack) = store.take_refresh(&message).unwrap();
        assert_eq!(task_arn, message.task_arn.clone().unwrap());
        let expected =
            std::fs::read_to_string(dir.join("samples/acs-credentials-ack.json")).unwrap();
        assert_eq!(
            acs::AcsMessage::IAMRoleCredentialsAckRequest(ack).encode(),
            expected.trim()
        );
        let Lookup::Ready {
            credentials,
            role_type,
            ..
        } = store.lookup("0c0ffee0-0002-4000-8000-00000000c0de")
        else {
            panic!("not stored")
        };
        assert_eq!(role_type, RoleType::TaskApplication);
        assert_eq!(credentials.access_key_id, "ASIAFAKEROLEKEY00002");

        let mut bad = message.clone();
        bad.role_type = Some("Other".into());
        assert!(matches!(
            store.take_refresh(&bad),
            Err(RefreshError::RoleType(_))
        ));
        bad = message;
        bad.message_id = None;
        assert_eq!(
            store.take_refresh(&bad),
            Err(RefreshError::Missing("messageId"))
        );
    }

    #[test]
    fn payload_credentials_give_one_ack_per_role_with_the_payload_id() {
        let task: acs::Task = serde_json::from_value(serde_json::json!({
            "arn": "arn:aws:ecs:us-east-1:1:task/default/abc",
            "roleCredentials": {"credentialsId": "r1", "expiration": "E1", "accessKeyId": "A"},
            "executionRoleCredentials": {"credentialsId": "x1", "expiration": "E2"}
        }))
        .unwrap();
        let store = CredentialsStore::new();
        let acks = store.take_from_payload(&task, "payload-7");
        let ids: Vec<_> = acks
            .iter()
            .map(|a| {
                (
                    a.message_id.as_deref(),
                    a.credentials_id.as_deref(),
                    a.expiration.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            ids,
            [
                (Some("payload-7"), Some("r1"), Some("E1")),
                (Some("payload-7"), Some("x1"), Some("E2"))
            ]
        );
        assert!(matches!(
            store.lookup("x1"),
            Lookup::Ready {
                role_type: RoleType::TaskExecution,
                ..
            }
        ));
    }

    #[test]
    fn role_policy_refuses_roles_when_disabled_and_host_mode_without_the_option() {
        let task = |mode: &str| -> acs::Task {
            serde_json::from_value(serde_json::json!({
                "arn": "a", "networkMode": mode,
                "roleCredentials": {"credentialsId": "r1"}
            }))
            .unwrap()
        };
        let all = RolePolicy {
            task_roles: true,
            host_network: true,
        };
        let bridge_only = RolePolicy {
            task_roles: true,
            host_network: false,
        };
        let none = RolePolicy {
            task_roles: false,
            host_network: false,
        };
        assert_eq!(all.refusal(&task("host")), None);
        assert_eq!(bridge_only.refusal(&task("bridge")), None);
        assert!(bridge_only
            .refusal(&task("host"))
            .unwrap()
            .contains("ECS_ENABLE_TASK_IAM_ROLE_NETWORK_HOST"));
        assert!(none
            .refusal(&task("bridge"))
            .unwrap()
            .contains("ECS_ENABLE_TASK_IAM_ROLE "));
        let no_role: acs::Task =
            serde_json::from_value(serde_json::json!({"arn": "a", "networkMode": "host"})).unwrap();
        assert_eq!(none.refusal(&no_role), None);
    }

    #[test]
    fn debug_hides_secrets() {
        let text = format!("{:?}", creds("AKIDSHOWN"));
        assert!(!text.contains("secret") && !text.contains("token") && !text.contains("AKIDSHOWN"));
    }
}
