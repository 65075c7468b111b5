//! The generation request as it sits on the queue.
//!
//! The gateway has already validated and bounded every field; a worker still treats the payload
//! as untrusted (a poison message is terminated, not retried).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One queued request: what to generate, for which model, and how to sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationRequest {
    pub id: Uuid,
    /// The model name as the client wrote it (already checked against the known models).
    pub model: String,
    pub prompt: Prompt,
    pub params: SamplingParams,
}

/// A raw completion prompt or a chat conversation the worker renders with the model's template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Prompt {
    Text(String),
    Chat(Vec<ChatMessage>),
}

impl Prompt {
    /// A stable string identifying the prompt's content (for deterministic test backends).
    pub fn hash_key(&self) -> String {
        match self {
            Prompt::Text(text) => text.clone(),
            Prompt::Chat(messages) => messages
                .iter()
                .map(|m| match &m.name {
                    None => format!("{}\u{0}{}\u{0}", m.role, m.content),
                    Some(name) => format!("{}\u{0}{}\u{0}{name}\u{0}", m.role, m.content),
                })
                .collect(),
        }
    }

    /// Characters of prompt text, a cheap upper-bound proxy for its size.
    pub fn char_len(&self) -> usize {
        match self {
            Prompt::Text(text) => text.len(),
            Prompt::Chat(messages) => messages.iter().map(|m| m.content.len()).sum(),
        }
    }
}

/// One chat turn; `role` is `system`, `user`, `assistant` or `tool`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
    /// The participant's name (OpenAI's `name`), given to the chat template as Hugging Face and
    /// vLLM give it; most templates do not use it. Absent from older messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Sampling parameters after validation and defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplingParams {
    pub max_tokens: u32,
    /// 0 means greedy decoding, and so does anything below [`Self::GREEDY_BELOW_TEMPERATURE`].
    pub temperature: f32,
    pub top_p: f32,
    /// 0 means no top-k cut.
    pub top_k: u32,
    /// Always set: the gateway draws one when the client gave none, so a redelivered request
    /// regenerates the same tokens and the gateway can resume a stream without repeating itself.
    pub seed: u64,
    pub stop: Vec<String>,
    /// 1.0 means none.
    pub repetition_penalty: f32,
    /// OpenAI's: subtracted from a token's logit once per time it was generated so far in this
    /// completion; 0 means none. Within [`Self::PENALTY_RANGE`]. Absent from messages queued
    /// before it existed, hence the default.
    #[serde(default)]
    pub frequency_penalty: f32,
    /// OpenAI's: subtracted once from the logit of every token generated so far in this
    /// completion; 0 means none. Within [`Self::PENALTY_RANGE`].
    #[serde(default)]
    pub presence_penalty: f32,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            max_tokens: 16,
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            seed: 0,
            stop: Vec::new(),
            repetition_penalty: 1.0,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
        }
    }
}

impl SamplingParams {
    /// Temperatures below this decode greedily. Logits divided by a temperature near f32's
    /// smallest (1e-38) overflow to infinities and softmax gives NaN; anything this cold picks
    /// the top token anyway. vLLM draws the line at the same value.
    pub const GREEDY_BELOW_TEMPERATURE: f32 = 1e-5;

    /// OpenAI's range for `frequency_penalty` and `presence_penalty`.
    pub const PENALTY_RANGE: std::ops::RangeInclusive<f32> = -2.0..=2.0;

    /// The first of `frequency_penalty` and `presence_penalty` that is not a number within
    /// [`Self::PENALTY_RANGE`], with its value: the gateway refuses such a request, and a worker
    /// treats one that reaches it anyway as invalid.
    pub fn penalty_out_of_range(&self) -> Option<(&'static str, f32)> {
        [
            ("frequency_penalty", self.frequency_penalty),
            ("presence_penalty", self.presence_penalty),
        ]
        .into_iter()
        .find(|(_, value)| !Self::PENALTY_RANGE.contains(value))
    }

    /// Whether these parameters ask for greedy decoding.
    pub fn is_greedy(&self) -> bool {
        !(self.temperature.is_finite() && self.temperature >= Self::GREEDY_BELOW_TEMPERATURE)
    }
}

impl GenerationRequest {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("GenerationRequest always serialises")
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_request_round_trips() {
        let request = GenerationRequest {
            id: Uuid::now_v7(),
            model: "m".into(),
            prompt: Prompt::Chat(vec![ChatMessage {
                role: "user".into(),
                content: "hi".into(),
                name: Some("ann".into()),
            }]),
            params: SamplingParams {
                seed: 7,
                stop: vec!["\n\n".into()],
                ..Default::default()
            },
        };
        assert_eq!(
            GenerationRequest::from_json(&request.to_json()).unwrap(),
            request
        );
    }

    #[test]
    fn a_message_queued_before_the_openai_penalties_still_decodes() {
        let old = serde_json::json!({
            "id": Uuid::now_v7(),
            "model": "m",
            "prompt": {"kind": "text", "value": "x"},
            "params": {"max_tokens": 4, "temperature": 0.0, "top_p": 1.0, "top_k": 0,
                       "seed": 1, "stop": [], "repetition_penalty": 1.0},
        });
        let request = GenerationRequest::from_json(old.to_string().as_bytes()).unwrap();
        assert_eq!(request.params.frequency_penalty, 0.0);
        assert_eq!(request.params.presence_penalty, 0.0);
        assert_eq!(request.params.penalty_out_of_range(), None);
    }

    #[test]
    fn penalties_outside_openais_range_are_named() {
        let params = |frequency_penalty, presence_penalty| SamplingParams {
            frequency_penalty,
            presence_penalty,
            ..Default::default()
        };
        assert_eq!(params(2.0, -2.0).penalty_out_of_range(), None);
        assert_eq!(
            params(2.5, 0.0).penalty_out_of_range(),
            Some(("frequency_penalty", 2.5))
        );
        let nan = params(0.0, f32::NAN).penalty_out_of_range().unwrap();
        assert_eq!(nan.0, "presence_penalty");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(GenerationRequest::from_json(b"\xff\x00not json").is_err());
        assert!(GenerationRequest::from_json(br#"{"id":"x"}"#).is_err());
    }
}
