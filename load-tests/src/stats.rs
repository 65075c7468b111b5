//! Order statistics of a sample: exact nearest-rank percentiles.
//!
//! Samples are kept whole and sorted (a run of a few hundred thousand requests sorts in
//! milliseconds), so the reported p99 is a latency some request really had, not a bucket edge.

use serde::{Deserialize, Serialize};

/// The nearest-rank `p`-th percentile (0 < p <= 100) of an ascending sample: the smallest value
/// with at least `p`% of the sample at or below it. `None` for an empty sample.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Count, mean and the percentiles every report shows; `null` fields for an empty sample.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub count: usize,
    pub mean: Option<f64>,
    pub min: Option<f64>,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

impl Summary {
    /// Summarises a sample; NaNs are dropped.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Self {
        let mut sorted: Vec<f64> = values.into_iter().filter(|v| !v.is_nan()).collect();
        sorted.sort_by(f64::total_cmp);
        Self::of_sorted(&sorted)
    }

    pub fn of_sorted(sorted: &[f64]) -> Self {
        let count = sorted.len();
        let mean = (count > 0).then(|| sorted.iter().sum::<f64>() / count as f64);
        Self {
            count,
            mean,
            min: sorted.first().copied(),
            p50: percentile(sorted, 50.0),
            p90: percentile(sorted, 90.0),
            p99: percentile(sorted, 99.0),
            max: sorted.last().copied(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_one_to_a_hundred_are_the_ranks() {
        let sample: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = Summary::of(sample.iter().rev().copied());
        assert_eq!(
            (s.p50, s.p90, s.p99, s.max),
            (Some(50.0), Some(90.0), Some(99.0), Some(100.0))
        );
        assert_eq!((s.count, s.min, s.mean), (100, Some(1.0), Some(50.5)));
    }

    #[test]
    fn nearest_rank_matches_the_textbook_example() {
        // The worked example of the nearest-rank method: 15, 20, 35, 40, 50.
        let sorted = [15.0, 20.0, 35.0, 40.0, 50.0];
        assert_eq!(percentile(&sorted, 5.0), Some(15.0));
        assert_eq!(percentile(&sorted, 30.0), Some(20.0));
        assert_eq!(percentile(&sorted, 40.0), Some(20.0));
        assert_eq!(percentile(&sorted, 50.0), Some(35.0));
        assert_eq!(percentile(&sorted, 100.0), Some(50.0));
    }

    #[test]
    fn a_tail_outlier_shows_only_in_the_top_percentiles() {
        let mut sample = vec![10.0; 999];
        sample.push(5000.0);
        let s = Summary::of(sample);
        assert_eq!(
            (s.p50, s.p99, s.max),
            (Some(10.0), Some(10.0), Some(5000.0))
        );
        let mut sample = vec![10.0; 98];
        sample.extend([5000.0, 6000.0]);
        assert_eq!(Summary::of(sample).p99, Some(5000.0));
    }

    #[test]
    fn small_and_empty_samples() {
        let one = Summary::of([3.5]);
        assert_eq!(
            (one.p50, one.p99, one.max),
            (Some(3.5), Some(3.5), Some(3.5))
        );
        let none = Summary::of(std::iter::empty());
        assert_eq!(none, Summary::default());
        assert_eq!(Summary::of([f64::NAN, 1.0]).count, 1);
    }
}
