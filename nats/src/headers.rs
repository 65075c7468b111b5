//! Headers on a queued request message.
//!
//! The payload is the [`GenerationRequest`](crate::GenerationRequest); what a worker needs before
//! decoding it (where to reply, whether it is still wanted) travels in headers.

use async_nats::HeaderMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// JetStream de-duplication id: the request id.
pub const MSG_ID: &str = "Nats-Msg-Id";
/// Core NATS subject for the request's worker events.
pub const REPLY_TO: &str = "Coder-Reply-To";
/// Deadline as milliseconds since the Unix epoch; past it, the request is not computed.
pub const DEADLINE_MS: &str = "Coder-Deadline-Ms";
/// W3C trace context of the gateway span that queued the request.
pub const TRACEPARENT: &str = "traceparent";

/// What the gateway attaches to every queued request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHeaders {
    pub msg_id: String,
    pub reply_to: String,
    pub deadline: SystemTime,
    pub traceparent: Option<String>,
}

impl RequestHeaders {
    pub fn to_header_map(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(MSG_ID, self.msg_id.as_str());
        headers.insert(REPLY_TO, self.reply_to.as_str());
        headers.insert(DEADLINE_MS, unix_millis(self.deadline).to_string().as_str());
        if let Some(traceparent) = &self.traceparent {
            headers.insert(TRACEPARENT, traceparent.as_str());
        }
        headers
    }

    /// Reads the headers back; `None` when the reply subject or deadline is missing or malformed.
    pub fn from_header_map(headers: &HeaderMap) -> Option<Self> {
        let get = |name: &str| headers.get(name).map(|v| v.as_str().to_owned());
        let deadline_ms: u64 = get(DEADLINE_MS)?.parse().ok()?;
        Some(Self {
            msg_id: get(MSG_ID).unwrap_or_default(),
            reply_to: get(REPLY_TO)?,
            deadline: UNIX_EPOCH + Duration::from_millis(deadline_ms),
            traceparent: get(TRACEPARENT),
        })
    }
}

/// Milliseconds since the Unix epoch (0 for times before it).
pub fn unix_millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_at_millisecond_precision() {
        let original = RequestHeaders {
            msg_id: "id".into(),
            reply_to: "coder.replies.g.r".into(),
            deadline: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        };
        assert_eq!(
            RequestHeaders::from_header_map(&original.to_header_map()),
            Some(original)
        );
    }

    #[test]
    fn missing_reply_subject_is_rejected() {
        let mut headers = HeaderMap::new();
        headers.insert(DEADLINE_MS, "1");
        assert_eq!(RequestHeaders::from_header_map(&headers), None);
    }
}
