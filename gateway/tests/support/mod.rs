//! The gateway's black-box test harness: a real nats-server, the real `gateway` and `gpu-worker`
//! binaries on free ports, and typed helpers to talk to them over HTTP and to read their
//! `/metrics`.
//!
//! # Layout
//! - [`gateway`]: the gateway process, and a gateway with only an idle `--models` model.
//! - [`worker`]: a synthetic `gpu-worker` process (shared with `gpu-worker/tests`).
//! - [`stack`]: nats-server, a gateway and a worker together.
//! - [`client`]: requests over HTTP: completions, streams, the official openai client.
//! - [`exposition`]: scraping and reading `/metrics`, and waiting for a value (shared).
//! - [`catalogue`]: the metric catalogue as exposed, and its checks (shared).
//! - [`lossy_proxy`]: a proxy in front of nats-server that loses chosen published messages.
//!
//! The shared files depend on no other file here, so `gpu-worker/tests` includes them by path.
#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod catalogue;
pub mod client;
pub mod exposition;
pub mod gateway;
pub mod lossy_proxy;
pub mod stack;
pub mod worker;

// Each test binary uses a different part of the harness.
#[allow(unused_imports)]
pub use {
    catalogue::*, client::*, coder_nats::testing::READY_TIMEOUT, exposition::*, gateway::*,
    stack::*, worker::*,
};
