//! The OpenAI-compatible gateway.
//!
//! It validates each request, gives it a UUID v7, admits it against the model's backlog, publishes
//! it to the JetStream work queue and waits for the ack; then it follows the worker's events on its
//! one wildcard reply subscription and answers as JSON or server-sent events. Requests abandoned
//! by the client or by the deadline are cancelled on NATS so workers stop generating.
//!
//! # Layout
//! - [`config`]: flags (`CODER_*` env too).
//! - [`server`]: wiring, the router, graceful shutdown.
//! - [`routes`]: handlers: completions, chat, models, health.
//! - [`openai`]: the wire format and its validation; [`openai::json`] names the bad field.
//! - [`error`]: the one error enum → status, OpenAI body, `type`.
//! - [`middleware`]: request id/context and the HTTP request metrics.
//! - [`auth`]: API keys.
//! - [`admission`]: the per-model backlog limit (429).
//! - [`dispatch`]: publish with ack, and the cancel-on-drop guard.
//! - [`replies`]: the wildcard reply subscription, demultiplexed.
//! - [`attempts`]: following a request across redeliveries without repeating tokens.
//! - [`generation`]: one request's events → client progress, deadline and metrics.
//! - [`sse`]: streaming as OpenAI server-sent events.
//! - [`workers`], [`known_models`], [`queue_monitor`]: heartbeats, known models, backlog gauges.
//! - [`trace`]: W3C `traceparent` propagation.

pub mod admission;
pub mod attempts;
pub mod auth;
pub mod config;
pub mod dispatch;
pub mod error;
pub mod generation;
pub mod known_models;
pub mod middleware;
pub mod openai;
pub mod queue_monitor;
pub mod replies;
pub mod routes;
pub mod server;
pub mod sse;
pub mod state;
pub mod trace;
pub mod workers;

pub use config::Config;
pub use server::{run, serve};
