//! The generation request as it sits on the queue.
//!
//! The gateway has already validated and bounded every field; a worker still treats the payload
//! as untrusted (a poison message is terminated, not retried).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::stable_hash::mix;
use crate::structure::{Conversation, ToolCall};

/// One queued request: what to generate, for which model, and how to sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationRequest {
    pub id: Uuid,
    /// The model name as the client wrote it (already checked against the known models).
    pub model: String,
    pub prompt: Prompt,
    pub params: SamplingParams,
}

/// A raw completion prompt, a chat conversation the worker renders with the model's template,
/// or a fill-in-the-middle request the worker renders with the model's FIM tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Prompt {
    Text(String),
    Chat(Vec<ChatMessage>),
    /// Added with fill-in-the-middle: a worker older than it refuses the message as poison.
    Infill(Infill),
    /// A chat with tools, a required call, a JSON answer, or tool calls in its history. Added
    /// with tool calls: a worker older than it refuses the message as poison.
    Conversation(Conversation),
}

/// Fill-in-the-middle: the code before and after the cursor, and other files of the project
/// for context. All of it is text: a special-token spelling inside it is never a control token.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Infill {
    pub prefix: String,
    pub suffix: String,
    /// Other files, rendered before the prefix in the model's repository-level format (Qwen2.5-
    /// Coder's `<|file_sep|>`), as llama.cpp's `/infill` renders its `input_extra`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<InfillFile>,
}

/// One file given as context to a fill-in-the-middle request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InfillFile {
    pub name: String,
    pub text: String,
}

impl Prompt {
    /// A stable string identifying the prompt's content (for deterministic test backends).
    pub fn hash_key(&self) -> String {
        match self {
            Prompt::Text(text) => text.clone(),
            Prompt::Chat(messages) => messages_key(messages),
            Prompt::Conversation(conversation) => format!(
                "{}\u{2}{}",
                messages_key(&conversation.messages),
                serde_json::to_string(&(
                    &conversation.tools,
                    &conversation.tool_choice,
                    conversation.parallel_tool_calls,
                    &conversation.response_format,
                ))
                .expect("tools serialise")
            ),
            Prompt::Infill(infill) => {
                let files: String = infill
                    .files
                    .iter()
                    .map(|f| format!("{}\u{0}{}\u{0}", f.name, f.text))
                    .collect();
                format!("{files}\u{1}{}\u{1}{}", infill.prefix, infill.suffix)
            }
        }
    }

    /// Characters of prompt text, a cheap upper-bound proxy for its size.
    pub fn char_len(&self) -> usize {
        match self {
            Prompt::Text(text) => text.len(),
            Prompt::Chat(messages) => messages.iter().map(ChatMessage::char_len).sum(),
            Prompt::Conversation(conversation) => {
                let messages: usize = conversation
                    .messages
                    .iter()
                    .map(ChatMessage::char_len)
                    .sum();
                let tools: usize = conversation
                    .tools
                    .iter()
                    .map(|tool| {
                        let schema = tool.parameters.as_ref().map_or(0, |p| p.to_string().len());
                        tool.name.len() + tool.description.as_ref().map_or(0, String::len) + schema
                    })
                    .sum();
                messages + tools
            }
            Prompt::Infill(infill) => {
                let files: usize = infill
                    .files
                    .iter()
                    .map(|f| f.name.len() + f.text.len())
                    .sum();
                files + infill.prefix.len() + infill.suffix.len()
            }
        }
    }
}

/// The messages' part of [`Prompt::hash_key`].
fn messages_key(messages: &[ChatMessage]) -> String {
    messages
        .iter()
        .map(|m| {
            let mut key = format!("{}\u{0}{}\u{0}", m.role, m.content);
            if let Some(name) = &m.name {
                key.push_str(&format!("{name}\u{0}"));
            }
            for call in &m.tool_calls {
                key.push_str(&format!(
                    "{}\u{3}{}\u{3}{}\u{0}",
                    call.id, call.name, call.arguments
                ));
            }
            if let Some(id) = &m.tool_call_id {
                key.push_str(&format!("{id}\u{4}"));
            }
            key
        })
        .collect()
}

/// One chat turn; `role` is `system`, `developer`, `user`, `assistant` or `tool`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    /// The text (empty for an assistant turn that only called tools).
    pub content: String,
    /// The participant's name (OpenAI's `name`), given to the chat template as Hugging Face and
    /// vLLM give it; most templates do not use it. Absent from older messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The calls an assistant turn made (only in a [`Prompt::Conversation`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// Which call a `tool` turn answers (only in a [`Prompt::Conversation`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl ChatMessage {
    /// A turn with just a role and text.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
            ..Self::default()
        }
    }

    /// Characters of text the turn holds.
    pub fn char_len(&self) -> usize {
        let calls: usize = self
            .tool_calls
            .iter()
            .map(|call| call.id.len() + call.name.len() + call.arguments.len())
            .sum();
        self.content.len() + self.name.as_ref().map_or(0, String::len) + calls
    }

    /// Whether the turn holds anything only a [`Prompt::Conversation`] carries.
    pub fn has_tool_parts(&self) -> bool {
        !self.tool_calls.is_empty() || self.tool_call_id.is_some()
    }
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
    /// Choices to generate, each its own sequence with its own seed ([`Self::choice_seed`]);
    /// 1 to [`Self::MAX_CHOICES`]. Absent from messages queued before it existed: 1.
    #[serde(default = "one")]
    pub n: u32,
    /// Log probabilities: `None` for none, `Some(k)` for the chosen token's and the `k` most
    /// likely alternatives' (0 to [`Self::MAX_TOP_LOGPROBS`]), per generated token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<u32>,
}

fn one() -> u32 {
    1
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
            n: 1,
            logprobs: None,
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

    /// The most choices one request may ask for (`n`).
    pub const MAX_CHOICES: u32 = 8;

    /// The most alternatives per token a request may ask log probabilities of (chat's
    /// `top_logprobs` limit; completions' `logprobs` stops at 5).
    pub const MAX_TOP_LOGPROBS: u32 = 20;

    /// The seed of choice `choice`: the request's own for choice 0 (so `n: 1` and the first of
    /// `n` choices are the same answer), a SplitMix64 step away from it for the others. The same
    /// seed always gives the same `n` seeds, so a seeded request gives the same choices.
    pub fn choice_seed(&self, choice: u32) -> u64 {
        if choice == 0 {
            return self.seed;
        }
        mix(self
            .seed
            .wrapping_add(u64::from(choice).wrapping_mul(0x9E37_79B9_7F4A_7C15)))
    }

    /// The parameters of choice `choice` alone: its seed, one choice.
    pub fn for_choice(&self, choice: u32) -> Self {
        Self {
            seed: self.choice_seed(choice),
            n: 1,
            ..self.clone()
        }
    }

    /// The first of `n` and `logprobs` outside its bounds, with a message naming it: the gateway
    /// refuses such a request, and a worker treats one that reaches it anyway as invalid.
    pub fn output_out_of_range(&self) -> Option<(&'static str, String)> {
        if !(1..=Self::MAX_CHOICES).contains(&self.n) {
            let message = format!(
                "`n` must be between 1 and {}, got {}",
                Self::MAX_CHOICES,
                self.n
            );
            return Some(("n", message));
        }
        match self.logprobs {
            Some(k) if k > Self::MAX_TOP_LOGPROBS => Some((
                "top_logprobs",
                format!(
                    "at most {} top log probabilities, got {k}",
                    Self::MAX_TOP_LOGPROBS
                ),
            )),
            _ => None,
        }
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
                ..Default::default()
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
    fn choice_seeds_are_distinct_stable_and_start_with_the_requests() {
        let params = SamplingParams {
            seed: 42,
            n: 8,
            ..Default::default()
        };
        let seeds: Vec<u64> = (0..8).map(|i| params.choice_seed(i)).collect();
        assert_eq!(seeds[0], 42);
        let distinct: std::collections::HashSet<_> = seeds.iter().collect();
        assert_eq!(distinct.len(), 8, "{seeds:?}");
        assert_eq!(
            seeds,
            (0..8).map(|i| params.choice_seed(i)).collect::<Vec<_>>()
        );
        // Pinned: redelivered requests, and workers of other builds, derive the same seeds.
        assert_eq!(seeds[1], 0xbdd7_3226_2feb_6e95);
        assert_eq!(seeds[7], 0x37e9_671c_4537_6d5d);
        let one = params.for_choice(3);
        assert_eq!((one.n, one.seed), (1, seeds[3]));
    }

    #[test]
    fn a_message_queued_before_n_and_logprobs_asks_for_one_plain_choice() {
        let old = serde_json::json!({"max_tokens": 4, "temperature": 0.0, "top_p": 1.0,
            "top_k": 0, "seed": 1, "stop": [], "repetition_penalty": 1.0});
        let params: SamplingParams = serde_json::from_value(old).unwrap();
        assert_eq!((params.n, params.logprobs), (1, None));
        assert_eq!(params.output_out_of_range(), None);
    }

    #[test]
    fn n_and_logprobs_outside_their_bounds_are_named() {
        let params = |n, logprobs| SamplingParams {
            n,
            logprobs,
            ..Default::default()
        };
        assert_eq!(params(8, Some(20)).output_out_of_range(), None);
        assert_eq!(params(9, None).output_out_of_range().unwrap().0, "n");
        assert_eq!(params(0, None).output_out_of_range().unwrap().0, "n");
        let top = params(1, Some(21)).output_out_of_range().unwrap();
        assert_eq!(top.0, "top_logprobs");
    }

    #[test]
    fn an_infill_prompt_round_trips_and_keys_on_both_sides() {
        let infill = |prefix: &str, suffix: &str| {
            Prompt::Infill(Infill {
                prefix: prefix.into(),
                suffix: suffix.into(),
                files: vec![InfillFile {
                    name: "a.py".into(),
                    text: "x = 1".into(),
                }],
            })
        };
        let prompt = infill("def f(", "):");
        let json = serde_json::to_string(&prompt).unwrap();
        assert_eq!(serde_json::from_str::<Prompt>(&json).unwrap(), prompt);
        assert_ne!(prompt.hash_key(), infill("def f():", "").hash_key());
        assert_eq!(prompt.char_len(), 4 + 5 + 6 + 2);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(GenerationRequest::from_json(b"\xff\x00not json").is_err());
        assert!(GenerationRequest::from_json(br#"{"id":"x"}"#).is_err());
    }
}
