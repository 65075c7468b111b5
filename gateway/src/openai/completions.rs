//! `POST /v1/completions`: the request, its whole answer and its stream chunks.
//!
//! With `suffix`, the prompt is the code before the cursor and the answer the middle the model
//! fills in, from its own fill-in-the-middle tokens (the worker builds that prompt).

use super::common::{parse_generation_body, required_model, OneOrMany, SamplingFields, UsageBody};
use super::endpoint::{to_json, GenerationEndpoint, OpenAiChunks};
use super::fields;
use super::json::ApiBody;
use super::logprobs::CompletionLogprobs;
use super::response::ResponseBody;
use crate::error::ApiError;
use crate::generation::{ChoiceOutput, ChoiceToken};
use coder_nats::{FinishReason, Infill, Prompt};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The most alternatives completions' `logprobs` may ask for (OpenAI's limit).
pub const MAX_LOGPROBS: u32 = 5;

#[derive(Debug, Deserialize)]
pub struct CompletionRequest {
    pub model: Option<String>,
    pub prompt: Option<serde_json::Value>,
    /// The code after the cursor: asks for fill-in-the-middle.
    pub suffix: Option<String>,
    /// The chosen tokens' log probabilities and this many alternatives' (0 to 5).
    pub logprobs: Option<u32>,
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

    /// The prompt: a string, or a list holding exactly one string; with `suffix`, the prefix
    /// of a fill-in-the-middle prompt.
    fn prompt(&self) -> Result<Prompt, ApiError> {
        let text = self.prompt_text()?;
        Ok(match &self.suffix {
            None => Prompt::Text(text),
            Some(suffix) => Prompt::Infill(Infill {
                prefix: text,
                suffix: suffix.clone(),
                files: Vec::new(),
            }),
        })
    }

    fn logprobs(&self) -> Result<Option<u32>, ApiError> {
        match self.logprobs {
            Some(count) if count > MAX_LOGPROBS => Err(ApiError::bad_request(
                "logprobs",
                format!("`logprobs` must be between 0 and {MAX_LOGPROBS}, got {count}"),
            )),
            logprobs => Ok(logprobs),
        }
    }

    fn sampling(&self) -> &SamplingFields {
        &self.sampling
    }

    fn answer(
        id: Uuid,
        model: &str,
        choices: Vec<ChoiceOutput>,
        usage: UsageBody,
    ) -> CompletionResponse {
        let choices = choices
            .into_iter()
            .zip(0..)
            .map(|(choice, index)| CompletionChoice {
                text: choice.text,
                index,
                logprobs: choice
                    .logprobs
                    .map(|tokens| CompletionLogprobs::new(&tokens, 0).0),
                finish_reason: Some(choice.finish_reason.as_str()),
            })
            .collect();
        CompletionResponse::new(id, OBJECT, model, choices, Some(usage))
    }
}

impl CompletionRequest {
    fn prompt_text(&self) -> Result<String, ApiError> {
        let value = self
            .prompt
            .clone()
            .ok_or_else(|| ApiError::bad_request("prompt", "`prompt` is required"))?;
        match serde_json::from_value::<OneOrMany>(value) {
            Ok(OneOrMany::One(text)) => Ok(text),
            Ok(OneOrMany::Many(mut texts)) if texts.len() == 1 => Ok(texts.remove(0)),
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
}

/// A whole answer and a stream chunk have the same shape here.
pub type CompletionResponse = ResponseBody<CompletionChoice>;

const OBJECT: &str = "text_completion";

#[derive(Debug, Serialize)]
pub struct CompletionChoice {
    pub text: String,
    pub index: u32,
    pub logprobs: Option<CompletionLogprobs>,
    pub finish_reason: Option<&'static str>,
}

impl CompletionResponse {
    /// A stream chunk of one choice, with text, or with the finish reason.
    pub fn chunk(id: Uuid, model: &str, choice: CompletionChoice) -> Self {
        Self::new(id, OBJECT, model, vec![choice], None)
    }

    /// The final usage-only chunk (`stream_options.include_usage`).
    pub fn usage_chunk(id: Uuid, model: &str, usage: UsageBody) -> Self {
        Self::new(id, OBJECT, model, Vec::new(), Some(usage))
    }
}

/// Completions stream only text: no opening chunk.
#[derive(Default)]
pub struct CompletionChunks {
    /// Per choice, the character offset its next token starts at (`text_offset`).
    offsets: Vec<usize>,
}

impl OpenAiChunks for CompletionChunks {
    fn opening(&self, _: Uuid, _: &str, _: u32) -> Vec<String> {
        Vec::new()
    }

    fn token(&mut self, id: Uuid, model: &str, token: ChoiceToken) -> String {
        let index = token.choice as usize;
        if self.offsets.len() <= index {
            self.offsets.resize(index + 1, 0);
        }
        let logprobs = token.logprobs.map(|logprobs| {
            let (logprobs, next) = CompletionLogprobs::new(&[logprobs], self.offsets[index]);
            self.offsets[index] = next;
            logprobs
        });
        let choice = CompletionChoice {
            text: token.text,
            index: token.choice,
            logprobs,
            finish_reason: None,
        };
        to_json(&CompletionResponse::chunk(id, model, choice))
    }

    fn finish(&self, id: Uuid, model: &str, choice: u32, finish_reason: FinishReason) -> String {
        let choice = CompletionChoice {
            text: String::new(),
            index: choice,
            logprobs: None,
            finish_reason: Some(finish_reason.as_str()),
        };
        to_json(&CompletionResponse::chunk(id, model, choice))
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
        assert_eq!(
            parse(r#"{"prompt":"def f(","suffix":"):"}"#).unwrap(),
            Prompt::Infill(Infill {
                prefix: "def f(".into(),
                suffix: "):".into(),
                files: Vec::new(),
            })
        );
    }

    #[test]
    fn logprobs_above_five_are_refused_by_name() {
        let logprobs = |json: &str| {
            CompletionRequest::from_json(json.as_bytes())
                .unwrap()
                .logprobs()
        };
        assert_eq!(logprobs(r#"{"logprobs": 5}"#).unwrap(), Some(5));
        assert_eq!(logprobs(r#"{"logprobs": 0}"#).unwrap(), Some(0));
        assert_eq!(logprobs(r#"{}"#).unwrap(), None);
        match logprobs(r#"{"logprobs": 6}"#) {
            Err(ApiError::BadRequest { param, .. }) => {
                assert_eq!(param.as_deref(), Some("logprobs"))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            param_of(r#"{"logprobs": true}"#).as_deref(),
            Some("logprobs")
        );
    }
}
