//! Whether the gateway holds every event of a request's current attempt, and what to answer a
//! worker's terminal event ([`EndReceipt`]).
//!
//! Worker events travel on core NATS, at most once: while this gateway moves to another NATS
//! node (its node died or restarted), what workers publish for it is dropped. The reply router
//! runs every event through a request's [`Continuity`] before the request sees it:
//! - an attempt number JetStream cannot have given (0, or beyond `--max-deliver`) is dropped,
//!   so a forged event cannot take a request over;
//! - a token event whose index skips one of its attempt marks the attempt broken, and it and the
//!   attempt's later tokens are held back: the client never sees a gap;
//! - a terminal event of the current attempt, unbroken, whose `token_events` match what arrived,
//!   is passed on and answered [`EndReceipt::Complete`]; a `final` of a broken attempt, of one
//!   whose `started` was lost, or with fewer tokens than it says it sent, is held back and
//!   answered [`EndReceipt::Redeliver`]: the worker naks, another attempt regenerates the same
//!   text, and the request's [`crate::attempts::AttemptFilter`] passes on only what the client
//!   has not seen yet;
//! - such a `final` of the last attempt JetStream will make (`--max-deliver`) cannot be asked
//!   again: the request fails, saying its answer lost events ([`Admission::lost`]), rather than
//!   wait for its deadline; the worker is answered `Complete`;
//! - an `error` ends the request whatever was lost before it, and a terminal event of an older
//!   attempt (a worker that was paused past `ack_wait` and resumed) needs nothing: both are
//!   answered `Complete`.

use coder_nats::{EndReceipt, WorkerEvent};

#[derive(Debug)]
pub struct Continuity {
    /// Deliveries JetStream makes of a request at most (`--max-deliver`).
    max_deliver: u32,
    /// The newest attempt that sent `started` (0: none yet).
    current: u32,
    /// Per choice, the index of the current attempt's next token event.
    next: Vec<u32>,
    /// A token event of the current attempt was lost.
    broken: bool,
}

/// What to do with one event.
#[derive(Debug, PartialEq, Eq)]
pub struct Admission {
    /// Pass it on to the request.
    pub forward: bool,
    /// For a terminal event: the answer for its worker.
    pub receipt: Option<EndReceipt>,
    /// Events of the last attempt were lost and no delivery is left to regenerate them: the
    /// request is to fail (the event itself is not passed on).
    pub lost: bool,
}

impl Admission {
    const FORWARD: Self = Self {
        forward: true,
        receipt: None,
        lost: false,
    };
    const DROP: Self = Self {
        forward: false,
        receipt: None,
        lost: false,
    };
}

impl Continuity {
    /// For a request of `choices` choices, delivered at most `max_deliver` times.
    pub fn new(choices: u32, max_deliver: u32) -> Self {
        Self {
            max_deliver,
            current: 0,
            next: vec![0; choices.max(1) as usize],
            broken: false,
        }
    }

    /// Whether JetStream could have given this attempt number.
    pub fn possible_attempt(&self, attempt: u32) -> bool {
        (1..=self.max_deliver).contains(&attempt)
    }

    pub fn admit(&mut self, event: &WorkerEvent) -> Admission {
        let attempt = event.attempt();
        if !self.possible_attempt(attempt) {
            return Admission::DROP;
        }
        match event {
            WorkerEvent::Started { .. } => {
                if attempt > self.current {
                    self.current = attempt;
                    self.next.iter_mut().for_each(|next| *next = 0);
                    self.broken = false;
                }
                Admission::FORWARD
            }
            WorkerEvent::Token { index, choice, .. } => self.token(attempt, *index, *choice),
            WorkerEvent::Error { .. } => Admission {
                forward: true,
                receipt: Some(EndReceipt::Complete),
                lost: false,
            },
            WorkerEvent::Final { token_events, .. } => self.end(attempt, token_events),
        }
    }

    fn token(&mut self, attempt: u32, index: u32, choice: u32) -> Admission {
        let Some(next) = self.next.get_mut(choice as usize) else {
            return Admission::FORWARD; // a choice not asked for: the request drops it
        };
        if attempt != self.current || self.broken {
            // Another attempt's (the request skips it), or after a loss (held back).
            return match self.broken && attempt == self.current {
                true => Admission::DROP,
                false => Admission::FORWARD,
            };
        }
        if index > *next {
            self.broken = true;
            return Admission::DROP;
        }
        if index == *next {
            *next += 1;
        }
        Admission::FORWARD
    }

    fn end(&mut self, attempt: u32, token_events: &[u32]) -> Admission {
        let complete = Admission {
            forward: true,
            receipt: Some(EndReceipt::Complete),
            lost: false,
        };
        if attempt < self.current {
            return complete; // an attempt the request no longer follows
        }
        let all_arrived = token_events.is_empty() || token_events == self.next.as_slice();
        if attempt > self.current || self.broken || !all_arrived {
            let last = attempt >= self.max_deliver;
            return Admission {
                forward: false,
                receipt: Some(match last {
                    true => EndReceipt::Complete,
                    false => EndReceipt::Redeliver,
                }),
                lost: last,
            };
        }
        complete
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coder_nats::{ErrorKind, FinishReason, Usage};

    fn started(attempt: u32) -> WorkerEvent {
        WorkerEvent::Started {
            attempt,
            worker_id: "w".into(),
            queue_wait_ms: 0,
        }
    }

    fn token(attempt: u32, index: u32) -> WorkerEvent {
        WorkerEvent::Token {
            attempt,
            index,
            text: format!("t{index}"),
            choice: 0,
            logprobs: None,
            tool_calls: Vec::new(),
        }
    }

    fn done(attempt: u32, token_events: Vec<u32>) -> WorkerEvent {
        WorkerEvent::Final {
            attempt,
            finish_reason: FinishReason::Length,
            usage: Usage::default(),
            finish_reasons: Vec::new(),
            token_events,
        }
    }

    fn failed(attempt: u32) -> WorkerEvent {
        WorkerEvent::Error {
            attempt,
            kind: ErrorKind::Internal,
            message: "m".into(),
            param: None,
        }
    }

    const COMPLETE: Admission = Admission {
        forward: true,
        receipt: Some(EndReceipt::Complete),
        lost: false,
    };
    const REDELIVER: Admission = Admission {
        forward: false,
        receipt: Some(EndReceipt::Redeliver),
        lost: false,
    };
    const LOST: Admission = Admission {
        forward: false,
        receipt: Some(EndReceipt::Complete),
        lost: true,
    };

    #[test]
    fn the_last_delivery_that_lost_events_fails_the_request_instead_of_asking_again() {
        let mut continuity = Continuity::new(1, 2);
        continuity.admit(&started(1));
        assert_eq!(continuity.admit(&done(1, vec![2])), REDELIVER);
        continuity.admit(&started(2));
        continuity.admit(&token(2, 0));
        assert_eq!(continuity.admit(&token(2, 2)), Admission::DROP);
        assert_eq!(continuity.admit(&done(2, vec![3])), LOST);
        // Its started lost too: the same.
        let mut continuity = Continuity::new(1, 2);
        assert_eq!(continuity.admit(&done(2, vec![0])), LOST);
    }

    #[test]
    fn an_attempt_that_arrived_whole_is_complete() {
        let mut continuity = Continuity::new(1, 3);
        assert_eq!(continuity.admit(&started(1)), Admission::FORWARD);
        for index in 0..3 {
            assert_eq!(continuity.admit(&token(1, index)), Admission::FORWARD);
        }
        assert_eq!(continuity.admit(&done(1, vec![3])), COMPLETE);
        // A worker older than `token_events`: nothing to count against.
        let mut continuity = Continuity::new(1, 3);
        continuity.admit(&started(1));
        assert_eq!(continuity.admit(&done(1, vec![])), COMPLETE);
    }

    #[test]
    fn a_lost_token_holds_back_the_rest_and_asks_for_the_attempt_again() {
        let mut continuity = Continuity::new(1, 3);
        continuity.admit(&started(1));
        assert_eq!(continuity.admit(&token(1, 0)), Admission::FORWARD);
        // Token 1 was lost.
        assert_eq!(continuity.admit(&token(1, 2)), Admission::DROP);
        assert_eq!(continuity.admit(&token(1, 3)), Admission::DROP);
        assert_eq!(continuity.admit(&done(1, vec![4])), REDELIVER);
        // The next attempt starts over and arrives whole.
        assert_eq!(continuity.admit(&started(2)), Admission::FORWARD);
        for index in 0..4 {
            assert_eq!(continuity.admit(&token(2, index)), Admission::FORWARD);
        }
        assert_eq!(continuity.admit(&done(2, vec![4])), COMPLETE);
    }

    #[test]
    fn lost_last_tokens_or_a_lost_start_ask_for_the_attempt_again() {
        let mut continuity = Continuity::new(1, 3);
        continuity.admit(&started(1));
        continuity.admit(&token(1, 0));
        assert_eq!(continuity.admit(&done(1, vec![2])), REDELIVER);

        let mut continuity = Continuity::new(1, 3);
        assert_eq!(continuity.admit(&token(1, 0)), Admission::FORWARD);
        assert_eq!(continuity.admit(&done(1, vec![1])), REDELIVER);
    }

    #[test]
    fn an_error_or_an_old_attempt_needs_nothing_more() {
        let mut continuity = Continuity::new(1, 3);
        continuity.admit(&started(1));
        continuity.admit(&token(1, 1)); // token 0 lost
        assert_eq!(continuity.admit(&failed(1)), COMPLETE);

        let mut continuity = Continuity::new(1, 3);
        continuity.admit(&started(1));
        continuity.admit(&started(2));
        // The first worker, resumed after its request went to another, finishes.
        assert_eq!(continuity.admit(&token(1, 0)), Admission::FORWARD);
        assert_eq!(continuity.admit(&done(1, vec![1])), COMPLETE);
    }

    #[test]
    fn attempts_jetstream_cannot_give_are_dropped() {
        let mut continuity = Continuity::new(1, 3);
        continuity.admit(&started(1));
        for forged in [0, 4, u32::MAX] {
            assert_eq!(continuity.admit(&started(forged)), Admission::DROP);
            assert_eq!(continuity.admit(&token(forged, 0)), Admission::DROP);
            assert_eq!(continuity.admit(&done(forged, vec![])), Admission::DROP);
            assert_eq!(continuity.admit(&failed(forged)), Admission::DROP);
        }
        assert_eq!(continuity.admit(&token(1, 0)), Admission::FORWARD);
        assert_eq!(continuity.admit(&done(1, vec![1])), COMPLETE);
    }

    #[test]
    fn each_choice_counts_its_own_tokens() {
        let mut continuity = Continuity::new(2, 3);
        continuity.admit(&started(1));
        let of_choice = |choice, index| WorkerEvent::Token {
            attempt: 1,
            index,
            text: String::new(),
            choice,
            logprobs: None,
            tool_calls: Vec::new(),
        };
        for index in 0..2 {
            assert_eq!(continuity.admit(&of_choice(1, index)), Admission::FORWARD);
            assert_eq!(continuity.admit(&of_choice(0, index)), Admission::FORWARD);
        }
        assert_eq!(continuity.admit(&done(1, vec![2, 2])), COMPLETE);
        assert_eq!(continuity.admit(&done(1, vec![2, 3])), REDELIVER);
    }
}
