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
//! - [`headers`]: the NATS headers a queued request carries (reply subject, deadline, trace).
//! - [`request`]: the queued generation request and its sampling parameters.
//! - [`events`]: what a worker sends back (`started`, `token`, `final`, `error`).
//! - [`cancel`]: the gateway asking a worker to stop a request, and why.
//! - [`heartbeat`]: the worker's periodic announcement (model, slots, device).
//! - [`provision`]: stream and consumer settings and their create-or-update.
//! - [`retry`]: retrying provisioning while NATS is unreachable, with one backoff.
//! - `testing` (feature `testing`): a real nats-server per test.
//! - [`publish_error`]: classifying JetStream publish failures (stream full, too large, down).

pub mod cancel;
pub mod client_args;
pub mod connection;
pub mod events;
pub mod headers;
pub mod heartbeat;
pub mod provision;
pub mod publish_error;
pub mod request;
pub mod retry;
pub mod subjects;
#[cfg(feature = "testing")]
pub mod testing;

pub use cancel::{Cancel, CancelReason};
pub use events::{ErrorKind, FinishReason, Logprob, TokenLogprobs, Usage, WorkerEvent};
pub use heartbeat::Heartbeat;
pub use request::{ChatMessage, GenerationRequest, Infill, InfillFile, Prompt, SamplingParams};
