//! Worker → gateway events on `coder.replies.<gateway>.<request>`.
//!
//! A request's life is `started`, any number of `token`s, then exactly one of `final` or
//! `error`. Every event carries the JetStream delivery `attempt`, so a gateway that sees a
//! redelivered request start again follows the newest attempt and ignores a stale one.
//!
//! Fields added after the first version (`choice`, `logprobs`, `finish_reasons`, `param`,
//! `token_events`) are optional with defaults that mean what the old events meant, so either side
//! may be older.
//!
//! The terminal event is sent as a NATS request: the gateway answers with an [`EndReceipt`](crate::receipt::EndReceipt)
//! once it holds every event of the attempt, or asks for the request to be redelivered when some
//! were lost (see [`crate::receipt`]).

use serde::{Deserialize, Serialize};

use crate::structure::ToolCallDelta;

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
        /// 0-based index of this token event among its choice's token events of this attempt:
        /// consecutive, so a gap means an event was lost. (Older workers counted tokens that
        /// sent no event too.)
        index: u32,
        text: String,
        /// Which of the request's `n` choices the token belongs to.
        #[serde(default, skip_serializing_if = "is_zero")]
        choice: u32,
        /// The token's log probability and its alternatives', when the request asked for them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        logprobs: Option<TokenLogprobs>,
        /// Pieces of tool calls this token completed (the model's call syntax parsed out of
        /// the text, which `text` then no longer holds).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tool_calls: Vec<ToolCallDelta>,
    },
    Final {
        attempt: u32,
        /// Choice 0's.
        finish_reason: FinishReason,
        /// Prompt tokens once, completion tokens of every choice together.
        usage: Usage,
        /// Every choice's, in choice order, when the request asked for more than one.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        finish_reasons: Vec<FinishReason>,
        /// Token events this attempt sent, per choice in choice order, so the gateway can tell
        /// that none was lost on the way (core NATS drops what a reconnecting subscriber
        /// misses). Empty from workers older than it: nothing to check.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        token_events: Vec<u32>,
    },
    Error {
        attempt: u32,
        kind: ErrorKind,
        /// Safe to show the client for `invalid_request`; logged, not shown, otherwise.
        message: String,
        /// The request field at fault, for `invalid_request` (`suffix` on a model without
        /// fill-in-the-middle tokens, ...).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        param: Option<String>,
    },
}

fn is_zero(value: &u32) -> bool {
    *value == 0
}

/// A generated token's log probability, and its most likely alternatives', as the worker
/// sampled it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenLogprobs {
    pub chosen: Logprob,
    /// Most likely first; as many as the request asked for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub top: Vec<Logprob>,
}

/// One token and its log probability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Logprob {
    /// The token's text; bytes that are not whole UTF-8 characters are written as U+FFFD.
    pub token: String,
    /// The token's exact bytes.
    pub bytes: Vec<u8>,
    /// Natural log; at most 0.
    pub logprob: f32,
}

impl Logprob {
    pub fn new(bytes: Vec<u8>, logprob: f32) -> Self {
        Self {
            token: String::from_utf8_lossy(&bytes).into_owned(),
            bytes,
            logprob,
        }
    }
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
    /// The answer ended after tool calls (the model's end of turn after its calls). A gateway
    /// older than it never sees one: it refuses `tools`.
    ToolCalls,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ToolCalls => "tool_calls",
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
            finish_reasons: Vec::new(),
            token_events: vec![4],
        };
        let json = String::from_utf8(event.to_json()).unwrap();
        assert!(json.contains(r#""event":"final""#), "{json}");
        assert!(json.contains(r#""finish_reason":"length""#), "{json}");
        assert!(json.contains(r#""cached_tokens":2"#), "{json}");
        assert!(!json.contains("finish_reasons"), "{json}");
        assert!(json.contains(r#""token_events":[4]"#), "{json}");
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

    #[test]
    fn events_of_the_first_version_still_decode() {
        let token = br#"{"event":"token","attempt":1,"index":2,"text":"x"}"#;
        match WorkerEvent::from_json(token).unwrap() {
            WorkerEvent::Token {
                choice, logprobs, ..
            } => assert_eq!((choice, logprobs), (0, None)),
            other => panic!("{other:?}"),
        }
        let error = br#"{"event":"error","attempt":1,"kind":"invalid_request","message":"m"}"#;
        assert!(matches!(
            WorkerEvent::from_json(error).unwrap(),
            WorkerEvent::Error { param: None, .. }
        ));
    }

    #[test]
    fn a_token_with_logprobs_round_trips_and_a_plain_one_stays_as_it_was() {
        let plain = WorkerEvent::Token {
            attempt: 1,
            index: 0,
            text: "x".into(),
            choice: 0,
            logprobs: None,
            tool_calls: Vec::new(),
        };
        let json = String::from_utf8(plain.to_json()).unwrap();
        assert_eq!(
            json,
            r#"{"event":"token","attempt":1,"index":0,"text":"x"}"#
        );
        let rich = WorkerEvent::Token {
            attempt: 1,
            index: 0,
            text: "x".into(),
            choice: 2,
            logprobs: Some(TokenLogprobs {
                chosen: Logprob::new(b"x".to_vec(), -0.5),
                top: vec![Logprob::new(vec![0xe2], -1.5)],
            }),
            tool_calls: vec![ToolCallDelta {
                index: 0,
                id: Some("call_1".into()),
                name: Some("f".into()),
                arguments: "{".into(),
            }],
        };
        assert_eq!(WorkerEvent::from_json(&rich.to_json()).unwrap(), rich);
    }
}
