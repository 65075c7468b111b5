//! Cancellations: one subscription to `coder.cancel.*`, flags for the requests running here.

use coder_nats::{subjects, Cancel};
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use uuid::Uuid;

#[derive(Default)]
pub struct CancelRegistry {
    running: Mutex<HashMap<Uuid, Arc<AtomicBool>>>,
}

impl CancelRegistry {
    /// The flag a running request's backend checks every token.
    pub fn register(&self, request_id: Uuid) -> Arc<AtomicBool> {
        let flag = Arc::new(AtomicBool::new(false));
        self.running
            .lock()
            .expect("cancel lock")
            .insert(request_id, Arc::clone(&flag));
        flag
    }

    pub fn remove(&self, request_id: Uuid) {
        self.running
            .lock()
            .expect("cancel lock")
            .remove(&request_id);
    }

    /// Raises the request's flag if it runs here.
    pub fn cancel(&self, request_id: Uuid) -> bool {
        match self.running.lock().expect("cancel lock").get(&request_id) {
            Some(flag) => {
                flag.store(true, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    /// A registry fed by the cancel subscription, on a task of its own.
    pub async fn subscribe(
        client: &async_nats::Client,
    ) -> Result<Arc<Self>, async_nats::SubscribeError> {
        let cancels = client.subscribe(subjects::CANCEL_WILDCARD).await?;
        let registry = Arc::new(Self::default());
        tokio::spawn(Arc::clone(&registry).run(cancels));
        Ok(registry)
    }

    /// Raises the flag of every request named on `subscriber` until it ends.
    pub async fn run(self: Arc<Self>, mut subscriber: async_nats::Subscriber) {
        while let Some(message) = subscriber.next().await {
            if let Some(request_id) = subjects::request_id_from_subject(&message.subject) {
                if self.cancel(request_id) {
                    let reason = Cancel::from_payload(&message.payload).reason.as_str();
                    tracing::info!(%request_id, %reason, "cancel received: stopping generation");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_named_request_is_cancelled() {
        let registry = CancelRegistry::default();
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let flag_a = registry.register(a);
        let flag_b = registry.register(b);
        assert!(registry.cancel(a));
        assert!(flag_a.load(Ordering::Relaxed));
        assert!(!flag_b.load(Ordering::Relaxed));
        registry.remove(b);
        assert!(!registry.cancel(b));
    }
}
