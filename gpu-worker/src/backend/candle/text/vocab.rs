//! The tokenizer and the model's special tokens: where generation starts and where it ends.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::Context;
use tokenizers::Tokenizer;

/// Special tokens that end a turn or a document in the common model families. A token with one
/// of these names ends generation when the tokenizer knows it as a special token, on top of
/// the ids the checkpoint declares (GGUF files often name only one, e.g. Qwen's `<|im_end|>`
/// while a completion may also end at `<|endoftext|>`).
const END_TOKEN_NAMES: &[&str] = &[
    "<|im_end|>",
    "<|endoftext|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|end_of_text|>",
    "<end_of_turn>",
    "<|end|>",
    "<|EOT|>",
    "<eos>",
    "</s>",
];

/// A tokenizer plus the ids that matter to generation.
pub struct Vocab {
    tokenizer: Tokenizer,
    /// Sampling one of these ends the generation with finish reason `stop`.
    eos: BTreeSet<u32>,
    /// Fed as the whole prompt when a completion prompt is empty.
    bos: Option<u32>,
}

impl Vocab {
    /// `declared_eos` are the checkpoint's own end ids; well-known end-of-turn tokens the
    /// tokenizer marks special are added to them.
    pub fn new(
        tokenizer: Tokenizer,
        declared_eos: impl IntoIterator<Item = u32>,
        bos: Option<u32>,
    ) -> Self {
        let mut eos: BTreeSet<u32> = declared_eos.into_iter().collect();
        for (id, token) in tokenizer.get_added_tokens_decoder() {
            if token.special && END_TOKEN_NAMES.contains(&token.content.as_str()) {
                eos.insert(id);
            }
        }
        Self {
            tokenizer,
            eos,
            bos,
        }
    }

    pub fn from_file(path: &Path) -> anyhow::Result<Tokenizer> {
        Tokenizer::from_file(path)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("reading tokenizer {}", path.display()))
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    pub fn is_eos(&self, id: u32) -> bool {
        self.eos.contains(&id)
    }

    pub fn eos_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.eos.iter().copied()
    }

    pub fn bos(&self) -> Option<u32> {
        self.bos
    }

    /// The text of a token id, as the chat template's `bos_token`/`eos_token` want it.
    pub fn token_text(&self, id: u32) -> Option<String> {
        self.tokenizer.id_to_token(id)
    }

    /// Token ids of `text`. `add_special` lets the tokenizer add what it adds to a plain
    /// sequence (a BOS for llama-style tokenizers); a rendered chat template already has them.
    pub fn encode(&self, text: &str, add_special: bool) -> anyhow::Result<Vec<u32>> {
        let encoding = self
            .tokenizer
            .encode_fast(text, add_special)
            .map_err(anyhow::Error::msg)?;
        Ok(encoding.get_ids().to_vec())
    }
}
