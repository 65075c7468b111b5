//! The pull loop: fetch only as many requests as there are free slots, and none while the
//! backend holds a request waiting for memory (the rest stays in JetStream, visible to the
//! backlog metrics and to other workers).

use crate::execute::Executor;
use crate::slots::Slots;
use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::AckKind;
use coder_nats::retry::Backoff;
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The wait after a failed pull request, doubling up to [`PULL_RETRY_MAX`].
const PULL_RETRY_FIRST: Duration = Duration::from_millis(100);
const PULL_RETRY_MAX: Duration = Duration::from_secs(2);
/// How long one pull request waits on the server for messages.
const PULL_EXPIRES: Duration = Duration::from_secs(2);
/// How often the loop looks again while the backend holds a request waiting for memory.
const WAITING_POLL: Duration = Duration::from_millis(50);
/// Once stopping, how long a batch may stay silent before it is left to expire (whatever it
/// still delivers returns after ack_wait).
const DRAIN_SILENCE: Duration = Duration::from_millis(500);

pub async fn pull_loop(
    consumer: PullConsumer,
    slots: Slots,
    executor: Arc<Executor>,
    stopping: CancellationToken,
    tasks: TaskTracker,
) {
    let mut backoff = Backoff::new(PULL_RETRY_FIRST, PULL_RETRY_MAX);
    loop {
        let slot = tokio::select! {
            biased; // a free slot must not start another pull once stopping
            _ = stopping.cancelled() => return,
            slot = slots.acquire() => slot,
        };
        while executor.backend_waiting() > 0 {
            tokio::select! {
                _ = tokio::time::sleep(WAITING_POLL) => {}
                _ = stopping.cancelled() => return,
            }
        }
        let wanted = 1 + slots.free() as usize;
        let batch = consumer
            .batch()
            .max_messages(wanted)
            .expires(PULL_EXPIRES)
            .messages();
        let pulled = match tokio::time::timeout(PULL_EXPIRES, batch).await {
            Ok(Ok(batch)) => Ok(batch),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err("no answer from NATS".to_owned()),
        };
        let mut batch = match pulled {
            Ok(batch) => {
                backoff.reset();
                batch
            }
            Err(error) => {
                tracing::warn!(%error, "pull request failed; retrying");
                drop(slot);
                tokio::select! {
                    _ = tokio::time::sleep(backoff.next_delay()) => {}
                    _ = stopping.cancelled() => return,
                }
                continue;
            }
        };
        let mut slot = Some(slot);
        // The server ends a batch after PULL_EXPIRES (async-nats itself 5 s later if the server
        // is gone). Once stopping, a silent batch is not waited for.
        loop {
            let next = tokio::select! {
                biased;
                next = batch.next() => next,
                _ = stopping.cancelled() => match tokio::time::timeout(DRAIN_SILENCE, batch.next()).await {
                    Ok(next) => next,
                    Err(_) => break,
                },
            };
            let Some(message) = next else { break };
            let message = match message {
                Ok(message) => message,
                Err(error) => {
                    tracing::debug!(%error, "pull batch ended");
                    break;
                }
            };
            let free = slot.take().or_else(|| slots.try_acquire());
            match free {
                Some(free) if !stopping.is_cancelled() => {
                    tasks.spawn(Arc::clone(&executor).handle(message, free));
                }
                _ => {
                    // Draining (or, defensively, no slot): hand it straight back for another worker.
                    if let Err(error) = message.ack_with(AckKind::Nak(None)).await {
                        tracing::warn!(%error, "nak failed; the request returns after ack_wait");
                    }
                }
            }
        }
    }
}
