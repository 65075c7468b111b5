//! Announcing the worker: model, slots and device, every interval, and a last "leaving" beat.

use crate::slots::Slots;
use coder_nats::{subjects, Heartbeat};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Missed heartbeats after which a gateway forgets the worker.
const MISSED_BEATS_TO_EXPIRE: u32 = 3;

pub struct Announcer {
    pub client: async_nats::Client,
    pub template: Heartbeat,
    pub slots: Slots,
    pub interval: Duration,
}

impl Announcer {
    pub fn new(
        client: async_nats::Client,
        template: Heartbeat,
        slots: Slots,
        interval: Duration,
    ) -> Self {
        let template = Heartbeat {
            ttl_ms: (interval * MISSED_BEATS_TO_EXPIRE).as_millis() as u64,
            ..template
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
        loop {
            tokio::select! {
                _ = ticker.tick() => self.beat(true).await,
                _ = stopping.cancelled() => break,
            }
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
