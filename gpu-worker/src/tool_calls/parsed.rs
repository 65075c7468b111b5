//! What a tool-call parser gives back for a piece of output: content text and tool-call deltas.

use coder_nats::ToolCallDelta;

/// Content text and tool-call pieces, in OpenAI's streaming shape: consecutive pieces of one
/// call are merged, so a piece of output gives at most one delta per call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    pub content: String,
    pub tool_calls: Vec<ToolCallDelta>,
}

impl Parsed {
    /// Whether there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.content.is_empty() && self.tool_calls.is_empty()
    }

    pub(super) fn content(&mut self, text: &str) {
        self.content.push_str(text);
    }

    /// Call `index` is known: its first delta, with its id and name.
    pub(super) fn start_call(&mut self, index: u32, id: String, name: String) {
        self.tool_calls.push(ToolCallDelta {
            index,
            id: Some(id),
            name: Some(name),
            arguments: String::new(),
        });
    }

    /// More argument text of call `index`.
    pub(super) fn arguments(&mut self, index: u32, text: &str) {
        match self.tool_calls.last_mut() {
            Some(last) if last.index == index => last.arguments.push_str(text),
            _ => self.tool_calls.push(ToolCallDelta {
                index,
                arguments: text.to_owned(),
                ..ToolCallDelta::default()
            }),
        }
    }
}
