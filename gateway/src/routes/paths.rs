//! The route templates, and the `endpoint` label a request is counted under.

use axum::extract::MatchedPath;
use metrics_common::names::value::UNMATCHED_ENDPOINT;

pub const COMPLETIONS: &str = "/v1/completions";
pub const CHAT_COMPLETIONS: &str = "/v1/chat/completions";
pub const MODELS: &str = "/v1/models";
/// llama.cpp's fill-in-the-middle route.
pub const INFILL: &str = "/infill";
pub const HEALTHZ: &str = "/healthz";
pub const READYZ: &str = "/readyz";
/// Every route template: the values of the `endpoint` label, with [`UNMATCHED_ENDPOINT`].
const ROUTES: [&str; 6] = [
    COMPLETIONS,
    CHAT_COMPLETIONS,
    MODELS,
    INFILL,
    HEALTHZ,
    READYZ,
];

/// The `endpoint` label of a request: its route template, or one value for every unknown path.
pub fn endpoint_label(matched: Option<&MatchedPath>) -> &'static str {
    matched
        .and_then(|path| ROUTES.into_iter().find(|route| *route == path.as_str()))
        .unwrap_or(UNMATCHED_ENDPOINT)
}
