//! Which model names the gateway accepts: those with a consumer on the stream (provisioned by a
//! worker, now or before, or by `--models`), plus those a live worker announces. A request for
//! any other name is a 404 and never reaches the queue.
//!
//! A name found nowhere in memory is looked up on JetStream, but a miss costs at most one look-up
//! per [`MISS_RECHECK_INTERVAL`], whatever the names: a flood of requests for unknown models makes
//! no JetStream calls beyond that, and the queue monitor's poll still adds new models as before.

use crate::workers::WorkerRegistry;
use async_nats::jetstream;
use coder_nats::{provision, subjects};
use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// After a JetStream look-up found no model, further misses within this window are answered 404
/// from memory.
pub const MISS_RECHECK_INTERVAL: Duration = Duration::from_secs(1);

pub struct KnownModels {
    provisioned: RwLock<BTreeSet<String>>,
    workers: Arc<WorkerRegistry>,
    jetstream: jetstream::Context,
    /// When a JetStream look-up last found no model. Held across a look-up, so concurrent misses
    /// wait for it rather than each making their own.
    last_miss: Mutex<Option<Instant>>,
}

impl KnownModels {
    pub fn new(workers: Arc<WorkerRegistry>, jetstream: jetstream::Context) -> Self {
        Self {
            provisioned: RwLock::default(),
            workers,
            jetstream,
            last_miss: Mutex::default(),
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
    /// model whose first worker started a moment ago is not refused, unless another miss was
    /// checked less than [`MISS_RECHECK_INTERVAL`] ago.
    pub async fn contains(&self, model: &str) -> bool {
        if self.known_in_memory(model) {
            return true;
        }
        let mut last_miss = self.last_miss.lock().await;
        if last_miss.is_some_and(|at| at.elapsed() < MISS_RECHECK_INTERVAL) {
            return self.known_in_memory(model);
        }
        let found = self.look_up(model).await;
        if found {
            self.provisioned
                .write()
                .expect("models lock")
                .insert(model.to_owned());
        } else {
            *last_miss = Some(Instant::now());
        }
        found
    }

    fn known_in_memory(&self, model: &str) -> bool {
        self.provisioned
            .read()
            .expect("models lock")
            .contains(model)
            || self.workers.has_model(model)
    }

    /// Whether the stream has a consumer for `model` (its first partition's: all are created
    /// together).
    async fn look_up(&self, model: &str) -> bool {
        let Ok(stream) = self
            .jetstream
            .get_stream_no_info(subjects::STREAM_NAME)
            .await
        else {
            return false;
        };
        match stream
            .consumer_info(subjects::consumer_name(model, 0))
            .await
        {
            Ok(info) => provision::model_of_consumer(&info).as_deref() == Some(model),
            Err(_) => false,
        }
    }
}
