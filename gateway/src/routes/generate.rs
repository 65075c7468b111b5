//! The one handler behind both generation endpoints; each endpoint supplies its body type and
//! its response and chunk formats through [`GenerationEndpoint`].

use super::labelled;
use crate::error::ApiError;
use crate::middleware::RequestContext;
use crate::openai::common::{SamplingFields, UsageBody};
use crate::openai::json::{ApiBody, ApiJson};
use crate::sse::{stream_response, ChunkFormat};
use crate::state::AppState;
use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use coder_nats::{FinishReason, Prompt, SamplingParams};
use uuid::Uuid;

/// What `/v1/completions` and `/v1/chat/completions` each define.
pub trait GenerationEndpoint: ApiBody + Send + 'static {
    type Chunks: ChunkFormat + Default;

    fn model(&self) -> Result<&str, ApiError>;
    fn prompt(&self) -> Result<Prompt, ApiError>;
    fn params(&self, max_tokens_limit: u32) -> Result<SamplingParams, ApiError>;
    fn sampling(&self) -> &SamplingFields;
    /// The whole, non-streamed answer.
    fn complete(
        id: Uuid,
        model: &str,
        text: String,
        finish: FinishReason,
        usage: UsageBody,
    ) -> Response;
}

pub async fn generate<E: GenerationEndpoint>(
    State(state): State<AppState>,
    Extension(context): Extension<RequestContext>,
    ApiJson(body): ApiJson<E>,
) -> Response {
    let model = body.model().ok().map(str::to_owned);
    labelled(model, handle(&state, &context, body).await)
}

async fn handle<E: GenerationEndpoint>(
    state: &AppState,
    context: &RequestContext,
    body: E,
) -> Result<Response, ApiError> {
    let model = body.model()?;
    let prompt = body.prompt()?;
    let params = body.params(state.config.max_tokens_limit)?;
    let mut generation = state
        .start_generation(context, model, prompt, params)
        .await?;
    let sampling = body.sampling();
    if sampling.stream {
        return stream_response(generation, E::Chunks::default(), sampling.include_usage()).await;
    }
    let (text, finish_reason, usage) = generation.collect().await?;
    Ok(E::complete(
        context.id,
        model,
        text,
        finish_reason,
        usage.into(),
    ))
}
