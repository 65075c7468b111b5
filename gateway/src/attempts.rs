//! Following a request across redeliveries.
//!
//! When a worker dies mid-generation, JetStream redelivers the request and another worker starts
//! it again with a higher `attempt`. The request carries a fixed seed, so the new attempt produces
//! the same tokens; this filter follows the newest attempt, drops events of older ones, and skips
//! tokens the client already received, so the client sees one answer, never two. With `n`
//! choices, each choice's tokens are counted on their own; a token of a choice the request did
//! not ask for (a forged event) is dropped.

use coder_nats::{TokenLogprobs, ToolCallDelta, WorkerEvent};

#[derive(Debug)]
pub struct AttemptFilter {
    current: u32,
    /// Per choice, tokens already passed on (across attempts). Wider than an index, so a forged
    /// `u32::MAX` index cannot overflow it.
    forwarded: Vec<u64>,
}

/// One token of one choice, for the client.
#[derive(Debug, PartialEq)]
pub struct ChoiceToken {
    pub choice: u32,
    pub text: String,
    pub logprobs: Option<TokenLogprobs>,
    /// Pieces of tool calls the token completed.
    pub tool_calls: Vec<ToolCallDelta>,
}

/// What a raw worker event means for the client.
#[derive(Debug, PartialEq)]
pub enum Filtered {
    /// A (re)start; `redelivered` when it is not the first attempt.
    Started {
        redelivered: bool,
        first: bool,
    },
    Token(ChoiceToken),
    /// A terminal event of the current attempt.
    Terminal(WorkerEvent),
    /// Stale or repeated: nothing for the client.
    Skip,
}

impl AttemptFilter {
    /// A filter for a request of `choices` choices.
    pub fn new(choices: u32) -> Self {
        Self {
            current: 0,
            forwarded: vec![0; choices.max(1) as usize],
        }
    }

    pub fn accept(&mut self, event: WorkerEvent) -> Filtered {
        let attempt = event.attempt();
        if attempt < self.current {
            return Filtered::Skip;
        }
        match event {
            WorkerEvent::Started { .. } if attempt > self.current => {
                let first = self.current == 0;
                self.current = attempt;
                Filtered::Started {
                    redelivered: attempt > 1,
                    first,
                }
            }
            WorkerEvent::Started { .. } => Filtered::Skip,
            // An error ends the request, even one whose `started` was lost (or never sent: a
            // request expired in the queue).
            error @ WorkerEvent::Error { .. } => Filtered::Terminal(error),
            _ if attempt > self.current => Filtered::Skip, // events before their `started`
            WorkerEvent::Token {
                index,
                text,
                choice,
                logprobs,
                tool_calls,
                ..
            } => match self.forwarded.get_mut(choice as usize) {
                Some(forwarded) if u64::from(index) >= *forwarded => {
                    *forwarded = u64::from(index) + 1;
                    Filtered::Token(ChoiceToken {
                        choice,
                        text,
                        logprobs,
                        tool_calls,
                    })
                }
                _ => Filtered::Skip,
            },
            terminal => Filtered::Terminal(terminal),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coder_nats::{FinishReason, Usage};

    fn started(attempt: u32) -> WorkerEvent {
        WorkerEvent::Started {
            attempt,
            worker_id: "w".into(),
            queue_wait_ms: 0,
        }
    }

    fn token(attempt: u32, index: u32) -> WorkerEvent {
        of_choice(attempt, 0, index)
    }

    fn of_choice(attempt: u32, choice: u32, index: u32) -> WorkerEvent {
        WorkerEvent::Token {
            attempt,
            index,
            text: format!("t{index}"),
            choice,
            logprobs: None,
            tool_calls: Vec::new(),
        }
    }

    fn text(choice: u32, index: u32) -> Filtered {
        Filtered::Token(ChoiceToken {
            choice,
            text: format!("t{index}"),
            logprobs: None,
            tool_calls: Vec::new(),
        })
    }

    fn done(attempt: u32) -> WorkerEvent {
        WorkerEvent::Final {
            attempt,
            finish_reason: FinishReason::Length,
            usage: Usage::default(),
            finish_reasons: Vec::new(),
            token_events: Vec::new(),
        }
    }

    #[test]
    fn a_redelivered_request_resumes_where_the_client_is() {
        let mut filter = AttemptFilter::new(1);
        assert_eq!(
            filter.accept(started(1)),
            Filtered::Started {
                redelivered: false,
                first: true
            }
        );
        assert_eq!(filter.accept(token(1, 0)), text(0, 0));
        assert_eq!(filter.accept(token(1, 1)), text(0, 1));
        // Worker 1 dies; worker 2 starts over.
        assert_eq!(
            filter.accept(started(2)),
            Filtered::Started {
                redelivered: true,
                first: false
            }
        );
        assert_eq!(filter.accept(token(2, 0)), Filtered::Skip);
        assert_eq!(filter.accept(token(2, 1)), Filtered::Skip);
        assert_eq!(filter.accept(token(2, 2)), text(0, 2));
        // A late event of the dead attempt is ignored, and so is its terminal.
        assert_eq!(filter.accept(token(1, 2)), Filtered::Skip);
        assert_eq!(filter.accept(done(1)), Filtered::Skip);
        assert_eq!(filter.accept(done(2)), Filtered::Terminal(done(2)));
    }

    #[test]
    fn forged_extreme_indexes_and_attempts_do_not_overflow() {
        let mut filter = AttemptFilter::new(1);
        filter.accept(started(u32::MAX));
        assert_eq!(filter.accept(token(u32::MAX, u32::MAX)), text(0, u32::MAX));
        assert_eq!(filter.accept(token(u32::MAX, u32::MAX)), Filtered::Skip);
        assert_eq!(
            filter.accept(done(u32::MAX)),
            Filtered::Terminal(done(u32::MAX))
        );
    }

    #[test]
    fn each_choice_resumes_on_its_own_and_unasked_choices_are_dropped() {
        let mut filter = AttemptFilter::new(2);
        filter.accept(started(1));
        assert_eq!(filter.accept(of_choice(1, 0, 0)), text(0, 0));
        assert_eq!(filter.accept(of_choice(1, 1, 0)), text(1, 0));
        assert_eq!(filter.accept(of_choice(1, 1, 1)), text(1, 1));
        filter.accept(started(2));
        assert_eq!(filter.accept(of_choice(2, 0, 0)), Filtered::Skip);
        assert_eq!(filter.accept(of_choice(2, 0, 1)), text(0, 1));
        assert_eq!(filter.accept(of_choice(2, 1, 1)), Filtered::Skip);
        assert_eq!(filter.accept(of_choice(2, 2, 0)), Filtered::Skip);
        assert_eq!(filter.accept(of_choice(2, u32::MAX, 0)), Filtered::Skip);
    }

    #[test]
    fn events_of_an_attempt_not_yet_started_are_dropped() {
        let mut filter = AttemptFilter::new(1);
        assert_eq!(filter.accept(token(1, 0)), Filtered::Skip);
        assert_eq!(
            filter.accept(started(1)),
            Filtered::Started {
                redelivered: false,
                first: true
            }
        );
        assert_eq!(filter.accept(started(1)), Filtered::Skip);
    }

    #[test]
    fn an_error_ends_the_request_even_without_its_start() {
        let failed = |attempt| WorkerEvent::Error {
            attempt,
            kind: coder_nats::ErrorKind::Internal,
            message: "m".into(),
            param: None,
        };
        let mut filter = AttemptFilter::new(1);
        assert_eq!(filter.accept(failed(1)), Filtered::Terminal(failed(1)));
        let mut filter = AttemptFilter::new(1);
        filter.accept(started(2));
        assert_eq!(filter.accept(failed(1)), Filtered::Skip, "an old attempt's");
    }
}
