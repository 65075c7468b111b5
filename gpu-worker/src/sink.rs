//! The [`TokenSink`] a generation thread writes to: tokens go over a channel to the async task
//! that publishes them; generation stops when the cancel subscription raises the request's flag
//! or its deadline passes (the gateway has answered 504 by then, even if its cancel was lost).

use crate::backend::{Flow, TokenSink};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::SystemTime;
use tokio::sync::mpsc;

pub struct ChannelSink {
    tokens: mpsc::UnboundedSender<String>,
    cancelled: Arc<AtomicBool>,
    deadline: SystemTime,
}

impl ChannelSink {
    pub fn new(
        tokens: mpsc::UnboundedSender<String>,
        cancelled: Arc<AtomicBool>,
        deadline: SystemTime,
    ) -> Self {
        Self {
            tokens,
            cancelled,
            deadline,
        }
    }
}

impl TokenSink for ChannelSink {
    fn token(&mut self, text: &str) -> Flow {
        if self.is_cancelled() || self.tokens.send(text.to_owned()).is_err() {
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

    fn sink(deadline: SystemTime) -> (ChannelSink, mpsc::UnboundedReceiver<String>) {
        let (tokens, received) = mpsc::unbounded_channel();
        let sink = ChannelSink::new(tokens, Arc::new(AtomicBool::new(false)), deadline);
        (sink, received)
    }

    #[test]
    fn a_passed_deadline_stops_generation_without_a_cancel() {
        let (mut late, _received) = sink(SystemTime::now() - Duration::from_millis(1));
        assert!(late.is_cancelled());
        assert!(matches!(late.token("x"), Flow::Stop));

        let (mut on_time, mut received) = sink(SystemTime::now() + Duration::from_secs(60));
        assert!(matches!(on_time.token("x"), Flow::Continue));
        assert_eq!(received.try_recv().unwrap(), "x");
    }
}
