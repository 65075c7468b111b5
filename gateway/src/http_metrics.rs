//! The HTTP request metrics: `coder_model_requests_total` and
//! `coder_model_request_duration_seconds`, by model, route template and status.
//!
//! Metrics are recorded when the response body is dropped (fully sent, or the client went away),
//! so a streamed response counts its whole duration, not just its headers.

use crate::routes::paths::endpoint_label;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
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

/// Middleware: records the request's metrics once its response body is done with.
pub async fn record_request_metrics(
    State(metrics): State<GatewayMetrics>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let endpoint = endpoint_label(request.extensions().get::<MatchedPath>());
    let mut response = next.run(request).await;
    // Set by a handler once the model name is validated: label values stay bounded.
    let model = response
        .extensions_mut()
        .remove::<ModelLabel>()
        .unwrap_or_else(|| ModelLabel::new(UNKNOWN_MODEL));
    let recorder = Recorder {
        metrics,
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
