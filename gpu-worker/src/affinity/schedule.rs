//! Which partitions to fetch from now, and when to look again: rings (doorbells and sweeps)
//! waiting to be served, weighed by who owns each partition.

use std::time::Duration;
use tokio::time::Instant;

/// Whose a partition is, as far as this worker can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// This worker's: fetch from it as soon as it rings.
    Mine,
    /// Another live worker's: fetch from it only when that worker has no room, or once a ring
    /// has gone unanswered for `steal_after`.
    Theirs { owner_has_room: bool },
}

/// Rings not yet served, one slot per partition.
pub struct Schedule {
    /// When each partition was first rung since it was last found empty.
    rung: Vec<Option<Instant>>,
    steal_after: Duration,
    sweep_every: Duration,
    next_sweep: Instant,
}

impl Schedule {
    /// A schedule that sweeps at once (a worker that starts looks everywhere).
    pub fn new(
        partitions: u16,
        steal_after: Duration,
        sweep_every: Duration,
        now: Instant,
    ) -> Self {
        Self {
            rung: vec![None; usize::from(partitions)],
            steal_after,
            sweep_every,
            next_sweep: now,
        }
    }

    /// A doorbell: `partition` holds a new request. Out-of-range partitions are ignored.
    pub fn ring(&mut self, partition: u16, now: Instant) {
        if let Some(rung) = self.rung.get_mut(usize::from(partition)) {
            rung.get_or_insert(now);
        }
    }

    /// The partitions to fetch from now, in order: this worker's own, then those it may take
    /// from their owners; each group oldest ring first. Sweeps (rings every partition) when one
    /// is due.
    pub fn due(&mut self, now: Instant, claim: impl Fn(u16) -> Claim) -> Vec<u16> {
        if now >= self.next_sweep {
            for rung in &mut self.rung {
                rung.get_or_insert(now);
            }
            self.next_sweep = now + self.sweep_every;
        }
        let mut mine = Vec::new();
        let mut taken = Vec::new();
        for (partition, rung) in (0u16..).zip(&self.rung) {
            let Some(at) = *rung else { continue };
            match claim(partition) {
                Claim::Mine => mine.push((at, partition)),
                Claim::Theirs {
                    owner_has_room: false,
                } => taken.push((at, partition)),
                Claim::Theirs {
                    owner_has_room: true,
                } if now >= at + self.steal_after => taken.push((at, partition)),
                Claim::Theirs { .. } => {}
            }
        }
        mine.sort_unstable();
        taken.sort_unstable();
        mine.into_iter().chain(taken).map(|(_, p)| p).collect()
    }

    /// After a fetch from `partition`: if it gave fewer requests than asked for, the partition
    /// has no more waiting and its ring is served; otherwise it stays rung.
    pub fn fetched(&mut self, partition: u16, emptied: bool) {
        if emptied {
            if let Some(rung) = self.rung.get_mut(usize::from(partition)) {
                *rung = None;
            }
        }
    }

    /// When something next falls due if nothing rings meanwhile: the next sweep, or a ring on a
    /// partition whose owner has room becoming one this worker may take.
    pub fn next_due(&self, claim: impl Fn(u16) -> Claim) -> Instant {
        (0u16..)
            .zip(&self.rung)
            .filter_map(|(partition, rung)| match claim(partition) {
                Claim::Theirs { .. } => rung.map(|at| at + self.steal_after),
                Claim::Mine => *rung,
            })
            .fold(self.next_sweep, Instant::min)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEAL: Duration = Duration::from_millis(200);
    const SWEEP: Duration = Duration::from_secs(1);

    /// Partition 0 is this worker's, 1 belongs to a worker with room, 2 to a full one.
    fn claim(partition: u16) -> Claim {
        match partition {
            0 => Claim::Mine,
            1 => Claim::Theirs {
                owner_has_room: true,
            },
            _ => Claim::Theirs {
                owner_has_room: false,
            },
        }
    }

    fn swept(now: Instant) -> Schedule {
        let mut schedule = Schedule::new(3, STEAL, SWEEP, now);
        // The start's sweep, served: every partition empty.
        assert_eq!(schedule.due(now, claim), [0, 2]);
        for partition in 0..3 {
            schedule.fetched(partition, true);
        }
        schedule
    }

    #[test]
    fn its_own_ring_is_due_at_once_and_a_busy_owners_too() {
        let now = Instant::now();
        let mut schedule = swept(now);
        assert!(schedule.due(now, claim).is_empty());
        schedule.ring(2, now);
        schedule.ring(0, now + Duration::from_millis(1));
        let later = now + Duration::from_millis(2);
        assert_eq!(schedule.due(later, claim), [0, 2], "own first");
    }

    #[test]
    fn an_owner_with_room_gets_steal_after_to_take_its_request() {
        let now = Instant::now();
        let mut schedule = swept(now);
        schedule.ring(1, now);
        assert!(schedule.due(now + STEAL / 2, claim).is_empty());
        assert_eq!(schedule.next_due(claim), now + STEAL);
        assert_eq!(schedule.due(now + STEAL, claim), [1]);
        // The owner took it meanwhile: the fetch comes back empty and the ring is served.
        schedule.fetched(1, true);
        assert!(schedule.due(now + STEAL, claim).is_empty());
    }

    #[test]
    fn a_partition_that_gave_all_it_was_asked_for_stays_due() {
        let now = Instant::now();
        let mut schedule = swept(now);
        schedule.ring(0, now);
        schedule.fetched(0, false);
        assert_eq!(schedule.due(now, claim), [0]);
        schedule.fetched(0, true);
        assert!(schedule.due(now, claim).is_empty());
    }

    #[test]
    fn a_sweep_rings_every_partition_each_interval() {
        let now = Instant::now();
        let mut schedule = swept(now);
        assert_eq!(schedule.next_due(claim), now + SWEEP);
        let sweep = now + SWEEP;
        assert_eq!(schedule.due(sweep, claim), [0, 2]);
        assert_eq!(schedule.due(sweep + STEAL, claim), [0, 1, 2]);
        schedule.ring(7, sweep); // no such partition: ignored
    }
}
