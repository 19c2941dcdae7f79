//! Summaries of repeated measurements, and the order in which two sides of
//! a comparison take turns.

/// Median, min and max of a set of runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub runs: usize,
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Summary {
    /// `None` when there is no sample. NaNs are left out.
    pub fn of(samples: &[f64]) -> Option<Summary> {
        let mut sorted: Vec<f64> = samples.iter().copied().filter(|v| !v.is_nan()).collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        Some(Summary {
            runs: n,
            median,
            min: sorted[0],
            max: sorted[n - 1],
        })
    }
}

/// The nearest-rank percentile: the smallest sample that at least `p` %
/// of the samples do not exceed. Unlike an interpolated one it is always a
/// time that was measured, and the p99 of 50 samples is their max.
pub fn percentile(samples: &[f64], p: f64) -> Option<f64> {
    let mut sorted: Vec<f64> = samples.iter().copied().filter(|v| !v.is_nan()).collect();
    if sorted.is_empty() || !(0.0..=100.0).contains(&p) {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let rank = (p / 100.0 * sorted.len() as f64 - 1e-9).ceil().max(1.0) as usize;
    sorted.get(rank.min(sorted.len()) - 1).copied()
}

/// One side of a side-by-side comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The agent (through ecs-local).
    Agent,
    /// Docker's API, called directly.
    Docker,
}

/// The order of `pairs` interleaved runs of two sides: `first`, the other,
/// `first`, the other, ... so that a slow moment of the machine falls on
/// both sides alike.
pub fn interleaved(pairs: usize, first: Side) -> Vec<Side> {
    let second = match first {
        Side::Agent => Side::Docker,
        Side::Docker => Side::Agent,
    };
    (0..pairs).flat_map(|_| [first, second]).collect()
}

/// `a / b`, when both are there and `b` is not zero.
pub fn ratio(a: Option<Summary>, b: Option<Summary>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b.median > 0.0 => Some(a.median / b.median),
        _ => None,
    }
}

/// The mean of `samples[from..to]` with the bounds given as fractions of
/// the length (0.1, 0.2 is the window from 10 % to 20 %); `None` when the
/// window holds nothing.
pub fn window_mean(samples: &[f64], from: f64, to: f64) -> Option<f64> {
    let n = samples.len() as f64;
    // The epsilon keeps 100 × 0.2 (20.000000000000004) from becoming 21.
    let start = (n * from + 1e-9).floor().max(0.0) as usize;
    let end = ((n * to - 1e-9).ceil().max(0.0) as usize).min(samples.len());
    let window = samples.get(start..end)?;
    if window.is_empty() {
        return None;
    }
    Some(window.iter().sum::<f64>() / window.len() as f64)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn median_min_max_of_odd_and_even_counts() {
        let s = Summary::of(&[5.0, 1.0, 3.0]).unwrap();
        assert_eq!((s.runs, s.median, s.min, s.max), (3, 3.0, 1.0, 5.0));
        let s = Summary::of(&[4.0, 1.0, 3.0, 10.0]).unwrap();
        assert_eq!((s.runs, s.median, s.min, s.max), (4, 3.5, 1.0, 10.0));
        let s = Summary::of(&[7.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (7.0, 7.0, 7.0));
        assert_eq!(Summary::of(&[]), None);
        assert_eq!(Summary::of(&[f64::NAN]), None);
        assert_eq!(Summary::of(&[f64::NAN, 2.0]).unwrap().runs, 1);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&hundred, 50.0), Some(50.0));
        assert_eq!(percentile(&hundred, 99.0), Some(99.0));
        assert_eq!(percentile(&hundred, 100.0), Some(100.0));
        assert_eq!(percentile(&hundred, 0.0), Some(1.0));
        let two_hundred: Vec<f64> = (1..=200).rev().map(f64::from).collect();
        assert_eq!(percentile(&two_hundred, 99.0), Some(198.0));
        let fifty: Vec<f64> = (1..=50).map(f64::from).collect();
        assert_eq!(percentile(&fifty, 99.0), Some(50.0));
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[f64::NAN], 50.0), None);
        assert_eq!(percentile(&[1.0], 101.0), None);
    }

    #[test]
    fn sides_take_turns() {
        use Side::{Agent as A, Docker as D};
        assert_eq!(interleaved(3, A), vec![A, D, A, D, A, D]);
        assert_eq!(interleaved(2, D), vec![D, A, D, A]);
        assert!(interleaved(0, A).is_empty());
    }

    #[test]
    fn ratio_of_medians() {
        let a = Summary::of(&[2.0, 4.0, 100.0]);
        let b = Summary::of(&[1.0, 2.0, 3.0]);
        assert_eq!(ratio(a, b), Some(2.0));
        assert_eq!(ratio(a, None), None);
        assert_eq!(ratio(a, Summary::of(&[0.0])), None);
    }

    #[test]
    fn windows_of_a_series() {
        let samples: Vec<f64> = (0..100).map(f64::from).collect();
        assert_eq!(window_mean(&samples, 0.1, 0.2), Some(14.5));
        assert_eq!(window_mean(&samples, 0.9, 1.0), Some(94.5));
        assert_eq!(window_mean(&[], 0.9, 1.0), None);
        assert_eq!(window_mean(&[1.0, 3.0], 0.9, 1.0), Some(3.0));
    }
}
