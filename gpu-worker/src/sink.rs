//! The [`TokenSink`] a generation thread writes to: tokens go over a channel to the async task
//! that publishes them, tagged with the choice they belong to; generation stops when the cancel
//! subscription raises the request's flag or its deadline passes (the gateway has answered 504
//! by then, even if its cancel was lost).
//!
//! A choice whose output may hold tool calls has its own [`ToolCallParser`]: each token's text
//! goes through it, and what is sent is the content text and the call pieces it gives; what the
//! parser held back is sent by [`ChannelSink::finish`] once the generation ended.

use crate::backend::{Flow, TokenSink};
use crate::tool_calls::{Parsed, ToolCallParser};
use coder_nats::{TokenLogprobs, ToolCallDelta};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::SystemTime;
use tokio::sync::mpsc;

/// One generated token of one choice, on its way to be published (or, last, what a tool-call
/// parser held back at the end).
#[derive(Debug, PartialEq)]
pub struct Generated {
    pub choice: u32,
    /// Content text (without the tool-call syntax the parser took out).
    pub text: String,
    pub logprobs: Option<TokenLogprobs>,
    pub tool_calls: Vec<ToolCallDelta>,
}

impl Generated {
    /// Whether it is worth a token event.
    pub fn has_output(&self) -> bool {
        !self.text.is_empty() || self.logprobs.is_some() || !self.tool_calls.is_empty()
    }
}

pub struct ChannelSink {
    tokens: mpsc::UnboundedSender<Generated>,
    choice: u32,
    cancelled: Arc<AtomicBool>,
    deadline: SystemTime,
    /// Reads the choice's output for tool calls, when it may hold some.
    tool_calls: Option<ToolCallParser>,
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
            tool_calls: None,
        }
    }

    /// The same sink reading the output for tool calls with `parser`.
    pub fn with_tool_calls(mut self, parser: Option<ToolCallParser>) -> Self {
        self.tool_calls = parser;
        self
    }

    /// The end of a generation that ran to its end: sends what the parser held back, and
    /// gives the number of calls the choice made.
    pub fn finish(&mut self) -> u32 {
        let Some(parser) = &mut self.tool_calls else {
            return 0;
        };
        let held = parser.finish();
        let calls = parser.calls();
        self.send(held, None);
        calls
    }

    fn send(&mut self, parsed: Parsed, logprobs: Option<TokenLogprobs>) -> Flow {
        let generated = Generated {
            choice: self.choice,
            text: parsed.content,
            logprobs,
            tool_calls: parsed.tool_calls,
        };
        if self.is_cancelled() || self.tokens.send(generated).is_err() {
            Flow::Stop
        } else {
            Flow::Continue
        }
    }
}

impl TokenSink for ChannelSink {
    fn token(&mut self, text: &str) -> Flow {
        self.generated(text, None)
    }

    fn generated(&mut self, text: &str, logprobs: Option<TokenLogprobs>) -> Flow {
        let parsed = match &mut self.tool_calls {
            Some(parser) => parser.push(text),
            None => Parsed {
                content: text.to_owned(),
                tool_calls: Vec::new(),
            },
        };
        self.send(parsed, logprobs)
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
