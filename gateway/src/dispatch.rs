//! Putting a validated request on the queue, and the guard that cleans up after it.

use crate::admission::{Admission, QueueTicket};
use crate::error::ApiError;
use crate::replies::ReplyRouter;
use async_nats::jetstream;
use coder_nats::headers::RequestHeaders;
use coder_nats::publish_error::{classify, PublishFailure};
use coder_nats::{subjects, Cancel, CancelReason, GenerationRequest, WorkerEvent};
use metrics_common::names::value::RejectReason;
use metrics_common::{GatewayMetrics, ModelLabel};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;
use uuid::Uuid;

/// Room left in a NATS message for the headers.
const HEADER_ALLOWANCE: usize = 1024;
/// How long a 429 asks the client to wait.
const RETRY_AFTER: Duration = Duration::from_secs(1);

pub struct Dispatcher {
    pub client: async_nats::Client,
    pub jetstream: jetstream::Context,
    pub router: Arc<ReplyRouter>,
    pub admission: Arc<Admission>,
    pub metrics: GatewayMetrics,
    pub gateway_id: String,
}

/// A queued request: its events, and the guard that cancels it if it is abandoned.
pub struct Submitted {
    pub events: mpsc::UnboundedReceiver<WorkerEvent>,
    pub guard: InFlight,
}

impl Dispatcher {
    /// Admits, publishes and waits for JetStream's ack. Nothing is queued when this fails.
    /// `label` is `request.model` as a metric label, shared with the response's.
    pub async fn submit(
        &self,
        request: &GenerationRequest,
        label: &ModelLabel,
        deadline: SystemTime,
        traceparent: Option<String>,
    ) -> Result<Submitted, ApiError> {
        let model = request.model.as_str();
        let reject = |reason: RejectReason| self.metrics.record_rejection(label, reason);
        if self.client.connection_state() != async_nats::connection::State::Connected {
            reject(RejectReason::NatsUnavailable);
            return Err(ApiError::Unavailable("not connected to NATS".into()));
        }
        let payload = request.to_json();
        if payload.len() + HEADER_ALLOWANCE > self.client.server_info().max_payload {
            reject(RejectReason::TooLarge);
            return Err(ApiError::PayloadTooLarge(format!(
                "the request is {} bytes, more than one queue message holds ({} bytes)",
                payload.len(),
                self.client.server_info().max_payload - HEADER_ALLOWANCE
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
            reply_to: subjects::reply_subject(&self.gateway_id, request.id),
            deadline,
            traceparent,
        };
        let events = self.router.register(request.id);
        let guard = InFlight::new(self, request.id, label.clone(), ticket);
        let published = self
            .jetstream
            .publish_with_headers(
                subjects::request_subject(model),
                headers.to_header_map(),
                payload.into(),
            )
            .await;
        let acked = match published {
            Ok(ack) => ack.await,
            Err(error) => Err(error),
        };
        if let Err(error) = acked {
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
        Ok(Submitted { events, guard })
    }
}

/// Lives as long as the client waits. Dropping it before [`InFlight::finished`] (client gone,
/// deadline passed) publishes `coder.cancel.<id>` so the worker stops generating.
pub struct InFlight {
    client: async_nats::Client,
    router: Arc<ReplyRouter>,
    metrics: GatewayMetrics,
    request_id: Uuid,
    /// The request's model, for its metrics.
    pub model: ModelLabel,
    pub ticket: QueueTicket,
    done: bool,
    /// Why a drop before [`InFlight::finished`] cancels: the client left (or the gateway's
    /// shutdown grace ended with the request open), unless [`InFlight::give_up`] said otherwise.
    cancel_reason: CancelReason,
}

impl InFlight {
    fn new(
        dispatcher: &Dispatcher,
        request_id: Uuid,
        model: ModelLabel,
        ticket: QueueTicket,
    ) -> Self {
        dispatcher.metrics.active_requests_add(&model, 1);
        Self {
            client: dispatcher.client.clone(),
            router: Arc::clone(&dispatcher.router),
            metrics: dispatcher.metrics.clone(),
            request_id,
            model,
            ticket,
            done: false,
            cancel_reason: CancelReason::ClientDisconnected,
        }
    }

    /// The gateway gives up on the request for `reason`: dropping it now cancels it as that.
    pub fn give_up(&mut self, reason: CancelReason) {
        self.cancel_reason = reason;
    }

    /// The request reached a terminal event: nothing to cancel.
    pub fn finished(&mut self) {
        self.done = true;
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.router.remove(self.request_id);
        self.metrics.active_requests_add(&self.model, -1);
        if self.done {
            return;
        }
        let reason = self.cancel_reason;
        tracing::info!(request_id = %self.request_id, reason = reason.as_str(), "request abandoned: cancelling");
        let client = self.client.clone();
        let subject = subjects::cancel_subject(self.request_id);
        let cancel = Cancel { reason }.to_json();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(error) = client.publish(subject, cancel.into()).await {
                    tracing::warn!(%error, "cancel not published");
                }
            });
        }
    }
}
