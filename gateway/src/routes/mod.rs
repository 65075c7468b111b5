//! HTTP handlers, one file per route family.

pub mod chat;
pub mod completions;
pub mod generate;
pub mod health;
pub mod models;

use crate::error::ApiError;
use axum::extract::MatchedPath;
use axum::response::{IntoResponse, Response};
use metrics_common::names::value::UNMATCHED_ENDPOINT;
use metrics_common::ModelLabel;

pub const COMPLETIONS: &str = "/v1/completions";
pub const CHAT_COMPLETIONS: &str = "/v1/chat/completions";
pub const MODELS: &str = "/v1/models";
pub const HEALTHZ: &str = "/healthz";
pub const READYZ: &str = "/readyz";
/// Every route template: the values of the `endpoint` label, with [`UNMATCHED_ENDPOINT`].
const ROUTES: [&str; 5] = [COMPLETIONS, CHAT_COMPLETIONS, MODELS, HEALTHZ, READYZ];

/// The `endpoint` label of a request: its route template, or one value for every unknown path.
pub fn endpoint_label(matched: Option<&MatchedPath>) -> &'static str {
    matched
        .and_then(|path| ROUTES.into_iter().find(|route| *route == path.as_str()))
        .unwrap_or(UNMATCHED_ENDPOINT)
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

/// Unknown routes: 404 in OpenAI's error format.
pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::RouteNotFound(uri.path().to_owned())
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
