//! Announcing the worker: model, slots and device, every interval, at once when it fills up or
//! has room again (other workers take its partitions' requests while it is full), and a last
//! "leaving" beat.

use crate::backend::BackendInfo;
use crate::slots::Slots;
use coder_nats::{subjects, Heartbeat};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Missed heartbeats after which a gateway forgets the worker.
const MISSED_BEATS_TO_EXPIRE: u32 = 3;

pub struct Announcer {
    client: async_nats::Client,
    /// Every beat is this one with the slots of the moment.
    template: Heartbeat,
    slots: Slots,
    interval: Duration,
}

impl Announcer {
    /// Announces `worker_id` serving `model` on the backend described by `backend`.
    pub fn new(
        client: async_nats::Client,
        worker_id: String,
        model: String,
        backend: &BackendInfo,
        slots: Slots,
        interval: Duration,
    ) -> Self {
        let template = Heartbeat {
            worker_id,
            model,
            device: backend.device.clone(),
            backend: backend.kind.to_owned(),
            slots_total: slots.total(),
            slots_busy: 0,
            context_length: backend.context_length,
            ttl_ms: (interval * MISSED_BEATS_TO_EXPIRE).as_millis() as u64,
            accepting: true,
        };
        Self {
            client,
            template,
            slots,
            interval,
        }
    }

    pub async fn run(self, stopping: CancellationToken) {
        let mut ticker = tokio::time::interval(self.interval);
        let mut announced_full = self.slots.full();
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = self.slots.changed() => {
                    if self.slots.full() == announced_full {
                        continue;
                    }
                }
                _ = stopping.cancelled() => break,
            }
            announced_full = self.slots.full();
            self.beat(true).await;
        }
        self.beat(false).await;
    }

    async fn beat(&self, accepting: bool) {
        let heartbeat = Heartbeat {
            slots_total: self.slots.total(),
            slots_busy: self.slots.busy(),
            accepting,
            ..self.template.clone()
        };
        let subject = subjects::heartbeat_subject(&heartbeat.model, &heartbeat.worker_id);
        if let Err(error) = self
            .client
            .publish(subject, heartbeat.to_json().into())
            .await
        {
            tracing::warn!(%error, "heartbeat not published");
        }
    }
}
