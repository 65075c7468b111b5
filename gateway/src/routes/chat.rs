//! `POST /v1/chat/completions`.

use super::generate::GenerationEndpoint;
use crate::error::ApiError;
use crate::openai::chat::{ChatRequest, ChatResponse, Delta};
use crate::openai::common::{SamplingFields, UsageBody};
use crate::sse::{to_json, ChunkFormat};
use axum::response::{IntoResponse, Response};
use axum::Json;
use coder_nats::{FinishReason, Prompt, SamplingParams};
use uuid::Uuid;

impl GenerationEndpoint for ChatRequest {
    type Chunks = ChatChunks;

    fn model(&self) -> Result<&str, ApiError> {
        ChatRequest::model(self)
    }

    fn prompt(&self) -> Result<Prompt, ApiError> {
        ChatRequest::prompt(self)
    }

    fn params(&self, max_tokens_limit: u32) -> Result<SamplingParams, ApiError> {
        let (max_tokens, field) = self.max_tokens();
        self.sampling.to_params(max_tokens, field, max_tokens_limit)
    }

    fn sampling(&self) -> &SamplingFields {
        &self.sampling
    }

    fn complete(
        id: Uuid,
        model: &str,
        text: String,
        finish: FinishReason,
        usage: UsageBody,
    ) -> Response {
        Json(ChatResponse::complete(id, model, text, finish, usage)).into_response()
    }
}

#[derive(Default)]
pub struct ChatChunks;

impl ChunkFormat for ChatChunks {
    fn opening(&self, id: Uuid, model: &str) -> Vec<String> {
        vec![to_json(&ChatResponse::chunk(
            id,
            model,
            ChatResponse::role_delta(),
            None,
        ))]
    }

    fn token(&self, id: Uuid, model: &str, text: String) -> String {
        let delta = Delta {
            role: None,
            content: Some(text),
        };
        to_json(&ChatResponse::chunk(id, model, delta, None))
    }

    fn finish(&self, id: Uuid, model: &str, finish_reason: FinishReason) -> String {
        to_json(&ChatResponse::chunk(
            id,
            model,
            Delta::default(),
            Some(finish_reason),
        ))
    }

    fn usage(&self, id: Uuid, model: &str, usage: UsageBody) -> String {
        to_json(&ChatResponse::usage_chunk(id, model, usage))
    }
}
