//! API keys: with `--api-keys-file`, every `/v1` route requires `Authorization: Bearer <key>`.
//!
//! Keys are compared in constant time and never logged (their `Debug` is redacted).

use crate::error::ApiError;
use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::path::Path;
use std::sync::Arc;
use subtle::ConstantTimeEq;

#[derive(Clone)]
pub struct ApiKeys(Arc<Vec<Vec<u8>>>);

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKeys({} keys, redacted)", self.0.len())
    }
}

impl ApiKeys {
    /// One key per line; blank lines and lines starting with `#` are skipped.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        use anyhow::Context;
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading API keys from {}", path.display()))?;
        let keys: Vec<Vec<u8>> = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(|line| line.as_bytes().to_vec())
            .collect();
        anyhow::ensure!(!keys.is_empty(), "{} holds no API key", path.display());
        Ok(Self(Arc::new(keys)))
    }

    /// Checks every key, so the time taken does not depend on which (if any) matched.
    pub fn accepts(&self, candidate: &[u8]) -> bool {
        self.0.iter().fold(0u8, |found, key| {
            found | key.as_slice().ct_eq(candidate).unwrap_u8()
        }) == 1
    }
}

pub async fn require_api_key(
    State(keys): State<ApiKeys>,
    request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        Some(key) if keys.accepts(key.as_bytes()) => next.run(request).await,
        _ => ApiError::Unauthorized.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_file_skips_comments_and_debug_is_redacted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        std::fs::write(&path, "# team a\nsk-one\n\n  sk-two  \n").unwrap();
        let keys = ApiKeys::from_file(&path).unwrap();
        assert!(keys.accepts(b"sk-one"));
        assert!(keys.accepts(b"sk-two"));
        assert!(!keys.accepts(b"sk-on"));
        assert!(!keys.accepts(b""));
        assert!(!format!("{keys:?}").contains("sk-"));
    }

    #[test]
    fn an_empty_keys_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        std::fs::write(&path, "# nothing\n").unwrap();
        assert!(ApiKeys::from_file(&path).is_err());
    }
}
