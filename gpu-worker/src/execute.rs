//! Running one delivered request: `started`, tokens, `final`/`error`, in-progress acks while it
//! runs, and the ack only after the last event is out.

use crate::backend::{Backend, BackendError};
use crate::cancel::CancelRegistry;
use crate::job::{intake, Intake, Job};
use crate::sink::ChannelSink;
use crate::slots::Slots;
use async_nats::jetstream::{AckKind, Message};
use coder_nats::{ErrorKind, WorkerEvent};
use metrics_common::names::value::Outcome;
use metrics_common::WorkerMetrics;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, OwnedSemaphorePermit};

/// What every request run here shares: the connection, the backend, cancels, metrics, slots.
pub struct Executor {
    client: async_nats::Client,
    backend: Arc<dyn Backend>,
    cancels: Arc<CancelRegistry>,
    metrics: WorkerMetrics,
    slots: Slots,
    /// Named in each `started` event.
    worker_id: String,
    /// Serialises slot gauge updates.
    slot_report: std::sync::Mutex<()>,
    /// Interval of in-progress acks (a third of the consumer's `ack_wait`).
    progress_every: Duration,
}

impl Executor {
    pub fn new(
        client: async_nats::Client,
        backend: Arc<dyn Backend>,
        cancels: Arc<CancelRegistry>,
        metrics: WorkerMetrics,
        slots: Slots,
        worker_id: String,
        ack_wait: Duration,
    ) -> Self {
        Self {
            client,
            backend,
            cancels,
            metrics,
            slots,
            worker_id,
            slot_report: std::sync::Mutex::default(),
            progress_every: ack_wait / 3,
        }
    }

    /// Requests the backend holds waiting for memory.
    pub fn backend_waiting(&self) -> usize {
        self.backend.waiting()
    }

    /// Handles one message; `slot` is held until the message is acked.
    pub async fn handle(self: Arc<Self>, message: Message, slot: OwnedSemaphorePermit) {
        let running = self.slots.start();
        self.report_slots();
        let (attempt, published) = match message.info() {
            Ok(info) => (info.delivered, SystemTime::from(info.published)),
            Err(_) => (1, SystemTime::now()),
        };
        let fate = intake(
            message.headers.as_ref(),
            &message.payload,
            attempt,
            published,
            SystemTime::now(),
            |id| self.cancels.is_cancelled(id),
        );
        let outcome = match fate {
            Intake::Poison(reason) => {
                tracing::warn!(subject = %message.subject, %reason, "poison message terminated");
                ack(&message, AckKind::Term).await;
                Outcome::Failed
            }
            Intake::Expired(job) => {
                tracing::info!(request_id = %job.request.id, "deadline passed in the queue: not computed");
                let why = "the request's deadline passed while it was queued";
                self.answer_uncomputed(&job, &message, ErrorKind::Expired, why)
                    .await;
                Outcome::Expired
            }
            Intake::Cancelled(job) => {
                tracing::info!(request_id = %job.request.id, "cancelled before it ran: not computed");
                self.answer_uncomputed(&job, &message, ErrorKind::Cancelled, "cancelled")
                    .await;
                Outcome::Cancelled
            }
            Intake::Run(job) => self.run(job, &message).await,
        };
        self.metrics.record_outcome(outcome);
        drop(running);
        drop(slot);
        self.report_slots();
    }

    /// Answers a request it will not compute with an `error` event, then acks it.
    async fn answer_uncomputed(&self, job: &Job, message: &Message, kind: ErrorKind, why: &str) {
        let event = WorkerEvent::Error {
            attempt: job.attempt,
            kind,
            message: why.to_owned(),
        };
        self.publish(job, event).await;
        ack(message, AckKind::Ack).await;
    }

    /// One read of the busy count, recorded under a lock, so two requests finishing together
    /// cannot leave a stale pair behind.
    fn report_slots(&self) {
        let _serialised = self.slot_report.lock().expect("slot report lock");
        let busy = self.slots.busy();
        let idle = self.slots.total() - busy;
        self.metrics.set_slots(u64::from(busy), u64::from(idle));
    }

    #[tracing::instrument(skip_all, fields(request_id = %job.request.id, attempt = job.attempt, traceparent = job.traceparent.as_deref().unwrap_or("")))]
    async fn run(&self, job: Job, message: &Message) -> Outcome {
        let attempt = job.attempt;
        let queue_wait_ms = job.queue_wait.as_millis() as u64;
        // Registered before `started` goes out: a cancel the gateway sends on seeing it finds
        // the request.
        let cancelled = self.cancels.register(job.request.id);
        let started = WorkerEvent::Started {
            attempt,
            worker_id: self.worker_id.clone(),
            queue_wait_ms,
        };
        self.publish(&job, started).await;

        let (tokens_tx, mut tokens) = mpsc::unbounded_channel();
        let backend = Arc::clone(&self.backend);
        let request = job.request.clone();
        let generation = tokio::task::spawn_blocking(move || {
            let mut sink = ChannelSink::new(tokens_tx, cancelled, job.deadline);
            backend.generate(&request, &mut sink)
        });

        let mut progress = tokio::time::interval(self.progress_every);
        progress.tick().await;
        let mut index = 0u32;
        loop {
            tokio::select! {
                token = tokens.recv() => match token {
                    Some(text) => {
                        if !text.is_empty() {
                            self.publish(&job, WorkerEvent::Token { attempt, index, text }).await;
                        }
                        index += 1;
                    }
                    None => break,
                },
                _ = progress.tick() => ack(message, AckKind::Progress).await,
            }
        }
        self.cancels.remove(job.request.id);

        let result = generation.await.unwrap_or_else(|panic| {
            Err(BackendError::Internal(anyhow::anyhow!(
                "generation panicked: {panic}"
            )))
        });
        let (event, outcome) = match result {
            Ok(done) => (
                WorkerEvent::Final {
                    attempt,
                    finish_reason: done.finish_reason,
                    usage: done.usage,
                },
                Outcome::Completed,
            ),
            Err(BackendError::Cancelled) => {
                let event = WorkerEvent::Error {
                    attempt,
                    kind: ErrorKind::Cancelled,
                    message: "cancelled".into(),
                };
                (event, Outcome::Cancelled)
            }
            Err(BackendError::InvalidRequest(text)) => {
                let event = WorkerEvent::Error {
                    attempt,
                    kind: ErrorKind::InvalidRequest,
                    message: text,
                };
                (event, Outcome::Failed)
            }
            Err(BackendError::Internal(error)) => {
                tracing::error!(error = format!("{error:#}"), "generation failed");
                let event = WorkerEvent::Error {
                    attempt,
                    kind: ErrorKind::Internal,
                    message: "generation failed".into(),
                };
                (event, Outcome::Failed)
            }
        };
        self.publish(&job, event).await;
        if let Err(error) = self.client.flush().await {
            tracing::warn!(%error, "flushing the last event failed; the ack may be retried");
        }
        if let Err(error) = message.double_ack().await {
            tracing::warn!(%error, "ack not confirmed; JetStream may redeliver");
        }
        tracing::info!(outcome = outcome.as_str(), tokens = index, "request done");
        outcome
    }

    async fn publish(&self, job: &Job, event: WorkerEvent) {
        if let Err(error) = self
            .client
            .publish(job.reply_to.clone(), event.to_json().into())
            .await
        {
            tracing::warn!(request_id = %job.request.id, %error, "event not published");
        }
    }
}

async fn ack(message: &Message, kind: AckKind) {
    if let Err(error) = message.ack_with(kind).await {
        tracing::warn!(%error, "ack failed");
    }
}
