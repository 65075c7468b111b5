//! Hermes-style calls (Qwen2.5, Qwen3, IQuest-Coder) read out of streamed output.
//!
//! Text outside `<tool_call>` … `</tool_call>` is content; only a possible partial opener at the
//! end of what arrived is held back. Inside, the call's JSON object is read by a
//! [`CallReader`]. After a complete call, the whitespace up to the next text (the newlines the
//! model writes between and after its calls) and the closer are dropped; a missing closer at
//! the end of the output is forgiven, since the object was complete.
//!
//! Small models often write a call without the tags: Qwen2.5-Coder-1.5B-Instruct answers the
//! weather question (greedy) with the object in a ```` ```json ```` fence. As llama.cpp's Hermes
//! parser does, an answer that *starts* with an object (after whitespace, and a ```` ``` ```` or
//! ```` ```json ```` fence) is read as a call too, closed by the fence's ```` ``` ````; it is a
//! call only if it is one to an offered tool, like any other, else content.
//!
//! Broken calls (see [`super::call`]) are text: one broken before its name was known gives back
//! its opening and everything up to the offending character as content, and reading goes on
//! from that character as content (where a later `<tool_call>` starts a call again). One broken
//! after its first delta went out ends there, its arguments as far as they streamed, and reading
//! goes on as content from the offending character (from the one after it when it closed
//! arguments that are not a JSON object: it went out as their last piece). At the end of the
//! output, a call whose name is not known yet is content; one cut short after it was announced
//! stays, cut short (the finish reason says `length`).
//!
//! When the request allows one call only (`parallel_tool_calls: false`), text after the first
//! call is content, openers included.

use super::call::{CallContext, CallReader, CallState};
use super::parsed::Parsed;

const OPEN: &str = "<tool_call>";
const CLOSE: &str = "</tool_call>";
const FENCE: &str = "```";

#[derive(Debug)]
enum State {
    /// The answer's start, held while it may still open a call with or without tags.
    Start { held: String },
    /// Content; `held` is a possible partial opener, `after_call` drops whitespace.
    Text { held: String, after_call: bool },
    /// Inside a call: what opened it, its text after that so far, and what closes it.
    Call {
        opening: String,
        text: String,
        reader: CallReader,
        closer: &'static str,
    },
    /// After a call's object: whitespace and as much of the closer as arrived.
    Closing { held: String, closer: &'static str },
}

/// How the answer's start so far may open a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opening {
    Undecided,
    /// A call, closed by `closer` (nothing for a bare object), whose object starts with the
    /// start's last character unless it is a tag.
    Call {
        closer: &'static str,
    },
    Text,
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
            state: State::Start {
                held: String::new(),
            },
            calls: 0,
        }
    }

    /// Calls announced so far, the one being read included.
    pub fn calls(&self) -> u32 {
        let reading = matches!(&self.state, State::Call { reader, .. } if reader.announced());
        self.calls + u32::from(reading)
    }

    /// The end of the output: what is held back, as content.
    pub fn finish(&mut self, out: &mut Parsed) {
        match std::mem::replace(&mut self.state, text_state(true)) {
            State::Start { held } | State::Text { held, .. } => out.content(&held),
            State::Call {
                opening,
                text,
                reader,
                ..
            } if !reader.announced() => {
                out.content(&opening);
                out.content(&text);
            }
            State::Call { .. } => self.calls += 1,
            State::Closing { .. } => {}
        }
    }

    /// Reads the next character of output.
    pub fn push_char(&mut self, c: char, out: &mut Parsed) {
        match std::mem::replace(&mut self.state, text_state(false)) {
            State::Start { mut held } => {
                held.push(c);
                self.start(held, out);
            }
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
                opening,
                mut text,
                mut reader,
                closer,
            } => match reader.push(c, &self.context, out) {
                CallState::Reading => {
                    text.push(c);
                    self.state = State::Call {
                        opening,
                        text,
                        reader,
                        closer,
                    };
                }
                CallState::Complete => {
                    self.calls += 1;
                    self.state = match closer {
                        "" => text_state(true),
                        closer => State::Closing {
                            held: String::new(),
                            closer,
                        },
                    };
                }
                CallState::Broken { streamed } => {
                    if reader.announced() {
                        self.calls += 1;
                    } else {
                        out.content(&opening);
                        out.content(&text);
                    }
                    self.state = text_state(reader.announced());
                    if !streamed {
                        self.push_char(c, out);
                    }
                }
            },
            State::Closing { mut held, closer } => {
                held.push(c);
                let rest = held.trim_start();
                if rest == closer {
                    self.state = text_state(true);
                } else if closer.starts_with(rest) {
                    self.state = State::Closing { held, closer };
                } else {
                    self.state = text_state(true);
                    self.push_str(&held, out);
                }
            }
        }
    }

    /// The answer's start, just grown by a character: still undecided, a call, or content.
    fn start(&mut self, mut held: String, out: &mut Parsed) {
        match opening(held.trim_start()) {
            Opening::Undecided => self.state = State::Start { held },
            Opening::Call { closer: CLOSE } => self.open_call(held, CLOSE),
            Opening::Call { closer } => {
                // The object's `{` goes to the call's reader.
                held.pop();
                self.open_call(held, closer);
                self.push_char('{', out);
            }
            Opening::Text => self.push_str(&held, out),
        }
    }

    /// Reads held-back text again, in the state it now falls into.
    fn push_str(&mut self, text: &str, out: &mut Parsed) {
        text.chars().for_each(|c| self.push_char(c, out));
    }

    /// Content whose end may be the start of an opener.
    fn text(&mut self, mut held: String, out: &mut Parsed) {
        if !self.several_calls && self.calls > 0 {
            out.content(&held);
        } else if held == OPEN {
            self.open_call(held, CLOSE);
        } else {
            let start = partial_opener_start(&held);
            out.content(&held[..start]);
            held.drain(..start);
            self.state = State::Text {
                held,
                after_call: false,
            };
        }
    }

    fn open_call(&mut self, opening: String, closer: &'static str) {
        self.state = State::Call {
            opening,
            text: String::new(),
            reader: CallReader::new(self.calls),
            closer,
        };
    }
}

fn text_state(after_call: bool) -> State {
    State::Text {
        held: String::new(),
        after_call,
    }
}

/// What the answer's start (leading whitespace trimmed) opens.
fn opening(start: &str) -> Opening {
    if start == OPEN {
        return Opening::Call { closer: CLOSE };
    }
    if start == "{" {
        return Opening::Call { closer: "" };
    }
    if let Some(after_fence) = start.strip_prefix(FENCE) {
        let info = after_fence.strip_prefix("json").unwrap_or(after_fence);
        return match info.trim_start() {
            "{" => Opening::Call { closer: FENCE },
            "" => Opening::Undecided,
            _ if "json".starts_with(after_fence) => Opening::Undecided,
            _ => Opening::Text,
        };
    }
    if start.is_empty() || OPEN.starts_with(start) || FENCE.starts_with(start) {
        Opening::Undecided
    } else {
        Opening::Text
    }
}

/// Where the longest end of `held` that could begin an opener starts.
fn partial_opener_start(held: &str) -> usize {
    held.char_indices()
        .map(|(at, _)| at)
        .find(|&at| OPEN.starts_with(&held[at..]))
        .unwrap_or(held.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_of_an_answer_opens_a_call_with_tags_a_fence_or_a_bare_object() {
        for start in ["", "<tool_c", "`", "```", "```js", "```json", "```json\n "] {
            assert_eq!(opening(start), Opening::Undecided, "{start:?}");
        }
        assert_eq!(opening(OPEN), Opening::Call { closer: CLOSE });
        assert_eq!(opening("{"), Opening::Call { closer: "" });
        for fenced in ["```json\n{", "```\n{", "```json{"] {
            assert_eq!(
                opening(fenced),
                Opening::Call { closer: FENCE },
                "{fenced:?}"
            );
        }
        for text in ["Sure", "```python", "```jsonx", "<tool_cx", "`x"] {
            assert_eq!(opening(text), Opening::Text, "{text:?}");
        }
    }
}
