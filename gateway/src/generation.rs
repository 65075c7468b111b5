//! One request's life after it was queued: following worker events to the client, with the
//! deadline, redeliveries and the per-request metrics (queue wait, time to first token, time per
//! output token, token usage).

use crate::attempts::{AttemptFilter, Filtered};
use crate::error::ApiError;
use crate::in_flight::Submitted;
use coder_nats::{CancelReason, ErrorKind, FinishReason, Usage, WorkerEvent};
use metrics_common::{GatewayMetrics, ModelLabel};
use std::time::Duration;
use tokio::time::Instant;
use uuid::Uuid;

/// What the client gets next.
#[derive(Debug, PartialEq)]
pub enum Progress {
    Token(String),
    Done {
        finish_reason: FinishReason,
        usage: Usage,
    },
}

pub struct Generation {
    pub id: Uuid,
    submitted: Submitted,
    filter: AttemptFilter,
    received_at: Instant,
    deadline: Instant,
    timeout: Duration,
    metrics: GatewayMetrics,
    first_token_at: Option<Instant>,
    last_token_at: Option<Instant>,
    tokens: u32,
}

impl Generation {
    pub fn new(
        id: Uuid,
        submitted: Submitted,
        received_at: Instant,
        timeout: Duration,
        metrics: GatewayMetrics,
    ) -> Self {
        Self {
            id,
            submitted,
            filter: AttemptFilter::default(),
            received_at,
            deadline: received_at + timeout,
            timeout,
            metrics,
            first_token_at: None,
            last_token_at: None,
            tokens: 0,
        }
    }

    /// The request's model: the label its metrics are recorded under.
    pub fn model(&self) -> &ModelLabel {
        &self.submitted.guard.model
    }

    /// The next piece for the client. After `Done` or an error the generation is over; dropping
    /// it before then cancels the request.
    pub async fn next(&mut self) -> Result<Progress, ApiError> {
        loop {
            let event = tokio::select! {
                biased; // an answer that arrived in time wins over the deadline
                event = self.submitted.events.recv() => event,
                _ = tokio::time::sleep_until(self.deadline) => {
                    tracing::info!(request_id = %self.id, "deadline passed: 504");
                    self.submitted.guard.give_up(CancelReason::DeadlineExceeded);
                    return Err(ApiError::Timeout(self.timeout));
                }
            };
            let Some(event) = event else {
                // The router cut the request off (its client read too slowly) and cancelled it.
                self.submitted.guard.finished();
                return Err(ApiError::ClientTooSlow);
            };
            if let Some(progress) = self.handle(event)? {
                return Ok(progress);
            }
        }
    }

    fn handle(&mut self, event: WorkerEvent) -> Result<Option<Progress>, ApiError> {
        let queue_wait = match &event {
            WorkerEvent::Started { queue_wait_ms, .. } => Duration::from_millis(*queue_wait_ms),
            _ => Duration::ZERO,
        };
        match self.filter.accept(event) {
            Filtered::Skip => Ok(None),
            Filtered::Started { redelivered, .. } => {
                self.submitted.guard.ticket.started();
                self.metrics.record_queue_wait(self.model(), queue_wait);
                if redelivered {
                    tracing::warn!(request_id = %self.id, "request redelivered to another worker");
                    self.metrics.record_redelivery(self.model());
                }
                Ok(None)
            }
            Filtered::Token(text) => {
                let now = Instant::now();
                if self.first_token_at.is_none() {
                    self.first_token_at = Some(now);
                    self.metrics
                        .record_time_to_first_token(self.model(), now - self.received_at);
                }
                self.last_token_at = Some(now);
                self.tokens = self.tokens.saturating_add(1);
                Ok(Some(Progress::Token(text)))
            }
            Filtered::Terminal(WorkerEvent::Final {
                finish_reason,
                usage,
                ..
            }) => {
                self.submitted.guard.finished();
                self.record_completion(usage);
                Ok(Some(Progress::Done {
                    finish_reason,
                    usage,
                }))
            }
            Filtered::Terminal(WorkerEvent::Error { kind, message, .. }) => {
                self.submitted.guard.finished();
                Err(match kind {
                    ErrorKind::Expired => ApiError::Timeout(self.timeout),
                    ErrorKind::InvalidRequest => ApiError::BadRequest {
                        message,
                        param: None,
                    },
                    ErrorKind::Cancelled => {
                        ApiError::Unavailable(format!("worker cancelled: {message}"))
                    }
                    ErrorKind::Internal => ApiError::Internal(format!("worker failed: {message}")),
                })
            }
            Filtered::Terminal(other) => {
                self.submitted.guard.give_up(CancelReason::GatewayError);
                Err(ApiError::Internal(format!("unexpected event {other:?}")))
            }
        }
    }

    fn record_completion(&self, usage: Usage) {
        self.metrics.record_usage(
            self.model(),
            u64::from(usage.prompt_tokens),
            u64::from(usage.completion_tokens),
        );
        if let (Some(first), Some(last)) = (self.first_token_at, self.last_token_at) {
            if self.tokens > 1 {
                self.metrics
                    .record_time_per_output_token(self.model(), (last - first) / (self.tokens - 1));
            }
        }
    }

    /// Runs to the end, gathering the text (non-streamed responses).
    pub async fn collect(&mut self) -> Result<(String, FinishReason, Usage), ApiError> {
        let mut text = String::new();
        loop {
            match self.next().await? {
                Progress::Token(piece) => text.push_str(&piece),
                Progress::Done {
                    finish_reason,
                    usage,
                } => return Ok((text, finish_reason, usage)),
            }
        }
    }
}
