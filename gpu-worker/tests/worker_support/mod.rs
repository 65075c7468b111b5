//! The worker's black-box test harness: a real nats-server, the real `gpu-worker` binary
//! (synthetic backend), and a client that queues requests the way the gateway does.
//!
//! # Layout
//! - [`queue_client`]: the gateway's part on the queue: provision, publish, follow, cancel.
//! - [`worker`], [`exposition`], [`catalogue`]: the gateway harness's files
//!   (`gateway/tests/support/`), included by path rather than copied: the worker process,
//!   reading `/metrics`, and the metric catalogue with its checks.
#![allow(dead_code)] // each test binary uses a different part of the harness

#[path = "../../../gateway/tests/support/catalogue.rs"]
pub mod catalogue;
#[path = "../../../gateway/tests/support/exposition.rs"]
pub mod exposition;
pub mod queue_client;
#[path = "../../../gateway/tests/support/worker.rs"]
pub mod worker;

// Each test binary uses a different part of the harness.
#[allow(unused_imports)]
pub use {catalogue::*, exposition::*, queue_client::*, worker::*};

use coder_nats::testing::NatsServer;

/// A fresh nats-server with `model`'s consumer provisioned, a synthetic worker for it (`flags`
/// added) and a client to queue its requests.
pub async fn worker_on_queue(model: &str, flags: &[&str]) -> (NatsServer, QueueClient, Worker) {
    let nats = NatsServer::start();
    let queue = QueueClient::connect(&nats).await;
    queue.provision(model).await;
    let worker = Worker::start(&nats, model, flags);
    (nats, queue, worker)
}

/// The default model's file (`scripts/fetch-model.sh` puts it in `models/`), or `None` with a
/// notice when it was not fetched (the test then passes without it).
pub fn default_model() -> Option<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf");
    match path.is_file() {
        true => Some(path.to_string_lossy().into_owned()),
        false => {
            eprintln!("NOTICE: {} is absent; skipping", path.display());
            None
        }
    }
}
