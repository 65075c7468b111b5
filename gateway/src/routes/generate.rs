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
use metrics_common::ModelLabel;
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
    // The model's metric label, built once for the request metrics and every queue recording.
    let model = match body.model() {
        Ok(name) => ModelLabel::new(name),
        Err(error) => return labelled(None, Err(error)),
    };
    let result = handle(&state, &context, body, &model).await;
    labelled(Some(model), result)
}

async fn handle<E: GenerationEndpoint>(
    state: &AppState,
    context: &RequestContext,
    body: E,
    model: &ModelLabel,
) -> Result<Response, ApiError> {
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
        model.as_str(),
        text,
        finish_reason,
        usage.into(),
    ))
}
