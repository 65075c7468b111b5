//! Which partitions to fetch from now, and when to look again: rings (doorbells and sweeps)
//! waiting to be served, weighed by who owns each partition.

use std::time::Duration;
use tokio::time::Instant;

/// Whose a partition's next request is, as far as this worker can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// This worker's: fetch from it as soon as it rings.
    Mine,
    /// Another live worker's, one with room: fetch from it only once a ring has gone unanswered
    /// for `steal_after` (that worker may be slow, stuck or dead).
    Theirs,
}

/// Rings not yet served, one slot per partition.
pub struct Schedule {
    /// Each partition's first ring since it was last found empty.
    rung: Vec<Option<Ring>>,
    steal_after: Duration,
    sweep_every: Duration,
    next_sweep: Instant,
}

/// Why a partition is to be looked at, and since when.
#[derive(Debug, Clone, Copy)]
struct Ring {
    at: Instant,
    /// A sweep's, not a doorbell's: it says nothing of when a request arrived.
    swept: bool,
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

    /// A doorbell: `partition` holds a new request. It replaces a sweep's ring, so that another
    /// worker's request is given its whole `steal_after` from its arrival, not from the sweep
    /// before it. Out-of-range partitions are ignored.
    pub fn ring(&mut self, partition: u16, now: Instant) {
        if let Some(rung) = self.rung.get_mut(usize::from(partition)) {
            if rung.is_none_or(|ring| ring.swept) {
                *rung = Some(Ring {
                    at: now,
                    swept: false,
                });
            }
        }
    }

    /// The partitions to fetch from now, in order: this worker's own, then those it may take
    /// from their owners; each group oldest ring first. Sweeps (rings every partition) when one
    /// is due.
    pub fn due(&mut self, now: Instant, claim: impl Fn(u16) -> Claim) -> Vec<u16> {
        if now >= self.next_sweep {
            for rung in &mut self.rung {
                rung.get_or_insert(Ring {
                    at: now,
                    swept: true,
                });
            }
            self.next_sweep = now + self.sweep_every;
        }
        let mut mine = Vec::new();
        let mut taken = Vec::new();
        for (partition, rung) in (0u16..).zip(&self.rung) {
            let Some(Ring { at, .. }) = *rung else {
                continue;
            };
            match claim(partition) {
                Claim::Mine => mine.push((at, partition)),
                Claim::Theirs if now >= at + self.steal_after => taken.push((at, partition)),
                Claim::Theirs => {}
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

    /// When something next falls due if nothing rings meanwhile: the next sweep, or a ring on
    /// another's partition becoming one this worker may take.
    pub fn next_due(&self, claim: impl Fn(u16) -> Claim) -> Instant {
        (0u16..)
            .zip(&self.rung)
            .filter_map(|(partition, rung)| {
                let at = rung.as_ref()?.at;
                Some(match claim(partition) {
                    Claim::Theirs => at + self.steal_after,
                    Claim::Mine => at,
                })
            })
            .fold(self.next_sweep, Instant::min)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEAL: Duration = Duration::from_millis(200);
    const SWEEP: Duration = Duration::from_secs(1);

    /// Partitions 0 and 2 are this worker's, 1 another's.
    fn claim(partition: u16) -> Claim {
        match partition {
            1 => Claim::Theirs,
            _ => Claim::Mine,
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
    fn its_own_rings_are_due_at_once_oldest_first() {
        let now = Instant::now();
        let mut schedule = swept(now);
        assert!(schedule.due(now, claim).is_empty());
        schedule.ring(2, now);
        schedule.ring(0, now + Duration::from_millis(1));
        schedule.ring(1, now + Duration::from_millis(1));
        let later = now + Duration::from_millis(2);
        assert_eq!(schedule.due(later, claim), [2, 0]);
        assert_eq!(schedule.due(later + STEAL, claim), [2, 0, 1], "own first");
    }

    #[test]
    fn another_worker_gets_steal_after_to_take_its_request() {
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
    fn a_doorbell_after_a_sweep_gives_the_owner_its_whole_steal_after() {
        let now = Instant::now();
        let mut schedule = swept(now);
        let sweep = now + SWEEP;
        assert_eq!(schedule.due(sweep, claim), [0, 2]);
        // The owner's request arrives just before the sweep's ring would let this worker take it.
        let arrival = sweep + STEAL - Duration::from_millis(1);
        schedule.ring(1, arrival);
        assert_eq!(schedule.due(sweep + STEAL, claim), [0, 2]);
        assert_eq!(schedule.due(arrival + STEAL, claim), [0, 2, 1]);
        // A second doorbell does not postpone the first.
        schedule.ring(1, arrival + STEAL);
        assert_eq!(schedule.due(arrival + STEAL, claim), [0, 2, 1]);
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
        assert_eq!(schedule.due(sweep + STEAL, claim), [0, 2, 1]);
        schedule.ring(7, sweep); // no such partition: ignored
    }
}
