//! The agent's logs (docs/endpoints.md §3): a stdout sink and an
//! optional file sink (`ECS_LOGFILE`, rotated by size), each with its own
//! level, in `logfmt` (default) or `json`.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use crate::config::Env;
use crate::flags::Flags;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Logfmt,
    Json,
}

/// Where and how much to log, resolved from the environment and flags.
#[derive(Debug, Clone, PartialEq)]
pub struct LogSettings {
    pub stdout_level: LevelFilter,
    pub file_level: LevelFilter,
    pub file: Option<PathBuf>,
    pub format: Format,
    /// Bytes before the file rolls; `None` never rolls.
    pub max_file_bytes: Option<u64>,
    pub max_roll_count: usize,
    /// Problems found while resolving, logged once logging works.
    pub warnings: Vec<String>,
}

/// `debug`, `info`, `warn`, `error`, `crit`, `none`, any case.
pub fn parse_level(text: &str) -> Option<LevelFilter> {
    Some(match text.to_ascii_lowercase().as_str() {
        "debug" => LevelFilter::DEBUG,
        "info" => LevelFilter::INFO,
        "warn" => LevelFilter::WARN,
        "error" | "crit" => LevelFilter::ERROR,
        "none" | "off" => LevelFilter::OFF,
        _ => return None,
    })
}

impl LogSettings {
    /// Flags override the environment (the Go agent's real behaviour). A raw
    /// `ECS_LOGLEVEL` also sets the file level, mapped through the level
    /// table: unlike the Go agent, `crit` or `DEBUG` do not break logging.
    pub fn resolve(env: &Env, flags: &Flags) -> Self {
        let mut warnings = Vec::new();
        // `source` names the variable or flag, so a bad value is easy to find.
        let mut level = |text: Option<&str>, source: &str, current: LevelFilter| {
            match text {
            None => current,
            Some(t) => parse_level(t).unwrap_or_else(|| {
                warnings.push(format!(
                    "{source}: log level mapping not found for {t:?} (use debug, info, warn, error, crit or none)"
                ));
                current
            }),
        }
        };
        let env_level = env.get("ECS_LOGLEVEL");
        let mut stdout_level = level(env_level, "ECS_LOGLEVEL", LevelFilter::INFO);
        let mut file_level = if env.get("ECS_LOG_DRIVER").is_some() {
            LevelFilter::OFF
        } else {
            env_level.and_then(parse_level).unwrap_or(LevelFilter::INFO)
        };
        file_level = level(
            env.get("ECS_LOGLEVEL_ON_INSTANCE"),
            "ECS_LOGLEVEL_ON_INSTANCE",
            file_level,
        );
        if let Some(l) = flags.loglevel.as_deref().filter(|l| !l.is_empty()) {
            stdout_level = level(Some(l), "-loglevel", stdout_level);
            file_level = parse_level(l).unwrap_or(file_level);
        } else {
            stdout_level = level(
                flags.loglevel_driver.as_deref(),
                "-loglevel-driver",
                stdout_level,
            );
            file_level = level(
                flags.loglevel_on_instance.as_deref(),
                "-loglevel-on-instance",
                file_level,
            );
        }
        let format = match env.get("ECS_LOG_OUTPUT_FORMAT") {
            None | Some("logfmt") => Format::Logfmt,
            Some("json") => Format::Json,
            Some(other) => {
                warnings.push(format!(
                    "invalid ECS_LOG_OUTPUT_FORMAT {other:?}; using logfmt"
                ));
                Format::Logfmt
            }
        };
        let max_mb = match env.get("ECS_LOG_MAX_FILE_SIZE_MB").map(str::parse::<f64>) {
            None => 5.0,
            Some(Ok(v)) if v > 0.0 => v,
            Some(_) => {
                warnings.push("invalid ECS_LOG_MAX_FILE_SIZE_MB; using 5".into());
                5.0
            }
        };
        let max_roll_count = match env.get("ECS_LOG_MAX_ROLL_COUNT").map(str::parse::<usize>) {
            None => 24,
            Some(Ok(v)) => v,
            Some(Err(_)) => {
                warnings.push("invalid ECS_LOG_MAX_ROLL_COUNT; using 24".into());
                24
            }
        };
        let max_file_bytes = match env.get("ECS_LOG_ROLLOVER_TYPE") {
            Some("none") => None,
            Some("size") | None => Some((max_mb * 1_000_000.0) as u64),
            Some(other) => {
                warnings.push(format!(
                    "ECS_LOG_ROLLOVER_TYPE {other:?} is not supported by this agent; rolling by size"
                ));
                Some((max_mb * 1_000_000.0) as u64)
            }
        };
        Self {
            stdout_level,
            file_level,
            file: env.get("ECS_LOGFILE").map(PathBuf::from),
            format,
            max_file_bytes,
            max_roll_count,
            warnings,
        }
    }
}

/// The agent's own events at `level`; libraries (AWS SDK, HTTP, TLS)
/// never below info, so debug logs stay about the agent.
fn filter(level: LevelFilter) -> Targets {
    Targets::new()
        .with_default(level.min(LevelFilter::INFO))
        .with_target("ecs_agent", level)
}

/// Installs the global subscriber.
pub fn init(settings: &LogSettings) -> io::Result<()> {
    let stdout = tracing_subscriber::fmt::layer()
        .event_format(LineFormat(settings.format))
        .with_writer(io::stdout)
        .with_filter(filter(settings.stdout_level));
    let file = match &settings.file {
        Some(path) if settings.file_level != LevelFilter::OFF => Some(
            tracing_subscriber::fmt::layer()
                .event_format(LineFormat(settings.format))
                .with_writer(RollingFile::open(
                    path.clone(),
                    settings.max_file_bytes,
                    settings.max_roll_count,
                )?)
                .with_filter(filter(settings.file_level)),
        ),
        _ => None,
    };
    let subscriber = tracing_subscriber::registry().with(stdout).with(file);
    // A second init (tests) keeps the first subscriber.
    let _ = tracing::subscriber::set_global_default(subscriber);
    for w in &settings.warnings {
        tracing::warn!("{w}");
    }
    Ok(())
}

/// One line per event: `level=info time=… msg="…" key="value"` or JSON.
struct LineFormat(Format);

#[derive(Default)]
struct Fields {
    message: String,
    fields: Vec<(String, String, bool)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.fields
                .push((field.name().to_string(), value.to_string(), true));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.fields
                .push((field.name().to_string(), format!("{value:?}"), false));
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.fields
            .push((field.name().to_string(), value.to_string(), true));
    }
}

fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::TRACE => "trace",
        Level::DEBUG => "debug",
        Level::INFO => "info",
        Level::WARN => "warn",
        Level::ERROR => "error",
    }
}

fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl<S, N> FormatEvent<S, N> for LineFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let level = level_name(event.metadata().level());
        let time = now_rfc3339();
        let module = event.metadata().target();
        let mut line = String::new();
        match self.0 {
            Format::Logfmt => {
                write!(line, "level={level} time={time} msg={:?}", fields.message)?;
                if fields.fields.is_empty() {
                    write!(line, " module={module}")?;
                }
                for (k, v, quoted) in &fields.fields {
                    if *quoted {
                        write!(line, " {k}={v:?}")?;
                    } else {
                        write!(line, " {k}={v}")?;
                    }
                }
            }
            Format::Json => {
                let mut map = serde_json::Map::new();
                map.insert("level".into(), level.into());
                map.insert("time".into(), time.into());
                map.insert("msg".into(), fields.message.into());
                if fields.fields.is_empty() {
                    map.insert("module".into(), module.into());
                }
                for (k, v, _) in fields.fields {
                    map.insert(k, v.into());
                }
                line = serde_json::Value::Object(map).to_string();
            }
        }
        writeln!(writer, "{line}")
    }
}

/// A log file that rolls by size: `<file>.1`, `<file>.2`, … with the
/// highest number the newest, keeping at most `max_rolls` of them.
#[derive(Clone)]
pub(crate) struct RollingFile {
    inner: Arc<Mutex<RollingState>>,
}

struct RollingState {
    path: PathBuf,
    file: File,
    written: u64,
    max_bytes: Option<u64>,
    max_rolls: usize,
}

impl RollingFile {
    pub(crate) fn open(
        path: PathBuf,
        max_bytes: Option<u64>,
        max_rolls: usize,
    ) -> io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let written = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(Self {
            inner: Arc::new(Mutex::new(RollingState {
                path,
                file,
                written,
                max_bytes,
                max_rolls,
            })),
        })
    }
}

impl RollingState {
    fn rolled(&self, n: usize) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    fn roll(&mut self) -> io::Result<()> {
        let mut existing: Vec<usize> = (1..=10_000)
            .take_while(|n| self.rolled(*n).exists())
            .collect();
        let next = existing.len() + 1;
        std::fs::rename(&self.path, self.rolled(next))?;
        existing.push(next);
        // Drop the oldest and renumber, so the newest keeps the highest number.
        if existing.len() > self.max_rolls {
            let excess = existing.len() - self.max_rolls;
            for n in 1..=excess {
                let _ = std::fs::remove_file(self.rolled(n));
            }
            for n in (excess + 1)..=existing.len() {
                let _ = std::fs::rename(self.rolled(n), self.rolled(n - excess));
            }
        }
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.written = 0;
        Ok(())
    }
}

impl Write for RollingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut state = self
            .inner
            .lock()
            .map_err(|_| io::Error::other("log file lock poisoned"))?;
        if state
            .max_bytes
            .is_some_and(|max| state.written + buf.len() as u64 > max && state.written > 0)
        {
            state.roll()?;
        }
        state.file.write_all(buf)?;
        state.written += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let mut state = self
            .inner
            .lock()
            .map_err(|_| io::Error::other("log file lock poisoned"))?;
        state.file.flush()
    }
}

impl<'a> MakeWriter<'a> for RollingFile {
    type Writer = RollingFile;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn resolve(env: &[(&str, &str)], flags: Flags) -> LogSettings {
        LogSettings::resolve(&Env::from_pairs(env.iter().copied()), &flags)
    }

    #[test]
    fn levels_from_env_and_flags() {
        let s = resolve(&[], Flags::default());
        assert_eq!(
            (s.stdout_level, s.file_level),
            (LevelFilter::INFO, LevelFilter::INFO)
        );
        let s = resolve(&[("ECS_LOGLEVEL", "DEBUG")], Flags::default());
        assert_eq!(
            (s.stdout_level, s.file_level),
            (LevelFilter::DEBUG, LevelFilter::DEBUG)
        );
        let flags = Flags {
            loglevel: Some("warn".into()),
            ..Flags::default()
        };
        let s = resolve(&[("ECS_LOGLEVEL", "debug")], flags);
        assert_eq!(
            s.stdout_level,
            LevelFilter::WARN,
            "the flag overrides the environment"
        );
        let s = resolve(
            &[("ECS_LOGLEVEL", "loud"), ("ECS_LOG_DRIVER", "awslogs")],
            Flags::default(),
        );
        assert_eq!(s.stdout_level, LevelFilter::INFO);
        assert_eq!(s.file_level, LevelFilter::OFF);
        assert_eq!(
            s.warnings.len(),
            1,
            "one warning per bad value: {:?}",
            s.warnings
        );
        assert!(s.warnings[0].starts_with("ECS_LOGLEVEL:"));
        let s = resolve(
            &[
                ("ECS_LOGFILE", "/tmp/x.log"),
                ("ECS_LOG_OUTPUT_FORMAT", "json"),
            ],
            Flags::default(),
        );
        assert_eq!(s.file, Some(PathBuf::from("/tmp/x.log")));
        assert_eq!(s.format, Format::Json);
    }

    #[test]
    fn file_rolls_by_size_keeping_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.log");
        let mut f = RollingFile::open(path.clone(), Some(10), 2).unwrap();
        for i in 0..5 {
            f.write_all(format!("line{i}xxxx\n").as_bytes()).unwrap();
        }
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "line4xxxx\n");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("agent.log.2")).unwrap(),
            "line3xxxx\n"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("agent.log.1")).unwrap(),
            "line2xxxx\n"
        );
        assert!(!dir.path().join("agent.log.3").exists());
    }
}
