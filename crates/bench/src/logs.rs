//! The agent's JSON log (`ECS_LOG_OUTPUT_FORMAT=json`): one object per
//! line, `{"level":…,"time":…,"msg":…, fields…}`, where fields the agent
//! records as numbers may come as strings. Its `time` has whole seconds
//! only, so when a line appeared is taken from [`LogTail`], which reads the
//! file every few milliseconds and notes when each line showed up.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde_json::Value;

/// The `msg` of a log line.
pub fn msg(line: &Value) -> &str {
    line.get("msg").and_then(Value::as_str).unwrap_or_default()
}

/// A string field of a log line.
pub fn field_str<'a>(line: &'a Value, key: &str) -> Option<&'a str> {
    line.get(key).and_then(Value::as_str)
}

/// An integer field of a log line, written as a number or as a string.
pub fn field_u64(line: &Value, key: &str) -> Option<u64> {
    match line.get(key)? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Every JSON object line of a log text; other lines are skipped.
pub fn parse_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .filter(Value::is_object)
        .collect()
}

/// The agent's `task launch timings` line, message and fields.
pub const TIMINGS_MSG: &str = "task launch timings";

/// The phases of the timings line in order: field, and what it covers.
pub const PHASES: [(&str, &str); 7] = [
    (
        "payload_ms",
        "payload handling: ACS frame read → engine accepted",
    ),
    (
        "save_ms",
        "first state save: accepted → first save committed",
    ),
    ("pull_ms", "pull decision: → image ready"),
    ("create_ms", "create: → container created"),
    ("start_ms", "start: → container started"),
    ("running_ms", "state save: → known RUNNING (saved)"),
    ("report_ms", "report: → RUNNING report queued"),
];

/// One `task launch timings` line.
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchTimings {
    pub task: String,
    /// Milliseconds per field of [`PHASES`] that the line had.
    pub phases: BTreeMap<&'static str, u64>,
    pub total_ms: Option<u64>,
}

impl LaunchTimings {
    pub fn from_line(line: &Value) -> Option<LaunchTimings> {
        if msg(line) != TIMINGS_MSG {
            return None;
        }
        let task = field_str(line, "task")?.to_string();
        let phases = PHASES
            .iter()
            .filter_map(|(key, _)| Some((*key, field_u64(line, key)?)))
            .collect();
        Some(LaunchTimings {
            task,
            phases,
            total_ms: field_u64(line, "total_ms"),
        })
    }
}

/// Is this the reporter's line for `task` reaching `status`?
pub fn is_reported(line: &Value, task: &str, status: &str) -> bool {
    msg(line) == "reported task state"
        && field_str(line, "task") == Some(task)
        && field_str(line, "status") == Some(status)
}

/// A log line and when the tail first saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Instant,
    pub line: Value,
}

/// Follows a log file from an offset in a thread, polling every `every`,
/// and keeps every JSON line with the moment it was first read.
pub struct LogTail {
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl LogTail {
    pub fn start(path: &Path, offset: u64, every: Duration) -> LogTail {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (seen, stop, path) = (seen.clone(), stop.clone(), path.to_path_buf());
            std::thread::spawn(move || follow(&path, offset, every, &seen, &stop))
        };
        LogTail {
            seen,
            stop,
            thread: Some(thread),
        }
    }

    /// The first line seen that matches, and when.
    pub fn first(&self, matches: impl Fn(&Value) -> bool) -> Option<Seen> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|s| matches(&s.line))
            .cloned()
    }

    /// Waits (polling every millisecond) for the first line that matches.
    pub async fn wait(
        &self,
        what: &str,
        timeout: Duration,
        matches: impl Fn(&Value) -> bool,
    ) -> Result<Seen> {
        let start = Instant::now();
        loop {
            if let Some(s) = self.first(&matches) {
                return Ok(s);
            }
            if start.elapsed() > timeout {
                bail!("timed out after {timeout:?} waiting for the agent to log {what}");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

impl Drop for LogTail {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn follow(
    path: &PathBuf,
    offset: u64,
    every: Duration,
    seen: &Mutex<Vec<Seen>>,
    stop: &AtomicBool,
) {
    let mut file = None;
    let mut pending = Vec::new();
    let mut chunk = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        if file.is_none() {
            file = std::fs::File::open(path)
                .and_then(|mut f| f.seek(SeekFrom::Start(offset)).map(|_| f))
                .ok();
        }
        if let Some(f) = file.as_mut() {
            chunk.clear();
            if f.read_to_end(&mut chunk).is_ok() && !chunk.is_empty() {
                let at = Instant::now();
                pending.extend_from_slice(&chunk);
                let mut new = Vec::new();
                while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=end).collect();
                    if let Ok(v) = serde_json::from_slice::<Value>(&line) {
                        if v.is_object() {
                            new.push(Seen { at, line: v });
                        }
                    }
                }
                seen.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .extend(new);
            }
        }
        std::thread::sleep(every);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const LOG: &str = r#"{"level":"info","time":"2026-01-02T03:04:05Z","msg":"connected to ACS","endpoint":"ws://127.0.0.1:1/"}
level=info time=2026-01-02T03:04:05Z msg="not json"
{"level":"info","time":"2026-01-02T03:04:06Z","msg":"task launch timings","task":"arn:aws:ecs:us-east-1:1:task/c/abc","payload_ms":"2","save_ms":"3","pull_ms":"0","create_ms":"41","start_ms":"50","running_ms":"4","report_ms":"1","saving_ms":"5","total_ms":"101"}
{"level":"info","time":"2026-01-02T03:04:06Z","msg":"task launch timings","task":"t2","payload_ms":1,"create_ms":7,"total_ms":9}
{"level":"info","time":"2026-01-02T03:04:06Z","msg":"reported task state","task":"arn:aws:ecs:us-east-1:1:task/c/abc","status":"RUNNING"}
"#;

    #[test]
    fn timings_lines_with_string_or_number_fields() {
        let lines = parse_lines(LOG);
        assert_eq!(lines.len(), 4, "the logfmt line is skipped");
        let timings: Vec<_> = lines.iter().filter_map(LaunchTimings::from_line).collect();
        assert_eq!(timings.len(), 2);
        let t = &timings[0];
        assert_eq!(t.task, "arn:aws:ecs:us-east-1:1:task/c/abc");
        assert_eq!(t.phases.len(), PHASES.len());
        assert_eq!(t.phases["create_ms"], 41);
        assert_eq!(t.phases["pull_ms"], 0);
        assert_eq!(t.total_ms, Some(101));
        let sum: u64 = t.phases.values().sum();
        assert_eq!(sum, 101, "the phases add up to the total");
        let t2 = &timings[1];
        assert_eq!(t2.phases.get("create_ms"), Some(&7));
        assert_eq!(
            t2.phases.get("start_ms"),
            None,
            "missing fields are left out"
        );
        assert_eq!(t2.total_ms, Some(9));
    }

    #[test]
    fn reported_lines_by_task_and_status() {
        let lines = parse_lines(LOG);
        let task = "arn:aws:ecs:us-east-1:1:task/c/abc";
        assert!(lines.iter().any(|l| is_reported(l, task, "RUNNING")));
        assert!(!lines.iter().any(|l| is_reported(l, task, "STOPPED")));
        assert!(!lines.iter().any(|l| is_reported(l, "t2", "RUNNING")));
        assert_eq!(msg(&lines[0]), "connected to ACS");
        assert_eq!(field_u64(&lines[0], "endpoint"), None);
    }

    #[tokio::test]
    async fn the_tail_sees_lines_appended_after_the_offset() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.log");
        std::fs::write(&path, "{\"msg\":\"before\"}\n").unwrap();
        let offset = std::fs::metadata(&path).unwrap().len();
        let tail = LogTail::start(&path, offset, Duration::from_millis(1));
        let mut f = std::fs::File::options().append(true).open(&path).unwrap();
        f.write_all(b"{\"msg\":\"half").unwrap();
        f.flush().unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(tail.first(|l| msg(l) == "half").is_none());
        f.write_all(b"\"}\n{\"msg\":\"after\"}\n").unwrap();
        let seen = tail
            .wait("after", Duration::from_secs(5), |l| msg(l) == "after")
            .await
            .unwrap();
        assert!(seen.at.elapsed() < Duration::from_secs(5));
        assert!(tail.first(|l| msg(l) == "before").is_none());
        assert!(
            tail.first(|l| msg(l) == "half").is_some(),
            "the line completed later"
        );
    }
}
