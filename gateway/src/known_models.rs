//! Which model names the gateway accepts: those with a consumer on the stream (provisioned by a
//! worker, now or before, or by `--models`), plus those a live worker announces. A request for
//! any other name is a 404 and never reaches the queue.

use crate::workers::WorkerRegistry;
use async_nats::jetstream;
use coder_nats::{provision, subjects};
use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

pub struct KnownModels {
    provisioned: RwLock<BTreeSet<String>>,
    workers: Arc<WorkerRegistry>,
    jetstream: jetstream::Context,
}

impl KnownModels {
    pub fn new(workers: Arc<WorkerRegistry>, jetstream: jetstream::Context) -> Self {
        Self {
            provisioned: RwLock::default(),
            workers,
            jetstream,
        }
    }

    /// Replaces the set of provisioned models (from the queue monitor's poll).
    pub fn set_provisioned(&self, models: BTreeSet<String>) {
        *self.provisioned.write().expect("models lock") = models;
    }

    pub fn provisioned(&self) -> BTreeSet<String> {
        self.provisioned.read().expect("models lock").clone()
    }

    /// True if `model` can be queued. A miss is checked against JetStream before answering, so a
    /// model whose first worker started a moment ago is not refused.
    pub async fn contains(&self, model: &str) -> bool {
        if self
            .provisioned
            .read()
            .expect("models lock")
            .contains(model)
            || self.workers.has_model(model)
        {
            return true;
        }
        let Ok(stream) = self
            .jetstream
            .get_stream_no_info(subjects::STREAM_NAME)
            .await
        else {
            return false;
        };
        match stream.consumer_info(subjects::consumer_name(model)).await {
            Ok(info) if provision::model_of_consumer(&info).as_deref() == Some(model) => {
                self.provisioned
                    .write()
                    .expect("models lock")
                    .insert(model.to_owned());
                true
            }
            _ => false,
        }
    }
}
