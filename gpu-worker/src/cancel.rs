//! Cancellations: the cancel stream followed from its start, flags for the requests running
//! here, and the cancels remembered for requests that are not (yet).
//!
//! A cancel can come before its request reaches any worker (the client gave up while it was
//! queued) or while no worker runs at all (scale from zero): cancels are kept for a while in the
//! stream `CODER_CANCELS`, which a worker reads from its start before it pulls a request, and then
//! follows. A request remembered as cancelled is answered at intake without compute.

use crate::recent_cancels::RecentCancels;
use anyhow::Context;
use async_nats::jetstream::{self, consumer};
use coder_nats::provision::StreamSettings;
use coder_nats::{subjects, Cancel};
use futures::{Stream, StreamExt};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use uuid::Uuid;

/// Cancels remembered at most: a flood of forged cancels costs bounded memory.
const REMEMBERED_CANCELS: usize = 65_536;
/// How long the cancels already in the stream may take to read at start before pulling begins
/// anyway.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(10);

pub struct CancelRegistry {
    state: Mutex<State>,
}

struct State {
    running: HashMap<Uuid, Arc<AtomicBool>>,
    remembered: RecentCancels,
}

impl Default for CancelRegistry {
    fn default() -> Self {
        // No request outlives the stream's `max_age`, so neither need its cancel.
        let horizon = StreamSettings::default().max_age;
        Self {
            state: Mutex::new(State {
                running: HashMap::new(),
                remembered: RecentCancels::new(REMEMBERED_CANCELS, horizon),
            }),
        }
    }
}

impl CancelRegistry {
    /// The flag a running request's backend checks every token; raised already if the request
    /// was cancelled before it got here.
    pub fn register(&self, request_id: Uuid) -> Arc<AtomicBool> {
        let mut state = self.state.lock().expect("cancel lock");
        let cancelled = state.remembered.contains(request_id, SystemTime::now());
        let flag = Arc::new(AtomicBool::new(cancelled));
        state.running.insert(request_id, Arc::clone(&flag));
        flag
    }

    pub fn remove(&self, request_id: Uuid) {
        self.state
            .lock()
            .expect("cancel lock")
            .running
            .remove(&request_id);
    }

    /// Remembers the cancel until `deadline` (the request's, if known) and raises the request's
    /// flag if it runs here; whether it does.
    pub fn cancel(&self, request_id: Uuid, deadline: Option<SystemTime>) -> bool {
        let mut state = self.state.lock().expect("cancel lock");
        state
            .remembered
            .remember(request_id, deadline, SystemTime::now());
        match state.running.get(&request_id) {
            Some(flag) => {
                flag.store(true, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    /// Whether `request_id` was cancelled (and the cancel is still remembered).
    pub fn is_cancelled(&self, request_id: Uuid) -> bool {
        let state = self.state.lock().expect("cancel lock");
        state.remembered.contains(request_id, SystemTime::now())
    }

    /// A registry fed by the cancel stream: the cancels it holds are read before this returns
    /// (or [`CATCH_UP_TIMEOUT`] passes), new ones on a task of its own.
    pub async fn subscribe(client: &async_nats::Client) -> anyhow::Result<Arc<Self>> {
        let jetstream = jetstream::new(client.clone());
        let mut stream = jetstream
            .get_stream(subjects::CANCEL_STREAM_NAME)
            .await
            .context("looking up the cancel stream")?;
        let held = stream
            .info()
            .await
            .context("reading the cancel stream's state")?
            .state
            .last_sequence;
        let config = consumer::pull::OrderedConfig {
            filter_subject: subjects::CANCEL_WILDCARD.to_owned(),
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        };
        let cancels = stream
            .create_consumer(config)
            .await
            .context("following the cancel stream")?
            .messages()
            .await
            .context("reading the cancel stream")?;
        let registry = Arc::new(Self::default());
        let mut cancels = Box::pin(cancels);
        if held > 0 {
            let catch_up = registry.follow_until(&mut cancels, Some(held));
            match tokio::time::timeout(CATCH_UP_TIMEOUT, catch_up).await {
                Ok(()) => tracing::info!(
                    remembered = registry.remembered(),
                    "cancels already in the stream read"
                ),
                Err(_) => tracing::warn!("the cancel stream's backlog was not read in time"),
            }
        }
        let following = Arc::clone(&registry);
        tokio::spawn(async move {
            following.follow_until(&mut cancels, None).await;
            tracing::error!("the cancel stream ended: cancels no longer reach this worker");
        });
        Ok(registry)
    }

    /// Applies every cancel of `messages` until the one at stream sequence `last` (or the end).
    async fn follow_until<S, E>(&self, messages: &mut S, last: Option<u64>)
    where
        S: Stream<Item = Result<jetstream::Message, E>> + Unpin,
        E: std::fmt::Display,
    {
        while let Some(message) = messages.next().await {
            let message = match message {
                Ok(message) => message,
                Err(error) => {
                    tracing::warn!(%error, "reading the cancel stream");
                    continue;
                }
            };
            self.apply(&message.subject, &message.payload);
            let sequence = message.info().map(|info| info.stream_sequence).ok();
            if last.is_some() && sequence >= last {
                return;
            }
        }
    }

    /// One message of the cancel stream.
    fn apply(&self, subject: &str, payload: &[u8]) {
        let Some(request_id) = subjects::request_id_from_subject(subject) else {
            tracing::debug!(subject, "cancel without a request id ignored");
            return;
        };
        let cancel = Cancel::from_payload(payload);
        let deadline = cancel
            .deadline_ms
            .and_then(|ms| UNIX_EPOCH.checked_add(Duration::from_millis(ms)));
        if self.cancel(request_id, deadline) {
            let reason = cancel.reason.as_str();
            tracing::info!(%request_id, %reason, "cancel received: stopping generation");
        }
    }

    fn remembered(&self) -> usize {
        self.state.lock().expect("cancel lock").remembered.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coder_nats::headers::unix_millis;

    #[test]
    fn only_the_named_request_is_cancelled() {
        let registry = CancelRegistry::default();
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let flag_a = registry.register(a);
        let flag_b = registry.register(b);
        assert!(registry.cancel(a, None));
        assert!(flag_a.load(Ordering::Relaxed));
        assert!(!flag_b.load(Ordering::Relaxed));
        registry.remove(b);
        assert!(!registry.cancel(b, None));
    }

    #[test]
    fn a_request_cancelled_before_it_runs_starts_cancelled() {
        let registry = CancelRegistry::default();
        let id = Uuid::now_v7();
        registry.apply(&subjects::cancel_subject(id), b"");
        assert!(registry.is_cancelled(id));
        assert!(registry.register(id).load(Ordering::Relaxed));
        assert!(!registry.is_cancelled(Uuid::now_v7()));
    }

    #[test]
    fn a_cancel_whose_deadline_passed_is_not_remembered() {
        let registry = CancelRegistry::default();
        let id = Uuid::now_v7();
        let passed = Cancel {
            reason: coder_nats::CancelReason::DeadlineExceeded,
            deadline_ms: Some(unix_millis(SystemTime::now() - Duration::from_secs(1))),
        };
        registry.apply(&subjects::cancel_subject(id), &passed.to_json());
        assert!(!registry.is_cancelled(id));
    }
}
