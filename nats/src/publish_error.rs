//! Classifying JetStream publish failures by error kind and server error code, never by text.

use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::jetstream::{Error as ApiError, ErrorCode};

/// What a failed publish means for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishFailure {
    /// The stream's limits are reached (discard-new): retry later.
    StreamFull,
    /// The message exceeds the server's `max_payload`.
    TooLarge,
    /// No ack: NATS or the stream is unreachable.
    Unavailable,
}

/// Server code for "maximum messages / bytes exceeded" and other store refusals.
const STREAM_STORE_FAILED: ErrorCode = ErrorCode(10077);
/// Server code for "insufficient resources".
const INSUFFICIENT_RESOURCES: ErrorCode = ErrorCode(10023);
/// Server code for "message size exceeds maximum allowed".
const MESSAGE_TOO_LARGE: ErrorCode = ErrorCode(10054);

pub fn classify(error: &PublishError) -> PublishFailure {
    match error.kind() {
        PublishErrorKind::MaxPayloadExceeded => PublishFailure::TooLarge,
        PublishErrorKind::Other => match api_error_code(error) {
            Some(STREAM_STORE_FAILED) | Some(INSUFFICIENT_RESOURCES) => PublishFailure::StreamFull,
            Some(MESSAGE_TOO_LARGE) => PublishFailure::TooLarge,
            _ => PublishFailure::Unavailable,
        },
        _ => PublishFailure::Unavailable,
    }
}

fn api_error_code(error: &PublishError) -> Option<ErrorCode> {
    let source = std::error::Error::source(error)?;
    source.downcast_ref::<ApiError>().map(ApiError::error_code)
}
