//! The OpenAI wire format: request bodies, their validation, answers and stream chunks.
//!
//! # Layout
//! - [`endpoint`]: what a generation endpoint defines for the one handler.
//! - [`completions`], [`chat`]: the two OpenAI endpoints' bodies, answers and chunks.
//! - [`infill`]: llama.cpp's `/infill` (fill-in-the-middle for editor plugins).
//! - [`common`]: the sampling fields both share, validated into `SamplingParams`.
//! - [`fields`]: every field each body may carry, and whether it is honoured, ignored or
//!   refused (nothing is silently ignored).
//! - [`tools`], [`response_format`]: chat's tool fields and answer formats, checked.
//! - [`tool_call_body`]: tool calls in answers and stream chunks.
//! - [`response`]: the envelope around every answer's `choices`.
//! - [`shape`]: the bounds on a body's nesting, lists and values, checked before it is parsed.
//! - [`logprobs`]: log probabilities in chat's and completions' shapes.
//! - [`json`]: the body extractor whose 400s name the bad field.

pub mod chat;
pub mod common;
pub mod completions;
pub mod endpoint;
pub mod fields;
pub mod infill;
pub mod json;
pub mod logprobs;
pub mod response;
pub mod response_format;
pub mod shape;
pub mod tool_call_body;
pub mod tools;
