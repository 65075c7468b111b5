//! The run cut into time bins: throughput and latency over time.

use crate::record::RequestRecord;
use crate::stats::Summary;
use serde::{Deserialize, Serialize};

/// One bin, by completion time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bin {
    /// Start of the bin, seconds from the start of the load.
    pub t_s: f64,
    pub width_s: f64,
    /// Successful requests that ended in the bin.
    pub ok: u64,
    /// Failed requests that ended in the bin.
    pub errors: u64,
    pub ok_rps: f64,
    pub error_rps: f64,
    /// Latency of the successes that ended in the bin.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

/// A bin width giving about 60 bins, rounded to a readable value.
pub fn bin_width(wall_s: f64) -> f64 {
    const NICE: &[f64] = &[
        0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 300.0,
    ];
    let target = wall_s / 60.0;
    NICE.iter().copied().find(|w| *w >= target).unwrap_or(600.0)
}

pub fn timeline(records: &[RequestRecord], wall_s: f64) -> Vec<Bin> {
    let width = bin_width(wall_s);
    let bins = ((wall_s / width).ceil() as usize).max(1);
    let mut latencies: Vec<Vec<f64>> = vec![Vec::new(); bins];
    let mut errors = vec![0u64; bins];
    for record in records {
        let index = ((record.end().as_secs_f64() / width) as usize).min(bins - 1);
        if record.is_ok() {
            latencies[index].push(record.latency.as_secs_f64() * 1e3);
        } else {
            errors[index] += 1;
        }
    }
    latencies
        .into_iter()
        .zip(errors)
        .enumerate()
        .map(|(i, (lat, errors))| {
            let summary = Summary::of(lat);
            Bin {
                t_s: i as f64 * width,
                width_s: width,
                ok: summary.count as u64,
                errors,
                ok_rps: summary.count as f64 / width,
                error_rps: errors as f64 / width,
                p50_ms: summary.p50,
                p99_ms: summary.p99,
                max_ms: summary.max,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Outcome;
    use std::time::Duration;

    fn record(end_ms: u64, ok: bool) -> RequestRecord {
        let outcome = if ok { Outcome::Ok } else { Outcome::HttpError };
        RequestRecord::new(
            Duration::ZERO,
            Duration::from_millis(end_ms),
            Some(200),
            outcome,
        )
    }

    #[test]
    fn widths_are_readable_and_give_about_sixty_bins() {
        assert_eq!(bin_width(3.0), 0.1);
        assert_eq!(bin_width(60.0), 1.0);
        assert_eq!(bin_width(100.0), 2.0);
    }

    #[test]
    fn requests_land_in_the_bin_of_their_end() {
        let records = [
            record(50, true),
            record(150, true),
            record(160, false),
            record(299, true),
        ];
        let bins = timeline(&records, 0.3);
        assert_eq!(bins.len(), 3);
        assert_eq!(
            bins.iter().map(|b| (b.ok, b.errors)).collect::<Vec<_>>(),
            [(1, 0), (1, 1), (1, 0)]
        );
        assert!((bins[1].ok_rps - 10.0).abs() < 1e-9);
        assert_eq!(bins[2].p50_ms, Some(299.0));
    }
}
