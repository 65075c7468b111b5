//! Who a request is: its id and trace context, set on every request before routing and echoed
//! in every response's `x-request-id`.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tokio::time::Instant;
use tracing::Instrument;
use uuid::Uuid;

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Set on every request before routing; handlers take it as an `Extension`.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// UUID v7: the body `id`, the `x-request-id` header, the queue message id.
    pub id: Uuid,
    /// Where the request's deadline counts from.
    pub received_at: Instant,
    /// The client's W3C trace context, or one started here.
    pub traceparent: String,
}

/// Middleware: gives every request an id and context (and a span carrying them), and every
/// response its `x-request-id`.
pub async fn with_request_context(mut request: Request, next: Next) -> Response {
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
