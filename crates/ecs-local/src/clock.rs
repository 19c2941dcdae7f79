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
