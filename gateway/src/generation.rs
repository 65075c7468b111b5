//! One request's life after it was queued: following worker events to the client, with the
//! deadline, redeliveries and the per-request metrics (queue wait, time to first token, time per
//! output token, token usage).

pub use crate::attempts::ChoiceToken;
use crate::attempts::{AttemptFilter, Filtered};
use crate::error::ApiError;
use crate::in_flight::Submitted;
use crate::openai::fields::bounded;
use crate::replies::EVENTS_LOST;
use coder_nats::{
    assemble_tool_call, CancelReason, ErrorKind, FinishReason, TokenLogprobs, ToolCall, Usage,
    WorkerEvent,
};
use metrics_common::{GatewayMetrics, ModelLabel};
use std::time::Duration;
use tokio::time::Instant;
use uuid::Uuid;

/// What the client gets next.
#[derive(Debug, PartialEq)]
pub enum Progress {
    Token(ChoiceToken),
    Done {
        /// One per choice, in choice order.
        finish_reasons: Vec<FinishReason>,
        usage: Usage,
    },
}

/// What a request asked of its output, which the worker's events are held to: a forged or
/// confused event cannot add choices or alternatives the client did not ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputShape {
    /// `n`.
    pub choices: u32,
    /// `None`: no log probabilities; `Some(k)`: the chosen token's and `k` alternatives'.
    pub logprobs: Option<u32>,
    /// Whether the request offered tools, so that tool calls may come back.
    pub tool_calls: bool,
}

/// The most calls one choice may make: deltas for later ones are dropped (128 tools, each
/// called more than once, is already far past what a client asks for).
pub const MAX_TOOL_CALLS_PER_CHOICE: u32 = 256;

/// One choice of a whole (non-streamed) answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ChoiceOutput {
    pub text: String,
    /// Per token, when the request asked for log probabilities.
    pub logprobs: Option<Vec<TokenLogprobs>>,
    /// The calls the choice made, in order (none unless the request offered tools).
    pub tool_calls: Vec<ToolCall>,
    pub finish_reason: FinishReason,
}

pub struct Generation {
    pub id: Uuid,
    submitted: Submitted,
    filter: AttemptFilter,
    shape: OutputShape,
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
        shape: OutputShape,
    ) -> Self {
        Self {
            id,
            submitted,
            filter: AttemptFilter::new(shape.choices),
            shape,
            received_at,
            deadline: received_at + timeout,
            timeout,
            metrics,
            first_token_at: None,
            last_token_at: None,
            tokens: 0,
        }
    }

    /// What the request asked of its output.
    pub fn shape(&self) -> OutputShape {
        self.shape
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
            Filtered::Token(mut token) => {
                token.logprobs = match (self.shape.logprobs, token.logprobs) {
                    (Some(top), Some(mut logprobs)) => {
                        logprobs.top.truncate(top as usize);
                        Some(logprobs)
                    }
                    _ => None,
                };
                if self.shape.tool_calls {
                    token
                        .tool_calls
                        .retain(|delta| delta.index < MAX_TOOL_CALLS_PER_CHOICE);
                } else {
                    token.tool_calls.clear();
                }
                // Timed on choice 0 alone: with `n` choices interleaved, counting every
                // choice's tokens would divide one sequence's pace by `n`.
                if token.choice == 0 {
                    self.record_token(Instant::now());
                }
                Ok(Some(Progress::Token(token)))
            }
            Filtered::Terminal(WorkerEvent::Final {
                finish_reason,
                usage,
                mut finish_reasons,
                ..
            }) => {
                self.submitted.guard.finished();
                self.record_completion(usage);
                // One per choice, whatever the event held; `tool_calls` only where tools were
                // offered.
                finish_reasons.resize(self.shape.choices.max(1) as usize, finish_reason);
                finish_reasons[0] = finish_reason;
                if !self.shape.tool_calls {
                    for reason in &mut finish_reasons {
                        if *reason == FinishReason::ToolCalls {
                            *reason = FinishReason::Stop;
                        }
                    }
                }
                Ok(Some(Progress::Done {
                    finish_reasons,
                    usage,
                }))
            }
            Filtered::Terminal(WorkerEvent::Error {
                kind,
                message,
                param,
                ..
            }) => {
                self.submitted.guard.finished();
                Err(match kind {
                    ErrorKind::Expired => ApiError::Timeout(self.timeout),
                    ErrorKind::InvalidRequest => ApiError::BadRequest {
                        message,
                        param: param.as_deref().map(bounded),
                    },
                    ErrorKind::Cancelled => {
                        ApiError::Unavailable(format!("worker cancelled: {message}"))
                    }
                    ErrorKind::Internal if message == EVENTS_LOST => ApiError::EventsLost,
                    ErrorKind::Internal => ApiError::Internal(format!("worker failed: {message}")),
                })
            }
            Filtered::Terminal(other) => {
                self.submitted.guard.give_up(CancelReason::GatewayError);
                Err(ApiError::Internal(format!("unexpected event {other:?}")))
            }
        }
    }

    /// Time to first token, and the span and count time per output token is read from.
    fn record_token(&mut self, now: Instant) {
        if self.first_token_at.is_none() {
            self.first_token_at = Some(now);
            self.metrics
                .record_time_to_first_token(self.model(), now - self.received_at);
        }
        self.last_token_at = Some(now);
        self.tokens = self.tokens.saturating_add(1);
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

    /// Runs to the end, gathering each choice's text and log probabilities (non-streamed
    /// responses).
    pub async fn collect(&mut self) -> Result<(Vec<ChoiceOutput>, Usage), ApiError> {
        let choices = self.shape.choices.max(1) as usize;
        let mut outputs: Vec<ChoiceOutput> = (0..choices)
            .map(|_| ChoiceOutput {
                text: String::new(),
                logprobs: self.shape.logprobs.map(|_| Vec::new()),
                tool_calls: Vec::new(),
                finish_reason: FinishReason::Stop,
            })
            .collect();
        loop {
            match self.next().await? {
                Progress::Token(token) => {
                    let output = &mut outputs[token.choice as usize];
                    output.text.push_str(&token.text);
                    if let (Some(all), Some(logprobs)) = (&mut output.logprobs, token.logprobs) {
                        all.push(logprobs);
                    }
                    for delta in token.tool_calls {
                        assemble_tool_call(&mut output.tool_calls, delta);
                    }
                }
                Progress::Done {
                    finish_reasons,
                    usage,
                } => {
                    for (output, finish_reason) in outputs.iter_mut().zip(finish_reasons) {
                        output.finish_reason = finish_reason;
                    }
                    return Ok((outputs, usage));
                }
            }
        }
    }
}
