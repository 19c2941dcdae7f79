//! Task IAM role credentials: what the plane issues for a task's role
//! (`taskRoleArn`) and execution role (`executionRoleArn`), how long they
//! live, and when they are refreshed.
//!
//! * Each role of a task gets one credential set when the task is placed:
//!   `credentialsId` is a random UUID v4 (122 random bits, unguessable, since
//!   the agent's credentials endpoint hands the keys to anyone who knows the
//!   id), `accessKeyId` is `ASIA` plus 16 random upper-case letters and
//!   digits, `secretAccessKey` 40 random characters, `sessionToken` a random
//!   base64-alphabet string, and `expiration` RFC 3339 UTC without fractional
//!   seconds. Nothing checks these keys: they only let SDKs inside tasks
//!   run their credential chain as on AWS.
//! * They live one hour by default. The environment variable
//!   [`TTL_ENV`] (`ECS_LOCAL_CREDENTIALS_TTL`, whole seconds, 1 to 43200)
//!   changes that, for example to watch refreshes in tests.
//! * At half their lifetime they are refreshed: new keys and a new
//!   expiration under the **same** `credentialsId` (containers keep the id
//!   they were started with in `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`, so
//!   the agent must serve the new keys under it), pushed to the task's agent
//!   as an `IAMRoleCredentialsMessage`. Refreshing stops once the task is
//!   STOPPED.
//! * The sets are kept with their task in the state database, so a
//!   restarted plane keeps serving and refreshing the same ids. The
//!   database file therefore holds secrets and has mode 0600.
//! * The ECS API never returns secrets; `GET /_local/v1/task-credentials`
//!   (see [`crate::local_api`]) shows what was issued.

use crate::clock;
use ecs_model::acs::IAMRoleCredentials;
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Environment variable with the credentials lifetime in seconds.
pub const TTL_ENV: &str = "ECS_LOCAL_CREDENTIALS_TTL";

/// Lifetime of issued credentials unless [`TTL_ENV`] says otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);

/// Longest lifetime accepted (the longest an IAM role session can last).
pub const MAX_TTL_SECS: u64 = 43_200;

const UPPER_ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const BASE64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Length of the random session token.
const SESSION_TOKEN_LEN: usize = 320;

/// The lifetime from the value of [`TTL_ENV`] (unset or empty: the
/// default).
pub fn ttl_from(value: Option<&str>) -> Result<Duration, String> {
    let Some(text) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(DEFAULT_TTL);
    };
    match text.parse::<u64>() {
        Ok(secs) if (1..=MAX_TTL_SECS).contains(&secs) => Ok(Duration::from_secs(secs)),
        _ => Err(format!(
            "invalid {TTL_ENV} {text:?}: expected whole seconds between 1 and {MAX_TTL_SECS}"
        )),
    }
}

/// Which role of a task a credential set is for; the `roleType` of an
/// `IAMRoleCredentialsMessage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum RoleType {
    /// The task role (`taskRoleArn`), served to the task's containers.
    TaskApplication,
    /// The execution role (`executionRoleArn`), used by the agent itself.
    TaskExecution,
}

impl RoleType {
    pub fn as_str(self) -> &'static str {
        match self {
            RoleType::TaskApplication => "TaskApplication",
            RoleType::TaskExecution => "TaskExecution",
        }
    }
}

/// One credential set as the plane keeps it. `Debug` does not show the
/// secret key or the session token (see [`IAMRoleCredentials`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IssuedCredentials {
    /// What goes on the wire.
    pub credentials: IAMRoleCredentials,
    /// When the current keys were minted (epoch seconds).
    pub issued_at: f64,
    /// When they expire (epoch seconds; `expiration` is this in RFC 3339,
    /// rounded down to the second).
    pub expires_at: f64,
    /// The agent acked exactly these keys (same `credentialsId` and
    /// `expiration`).
    #[serde(default)]
    pub acked: bool,
}

fn random_string(alphabet: &[u8], len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(alphabet[rng.random_range(0..alphabet.len())]))
        .collect()
}

/// A fresh, unguessable credentials id.
pub fn new_credentials_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl IssuedCredentials {
    /// New credentials for `role_arn`, valid for `ttl` from `now`.
    pub fn mint(role_arn: &str, now: f64, ttl: Duration) -> Self {
        let mut issued = Self {
            credentials: IAMRoleCredentials {
                credentials_id: Some(new_credentials_id()),
                role_arn: Some(role_arn.to_owned()),
                ..IAMRoleCredentials::default()
            },
            issued_at: now,
            expires_at: now,
            acked: false,
        };
        issued.rotate(now, ttl);
        issued
    }

    /// New keys and expiration under the same `credentialsId`; not acked.
    pub fn rotate(&mut self, now: f64, ttl: Duration) {
        let expires_at = now + ttl.as_secs_f64();
        let c = &mut self.credentials;
        c.access_key_id = Some(format!("ASIA{}", random_string(UPPER_ALNUM, 16)));
        c.secret_access_key = Some(random_string(BASE64, 40));
        c.session_token = Some(random_string(BASE64, SESSION_TOKEN_LEN));
        c.expiration = Some(clock::rfc3339(expires_at.floor() as i64));
        self.issued_at = now;
        self.expires_at = expires_at;
        self.acked = false;
    }

    /// When these keys are due for a refresh: half-way through their life.
    pub fn refresh_at(&self) -> f64 {
        self.issued_at + (self.expires_at - self.issued_at) / 2.0
    }

    pub fn refresh_due(&self, now: f64) -> bool {
        now >= self.refresh_at()
    }

    pub fn credentials_id(&self) -> &str {
        self.credentials
            .credentials_id
            .as_deref()
            .unwrap_or_default()
    }

    /// Whether an ack names these exact keys.
    pub fn matches_ack(&self, credentials_id: &str, expiration: &str) -> bool {
        self.credentials_id() == credentials_id
            && self.credentials.expiration.as_deref() == Some(expiration)
    }
}

/// How often the plane looks for credentials due for a refresh: a tenth of
/// the lifetime, between 100 ms and 30 s.
pub fn refresh_tick(ttl: Duration) -> Duration {
    (ttl / 10).clamp(Duration::from_millis(100), Duration::from_secs(30))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::collections::HashSet;

    const ROLE: &str = "arn:aws:iam::000000000000:role/web";

    #[test]
    fn minted_credentials_have_the_aws_shapes() {
        let now = 1_795_828_720.25;
        let issued = IssuedCredentials::mint(ROLE, now, DEFAULT_TTL);
        let c = &issued.credentials;
        assert_eq!(c.role_arn.as_deref(), Some(ROLE));
        let id = c.credentials_id.as_deref().unwrap();
        let parsed = uuid::Uuid::parse_str(id).unwrap();
        assert_eq!(parsed.get_version_num(), 4);
        assert_eq!(id, parsed.hyphenated().to_string());
        let key = c.access_key_id.as_deref().unwrap();
        assert_eq!(key.len(), 20);
        assert!(key.starts_with("ASIA"));
        assert!(key[4..]
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()));
        let secret = c.secret_access_key.as_deref().unwrap();
        assert_eq!(secret.len(), 40);
        assert!(secret.bytes().all(|b| BASE64.contains(&b)));
        let token = c.session_token.as_deref().unwrap();
        assert!(token.len() >= 100);
        assert!(token.bytes().all(|b| BASE64.contains(&b)));
        // One hour later, whole seconds, UTC.
        assert_eq!(c.expiration.as_deref(), Some("2026-11-28T02:18:40Z"));
        assert_eq!(issued.expires_at, now + 3600.0);
        assert!(!issued.acked);
        assert_eq!(c.credential_scope, None);
    }

    #[test]
    fn every_minted_value_is_unique() {
        let mut seen = HashSet::new();
        for _ in 0..200 {
            let c = IssuedCredentials::mint(ROLE, 0.0, DEFAULT_TTL).credentials;
            for value in [
                c.credentials_id,
                c.access_key_id,
                c.secret_access_key,
                c.session_token,
            ] {
                assert!(seen.insert(value.unwrap()), "a minted value repeated");
            }
        }
    }

    #[test]
    fn rotation_keeps_the_id_and_changes_the_keys() {
        let mut issued = IssuedCredentials::mint(ROLE, 1000.0, Duration::from_secs(600));
        issued.acked = true;
        let before = issued.clone();
        assert_eq!(issued.refresh_at(), 1300.0);
        assert!(!issued.refresh_due(1299.9));
        assert!(issued.refresh_due(1300.0));
        issued.rotate(1300.0, Duration::from_secs(600));
        assert_eq!(issued.credentials_id(), before.credentials_id());
        assert_eq!(issued.credentials.role_arn, before.credentials.role_arn);
        assert_ne!(
            issued.credentials.access_key_id,
            before.credentials.access_key_id
        );
        assert_ne!(
            issued.credentials.secret_access_key,
            before.credentials.secret_access_key
        );
        assert_ne!(
            issued.credentials.session_token,
            before.credentials.session_token
        );
        assert_eq!(
            issued.credentials.expiration.as_deref(),
            Some("1970-01-01T00:31:40Z")
        );
        assert!(!issued.acked);
        assert_eq!(issued.refresh_at(), 1600.0);
        let expiration = issued.credentials.expiration.clone().unwrap();
        assert!(issued.matches_ack(before.credentials_id(), &expiration));
        assert!(!issued.matches_ack(
            before.credentials_id(),
            before.credentials.expiration.as_deref().unwrap()
        ));
    }

    #[test]
    fn debug_output_hides_the_secrets() {
        let issued = IssuedCredentials::mint(ROLE, 0.0, DEFAULT_TTL);
        let text = format!("{issued:?}");
        assert!(!text.contains(issued.credentials.secret_access_key.as_deref().unwrap()));
        assert!(!text.contains(issued.credentials.session_token.as_deref().unwrap()));
        assert!(text.contains(issued.credentials_id()));
    }

    #[test]
    fn lifetime_comes_from_the_environment_value() {
        assert_eq!(ttl_from(None), Ok(DEFAULT_TTL));
        assert_eq!(ttl_from(Some(" ")), Ok(DEFAULT_TTL));
        assert_eq!(ttl_from(Some("4")), Ok(Duration::from_secs(4)));
        assert_eq!(ttl_from(Some("43200")), Ok(Duration::from_secs(43_200)));
        for bad in ["0", "-5", "1.5", "43201", "soon"] {
            let err = ttl_from(Some(bad)).unwrap_err();
            assert!(err.contains(TTL_ENV) && err.contains(bad), "{err}");
        }
        assert_eq!(refresh_tick(DEFAULT_TTL), Duration::from_secs(30));
        assert_eq!(
            refresh_tick(Duration::from_secs(2)),
            Duration::from_millis(200)
        );
        assert_eq!(
            refresh_tick(Duration::from_secs(1)),
            Duration::from_millis(100)
        );
    }
}
