//! The gateway's one wildcard reply subscription, demultiplexed in-process.
//!
//! Workers publish every event of a request to `coder.replies.<gateway-id>.<request-id>`; this
//! router hands each to the request that registered for it. There is no per-request subscription,
//! so a request costs the NATS server nothing beyond its queued message.

use coder_nats::{subjects, WorkerEvent};
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use uuid::Uuid;

#[derive(Default)]
pub struct ReplyRouter {
    routes: Mutex<HashMap<Uuid, mpsc::UnboundedSender<WorkerEvent>>>,
}

impl ReplyRouter {
    /// Registers a request before it is published, so no early event is missed.
    pub fn register(&self, request_id: Uuid) -> mpsc::UnboundedReceiver<WorkerEvent> {
        let (sender, receiver) = mpsc::unbounded_channel();
        self.routes
            .lock()
            .expect("routes lock")
            .insert(request_id, sender);
        receiver
    }

    pub fn remove(&self, request_id: Uuid) {
        self.routes.lock().expect("routes lock").remove(&request_id);
    }

    pub fn in_flight(&self) -> usize {
        self.routes.lock().expect("routes lock").len()
    }

    /// Routes one reply message; events for unknown (finished, timed-out) requests are dropped.
    pub fn deliver(&self, subject: &str, payload: &[u8]) {
        let Some(request_id) = subjects::request_id_from_subject(subject) else {
            tracing::warn!(subject, "reply on a subject without a request id");
            return;
        };
        let event = match WorkerEvent::from_json(payload) {
            Ok(event) => event,
            Err(error) => {
                tracing::warn!(%request_id, %error, "undecodable worker event dropped");
                return;
            }
        };
        let routes = self.routes.lock().expect("routes lock");
        match routes.get(&request_id) {
            Some(route) => {
                let _ = route.send(event);
            }
            None => tracing::debug!(%request_id, "event for a request no longer waiting"),
        }
    }

    /// A router fed by this gateway's wildcard reply subscription, on a task of its own.
    pub async fn subscribe(
        client: &async_nats::Client,
        gateway_id: &str,
    ) -> Result<Arc<Self>, async_nats::SubscribeError> {
        let replies = client
            .subscribe(subjects::replies_wildcard(gateway_id))
            .await?;
        let router = Arc::new(Self::default());
        tokio::spawn(Arc::clone(&router).run(replies));
        Ok(router)
    }

    /// Delivers every message of `subscriber` until it ends (the client is closed).
    pub async fn run(self: Arc<Self>, mut subscriber: async_nats::Subscriber) {
        while let Some(message) = subscriber.next().await {
            self.deliver(&message.subject, &message.payload);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coder_nats::{FinishReason, Usage};

    #[test]
    fn events_reach_only_their_request() {
        let router = ReplyRouter::default();
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let mut rx_a = router.register(a);
        let mut rx_b = router.register(b);
        let event = WorkerEvent::Final {
            attempt: 1,
            finish_reason: FinishReason::Stop,
            usage: Usage::default(),
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
        let router = ReplyRouter::default();
        let id = Uuid::now_v7();
        let mut rx = router.register(id);
        router.deliver(&subjects::reply_subject("gw", id), b"not json");
        router.deliver("coder.replies.gw.not-a-uuid", b"{}");
        assert!(rx.try_recv().is_err());
    }
}
