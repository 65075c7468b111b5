//! Logit penalties against repetition, applied to the raw logits before temperature, top-k and
//! top-p, in vLLM's order:
//!
//! - `repetition_penalty` (the CTRL paper's, as llama.cpp, vLLM and Hugging Face apply it): the
//!   logit of every token seen in the recent window, prompt included, is divided by the penalty
//!   when positive and multiplied by it when negative.
//! - `frequency_penalty` and `presence_penalty` (OpenAI's): `logit[t] -= count[t] * frequency +
//!   (count[t] > 0) * presence`, where `count[t]` is how often `t` was generated so far in this
//!   completion (the prompt does not count).

use std::collections::{HashMap, HashSet};

use coder_nats::SamplingParams;

/// How often each token has been generated so far in one completion.
#[derive(Debug, Default)]
pub struct GeneratedCounts(HashMap<u32, u32>);

impl GeneratedCounts {
    pub fn record(&mut self, token: u32) {
        *self.0.entry(token).or_default() += 1;
    }
}

/// One completion's penalties, as the request asked for them.
#[derive(Debug, Clone, Copy)]
pub struct Penalties {
    repetition: f32,
    frequency: f32,
    presence: f32,
}

impl Penalties {
    pub fn new(params: &SamplingParams) -> Self {
        Self {
            repetition: params.repetition_penalty,
            frequency: params.frequency_penalty,
            presence: params.presence_penalty,
        }
    }

    /// A repetition penalty that would do anything: 1 is none, and a value that is not a
    /// positive number cannot be divided by (the gateway refuses both).
    fn repetition_applies(&self) -> bool {
        self.repetition.is_finite() && self.repetition > 0.0 && self.repetition != 1.0
    }

    /// Whether [`Self::apply`] would leave every logit as it is.
    pub fn are_none(&self) -> bool {
        !self.repetition_applies() && self.frequency == 0.0 && self.presence == 0.0
    }

    /// Why these penalties cannot be applied: a frequency or presence penalty outside OpenAI's
    /// range (or not a number) would turn logits into garbage. The gateway refuses such a
    /// request; this catches one that reached the worker some other way.
    pub fn invalid(&self) -> Option<String> {
        let params = SamplingParams {
            frequency_penalty: self.frequency,
            presence_penalty: self.presence,
            ..SamplingParams::default()
        };
        let (field, value) = params.penalty_out_of_range()?;
        let range = SamplingParams::PENALTY_RANGE;
        Some(format!(
            "`{field}` must be between {} and {}, got {value}",
            range.start(),
            range.end()
        ))
    }

    /// Penalises `logits` (one per vocabulary entry) for `recent` tokens (the repetition
    /// window, prompt included) and for the `generated` ones. Ids past the vocabulary are
    /// skipped.
    pub fn apply(&self, logits: &mut [f32], recent: &[u32], generated: &GeneratedCounts) {
        if self.repetition_applies() {
            let mut seen = HashSet::new();
            for &token in recent {
                if !seen.insert(token) {
                    continue;
                }
                if let Some(logit) = logits.get_mut(token as usize) {
                    if *logit >= 0.0 {
                        *logit /= self.repetition;
                    } else {
                        *logit *= self.repetition;
                    }
                }
            }
        }
        if self.frequency == 0.0 && self.presence == 0.0 {
            return;
        }
        for (&token, &count) in &generated.0 {
            if let Some(logit) = logits.get_mut(token as usize) {
                *logit -= count as f32 * self.frequency + self.presence;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn penalties(repetition: f32, frequency: f32, presence: f32) -> Penalties {
        Penalties {
            repetition,
            frequency,
            presence,
        }
    }

    fn generated(tokens: &[u32]) -> GeneratedCounts {
        let mut counts = GeneratedCounts::default();
        tokens.iter().for_each(|&t| counts.record(t));
        counts
    }

    #[test]
    fn frequency_scales_with_the_count_and_presence_is_paid_once() {
        let mut logits = [1.0f32, 1.0, 1.0, 1.0];
        // Token 1 generated three times, token 2 once, token 0 never.
        penalties(1.0, 0.5, 0.25).apply(&mut logits, &[], &generated(&[1, 2, 1, 1]));
        assert_eq!(logits, [1.0, 1.0 - 3.0 * 0.5 - 0.25, 1.0 - 0.5 - 0.25, 1.0]);
    }

    #[test]
    fn negative_penalties_favour_generated_tokens() {
        let mut logits = [0.0f32, 0.0];
        penalties(1.0, -1.0, -2.0).apply(&mut logits, &[], &generated(&[0, 0]));
        assert_eq!(logits, [2.0 + 2.0, 0.0]);
    }

    #[test]
    fn the_prompt_counts_for_repetition_only() {
        // `recent` holds prompt token 0 and generated token 1; only token 1 was generated.
        let mut logits = [2.0f32, 2.0, -2.0];
        penalties(2.0, 0.5, 0.0).apply(&mut logits, &[0, 1, 2, 1], &generated(&[1]));
        // Repetition first (divide positive, multiply negative), then the generated count.
        assert_eq!(logits, [1.0, 1.0 - 0.5, -4.0]);
    }

    #[test]
    fn ids_past_the_vocabulary_are_skipped() {
        let mut logits = [1.0f32];
        penalties(2.0, 1.0, 1.0).apply(&mut logits, &[7], &generated(&[9]));
        assert_eq!(logits, [1.0]);
    }

    #[test]
    fn zero_penalties_are_none_and_out_of_range_ones_are_invalid() {
        assert!(penalties(1.0, 0.0, 0.0).are_none());
        assert!(penalties(f32::NAN, 0.0, 0.0).are_none());
        assert!(!penalties(1.0, 0.0, 0.1).are_none());
        assert_eq!(penalties(1.0, 2.0, -2.0).invalid(), None);
        let message = penalties(1.0, 0.0, 2.5).invalid().unwrap();
        assert!(message.contains("presence_penalty"), "{message}");
        assert!(penalties(1.0, f32::INFINITY, 0.0).invalid().is_some());
    }
}
