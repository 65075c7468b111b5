//! The gateway's one wildcard reply subscription, demultiplexed in-process.
//!
//! Workers publish every event of a request to `coder.replies.<gateway-id>.<request-id>`; this
//! router hands each to the request that registered for it. There is no per-request subscription,
//! so a request costs the NATS server nothing beyond its queued message.
//!
//! Each request buffers at most `--stream-event-buffer` events. A request whose client reads its
//! stream more slowly than its tokens come (or stops reading) fills its buffer: the router then
//! drops its route and cancels it, so the worker stops, and the client's stream ends in an error
//! when it next reads.

use crate::supervisor::Supervisor;
use coder_nats::headers::unix_millis;
use coder_nats::{subjects, Cancel, CancelReason, WorkerEvent};
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tokio::sync::mpsc;
use uuid::Uuid;

pub struct ReplyRouter {
    routes: Mutex<HashMap<Uuid, Route>>,
    /// Events a request may have waiting for its client.
    buffer: usize,
}

struct Route {
    events: mpsc::Sender<WorkerEvent>,
    /// The request's deadline, for the cancel of a client cut off.
    deadline: SystemTime,
}

/// A request the router cut off: its cancel is to be published.
#[derive(Debug, PartialEq)]
pub struct CutOff {
    pub request_id: Uuid,
    pub cancel: Cancel,
}

impl ReplyRouter {
    pub fn new(buffer: usize) -> Self {
        Self {
            routes: Mutex::default(),
            buffer: buffer.max(1),
        }
    }

    /// Registers a request before it is published, so no early event is missed. The receiver
    /// ends (`None`) if the request is cut off for reading too slowly.
    pub fn register(&self, request_id: Uuid, deadline: SystemTime) -> mpsc::Receiver<WorkerEvent> {
        let (events, receiver) = mpsc::channel(self.buffer);
        self.routes
            .lock()
            .expect("routes lock")
            .insert(request_id, Route { events, deadline });
        receiver
    }

    pub fn remove(&self, request_id: Uuid) {
        self.routes.lock().expect("routes lock").remove(&request_id);
    }

    pub fn in_flight(&self) -> usize {
        self.routes.lock().expect("routes lock").len()
    }

    /// Routes one reply message; events for unknown (finished, timed-out) requests are dropped.
    /// A request whose buffer is full is cut off: the cancel to publish for it.
    pub fn deliver(&self, subject: &str, payload: &[u8]) -> Option<CutOff> {
        let Some(request_id) = subjects::request_id_from_subject(subject) else {
            tracing::warn!(subject, "reply on a subject without a request id");
            return None;
        };
        let event = match WorkerEvent::from_json(payload) {
            Ok(event) => event,
            Err(error) => {
                tracing::warn!(%request_id, %error, "undecodable worker event dropped");
                return None;
            }
        };
        let mut routes = self.routes.lock().expect("routes lock");
        let Some(route) = routes.get(&request_id) else {
            tracing::debug!(%request_id, "event for a request no longer waiting");
            return None;
        };
        match route.events.try_send(event) {
            Ok(()) => None,
            Err(mpsc::error::TrySendError::Closed(_)) => {
                routes.remove(&request_id);
                None
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                let route = routes.remove(&request_id)?;
                tracing::warn!(%request_id, buffered = self.buffer, "client reads too slowly: cut off, cancelling");
                let cancel = Cancel {
                    reason: CancelReason::ClientTooSlow,
                    deadline_ms: Some(unix_millis(route.deadline)),
                };
                Some(CutOff { request_id, cancel })
            }
        }
    }

    /// A router fed by this gateway's wildcard reply subscription, on a supervised task.
    pub async fn subscribe(
        client: &async_nats::Client,
        replies_root: &str,
        buffer: usize,
        supervisor: &Supervisor,
    ) -> Result<Arc<Self>, async_nats::SubscribeError> {
        let replies = client
            .subscribe(subjects::replies_wildcard(replies_root))
            .await?;
        let router = Arc::new(Self::new(buffer));
        let routing = Arc::clone(&router).run(replies, client.clone());
        supervisor.spawn("reply subscription", routing);
        Ok(router)
    }

    /// Delivers every message of `subscriber` until it ends (the client is closed); cancels
    /// the requests cut off on `client`.
    pub async fn run(
        self: Arc<Self>,
        mut subscriber: async_nats::Subscriber,
        client: async_nats::Client,
    ) {
        while let Some(message) = subscriber.next().await {
            if let Some(cut_off) = self.deliver(&message.subject, &message.payload) {
                let subject = subjects::cancel_subject(cut_off.request_id);
                if let Err(error) = client
                    .publish(subject, cut_off.cancel.to_json().into())
                    .await
                {
                    tracing::warn!(%error, "cancel not published");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coder_nats::{FinishReason, Usage};

    fn final_event() -> WorkerEvent {
        WorkerEvent::Final {
            attempt: 1,
            finish_reason: FinishReason::Stop,
            usage: Usage::default(),
            finish_reasons: Vec::new(),
        }
    }

    #[test]
    fn a_request_whose_buffer_fills_is_cut_off_and_cancelled_once() {
        let router = ReplyRouter::new(2);
        let id = Uuid::now_v7();
        let deadline = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1234);
        let mut rx = router.register(id, deadline);
        let subject = subjects::reply_subject("gw", id);
        let event = final_event().to_json();
        assert_eq!(router.deliver(&subject, &event), None);
        assert_eq!(router.deliver(&subject, &event), None);
        let cut_off = router.deliver(&subject, &event).expect("cut off");
        assert_eq!(cut_off.request_id, id);
        assert_eq!(cut_off.cancel.reason, CancelReason::ClientTooSlow);
        assert_eq!(cut_off.cancel.deadline_ms, Some(1234));
        assert_eq!(router.deliver(&subject, &event), None);
        assert_eq!(router.in_flight(), 0);
        // The client reads what was buffered, then the end.
        assert!(rx.try_recv().is_ok());
        assert!(rx.try_recv().is_ok());
        assert!(matches!(
            rx.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
    }

    #[test]
    fn events_reach_only_their_request() {
        let router = ReplyRouter::new(16);
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let mut rx_a = router.register(a, SystemTime::now());
        let mut rx_b = router.register(b, SystemTime::now());
        let event = WorkerEvent::Final {
            attempt: 1,
            finish_reason: FinishReason::Stop,
            usage: Usage::default(),
            finish_reasons: Vec::new(),
        };
        router.deliver(&subjects::reply_subject("gw", a), &event.to_json());
        assert_eq!(rx_a.try_recv().unwrap(), event);
        assert!(rx_b.try_recv().is_err());
        router.remove(a);
        router.deliver(&subjects::reply_subject("gw", a), &event.to_json());
        assert_eq!(router.in_flight(), 1);
    }

    #[test]
    fn garbage_is_dropped_without_panicking() {
        let router = ReplyRouter::new(16);
        let id = Uuid::now_v7();
        let mut rx = router.register(id, SystemTime::now());
        router.deliver(&subjects::reply_subject("gw", id), b"not json");
        router.deliver("coder.replies.gw.not-a-uuid", b"{}");
        assert!(rx.try_recv().is_err());
    }
}
