//! Llama 3 JSON calls read out of streamed output: the whole answer is one
//! `{"name": ..., "parameters": {...}}` object, optionally after `<|python_tag|>`.
//!
//! Leading whitespace (and the tag) is held until the first other character decides: `{` starts
//! a call, anything else makes the whole answer content, tag and whitespace included. Whitespace
//! after a complete call is dropped; other text after it is content. A call broken before its
//! name was known gives back the whole answer as content; one broken after its first delta went
//! out ends there and the rest is content (see [`super::call`]). At the end of the output, a
//! call whose name is not known yet is content; one cut short after it was announced stays.

use super::call::{CallContext, CallReader, CallState};
use super::parsed::Parsed;

const PYTHON_TAG: &str = "<|python_tag|>";

#[derive(Debug)]
enum State {
    /// Before the first character that decides; what was held.
    Start { held: String },
    /// Inside the call: the answer's text so far.
    Call { text: String, reader: CallReader },
    /// After a complete call: whitespace is dropped until other text comes.
    AfterCall,
    /// Content to the end.
    Text,
}

/// The parser of one choice's output in the Llama 3 JSON syntax.
#[derive(Debug)]
pub struct Llama3JsonParser {
    context: CallContext,
    state: State,
    /// Calls that ended (complete or broken) after they were announced.
    calls: u32,
}

impl Llama3JsonParser {
    pub fn new(context: CallContext) -> Self {
        Self {
            context,
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
        match std::mem::replace(&mut self.state, State::Text) {
            State::Start { held } => out.content(&held),
            State::Call { text, reader } if !reader.announced() => out.content(&text),
            State::Call { .. } => self.calls += 1,
            State::AfterCall | State::Text => {}
        }
    }

    /// Reads the next character of output.
    pub fn push_char(&mut self, c: char, out: &mut Parsed) {
        self.state = match std::mem::replace(&mut self.state, State::Text) {
            State::Start { mut held } => {
                held.push(c);
                self.start(held, out)
            }
            State::Call {
                mut text,
                mut reader,
            } => {
                text.push(c);
                match reader.push(c, &self.context, out) {
                    CallState::Reading => State::Call { text, reader },
                    CallState::Complete => {
                        self.calls += 1;
                        State::AfterCall
                    }
                    CallState::Broken { streamed } if reader.announced() => {
                        self.calls += 1;
                        if !streamed {
                            out.content(c.encode_utf8(&mut [0; 4]));
                        }
                        State::Text
                    }
                    CallState::Broken { .. } => {
                        out.content(&text);
                        State::Text
                    }
                }
            }
            State::AfterCall if c.is_whitespace() => State::AfterCall,
            State::AfterCall | State::Text => {
                out.content(c.encode_utf8(&mut [0; 4]));
                State::Text
            }
        };
    }

    /// The answer's opening, `held`, just grown by a character: still undecided, a call, or content.
    fn start(&mut self, held: String, out: &mut Parsed) -> State {
        let opening = held.trim_start();
        let after_tag = opening.strip_prefix(PYTHON_TAG).map(str::trim_start);
        let undecided = match after_tag {
            Some(rest) => rest.is_empty(),
            None => PYTHON_TAG.starts_with(opening),
        };
        if undecided {
            return State::Start { held };
        }
        if after_tag.unwrap_or(opening) == "{" {
            let mut reader = CallReader::new(0);
            // `{` opens the object; the reader cannot break or end on it.
            reader.push('{', &self.context, out);
            return State::Call { text: held, reader };
        }
        out.content(&held);
        State::Text
    }
}
