//! The agent's logs (docs/endpoints.md §3): a stdout sink and an
//! optional file sink (`ECS_LOGFILE`, rolled by size, hourly or never),
//! each with its own level, in `logfmt` (default) or `json`.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use time::{OffsetDateTime, UtcOffset};

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
    /// When the `ECS_LOGFILE` file rolls.
    pub rollover: Rollover,
    /// When the credentials audit log rolls (docs/endpoints.md §10): by
    /// size with `ECS_LOG_ROLLOVER_TYPE=size`, otherwise hourly, even for
    /// `none`.
    pub audit_rollover: Rollover,
    /// Rolled files kept; 0 keeps them all.
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
        // Zero or a negative count keeps every rolled file, as in the Go agent.
        let max_roll_count = match env.get("ECS_LOG_MAX_ROLL_COUNT").map(str::parse::<i64>) {
            None => 24,
            Some(Ok(v)) => usize::try_from(v).unwrap_or(0),
            Some(Err(_)) => {
                warnings.push("invalid ECS_LOG_MAX_ROLL_COUNT; using 24".into());
                24
            }
        };
        let by_size = Rollover::Size {
            max_bytes: (max_mb * 1_000_000.0) as u64,
        };
        // The Go agent matches `size` and `none` exactly and rolls hourly
        // for any other value; its audit log rolls hourly unless `size`.
        let (rollover, audit_rollover) = match env.get("ECS_LOG_ROLLOVER_TYPE") {
            Some("size") | None => (by_size, by_size),
            Some("none") => (Rollover::Never, Rollover::Hourly),
            Some("hourly") => (Rollover::Hourly, Rollover::Hourly),
            Some(other) => {
                warnings.push(format!(
                    "unknown ECS_LOG_ROLLOVER_TYPE {other:?} (use size, hourly or none); rolling hourly"
                ));
                (Rollover::Hourly, Rollover::Hourly)
            }
        };
        Self {
            stdout_level,
            file_level,
            file: env.get("ECS_LOGFILE").map(PathBuf::from),
            format,
            rollover,
            audit_rollover,
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
                    settings.rollover,
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

/// When a [`RollingFile`] rolls (docs/endpoints.md §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rollover {
    /// Before a write that would take a non-empty file past `max_bytes`.
    /// Rolled files are `<file>.1`, `<file>.2`, … with the highest the
    /// newest.
    Size { max_bytes: u64 },
    /// At the first write in a new UTC hour. The rolled file is named
    /// `<file>.YYYY-MM-DD-HH` after the hour its first line was written
    /// in, like the Go agent's files.
    Hourly,
    /// One file that grows for ever.
    Never,
}

/// The time source of a [`RollingFile`]; tests pass a fake one.
pub(crate) type Clock = fn() -> OffsetDateTime;

/// A log file that rolls as its [`Rollover`] says, keeping at most
/// `max_rolls` rolled files (0 keeps all). A file left by an earlier run is
/// appended to. Rolling never loses a line: when it fails, writing goes on
/// in the current file and the first failure is reported on stderr.
#[derive(Clone)]
pub(crate) struct RollingFile {
    inner: Arc<Mutex<RollingState>>,
}

struct RollingState {
    path: PathBuf,
    file: File,
    written: u64,
    rollover: Rollover,
    max_rolls: usize,
    clock: Clock,
    /// Hourly: the `YYYY-MM-DD-HH` of the current file's lines, taken at
    /// the first write after opening or rolling (as the Go agent does).
    hour: Option<String>,
    /// A roll failed and was reported; reset by the next successful roll.
    roll_failed: bool,
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// `path` with `.suffix` added to its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

/// The UTC hour of `t` as `YYYY-MM-DD-HH`.
fn hour_stamp(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}-{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour()
    )
}

/// Whether `s` is a real hour written as `YYYY-MM-DD-HH`.
fn is_hour_stamp(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    if b.len() != 13
        || [4, 7, 10].iter().any(|&i| b[i] != b'-')
        || ![0..4, 5..7, 8..10, 11..13].into_iter().all(digits)
    {
        return false;
    }
    let num = |r: std::ops::Range<usize>| s[r].parse::<u16>().unwrap_or(u16::MAX);
    let month = u8::try_from(num(5..7))
        .ok()
        .and_then(|m| time::Month::try_from(m).ok());
    let day = u8::try_from(num(8..10)).unwrap_or(0);
    month.is_some_and(|m| time::Date::from_calendar_date(i32::from(num(0..4)), m, day).is_ok())
        && num(11..13) < 24
}

impl RollingFile {
    pub(crate) fn open(path: PathBuf, rollover: Rollover, max_rolls: usize) -> io::Result<Self> {
        Self::open_with_clock(path, rollover, max_rolls, OffsetDateTime::now_utc)
    }

    pub(crate) fn open_with_clock(
        path: PathBuf,
        rollover: Rollover,
        max_rolls: usize,
        clock: Clock,
    ) -> io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = open_append(&path)?;
        let written = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(Self {
            inner: Arc::new(Mutex::new(RollingState {
                path,
                file,
                written,
                rollover,
                max_rolls,
                clock,
                hour: None,
                roll_failed: false,
            })),
        })
    }
}

impl RollingState {
    /// Rolls first if the next `incoming` bytes call for it.
    fn roll_if_due(&mut self, incoming: u64) {
        let stamp = match self.rollover {
            Rollover::Never => return,
            Rollover::Size { max_bytes } => {
                if self.written == 0 || self.written + incoming <= max_bytes {
                    return;
                }
                None
            }
            Rollover::Hourly => {
                let now = hour_stamp((self.clock)());
                match self.hour.replace(now.clone()) {
                    Some(previous) if previous != now => Some(previous),
                    _ => return,
                }
            }
        };
        match self.roll(stamp.as_deref()) {
            Ok(()) => self.roll_failed = false,
            Err(e) => {
                // Keep the current file; by size, try again after another
                // `max_bytes`, hourly at the next hour.
                self.written = 0;
                if !self.roll_failed {
                    self.roll_failed = true;
                    eprintln!(
                        "cannot roll the log file {}: {e}; still writing to it",
                        self.path.display()
                    );
                }
            }
        }
    }

    /// Moves the current file aside (numbered, or named after `stamp`),
    /// prunes old rolls and starts a new file. A current file removed by
    /// someone else is simply created again.
    fn roll(&mut self, stamp: Option<&str>) -> io::Result<()> {
        if self.path.exists() {
            match stamp {
                None => self.roll_numbered()?,
                Some(stamp) => self.roll_dated(stamp)?,
            }
        }
        self.file = open_append(&self.path)?;
        self.written = 0;
        Ok(())
    }

    fn roll_numbered(&mut self) -> io::Result<()> {
        let numbered = |n: usize| with_suffix(&self.path, &n.to_string());
        let mut existing: Vec<usize> = (1..=10_000).take_while(|n| numbered(*n).exists()).collect();
        let next = existing.len() + 1;
        std::fs::rename(&self.path, numbered(next))?;
        existing.push(next);
        // Drop the oldest and renumber, so the newest keeps the highest number.
        if self.max_rolls > 0 && existing.len() > self.max_rolls {
            let excess = existing.len() - self.max_rolls;
            for n in 1..=excess {
                let _ = std::fs::remove_file(numbered(n));
            }
            for n in (excess + 1)..=existing.len() {
                let _ = std::fs::rename(numbered(n), numbered(n - excess));
            }
        }
        Ok(())
    }

    fn roll_dated(&mut self, stamp: &str) -> io::Result<()> {
        let rolled = with_suffix(&self.path, stamp);
        if rolled.exists() {
            // The same hour again (the clock went back): add to that file
            // rather than replace it.
            let mut to = OpenOptions::new().append(true).open(&rolled)?;
            io::copy(&mut File::open(&self.path)?, &mut to)?;
            std::fs::remove_file(&self.path)?;
        } else {
            std::fs::rename(&self.path, &rolled)?;
        }
        self.prune_dated();
        Ok(())
    }

    /// Removes the oldest `<file>.YYYY-MM-DD-HH` beyond `max_rolls`.
    fn prune_dated(&self) {
        let (Some(dir), Some(base)) = (self.path.parent(), self.path.file_name()) else {
            return;
        };
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        let prefix = format!("{}.", base.to_string_lossy());
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut stamps: Vec<String> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter_map(|name| name.strip_prefix(&prefix).map(str::to_string))
            .filter(|stamp| is_hour_stamp(stamp))
            .collect();
        if self.max_rolls == 0 || stamps.len() <= self.max_rolls {
            return;
        }
        // Fixed-width stamps sort oldest first.
        stamps.sort();
        for stamp in &stamps[..stamps.len() - self.max_rolls] {
            let _ = std::fs::remove_file(with_suffix(&self.path, stamp));
        }
    }
}

impl Write for RollingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut state = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        state.roll_if_due(buf.len() as u64);
        state.file.write_all(buf)?;
        state.written += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let mut state = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
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
        let mut f = RollingFile::open(path.clone(), Rollover::Size { max_bytes: 10 }, 2).unwrap();
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

    #[test]
    fn rollover_type_resolution() {
        let rollovers = |env: &[(&str, &str)]| {
            let s = resolve(env, Flags::default());
            (s.rollover, s.audit_rollover, s.warnings)
        };
        let five_mb = Rollover::Size {
            max_bytes: 5_000_000,
        };
        assert_eq!(rollovers(&[]), (five_mb, five_mb, vec![]));
        assert_eq!(
            rollovers(&[("ECS_LOG_ROLLOVER_TYPE", "size")]),
            (five_mb, five_mb, vec![])
        );
        assert_eq!(
            rollovers(&[
                ("ECS_LOG_ROLLOVER_TYPE", "size"),
                ("ECS_LOG_MAX_FILE_SIZE_MB", "0.5")
            ])
            .0,
            Rollover::Size { max_bytes: 500_000 }
        );
        assert_eq!(
            rollovers(&[("ECS_LOG_ROLLOVER_TYPE", "hourly")]),
            (Rollover::Hourly, Rollover::Hourly, vec![])
        );
        // `none` never rolls the agent's log, but the audit log goes hourly.
        assert_eq!(
            rollovers(&[("ECS_LOG_ROLLOVER_TYPE", "none")]),
            (Rollover::Never, Rollover::Hourly, vec![])
        );
        // Anything else, including another case, rolls hourly with a warning.
        for junk in ["junk", "SIZE", "daily"] {
            let (main, audit, warnings) = rollovers(&[("ECS_LOG_ROLLOVER_TYPE", junk)]);
            assert_eq!(
                (main, audit),
                (Rollover::Hourly, Rollover::Hourly),
                "{junk}"
            );
            assert_eq!(warnings.len(), 1, "{warnings:?}");
            assert!(
                warnings[0].contains("ECS_LOG_ROLLOVER_TYPE") && warnings[0].contains(junk),
                "{warnings:?}"
            );
        }
        let count = |v: &str| {
            let s = resolve(&[("ECS_LOG_MAX_ROLL_COUNT", v)], Flags::default());
            (s.max_roll_count, s.warnings.len())
        };
        assert_eq!(count("3"), (3, 0));
        assert_eq!(count("0"), (0, 0), "0 keeps every rolled file");
        assert_eq!(count("-2"), (0, 0), "so does a negative count");
        assert_eq!(count("many"), (24, 1));
    }

    thread_local! {
        /// The fake clock's time, per test thread.
        static NOW: std::cell::Cell<OffsetDateTime> =
            const { std::cell::Cell::new(OffsetDateTime::UNIX_EPOCH) };
    }

    fn fake_clock() -> OffsetDateTime {
        NOW.with(std::cell::Cell::get)
    }

    fn set_now(t: OffsetDateTime) {
        NOW.with(|now| now.set(t));
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// The names in `dir`, sorted.
    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn hourly_rolls_when_the_utc_hour_changes() {
        use time::macros::datetime;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.log");
        let mut f =
            RollingFile::open_with_clock(path.clone(), Rollover::Hourly, 24, fake_clock).unwrap();
        set_now(datetime!(2024-03-01 10:15:00 UTC));
        f.write_all(b"a\n").unwrap();
        set_now(datetime!(2024-03-01 10:59:59.999 UTC));
        f.write_all(b"b\n").unwrap();
        assert_eq!(names(dir.path()), ["agent.log"], "no roll within the hour");
        set_now(datetime!(2024-03-01 11:00:00 UTC));
        f.write_all(b"c\n").unwrap();
        assert_eq!(names(dir.path()), ["agent.log", "agent.log.2024-03-01-10"]);
        assert_eq!(read(&dir.path().join("agent.log.2024-03-01-10")), "a\nb\n");
        assert_eq!(read(&path), "c\n");
        // The hour is UTC whatever the clock's offset: 13:30 at +02:00 is
        // still 11 UTC, and 14:05 at +02:00 is 12 UTC.
        set_now(datetime!(2024-03-01 13:30:00 +02:00));
        f.write_all(b"d\n").unwrap();
        assert_eq!(read(&path), "c\nd\n");
        set_now(datetime!(2024-03-01 14:05:00 +02:00));
        f.write_all(b"e\n").unwrap();
        assert_eq!(read(&dir.path().join("agent.log.2024-03-01-11")), "c\nd\n");
        assert_eq!(read(&path), "e\n");
        // Across a day boundary, with a gap of several hours.
        set_now(datetime!(2024-03-02 03:00:00 UTC));
        f.write_all(b"f\n").unwrap();
        assert_eq!(
            names(dir.path()),
            [
                "agent.log",
                "agent.log.2024-03-01-10",
                "agent.log.2024-03-01-11",
                "agent.log.2024-03-01-12"
            ]
        );
        assert_eq!(read(&path), "f\n");
    }

    #[test]
    fn hourly_keeps_only_the_newest_rolls() {
        use time::macros::datetime;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.log");
        // An old roll from an earlier run, and files that are not rolls.
        for other in [
            "agent.log.2024-02-28-23",
            "agent.log.1",
            "agent.log.2024-02-30-01",
            "agent.log.notes",
            "other.log.2024-01-01-00",
        ] {
            std::fs::write(dir.path().join(other), "x").unwrap();
        }
        let mut f =
            RollingFile::open_with_clock(path.clone(), Rollover::Hourly, 2, fake_clock).unwrap();
        for hour in 10..=13u8 {
            set_now(datetime!(2024-03-01 00:00 UTC).replace_hour(hour).unwrap());
            f.write_all(format!("{hour}\n").as_bytes()).unwrap();
        }
        assert_eq!(
            names(dir.path()),
            [
                "agent.log",
                "agent.log.1",
                "agent.log.2024-02-30-01",
                "agent.log.2024-03-01-11",
                "agent.log.2024-03-01-12",
                "agent.log.notes",
                "other.log.2024-01-01-00",
            ]
        );
        assert_eq!(read(&dir.path().join("agent.log.2024-03-01-12")), "12\n");
        assert_eq!(read(&path), "13\n");
    }

    #[test]
    fn an_hour_seen_again_is_added_to_not_replaced() {
        use time::macros::datetime;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.log");
        let mut f =
            RollingFile::open_with_clock(path.clone(), Rollover::Hourly, 24, fake_clock).unwrap();
        set_now(datetime!(2024-03-01 10:10 UTC));
        f.write_all(b"a\n").unwrap();
        set_now(datetime!(2024-03-01 11:10 UTC));
        f.write_all(b"b\n").unwrap();
        // The clock steps back into hour 10, then forward again.
        set_now(datetime!(2024-03-01 10:50 UTC));
        f.write_all(b"c\n").unwrap();
        set_now(datetime!(2024-03-01 11:20 UTC));
        f.write_all(b"d\n").unwrap();
        assert_eq!(read(&dir.path().join("agent.log.2024-03-01-10")), "a\nc\n");
        assert_eq!(read(&dir.path().join("agent.log.2024-03-01-11")), "b\n");
        assert_eq!(read(&path), "d\n");
    }

    #[test]
    fn a_failed_roll_keeps_every_line() {
        use time::macros::datetime;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.log");
        // A directory where the roll must go makes the roll fail.
        let blocker = dir.path().join("agent.log.2024-03-01-10");
        std::fs::create_dir(&blocker).unwrap();
        std::fs::write(blocker.join("x"), "x").unwrap();
        let mut f =
            RollingFile::open_with_clock(path.clone(), Rollover::Hourly, 24, fake_clock).unwrap();
        set_now(datetime!(2024-03-01 10:10 UTC));
        f.write_all(b"a\n").unwrap();
        set_now(datetime!(2024-03-01 11:10 UTC));
        f.write_all(b"b\n").unwrap();
        f.write_all(b"c\n").unwrap();
        assert_eq!(read(&path), "a\nb\nc\n");
        // The next hour rolls normally.
        set_now(datetime!(2024-03-01 12:10 UTC));
        f.write_all(b"d\n").unwrap();
        assert_eq!(
            read(&dir.path().join("agent.log.2024-03-01-11")),
            "a\nb\nc\n"
        );
        assert_eq!(read(&path), "d\n");
        assert!(blocker.join("x").exists());
    }

    #[test]
    fn a_file_from_an_earlier_run_is_appended_to() {
        use time::macros::datetime;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.log");
        for rollover in [
            Rollover::Size { max_bytes: 100 },
            Rollover::Hourly,
            Rollover::Never,
        ] {
            std::fs::write(&path, "old\n").unwrap();
            set_now(datetime!(2024-03-01 10:10 UTC));
            let mut f =
                RollingFile::open_with_clock(path.clone(), rollover, 24, fake_clock).unwrap();
            f.write_all(b"new\n").unwrap();
            assert_eq!(read(&path), "old\nnew\n", "{rollover:?}");
            assert_eq!(names(dir.path()), ["agent.log"], "{rollover:?}");
        }
        // By size, the earlier run's bytes count towards the limit.
        let mut f = RollingFile::open(path.clone(), Rollover::Size { max_bytes: 10 }, 24).unwrap();
        f.write_all(b"newer\n").unwrap();
        assert_eq!(read(&dir.path().join("agent.log.1")), "old\nnew\n");
        assert_eq!(read(&path), "newer\n");
    }

    #[test]
    fn never_rolls_and_zero_rolls_keeps_all() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.log");
        let mut f = RollingFile::open(path.clone(), Rollover::Never, 1).unwrap();
        for _ in 0..100 {
            f.write_all(b"0123456789\n").unwrap();
        }
        assert_eq!(names(dir.path()), ["agent.log"]);
        assert_eq!(read(&path).len(), 1100);
        std::fs::remove_file(&path).unwrap();
        let mut f = RollingFile::open(path.clone(), Rollover::Size { max_bytes: 10 }, 0).unwrap();
        for i in 0..5 {
            f.write_all(format!("line{i}xxxx\n").as_bytes()).unwrap();
        }
        assert_eq!(
            names(dir.path()),
            [
                "agent.log",
                "agent.log.1",
                "agent.log.2",
                "agent.log.3",
                "agent.log.4"
            ]
        );
        assert_eq!(read(&dir.path().join("agent.log.4")), "line3xxxx\n");
    }

    #[test]
    fn hour_stamps() {
        assert_eq!(
            hour_stamp(time::macros::datetime!(2024-03-01 09:59:59 -05:00)),
            "2024-03-01-14"
        );
        assert!(is_hour_stamp("2024-03-01-10"));
        assert!(is_hour_stamp("2024-02-29-23"));
        for bad in [
            "2024-03-01-24",
            "2023-02-29-10",
            "2024-13-01-10",
            "2024-03-00-10",
            "2024-3-01-100",
            "2024-03-01-1",
            "2024_03_01_10",
            "１２３４-03-01-10",
            "",
        ] {
            assert!(!is_hour_stamp(bad), "{bad}");
        }
    }
}
