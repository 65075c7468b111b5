//! Putting a validated request on the queue: the model checked, the deadline set, admission,
//! publish to the request's partition with JetStream's ack (retried through a leader election or
//! a reconnect), the doorbell rung; then the [`Generation`] that follows it.

use crate::admission::Admission;
use crate::config::Config;
use crate::error::ApiError;
use crate::generation::{Generation, OutputShape};
use crate::in_flight::{InFlight, Submitted};
use crate::known_models::KnownModels;
use crate::publish_retry::publish_until_acked;
use crate::replies::ReplyRouter;
use crate::request_context::RequestContext;
use crate::supervisor::Supervisor;
use async_nats::jetstream;
use coder_nats::headers::RequestHeaders;
use coder_nats::publish_error::{classify, PublishFailure};
use coder_nats::{affinity, subjects, CancelReason, GenerationRequest, Prompt, SamplingParams};
use metrics_common::names::value::RejectReason;
use metrics_common::{GatewayMetrics, ModelLabel};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Room left in a NATS message for the headers.
const HEADER_ALLOWANCE: usize = 1024;
/// How long a 429 asks the client to wait.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Bytes of request a NATS message holds once the headers have their room; none on a server
/// whose `max_payload` is smaller than that room.
fn payload_room(max_payload: usize) -> usize {
    max_payload.saturating_sub(HEADER_ALLOWANCE)
}

/// Everything a request needs to be queued and followed; one per gateway.
pub struct Dispatcher {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    /// Routes this gateway's replies to the requests waiting for them.
    router: Arc<ReplyRouter>,
    admission: Arc<Admission>,
    models: Arc<KnownModels>,
    metrics: GatewayMetrics,
    /// This gateway's place under `coder.replies.` (`<scope>.<gateway-id>`): forms its reply
    /// subjects.
    replies_root: String,
    /// From receipt to the last token (`--request-timeout`): sets each request's deadline.
    request_timeout: Duration,
    /// How long an unacknowledged publish is retried (`--publish-retry-window`).
    publish_retry_window: Duration,
}

impl Dispatcher {
    /// Subscribes to this gateway's replies and is ready to queue requests.
    pub async fn start(
        config: &Config,
        client: async_nats::Client,
        replies_root: String,
        admission: Arc<Admission>,
        models: Arc<KnownModels>,
        metrics: GatewayMetrics,
        supervisor: &Supervisor,
    ) -> Result<Self, async_nats::SubscribeError> {
        Ok(Self {
            router: ReplyRouter::subscribe(
                &client,
                &replies_root,
                config.stream_event_buffer as usize,
                config.max_deliver,
                supervisor,
            )
            .await?,
            jetstream: jetstream::new(client.clone()),
            client,
            admission,
            models,
            metrics,
            replies_root,
            request_timeout: config.request_timeout,
            publish_retry_window: config.publish_retry_window,
        })
    }

    /// The NATS connection, for readiness.
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// The JetStream context, for readiness.
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.jetstream
    }

    /// Checks the model is known, queues the request and returns its [`Generation`].
    /// `cache_key` (the client's `prompt_cache_key`) picks the request's partition in place of
    /// its prompt's leading content ([`affinity::prompt_key`]).
    pub async fn start_generation(
        &self,
        context: &RequestContext,
        label: &ModelLabel,
        prompt: Prompt,
        params: SamplingParams,
        cache_key: Option<&str>,
    ) -> Result<Generation, ApiError> {
        let model = label.as_str();
        if !self.models.contains(model).await {
            return Err(ApiError::ModelNotFound(model.to_owned()));
        }
        let partition = affinity::request_partition(model, &prompt, cache_key);
        let (id, received_at) = (context.id, context.received_at);
        let shape = OutputShape {
            choices: params.n,
            logprobs: params.logprobs,
            tool_calls: matches!(&prompt, Prompt::Conversation(c) if !c.offered_tools().is_empty()),
        };
        let request = GenerationRequest {
            id,
            model: model.to_owned(),
            prompt,
            params,
        };
        let timeout = self.request_timeout;
        let deadline = SystemTime::now() + timeout.saturating_sub(received_at.elapsed());
        let traceparent = context.traceparent.clone();
        let submitted = self
            .submit(&request, partition, label, deadline, Some(traceparent))
            .await?;
        Ok(Generation::new(
            id,
            submitted,
            received_at,
            timeout,
            self.metrics.clone(),
            shape,
        ))
    }

    /// When a request's publish stops being retried: after `--publish-retry-window`, or at its
    /// deadline if that comes first.
    fn give_up_publishing_at(&self, deadline: SystemTime) -> tokio::time::Instant {
        let left = deadline
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        tokio::time::Instant::now() + left.min(self.publish_retry_window)
    }

    /// Admits, publishes to `partition` and waits for JetStream's ack, then rings the doorbell.
    /// Nothing is queued when this fails. `label` is `request.model` as a metric label, shared
    /// with the response's.
    async fn submit(
        &self,
        request: &GenerationRequest,
        partition: u16,
        label: &ModelLabel,
        deadline: SystemTime,
        traceparent: Option<String>,
    ) -> Result<Submitted, ApiError> {
        let model = request.model.as_str();
        let reject = |reason: RejectReason| self.metrics.record_rejection(label, reason);
        let payload = request.to_json();
        let room = payload_room(self.client.server_info().max_payload);
        if payload.len() > room {
            reject(RejectReason::TooLarge);
            return Err(ApiError::PayloadTooLarge(format!(
                "the request is {} bytes, more than one queue message holds ({room} bytes)",
                payload.len(),
            )));
        }
        let Some(ticket) = self.admission.try_admit(model) else {
            reject(RejectReason::BacklogFull);
            return Err(ApiError::Overloaded {
                model: model.to_owned(),
                retry_after: RETRY_AFTER,
            });
        };
        let headers = RequestHeaders {
            msg_id: request.id.to_string(),
            reply_to: subjects::reply_subject(&self.replies_root, request.id),
            deadline,
            traceparent,
        };
        let events = self.router.register(request.id, deadline, request.params.n);
        let guard = InFlight::new(
            &self.client,
            &self.router,
            &self.metrics,
            request.id,
            deadline,
            label.clone(),
            ticket,
        );
        let published = publish_until_acked(
            &self.client,
            &self.jetstream,
            subjects::request_subject(model, partition),
            headers.to_header_map(),
            payload.into(),
            self.give_up_publishing_at(deadline),
        )
        .await;
        if published.attempts > 1 {
            tracing::info!(
                attempts = published.attempts,
                acked = published.outcome.is_ok(),
                "publish retried with the same Nats-Msg-Id"
            );
        }
        if let Err(error) = published.outcome {
            let mut guard = guard;
            let failure = classify(&error);
            if failure == PublishFailure::Unavailable {
                guard.give_up(CancelReason::GatewayError); // maybe stored: cancel if it runs
            } else {
                guard.finished(); // refused by the server: never queued, nothing to cancel
            }
            return Err(match failure {
                PublishFailure::StreamFull => {
                    reject(RejectReason::StreamFull);
                    ApiError::Overloaded {
                        model: model.to_owned(),
                        retry_after: RETRY_AFTER,
                    }
                }
                PublishFailure::TooLarge => {
                    reject(RejectReason::TooLarge);
                    ApiError::PayloadTooLarge("the request is larger than one queue message".into())
                }
                PublishFailure::Unavailable => {
                    reject(RejectReason::NatsUnavailable);
                    ApiError::Unavailable(format!("publish not acknowledged: {error}"))
                }
            });
        }
        self.ring_doorbell(model, partition).await;
        Ok(Submitted { events, guard })
    }

    /// Tells the model's workers that `partition` holds a new request, so its owner pulls it at
    /// once. Core NATS, at most once: a lost ring delays the request until a worker's next sweep.
    async fn ring_doorbell(&self, model: &str, partition: u16) {
        let subject = subjects::doorbell_subject(model);
        if let Err(error) = self
            .client
            .publish(subject, affinity::doorbell_payload(partition))
            .await
        {
            tracing::debug!(%error, "doorbell not rung; a worker's sweep finds the request");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_with_a_tiny_max_payload_leaves_no_room_rather_than_underflowing() {
        assert_eq!(payload_room(1024 * 1024), 1024 * 1024 - HEADER_ALLOWANCE);
        assert_eq!(payload_room(HEADER_ALLOWANCE), 0);
        assert_eq!(payload_room(100), 0);
    }
}
