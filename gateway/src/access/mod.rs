//! Who may call the `/v1` routes, and how much: API keys (with `--api-keys-file`, every `/v1`
//! route requires `Authorization: Bearer <key>`, the scheme in any case) and the per-key limits.
//! Without keys every client is the one key [`ANONYMOUS`], so the limits apply to all together.
//!
//! Keys are compared in constant time and never logged: a key is known by its name.
//!
//! # Layout
//! - [`keys`]: the keys file, its names, its reload.
//! - [`limits`]: open requests and requests per minute, per key.

pub mod keys;
pub mod limits;

use crate::error::ApiError;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body::Frame;
use keys::{ApiKeys, KeyName};
use limits::{KeyLimits, OpenRequest};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio_util::sync::CancellationToken;

/// The name limits use when no keys are configured.
pub const ANONYMOUS: &str = "anonymous";

/// The `/v1` routes' gate: keys (if any) and limits.
#[derive(Clone)]
pub struct Access {
    pub keys: Option<ApiKeys>,
    pub limits: Arc<KeyLimits>,
    anonymous: KeyName,
}

impl Access {
    pub fn new(keys: Option<ApiKeys>, limits: KeyLimits) -> Self {
        Self {
            keys,
            limits: Arc::new(limits),
            anonymous: KeyName::from(ANONYMOUS),
        }
    }

    /// The name of the caller's key; `None` if keys are required and none of them was given.
    fn caller(&self, headers: &HeaderMap) -> Option<KeyName> {
        let Some(keys) = &self.keys else {
            return Some(Arc::clone(&self.anonymous));
        };
        keys.identify(bearer_token(headers)?.as_bytes())
    }
}

/// The token of `Authorization: Bearer <token>`, the scheme matched in any case (RFC 9110).
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Middleware: 401 without a valid key, 429 over the key's limits; the request counts as open
/// until its response body is done.
pub async fn authorize(State(access): State<Access>, request: Request, next: Next) -> Response {
    let Some(caller) = access.caller(request.headers()) else {
        return ApiError::Unauthorized.into_response();
    };
    let open = match access.limits.admit(&caller) {
        Ok(open) => open,
        Err(error) => {
            tracing::info!(key = %caller, %error, "request over the key's limits");
            return error.into_response();
        }
    };
    let response = next.run(request).await;
    let (parts, body) = response.into_parts();
    Response::from_parts(
        parts,
        Body::new(HeldBody {
            inner: body,
            _open: open,
        }),
    )
}

/// A response body that keeps its request counted open until it is dropped.
struct HeldBody {
    inner: Body,
    _open: OpenRequest,
}

impl http_body::Body for HeldBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Reads the keys file again on every SIGHUP until `stopping`; a file that cannot be read (or
/// holds no key) leaves the keys in force, with an error in the log.
pub fn reload_on_sighup(keys: ApiKeys, stopping: CancellationToken) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                received = hangups.recv() => if received.is_none() { return },
                _ = stopping.cancelled() => return,
            }
            match keys.reload() {
                Ok(count) => {
                    tracing::info!(count, file = %keys.path().display(), "API keys reloaded")
                }
                Err(error) => tracing::error!(
                    error = format!("{error:#}"),
                    "API keys not reloaded: the previous keys stay"
                ),
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_authorization(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn the_bearer_scheme_is_matched_in_any_case() {
        for value in ["Bearer sk-1", "bearer sk-1", "BEARER  sk-1 "] {
            assert_eq!(
                bearer_token(&with_authorization(value)),
                Some("sk-1"),
                "{value}"
            );
        }
        assert_eq!(bearer_token(&with_authorization("Basic sk-1")), None);
        assert_eq!(bearer_token(&with_authorization("Bearersk-1")), None);
        assert_eq!(bearer_token(&HeaderMap::new()), None);
    }

    #[test]
    fn without_keys_everyone_is_anonymous() {
        let access = Access::new(None, KeyLimits::new(0, 0));
        assert_eq!(access.caller(&HeaderMap::new()).as_deref(), Some(ANONYMOUS));
    }
}
