//! The tokenizer and the model's special tokens: where generation starts and where it ends,
//! and which text may become control tokens (a template's markup) and which may not (what
//! users typed, see [`super::chat_tokens`]).

use std::borrow::Cow;
use std::collections::{BTreeSet, HashSet};
use std::ops::Range;
use std::path::Path;

use anyhow::Context;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::{OffsetReferential, OffsetType, Tokenizer};

use super::fim::{DeclaredFim, FimTokens};
use super::token_bytes::token_bytes;

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
    /// The same tokenizer with special tokens read as the text they are spelled with: for text
    /// that must never become control tokens.
    text_tokenizer: Tokenizer,
    /// The tokenizer's special (control) tokens; its other added tokens are ordinary text.
    special: HashSet<u32>,
    /// Sampling one of these ends the generation with finish reason `stop`.
    eos: BTreeSet<u32>,
    /// Fed as the whole prompt when a completion prompt is empty.
    bos: Option<u32>,
    /// Fill-in-the-middle tokens, when the model has them.
    fim: Option<FimTokens>,
    /// Whether tokens spell bytes the GPT-2 way (see [`super::token_bytes`]).
    byte_level: bool,
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
        let mut special = HashSet::new();
        for (id, token) in tokenizer.get_added_tokens_decoder() {
            if token.special {
                special.insert(id);
                if END_TOKEN_NAMES.contains(&token.content.as_str()) {
                    eos.insert(id);
                }
            }
        }
        let mut text_tokenizer = tokenizer.clone();
        text_tokenizer.set_encode_special_tokens(true);
        let byte_level = matches!(tokenizer.get_decoder(), Some(DecoderWrapper::ByteLevel(_)));
        Self {
            fim: FimTokens::find(&tokenizer, &DeclaredFim::default()),
            tokenizer,
            text_tokenizer,
            special,
            eos,
            bos,
            byte_level,
        }
    }

    /// Takes the FIM token ids a checkpoint declares over the ones found by name.
    pub fn with_declared_fim(mut self, declared: &DeclaredFim) -> Self {
        self.fim = FimTokens::find(&self.tokenizer, declared);
        self
    }

    /// The model's fill-in-the-middle tokens, if it has them.
    pub fn fim(&self) -> Option<&FimTokens> {
        self.fim.as_ref()
    }

    /// The exact bytes token `id` stands for (empty for an unknown id).
    pub fn token_bytes(&self, id: u32) -> Vec<u8> {
        match self.tokenizer.id_to_token(id) {
            Some(token) if self.special.contains(&id) => token.into_bytes(),
            Some(token) => token_bytes(&token, self.byte_level),
            None => Vec::new(),
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

    /// Token ids of `text` with every special token's spelling read as text: what a user typed
    /// never becomes a control token.
    pub fn encode_text(&self, text: &str) -> anyhow::Result<Vec<u32>> {
        let encoding = self
            .text_tokenizer
            .encode_fast(text, false)
            .map_err(anyhow::Error::msg)?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Where `text` holds special tokens, as the tokenizer finds them (its own matching, so
    /// with each token's `lstrip`/`rstrip`, and the whitespace those absorb, in the span): byte
    /// ranges in order, with the token's id.
    pub fn special_spans(&self, text: &str) -> Vec<(Range<usize>, u32)> {
        let tokenizer = &*self.tokenizer;
        let splits = tokenizer
            .get_added_vocabulary()
            .extract_and_normalize(tokenizer.get_normalizer(), text);
        splits
            .get_splits(OffsetReferential::Original, OffsetType::Byte)
            .into_iter()
            .filter_map(|(_, (start, end), tokens)| match tokens.as_deref() {
                Some([token]) if self.special.contains(&token.id) => Some((start..end, token.id)),
                _ => None,
            })
            .collect()
    }

    /// Token ids of `markup`, a rendered template: its special tokens become control tokens,
    /// and the text between them goes through `restore` (which gives back what the template's
    /// input held) and is encoded as text ([`Self::encode_text`]). Without `restore`, and for
    /// text without special-token spellings, this gives the ids `encode(markup, false)` does.
    pub fn encode_markup<'a>(
        &self,
        markup: &'a str,
        restore: impl Fn(&'a str) -> Cow<'a, str>,
    ) -> anyhow::Result<Vec<u32>> {
        let mut ids = Vec::new();
        let mut text_start = 0;
        for (span, id) in self.special_spans(markup) {
            ids.extend(self.encode_text(&restore(&markup[text_start..span.start]))?);
            ids.push(id);
            text_start = span.end;
        }
        ids.extend(self.encode_text(&restore(&markup[text_start..]))?);
        Ok(ids)
    }
}
