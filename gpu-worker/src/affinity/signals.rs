//! What tells the pull loop where to look: the gateway's doorbells and the other workers'
//! heartbeats, each on its own task, feeding one [`Schedule`] and one [`Peers`].

use super::{Claim, Peers, Schedule};
use coder_nats::affinity::{self, PARTITIONS};
use coder_nats::{subjects, Heartbeat};
use futures::StreamExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// How often every partition is looked at even if no doorbell rang: the bound on how long a
/// redelivered request, or one whose ring was lost, waits for a worker with room.
pub const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// How the worker weighs ownership (`--prefix-affinity`, `--steal-after`).
#[derive(Debug, Clone, Copy)]
pub struct AffinitySettings {
    /// Off: every partition counts as this worker's, so workers race for every request.
    pub enabled: bool,
    pub steal_after: Duration,
}

pub struct Signals {
    state: Mutex<State>,
    /// Woken by every doorbell and by a heartbeat that changes what is due.
    wake: Notify,
    settings: AffinitySettings,
}

struct State {
    schedule: Schedule,
    peers: Peers,
}

impl Signals {
    /// Subscribes to `model`'s doorbell and its workers' heartbeats; `me` is this worker's id.
    pub async fn subscribe(
        client: &async_nats::Client,
        model: &str,
        me: &str,
        settings: AffinitySettings,
    ) -> Result<Arc<Self>, async_nats::SubscribeError> {
        let doorbell = client.subscribe(subjects::doorbell_subject(model)).await?;
        let heartbeats = client
            .subscribe(subjects::model_heartbeats_wildcard(model))
            .await?;
        let signals = Arc::new(Self::new(model, me, settings, Instant::now()));
        tokio::spawn(Arc::clone(&signals).follow_doorbell(doorbell));
        tokio::spawn(Arc::clone(&signals).follow_heartbeats(heartbeats));
        Ok(signals)
    }

    fn new(model: &str, me: &str, settings: AffinitySettings, now: Instant) -> Self {
        Self {
            state: Mutex::new(State {
                schedule: Schedule::new(PARTITIONS, settings.steal_after, SWEEP_EVERY, now),
                peers: Peers::new(model.to_owned(), me.to_owned()),
            }),
            wake: Notify::new(),
            settings,
        }
    }

    /// The partitions to fetch from now, in order.
    pub fn due(&self) -> Vec<u16> {
        let now = Instant::now();
        let mut state = self.lock();
        state.peers.expire(now);
        let State { schedule, peers } = &mut *state;
        schedule.due(now, |p| self.claim(peers, p))
    }

    /// After a fetch from `partition` (see [`Schedule::fetched`]).
    pub fn fetched(&self, partition: u16, emptied: bool) {
        self.lock().schedule.fetched(partition, emptied);
    }

    /// Waits until something may be due: a doorbell, a heartbeat, or the schedule's next time.
    pub async fn wait(&self) {
        let notified = self.wake.notified();
        let until = {
            let state = self.lock();
            state.schedule.next_due(|p| self.claim(&state.peers, p))
        };
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep_until(until) => {}
        }
    }

    fn claim(&self, peers: &Peers, partition: u16) -> Claim {
        if self.settings.enabled {
            peers.claim(partition)
        } else {
            Claim::Mine
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("affinity lock")
    }

    async fn follow_doorbell(self: Arc<Self>, mut doorbell: async_nats::Subscriber) {
        while let Some(message) = doorbell.next().await {
            match affinity::doorbell_partition(&message.payload) {
                Some(partition) => {
                    self.lock().schedule.ring(partition, Instant::now());
                    self.wake.notify_one();
                }
                None => tracing::debug!(subject = %message.subject, "doorbell without a partition"),
            }
        }
        tracing::warn!("doorbell subscription ended: queued requests are found by sweeps only");
    }

    async fn follow_heartbeats(self: Arc<Self>, mut heartbeats: async_nats::Subscriber) {
        while let Some(message) = heartbeats.next().await {
            match Heartbeat::from_json(&message.payload) {
                Ok(heartbeat) => {
                    self.lock().peers.observe(&heartbeat, Instant::now());
                    // A peer that filled up or left may have made one of its rings ours.
                    self.wake.notify_one();
                }
                Err(error) => tracing::debug!(%error, "bad heartbeat"),
            }
        }
        tracing::warn!("heartbeat subscription ended: this worker counts as the only one");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn without_affinity_every_partition_is_due_on_its_ring() {
        let now = Instant::now();
        let settings = AffinitySettings {
            enabled: false,
            steal_after: Duration::from_secs(60),
        };
        let signals = Signals::new("m", "me", settings, now);
        let heartbeat = Heartbeat {
            worker_id: "other".into(),
            model: "m".into(),
            device: "cpu".into(),
            backend: "synthetic".into(),
            slots_total: 1,
            slots_busy: 0,
            context_length: 1,
            ttl_ms: 60_000,
            accepting: true,
        };
        signals.lock().peers.observe(&heartbeat, now);
        assert_eq!(signals.due().len(), usize::from(PARTITIONS));
        let enabled = Signals::new(
            "m",
            "me",
            AffinitySettings {
                enabled: true,
                ..settings
            },
            now,
        );
        enabled.lock().peers.observe(&heartbeat, now);
        let due = enabled.due().len();
        assert!(due < usize::from(PARTITIONS), "{due}");
    }
}
