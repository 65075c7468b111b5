//! A JSON body extractor whose errors are OpenAI error bodies naming the offending field.
//!
//! It refuses a body not declared `application/json` (or `application/*+json`) with 415 before
//! reading it, turns an over-long body into 413 and a type error into 400 with the JSON path of
//! the field. (curl's `-d` alone sends `application/x-www-form-urlencoded`: add
//! `-H 'Content-Type: application/json'`.)

use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

pub struct ApiJson<T>(pub T);

/// A request body built from JSON. Bodies that share fields parse each part from the same value
/// (rather than `#[serde(flatten)]`, which hides the path of a bad field).
pub trait ApiBody: Sized {
    fn from_json(bytes: &[u8]) -> Result<Self, ApiError>;
}

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: ApiBody,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        check_json_content_type(request.headers())?;
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge(
                        "request body is larger than the gateway accepts".into(),
                    )
                } else {
                    ApiError::BadRequest {
                        message: rejection.body_text(),
                        param: None,
                    }
                }
            })?;
        // Parsing is CPU work on the async runtime: at most one body per core at a time, so
        // a flood of large bodies neither starves other requests of the runtime's threads nor
        // holds more than that many parsed bodies in memory at once.
        let _permit = PARSING
            .acquire()
            .await
            .map_err(|_| ApiError::Unavailable("the gateway is shutting down".into()))?;
        T::from_json(&bytes).map(ApiJson)
    }
}

/// Permits to parse a body, one per core.
static PARSING: std::sync::LazyLock<tokio::sync::Semaphore> = std::sync::LazyLock::new(|| {
    tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, usize::from))
});

/// 415 unless `Content-Type` names JSON: `application/json` or `application/<x>+json`, with any
/// parameters (`; charset=utf-8`).
fn check_json_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let declared = headers.get(header::CONTENT_TYPE).map(|v| v.to_str());
    let essence = match declared {
        // Bounded: the message echoes it.
        Some(Ok(value)) => value
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .chars()
            .take(100)
            .collect::<String>()
            .to_ascii_lowercase(),
        Some(Err(_)) => String::from("(not text)"),
        None => return Err(ApiError::UnsupportedMediaType(None)),
    };
    let is_json = essence
        .strip_prefix("application/")
        .is_some_and(|subtype| subtype == "json" || subtype.ends_with("+json"));
    if is_json {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(Some(essence)))
    }
}

/// Parses one part of an already-parsed body, naming the field at fault.
pub fn parse_value<T: DeserializeOwned>(value: &serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value)
        .map_err(|error| field_error(error.path().to_string(), error.into_inner()))
}

fn field_error(path: String, inner: serde_json::Error) -> ApiError {
    if path == "." {
        ApiError::BadRequest {
            message: format!("invalid request body: {inner}"),
            param: None,
        }
    } else {
        ApiError::BadRequest {
            message: format!("invalid `{path}`: {inner}"),
            param: Some(path),
        }
    }
}

/// Parses `bytes` as `T`, naming the field at fault.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let deserializer = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            return ApiError::BadRequest {
                message: format!("request body is not valid JSON: {inner}"),
                param: None,
            };
        }
        field_error(path, inner)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Body {
        max_tokens: Option<u32>,
    }

    fn param_of(json: &str) -> Option<String> {
        match parse::<Body>(json.as_bytes()) {
            Err(ApiError::BadRequest { param, .. }) => param,
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn wrong_type_names_the_field() {
        assert_eq!(
            param_of(r#"{"max_tokens": "many"}"#).as_deref(),
            Some("max_tokens")
        );
        assert_eq!(
            param_of(r#"{"max_tokens": -1}"#).as_deref(),
            Some("max_tokens")
        );
    }

    fn content_type(value: Option<&str>) -> Result<(), ApiError> {
        let mut headers = HeaderMap::new();
        if let Some(value) = value {
            headers.insert(header::CONTENT_TYPE, value.parse().unwrap());
        }
        check_json_content_type(&headers)
    }

    #[test]
    fn only_a_json_content_type_is_accepted() {
        for json in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/merge-patch+json",
        ] {
            assert!(content_type(Some(json)).is_ok(), "{json} refused");
        }
        for other in [
            None,
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            Some("application/jsonl"),
            Some("text/json"),
        ] {
            assert!(
                matches!(content_type(other), Err(ApiError::UnsupportedMediaType(_))),
                "{other:?} accepted"
            );
        }
    }

    #[test]
    fn malformed_json_is_a_400_without_a_field() {
        assert_eq!(param_of(r#"{"max_tokens": "#), None);
        assert_eq!(param_of("[1,2]"), None);
    }
}
