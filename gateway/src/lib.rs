//! The OpenAI-compatible gateway.
//!
//! It validates each request, gives it a UUID v7, admits it against the model's backlog, publishes
//! it to the JetStream work queue and waits for the ack; then it follows the worker's events on its
//! one wildcard reply subscription and answers as JSON or server-sent events. Requests abandoned
//! by the client or by the deadline are cancelled on NATS so workers stop generating.
//!
//! # Layout
//! - [`config`]: flags (`CODER_*` env too).
//! - [`server`]: wiring, graceful shutdown.
//! - [`http`]: the HTTP server and its limits on a client's pace.
//! - [`routes`]: the route table and its handlers: one generic handler for completions and chat,
//!   models, health.
//! - [`openai`]: the wire format, its validation and each endpoint's answers;
//!   [`openai::json`] names the bad field.
//! - [`error`]: the one error enum → status, OpenAI body, `type`.
//! - [`request_context`]: the request id and trace context, set before routing.
//! - [`http_metrics`]: the HTTP request metrics, recorded when the response body is done.
//! - [`access`]: API keys (named, reloaded on SIGHUP) and the per-key limits.
//! - [`admission`]: the per-model backlog limit (429).
//! - [`dispatch`]: the model checked, the deadline set, publish with ack.
//! - [`publish_retry`]: a publish retried through a leader election or a reconnect, exactly once.
//! - [`in_flight`]: a queued request's events and its cancel-on-drop guard.
//! - [`replies`]: the wildcard reply subscription, demultiplexed.
//! - [`continuity`]: each attempt's events checked whole (none lost, none forged) before a
//!   request sees them; the receipt a worker's last event gets.
//! - [`attempts`]: following a request across redeliveries without repeating tokens.
//! - [`generation`]: one request's events → client progress, deadline and metrics.
//! - [`sse`]: streaming as OpenAI server-sent events.
//! - [`workers`], [`known_models`], [`queue_monitor`]: heartbeats, known models, backlog gauges.
//! - [`supervisor`]: the background tasks watched; one that ends turns `/readyz` red.
//! - [`trace`]: W3C `traceparent` propagation.

pub mod access;
pub mod admission;
pub mod attempts;
pub mod config;
pub mod continuity;
pub mod dispatch;
pub mod error;
pub mod generation;
pub mod http;
pub mod http_metrics;
pub mod in_flight;
pub mod known_models;
pub mod openai;
pub mod publish_retry;
pub mod queue_monitor;
pub mod replies;
pub mod request_context;
pub mod routes;
pub mod server;
pub mod sse;
pub mod state;
pub mod supervisor;
pub mod trace;
pub mod workers;

pub use config::Config;
pub use server::{run, serve};
