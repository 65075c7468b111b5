//! The `/metrics` listener, on its own port so scrapes never queue behind API traffic and the API
//! port can be exposed without exposing metrics.

use crate::Telemetry;
use axum::{extract::State, http::header, response::IntoResponse, routing::get, Router};
use std::future::Future;
use tokio::net::TcpListener;

/// Content type of the Prometheus text exposition format.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

pub fn router(telemetry: Telemetry) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(telemetry)
}

async fn metrics(State(telemetry): State<Telemetry>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, TEXT_FORMAT)], telemetry.render())
}

/// Serves `/metrics` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    telemetry: Telemetry,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(telemetry))
        .with_graceful_shutdown(shutdown)
        .await
}
