//! The live workers of this worker's model, from their heartbeats, and who owns each partition.

use super::schedule::Claim;
use coder_nats::{affinity, Heartbeat};
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;

/// The longest a heartbeat counts for, whatever its `ttl_ms` says (as the gateway bounds it).
const MAX_HEARTBEAT_TTL: Duration = Duration::from_secs(300);

/// What this worker knows of the other workers of its model.
pub struct Peers {
    model: String,
    me: String,
    /// Worker id -> when its last heartbeat expires, and whether it said it had a free slot.
    others: HashMap<String, Peer>,
}

struct Peer {
    expires: Instant,
    has_room: bool,
}

impl Peers {
    pub fn new(model: String, me: String) -> Self {
        Self {
            model,
            me,
            others: HashMap::new(),
        }
    }

    /// Records a heartbeat; one of another model, or this worker's own, is ignored. A draining
    /// worker's last beat (not accepting) removes it at once.
    pub fn observe(&mut self, heartbeat: &Heartbeat, now: Instant) {
        if heartbeat.model != self.model || heartbeat.worker_id == self.me {
            return;
        }
        if !heartbeat.accepting {
            self.others.remove(&heartbeat.worker_id);
            return;
        }
        let ttl = Duration::from_millis(heartbeat.ttl_ms).min(MAX_HEARTBEAT_TTL);
        self.others.insert(
            heartbeat.worker_id.clone(),
            Peer {
                expires: now + ttl,
                has_room: heartbeat.slots_busy < heartbeat.slots_total,
            },
        );
    }

    /// Forgets workers whose last heartbeat has expired.
    pub fn expire(&mut self, now: Instant) {
        self.others.retain(|_, peer| peer.expires > now);
    }

    /// Live workers besides this one.
    pub fn others(&self) -> usize {
        self.others.len()
    }

    /// Whose `partition`'s next request is, from the point of view of this worker (which asks
    /// only when it has room): the rendezvous winner among this worker and the live others that
    /// have room. While the partition's owner has room that is the owner (it wins among all);
    /// while it is full, the same runner-up every time, so a busy partition's overflow also
    /// lands where its prefixes are.
    pub fn claim(&self, partition: u16) -> Claim {
        let with_room = self
            .others
            .iter()
            .filter(|(_, peer)| peer.has_room)
            .map(|(id, _)| id.as_str())
            .chain([self.me.as_str()]);
        match affinity::owner(&self.model, partition, with_room) {
            Some(winner) if winner != self.me => Claim::Theirs,
            _ => Claim::Mine,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coder_nats::affinity::PARTITIONS;

    fn beat(worker: &str, busy: u32, accepting: bool) -> Heartbeat {
        Heartbeat {
            worker_id: worker.into(),
            model: "m".into(),
            device: "cpu".into(),
            backend: "synthetic".into(),
            slots_total: 2,
            slots_busy: busy,
            context_length: 4096,
            ttl_ms: 6000,
            accepting,
        }
    }

    fn mine(peers: &Peers) -> usize {
        (0..PARTITIONS)
            .filter(|&p| peers.claim(p) == Claim::Mine)
            .count()
    }

    #[test]
    fn alone_a_worker_owns_every_partition_and_shares_them_when_another_beats() {
        let now = Instant::now();
        let mut peers = Peers::new("m".into(), "me".into());
        assert_eq!(mine(&peers), usize::from(PARTITIONS));
        peers.observe(&beat("other", 0, true), now);
        let owned = mine(&peers);
        assert!(0 < owned && owned < usize::from(PARTITIONS), "{owned}");
        // Full, the other worker's partitions are this one's to take at once.
        peers.observe(&beat("other", 2, true), now);
        assert_eq!(mine(&peers), usize::from(PARTITIONS));
    }

    #[test]
    fn a_full_owners_partitions_go_to_the_same_runner_up_every_time() {
        let now = Instant::now();
        let [mut a, mut b] = ["a", "b"].map(|me| Peers::new("m".into(), me.into()));
        for peers in [&mut a, &mut b] {
            peers.observe(&beat("a", 0, true), now);
            peers.observe(&beat("b", 0, true), now);
            peers.observe(&beat("owner", 2, true), now);
        }
        // With the third worker full, every partition is exactly one of a's and b's.
        for partition in 0..PARTITIONS {
            let claims = (a.claim(partition), b.claim(partition));
            assert!(
                matches!(
                    claims,
                    (Claim::Mine, Claim::Theirs) | (Claim::Theirs, Claim::Mine)
                ),
                "partition {partition}: {claims:?}"
            );
        }
    }

    #[test]
    fn an_expired_or_draining_worker_owns_nothing() {
        let now = Instant::now();
        let mut peers = Peers::new("m".into(), "me".into());
        peers.observe(&beat("gone", 0, true), now);
        peers.expire(now + Duration::from_secs(7));
        assert_eq!(peers.others(), 0);
        assert_eq!(mine(&peers), usize::from(PARTITIONS));
        peers.observe(&beat("draining", 0, true), now);
        peers.observe(&beat("draining", 0, false), now);
        assert_eq!(mine(&peers), usize::from(PARTITIONS));
    }

    #[test]
    fn its_own_and_other_models_heartbeats_change_nothing() {
        let now = Instant::now();
        let mut peers = Peers::new("m".into(), "me".into());
        peers.observe(&beat("me", 2, true), now);
        let mut other_model = beat("x", 0, true);
        other_model.model = "n".into();
        peers.observe(&other_model, now);
        assert_eq!(peers.others(), 0);
    }
}
