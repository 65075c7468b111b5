//! Log probabilities in OpenAI's two shapes, from the worker's per-token figures.
//!
//! - Chat: `choices[].logprobs = {"content": [{token, logprob, bytes, top_logprobs: [{token,
//!   logprob, bytes}]}]}`, `top_logprobs` exactly the `top_logprobs` most likely tokens.
//! - Completions (legacy): `choices[].logprobs = {tokens, token_logprobs, top_logprobs,
//!   text_offset}`, each `top_logprobs` entry a map of the `logprobs` most likely tokens plus
//!   the chosen one (so up to `logprobs + 1` entries, as OpenAI documents), `text_offset` the
//!   character offset of each token in the choice's text.
//!
//! A log probability of minus infinity (a token a penalty ruled out) is written as -9999, as
//! OpenAI and vLLM write it: JSON has no infinity.

use coder_nats::{Logprob, TokenLogprobs};
use serde::ser::{Serialize, SerializeMap, Serializer};

/// What JSON can carry of a log probability.
fn finite(logprob: f32) -> f32 {
    if logprob.is_finite() {
        logprob.min(0.0)
    } else {
        -9999.0
    }
}

/// Chat's `logprobs` object.
#[derive(Debug, serde::Serialize)]
pub struct ChatLogprobs {
    pub content: Vec<ChatTokenLogprob>,
}

#[derive(Debug, serde::Serialize)]
pub struct ChatTokenLogprob {
    pub token: String,
    pub logprob: f32,
    pub bytes: Vec<u8>,
    pub top_logprobs: Vec<ChatTopLogprob>,
}

#[derive(Debug, serde::Serialize)]
pub struct ChatTopLogprob {
    pub token: String,
    pub logprob: f32,
    pub bytes: Vec<u8>,
}

impl From<&Logprob> for ChatTopLogprob {
    fn from(entry: &Logprob) -> Self {
        Self {
            token: entry.token.clone(),
            logprob: finite(entry.logprob),
            bytes: entry.bytes.clone(),
        }
    }
}

impl ChatLogprobs {
    pub fn new(tokens: &[TokenLogprobs]) -> Self {
        let content = tokens
            .iter()
            .map(|token| ChatTokenLogprob {
                token: token.chosen.token.clone(),
                logprob: finite(token.chosen.logprob),
                bytes: token.chosen.bytes.clone(),
                top_logprobs: token.top.iter().map(ChatTopLogprob::from).collect(),
            })
            .collect();
        Self { content }
    }
}

/// Completions' `logprobs` object.
#[derive(Debug, Default, serde::Serialize)]
pub struct CompletionLogprobs {
    pub tokens: Vec<String>,
    pub token_logprobs: Vec<f32>,
    pub top_logprobs: Vec<TopMap>,
    pub text_offset: Vec<usize>,
}

/// A `{token: logprob}` map, most likely first (a JSON object keeps the order it is written
/// in; the first of two equal spellings wins).
#[derive(Debug, Default)]
pub struct TopMap(Vec<(String, f32)>);

impl Serialize for TopMap {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (token, logprob) in &self.0 {
            map.serialize_entry(token, logprob)?;
        }
        map.end()
    }
}

impl CompletionLogprobs {
    /// `tokens`' figures, the first at character `offset` of the choice's text; returns the
    /// offset after the last, where the next chunk's tokens start.
    pub fn new(tokens: &[TokenLogprobs], mut offset: usize) -> (Self, usize) {
        let mut logprobs = Self::default();
        for token in tokens {
            let mut top = TopMap::default();
            for entry in token.top.iter().chain([&token.chosen]) {
                if !top.0.iter().any(|(seen, _)| *seen == entry.token) {
                    top.0.push((entry.token.clone(), finite(entry.logprob)));
                }
            }
            logprobs.tokens.push(token.chosen.token.clone());
            logprobs.token_logprobs.push(finite(token.chosen.logprob));
            logprobs.top_logprobs.push(top);
            logprobs.text_offset.push(offset);
            offset += token.chosen.token.chars().count();
        }
        (logprobs, offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn token(text: &str, logprob: f32, top: &[(&str, f32)]) -> TokenLogprobs {
        let entry = |t: &str, lp| Logprob::new(t.as_bytes().to_vec(), lp);
        TokenLogprobs {
            chosen: entry(text, logprob),
            top: top.iter().map(|&(t, lp)| entry(t, lp)).collect(),
        }
    }

    #[test]
    fn chat_logprobs_have_openais_shape() {
        let tokens = [token("de", -0.5, &[("de", -0.5), ("x", -1.0)])];
        let json = serde_json::to_value(ChatLogprobs::new(&tokens)).unwrap();
        assert_eq!(
            json,
            json!({"content": [{"token": "de", "logprob": -0.5, "bytes": [100, 101],
                "top_logprobs": [{"token": "de", "logprob": -0.5, "bytes": [100, 101]},
                                 {"token": "x", "logprob": -1.0, "bytes": [120]}]}]})
        );
    }

    #[test]
    fn completion_logprobs_add_the_chosen_token_and_count_offsets() {
        let tokens = [
            token("def", -0.25, &[("class", -0.5)]),
            token(" f", f32::NEG_INFINITY, &[(" f", -1.0)]),
        ];
        let (logprobs, next) = CompletionLogprobs::new(&tokens, 4);
        let json = serde_json::to_value(&logprobs).unwrap();
        assert_eq!(
            json,
            json!({"tokens": ["def", " f"], "token_logprobs": [-0.25, -9999.0],
                "top_logprobs": [{"class": -0.5, "def": -0.25}, {" f": -1.0}],
                "text_offset": [4, 7]})
        );
        assert_eq!(next, 9);
        let text = serde_json::to_string(&logprobs.top_logprobs[0]).unwrap();
        assert_eq!(text, r#"{"class":-0.5,"def":-0.25}"#, "most likely first");
    }
}
