//! The usual setting of a test: a fresh nats-server, a gateway and one synthetic worker.

use super::client::model_list;
use super::exposition::eventually;
use super::gateway::Gateway;
use super::worker::Worker;
use coder_nats::testing::{NatsServer, READY_TIMEOUT};

/// A gateway and one synthetic worker for `model` on a fresh nats-server, with the worker
/// announced (so `/v1/models` lists it).
pub async fn stack(
    model: &str,
    gateway_flags: &[&str],
    worker_flags: &[&str],
) -> (NatsServer, Gateway, Worker) {
    let nats = NatsServer::start();
    let gateway = Gateway::start(&nats, gateway_flags);
    let worker = Worker::start(&nats, model, worker_flags);
    wait_for_model(&gateway, model).await;
    (nats, gateway, worker)
}

/// Waits until `/v1/models` lists `model`.
pub async fn wait_for_model(gateway: &Gateway, model: &str) {
    let found = eventually(READY_TIMEOUT, || async {
        let models = model_list(gateway).await?;
        models["data"]
            .as_array()?
            .iter()
            .any(|m| m["id"] == model)
            .then_some(())
    })
    .await;
    assert!(
        found.is_some(),
        "model {model} never appeared in /v1/models"
    );
}
