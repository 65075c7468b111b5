//! Worker → gateway events on `coder.replies.<gateway>.<request>`.
//!
//! A request's life is `started`, any number of `token`s, then exactly one of `final` or
//! `error`. Every event carries the JetStream delivery `attempt`, so a gateway that sees a
//! redelivered request start again follows the newest attempt and ignores a stale one.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum WorkerEvent {
    Started {
        attempt: u32,
        worker_id: String,
        /// Publish → start, measured from JetStream's own publish timestamp.
        queue_wait_ms: u64,
    },
    Token {
        attempt: u32,
        /// 0-based index of this token in the completion.
        index: u32,
        text: String,
    },
    Final {
        attempt: u32,
        finish_reason: FinishReason,
        usage: Usage,
    },
    Error {
        attempt: u32,
        kind: ErrorKind,
        /// Safe to show the client for `invalid_request`; logged, not shown, otherwise.
        message: String,
    },
}

impl WorkerEvent {
    pub fn attempt(&self) -> u32 {
        match self {
            WorkerEvent::Started { attempt, .. }
            | WorkerEvent::Token { attempt, .. }
            | WorkerEvent::Final { attempt, .. }
            | WorkerEvent::Error { attempt, .. } => *attempt,
        }
    }

    pub fn is_terminal(&self) -> bool {
        matches!(self, WorkerEvent::Final { .. } | WorkerEvent::Error { .. })
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("WorkerEvent always serialises")
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// An end-of-turn token or a stop string.
    Stop,
    /// `max_tokens` reached.
    Length,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    /// Of the prompt tokens, those whose KV the worker's prefix cache already held (OpenAI's
    /// `usage.prompt_tokens_details.cached_tokens`). 0 in events from workers older than it.
    #[serde(default)]
    pub cached_tokens: u32,
}

/// Why a worker gave up on a request; each maps to one HTTP status at the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The deadline passed while the request was queued: never computed (504).
    Expired,
    /// The request is valid JSON but the model cannot take it, e.g. too long for the context (400).
    InvalidRequest,
    /// Cancelled by the client or the gateway.
    Cancelled,
    /// The backend failed (500).
    Internal,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_tagged_json() {
        let event = WorkerEvent::Final {
            attempt: 1,
            finish_reason: FinishReason::Length,
            usage: Usage {
                prompt_tokens: 3,
                completion_tokens: 4,
                cached_tokens: 2,
            },
        };
        let json = String::from_utf8(event.to_json()).unwrap();
        assert!(json.contains(r#""event":"final""#), "{json}");
        assert!(json.contains(r#""finish_reason":"length""#), "{json}");
        assert!(json.contains(r#""cached_tokens":2"#), "{json}");
        assert_eq!(WorkerEvent::from_json(json.as_bytes()).unwrap(), event);
        assert!(event.is_terminal());
    }

    #[test]
    fn a_final_event_from_an_older_worker_reads_as_nothing_cached() {
        let old = br#"{"event":"final","attempt":1,"finish_reason":"stop","usage":{"prompt_tokens":5,"completion_tokens":6}}"#;
        match WorkerEvent::from_json(old).unwrap() {
            WorkerEvent::Final { usage, .. } => assert_eq!(
                usage,
                Usage {
                    prompt_tokens: 5,
                    completion_tokens: 6,
                    cached_tokens: 0,
                }
            ),
            other => panic!("{other:?}"),
        }
    }
}
