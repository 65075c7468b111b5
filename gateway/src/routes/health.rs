//! `GET /healthz` (the process is alive) and `GET /readyz` (NATS and the stream are reachable,
//! and every supervised background task still runs).
//!
//! The stream look-up behind `/readyz` is shared: its outcome is reused for [`READY_CACHE_FOR`],
//! so however often probes and clients ask, JetStream sees at most one look-up per window. The
//! connection state is read afresh every time: a lost connection shows at once.

use crate::error::ApiError;
use crate::state::AppState;
use async_nats::jetstream;
use axum::extract::State;
use axum::Json;
use coder_nats::subjects;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// How long the readiness check waits for JetStream.
const READY_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one stream look-up answers `/readyz`.
pub const READY_CACHE_FOR: Duration = Duration::from_secs(1);

/// The last stream look-up and when it was made; the lock is held across a look-up, so
/// concurrent probes wait for one rather than each making their own.
#[derive(Default)]
pub struct StreamCheck {
    last: Mutex<Option<(Instant, Result<(), String>)>>,
}

impl StreamCheck {
    /// Whether the stream answered a look-up made less than [`READY_CACHE_FOR`] ago (or now).
    async fn reachable(&self, jetstream: &jetstream::Context) -> Result<(), String> {
        let mut last = self.last.lock().await;
        if let Some((at, outcome)) = last.as_ref() {
            if at.elapsed() < READY_CACHE_FOR {
                return outcome.clone();
            }
        }
        let lookup = jetstream.get_stream(subjects::STREAM_NAME);
        let outcome = match tokio::time::timeout(READY_TIMEOUT, lookup).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(format!("stream lookup failed: {error}")),
            Err(_) => Err("stream lookup timed out".into()),
        };
        *last = Some((Instant::now(), outcome.clone()));
        outcome
    }
}

pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

pub async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let ended = state.supervisor.ended();
    if !ended.is_empty() {
        return Err(ApiError::Unavailable(format!(
            "background tasks ended: {}",
            ended.join(", ")
        )));
    }
    if !state.queue_ready.load(Ordering::Relaxed) {
        return Err(ApiError::Unavailable(
            "the queue is not provisioned yet".into(),
        ));
    }
    let dispatcher = &state.dispatcher;
    if dispatcher.client().connection_state() != async_nats::connection::State::Connected {
        return Err(ApiError::Unavailable("not connected to NATS".into()));
    }
    state
        .stream_check
        .reachable(dispatcher.jetstream())
        .await
        .map_err(ApiError::Unavailable)?;
    Ok(Json(json!({ "status": "ready" })))
}
