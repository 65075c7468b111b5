//! One choice's output turned into content text and OpenAI tool-call deltas as it streams, in
//! the syntax of the model's family.
//!
//! Deterministic: the same text gives the same content, calls and ids however it is cut into
//! pieces (only where the pieces' boundaries fall can differ), so a redelivered request's events
//! repeat the first delivery's. Never an error: output that is not a well-formed call to an
//! offered tool comes back as content (the rules per syntax are in [`super::hermes`] and
//! [`super::llama3_json`]).

use super::call::CallContext;
use super::format::ToolFormat;
use super::hermes::HermesParser;
use super::llama3_json::Llama3JsonParser;
use super::parsed::Parsed;

/// Reads one choice's output for tool calls.
#[derive(Debug)]
pub enum ToolCallParser {
    Hermes(HermesParser),
    Llama3Json(Llama3JsonParser),
}

impl ToolCallParser {
    /// A parser for `format`; `several_calls` is the request's `parallel_tool_calls` (the
    /// Llama 3 syntax holds one call whatever it says).
    pub fn new(format: ToolFormat, context: CallContext, several_calls: bool) -> Self {
        match format {
            ToolFormat::Hermes => ToolCallParser::Hermes(HermesParser::new(
                context,
                several_calls && format.allows_several_calls(),
            )),
            ToolFormat::Llama3Json => ToolCallParser::Llama3Json(Llama3JsonParser::new(context)),
        }
    }

    /// Reads the next piece of output.
    pub fn push(&mut self, text: &str) -> Parsed {
        let mut out = Parsed::default();
        for c in text.chars() {
            match self {
                ToolCallParser::Hermes(parser) => parser.push_char(c, &mut out),
                ToolCallParser::Llama3Json(parser) => parser.push_char(c, &mut out),
            }
        }
        out
    }

    /// The end of the output: what was held back.
    pub fn finish(&mut self) -> Parsed {
        let mut out = Parsed::default();
        match self {
            ToolCallParser::Hermes(parser) => parser.finish(&mut out),
            ToolCallParser::Llama3Json(parser) => parser.finish(&mut out),
        }
        out
    }

    /// Calls made so far (announced with an id and a name).
    pub fn calls(&self) -> u32 {
        match self {
            ToolCallParser::Hermes(parser) => parser.calls(),
            ToolCallParser::Llama3Json(parser) => parser.calls(),
        }
    }
}
