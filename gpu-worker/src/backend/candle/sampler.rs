//! Next-token choice from logits: greedy, or seeded sampling with temperature, top-k and top-p,
//! after an optional repetition penalty.

use candle_core::Tensor;
use candle_transformers::generation::{LogitsProcessor, Sampling};
use coder_nats::SamplingParams;

/// How many of the most recent tokens (prompt included) the repetition penalty looks at, as in
/// llama.cpp's `repeat_last_n`.
pub const REPETITION_WINDOW: usize = 64;

/// One generation's sampler; its RNG is seeded from the request, so the same request gives the
/// same tokens.
pub struct Sampler {
    processor: LogitsProcessor,
    repetition_penalty: f32,
}

impl Sampler {
    pub fn new(params: &SamplingParams) -> Self {
        Self {
            processor: LogitsProcessor::from_sampling(params.seed, sampling(params)),
            repetition_penalty: params.repetition_penalty,
        }
    }

    /// Picks the next token from `logits` (`(vocab,)`), `history` being every token so far.
    pub fn sample(&mut self, logits: &Tensor, history: &[u32]) -> candle_core::Result<u32> {
        let penalty = self.repetition_penalty;
        if penalty.is_finite() && penalty > 0.0 && penalty != 1.0 {
            let recent = &history[history.len().saturating_sub(REPETITION_WINDOW)..];
            let logits = candle_transformers::utils::apply_repeat_penalty(logits, penalty, recent)?;
            return self.processor.sample(&logits);
        }
        self.processor.sample(logits)
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
    fn top_k_one_is_greedy_even_when_hot() {
        let mut sampler = Sampler::new(&SamplingParams {
            temperature: 5.0,
            top_k: 1,
            ..Default::default()
        });
        assert!((0..16).all(|_| sampler.sample(&logits(), &[]).unwrap() == 1));
    }
}
