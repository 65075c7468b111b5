//! `POST /v1/chat/completions`: the request, its whole answer and its stream chunks.

use super::common::{parse_generation_body, required_model, SamplingFields, UsageBody};
use super::endpoint::{to_json, ChunkFormat, GenerationEndpoint};
use super::fields;
use super::json::ApiBody;
use super::logprobs::ChatLogprobs;
use super::response::ResponseBody;
use crate::error::ApiError;
use crate::generation::{ChoiceOutput, ChoiceToken};
use coder_nats::{ChatMessage, FinishReason, Prompt, SamplingParams};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

const ROLES: &[&str] = &["system", "developer", "user", "assistant", "tool"];

#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    pub model: Option<String>,
    pub messages: Option<Vec<RequestMessage>>,
    pub max_completion_tokens: Option<u32>,
    /// Whether to return the chosen tokens' log probabilities.
    pub logprobs: Option<bool>,
    /// With `logprobs`, this many alternatives' too (0 to 20).
    pub top_logprobs: Option<u32>,
    /// Parsed separately from the same JSON (see [`ApiBody`]).
    #[serde(skip)]
    pub sampling: SamplingFields,
}

#[derive(Debug, Deserialize)]
pub struct RequestMessage {
    pub role: String,
    /// A string, a list of `{"type": "text", "text": ...}` parts, or null (assistant tool calls).
    pub content: Option<serde_json::Value>,
    /// The participant's name, given to the chat template.
    pub name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ContentPart {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
}

impl ApiBody for ChatRequest {
    fn from_json(bytes: &[u8]) -> Result<Self, ApiError> {
        let (request, sampling) = parse_generation_body::<Self>(bytes, fields::CHAT)?;
        Ok(Self {
            sampling,
            ..request
        })
    }
}

impl GenerationEndpoint for ChatRequest {
    type Answer = ChatResponse;
    type Chunks = ChatChunks;

    fn model(&self) -> Result<&str, ApiError> {
        required_model(&self.model)
    }

    fn sampling(&self) -> &SamplingFields {
        &self.sampling
    }

    /// `max_completion_tokens` (current OpenAI name) wins over `max_tokens` (deprecated).
    fn max_tokens(&self) -> (Option<u32>, &'static str) {
        match self.max_completion_tokens {
            Some(value) => (Some(value), "max_completion_tokens"),
            None => (self.sampling.max_tokens, "max_tokens"),
        }
    }

    fn prompt(&self) -> Result<Prompt, ApiError> {
        let messages = self
            .messages
            .as_ref()
            .filter(|m| !m.is_empty())
            .ok_or_else(|| {
                ApiError::bad_request("messages", "`messages` must be a non-empty list")
            })?;
        let converted = messages
            .iter()
            .enumerate()
            .map(|(i, message)| convert(i, message))
            .collect::<Result<_, _>>()?;
        Ok(Prompt::Chat(converted))
    }

    /// `top_logprobs` only with `logprobs: true`, as OpenAI requires.
    fn logprobs(&self) -> Result<Option<u32>, ApiError> {
        let most = SamplingParams::MAX_TOP_LOGPROBS;
        match (self.logprobs.unwrap_or(false), self.top_logprobs) {
            (_, Some(top)) if top > most => Err(ApiError::bad_request(
                "top_logprobs",
                format!("`top_logprobs` must be between 0 and {most}, got {top}"),
            )),
            (false, Some(_)) => Err(ApiError::bad_request(
                "top_logprobs",
                "`top_logprobs` needs `logprobs` to be true",
            )),
            (false, None) => Ok(None),
            (true, top) => Ok(Some(top.unwrap_or(0))),
        }
    }

    fn answer(id: Uuid, model: &str, choices: Vec<ChoiceOutput>, usage: UsageBody) -> ChatResponse {
        let choices = choices
            .into_iter()
            .zip(0..)
            .map(|(choice, index)| ChatChoice {
                index,
                message: Some(AssistantMessage {
                    role: ASSISTANT,
                    content: choice.text,
                }),
                delta: None,
                logprobs: choice.logprobs.map(|tokens| ChatLogprobs::new(&tokens)),
                finish_reason: Some(choice.finish_reason.as_str()),
            })
            .collect();
        ChatResponse::new(id, "chat.completion", model, choices, Some(usage))
    }
}

fn convert(index: usize, message: &RequestMessage) -> Result<ChatMessage, ApiError> {
    if !ROLES.contains(&message.role.as_str()) {
        return Err(ApiError::bad_request(
            format!("messages[{index}].role"),
            format!(
                "`messages[{index}].role` must be one of {}, got `{}`",
                ROLES.join(", "),
                message.role
            ),
        ));
    }
    let field = format!("messages[{index}].content");
    let content = match &message.content {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::String(text)) => text.clone(),
        Some(parts @ serde_json::Value::Array(_)) => {
            let parts: Vec<ContentPart> = serde_json::from_value(parts.clone())
                .map_err(|e| ApiError::bad_request(&field, format!("invalid `{field}`: {e}")))?;
            let mut text = String::new();
            for part in parts {
                match (part.kind.as_str(), part.text) {
                    ("text", Some(part_text)) => text.push_str(&part_text),
                    (kind, _) => {
                        return Err(ApiError::bad_request(
                            &field,
                            format!("`{field}` parts must be of type `text`, got `{kind}`"),
                        ))
                    }
                }
            }
            text
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                &field,
                format!("`{field}` must be a string or a list of text parts"),
            ))
        }
    };
    Ok(ChatMessage {
        role: message.role.clone(),
        content,
        name: message.name.clone(),
        ..ChatMessage::default()
    })
}

/// A whole answer (with `message`) or a stream chunk (with `delta`).
pub type ChatResponse = ResponseBody<ChatChoice>;

#[derive(Debug, Serialize)]
pub struct ChatChoice {
    pub index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<AssistantMessage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta: Option<Delta>,
    pub logprobs: Option<ChatLogprobs>,
    pub finish_reason: Option<&'static str>,
}

#[derive(Debug, Serialize)]
pub struct AssistantMessage {
    pub role: &'static str,
    pub content: String,
}

#[derive(Debug, Default, Serialize)]
pub struct Delta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

const ASSISTANT: &str = "assistant";
const CHUNK_OBJECT: &str = "chat.completion.chunk";

impl ChatResponse {
    /// A stream chunk of choice `index`: the first carries the role, later ones content (and
    /// their log probabilities), the last the finish reason.
    pub fn chunk(
        id: Uuid,
        model: &str,
        index: u32,
        delta: Delta,
        logprobs: Option<ChatLogprobs>,
        finish: Option<FinishReason>,
    ) -> Self {
        let choice = ChatChoice {
            index,
            message: None,
            delta: Some(delta),
            logprobs,
            finish_reason: finish.map(FinishReason::as_str),
        };
        Self::new(id, CHUNK_OBJECT, model, vec![choice], None)
    }

    pub fn role_delta() -> Delta {
        Delta {
            role: Some(ASSISTANT),
            content: Some(String::new()),
        }
    }

    pub fn usage_chunk(id: Uuid, model: &str, usage: UsageBody) -> Self {
        Self::new(id, CHUNK_OBJECT, model, Vec::new(), Some(usage))
    }
}

/// Chat streams open with the assistant's role (once per choice), then content deltas.
#[derive(Default)]
pub struct ChatChunks;

impl ChunkFormat for ChatChunks {
    fn opening(&self, id: Uuid, model: &str, choices: u32) -> Vec<String> {
        (0..choices.max(1))
            .map(|index| {
                let delta = ChatResponse::role_delta();
                to_json(&ChatResponse::chunk(id, model, index, delta, None, None))
            })
            .collect()
    }

    fn token(&mut self, id: Uuid, model: &str, token: ChoiceToken) -> String {
        let delta = Delta {
            role: None,
            content: Some(token.text),
        };
        let logprobs = token
            .logprobs
            .map(|logprobs| ChatLogprobs::new(std::slice::from_ref(&logprobs)));
        to_json(&ChatResponse::chunk(
            id,
            model,
            token.choice,
            delta,
            logprobs,
            None,
        ))
    }

    fn finish(&self, id: Uuid, model: &str, choice: u32, finish_reason: FinishReason) -> String {
        let delta = Delta::default();
        to_json(&ChatResponse::chunk(
            id,
            model,
            choice,
            delta,
            None,
            Some(finish_reason),
        ))
    }

    fn usage(&self, id: Uuid, model: &str, usage: UsageBody) -> String {
        to_json(&ChatResponse::usage_chunk(id, model, usage))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: &str) -> ChatRequest {
        ChatRequest::from_json(json.as_bytes()).unwrap()
    }

    #[test]
    fn text_parts_are_joined() {
        let r = request(
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}]}"#,
        );
        assert_eq!(
            r.prompt().unwrap(),
            Prompt::Chat(vec![ChatMessage::new("user", "ab")])
        );
    }

    #[test]
    fn bad_role_and_image_parts_name_the_message() {
        let bad_role = request(
            r#"{"messages":[{"role":"user","content":"x"},{"role":"robot","content":"y"}]}"#,
        );
        match bad_role.prompt() {
            Err(ApiError::BadRequest { param, .. }) => {
                assert_eq!(param.as_deref(), Some("messages[1].role"))
            }
            other => panic!("{other:?}"),
        }
        let image = request(r#"{"messages":[{"role":"user","content":[{"type":"image_url"}]}]}"#);
        match image.prompt() {
            Err(ApiError::BadRequest { param, .. }) => {
                assert_eq!(param.as_deref(), Some("messages[0].content"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn top_logprobs_needs_logprobs_and_stays_within_twenty() {
        let logprobs = |json: &str| request(json).logprobs();
        assert_eq!(logprobs(r#"{}"#).unwrap(), None);
        assert_eq!(logprobs(r#"{"logprobs": true}"#).unwrap(), Some(0));
        assert_eq!(
            logprobs(r#"{"logprobs": true, "top_logprobs": 20}"#).unwrap(),
            Some(20)
        );
        for refused in [
            r#"{"logprobs": true, "top_logprobs": 21}"#,
            r#"{"top_logprobs": 2}"#,
            r#"{"logprobs": false, "top_logprobs": 2}"#,
        ] {
            match logprobs(refused) {
                Err(ApiError::BadRequest { param, .. }) => {
                    assert_eq!(param.as_deref(), Some("top_logprobs"), "{refused}")
                }
                other => panic!("{refused}: {other:?}"),
            }
        }
    }

    #[test]
    fn max_completion_tokens_wins() {
        let r = request(r#"{"max_tokens": 5, "max_completion_tokens": 7}"#);
        assert_eq!(r.max_tokens(), (Some(7), "max_completion_tokens"));
    }
}
