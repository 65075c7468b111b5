//! The queue contract shared by the gateway and the workers.
//!
//! Everything that crosses NATS is defined here, once: subject and stream names, the message
//! types and headers, and the idempotent provisioning of the JetStream stream and of each model's
//! durable pull consumer. No service formats a subject by hand.
//!
//! # Layout
//! - [`client_args`]: the connection flags both services take (seed list, credentials, TLS).
//! - [`connection`]: connecting with those, failing at once on refused credentials or TLS,
//!   with unlimited, logged reconnects otherwise.
//! - [`subjects`]: subject builders and the subject-safe encoding of model names.
//! - [`affinity`]: which partition of its model a request is queued on, and which live worker
//!   owns a partition (cache affinity with stealing).
//! - [`headers`]: the NATS headers a queued request carries (reply subject, deadline, trace).
//! - [`request`]: the queued generation request and its sampling parameters.
//! - [`structure`]: tools, tool choice, response formats and tool-call deltas.
//! - [`events`]: what a worker sends back (`started`, `token`, `final`, `error`).
//! - [`cancel`]: the gateway asking a worker to stop a request, and why.
//! - [`receipt`]: the gateway's answer to a worker's terminal event (complete, or redeliver).
//! - [`heartbeat`]: the worker's periodic announcement (model, slots, device).
//! - [`provision`]: stream and consumer settings and their create-or-update.
//! - [`retry`]: retrying provisioning while NATS is unreachable, with one backoff.
//! - `testing` (feature `testing`): a real nats-server per test.
//! - [`publish_error`]: classifying JetStream publish failures (stream full, too large, down).
//!
//! # Security
//! The server configs in `nats/config/` let nobody in anonymously and give each role a user
//! allowed exactly the subjects and JetStream API calls the code in this workspace makes
//! (`auth.conf`), over mutual TLS (`tls.conf`, `route-tls.conf`). What the code relies on for
//! that: each role's request inboxes have their own prefix ([`subjects::GATEWAY_INBOX_PREFIX`],
//! [`subjects::WORKER_INBOX_PREFIX`]), and a gateway's replies sit under its scope
//! ([`subjects::gateway_replies_root`]). A new subject or JetStream call needs its permission in
//! `auth.conf`, or the shipped server refuses it (the tests run that config:
//! `tests/security.rs`, and the gateway's `tests/nats_security.rs`).

pub mod affinity;
pub mod cancel;
pub mod client_args;
pub mod connection;
pub mod events;
pub mod headers;
pub mod heartbeat;
pub mod provision;
pub mod publish_error;
pub mod receipt;
pub mod request;
pub mod retry;
mod stable_hash;
pub mod structure;
pub mod subjects;
#[cfg(feature = "testing")]
pub mod testing;

pub use cancel::{Cancel, CancelReason};
pub use events::{ErrorKind, FinishReason, Logprob, TokenLogprobs, Usage, WorkerEvent};
pub use heartbeat::Heartbeat;
pub use receipt::EndReceipt;
pub use request::{ChatMessage, GenerationRequest, Infill, InfillFile, Prompt, SamplingParams};
pub use structure::{
    assemble_tool_call, Conversation, ResponseFormat, Tool, ToolCall, ToolCallDelta, ToolChoice,
};
