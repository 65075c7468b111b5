//! Tool calls in a model's own syntax: which syntax a model writes ([`format`]), and turning
//! its output back into OpenAI's `tool_calls`.
//!
//! The syntax is a property of the model family, read from its chat template; the same
//! [`format::ToolFormat`] tells the parser what to look for and the constrained decoder what
//! `tool_choice: "required"` must produce.

pub mod format;
