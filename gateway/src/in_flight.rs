//! A queued request's handle: its events, and the guard that cleans up after it (the reply
//! route, the active-requests gauge) and cancels it on NATS if it is abandoned.

use crate::admission::QueueTicket;
use crate::replies::ReplyRouter;
use coder_nats::headers::unix_millis;
use coder_nats::{subjects, Cancel, CancelReason, WorkerEvent};
use metrics_common::{GatewayMetrics, ModelLabel};
use std::sync::Arc;
use std::time::SystemTime;
use tokio::sync::mpsc;
use uuid::Uuid;

/// A queued request: its events, and the guard that cancels it if it is abandoned.
pub struct Submitted {
    pub events: mpsc::Receiver<WorkerEvent>,
    pub guard: InFlight,
}

/// Lives as long as the client waits. Dropping it before [`InFlight::finished`] (client gone,
/// deadline passed) publishes `coder.cancel.<id>` so the worker stops generating.
pub struct InFlight {
    client: async_nats::Client,
    router: Arc<ReplyRouter>,
    metrics: GatewayMetrics,
    request_id: Uuid,
    /// Sent with a cancel: workers remember it until then.
    deadline: SystemTime,
    /// The request's model, for its metrics.
    pub model: ModelLabel,
    pub ticket: QueueTicket,
    done: bool,
    /// Why a drop before [`InFlight::finished`] cancels: the client left (or the gateway's
    /// shutdown grace ended with the request open), unless [`InFlight::give_up`] said otherwise.
    cancel_reason: CancelReason,
}

impl InFlight {
    /// Counts the request active until the guard drops.
    pub fn new(
        client: &async_nats::Client,
        router: &Arc<ReplyRouter>,
        metrics: &GatewayMetrics,
        request_id: Uuid,
        deadline: SystemTime,
        model: ModelLabel,
        ticket: QueueTicket,
    ) -> Self {
        metrics.active_requests_add(&model, 1);
        Self {
            client: client.clone(),
            router: Arc::clone(router),
            metrics: metrics.clone(),
            request_id,
            deadline,
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
        let cancel = Cancel {
            reason,
            deadline_ms: Some(unix_millis(self.deadline)),
        }
        .to_json();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(error) = client.publish(subject, cancel.into()).await {
                    tracing::warn!(%error, "cancel not published");
                }
            });
        }
    }
}
