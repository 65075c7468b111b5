//! The candle backend's side of constrained decoding: its vocabulary as the grammar engine sees
//! it, and the call syntax its chat template teaches the model.

use std::time::Instant;

use coder_nats::Prompt;

use super::text::chat::ChatTemplate;
use super::text::vocab::Vocab;
use crate::backend::constraint::{token_env, Constraint, Constraints, TokenSpelling};
use crate::backend::BackendError;
use crate::tool_calls::format::ToolFormat;

/// What a model needs to constrain its answers.
pub struct Structured {
    constraints: Constraints,
    /// `None`: the template shows no tools, and a call cannot be required.
    tool_format: Option<ToolFormat>,
}

impl Structured {
    /// Indexes `vocab` for the grammar engine (about a second for 150k tokens).
    pub fn new(vocab: &Vocab, chat: &ChatTemplate) -> anyhow::Result<Self> {
        let started = Instant::now();
        let env = token_env(spellings(vocab), &vocab.eos_ids().collect::<Vec<_>>())?;
        let constraints = Constraints::new(&env)?;
        let [template, ..] = chat.own_text();
        let tool_format = ToolFormat::detect(template);
        tracing::debug!(
            seconds = started.elapsed().as_secs_f64(),
            ?tool_format,
            "grammar engine ready"
        );
        Ok(Self {
            constraints,
            tool_format,
        })
    }

    /// The constraint on `prompt`'s answer, if it asks for one.
    pub fn constraint(&self, prompt: &Prompt) -> Result<Option<Constraint>, BackendError> {
        match prompt {
            Prompt::Conversation(conversation) => self
                .constraints
                .for_conversation(conversation, self.tool_format),
            _ => Ok(None),
        }
    }
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
