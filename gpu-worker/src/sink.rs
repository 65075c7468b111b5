//! The [`TokenSink`] a generation thread writes to: tokens go over a channel to the async task
//! that publishes them, tagged with the choice they belong to; generation stops when the cancel
//! subscription raises the request's flag or its deadline passes (the gateway has answered 504
//! by then, even if its cancel was lost).

use crate::backend::{Flow, TokenSink};
use coder_nats::TokenLogprobs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::SystemTime;
use tokio::sync::mpsc;

/// One generated token of one choice, on its way to be published.
#[derive(Debug, PartialEq)]
pub struct Generated {
    pub choice: u32,
    pub text: String,
    pub logprobs: Option<TokenLogprobs>,
}

pub struct ChannelSink {
    tokens: mpsc::UnboundedSender<Generated>,
    choice: u32,
    cancelled: Arc<AtomicBool>,
    deadline: SystemTime,
}

impl ChannelSink {
    /// The sink of choice `choice`; every choice of a request shares its cancel flag.
    pub fn new(
        tokens: mpsc::UnboundedSender<Generated>,
        choice: u32,
        cancelled: Arc<AtomicBool>,
        deadline: SystemTime,
    ) -> Self {
        Self {
            tokens,
            choice,
            cancelled,
            deadline,
        }
    }
}

impl TokenSink for ChannelSink {
    fn token(&mut self, text: &str) -> Flow {
        self.generated(text, None)
    }

    fn generated(&mut self, text: &str, logprobs: Option<TokenLogprobs>) -> Flow {
        let generated = Generated {
            choice: self.choice,
            text: text.to_owned(),
            logprobs,
        };
        if self.is_cancelled() || self.tokens.send(generated).is_err() {
            Flow::Stop
        } else {
            Flow::Continue
        }
    }

    fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed) || SystemTime::now() >= self.deadline
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn sink(deadline: SystemTime) -> (ChannelSink, mpsc::UnboundedReceiver<Generated>) {
        let (tokens, received) = mpsc::unbounded_channel();
        let sink = ChannelSink::new(tokens, 3, Arc::new(AtomicBool::new(false)), deadline);
        (sink, received)
    }

    #[test]
    fn a_passed_deadline_stops_generation_without_a_cancel() {
        let (mut late, _received) = sink(SystemTime::now() - Duration::from_millis(1));
        assert!(late.is_cancelled());
        assert!(matches!(late.token("x"), Flow::Stop));

        let (mut on_time, mut received) = sink(SystemTime::now() + Duration::from_secs(60));
        assert!(matches!(on_time.token("x"), Flow::Continue));
        let generated = received.try_recv().unwrap();
        assert_eq!((generated.choice, generated.text.as_str()), (3, "x"));
    }
}
