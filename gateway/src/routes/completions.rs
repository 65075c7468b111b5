//! `POST /v1/completions`.

use super::labelled;
use crate::error::ApiError;
use crate::middleware::RequestContext;
use crate::openai::common::UsageBody;
use crate::openai::completions::{CompletionRequest, CompletionResponse};
use crate::openai::json::ApiJson;
use crate::sse::{stream_response, to_json, ChunkFormat};
use crate::state::AppState;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use coder_nats::FinishReason;
use uuid::Uuid;

pub async fn completions(
    State(state): State<AppState>,
    Extension(context): Extension<RequestContext>,
    ApiJson(body): ApiJson<CompletionRequest>,
) -> Response {
    let model = body.model().ok().map(str::to_owned);
    labelled(model, handle(&state, &context, body).await)
}

async fn handle(
    state: &AppState,
    context: &RequestContext,
    body: CompletionRequest,
) -> Result<Response, ApiError> {
    let model = body.model()?;
    let prompt = body.prompt()?;
    let limit = state.config.max_tokens_limit;
    let params = body
        .sampling
        .to_params(body.sampling.max_tokens, "max_tokens", limit)?;
    let mut generation = state
        .start_generation(context, model, prompt, params)
        .await?;
    if body.sampling.stream {
        return stream_response(generation, CompletionChunks, body.sampling.include_usage()).await;
    }
    let (text, finish_reason, usage) = generation.collect().await?;
    let response =
        CompletionResponse::complete(context.id, model, text, finish_reason, usage.into());
    Ok(Json(response).into_response())
}

struct CompletionChunks;

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
