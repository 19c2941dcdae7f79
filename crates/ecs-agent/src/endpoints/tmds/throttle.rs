//! Per source-address-and-path token buckets for the task endpoint
//! (docs/endpoints.md §9).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Buckets this many distinct `ip|path` keys at most; beyond that the
/// oldest half is forgotten (a forgotten bucket starts full again, which
/// only ever lets a request through).
const MAX_BUCKETS: usize = 65_536;

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Debug)]
pub struct Throttle {
    rate: f64,
    /// Tokens a bucket regains a second: `rate`, or none in tests that
    /// count requests and must not depend on how fast they run.
    refill: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Throttle {
    /// `rate` tokens a second, at most `burst` saved up.
    pub fn new(rate: u32, burst: u32) -> Self {
        Self {
            rate: f64::from(rate),
            refill: f64::from(rate),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Advertises `rate` but never refills: exactly `burst` requests per
    /// key pass, however long they take.
    #[cfg(test)]
    pub(crate) fn without_refill(rate: u32, burst: u32) -> Self {
        Self {
            refill: 0.0,
            ..Self::new(rate, burst)
        }
    }

    /// `X-Rate-Limit-Limit`: the rate with two decimals.
    pub fn limit_header(&self) -> String {
        format!("{:.2}", self.rate)
    }

    /// Takes a token for `key`; `false` when its bucket is empty.
    pub fn allow(&self, key: &str, now: Instant) -> bool {
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(key) {
            let mut ages: Vec<Instant> = buckets.values().map(|b| b.at).collect();
            ages.sort_unstable();
            let cutoff = ages[ages.len() / 2];
            buckets.retain(|_, b| b.at > cutoff);
        }
        let bucket = buckets.entry(key.to_string()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.refill).min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_steady_rate_per_key() {
        let t = Throttle::new(40, 60);
        let now = Instant::now();
        let allowed = (0..100).filter(|_| t.allow("a|/v4/x", now)).count();
        assert_eq!(allowed, 60);
        // Another path, or another address, has its own bucket.
        assert!(t.allow("a|/v4/x/task", now));
        assert!(t.allow("b|/v4/x", now));
        // A quarter second refills ten tokens.
        let later = now + Duration::from_millis(250);
        let refilled = (0..100).filter(|_| t.allow("a|/v4/x", later)).count();
        assert_eq!(refilled, 10);
        assert_eq!(t.limit_header(), "40.00");
    }

    #[test]
    fn without_refill_only_the_burst_passes() {
        let t = Throttle::without_refill(40, 60);
        let now = Instant::now();
        assert_eq!((0..100).filter(|_| t.allow("a|/x", now)).count(), 60);
        let much_later = now + Duration::from_secs(3600);
        assert!(!t.allow("a|/x", much_later));
        assert_eq!(t.limit_header(), "40.00");
    }
}
