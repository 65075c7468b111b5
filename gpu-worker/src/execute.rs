//! Running one delivered request: `started`, tokens, `final`/`error`, in-progress acks while it
//! runs, and the ack only after the gateway confirmed the last event (a nak when it lost some:
//! [`crate::end_receipt`]). Each choice runs on its own thread ([`crate::choice`]); in a
//! conversation offering tools, its token events carry content text and tool-call pieces.

use crate::backend::{Backend, BackendError, Finished};
use crate::cancel::CancelRegistry;
use crate::choice::run_choice;
use crate::end_receipt::{confirm_end, Confirmed, CONFIRM_WINDOW};
use crate::job::{intake, Intake, Job};
use crate::sink::{ChannelSink, Generated};
use crate::slots::Slots;
use crate::tool_calls::choice::parser_for;
use async_nats::jetstream::{AckKind, Message};
use coder_nats::{EndReceipt, ErrorKind, FinishReason, Usage, WorkerEvent};
use metrics_common::names::value::Outcome;
use metrics_common::WorkerMetrics;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio::task::JoinHandle;

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
            param: None,
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
        let generations = self.start_choices(&job, &tokens_tx, &cancelled);
        drop(tokens_tx);

        let mut progress = tokio::time::interval(self.progress_every);
        progress.tick().await;
        // Per choice: the index of its next token event (tokens without text, log probabilities
        // or call pieces send none).
        let mut indexes = vec![0u32; generations.len()];
        loop {
            tokio::select! {
                token = tokens.recv() => match token {
                    Some(generated) => {
                        let index = &mut indexes[generated.choice as usize];
                        if generated.has_output() {
                            let Generated { choice, text, logprobs, tool_calls } = generated;
                            let event = WorkerEvent::Token {
                                attempt, index: *index, text, choice, logprobs, tool_calls,
                            };
                            self.publish(&job, event).await;
                            *index += 1;
                        }
                    }
                    None => break,
                },
                _ = progress.tick() => ack(message, AckKind::Progress).await,
            }
        }
        self.cancels.remove(job.request.id);

        let mut results = Vec::with_capacity(generations.len());
        for generation in generations {
            results.push(generation.await.unwrap_or_else(|panic| {
                Err(BackendError::Internal(anyhow::anyhow!(
                    "generation panicked: {panic}"
                )))
            }));
        }
        let token_events: u32 = indexes.iter().sum();
        let (event, outcome) = match combine(results) {
            Ok((finish_reasons, usage)) => (
                final_event(attempt, finish_reasons, usage, indexes),
                Outcome::Completed,
            ),
            Err(error) => error_event(attempt, error),
        };
        self.end(&job, event, message).await;
        tracing::info!(outcome = outcome.as_str(), token_events, "request done");
        outcome
    }

    /// Sends the terminal event until the gateway answers, then acks the message, or naks it
    /// when the gateway lost events of this attempt (the next attempt regenerates them). A
    /// cancel's `error` is only published: whoever cancelled waits for nothing.
    async fn end(&self, job: &Job, event: WorkerEvent, message: &Message) {
        if let WorkerEvent::Error {
            kind: ErrorKind::Cancelled,
            ..
        } = event
        {
            self.publish(job, event).await;
            if let Err(error) = message.double_ack().await {
                tracing::warn!(%error, "ack not confirmed; JetStream may redeliver");
            }
            return;
        }
        let give_up_at = tokio::time::Instant::now()
            + CONFIRM_WINDOW.min(
                job.deadline
                    .duration_since(SystemTime::now())
                    .unwrap_or_default(),
            );
        let payload = event.to_json().into();
        match confirm_end(&self.client, &job.reply_to, payload, message, give_up_at).await {
            Confirmed::Answered(EndReceipt::Complete) => {}
            Confirmed::Answered(EndReceipt::Redeliver) => {
                tracing::warn!("the gateway lost events of this attempt: redelivering it");
                ack(message, AckKind::Nak(None)).await;
                return;
            }
            Confirmed::Unanswered { tries } => {
                tracing::warn!(tries, "no gateway answered the last event; acking anyway");
            }
        }
        if let Err(error) = message.double_ack().await {
            tracing::warn!(%error, "ack not confirmed; JetStream may redeliver");
        }
    }

    /// Starts every choice the job asks for, each on its own blocking thread writing to `tokens`;
    /// a job whose `n` or `logprobs` is out of bounds (the gateway never sends one) fails at once.
    fn start_choices(
        &self,
        job: &Job,
        tokens: &mpsc::UnboundedSender<Generated>,
        cancelled: &Arc<AtomicBool>,
    ) -> Vec<JoinHandle<Result<Finished, BackendError>>> {
        if let Some((param, message)) = job.request.params.output_out_of_range() {
            let refused = BackendError::InvalidField {
                param: param.into(),
                message,
            };
            return vec![tokio::spawn(async move { Err(refused) })];
        }
        (0..job.request.params.n)
            .map(|choice| {
                let parser = parser_for(&job.request, choice, self.backend.tool_format());
                let sink =
                    ChannelSink::new(tokens.clone(), choice, Arc::clone(cancelled), job.deadline)
                        .with_tool_calls(parser);
                self.generate_choice(job, choice, sink, Arc::clone(cancelled))
            })
            .collect()
    }

    /// Runs choice `choice` of the job on its own blocking thread ([`run_choice`]).
    fn generate_choice(
        &self,
        job: &Job,
        choice: u32,
        mut sink: ChannelSink,
        cancelled: Arc<AtomicBool>,
    ) -> JoinHandle<Result<Finished, BackendError>> {
        let backend = Arc::clone(&self.backend);
        let mut request = job.request.clone();
        request.params = request.params.for_choice(choice);
        tokio::task::spawn_blocking(move || {
            run_choice(backend.as_ref(), &request, &mut sink, &cancelled)
        })
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

/// The request's end from its choices' ends: every choice's finish reason, and the usage with
/// the prompt (and its cached tokens) counted once and every choice's completion tokens; or the first failure that is
/// not a cancel (siblings of a failed choice are cancelled because of it), else the cancel.
fn combine(
    results: Vec<Result<Finished, BackendError>>,
) -> Result<(Vec<FinishReason>, Usage), BackendError> {
    let mut cancelled = None;
    let mut ends = Vec::with_capacity(results.len());
    for result in results {
        match result {
            Ok(finished) => ends.push(finished),
            Err(BackendError::Cancelled) => cancelled = Some(BackendError::Cancelled),
            Err(error) => return Err(error),
        }
    }
    if let Some(cancelled) = cancelled {
        return Err(cancelled);
    }
    let usage = Usage {
        prompt_tokens: ends.first().map_or(0, |f| f.usage.prompt_tokens),
        completion_tokens: ends
            .iter()
            .fold(0u32, |sum, f| sum.saturating_add(f.usage.completion_tokens)),
        // The prompt, counted once: as much of it as choice 0 found cached.
        cached_tokens: ends.first().map_or(0, |f| f.usage.cached_tokens),
    };
    Ok((ends.iter().map(|f| f.finish_reason).collect(), usage))
}

/// The `final` event: choice 0's finish reason, and every choice's when there are several; the
/// token events each choice sent.
fn final_event(
    attempt: u32,
    finish_reasons: Vec<FinishReason>,
    usage: Usage,
    token_events: Vec<u32>,
) -> WorkerEvent {
    WorkerEvent::Final {
        attempt,
        finish_reason: finish_reasons[0],
        usage,
        finish_reasons: match finish_reasons.len() {
            1 => Vec::new(),
            _ => finish_reasons,
        },
        token_events,
    }
}

/// The `error` event of a failed generation, and its outcome.
fn error_event(attempt: u32, error: BackendError) -> (WorkerEvent, Outcome) {
    let (kind, message, param, outcome) = match error {
        BackendError::Cancelled => (
            ErrorKind::Cancelled,
            "cancelled".to_owned(),
            None,
            Outcome::Cancelled,
        ),
        BackendError::InvalidRequest(text) => {
            (ErrorKind::InvalidRequest, text, None, Outcome::Failed)
        }
        BackendError::InvalidField { param, message } => (
            ErrorKind::InvalidRequest,
            message,
            Some(param.into_owned()),
            Outcome::Failed,
        ),
        BackendError::Internal(error) => {
            tracing::error!(error = format!("{error:#}"), "generation failed");
            (
                ErrorKind::Internal,
                "generation failed".to_owned(),
                None,
                Outcome::Failed,
            )
        }
    };
    let event = WorkerEvent::Error {
        attempt,
        kind,
        message,
        param,
    };
    (event, outcome)
}

async fn ack(message: &Message, kind: AckKind) {
    if let Err(error) = message.ack_with(kind).await {
        tracing::warn!(%error, "ack failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished(reason: FinishReason, completion_tokens: u32) -> Result<Finished, BackendError> {
        Ok(Finished {
            finish_reason: reason,
            usage: Usage {
                prompt_tokens: 7,
                completion_tokens,
                cached_tokens: 4,
            },
        })
    }

    #[test]
    fn choices_sum_their_completions_and_count_the_prompt_once() {
        let (reasons, usage) = combine(vec![
            finished(FinishReason::Stop, 3),
            finished(FinishReason::Length, 5),
        ])
        .unwrap();
        assert_eq!(reasons, [FinishReason::Stop, FinishReason::Length]);
        assert_eq!(
            (
                usage.prompt_tokens,
                usage.completion_tokens,
                usage.cached_tokens
            ),
            (7, 8, 4)
        );
    }

    #[test]
    fn a_failed_choice_fails_the_request_over_its_cancelled_siblings() {
        let invalid = || BackendError::InvalidField {
            param: "suffix".into(),
            message: "m".into(),
        };
        let result = combine(vec![
            Err(BackendError::Cancelled),
            Err(invalid()),
            finished(FinishReason::Stop, 1),
        ]);
        assert!(matches!(
            result,
            Err(BackendError::InvalidField { param, .. }) if param == "suffix"
        ));
        let result = combine(vec![
            finished(FinishReason::Stop, 1),
            Err(BackendError::Cancelled),
        ]);
        assert!(matches!(result, Err(BackendError::Cancelled)));
        let (event, _) = error_event(2, invalid());
        assert_eq!(
            event,
            WorkerEvent::Error {
                attempt: 2,
                kind: ErrorKind::InvalidRequest,
                message: "m".into(),
                param: Some("suffix".into()),
            }
        );
    }
}
