//! The [`TokenSink`] a generation thread writes to: tokens go over a channel to the async task
//! that publishes them; cancellation is a flag the cancel subscription raises.

use crate::backend::{Flow, TokenSink};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

pub struct ChannelSink {
    tokens: mpsc::UnboundedSender<String>,
    cancelled: Arc<AtomicBool>,
}

impl ChannelSink {
    pub fn new(tokens: mpsc::UnboundedSender<String>, cancelled: Arc<AtomicBool>) -> Self {
        Self { tokens, cancelled }
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
        self.cancelled.load(Ordering::Relaxed)
    }
}
