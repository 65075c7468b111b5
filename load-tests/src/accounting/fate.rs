//! What a request's HTTP answer says about its worker outcome.
//!
//! The gateway sends some codes only before it publishes a request (it never reached the queue:
//! no worker outcome), some only after (it did: exactly one outcome), and a few either way.
//! [`QueueFate::of_record`] sorts each request by what the client saw; [`Fates::expected`] turns
//! the counts into the range of worker outcomes a run may show.
//!
//! From the gateway's code (`gateway/src/error.rs`, `dispatch.rs`, `generation.rs`):
//! - 401, 404, 405, 413, 415, 429: refused before publishing (validation, unknown model, backlog
//!   or stream full, too large);
//! - 2xx: a worker event arrived (the first token for a stream, `final` otherwise);
//! - 500 (the worker failed, the reply route closed) and 504 (the deadline passed, or a worker
//!   found it passed while the request was queued): only after publishing. A 504 may still end
//!   `completed`: a `final` sent just before the deadline can reach the gateway just after it;
//! - 400: the gateway's validation (never queued) or the worker's (`invalid_request`: `failed`);
//! - 503: NATS down before publishing, a publish whose ack never came (the message may be stored
//!   anyway), or a worker's cancel.

use crate::record::{Outcome, RequestRecord};
use serde::{Deserialize, Serialize};

/// One request's place in the worker accounting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueFate {
    /// 4xx other than 400: refused before publishing; no worker outcome.
    NotQueued,
    /// A complete 2xx: exactly one `completed`.
    Completed,
    /// 500, or a 2xx stream ended by an error event: queued, then ended by a worker's error or
    /// a cancel: exactly one outcome other than `completed`.
    Failed,
    /// 504, or another broken 2xx (cut short, unreadable, past `--timeout`): queued, and the
    /// worker may have completed before the gateway or the client gave up: exactly one outcome
    /// of any kind.
    Ended,
    /// 400: the gateway's validation refused it (no outcome) or the worker did (`failed`).
    MaybeFailed,
    /// 503, a code the gateway never sends, or no response at all: no outcome, or one of any
    /// kind (a request the client left while it was queued still runs: cancels reach only a
    /// worker that is running the request).
    Unknown,
}

impl QueueFate {
    /// The fate of a request whose answer had `code`, without knowing how its body ended (a 2xx
    /// is then [`QueueFate::Ended`]).
    pub fn of_code(code: u16) -> Self {
        match code {
            200..=299 => Self::Ended,
            400 => Self::MaybeFailed,
            401..=499 => Self::NotQueued,
            500 => Self::Failed,
            504 => Self::Ended,
            _ => Self::Unknown,
        }
    }

    /// The fate of a request as the client saw it end.
    pub fn of_record(record: &RequestRecord) -> Self {
        match record.status {
            None => Self::Unknown,
            Some(_) if record.is_ok() => Self::Completed,
            Some(200..=299) if record.outcome == Outcome::StreamError => Self::Failed,
            Some(code) => Self::of_code(code),
        }
    }
}

/// Requests by [`QueueFate`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fates {
    pub not_queued: u64,
    pub completed: u64,
    pub failed: u64,
    pub ended: u64,
    pub maybe_failed: u64,
    pub unknown: u64,
}

/// The smallest and largest count the client's view allows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bounds {
    pub min: u64,
    pub max: u64,
}

impl Bounds {
    pub fn contains(&self, value: f64) -> bool {
        value > self.min as f64 - 0.5 && value < self.max as f64 + 0.5
    }

    /// Why `got` is outside these bounds, if it is: `fewer` below them, `more` above.
    pub fn outside(
        &self,
        got: f64,
        fewer: impl FnOnce() -> String,
        more: impl FnOnce() -> String,
    ) -> Option<String> {
        if got < self.min as f64 - 0.5 {
            Some(fewer())
        } else if !self.contains(got) {
            Some(more())
        } else {
            None
        }
    }
}

/// The worker outcomes a run may show, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expected {
    /// `completed`.
    pub completed: Bounds,
    /// `cancelled`, `expired` and `failed` together.
    pub otherwise: Bounds,
    /// All outcomes.
    pub total: Bounds,
}

impl Fates {
    fn slot(&mut self, fate: QueueFate) -> &mut u64 {
        match fate {
            QueueFate::NotQueued => &mut self.not_queued,
            QueueFate::Completed => &mut self.completed,
            QueueFate::Failed => &mut self.failed,
            QueueFate::Ended => &mut self.ended,
            QueueFate::MaybeFailed => &mut self.maybe_failed,
            QueueFate::Unknown => &mut self.unknown,
        }
    }

    pub fn add(&mut self, fate: QueueFate, n: u64) {
        *self.slot(fate) += n;
    }

    /// Moves up to `n` requests from `from` to `to`; returns how many moved.
    pub fn reclassify(&mut self, from: QueueFate, to: QueueFate, n: u64) -> u64 {
        let moved = n.min(*self.slot(from));
        *self.slot(from) -= moved;
        *self.slot(to) += moved;
        moved
    }

    /// Requests that certainly reached the queue.
    pub fn queued(&self) -> u64 {
        self.completed + self.failed + self.ended
    }

    /// Requests that may or may not have reached the queue.
    pub fn uncertain(&self) -> u64 {
        self.maybe_failed + self.unknown
    }

    /// The outcomes these requests may end with, each redelivery allowing one more (the worker
    /// that lost the message may still have ended it).
    pub fn expected(&self, redeliveries: u64) -> Expected {
        Expected {
            completed: Bounds {
                min: self.completed,
                max: self.completed + self.ended + self.unknown + redeliveries,
            },
            otherwise: Bounds {
                min: self.failed,
                max: self.failed + self.ended + self.uncertain() + redeliveries,
            },
            total: Bounds {
                min: self.queued(),
                max: self.queued() + self.uncertain() + redeliveries,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn record(status: Option<u16>, outcome: Outcome) -> RequestRecord {
        RequestRecord::new(Duration::ZERO, Duration::from_millis(1), status, outcome)
    }

    #[test]
    fn answers_sort_by_whether_they_reached_the_queue() {
        use QueueFate::*;
        let cases = [
            (Some(200), Outcome::Ok, Completed),
            (Some(200), Outcome::StreamError, Failed),
            (Some(200), Outcome::Incomplete, Ended),
            (Some(200), Outcome::Timeout, Ended),
            (Some(429), Outcome::HttpError, NotQueued),
            (Some(404), Outcome::HttpError, NotQueued),
            (Some(400), Outcome::HttpError, MaybeFailed),
            (Some(500), Outcome::HttpError, Failed),
            (Some(504), Outcome::Timeout, Ended),
            (Some(503), Outcome::HttpError, Unknown),
            (Some(502), Outcome::HttpError, Unknown),
            (None, Outcome::Timeout, Unknown),
        ];
        for (status, outcome, fate) in cases {
            assert_eq!(
                QueueFate::of_record(&record(status, outcome)),
                fate,
                "{status:?} {outcome:?}"
            );
        }
    }

    #[test]
    fn certain_fates_give_exact_expectations() {
        let fates = Fates {
            not_queued: 5,
            completed: 8,
            failed: 2,
            ..Fates::default()
        };
        let expected = fates.expected(0);
        assert_eq!(expected.completed, Bounds { min: 8, max: 8 });
        assert_eq!(expected.otherwise, Bounds { min: 2, max: 2 });
        assert_eq!(expected.total, Bounds { min: 10, max: 10 });
    }

    #[test]
    fn uncertain_fates_and_redeliveries_widen_the_ranges() {
        let fates = Fates {
            completed: 8,
            ended: 1,
            maybe_failed: 1,
            unknown: 1,
            ..Fates::default()
        };
        let expected = fates.expected(1);
        assert_eq!(expected.completed, Bounds { min: 8, max: 11 });
        assert_eq!(expected.otherwise, Bounds { min: 0, max: 4 });
        assert_eq!(expected.total, Bounds { min: 9, max: 12 });
    }

    #[test]
    fn reclassifying_moves_at_most_what_is_there() {
        let mut fates = Fates {
            unknown: 2,
            ..Fates::default()
        };
        assert_eq!(
            fates.reclassify(QueueFate::Unknown, QueueFate::Failed, 3),
            2
        );
        assert_eq!((fates.unknown, fates.failed), (0, 2));
    }
}
