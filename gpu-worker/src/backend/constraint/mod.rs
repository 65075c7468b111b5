//! Constrained decoding: the answer follows a grammar, token by token (structured output and
//! enforced tool calls).
//!
//! A backend builds one [`Constraints`] for its vocabulary (the costly part: llguidance indexes
//! every token's bytes). Per request, [`Constraints::for_conversation`] turns the conversation's
//! `response_format` and `tool_choice` into a grammar, compiled once and kept in a small cache
//! (a request's `n` choices, and a client's repeated requests, share it), and hands out one
//! [`Constraint`] per sequence. At each step a sequence asks its constraint for the
//! [`AllowedTokens`], samples among them, and advances it by the sampled token; once the grammar
//! is complete only an end-of-turn token is allowed, so the answer ends with `stop`.
//!
//! Nothing here knows about models or sampling: it maps token ids to bytes and grammars to
//! masks (llguidance does the work).
//!
//! # Layout
//!
//! - `vocabulary.rs`: a vocabulary as llguidance sees it (and the byte vocabulary).
//! - `grammar.rs`: the Lark grammar of a conversation's answer.
//! - `sequence.rs`: one sequence's grammar state and the tokens it allows.
//! - `tests.rs`: what the grammars accept and refuse, over the byte vocabulary.

mod grammar;
mod sequence;
mod vocabulary;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use coder_nats::Conversation;
use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::TokEnv;
use llguidance::{Matcher, ParserFactory};

pub use self::grammar::{FieldSchema, Grammar};
pub use self::sequence::{AllowedTokens, Constraint};
pub use self::vocabulary::{byte_token_env, token_env, TokenSpelling, BYTE_END_OF_TURN};
use crate::backend::BackendError;
use crate::tool_calls::format::ToolFormat;

/// Compiled grammars kept for reuse, most recent last.
const CACHED_GRAMMARS: usize = 16;

/// One grammar's compiled matcher, once compiled. Callers wanting the same grammar wait on it
/// while it compiles (a request's `n` choices start together), others do not.
type CompiledSlot = Arc<Mutex<Option<Matcher>>>;

/// A vocabulary's grammar compiler, and the grammars it compiled lately.
pub struct Constraints {
    factory: ParserFactory,
    compiled: Mutex<VecDeque<(String, CompiledSlot)>>,
}

impl Constraints {
    /// Indexes `tok_env`'s vocabulary (slow for a large one: build it once per model).
    pub fn new(tok_env: &TokEnv) -> anyhow::Result<Self> {
        let mut factory = ParserFactory::new_simple(tok_env).context("indexing the vocabulary")?;
        factory.quiet();
        Ok(Self {
            factory,
            compiled: Mutex::new(VecDeque::new()),
        })
    }

    /// The constraint of `conversation`'s answer in the `format` call syntax, or `None` when
    /// the answer is free text. A schema the engine cannot enforce is refused, naming its field.
    pub fn for_conversation(
        &self,
        conversation: &Conversation,
        format: Option<ToolFormat>,
    ) -> Result<Option<Constraint>, BackendError> {
        match grammar::for_conversation(conversation, format)? {
            Some(grammar) => self.for_grammar(&grammar).map(Some),
            None => Ok(None),
        }
    }

    /// A fresh constraint following `grammar`, compiled once while it stays in the cache.
    pub fn for_grammar(&self, grammar: &Grammar) -> Result<Constraint, BackendError> {
        let slot = self.slot(&grammar.lark);
        let mut compiled = slot.lock().unwrap_or_else(|e| e.into_inner());
        let matcher = match &mut *compiled {
            Some(matcher) => matcher,
            empty => {
                let matcher = self.compile(&grammar.lark);
                empty.insert(matcher.map_err(|error| self.refusal(grammar, error))?)
            }
        };
        Ok(Constraint::new(matcher.deep_clone()))
    }

    /// The cache's slot for `lark`, made the most recent (a new, empty one if absent).
    fn slot(&self, lark: &str) -> CompiledSlot {
        let mut slots = self.compiled.lock().unwrap_or_else(|e| e.into_inner());
        let entry = match slots.iter().position(|(cached, _)| cached == lark) {
            Some(at) => slots.remove(at).expect("the position is in range"),
            None => (lark.to_owned(), CompiledSlot::default()),
        };
        let slot = Arc::clone(&entry.1);
        if slots.len() == CACHED_GRAMMARS {
            slots.pop_front();
        }
        slots.push_back(entry);
        slot
    }

    fn compile(&self, lark: &str) -> anyhow::Result<Matcher> {
        let parser = self
            .factory
            .create_parser(TopLevelGrammar::from_lark(lark.to_owned()))?;
        let matcher = Matcher::new(Ok(parser));
        match matcher.get_error() {
            Some(error) => Err(anyhow::anyhow!(error)),
            None => Ok(matcher),
        }
    }

    /// The error for a grammar that did not compile: the first of its schemas that does not
    /// compile alone names the field; a grammar of ours that fails is the server's fault.
    fn refusal(&self, grammar: &Grammar, error: anyhow::Error) -> BackendError {
        for schema in &grammar.schemas {
            if let Err(own) = self.compile(&schema.alone()) {
                return BackendError::InvalidField {
                    message: format!(
                        "the JSON schema in `{}` cannot be enforced: {own:#}",
                        schema.field
                    ),
                    param: schema.field.clone(),
                };
            }
        }
        BackendError::Internal(error.context(format!("compiling the grammar {}", grammar.lark)))
    }
}

#[cfg(test)]
mod tests;
