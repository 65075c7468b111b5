//! The one handler behind both generation endpoints: each endpoint's body type says how to read
//! the request and write the answer ([`GenerationEndpoint`]); this queues it and answers whole
//! or streamed.

use crate::error::ApiError;
use crate::openai::endpoint::GenerationEndpoint;
use crate::openai::json::ApiJson;
use crate::request_context::RequestContext;
use crate::sse::stream_response;
use crate::state::AppState;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use metrics_common::ModelLabel;

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
    let sampling = body.sampling();
    let cache_key = sampling.prompt_cache_key()?;
    let mut generation = state
        .dispatcher
        .start_generation(context, model, prompt, params, cache_key)
        .await?;
    if sampling.stream {
        return stream_response(generation, E::Chunks::default(), sampling.include_usage()).await;
    }
    let (choices, usage) = generation.collect().await?;
    let answer = E::answer(context.id, model.as_str(), choices, usage.into());
    Ok(Json(answer).into_response())
}

/// The response, labelled with the model for the request metrics, unless the model name was
/// never validated (a 400 before it, or an unknown model): label values must stay bounded.
fn labelled(model: Option<ModelLabel>, result: Result<Response, ApiError>) -> Response {
    let validated = !matches!(
        result,
        Err(ApiError::ModelNotFound(_) | ApiError::BadRequest { .. })
    );
    let mut response = result.unwrap_or_else(IntoResponse::into_response);
    if let Some(model) = model.filter(|_| validated) {
        response.extensions_mut().insert(model);
    }
    response
}
