//! The candle backend's side of constrained decoding: its vocabulary as the grammar engine sees
//! it, and the call syntax its chat template teaches the model.

use std::time::Instant;

use coder_nats::{Conversation, Prompt};

use super::text::vocab::Vocab;
use crate::backend::constraint::{token_env, Constraint, Constraints, TokenSpelling};
use crate::backend::BackendError;
use crate::tool_calls::format::ToolFormat;

/// What a model needs to constrain its answers.
pub struct Structured {
    /// `None` when the grammar engine cannot take the vocabulary (no end-of-turn token): the
    /// model still serves free text, and refuses what would need a grammar.
    constraints: Option<Constraints>,
    /// `None`: the template shows no tools, and a call cannot be required.
    tool_format: Option<ToolFormat>,
}

impl Structured {
    /// Indexes `vocab` for the grammar engine (about half a second for 150k tokens); the model
    /// writes its calls in `tool_format`.
    pub fn new(vocab: &Vocab, tool_format: Option<ToolFormat>) -> Self {
        let started = Instant::now();
        let ends: Vec<u32> = vocab.eos_ids().collect();
        let constraints = token_env(spellings(vocab), &ends)
            .and_then(|env| Constraints::new(&env))
            .inspect_err(|error| {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "no grammar engine for this vocabulary: JSON answers and required tool \
                     calls will be refused"
                );
            })
            .ok();
        tracing::debug!(
            seconds = started.elapsed().as_secs_f64(),
            ?tool_format,
            "grammar engine ready"
        );
        Self {
            constraints,
            tool_format,
        }
    }

    /// The syntax the model writes its calls in, from its chat template.
    pub fn tool_format(&self) -> Option<ToolFormat> {
        self.tool_format
    }

    /// The constraint on `prompt`'s answer, if it asks for one.
    pub fn constraint(&self, prompt: &Prompt) -> Result<Option<Constraint>, BackendError> {
        let Prompt::Conversation(conversation) = prompt else {
            return Ok(None);
        };
        match &self.constraints {
            Some(constraints) => constraints.for_conversation(conversation, self.tool_format),
            None => match unshaped_refusal(conversation) {
                Some(refusal) => Err(refusal),
                None => Ok(None),
            },
        }
    }
}

/// Without a grammar engine: the error for a conversation that needs one (a JSON answer, a
/// required call), naming the field that asks.
fn unshaped_refusal(conversation: &Conversation) -> Option<BackendError> {
    let param = match (
        conversation.response_format.is_text(),
        conversation.requires_a_call(),
    ) {
        (false, _) => "response_format",
        (true, true) => "tool_choice",
        (true, false) => return None,
    };
    Some(BackendError::InvalidField {
        param: param.into(),
        message: format!(
            "this model cannot constrain its output: `{param}` cannot be used with it"
        ),
    })
}

/// Every token id's bytes, up to the highest id the tokenizer knows. A special token whose text
/// the streamed output leaves out (the detokenizer skips special tokens) is a control token: a
/// grammar never spells text with it. One whose text the output keeps is text like any other
/// (whether Qwen's `<tool_call>` is one depends on how the detokenizer treats it).
fn spellings(vocab: &Vocab) -> Vec<TokenSpelling> {
    let tokenizer = vocab.tokenizer();
    let size = tokenizer
        .get_vocab(true)
        .values()
        .max()
        .map_or(0, |&id| id as usize + 1);
    let added = tokenizer.get_added_tokens_decoder();
    (0..size as u32)
        .map(|id| TokenSpelling {
            bytes: vocab.token_bytes(id),
            control: added.get(&id).is_some_and(|token| {
                token.special && tokenizer.decode(&[id], true).is_ok_and(|t| t.is_empty())
            }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use coder_nats::{ResponseFormat, Tool, ToolChoice};

    #[test]
    fn without_a_grammar_engine_only_what_needs_one_is_refused() {
        let tool = Tool {
            name: "f".into(),
            description: None,
            parameters: None,
            strict: false,
        };
        let auto = Conversation {
            tools: vec![tool],
            ..Conversation::plain(Vec::new())
        };
        let field = |conversation: &Conversation| match unshaped_refusal(conversation) {
            Some(BackendError::InvalidField { param, .. }) => Some(param.into_owned()),
            _ => None,
        };

        assert_eq!(field(&auto), None, "calls parsed from free text");
        let required = Conversation {
            tool_choice: ToolChoice::Required,
            ..auto.clone()
        };
        assert_eq!(field(&required).as_deref(), Some("tool_choice"));
        let json = Conversation {
            response_format: ResponseFormat::JsonObject,
            ..auto
        };
        assert_eq!(field(&json).as_deref(), Some("response_format"));
    }
}
