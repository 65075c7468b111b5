//! The HTTP application: the route table, its handlers and the layers every request passes.
//!
//! # Layout
//! - [`paths`]: the route templates and the `endpoint` label.
//! - [`generate`]: the one handler behind `/v1/completions`, `/v1/chat/completions` and
//!   `/infill`.
//! - [`models`]: the model list, `/v1/models`.
//! - [`health`]: `/healthz` and `/readyz`.

pub mod generate;
pub mod health;
pub mod models;
pub mod paths;

use crate::access::{authorize, Access};
use crate::error::ApiError;
use crate::http_metrics::record_request_metrics;
use crate::openai::chat::ChatRequest;
use crate::openai::completions::CompletionRequest;
use crate::openai::infill::InfillRequest;
use crate::request_context::with_request_context;
use crate::state::AppState;
use axum::extract::DefaultBodyLimit;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{get, post};
use axum::Router;
use generate::generate;

/// The HTTP application, for `axum::serve` or `oneshot` tests.
pub fn app(state: AppState, access: Access) -> Router {
    let v1 = Router::new()
        .route(paths::COMPLETIONS, post(generate::<CompletionRequest>))
        .route(paths::CHAT_COMPLETIONS, post(generate::<ChatRequest>))
        .route(paths::MODELS, get(models::list_models))
        .route(paths::INFILL, post(generate::<InfillRequest>))
        .route_layer(from_fn_with_state(access, authorize));
    let max_body_bytes = state.config.max_body_bytes;
    Router::new()
        .merge(v1)
        .route(paths::HEALTHZ, get(health::healthz))
        .route(paths::READYZ, get(health::readyz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(from_fn_with_state(
            state.metrics.clone(),
            record_request_metrics,
        ))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(from_fn(with_request_context))
        .with_state(state)
}

/// Unknown routes: 404 in OpenAI's error format.
async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::RouteNotFound(uri.path().to_owned())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
