//! Gateway → worker cancellation on `coder.cancel.<request>`.
//!
//! The subject names the request; the body says why the gateway gave up on it, for the worker's
//! logs. A cancel is never ignored for its body: an empty or unreadable one (an older gateway, a
//! hand-sent `nats pub`) still stops the request, with the reason `unspecified`.
//!
//! Cancels are also kept for a while in the stream [`CANCEL_STREAM_NAME`](crate::subjects::CANCEL_STREAM_NAME),
//! so a worker that starts after a request was given up on still learns of it before computing
//! it. The body carries the request's deadline, after which the cancel need not be remembered.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cancel {
    pub reason: CancelReason,
    /// The request's deadline (milliseconds since the Unix epoch), when the sender knows it: a
    /// worker remembers the cancel until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelReason {
    /// The client closed its connection or stream.
    ClientDisconnected,
    /// `--request-timeout` passed before the last token: the client got a 504.
    DeadlineExceeded,
    /// The gateway failed the request (its publish went unconfirmed, its replies were lost): the
    /// client got a 5xx.
    GatewayError,
    /// The client read its stream more slowly than the tokens came: the gateway cut it off.
    ClientTooSlow,
    #[serde(other)]
    Unspecified,
}

impl Cancel {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a cancel always serializes")
    }

    /// The cancel a payload carries; one that cannot be read is still a cancel.
    pub fn from_payload(bytes: &[u8]) -> Self {
        serde_json::from_slice(bytes).unwrap_or(Cancel {
            reason: CancelReason::Unspecified,
            deadline_ms: None,
        })
    }
}

impl CancelReason {
    /// The wire name, for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            CancelReason::ClientDisconnected => "client_disconnected",
            CancelReason::DeadlineExceeded => "deadline_exceeded",
            CancelReason::GatewayError => "gateway_error",
            CancelReason::ClientTooSlow => "client_too_slow",
            CancelReason::Unspecified => "unspecified",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_round_trip_as_snake_case() {
        let cancel = Cancel {
            reason: CancelReason::DeadlineExceeded,
            deadline_ms: None,
        };
        assert_eq!(cancel.to_json(), br#"{"reason":"deadline_exceeded"}"#);
        assert_eq!(Cancel::from_payload(&cancel.to_json()), cancel);
        let with_deadline = Cancel {
            deadline_ms: Some(1_700_000_000_123),
            ..cancel
        };
        assert_eq!(
            with_deadline.to_json(),
            br#"{"reason":"deadline_exceeded","deadline_ms":1700000000123}"#
        );
        assert_eq!(
            Cancel::from_payload(&with_deadline.to_json()),
            with_deadline
        );
    }

    #[test]
    fn log_names_are_the_wire_names() {
        use CancelReason::*;
        for reason in [
            ClientDisconnected,
            DeadlineExceeded,
            GatewayError,
            ClientTooSlow,
            Unspecified,
        ] {
            let wire = serde_json::to_value(reason).unwrap();
            assert_eq!(wire.as_str(), Some(reason.as_str()));
        }
    }

    #[test]
    fn empty_unknown_or_garbage_bodies_still_cancel() {
        for body in [&b""[..], br#"{"reason":"bored"}"#, b"\xff\x00"] {
            assert_eq!(
                Cancel::from_payload(body).reason,
                CancelReason::Unspecified,
                "{body:?}"
            );
        }
    }
}
