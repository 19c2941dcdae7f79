//! JSON and time text the way Go's `encoding/json` and `time` write them,
//! which clients of the Go agent's endpoints may depend on
//! (docs/endpoints.md §5).

use serde::Serialize;

/// Compact JSON with `<`, `>` and `&` escaped as Go does.
pub fn go_json(value: &impl Serialize) -> String {
    let text = serde_json::to_string(value).unwrap_or_else(|_| "null".to_string());
    // These three only ever occur inside JSON strings, so escaping them in
    // the whole text is the same as escaping them in each string.
    if text.contains(['<', '>', '&']) {
        text.replace('<', "\\u003c")
            .replace('>', "\\u003e")
            .replace('&', "\\u0026")
    } else {
        text
    }
}

/// Milliseconds since the epoch as RFC 3339 in UTC with the fraction's
/// trailing zeros removed (`2024-03-01T10:00:02.51Z`).
pub fn go_time(ms: i64) -> String {
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) else {
        return String::new();
    };
    let base = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    let millis = t.millisecond();
    if millis == 0 {
        format!("{base}Z")
    } else {
        let fraction = format!("{millis:03}");
        format!("{base}.{}Z", fraction.trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_characters_are_escaped_like_go() {
        let text = go_json(&serde_json::json!({"a": "<b> & c"}));
        assert_eq!(text, r#"{"a":"\u003cb\u003e \u0026 c"}"#);
    }

    #[test]
    fn times_drop_trailing_zeros() {
        // 2024-03-01T10:00:02.51Z
        assert_eq!(go_time(1_709_287_202_510), "2024-03-01T10:00:02.51Z");
        assert_eq!(go_time(1_709_287_202_000), "2024-03-01T10:00:02Z");
        assert_eq!(go_time(1_709_287_202_001), "2024-03-01T10:00:02.001Z");
    }
}
