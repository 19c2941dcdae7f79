//! Exponential backoff with additive jitter, as the Go agent's reconnect and
//! retry loops use: each delay is the current value plus up to `jitter` of
//! itself, then the value grows by `multiplier` up to `max`.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    multiplier: f64,
    jitter: f64,
    current: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration, multiplier: f64, jitter: f64) -> Self {
        Self {
            min,
            max,
            multiplier,
            jitter,
            current: min,
        }
    }

    /// The next delay to wait.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.current;
        let extra = base.mul_f64(self.jitter * rand::random::<f64>());
        self.current = self.current.mul_f64(self.multiplier).min(self.max);
        base + extra
    }

    pub fn reset(&mut self) {
        self.current = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_caps_and_resets() {
        let mut b = Backoff::new(
            Duration::from_millis(250),
            Duration::from_secs(120),
            1.5,
            0.2,
        );
        let first = b.next_delay();
        assert!(first >= Duration::from_millis(250) && first <= Duration::from_millis(300));
        for _ in 0..50 {
            let d = b.next_delay();
            assert!(d <= Duration::from_secs(144), "{d:?}");
        }
        assert!(b.next_delay() >= Duration::from_secs(120));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(300));
    }
}
