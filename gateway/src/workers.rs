//! Live workers, from their heartbeats.

use crate::supervisor::Supervisor;
use coder_nats::{subjects, Heartbeat};
use futures::StreamExt;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The longest a heartbeat counts for, whatever its `ttl_ms` says: a forged one can neither
/// overflow the clock nor list a worker for ever.
pub const MAX_HEARTBEAT_TTL: Duration = Duration::from_secs(300);

#[derive(Default)]
pub struct WorkerRegistry {
    workers: Mutex<HashMap<String, (Heartbeat, Instant)>>,
}

/// What `/v1/models` and the gauges need to know about one model's workers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelWorkers {
    pub workers: u64,
    pub slots_total: u64,
    pub slots_busy: u64,
    pub context_length: u32,
}

impl WorkerRegistry {
    pub fn observe(&self, heartbeat: Heartbeat) {
        let mut workers = self.workers.lock().expect("workers lock");
        if heartbeat.accepting {
            let ttl = Duration::from_millis(heartbeat.ttl_ms).min(MAX_HEARTBEAT_TTL);
            let expires = Instant::now() + ttl;
            workers.insert(heartbeat.worker_id.clone(), (heartbeat, expires));
        } else {
            workers.remove(&heartbeat.worker_id);
        }
    }

    /// Live workers grouped by model; expired entries are dropped on the way.
    pub fn by_model(&self) -> BTreeMap<String, ModelWorkers> {
        let now = Instant::now();
        let mut workers = self.workers.lock().expect("workers lock");
        workers.retain(|_, (_, expires)| *expires > now);
        let mut models: BTreeMap<String, ModelWorkers> = BTreeMap::new();
        for (heartbeat, _) in workers.values() {
            let entry = models.entry(heartbeat.model.clone()).or_default();
            entry.workers += 1;
            entry.slots_total += u64::from(heartbeat.slots_total);
            entry.slots_busy += u64::from(heartbeat.slots_busy);
            entry.context_length = entry.context_length.max(heartbeat.context_length);
        }
        models
    }

    pub fn has_model(&self, model: &str) -> bool {
        self.by_model().contains_key(model)
    }

    /// A registry fed by every worker's heartbeats, on a supervised task.
    pub async fn subscribe(
        client: &async_nats::Client,
        supervisor: &Supervisor,
    ) -> Result<Arc<Self>, async_nats::SubscribeError> {
        let heartbeats = client.subscribe(subjects::HEARTBEAT_WILDCARD).await?;
        let registry = Arc::new(Self::default());
        supervisor.spawn(
            "heartbeat subscription",
            Arc::clone(&registry).run(heartbeats),
        );
        Ok(registry)
    }

    /// Records every heartbeat of `subscriber` until it ends.
    pub async fn run(self: Arc<Self>, mut subscriber: async_nats::Subscriber) {
        while let Some(message) = subscriber.next().await {
            match Heartbeat::from_json(&message.payload) {
                Ok(heartbeat) => self.observe(heartbeat),
                Err(error) => tracing::warn!(%error, subject = %message.subject, "bad heartbeat"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heartbeat(worker: &str, model: &str, ttl_ms: u64, accepting: bool) -> Heartbeat {
        Heartbeat {
            worker_id: worker.into(),
            model: model.into(),
            device: "cpu".into(),
            backend: "synthetic".into(),
            slots_total: 4,
            slots_busy: 1,
            context_length: 2048,
            ttl_ms,
            accepting,
        }
    }

    #[test]
    fn workers_are_grouped_by_model_and_expire() {
        let registry = WorkerRegistry::default();
        registry.observe(heartbeat("a", "m", 60_000, true));
        registry.observe(heartbeat("b", "m", 60_000, true));
        registry.observe(heartbeat("c", "gone", 0, true));
        let models = registry.by_model();
        assert_eq!(models["m"].workers, 2);
        assert_eq!(models["m"].slots_total, 8);
        assert!(!models.contains_key("gone"));
    }

    #[test]
    fn a_forged_endless_ttl_is_capped() {
        let registry = WorkerRegistry::default();
        registry.observe(heartbeat("a", "m", u64::MAX, true));
        let expires = registry.workers.lock().unwrap()["a"].1;
        assert!(expires <= Instant::now() + MAX_HEARTBEAT_TTL);
    }

    #[test]
    fn a_draining_worker_leaves_at_once() {
        let registry = WorkerRegistry::default();
        registry.observe(heartbeat("a", "m", 60_000, true));
        registry.observe(heartbeat("a", "m", 60_000, false));
        assert!(!registry.has_model("m"));
    }
}
