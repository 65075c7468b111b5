//! `GET /healthz` (the process is alive) and `GET /readyz` (NATS and the stream are reachable).

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::State;
use axum::Json;
use coder_nats::subjects;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// How long the readiness check waits for JetStream.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

pub async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    if !state.queue_ready.load(Ordering::Relaxed) {
        return Err(ApiError::Unavailable(
            "the queue is not provisioned yet".into(),
        ));
    }
    let dispatcher = &state.dispatcher;
    if dispatcher.client().connection_state() != async_nats::connection::State::Connected {
        return Err(ApiError::Unavailable("not connected to NATS".into()));
    }
    let lookup = dispatcher.jetstream().get_stream(subjects::STREAM_NAME);
    match tokio::time::timeout(READY_TIMEOUT, lookup).await {
        Ok(Ok(_)) => Ok(Json(json!({ "status": "ready" }))),
        Ok(Err(error)) => Err(ApiError::Unavailable(format!(
            "stream lookup failed: {error}"
        ))),
        Err(_) => Err(ApiError::Unavailable("stream lookup timed out".into())),
    }
}
