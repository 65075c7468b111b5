//! The gateway's one error type: each variant maps, in one place, to an HTTP status, an
//! OpenAI-style JSON body and a stable `type` string. 5xx bodies stay opaque; their detail is
//! logged.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed or out-of-range input; `param` names the offending field.
    #[error("{message}")]
    BadRequest {
        message: String,
        param: Option<String>,
    },
    #[error("invalid or missing API key")]
    Unauthorized,
    #[error("the model `{0}` does not exist")]
    ModelNotFound(String),
    #[error("no route for {0}")]
    RouteNotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    PayloadTooLarge(String),
    /// A POST body not declared JSON; holds the `Content-Type` given, if any.
    #[error("{}", unsupported_media_type_message(.0.as_deref()))]
    UnsupportedMediaType(Option<String>),
    /// The model's backlog or the stream is full.
    #[error("the queue for model `{model}` is full; retry later")]
    Overloaded {
        model: String,
        retry_after: Duration,
    },
    /// The caller's key is over one of its limits (`limit` says which).
    #[error("this API key has too many {limit}; retry later")]
    KeyLimited {
        limit: &'static str,
        retry_after: Duration,
    },
    /// NATS or the stream cannot be reached.
    #[error("the request queue is unavailable")]
    Unavailable(String),
    /// The client read its stream more slowly than it was produced, and was cut off.
    #[error("the client read the stream too slowly; the request was cancelled")]
    ClientTooSlow,
    #[error("the request did not complete within {0:?}")]
    Timeout(Duration),
    /// Events of the answer were lost on their way from the worker and no delivery was left to
    /// generate it again.
    #[error(
        "events of the answer were lost between the worker and the gateway; retry the request"
    )]
    EventsLost,
    #[error("internal error")]
    Internal(String),
}

fn unsupported_media_type_message(given: Option<&str>) -> String {
    match given {
        Some(given) => format!("`Content-Type` must be `application/json`, got `{given}`"),
        None => "`Content-Type` must be `application/json`, and the request has none".into(),
    }
}

/// OpenAI's error body: `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize)]
pub struct ErrorDetail {
    pub message: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<&'static str>,
}

impl ApiError {
    pub fn bad_request(param: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            message: message.into(),
            param: Some(param.into()),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::ModelNotFound(_) | ApiError::RouteNotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Overloaded { .. } | ApiError::KeyLimited { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::ClientTooSlow => StatusCode::REQUEST_TIMEOUT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::EventsLost => StatusCode::BAD_GATEWAY,
        }
    }

    /// The stable error `type` of the body.
    pub fn error_type(&self) -> &'static str {
        match self {
            ApiError::BadRequest { .. }
            | ApiError::ModelNotFound(_)
            | ApiError::RouteNotFound(_)
            | ApiError::MethodNotAllowed
            | ApiError::PayloadTooLarge(_)
            | ApiError::UnsupportedMediaType(_)
            | ApiError::ClientTooSlow => "invalid_request_error",
            ApiError::Unauthorized => "authentication_error",
            ApiError::Overloaded { .. } | ApiError::KeyLimited { .. } => "rate_limit_error",
            ApiError::Unavailable(_) => "service_unavailable",
            ApiError::Timeout(_) => "timeout",
            ApiError::Internal(_) | ApiError::EventsLost => "server_error",
        }
    }

    fn code(&self) -> Option<&'static str> {
        match self {
            ApiError::Unauthorized => Some("invalid_api_key"),
            ApiError::ModelNotFound(_) => Some("model_not_found"),
            ApiError::RouteNotFound(_) => Some("not_found"),
            ApiError::PayloadTooLarge(_) => Some("payload_too_large"),
            ApiError::UnsupportedMediaType(_) => Some("unsupported_media_type"),
            ApiError::Overloaded { .. } => Some("queue_full"),
            ApiError::KeyLimited { .. } => Some("rate_limit_exceeded"),
            ApiError::Timeout(_) => Some("deadline_exceeded"),
            ApiError::ClientTooSlow => Some("client_too_slow"),
            ApiError::EventsLost => Some("events_lost"),
            _ => None,
        }
    }

    pub fn body(&self) -> ErrorBody {
        // For 5xx the Display text is opaque by construction: the detail is only in the log.
        let message = self.to_string();
        let param = match self {
            ApiError::BadRequest { param, .. } => param.clone(),
            ApiError::ModelNotFound(_) => Some("model".to_owned()),
            _ => None,
        };
        ErrorBody {
            error: ErrorDetail {
                message,
                kind: self.error_type(),
                param,
                code: self.code(),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::Unavailable(detail) => tracing::info!(%detail, "answering 503"),
            ApiError::Internal(detail) => tracing::error!(%detail, "answering 500"),
            _ => tracing::debug!(error = %self, "answering {}", self.status()),
        }
        let mut response = (self.status(), Json(self.body())).into_response();
        if let ApiError::Overloaded { retry_after, .. } | ApiError::KeyLimited { retry_after, .. } =
            &self
        {
            let seconds = retry_after.as_secs().max(1).to_string();
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_str(&seconds).expect("digits"),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_request_names_the_field() {
        let body = ApiError::bad_request("top_p", "`top_p` must be > 0 and <= 1").body();
        assert_eq!(body.error.param.as_deref(), Some("top_p"));
        assert_eq!(body.error.kind, "invalid_request_error");
    }

    #[test]
    fn server_errors_do_not_leak_detail() {
        let body = ApiError::Internal("db password wrong at 10.0.0.1".into()).body();
        assert_eq!(body.error.message, "internal error");
        let body = ApiError::Unavailable("nats: connection refused".into()).body();
        assert!(!body.error.message.contains("refused"));
    }

    #[test]
    fn overload_carries_retry_after() {
        let response = ApiError::Overloaded {
            model: "m".into(),
            retry_after: Duration::from_secs(2),
        }
        .into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
    }
}
