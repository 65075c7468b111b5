//! Hermes-style calls (Qwen2.5, Qwen3, IQuest-Coder) read out of streamed output.
//!
//! Text outside `<tool_call>` … `</tool_call>` is content; only a possible partial opener at the
//! end of what arrived is held back. Inside, the call's JSON object is read by a
//! [`CallReader`]. After a complete call, the whitespace up to the next text (the newlines the
//! model writes between and after its calls) and the closing `</tool_call>` are dropped; a
//! missing closer at the end of the output is forgiven, since the object was complete.
//!
//! Broken calls (see [`super::call`]) are text: one broken before its name was known gives back
//! `<tool_call>` and everything up to the offending character as content, and reading goes on
//! from that character as content (where a later `<tool_call>` starts a call again). One broken
//! after its first delta went out ends there, its arguments as far as they streamed, and reading
//! goes on as content from the offending character (from the one after it when it closed
//! arguments that are not a JSON object: it went out as their last piece). At the end of the output, a call whose name
//! is not known yet is content; one cut short after it was announced stays, cut short (the
//! finish reason says `length`).
//!
//! When the request allows one call only (`parallel_tool_calls: false`), text after the first
//! call is content, openers included.

use super::call::{CallContext, CallReader, CallState};
use super::parsed::Parsed;

const OPEN: &str = "<tool_call>";
const CLOSE: &str = "</tool_call>";

#[derive(Debug)]
enum State {
    /// Content; `held` is a possible partial opener, `after_call` drops whitespace.
    Text { held: String, after_call: bool },
    /// Inside a call: its text after the opener so far.
    Call { text: String, reader: CallReader },
    /// After a call's object: whitespace and as much of the closer as arrived.
    Closing { held: String },
}

/// The parser of one choice's output in the Hermes syntax.
#[derive(Debug)]
pub struct HermesParser {
    context: CallContext,
    several_calls: bool,
    state: State,
    /// Calls that ended (complete or broken) after they were announced.
    calls: u32,
}

impl HermesParser {
    pub fn new(context: CallContext, several_calls: bool) -> Self {
        Self {
            context,
            several_calls,
            state: State::Text {
                held: String::new(),
                after_call: false,
            },
            calls: 0,
        }
    }

    /// Calls announced so far, the one being read included.
    pub fn calls(&self) -> u32 {
        let reading = matches!(&self.state, State::Call { reader, .. } if reader.announced());
        self.calls + u32::from(reading)
    }

    pub fn push(&mut self, text: &str, out: &mut Parsed) {
        for c in text.chars() {
            self.push_char(c, out);
        }
    }

    /// The end of the output: what is held back, as content.
    pub fn finish(&mut self, out: &mut Parsed) {
        match std::mem::replace(&mut self.state, text_state(true)) {
            State::Text { held, .. } => out.content(&held),
            State::Call { text, reader } if !reader.announced() => {
                out.content(OPEN);
                out.content(&text);
            }
            State::Call { .. } => self.calls += 1,
            State::Closing { .. } => {}
        }
    }

    fn push_char(&mut self, c: char, out: &mut Parsed) {
        match std::mem::replace(&mut self.state, text_state(false)) {
            State::Text {
                held,
                after_call: true,
            } if c.is_whitespace() => {
                self.state = State::Text {
                    held,
                    after_call: true,
                }
            }
            State::Text { mut held, .. } => {
                held.push(c);
                self.text(held, out);
            }
            State::Call {
                mut text,
                mut reader,
            } => match reader.push(c, &self.context, out) {
                CallState::Reading => {
                    text.push(c);
                    self.state = State::Call { text, reader };
                }
                CallState::Complete => {
                    self.calls += 1;
                    self.state = State::Closing {
                        held: String::new(),
                    };
                }
                CallState::Broken { streamed } => {
                    if reader.announced() {
                        self.calls += 1;
                    } else {
                        out.content(OPEN);
                        out.content(&text);
                    }
                    self.state = text_state(reader.announced());
                    if !streamed {
                        self.push_char(c, out);
                    }
                }
            },
            State::Closing { mut held } => {
                held.push(c);
                let rest = held.trim_start();
                if rest == CLOSE {
                    self.state = text_state(true);
                } else if CLOSE.starts_with(rest) {
                    self.state = State::Closing { held };
                } else {
                    self.state = text_state(true);
                    self.push(&held, out);
                }
            }
        }
    }

    /// Content whose end may be the start of an opener.
    fn text(&mut self, mut held: String, out: &mut Parsed) {
        self.state = if !self.several_calls && self.calls > 0 {
            out.content(&held);
            text_state(false)
        } else if held == OPEN {
            State::Call {
                text: String::new(),
                reader: CallReader::new(self.calls, "arguments"),
            }
        } else {
            let start = partial_opener_start(&held);
            out.content(&held[..start]);
            held.drain(..start);
            State::Text {
                held,
                after_call: false,
            }
        };
    }
}

fn text_state(after_call: bool) -> State {
    State::Text {
        held: String::new(),
        after_call,
    }
}

/// Where the longest end of `held` that could begin an opener starts.
fn partial_opener_start(held: &str) -> usize {
    held.char_indices()
        .map(|(at, _)| at)
        .find(|&at| OPEN.starts_with(&held[at..]))
        .unwrap_or(held.len())
}
