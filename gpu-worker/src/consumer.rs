//! The pull loop: fetch only as many requests as there are free slots, from the partitions the
//! [`Signals`] say are due (this worker's own first), and none while the backend holds a
//! request waiting for memory (the rest stays in JetStream, visible to the backlog metrics and to
//! other workers).

use crate::affinity::Signals;
use crate::execute::Executor;
use crate::slots::Slots;
use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::AckKind;
use coder_nats::retry::Backoff;
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The wait after a failed fetch, doubling up to [`FETCH_RETRY_MAX`].
const FETCH_RETRY_FIRST: Duration = Duration::from_millis(100);
const FETCH_RETRY_MAX: Duration = Duration::from_secs(2);
/// How long one fetch (which never waits on the server for messages) may take to answer.
const FETCH_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the loop looks again while the backend holds a request waiting for memory.
const WAITING_POLL: Duration = Duration::from_millis(50);

/// What the loop pulls from and hands work to.
pub struct PullLoop {
    /// The model's partitions' consumers, element `p` partition `p`'s.
    pub partitions: Vec<PullConsumer>,
    pub signals: Arc<Signals>,
    pub slots: Slots,
    pub executor: Arc<Executor>,
}

impl PullLoop {
    /// Pulls until `stopping`; every request it takes runs on `tasks`.
    pub async fn run(self, stopping: CancellationToken, tasks: TaskTracker) {
        let mut backoff = Backoff::new(FETCH_RETRY_FIRST, FETCH_RETRY_MAX);
        let mut slot = None;
        loop {
            let held = match slot.take() {
                Some(held) => held,
                None => tokio::select! {
                    biased; // a free slot must not start another pull once stopping
                    _ = stopping.cancelled() => return,
                    held = self.slots.acquire() => held,
                },
            };
            while self.executor.backend_waiting() > 0 {
                tokio::select! {
                    _ = tokio::time::sleep(WAITING_POLL) => {}
                    _ = stopping.cancelled() => return,
                }
            }
            let mut held = Some(held);
            let mut failed = false;
            for partition in self.signals.due() {
                let wanted = usize::from(held.is_some()) + self.slots.free() as usize;
                if wanted == 0 {
                    break;
                }
                match self.fetch(partition, wanted).await {
                    Ok(messages) => {
                        let emptied = messages.len() < wanted;
                        self.signals.fetched(partition, emptied);
                        for message in messages {
                            self.start(message, held.take(), &stopping, &tasks).await;
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, partition, "fetch failed; retrying");
                        failed = true;
                        break;
                    }
                }
            }
            if failed {
                drop(held);
                tokio::select! {
                    _ = tokio::time::sleep(backoff.next_delay()) => {}
                    _ = stopping.cancelled() => return,
                }
                continue;
            }
            backoff.reset();
            if held.is_some() {
                // Nothing due, or every due partition empty: wait for a ring with the slot held.
                slot = held;
                tokio::select! {
                    _ = self.signals.wait() => {}
                    _ = stopping.cancelled() => return,
                }
            }
        }
    }

    /// Up to `wanted` requests waiting in `partition`, without waiting for more to arrive.
    async fn fetch(
        &self,
        partition: u16,
        wanted: usize,
    ) -> Result<Vec<async_nats::jetstream::Message>, String> {
        let consumer = &self.partitions[usize::from(partition)];
        let fetched = async {
            let mut batch = consumer
                .fetch()
                .max_messages(wanted)
                .messages()
                .await
                .map_err(|error| error.to_string())?;
            let mut messages = Vec::with_capacity(wanted);
            while let Some(message) = batch.next().await {
                match message {
                    Ok(message) => messages.push(message),
                    // Messages already delivered are kept; the partition counts as unserved.
                    Err(error) if messages.is_empty() => return Err(error.to_string()),
                    Err(error) => {
                        tracing::debug!(%error, "fetch ended early");
                        break;
                    }
                }
            }
            Ok(messages)
        };
        tokio::time::timeout(FETCH_TIMEOUT, fetched)
            .await
            .map_err(|_| "no answer from NATS".to_owned())?
    }

    /// Runs one fetched request in `held` or another free slot; a request that finds none (or
    /// arrives while stopping) goes straight back for another worker.
    async fn start(
        &self,
        message: async_nats::jetstream::Message,
        held: Option<OwnedSemaphorePermit>,
        stopping: &CancellationToken,
        tasks: &TaskTracker,
    ) {
        match held.or_else(|| self.slots.try_acquire()) {
            Some(free) if !stopping.is_cancelled() => {
                tasks.spawn(Arc::clone(&self.executor).handle(message, free));
            }
            _ => {
                if let Err(error) = message.ack_with(AckKind::Nak(None)).await {
                    tracing::warn!(%error, "nak failed; the request returns after ack_wait");
                }
            }
        }
    }
}
