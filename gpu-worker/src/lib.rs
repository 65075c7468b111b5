//! The gpu-worker: pulls generation requests for one model from JetStream and streams tokens back.
//!
//! A worker holds `--concurrency` slots and asks JetStream for work only when one is free. Each
//! request runs on a blocking thread through a [`backend::Backend`]; its events go to the
//! requesting gateway on core NATS, in-progress acks keep long generations from being redelivered,
//! and the message is acked only after the gateway confirmed it holds every event (or naked, to
//! be generated again, when some were lost), so a worker that dies leaves its request to the next
//! one. Cancels stop a generation within one token; requests whose
//! deadline passed in the queue are answered without compute; undecodable messages are terminated.
//!
//! # Layout
//! - [`config`]: flags (`CODER_*` env too) and the `bench` subcommand.
//! - [`run`]: wiring, provisioning, drain on shutdown.
//! - [`consumer`]: the pull loop (fetch only for free slots, from the partitions that are due).
//! - [`affinity`]: which of the model's queue partitions are this worker's, and when to take
//!   another's (doorbells, heartbeats, sweeps).
//! - [`slots`]: the slot pool (sequences of the engine's batch).
//! - [`step_metrics`]: the engine's forward steps into the metrics.
//! - [`job`]: message → job, expired or poison (pure, unit-tested).
//! - [`execute`]: one request's events and acks; [`choice`]: one choice's generation thread.
//! - [`end_receipt`]: the last event sent until the gateway answers (ack, or nak to redeliver).
//! - [`sink`]: the token channel from the generation thread.
//! - [`cancel`]: the cancel stream followed, per-request flags; [`recent_cancels`]: cancels
//!   remembered for requests not running here.
//! - [`heartbeat`]: announcing model, slots and device.
//! - [`load`]: building the configured backend.
//! - [`backend`]: the `Backend` trait; `synthetic`, and `candle` in folders by concern:
//!   `load/` (checkpoints to a model), `models/` (architectures, their table, KV sessions),
//!   `kernels/` (CPU kernels per instruction-set level), `text/` (tokenizers, chat templates);
//!   `constraint/`, the grammars both follow for structured output and required tool calls.
//! - [`tool_calls`]: tool-call syntax per model family, and parsing it out of the output.
//! - [`bench`]: speed and memory of a model file.

pub mod affinity;
pub mod backend;
pub mod bench;
pub mod cancel;
pub mod choice;
pub mod config;
pub mod consumer;
pub mod end_receipt;
pub mod execute;
pub mod heartbeat;
pub mod job;
pub mod load;
pub mod recent_cancels;
pub mod run;
pub mod sink;
pub mod slots;
pub mod step_metrics;
pub mod tool_calls;

pub use run::run;
