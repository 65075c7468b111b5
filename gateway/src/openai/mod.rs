//! The OpenAI wire format: request bodies, their validation, responses and stream chunks.

pub mod chat;
pub mod common;
pub mod completions;
pub mod json;
