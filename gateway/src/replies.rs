//! The gateway's one wildcard reply subscription, demultiplexed in-process.
//!
//! Workers publish every event of a request to `coder.replies.<gateway-id>.<request-id>`; this
//! router hands each to the request that registered for it. There is no per-request subscription,
//! so a request costs the NATS server nothing beyond its queued message.
//!
//! Every event passes the request's [`Continuity`] first: events of attempts JetStream cannot
//! have given are dropped, tokens after a lost one are held back, and a worker's terminal event,
//! sent as a NATS request, is answered with an [`EndReceipt`] (complete, or redeliver). A
//! terminal event for a request no longer here (answered, timed out, its client gone) is
//! answered `complete`: there is nothing left to do for it.
//!
//! Each request buffers at most `--stream-event-buffer` events. A request whose client reads its
//! stream more slowly than its tokens come (or stops reading) fills its buffer: the router then
//! drops its route and cancels it, so the worker stops, and the client's stream ends in an error
//! when it next reads.

use crate::continuity::Continuity;
use crate::supervisor::Supervisor;
use coder_nats::headers::unix_millis;
use coder_nats::{subjects, Cancel, CancelReason, EndReceipt, ErrorKind, WorkerEvent};
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tokio::sync::mpsc;
use uuid::Uuid;

/// The error event the router gives a request whose last attempt lost events, which ends it as
/// [`crate::error::ApiError::EventsLost`] (a 502, an error event in a stream already under way):
/// never a 200 with text missing.
pub const EVENTS_LOST: &str = "events of the answer were lost between the worker and the gateway, \
     and no delivery is left to regenerate it (--max-deliver)";

pub struct ReplyRouter {
    routes: Mutex<HashMap<Uuid, Route>>,
    /// Events a request may have waiting for its client.
    buffer: usize,
    /// Deliveries of a request JetStream makes at most (`--max-deliver`): higher attempt
    /// numbers are forged.
    max_deliver: u32,
}

struct Route {
    events: mpsc::Sender<WorkerEvent>,
    /// The request's deadline, for the cancel of a client cut off.
    deadline: SystemTime,
    continuity: Continuity,
}

/// What routing one message calls for.
#[derive(Debug, Default, PartialEq)]
pub struct Routed {
    /// A request cut off for reading too slowly: its cancel is to be published.
    pub cut_off: Option<CutOff>,
    /// The answer to a terminal event.
    pub receipt: Option<EndReceipt>,
}

/// A request the router cut off: its cancel is to be published.
#[derive(Debug, PartialEq)]
pub struct CutOff {
    pub request_id: Uuid,
    pub cancel: Cancel,
}

impl ReplyRouter {
    pub fn new(buffer: usize, max_deliver: u32) -> Self {
        Self {
            routes: Mutex::default(),
            buffer: buffer.max(1),
            max_deliver,
        }
    }

    /// Registers a request of `choices` choices before it is published, so no early event is
    /// missed. The receiver ends (`None`) if the request is cut off for reading too slowly.
    pub fn register(
        &self,
        request_id: Uuid,
        deadline: SystemTime,
        choices: u32,
    ) -> mpsc::Receiver<WorkerEvent> {
        let (events, receiver) = mpsc::channel(self.buffer);
        let route = Route {
            events,
            deadline,
            continuity: Continuity::new(choices, self.max_deliver),
        };
        self.routes
            .lock()
            .expect("routes lock")
            .insert(request_id, route);
        receiver
    }

    pub fn remove(&self, request_id: Uuid) {
        self.routes.lock().expect("routes lock").remove(&request_id);
    }

    pub fn in_flight(&self) -> usize {
        self.routes.lock().expect("routes lock").len()
    }

    /// Routes one reply message; events for unknown (finished, timed-out) requests are dropped.
    pub fn deliver(&self, subject: &str, payload: &[u8]) -> Routed {
        let Some(request_id) = subjects::request_id_from_subject(subject) else {
            tracing::warn!(subject, "reply on a subject without a request id");
            return Routed::default();
        };
        let event = match WorkerEvent::from_json(payload) {
            Ok(event) => event,
            Err(error) => {
                tracing::warn!(%request_id, %error, "undecodable worker event dropped");
                return Routed::default();
            }
        };
        let mut routes = self.routes.lock().expect("routes lock");
        let Some(route) = routes.get_mut(&request_id) else {
            tracing::debug!(%request_id, "event for a request no longer waiting");
            let over = event.is_terminal() && (1..=self.max_deliver).contains(&event.attempt());
            return Routed {
                cut_off: None,
                receipt: over.then_some(EndReceipt::Complete),
            };
        };
        let admission = route.continuity.admit(&event);
        let mut event = event;
        if !route.continuity.possible_attempt(event.attempt()) {
            tracing::warn!(%request_id, attempt = event.attempt(), max_deliver = self.max_deliver, "event with an attempt JetStream cannot give: dropped");
        } else if admission.receipt == Some(EndReceipt::Redeliver) {
            tracing::warn!(%request_id, attempt = event.attempt(), "events of this attempt were lost: asking for it again");
        } else if admission.lost {
            tracing::warn!(%request_id, attempt = event.attempt(), "events of the last attempt were lost: the request fails");
            event = WorkerEvent::Error {
                attempt: event.attempt(),
                kind: ErrorKind::Internal,
                message: EVENTS_LOST.to_owned(),
                param: None,
            };
        }
        let receipt = admission.receipt;
        if !admission.forward && !admission.lost {
            return Routed {
                cut_off: None,
                receipt,
            };
        }
        let cut_off = match route.events.try_send(event) {
            Ok(()) => None,
            Err(mpsc::error::TrySendError::Closed(_)) => {
                routes.remove(&request_id);
                None
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                let route = routes.remove(&request_id).expect("the route just used");
                tracing::warn!(%request_id, buffered = self.buffer, "client reads too slowly: cut off, cancelling");
                let cancel = Cancel {
                    reason: CancelReason::ClientTooSlow,
                    deadline_ms: Some(unix_millis(route.deadline)),
                };
                Some(CutOff { request_id, cancel })
            }
        };
        Routed { cut_off, receipt }
    }

    /// A router fed by this gateway's wildcard reply subscription, on a supervised task.
    pub async fn subscribe(
        client: &async_nats::Client,
        replies_root: &str,
        buffer: usize,
        max_deliver: u32,
        supervisor: &Supervisor,
    ) -> Result<Arc<Self>, async_nats::SubscribeError> {
        let replies = client
            .subscribe(subjects::replies_wildcard(replies_root))
            .await?;
        let router = Arc::new(Self::new(buffer, max_deliver));
        let routing = Arc::clone(&router).run(replies, client.clone());
        supervisor.spawn("reply subscription", routing);
        Ok(router)
    }

    /// Delivers every message of `subscriber` until it ends (the client is closed); answers
    /// terminal events sent as requests, and cancels the requests cut off, on `client`.
    pub async fn run(
        self: Arc<Self>,
        mut subscriber: async_nats::Subscriber,
        client: async_nats::Client,
    ) {
        while let Some(message) = subscriber.next().await {
            let routed = self.deliver(&message.subject, &message.payload);
            if let (Some(receipt), Some(reply)) = (routed.receipt, message.reply) {
                if let Err(error) = client.publish(reply, receipt.to_json().into()).await {
                    tracing::warn!(%error, "end receipt not published");
                }
            }
            if let Some(cut_off) = routed.cut_off {
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

    fn started(attempt: u32) -> WorkerEvent {
        WorkerEvent::Started {
            attempt,
            worker_id: "w".into(),
            queue_wait_ms: 0,
        }
    }

    fn final_event(token_events: Vec<u32>) -> WorkerEvent {
        WorkerEvent::Final {
            attempt: 1,
            finish_reason: FinishReason::Stop,
            usage: Usage::default(),
            finish_reasons: Vec::new(),
            token_events,
        }
    }

    fn routed(receipt: Option<EndReceipt>) -> Routed {
        Routed {
            cut_off: None,
            receipt,
        }
    }

    #[test]
    fn a_request_whose_buffer_fills_is_cut_off_and_cancelled_once() {
        let router = ReplyRouter::new(2, 3);
        let id = Uuid::now_v7();
        let deadline = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1234);
        let mut rx = router.register(id, deadline, 1);
        let subject = subjects::reply_subject("gw", id);
        let event = started(1).to_json();
        assert_eq!(router.deliver(&subject, &event), routed(None));
        assert_eq!(router.deliver(&subject, &event), routed(None));
        let cut_off = router.deliver(&subject, &event).cut_off.expect("cut off");
        assert_eq!(cut_off.request_id, id);
        assert_eq!(cut_off.cancel.reason, CancelReason::ClientTooSlow);
        assert_eq!(cut_off.cancel.deadline_ms, Some(1234));
        assert_eq!(router.deliver(&subject, &event), routed(None));
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
    fn events_reach_only_their_request_and_its_end_is_receipted() {
        let router = ReplyRouter::new(16, 3);
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let mut rx_a = router.register(a, SystemTime::now(), 1);
        let mut rx_b = router.register(b, SystemTime::now(), 1);
        let subject_a = subjects::reply_subject("gw", a);
        let done = final_event(vec![0]);
        router.deliver(&subject_a, &started(1).to_json());
        let receipt = router.deliver(&subject_a, &done.to_json());
        assert_eq!(receipt, routed(Some(EndReceipt::Complete)));
        assert_eq!(rx_a.try_recv().unwrap(), started(1));
        assert_eq!(rx_a.try_recv().unwrap(), done);
        assert!(rx_b.try_recv().is_err());
        router.remove(a);
        // Sent again (the receipt was lost): the request is over, nothing more to do.
        let again = router.deliver(&subject_a, &done.to_json());
        assert_eq!(again, routed(Some(EndReceipt::Complete)));
        assert_eq!(router.in_flight(), 1);
    }

    #[test]
    fn a_final_after_lost_events_is_held_back_and_asked_again() {
        let router = ReplyRouter::new(16, 3);
        let id = Uuid::now_v7();
        let mut rx = router.register(id, SystemTime::now(), 1);
        let subject = subjects::reply_subject("gw", id);
        router.deliver(&subject, &started(1).to_json());
        // One token event was sent and lost.
        let receipt = router.deliver(&subject, &final_event(vec![1]).to_json());
        assert_eq!(receipt, routed(Some(EndReceipt::Redeliver)));
        assert_eq!(rx.try_recv().unwrap(), started(1));
        assert!(rx.try_recv().is_err(), "the final is not passed on");
        // A forged attempt is not even answered.
        let forged = router.deliver(&subject, &started(9).to_json());
        assert_eq!(forged, routed(None));
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn the_last_attempt_that_lost_events_ends_its_request_with_an_error() {
        let router = ReplyRouter::new(16, 1);
        let id = Uuid::now_v7();
        let mut rx = router.register(id, SystemTime::now(), 1);
        let subject = subjects::reply_subject("gw", id);
        router.deliver(&subject, &started(1).to_json());
        let receipt = router.deliver(&subject, &final_event(vec![1]).to_json());
        assert_eq!(receipt, routed(Some(EndReceipt::Complete)));
        assert_eq!(rx.try_recv().unwrap(), started(1));
        match rx.try_recv().unwrap() {
            WorkerEvent::Error { kind, message, .. } => {
                assert_eq!(kind, ErrorKind::Internal);
                assert_eq!(message, EVENTS_LOST);
            }
            other => panic!("expected the request to fail, got {other:?}"),
        }
    }

    #[test]
    fn garbage_is_dropped_without_panicking() {
        let router = ReplyRouter::new(16, 3);
        let id = Uuid::now_v7();
        let mut rx = router.register(id, SystemTime::now(), 1);
        router.deliver(&subjects::reply_subject("gw", id), b"not json");
        router.deliver("coder.replies.gw.not-a-uuid", b"{}");
        assert!(rx.try_recv().is_err());
    }
}
