//! Per-request middleware: the request id and context, and the HTTP request metrics.
//!
//! Metrics are recorded when the response body is dropped (fully sent, or the client went away),
//! so a streamed response counts its whole duration, not just its headers.

use crate::routes::endpoint_label;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use http_body::Frame;
use metrics_common::names::value::UNKNOWN_MODEL;
use metrics_common::{GatewayMetrics, ModelLabel};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::time::Instant;
use tracing::Instrument;
use uuid::Uuid;

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Set on every request before routing.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// UUID v7: the body `id`, the `x-request-id` header, the queue message id.
    pub id: Uuid,
    pub received_at: Instant,
    /// The client's W3C trace context, or one started here.
    pub traceparent: String,
}

/// Gives every request an id and context, and every response its `x-request-id`.
pub async fn request_context(mut request: Request, next: Next) -> Response {
    let id = Uuid::now_v7();
    let traceparent = crate::trace::incoming_traceparent(request.headers())
        .unwrap_or_else(|| crate::trace::traceparent_for(id));
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %request.method(),
        path = %request.uri().path(),
        traceparent = %traceparent,
    );
    request.extensions_mut().insert(RequestContext {
        id,
        received_at: Instant::now(),
        traceparent,
    });
    let mut response = next.run(request).instrument(span).await;
    let value = HeaderValue::from_str(&id.to_string()).expect("a UUID is a valid header value");
    response.headers_mut().insert(REQUEST_ID_HEADER, value);
    response
}

/// Records `coder_model_requests_total` and `coder_model_request_duration_seconds`.
pub async fn http_metrics(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let endpoint = endpoint_label(request.extensions().get::<MatchedPath>());
    let mut response = next.run(request).await;
    // Set by a handler once the model name is validated: label values stay bounded.
    let model = response
        .extensions_mut()
        .remove::<ModelLabel>()
        .unwrap_or_else(|| ModelLabel::new(UNKNOWN_MODEL));
    let recorder = Recorder {
        metrics: state.metrics.clone(),
        model,
        endpoint,
        code: response.status(),
        started,
    };
    let (parts, body) = response.into_parts();
    Response::from_parts(
        parts,
        Body::new(MeteredBody {
            inner: body,
            recorder: Some(recorder),
        }),
    )
}

struct Recorder {
    metrics: GatewayMetrics,
    model: ModelLabel,
    endpoint: &'static str,
    code: StatusCode,
    started: Instant,
}

/// A response body that records its request's metrics when dropped.
struct MeteredBody {
    inner: Body,
    recorder: Option<Recorder>,
}

impl http_body::Body for MeteredBody {
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

impl Drop for MeteredBody {
    fn drop(&mut self) {
        if let Some(r) = self.recorder.take() {
            r.metrics
                .record_request(&r.model, r.endpoint, r.code, r.started.elapsed());
        }
    }
}
