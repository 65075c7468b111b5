//! `POST /v1/completions`.

use super::generate::GenerationEndpoint;
use crate::error::ApiError;
use crate::openai::common::{SamplingFields, UsageBody};
use crate::openai::completions::{CompletionRequest, CompletionResponse};
use crate::sse::{to_json, ChunkFormat};
use axum::response::{IntoResponse, Response};
use axum::Json;
use coder_nats::{FinishReason, Prompt, SamplingParams};
use uuid::Uuid;

impl GenerationEndpoint for CompletionRequest {
    type Chunks = CompletionChunks;

    fn model(&self) -> Result<&str, ApiError> {
        CompletionRequest::model(self)
    }

    fn prompt(&self) -> Result<Prompt, ApiError> {
        CompletionRequest::prompt(self)
    }

    fn params(&self, max_tokens_limit: u32) -> Result<SamplingParams, ApiError> {
        self.sampling
            .to_params(self.sampling.max_tokens, "max_tokens", max_tokens_limit)
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
        Json(CompletionResponse::complete(id, model, text, finish, usage)).into_response()
    }
}

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
