//! Next-token choice from logits: greedy, or seeded sampling with temperature, top-k and top-p,
//! after the penalties against repetition ([`penalties`]), among the tokens a grammar allows
//! when there is one (the mask comes first: penalties, temperature and the cuts see only
//! allowed tokens, and so do the log probabilities).
//!
//! # Layout
//!
//! - [`penalties`]: `repetition_penalty`, `frequency_penalty` and `presence_penalty` on logits.
//! - [`logprobs`]: log probabilities of the chosen token and its alternatives.

pub mod logprobs;
mod penalties;

use candle_core::{DType, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};
use coder_nats::SamplingParams;

use crate::backend::constraint::AllowedTokens;

use logprobs::{IdLogprobs, LogDistribution};
use penalties::{GeneratedCounts, Penalties};

/// How many of the most recent tokens (prompt included) the repetition penalty looks at, as in
/// llama.cpp's `repeat_last_n`.
pub const REPETITION_WINDOW: usize = 64;

/// One generation's sampler; its RNG is seeded from the request, so the same request gives the
/// same tokens.
pub struct Sampler {
    processor: LogitsProcessor,
    penalties: Penalties,
    /// The tokens this sampler has picked: exactly the completion so far, as a sampler serves
    /// one completion and every token it picks is generated. The frequency and presence
    /// penalties count these, not the prompt; `history` alone cannot tell the two apart.
    generated: GeneratedCounts,
    /// Alternatives per token to report log probabilities of; `None`: no log probabilities.
    logprobs: Option<usize>,
    /// What the logits are divided by for the log probabilities: 1 when greedy.
    temperature: f32,
}

/// A sampled token, with its log probabilities when the request asked for them.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampled {
    pub token: u32,
    pub logprobs: Option<IdLogprobs>,
}

impl Sampler {
    pub fn new(params: &SamplingParams) -> Self {
        Self {
            processor: LogitsProcessor::from_sampling(params.seed, sampling(params)),
            penalties: Penalties::new(params),
            generated: GeneratedCounts::default(),
            logprobs: params.logprobs.map(|top| top as usize),
            temperature: match params.is_greedy() {
                true => 1.0,
                false => params.temperature,
            },
        }
    }

    /// Picks the next token from `logits` (`(vocab,)`), `history` being every token so far
    /// (prompt and completion). Call it once per generated token, with a new sampler per
    /// completion: the frequency and presence penalties count what it picked before.
    ///
    /// A frequency or presence penalty outside OpenAI's range is an error (the gateway never
    /// sends one).
    #[cfg(test)]
    pub fn sample(&mut self, logits: &Tensor, history: &[u32]) -> candle_core::Result<u32> {
        Ok(self.sample_with_logprobs(logits, history, None)?.token)
    }

    /// As [`Self::sample`], with the log probabilities the request asked for, read from the
    /// distribution the token was drawn from (see [`logprobs`]), and only among `allowed`
    /// tokens when given.
    pub fn sample_with_logprobs(
        &mut self,
        logits: &Tensor,
        history: &[u32],
        allowed: Option<&AllowedTokens>,
    ) -> candle_core::Result<Sampled> {
        if self.penalties.are_none() && self.logprobs.is_none() && allowed.is_none() {
            let token = self.processor.sample(logits)?;
            self.generated.record(token);
            return Ok(Sampled {
                token,
                logprobs: None,
            });
        }
        if let Some(reason) = self.penalties.invalid() {
            return Err(candle_core::Error::Msg(reason));
        }
        let mut values = logits.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        if let Some(allowed) = allowed {
            allowed.mask_logits(&mut values);
        }
        if !self.penalties.are_none() {
            let recent = &history[history.len().saturating_sub(REPETITION_WINDOW)..];
            self.penalties.apply(&mut values, recent, &self.generated);
        }
        let token =
            self.processor
                .sample(&Tensor::from_slice(&values, values.len(), logits.device())?)?;
        self.generated.record(token);
        let logprobs = self
            .logprobs
            .map(|top| LogDistribution::new(&values, self.temperature).of(token, top));
        Ok(Sampled { token, logprobs })
    }
}

fn sampling(params: &SamplingParams) -> Sampling {
    // Colder than this, dividing the logits overflows; see the constant.
    if params.is_greedy() {
        return Sampling::ArgMax;
    }
    let temperature = params.temperature as f64;
    let k = params.top_k as usize;
    let p = params.top_p as f64;
    let nucleus = p > 0.0 && p < 1.0;
    match (k > 0, nucleus) {
        (true, true) => Sampling::TopKThenTopP { k, p, temperature },
        (true, false) => Sampling::TopK { k, temperature },
        (false, true) => Sampling::TopP { p, temperature },
        (false, false) => Sampling::All { temperature },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn params(temperature: f32, seed: u64) -> SamplingParams {
        SamplingParams {
            temperature,
            seed,
            top_p: 0.9,
            top_k: 5,
            ..Default::default()
        }
    }

    fn logits() -> Tensor {
        Tensor::new(&[0.1f32, 2.0, 0.5, 1.9, -1.0, 0.0, 1.0, 1.5], &Device::Cpu).unwrap()
    }

    #[test]
    fn zero_temperature_is_greedy() {
        let mut sampler = Sampler::new(&params(0.0, 1));
        assert_eq!(sampler.sample(&logits(), &[]).unwrap(), 1);
    }

    #[test]
    fn a_temperature_too_small_to_divide_by_is_greedy() {
        // Logits of a real model's size: divided by 1e-38 they overflow to infinities, and
        // softmax turns those into NaN.
        let logits = Tensor::new(&[12.0f32, 31.5, -4.0, 30.9, 0.0], &Device::Cpu).unwrap();
        for temperature in [1e-38, f32::MIN_POSITIVE, 1e-30, 1e-6] {
            for (top_k, top_p) in [(0, 1.0), (5, 0.9), (0, 0.9), (5, 1.0)] {
                let mut sampler = Sampler::new(&SamplingParams {
                    temperature,
                    top_k,
                    top_p,
                    ..Default::default()
                });
                let token = sampler.sample(&logits, &[]);
                assert_eq!(
                    token.ok(),
                    Some(1),
                    "temperature {temperature}, top_k {top_k}, top_p {top_p}"
                );
            }
        }
    }

    #[test]
    fn same_seed_same_tokens() {
        let draw = |seed| {
            let mut sampler = Sampler::new(&params(1.5, seed));
            (0..32)
                .map(|_| sampler.sample(&logits(), &[]).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }

    #[test]
    fn repetition_penalty_demotes_seen_tokens() {
        let mut sampler = Sampler::new(&SamplingParams {
            temperature: 0.0,
            repetition_penalty: 2.0,
            ..Default::default()
        });
        // Token 1 (2.0) halves to 1.0 and loses to token 3 (1.9).
        assert_eq!(sampler.sample(&logits(), &[1]).unwrap(), 3);
    }

    #[test]
    fn frequency_penalty_counts_only_what_the_sampler_generated() {
        let mut sampler = Sampler::new(&SamplingParams {
            temperature: 0.0,
            frequency_penalty: 0.6,
            ..Default::default()
        });
        // Token 1 (2.0) in the prompt costs nothing: it wins the first pick.
        assert_eq!(sampler.sample(&logits(), &[1, 1, 1]).unwrap(), 1);
        // Generated once, it drops to 1.4: token 3 (1.9) wins; then 3 drops to 1.3 and both
        // lose to token 7 (1.5); then 7 drops to 0.9 and 1 (1.4) wins again.
        assert_eq!(sampler.sample(&logits(), &[1, 1, 1, 1]).unwrap(), 3);
        assert_eq!(sampler.sample(&logits(), &[1, 1, 1, 1, 3]).unwrap(), 7);
        assert_eq!(sampler.sample(&logits(), &[1, 1, 1, 1, 3, 7]).unwrap(), 1);
    }

    #[test]
    fn presence_penalty_is_paid_once_per_token() {
        let mut sampler = Sampler::new(&SamplingParams {
            temperature: 0.0,
            presence_penalty: 0.15,
            ..Default::default()
        });
        // 2.0 wins, then pays 0.15 once: 1.85 < 1.9, so 3; then 1.85 > 1.75, so 1 again, and
        // 1 again (still 1.85: presence does not grow with the count).
        let picks: Vec<u32> = (0..4)
            .map(|_| sampler.sample(&logits(), &[]).unwrap())
            .collect();
        assert_eq!(picks, [1, 3, 1, 1]);
    }

    #[test]
    fn a_penalty_outside_openais_range_is_an_error() {
        let mut sampler = Sampler::new(&SamplingParams {
            presence_penalty: f32::NAN,
            ..Default::default()
        });
        let error = sampler.sample(&logits(), &[]).unwrap_err();
        assert!(error.to_string().contains("presence_penalty"), "{error}");
    }

    #[test]
    fn greedy_logprobs_rank_the_chosen_token_first() {
        let mut sampler = Sampler::new(&SamplingParams {
            temperature: 0.0,
            logprobs: Some(3),
            ..Default::default()
        });
        let sampled = sampler.sample_with_logprobs(&logits(), &[], None).unwrap();
        let logprobs = sampled.logprobs.unwrap();
        assert_eq!(sampled.token, 1);
        assert_eq!(logprobs.top[0], logprobs.chosen);
        let ids: Vec<u32> = logprobs.top.iter().map(|&(id, _)| id).collect();
        assert_eq!(ids, [1, 3, 7]);
        assert!(logprobs.top.iter().all(|&(_, lp)| lp <= 0.0));
    }

    #[test]
    fn logprobs_follow_the_penalties_and_the_temperature_that_sampled() {
        let chosen = |params: SamplingParams| {
            let mut sampler = Sampler::new(&SamplingParams {
                logprobs: Some(0),
                ..params
            });
            let sampled = sampler.sample_with_logprobs(&logits(), &[1], None).unwrap();
            sampled.logprobs.unwrap()
        };
        let greedy = SamplingParams {
            temperature: 0.0,
            ..Default::default()
        };
        let plain = chosen(greedy.clone());
        let penalised = chosen(SamplingParams {
            repetition_penalty: 2.0,
            ..greedy
        });
        // Token 1 is halved: token 3 is chosen, more likely than 1 was before.
        assert_eq!((plain.chosen.0, penalised.chosen.0), (1, 3));
        let after_penalty = [0.1f32, 1.0, 0.5, 1.9, -1.0, 0.0, 1.0, 1.5];
        let expected = 1.9 - after_penalty.iter().map(|v| v.exp()).sum::<f32>().ln();
        assert!(
            (penalised.chosen.1 - expected).abs() < 1e-5,
            "{penalised:?}"
        );
        assert!(penalised.top.is_empty());
        let hot = chosen(SamplingParams {
            temperature: 1.5,
            top_k: 1,
            ..Default::default()
        });
        assert_eq!(hot.chosen.0, 1);
        assert!(hot.chosen.1 < plain.chosen.1, "temperature flattens");
    }

    #[test]
    fn a_mask_leaves_only_its_tokens_to_draw() {
        let allowed = AllowedTokens::of(8, &[3, 6]);
        let mut greedy = Sampler::new(&params(0.0, 1));
        let picked = greedy.sample_with_logprobs(&logits(), &[], Some(&allowed));
        assert_eq!(picked.unwrap().token, 3, "token 1 (2.0) is masked");
        let mut hot = Sampler::new(&SamplingParams {
            temperature: 5.0,
            seed: 9,
            ..Default::default()
        });
        let draws: Vec<u32> = (0..64)
            .map(|_| {
                let sampled = hot.sample_with_logprobs(&logits(), &[], Some(&allowed));
                sampled.unwrap().token
            })
            .collect();
        assert!(draws.iter().all(|t| [3, 6].contains(t)), "{draws:?}");
        assert!(draws.contains(&3) && draws.contains(&6), "{draws:?}");
    }

    #[test]
    fn masked_logprobs_are_over_the_allowed_tokens_after_the_penalties() {
        let allowed = AllowedTokens::of(8, &[3, 6]);
        let mut sampler = Sampler::new(&SamplingParams {
            temperature: 0.0,
            repetition_penalty: 2.0,
            logprobs: Some(2),
            ..Default::default()
        });
        // Token 3 (1.9) seen halves to 0.95 and loses to token 6 (1.0).
        let sampled = sampler
            .sample_with_logprobs(&logits(), &[3], Some(&allowed))
            .unwrap();
        let logprobs = sampled.logprobs.unwrap();
        assert_eq!(sampled.token, 6);
        let expected = 1.0 - (0.95f32.exp() + 1.0f32.exp()).ln();
        assert!((logprobs.chosen.1 - expected).abs() < 1e-5, "{logprobs:?}");
        let ids: Vec<u32> = logprobs.top.iter().map(|&(id, _)| id).collect();
        assert_eq!(ids, [6, 3]);
    }

    #[test]
    fn top_k_one_is_greedy_even_when_hot() {
        let mut sampler = Sampler::new(&SamplingParams {
            temperature: 5.0,
            top_k: 1,
            ..Default::default()
        });
        assert!((0..16).all(|_| sampler.sample(&logits(), &[]).unwrap() == 1));
    }
}
