//! Cancels remembered for requests that are not running here (yet): queued, or running on
//! another worker that may die and leave them to be redelivered. A request named here is answered
//! `cancelled` at intake, without compute.
//!
//! Bounded twice: each cancel is forgotten at its request's deadline (past it, the request is
//! answered `expired` anyway), or after [`RecentCancels::horizon`] when the deadline is unknown or
//! further off; and at most `capacity` are kept, the soonest to expire going first.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, SystemTime};
use uuid::Uuid;

pub struct RecentCancels {
    /// Request → when its cancel is forgotten.
    expiry: HashMap<Uuid, SystemTime>,
    /// The same entries ordered by expiry, to drop the expired and the soonest first.
    by_expiry: BTreeSet<(SystemTime, Uuid)>,
    capacity: usize,
    horizon: Duration,
}

impl RecentCancels {
    pub fn new(capacity: usize, horizon: Duration) -> Self {
        Self {
            expiry: HashMap::new(),
            by_expiry: BTreeSet::new(),
            capacity,
            horizon,
        }
    }

    /// Remembers that `request` was cancelled; `deadline` is the request's, if the cancel said.
    pub fn remember(&mut self, request: Uuid, deadline: Option<SystemTime>, now: SystemTime) {
        self.forget_expired(now);
        let latest = now.checked_add(self.horizon).unwrap_or(now);
        let expires = deadline.map_or(latest, |deadline| deadline.min(latest));
        if expires <= now || self.capacity == 0 {
            return;
        }
        if let Some(previous) = self.expiry.insert(request, expires) {
            self.by_expiry.remove(&(previous, request));
        }
        self.by_expiry.insert((expires, request));
        while self.expiry.len() > self.capacity {
            let Some((_, soonest)) = self.by_expiry.pop_first() else {
                break;
            };
            self.expiry.remove(&soonest);
        }
    }

    /// Whether `request` was cancelled and the cancel is still remembered at `now`.
    pub fn contains(&self, request: Uuid, now: SystemTime) -> bool {
        self.expiry
            .get(&request)
            .is_some_and(|expires| *expires > now)
    }

    pub fn len(&self) -> usize {
        self.expiry.len()
    }

    pub fn is_empty(&self) -> bool {
        self.expiry.is_empty()
    }

    fn forget_expired(&mut self, now: SystemTime) {
        while let Some(&(expires, request)) = self.by_expiry.first() {
            if expires > now {
                break;
            }
            self.by_expiry.pop_first();
            self.expiry.remove(&request);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HORIZON: Duration = Duration::from_secs(600);

    #[test]
    fn a_cancel_is_remembered_until_its_deadline() {
        let mut cancels = RecentCancels::new(10, HORIZON);
        let now = SystemTime::now();
        let id = Uuid::now_v7();
        cancels.remember(id, Some(now + Duration::from_secs(5)), now);
        assert!(cancels.contains(id, now + Duration::from_secs(4)));
        assert!(!cancels.contains(id, now + Duration::from_secs(5)));
        assert!(!cancels.contains(Uuid::now_v7(), now));
    }

    #[test]
    fn without_a_deadline_or_with_a_far_one_the_horizon_applies() {
        let mut cancels = RecentCancels::new(10, HORIZON);
        let now = SystemTime::now();
        let (unknown, far) = (Uuid::now_v7(), Uuid::now_v7());
        cancels.remember(unknown, None, now);
        cancels.remember(far, Some(now + HORIZON * 1000), now);
        for id in [unknown, far] {
            assert!(cancels.contains(id, now + HORIZON - Duration::from_secs(1)));
            assert!(!cancels.contains(id, now + HORIZON));
        }
    }

    #[test]
    fn a_cancel_past_its_deadline_is_not_kept() {
        let mut cancels = RecentCancels::new(10, HORIZON);
        let now = SystemTime::now();
        cancels.remember(Uuid::now_v7(), Some(now - Duration::from_secs(1)), now);
        assert!(cancels.is_empty());
    }

    #[test]
    fn the_count_is_bounded_dropping_the_soonest_to_expire() {
        let mut cancels = RecentCancels::new(3, HORIZON);
        let now = SystemTime::now();
        let ids: Vec<Uuid> = (0..5).map(|_| Uuid::now_v7()).collect();
        for (i, id) in ids.iter().enumerate() {
            // Later ids expire sooner: the first ones remembered are kept.
            let deadline = now + Duration::from_secs(100 - i as u64);
            cancels.remember(*id, Some(deadline), now);
        }
        assert_eq!(cancels.len(), 3);
        assert!(ids[..3].iter().all(|id| cancels.contains(*id, now)));
        assert!(ids[3..].iter().all(|id| !cancels.contains(*id, now)));
    }

    #[test]
    fn expired_cancels_make_room_as_time_passes() {
        let mut cancels = RecentCancels::new(100, HORIZON);
        let now = SystemTime::now();
        for _ in 0..50 {
            cancels.remember(Uuid::now_v7(), Some(now + Duration::from_secs(1)), now);
        }
        let later = now + Duration::from_secs(2);
        cancels.remember(Uuid::now_v7(), None, later);
        assert_eq!(cancels.len(), 1);
    }
}
