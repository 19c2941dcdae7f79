//! The credentials audit log (docs/endpoints.md §10): one line per
//! credentials request, and per throttled request, to stdout and a file.
//! Credentials IDs and keys never appear in it. The file rolls by size
//! when `ECS_LOG_ROLLOVER_TYPE=size`, otherwise hourly
//! ([`crate::logging::LogSettings::audit_rollover`]).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Mutex;

use crate::logging::{RollingFile, Rollover};

/// Where audit lines go.
pub struct AuditLog {
    file: Option<Mutex<RollingFile>>,
    to_stdout: bool,
    cluster: String,
    instance_arn: String,
}

/// One audited request.
pub struct AuditEntry<'a> {
    pub status: u16,
    pub peer: SocketAddr,
    /// The URL path, already stripped of any credentials ID.
    pub path: &'a str,
    pub user_agent: &'a str,
    /// Task ARN and event type; `None` when the role is not known (errors
    /// and throttled requests).
    pub subject: Option<(&'a str, &'static str)>,
    pub at_ms: i64,
}

fn or_dash(text: &str) -> &str {
    if text.is_empty() {
        "-"
    } else {
        text
    }
}

impl AuditLog {
    /// `file` `None` means `ECS_AUDIT_LOGFILE_DISABLED=true`.
    pub fn new(
        file: Option<PathBuf>,
        rollover: Rollover,
        max_rolls: usize,
        cluster: &str,
        instance_arn: &str,
    ) -> Self {
        let file = file.and_then(|path| match RollingFile::open(path.clone(), rollover, max_rolls) {
            Ok(f) => Some(Mutex::new(f)),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot open the credentials audit log");
                None
            }
        });
        let enabled = file.is_some();
        Self {
            file,
            to_stdout: enabled,
            cluster: cluster.to_string(),
            instance_arn: instance_arn.to_string(),
        }
    }

    /// A log that writes nowhere (tests).
    pub fn disabled() -> Self {
        Self {
            file: None,
            to_stdout: false,
            cluster: String::new(),
            instance_arn: String::new(),
        }
    }

    /// The line for one entry (log format version 2).
    pub fn line(&self, entry: &AuditEntry<'_>) -> String {
        let time = super::json::go_time(entry.at_ms - entry.at_ms.rem_euclid(1000));
        let common = format!(
            "{time} {} {} \"{}\" \"{}\"",
            entry.status,
            entry.peer,
            or_dash(entry.path),
            or_dash(entry.user_agent),
        );
        match entry.subject {
            Some((task_arn, event)) => format!(
                "{common} {} {event} 2 {} {}",
                or_dash(task_arn),
                or_dash(&self.cluster),
                or_dash(&self.instance_arn)
            ),
            // The Go agent's line for an unknown role stops after the ARN.
            None => format!("{common} - "),
        }
    }

    pub fn record(&self, entry: &AuditEntry<'_>) {
        if self.file.is_none() {
            return;
        }
        let line = self.line(entry);
        if self.to_stdout {
            println!("{line}");
        }
        if let Some(file) = &self.file {
            let mut file = file
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // One write per line, so a roll never splits a line from its
            // newline.
            if let Err(e) = file.write_all(format!("{line}\n").as_bytes()) {
                tracing::warn!(error = %e, "writing the credentials audit log failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_match_the_documented_format() {
        let log = AuditLog {
            file: None,
            to_stdout: false,
            cluster: "default".into(),
            instance_arn: "arn:aws:ecs:us-west-2:111122223333:container-instance/default/4f1e"
                .into(),
        };
        let ok = AuditEntry {
            status: 200,
            peer: "172.17.0.3:40312"
                .parse()
                .unwrap_or_else(|_| unreachable!()),
            path: "/v2/credentials",
            user_agent: "aws-sdk-go-v2/1.25.0",
            subject: Some((
                "arn:aws:ecs:us-west-2:111122223333:task/default/0a1b",
                "GetCredentials",
            )),
            at_ms: 1_709_294_400_250,
        };
        assert_eq!(
            log.line(&ok),
            "2024-03-01T12:00:00Z 200 172.17.0.3:40312 \"/v2/credentials\" \"aws-sdk-go-v2/1.25.0\" arn:aws:ecs:us-west-2:111122223333:task/default/0a1b GetCredentials 2 default arn:aws:ecs:us-west-2:111122223333:container-instance/default/4f1e"
        );
        let refused = AuditEntry {
            status: 400,
            user_agent: "",
            subject: None,
            ..ok
        };
        assert_eq!(
            log.line(&refused),
            "2024-03-01T12:00:00Z 400 172.17.0.3:40312 \"/v2/credentials\" \"-\" - "
        );
    }

    #[test]
    fn the_file_is_appended_to_and_rolls_whole_lines() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("audit.log");
        let read = |name: &str| {
            std::fs::read_to_string(dir.path().join(name)).unwrap_or_else(|e| panic!("{e}"))
        };
        let entry = AuditEntry {
            status: 200,
            peer: "172.17.0.3:40312"
                .parse()
                .unwrap_or_else(|_| unreachable!()),
            path: "/v2/credentials",
            user_agent: "curl",
            subject: Some((
                "arn:aws:ecs:us-west-2:1:task/default/0a1b",
                "GetCredentials",
            )),
            at_ms: 1_709_294_400_000,
        };
        // Hourly (any rollover type but `size`): an earlier run's lines stay.
        std::fs::write(&path, "old\n").unwrap_or_else(|e| panic!("{e}"));
        let log = AuditLog::new(Some(path.clone()), Rollover::Hourly, 24, "default", "ci");
        log.record(&entry);
        let line = log.line(&entry);
        assert_eq!(read("audit.log"), format!("old\n{line}\n"));
        // By size, with room for one line without its newline: every file
        // still holds whole lines.
        let max_bytes = line.len() as u64;
        let log = AuditLog::new(Some(path), Rollover::Size { max_bytes }, 2, "default", "ci");
        log.record(&entry);
        log.record(&entry);
        assert_eq!(read("audit.log"), format!("{line}\n"));
        assert_eq!(read("audit.log.2"), format!("{line}\n"));
        assert_eq!(read("audit.log.1"), format!("old\n{line}\n"));
        assert!(!dir.path().join("audit.log.3").exists());
    }
}
