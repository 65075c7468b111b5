//! `POST /v1/completions`: the request, its whole answer and its stream chunks.

use super::common::{parse_generation_body, required_model, OneOrMany, SamplingFields, UsageBody};
use super::endpoint::{to_json, ChunkFormat, GenerationEndpoint};
use super::fields;
use super::json::ApiBody;
use super::response::ResponseBody;
use crate::error::ApiError;
use coder_nats::{FinishReason, Prompt};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Deserialize)]
pub struct CompletionRequest {
    pub model: Option<String>,
    pub prompt: Option<serde_json::Value>,
    /// Parsed separately from the same JSON (see [`ApiBody`]).
    #[serde(skip)]
    pub sampling: SamplingFields,
}

impl ApiBody for CompletionRequest {
    fn from_json(bytes: &[u8]) -> Result<Self, ApiError> {
        let (request, sampling) = parse_generation_body::<Self>(bytes, fields::COMPLETIONS)?;
        Ok(Self {
            sampling,
            ..request
        })
    }
}

impl GenerationEndpoint for CompletionRequest {
    type Answer = CompletionResponse;
    type Chunks = CompletionChunks;

    fn model(&self) -> Result<&str, ApiError> {
        required_model(&self.model)
    }

    /// The prompt: a string, or a list holding exactly one string.
    fn prompt(&self) -> Result<Prompt, ApiError> {
        let value = self
            .prompt
            .clone()
            .ok_or_else(|| ApiError::bad_request("prompt", "`prompt` is required"))?;
        match serde_json::from_value::<OneOrMany>(value) {
            Ok(OneOrMany::One(text)) => Ok(Prompt::Text(text)),
            Ok(OneOrMany::Many(mut texts)) if texts.len() == 1 => Ok(Prompt::Text(texts.remove(0))),
            Ok(OneOrMany::Many(_)) => Err(ApiError::bad_request(
                "prompt",
                "`prompt` must be one string (batches of prompts are not supported)",
            )),
            Err(_) => Err(ApiError::bad_request(
                "prompt",
                "`prompt` must be a string (token-id prompts are not supported)",
            )),
        }
    }

    fn sampling(&self) -> &SamplingFields {
        &self.sampling
    }

    fn answer(
        id: Uuid,
        model: &str,
        text: String,
        finish: FinishReason,
        usage: UsageBody,
    ) -> CompletionResponse {
        let choice = CompletionChoice {
            text,
            index: 0,
            logprobs: None,
            finish_reason: Some(finish.as_str()),
        };
        CompletionResponse::new(id, OBJECT, model, vec![choice], Some(usage))
    }
}

/// A whole answer and a stream chunk have the same shape here.
pub type CompletionResponse = ResponseBody<CompletionChoice>;

const OBJECT: &str = "text_completion";

#[derive(Debug, Serialize)]
pub struct CompletionChoice {
    pub text: String,
    pub index: u32,
    pub logprobs: Option<()>,
    pub finish_reason: Option<&'static str>,
}

impl CompletionResponse {
    /// A stream chunk with text, or with the finish reason when `finish` is set.
    pub fn chunk(id: Uuid, model: &str, text: String, finish: Option<FinishReason>) -> Self {
        let choice = CompletionChoice {
            text,
            index: 0,
            logprobs: None,
            finish_reason: finish.map(FinishReason::as_str),
        };
        Self::new(id, OBJECT, model, vec![choice], None)
    }

    /// The final usage-only chunk (`stream_options.include_usage`).
    pub fn usage_chunk(id: Uuid, model: &str, usage: UsageBody) -> Self {
        Self::new(id, OBJECT, model, Vec::new(), Some(usage))
    }
}

/// Completions stream only text: no opening chunk.
#[derive(Default)]
pub struct CompletionChunks;

impl ChunkFormat for CompletionChunks {
    fn opening(&self, _: Uuid, _: &str) -> Vec<String> {
        Vec::new()
    }

    fn token(&self, id: Uuid, model: &str, text: String) -> String {
        to_json(&CompletionResponse::chunk(id, model, text, None))
    }

    fn finish(&self, id: Uuid, model: &str, finish_reason: FinishReason) -> String {
        to_json(&CompletionResponse::chunk(
            id,
            model,
            String::new(),
            Some(finish_reason),
        ))
    }

    fn usage(&self, id: Uuid, model: &str, usage: UsageBody) -> String {
        to_json(&CompletionResponse::usage_chunk(id, model, usage))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param_of(json: &str) -> Option<String> {
        match CompletionRequest::from_json(json.as_bytes()) {
            Err(ApiError::BadRequest { param, .. }) => param,
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn a_bad_sampling_field_is_named() {
        assert_eq!(
            param_of(r#"{"model":"m","prompt":"p","max_tokens":"a"}"#).as_deref(),
            Some("max_tokens")
        );
        assert_eq!(
            param_of(r#"{"model":"m","prompt":"p","temperature":[1]}"#).as_deref(),
            Some("temperature")
        );
        assert_eq!(
            param_of(r#"{"model":7,"prompt":"p"}"#).as_deref(),
            Some("model")
        );
    }

    #[test]
    fn prompt_forms() {
        let parse = |json: &str| {
            CompletionRequest::from_json(json.as_bytes())
                .unwrap()
                .prompt()
        };
        assert_eq!(
            parse(r#"{"prompt":"a"}"#).unwrap(),
            Prompt::Text("a".into())
        );
        assert_eq!(
            parse(r#"{"prompt":["a"]}"#).unwrap(),
            Prompt::Text("a".into())
        );
        assert!(parse(r#"{"prompt":["a","b"]}"#).is_err());
        assert!(parse(r#"{"prompt":[1,2]}"#).is_err());
        assert!(parse(r#"{}"#).is_err());
    }
}
