//! `--log-format json`: one JSON object per log line, with `time` (RFC
//! 3339, UTC), `level`, `target`, `message` and every field of the event,
//! for log shippers that read JSON. The default stays tracing's text.

use serde_json::{Map, Value};
use std::fmt;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The log line formats `--log-format` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Formats each event as one JSON object.
#[derive(Debug, Default, Clone, Copy)]
pub struct JsonLines;

struct Fields<'a>(&'a mut Map<String, Value>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), Value::from(format!("{value:?}")));
    }
}

/// The JSON object of one event at `epoch_seconds`.
pub fn line(event: &Event<'_>, epoch_seconds: f64) -> Value {
    let meta = event.metadata();
    let mut map = Map::new();
    let whole = epoch_seconds.floor();
    let millis = ((epoch_seconds - whole) * 1000.0).floor() as i64;
    let time = crate::clock::rfc3339(whole as i64);
    let time = match time.strip_suffix('Z') {
        Some(base) => format!("{base}.{millis:03}Z"),
        None => time,
    };
    map.insert("time".to_owned(), Value::from(time));
    map.insert("level".to_owned(), Value::from(meta.level().as_str()));
    map.insert("target".to_owned(), Value::from(meta.target()));
    event.record(&mut Fields(&mut map));
    Value::Object(map)
}

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        writeln!(writer, "{}", line(event, crate::clock::epoch_seconds()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_event_is_one_json_object_with_its_fields() {
        let buffer = Buffer::default();
        let out = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .event_format(JsonLines)
            .with_writer(move || out.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(task = "t-1", count = 3_u64, ok = true, "task \"placed\"");
            tracing::warn!(error = %"disk\nfull", "write failed");
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["level"], "INFO");
        assert_eq!(lines[0]["message"], "task \"placed\"");
        assert_eq!(lines[0]["task"], "t-1");
        assert_eq!(lines[0]["count"], 3);
        assert_eq!(lines[0]["ok"], true);
        assert_eq!(lines[1]["level"], "WARN");
        assert_eq!(lines[1]["error"], "disk\nfull");
        let time = lines[0]["time"].as_str().unwrap();
        assert!(
            time.ends_with('Z') && time.contains('T') && time.contains('.'),
            "{time}"
        );
    }
}
