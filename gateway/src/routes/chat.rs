//! `POST /v1/chat/completions`.

use super::labelled;
use crate::error::ApiError;
use crate::middleware::RequestContext;
use crate::openai::chat::{ChatRequest, ChatResponse, Delta};
use crate::openai::common::UsageBody;
use crate::openai::json::ApiJson;
use crate::sse::{stream_response, to_json, ChunkFormat};
use crate::state::AppState;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use coder_nats::FinishReason;
use uuid::Uuid;

pub async fn chat_completions(
    State(state): State<AppState>,
    Extension(context): Extension<RequestContext>,
    ApiJson(body): ApiJson<ChatRequest>,
) -> Response {
    let model = body.model().ok().map(str::to_owned);
    labelled(model, handle(&state, &context, body).await)
}

async fn handle(
    state: &AppState,
    context: &RequestContext,
    body: ChatRequest,
) -> Result<Response, ApiError> {
    let model = body.model()?;
    let prompt = body.prompt()?;
    let (max_tokens, field) = body.max_tokens();
    let params = body
        .sampling
        .to_params(max_tokens, field, state.config.max_tokens_limit)?;
    let mut generation = state
        .start_generation(context, model, prompt, params)
        .await?;
    if body.sampling.stream {
        return stream_response(generation, ChatChunks, body.sampling.include_usage()).await;
    }
    let (text, finish_reason, usage) = generation.collect().await?;
    let response = ChatResponse::complete(context.id, model, text, finish_reason, usage.into());
    Ok(Json(response).into_response())
}

struct ChatChunks;

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
