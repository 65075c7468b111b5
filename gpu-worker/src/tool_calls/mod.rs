//! Tool calls in a model's own syntax: which syntax a model writes ([`format`]), and turning
//! its output back into OpenAI's `tool_calls` ([`parser`]).
//!
//! The syntax is a property of the model family, read from its chat template; the same
//! [`format::ToolFormat`] tells the parser what to look for and the constrained decoder what
//! `tool_choice: "required"` must produce.
//!
//! # Layout
//! - [`format`]: the syntaxes and how a template shows which one it uses.
//! - [`parser`]: one choice's output into content and deltas, per syntax: [`hermes`],
//!   [`llama3_json`].
//! - [`choice`]: which choices are parsed, and the finish reason their calls give.
//! - [`call`]: one call's JSON object read as it streams (name check, argument pieces).
//! - [`json_scan`]: a JSON object's top level, a character at a time.
//! - [`parsed`]: the content and deltas a piece of output gives.

pub mod call;
pub mod choice;
pub mod format;
pub mod hermes;
pub mod json_scan;
pub mod llama3_json;
pub mod parsed;
pub mod parser;
#[cfg(test)]
mod recorded_tests;

pub use call::CallContext;
pub use parsed::Parsed;
pub use parser::ToolCallParser;
