//! Wall-clock time in the forms the wire uses: epoch seconds with a
//! millisecond fraction (ECS API timestamps) and epoch milliseconds (ACS
//! `generatedAt`).

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, rounded to milliseconds.
pub fn epoch_seconds() -> f64 {
    (epoch_millis() as f64) / 1000.0
}

/// Milliseconds since the Unix epoch.
pub fn epoch_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Epoch seconds as RFC 3339 UTC without fractional seconds
/// (`2026-11-28T02:18:40Z`), the form of credential `expiration`s.
pub fn rfc3339(epoch_seconds: i64) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    time::OffsetDateTime::from_unix_timestamp(epoch_seconds)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_is_utc_without_fractions() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_832_320), "2026-11-28T02:18:40Z");
    }
}
