//! Log probabilities from the distribution a token was sampled from: the logits after the
//! penalties, divided by the temperature (1 when greedy, whose pick is the same), normalised
//! with a log-sum-exp over the whole vocabulary. Top-k and top-p are not applied: an
//! alternative they cut still shows how likely the model found it (the README says so).

/// A token id's log probability, and its most likely alternatives', as ids.
#[derive(Debug, Clone, PartialEq)]
pub struct IdLogprobs {
    pub chosen: (u32, f32),
    /// Most likely first, ties by lower id.
    pub top: Vec<(u32, f32)>,
}

/// The log-softmax of `logits / temperature`, read without a second vector.
pub struct LogDistribution<'a> {
    logits: &'a [f32],
    temperature: f32,
    log_total: f32,
}

impl<'a> LogDistribution<'a> {
    pub fn new(logits: &'a [f32], temperature: f32) -> Self {
        let max = logits
            .iter()
            .copied()
            .filter(|v| !v.is_nan())
            .fold(f32::NEG_INFINITY, f32::max);
        let scaled_max = max / temperature;
        let sum: f64 = logits
            .iter()
            .filter(|v| !v.is_nan())
            .map(|&v| f64::from(v / temperature - scaled_max).exp())
            .sum();
        Self {
            logits,
            temperature,
            log_total: scaled_max + sum.ln() as f32,
        }
    }

    /// The log probability of `id`; at most 0 (rounding clamped), `-inf` for a token
    /// penalised to `-inf` or out of range.
    pub fn logprob(&self, id: u32) -> f32 {
        match self.logits.get(id as usize) {
            Some(&v) if !v.is_nan() => (v / self.temperature - self.log_total).min(0.0),
            _ => f32::NEG_INFINITY,
        }
    }

    /// `chosen`'s log probability and the `top` most likely tokens'.
    pub fn of(&self, chosen: u32, top: usize) -> IdLogprobs {
        IdLogprobs {
            chosen: (chosen, self.logprob(chosen)),
            top: self
                .most_likely(top)
                .into_iter()
                .map(|id| (id, self.logprob(id)))
                .collect(),
        }
    }

    /// The `count` ids with the highest logits, highest first (ties: lower id first).
    fn most_likely(&self, count: usize) -> Vec<u32> {
        let mut best: Vec<(f32, u32)> = Vec::with_capacity(count + 1);
        if count == 0 {
            return Vec::new();
        }
        for (id, &value) in self.logits.iter().enumerate() {
            if value.is_nan() || (best.len() == count && value <= best[count - 1].0) {
                continue;
            }
            let at = best.partition_point(|&(v, _)| v >= value);
            best.insert(at, (value, id as u32));
            best.truncate(count);
        }
        best.into_iter().map(|(_, id)| id).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logprobs_are_a_normalised_log_softmax() {
        let logits = [1.0f32, 3.0, 2.0, -1.0];
        let distribution = LogDistribution::new(&logits, 1.0);
        let total: f32 = (0..4).map(|id| distribution.logprob(id).exp()).sum();
        assert!((total - 1.0).abs() < 1e-5, "{total}");
        let expected = 3.0 - logits.iter().map(|v| v.exp()).sum::<f32>().ln();
        assert!((distribution.logprob(1) - expected).abs() < 1e-5);
        assert!((0..4).all(|id| distribution.logprob(id) <= 0.0));
    }

    #[test]
    fn the_temperature_sharpens_or_flattens_them() {
        let logits = [1.0f32, 3.0, 2.0];
        let cold = LogDistribution::new(&logits, 0.5).logprob(1);
        let plain = LogDistribution::new(&logits, 1.0).logprob(1);
        let hot = LogDistribution::new(&logits, 2.0).logprob(1);
        assert!(cold > plain && plain > hot, "{cold} {plain} {hot}");
    }

    #[test]
    fn the_top_alternatives_are_sorted_and_hold_the_greedy_pick() {
        let logits = [0.5f32, 2.0, f32::NAN, 1.0, 2.0, f32::NEG_INFINITY, -3.0];
        let distribution = LogDistribution::new(&logits, 1.0);
        let of = distribution.of(6, 3);
        assert_eq!(of.chosen.0, 6);
        let ids: Vec<u32> = of.top.iter().map(|&(id, _)| id).collect();
        assert_eq!(ids, [1, 4, 3]);
        assert!(of.top.windows(2).all(|w| w[0].1 >= w[1].1));
        assert_eq!(distribution.of(1, 0).top, []);
        assert_eq!(distribution.logprob(5), f32::NEG_INFINITY);
        assert_eq!(
            distribution.of(0, 10).top.len(),
            6,
            "NaN is never an alternative"
        );
    }
}
