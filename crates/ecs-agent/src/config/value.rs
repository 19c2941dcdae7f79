//! Parsers for the value syntaxes the Go agent accepts in its environment
//! variables: Go booleans, Go durations, JSON arrays and maps, port ranges.
//!
//! Every parser takes the raw text and returns `Ok(None)` for "unset" (the
//! Go agent treats empty and zero values as not given, so the next source
//! wins), `Ok(Some(v))` for a usable value, and `Err(reason)` for text that is
//! not valid; callers decide whether that is a warning or fatal.

use std::collections::BTreeMap;
use std::time::Duration;

/// Go's `strconv.ParseBool`: exactly these spellings, nothing else.
pub fn go_bool(text: &str) -> Result<bool, String> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        other => Err(format!("invalid boolean {other:?}")),
    }
}

/// Go's `time.ParseDuration`: signed sequence of decimal numbers with units
/// `ns`, `us`/`µs`/`μs`, `ms`, `s`, `m`, `h`. A bare `0` is valid; any other
/// bare number is not. Negative results are returned as `Err` only when they
/// cannot be represented; callers clamp them.
pub fn go_duration(text: &str) -> Result<GoDuration, String> {
    let err = || format!("time: invalid duration {text:?}");
    let mut rest = text;
    let mut negative = false;
    if let Some(r) = rest.strip_prefix('-') {
        negative = true;
        rest = r;
    } else if let Some(r) = rest.strip_prefix('+') {
        rest = r;
    }
    if rest == "0" {
        return Ok(GoDuration::ZERO);
    }
    if rest.is_empty() {
        return Err(err());
    }
    let mut total_ns: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..num_len];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(err());
        }
        let value: f64 = number.parse().map_err(|_| err())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let scale = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err(format!("time: missing unit in duration {text:?}")),
            _ => return Err(format!("time: unknown unit {unit:?} in duration {text:?}")),
        };
        total_ns += value * scale;
    }
    if total_ns > i64::MAX as f64 {
        return Err(err());
    }
    let nanos = total_ns.round() as i64;
    Ok(GoDuration(if negative { -nanos } else { nanos }))
}

/// A Go `time.Duration`: signed nanoseconds. Configuration values can be
/// negative on input (and are then clamped), so `std::time::Duration` alone
/// cannot hold them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct GoDuration(pub i64);

impl GoDuration {
    pub const ZERO: GoDuration = GoDuration(0);

    pub fn from_std(d: Duration) -> Self {
        GoDuration(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
    }

    /// Negative durations become zero: every consumer waits or times out.
    pub fn to_std(self) -> Duration {
        Duration::from_nanos(u64::try_from(self.0).unwrap_or(0))
    }
}

/// Reads only the first JSON value of `text`, as Go's streaming decoder does,
/// so trailing text after a valid array is ignored.
pub fn first_json_value<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<T>();
    match stream.next() {
        Some(Ok(v)) => Ok(v),
        Some(Err(e)) => Err(e.to_string()),
        None => Err("empty JSON value".to_string()),
    }
}

/// A JSON array of port numbers, e.g. `[22, 2375]`.
pub fn port_list(text: &str) -> Result<Vec<u16>, String> {
    first_json_value::<Vec<u16>>(text)
}

/// A strict JSON object of strings; trailing text is an error.
pub fn string_map(text: &str) -> Result<BTreeMap<String, String>, String> {
    serde_json::from_str::<BTreeMap<String, String>>(text).map_err(|e| e.to_string())
}

/// `start-end` or a single port. Returns `(start, end)` with start <= end.
pub fn port_range(text: &str) -> Result<(u16, u16), String> {
    let parse = |s: &str| {
        s.trim()
            .parse::<u16>()
            .map_err(|_| format!("invalid port {s:?} in range {text:?}"))
    };
    let (start, end) = match text.split_once('-') {
        Some((a, b)) => (parse(a)?, parse(b)?),
        None => {
            let p = parse(text)?;
            (p, p)
        }
    };
    if start == 0 || start > end {
        return Err(format!("invalid port range {text:?}"));
    }
    Ok((start, end))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn go_bool_accepts_only_go_spellings() {
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(go_bool(t), Ok(true));
        }
        for f in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(go_bool(f), Ok(false));
        }
        for bad in ["tRuE", "yes", "", " true", "2"] {
            assert!(go_bool(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn go_duration_matches_go_syntax() {
        let ok = |t: &str, ns: i64| assert_eq!(go_duration(t), Ok(GoDuration(ns)), "{t}");
        ok("0", 0);
        ok("10m", 600_000_000_000);
        ok("1h30m", 5_400_000_000_000);
        ok("1.5h", 5_400_000_000_000);
        ok("-5s", -5_000_000_000);
        ok("300ms", 300_000_000);
        ok("2us", 2_000);
        ok("2µs", 2_000);
        ok("1m0.5s", 60_500_000_000);
        for bad in ["600", "", "-", "1d", "s", "1..5s", "abc", "1 s"] {
            assert!(go_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn port_list_reads_first_value_only() {
        assert_eq!(port_list("[22, 80] junk").unwrap(), vec![22, 80]);
        assert!(port_list("[70000]").is_err());
        assert!(port_list("22").is_err());
    }

    #[test]
    fn string_map_is_strict() {
        assert_eq!(string_map(r#"{"a":"1","a":"2"}"#).unwrap()["a"], "2");
        assert!(string_map(r#"{"a":1}"#).is_err());
        assert!(string_map(r#"{"a":"1"} x"#).is_err());
    }

    #[test]
    fn port_range_forms() {
        assert_eq!(port_range("100-200").unwrap(), (100, 200));
        assert_eq!(port_range("8080").unwrap(), (8080, 8080));
        assert!(port_range("200-100").is_err());
        assert!(port_range("a-b").is_err());
    }
}
