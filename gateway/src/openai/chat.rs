//! `POST /v1/chat/completions`: the request, its whole answer and its stream chunks.

use super::common::{parse_generation_body, required_model, SamplingFields, UsageBody};
use super::endpoint::{to_json, GenerationEndpoint, OpenAiChunks};
use super::fields;
use super::json::ApiBody;
use super::logprobs::ChatLogprobs;
use super::response::ResponseBody;
use super::response_format::parse_response_format;
use super::tool_call_body::{ToolCallBody, ToolCallDeltaBody};
use super::tools;
use crate::error::ApiError;
use crate::generation::{ChoiceOutput, ChoiceToken};
use coder_nats::{ChatMessage, Conversation, FinishReason, Prompt, SamplingParams};
use serde::{Deserialize, Serialize};
use serde_json::Value;
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
    /// Functions the model may call (checked in [`tools`]).
    pub tools: Option<Value>,
    pub tool_choice: Option<Value>,
    pub parallel_tool_calls: Option<Value>,
    /// Free text, JSON, or JSON following a schema (checked in [`super::response_format`]).
    pub response_format: Option<Value>,
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
    /// An assistant turn's calls.
    pub tool_calls: Option<Value>,
    /// The call a `tool` turn answers.
    pub tool_call_id: Option<Value>,
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
        let converted: Vec<ChatMessage> = messages
            .iter()
            .enumerate()
            .map(|(i, message)| convert(i, message))
            .collect::<Result<_, _>>()?;
        let tools = tools::parse_tools(self.tools.as_ref())?;
        let conversation = Conversation {
            tool_choice: tools::parse_tool_choice(self.tool_choice.as_ref(), &tools)?,
            parallel_tool_calls: tools::parse_parallel_tool_calls(
                self.parallel_tool_calls.as_ref(),
            )?,
            response_format: parse_response_format(self.response_format.as_ref())?,
            tools,
            ..Conversation::plain(converted)
        };
        // A chat that asks for nothing beyond text stays a plain chat, which every worker
        // version reads; anything more goes as a conversation, which an older worker refuses
        // rather than ignores.
        let plain = conversation.tools.is_empty()
            && conversation.response_format.is_text()
            && !conversation
                .messages
                .iter()
                .any(ChatMessage::has_tool_parts);
        Ok(match plain {
            true => Prompt::Chat(conversation.messages),
            false => Prompt::Conversation(conversation),
        })
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
                message: Some(AssistantMessage::new(choice.text, choice.tool_calls)),
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
    let role = message.role.as_str();
    let tool_calls = tools::parse_history_calls(message.tool_calls.as_ref(), role, index)?;
    let tool_call_id = tools::parse_tool_call_id(message.tool_call_id.as_ref(), role, index)?;
    Ok(ChatMessage {
        role: message.role.clone(),
        content,
        name: message.name.clone(),
        tool_calls,
        tool_call_id,
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
    /// `null` when the answer is only tool calls, as OpenAI writes it.
    pub content: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCallBody>,
}

impl AssistantMessage {
    fn new(text: String, calls: Vec<coder_nats::ToolCall>) -> Self {
        Self {
            role: ASSISTANT,
            content: (!text.is_empty() || calls.is_empty()).then_some(text),
            tool_calls: calls.into_iter().map(ToolCallBody::from).collect(),
        }
    }
}

#[derive(Debug, Default, Serialize)]
pub struct Delta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCallDeltaBody>,
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
            tool_calls: Vec::new(),
        }
    }

    pub fn usage_chunk(id: Uuid, model: &str, usage: UsageBody) -> Self {
        Self::new(id, CHUNK_OBJECT, model, Vec::new(), Some(usage))
    }
}

/// Chat streams open with the assistant's role (once per choice), then content deltas.
#[derive(Default)]
pub struct ChatChunks;

impl OpenAiChunks for ChatChunks {
    fn opening(&self, id: Uuid, model: &str, choices: u32) -> Vec<String> {
        (0..choices.max(1))
            .map(|index| {
                let delta = ChatResponse::role_delta();
                to_json(&ChatResponse::chunk(id, model, index, delta, None, None))
            })
            .collect()
    }

    fn token(&mut self, id: Uuid, model: &str, token: ChoiceToken) -> String {
        // A token that only moved a tool call on writes no `content`.
        let content = (!token.text.is_empty() || token.tool_calls.is_empty()).then_some(token.text);
        let delta = Delta {
            role: None,
            content,
            tool_calls: token.tool_calls.into_iter().map(Into::into).collect(),
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

    #[test]
    fn a_chat_with_tools_or_a_format_is_a_conversation_and_a_plain_one_stays_a_chat() {
        let plain =
            request(r#"{"messages":[{"role":"user","content":"hi"}],"tool_choice":"none"}"#);
        assert!(matches!(plain.prompt().unwrap(), Prompt::Chat(_)));

        let tools = request(
            r#"{"messages":[{"role":"user","content":"weather?"}],
                "tools":[{"type":"function","function":{"name":"get_weather"}}],
                "tool_choice":"required","parallel_tool_calls":false}"#,
        );
        match tools.prompt().unwrap() {
            Prompt::Conversation(conversation) => {
                assert_eq!(conversation.tools[0].name, "get_weather");
                assert_eq!(conversation.tool_choice, coder_nats::ToolChoice::Required);
                assert!(!conversation.parallel_tool_calls);
            }
            other => panic!("{other:?}"),
        }

        let json = request(
            r#"{"messages":[{"role":"user","content":"a point"}],
                "response_format":{"type":"json_object"}}"#,
        );
        assert!(matches!(json.prompt().unwrap(), Prompt::Conversation(_)));

        // A history with calls and results, even without tools on this turn.
        let history = request(
            r#"{"messages":[{"role":"user","content":"weather?"},
                {"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function",
                  "function":{"name":"get_weather","arguments":"{}"}}]},
                {"role":"tool","tool_call_id":"call_1","content":"sunny"}]}"#,
        );
        match history.prompt().unwrap() {
            Prompt::Conversation(conversation) => {
                let [_, call, result] = &conversation.messages[..] else {
                    panic!("{conversation:?}")
                };
                assert_eq!((call.content.as_str(), call.tool_calls.len()), ("", 1));
                assert_eq!(result.tool_call_id.as_deref(), Some("call_1"));
            }
            other => panic!("{other:?}"),
        }

        let unanswered = request(r#"{"messages":[{"role":"tool","content":"sunny"}]}"#);
        match unanswered.prompt() {
            Err(ApiError::BadRequest { param, .. }) => {
                assert_eq!(param.as_deref(), Some("messages[0].tool_call_id"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn calls_are_written_as_openai_writes_them() {
        let call = coder_nats::ToolCall {
            id: "call_1".into(),
            name: "f".into(),
            arguments: "{}".into(),
        };
        let message =
            serde_json::to_value(AssistantMessage::new(String::new(), vec![call])).unwrap();
        assert_eq!(message["content"], Value::Null);
        assert_eq!(message["tool_calls"][0]["function"]["name"], "f");
        let text = serde_json::to_value(AssistantMessage::new("hi".into(), Vec::new())).unwrap();
        assert_eq!(
            text,
            serde_json::json!({"role": "assistant", "content": "hi"})
        );

        let token = ChoiceToken {
            choice: 0,
            text: String::new(),
            logprobs: None,
            tool_calls: vec![coder_nats::ToolCallDelta {
                index: 0,
                arguments: "{".into(),
                ..Default::default()
            }],
        };
        let chunk = ChatChunks.token(Uuid::nil(), "m", token);
        let chunk: Value = serde_json::from_str(&chunk).unwrap();
        let delta = &chunk["choices"][0]["delta"];
        assert_eq!(delta.get("content"), None, "{chunk}");
        assert_eq!(delta["tool_calls"][0]["function"]["arguments"], "{");
    }
}
