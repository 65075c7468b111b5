//! HTTP handlers, one file per route family.

pub mod chat;
pub mod completions;
pub mod generate;
pub mod health;
pub mod models;

use crate::error::ApiError;
use crate::middleware::ModelLabel;
use axum::response::{IntoResponse, Response};

/// The response, labelled with the model for the request metrics, unless the model name was
/// never validated (a 400 before it, or an unknown model): label values must stay bounded.
fn labelled(model: Option<String>, result: Result<Response, ApiError>) -> Response {
    let validated = !matches!(
        result,
        Err(ApiError::ModelNotFound(_) | ApiError::BadRequest { .. })
    );
    let mut response = result.unwrap_or_else(IntoResponse::into_response);
    if let Some(model) = model.filter(|_| validated) {
        response.extensions_mut().insert(ModelLabel(model));
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
