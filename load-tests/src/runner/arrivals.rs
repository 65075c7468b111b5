//! Poisson arrivals: exponentially distributed gaps with mean `1 / rate`.
//!
//! The RNG is seeded so a run's arrival pattern can be replayed exactly.

use anyhow::bail;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::Exp;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct PoissonArrivals {
    rng: StdRng,
    gaps: Exp<f64>,
    /// Seconds from the start of the run to the last arrival handed out.
    at: f64,
}

impl PoissonArrivals {
    pub fn new(rate: f64, seed: u64) -> anyhow::Result<Self> {
        if !(rate.is_finite() && rate > 0.0) {
            bail!("the arrival rate must be a positive number, not {rate}");
        }
        let gaps = Exp::new(rate)?;
        Ok(Self {
            rng: StdRng::seed_from_u64(seed),
            gaps,
            at: 0.0,
        })
    }

    /// Seconds until the next arrival.
    pub fn next_gap(&mut self) -> f64 {
        self.rng.sample(self.gaps)
    }

    /// Time of the next arrival, from the start of the run.
    pub fn next_offset(&mut self) -> Duration {
        self.at += self.next_gap();
        Duration::from_secs_f64(self.at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_have_the_mean_and_spread_of_an_exponential() {
        let rate = 250.0;
        let mut arrivals = PoissonArrivals::new(rate, 42).unwrap();
        let n = 200_000;
        let gaps: Vec<f64> = (0..n).map(|_| arrivals.next_gap()).collect();
        let mean = gaps.iter().sum::<f64>() / n as f64;
        let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(
            (mean * rate - 1.0).abs() < 0.01,
            "mean gap {mean} for rate {rate}"
        );
        // An exponential's standard deviation equals its mean (coefficient of variation 1).
        assert!(
            (var.sqrt() / mean - 1.0).abs() < 0.02,
            "cv {}",
            var.sqrt() / mean
        );
    }

    #[test]
    fn arrivals_per_second_match_the_rate() {
        let mut arrivals = PoissonArrivals::new(100.0, 7).unwrap();
        let count = std::iter::from_fn(|| Some(arrivals.next_offset()))
            .take_while(|t| *t < Duration::from_secs(100))
            .count();
        assert!(
            (9_700..=10_300).contains(&count),
            "{count} arrivals in 100 s at 100/s"
        );
    }

    #[test]
    fn the_same_seed_gives_the_same_arrivals() {
        let mut a = PoissonArrivals::new(10.0, 1).unwrap();
        let mut b = PoissonArrivals::new(10.0, 1).unwrap();
        let mut c = PoissonArrivals::new(10.0, 2).unwrap();
        let first: Vec<_> = (0..5).map(|_| a.next_offset()).collect();
        assert_eq!(first, (0..5).map(|_| b.next_offset()).collect::<Vec<_>>());
        assert_ne!(first, (0..5).map(|_| c.next_offset()).collect::<Vec<_>>());
    }

    #[test]
    fn a_rate_must_be_positive() {
        assert!(PoissonArrivals::new(0.0, 1).is_err());
        assert!(PoissonArrivals::new(f64::NAN, 1).is_err());
    }
}
