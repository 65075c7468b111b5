//! `--max-tokens`: one value for every request, or a range each request draws from.
//!
//! `16` asks every request for 16 tokens; `16..256` draws each request's `max_tokens` uniformly
//! from 16 to 256, both ends included. A draw depends only on the seed and the request's
//! sequence number, so a seed replays the same lengths whatever the concurrency or timing.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The `max_tokens` requests ask for: `min..max`, both included (`min == max` for one value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaxTokens {
    pub min: u32,
    pub max: u32,
}

impl MaxTokens {
    pub fn fixed(value: u32) -> Self {
        Self {
            min: value,
            max: value,
        }
    }

    /// True when every request asks for the same value.
    pub fn is_fixed(&self) -> bool {
        self.min == self.max
    }

    /// The `max_tokens` of request `seq` of a run seeded with `seed`.
    pub fn draw(&self, seed: u64, seq: u64) -> u32 {
        if self.is_fixed() {
            return self.min;
        }
        // One generator per (seed, request): the same draw whichever connection sends it.
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        key[8..16].copy_from_slice(&seq.to_le_bytes());
        StdRng::from_seed(key).random_range(self.min..=self.max)
    }
}

impl fmt::Display for MaxTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_fixed() {
            write!(f, "{}", self.min)
        } else {
            write!(f, "{}..{}", self.min, self.max)
        }
    }
}

impl FromStr for MaxTokens {
    type Err = String;

    /// `N` or `MIN..MAX`, each at least 1, `MIN` not above `MAX`.
    fn from_str(text: &str) -> Result<Self, String> {
        let number = |part: &str| -> Result<u32, String> {
            match part.trim().parse::<u32>() {
                Ok(0) => Err(format!("`{text}`: max_tokens must be at least 1")),
                Ok(n) => Ok(n),
                Err(_) => Err(format!(
                    "`{text}` is not a token count (N) or a range of them (MIN..MAX)"
                )),
            }
        };
        let range = match text.split_once("..") {
            None => Self::fixed(number(text)?),
            Some((min, max)) => Self {
                min: number(min)?,
                max: number(max)?,
            },
        };
        if range.min > range.max {
            return Err(format!("`{text}`: the range's start is above its end"));
        }
        Ok(range)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_number_or_a_range_parses() {
        assert_eq!("16".parse(), Ok(MaxTokens::fixed(16)));
        assert_eq!(" 16..256 ".parse(), Ok(MaxTokens { min: 16, max: 256 }));
        assert_eq!("7..7".parse(), Ok(MaxTokens::fixed(7)));
        assert_eq!(MaxTokens { min: 16, max: 256 }.to_string(), "16..256");
        assert_eq!(MaxTokens::fixed(16).to_string(), "16");
    }

    #[test]
    fn bad_ranges_say_what_is_wrong() {
        let error = |text: &str| text.parse::<MaxTokens>().unwrap_err();
        assert!(error("0").contains("at least 1"));
        assert!(error("0..4").contains("at least 1"));
        assert!(error("256..16").contains("start is above its end"));
        for text in ["", "many", "16..", "..16", "-1", "1..=4", "1.5"] {
            assert!(error(text).contains("is not a token count"), "{text}");
        }
    }

    #[test]
    fn draws_stay_within_the_range_and_reach_both_ends() {
        let range = MaxTokens { min: 16, max: 24 };
        let draws: Vec<u32> = (0..2_000).map(|seq| range.draw(7, seq)).collect();
        assert!(draws.iter().all(|d| (16..=24).contains(d)), "{draws:?}");
        assert_eq!(draws.iter().min(), Some(&16));
        assert_eq!(draws.iter().max(), Some(&24));
        let mean = draws.iter().map(|d| f64::from(*d)).sum::<f64>() / draws.len() as f64;
        assert!((mean - 20.0).abs() < 0.3, "a uniform draw's mean: {mean}");
    }

    #[test]
    fn a_seed_replays_the_same_draws() {
        let range = MaxTokens { min: 1, max: 1_000 };
        let run = |seed| (0..50).map(|seq| range.draw(seed, seq)).collect::<Vec<_>>();
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
        assert!((0..50).all(|seq| MaxTokens::fixed(9).draw(seq, seq) == 9));
    }
}
