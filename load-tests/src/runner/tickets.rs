//! The bound of a run as a ticket dispenser: a request is sent only with a ticket.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// When a run stops sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    Requests(u64),
    Duration(Duration),
}

/// Hands out request sequence numbers until the bound is reached.
#[derive(Debug)]
pub struct Tickets {
    next: AtomicU64,
    limit: Option<u64>,
    stop_at: Option<Instant>,
}

impl Tickets {
    pub fn new(bound: &Bound, origin: Instant) -> Self {
        let (limit, stop_at) = match *bound {
            Bound::Requests(n) => (Some(n), None),
            Bound::Duration(d) => (None, Some(origin + d)),
        };
        Self {
            next: AtomicU64::new(0),
            limit,
            stop_at,
        }
    }

    /// True once no request sent at `now` would get a ticket; takes none.
    pub fn exhausted(&self, now: Instant) -> bool {
        self.stop_at.is_some_and(|stop| now >= stop)
            || self
                .limit
                .is_some_and(|limit| self.next.load(Ordering::Relaxed) >= limit)
    }

    /// The next sequence number for a request sent at `now`, or `None` once the bound is reached.
    pub fn take(&self, now: Instant) -> Option<u64> {
        if self.stop_at.is_some_and(|stop| now >= stop) {
            return None;
        }
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        match self.limit {
            Some(limit) if seq >= limit => None,
            _ => Some(seq),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_bound_hands_out_exactly_that_many_tickets() {
        let now = Instant::now();
        let tickets = Tickets::new(&Bound::Requests(3), now);
        let taken: Vec<_> = std::iter::from_fn(|| tickets.take(now)).collect();
        assert_eq!(taken, vec![0, 1, 2]);
        assert_eq!(tickets.take(now), None);
    }

    #[test]
    fn exhaustion_is_known_without_taking_a_ticket() {
        let origin = Instant::now();
        let tickets = Tickets::new(&Bound::Requests(1), origin);
        assert!(!tickets.exhausted(origin));
        assert!(!tickets.exhausted(origin), "asking takes nothing");
        assert_eq!(tickets.take(origin), Some(0));
        assert!(tickets.exhausted(origin));
        let timed = Tickets::new(&Bound::Duration(Duration::from_secs(1)), origin);
        assert!(!timed.exhausted(origin + Duration::from_millis(999)));
        assert!(timed.exhausted(origin + Duration::from_secs(1)));
    }

    #[test]
    fn a_duration_bound_stops_at_its_end() {
        let origin = Instant::now();
        let tickets = Tickets::new(&Bound::Duration(Duration::from_secs(1)), origin);
        assert_eq!(tickets.take(origin), Some(0));
        assert_eq!(tickets.take(origin + Duration::from_millis(999)), Some(1));
        assert_eq!(tickets.take(origin + Duration::from_secs(1)), None);
    }
}
