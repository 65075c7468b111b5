//! The gateway's answer to a worker's terminal event: whether the gateway holds the whole
//! attempt, or lost some of it and needs the request generated again.
//!
//! Events travel on core NATS, which delivers at most once: a gateway whose NATS node dies
//! misses what workers publish until it has reconnected and subscribed again elsewhere, and a
//! worker's own reconnect can lose what was in flight. So a worker sends its `final` or `error`
//! as a request, and acks the JetStream message only on [`EndReceipt::Complete`]. On
//! [`EndReceipt::Redeliver`] it naks instead, and the next attempt regenerates the same text
//! (the request carries its seed); the gateway passes on only the tokens its client has not
//! seen. With no answer at all (the gateway's subscription is moving to another node), the
//! worker sends the event again, with the same content, until a bounded time has passed.

use serde::{Deserialize, Serialize};

/// What the gateway answers to a terminal event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "receipt", rename_all = "snake_case")]
pub enum EndReceipt {
    /// Every event of the attempt arrived, or the request needs nothing more (it is over for
    /// the gateway, or the attempt is an old one the gateway no longer follows): ack it.
    Complete,
    /// Events of the attempt were lost: nak it, so that it is generated again.
    Redeliver,
}

impl EndReceipt {
    pub fn to_json(self) -> Vec<u8> {
        serde_json::to_vec(&self).expect("EndReceipt always serialises")
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_are_tagged_json() {
        assert_eq!(
            EndReceipt::Redeliver.to_json(),
            br#"{"receipt":"redeliver"}"#
        );
        for receipt in [EndReceipt::Complete, EndReceipt::Redeliver] {
            assert_eq!(EndReceipt::from_json(&receipt.to_json()).unwrap(), receipt);
        }
        assert!(EndReceipt::from_json(b"").is_err());
    }
}
