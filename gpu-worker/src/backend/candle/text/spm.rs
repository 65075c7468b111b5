//! The SentencePiece tokenizer a GGUF file describes (`tokenizer.ggml.model = "llama"`: Gemma,
//! Llama 2, Mistral), built as a `tokenizers` BPE. candle builds only the GPT-2 kind.
//!
//! The file carries each piece with a score but no merges. As llama.cpp's tokenizer merges the
//! adjacent pair whose joined piece scores highest, the merges are every split of every piece
//! into two pieces of the vocabulary, ranked by the joined piece's score (how Hugging Face
//! converts SentencePiece models too). Where two joined pieces score the same, llama.cpp takes
//! the leftmost pair in the text and this takes the earlier piece ids; files whose scores
//! differ, Gemma 3's among them, tokenize the same. Around it, as SentencePiece does: spaces become `▁`
//! (with a leading one where `add_space_prefix` says), text outside the vocabulary falls back
//! to byte pieces, control pieces are special tokens, user-defined pieces (Gemma's runs of
//! newlines, HTML tags) are matched whole in the input, and a BOS goes first where
//! `add_bos_token` says. Decoding keeps the mark of a first piece as a space: the worker decodes
//! generated tokens, which continue the prompt. Missing scores, types, BOS and unknown ids take
//! llama.cpp's defaults (0, normal, 1, 0).

use std::collections::HashMap;

use anyhow::{bail, Context};
use candle_core::quantized::gguf_file::{Content, Value};
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, DecoderWrapper, NormalizerWrapper, Tokenizer};

use crate::backend::candle::gguf_meta::u32_meta;

/// SentencePiece's word-boundary mark.
const SPACE: &str = "\u{2581}";

/// llama.cpp's `llama_token_type` values.
mod token_type {
    pub const UNKNOWN: i64 = 2;
    pub const CONTROL: i64 = 3;
    pub const USER_DEFINED: i64 = 4;
    pub const BYTE: i64 = 6;
}

/// Whether `content` describes a SentencePiece tokenizer.
pub fn describes(content: &Content) -> bool {
    matches!(
        content.metadata.get("tokenizer.ggml.model"),
        Some(Value::String(model)) if model == "llama"
    )
}

/// The tokenizer of a file for which [`describes`] holds.
pub fn from_gguf(content: &Content) -> anyhow::Result<Tokenizer> {
    let pieces = strings(content, "tokenizer.ggml.tokens")?;
    let scores = numbers(content, "tokenizer.ggml.scores", pieces.len(), 0.0, |v| {
        v.to_f32().ok().map(f64::from)
    })?;
    let types = numbers(content, "tokenizer.ggml.token_type", pieces.len(), 1, |v| {
        v.to_i32().ok().map(i64::from)
    })?;
    let flag = |key: &str, default: bool| match content.metadata.get(key) {
        Some(Value::Bool(flag)) => *flag,
        _ => default,
    };
    let id = |key: &str| u32_meta(content, key).map(|id| id as usize);

    let vocab: Vocab = pieces
        .iter()
        .enumerate()
        .map(|(i, piece)| (piece.clone(), i as u32))
        .collect();
    let mut builder = BPE::builder()
        .vocab_and_merges(vocab, merges(&pieces, &scores))
        .byte_fallback(types.contains(&token_type::BYTE))
        .fuse_unk(true);
    let unknown = id("tokenizer.ggml.unknown_token_id").unwrap_or(0);
    if let Some(unk) = pieces.get(unknown) {
        builder = builder.unk_token(unk.clone());
    }
    let bpe = builder.build().map_err(anyhow::Error::msg)?;
    let mut tokenizer = Tokenizer::new(bpe);

    let space_prefix = flag("tokenizer.ggml.add_space_prefix", true);
    let mut normalizers = vec![NormalizerWrapper::Replace(
        Replace::new(" ", SPACE).map_err(anyhow::Error::msg)?,
    )];
    let decoders = vec![
        DecoderWrapper::Replace(Replace::new(SPACE, " ").map_err(anyhow::Error::msg)?),
        DecoderWrapper::ByteFallback(ByteFallback::new()),
        DecoderWrapper::Fuse(Fuse::new()),
    ];
    if space_prefix {
        normalizers.insert(0, NormalizerWrapper::Prepend(Prepend::new(SPACE.into())));
    }
    tokenizer
        .with_normalizer(Some(NormalizerSequence::new(normalizers)))
        .map_err(anyhow::Error::msg)?;
    tokenizer.with_decoder(Some(DecoderSequence::new(decoders)));

    let (special, user_defined): (Vec<_>, Vec<_>) = pieces
        .iter()
        .zip(&types)
        .filter(|(_, t)| {
            matches!(
                **t,
                token_type::UNKNOWN | token_type::CONTROL | token_type::USER_DEFINED
            )
        })
        .partition(|(_, t)| **t != token_type::USER_DEFINED);
    let added = |list: Vec<(&String, &i64)>, special: bool| -> Vec<AddedToken> {
        list.into_iter()
            .map(|(piece, _)| AddedToken::from(piece.clone(), special).normalized(false))
            .collect()
    };
    tokenizer
        .add_special_tokens(added(special, true))
        .map_err(anyhow::Error::msg)?;
    tokenizer
        .add_tokens(added(user_defined, false))
        .map_err(anyhow::Error::msg)?;

    if flag("tokenizer.ggml.add_bos_token", true) {
        let bos_id = id("tokenizer.ggml.bos_token_id").unwrap_or(1);
        let bos = pieces
            .get(bos_id)
            .with_context(|| format!("BOS id {bos_id} is outside the vocabulary"))?;
        let template = TemplateProcessing::builder()
            .try_single(format!("{bos} $0"))
            .and_then(|t| t.try_pair(format!("{bos} $A {bos} $B")))
            .map_err(anyhow::Error::msg)?
            .special_tokens(vec![(bos.clone(), bos_id as u32)])
            .build()
            .map_err(anyhow::Error::msg)?;
        tokenizer.with_post_processor(Some(template));
    }
    Ok(tokenizer)
}

/// Every split of every piece into two pieces of the vocabulary (llama.cpp looks pieces up
/// whatever their type), the pair whose joined piece scores highest first (ties: the earlier
/// left piece, then the earlier right one).
fn merges(pieces: &[String], scores: &[f64]) -> Vec<(String, String)> {
    let ids: HashMap<&str, usize> = pieces
        .iter()
        .enumerate()
        .map(|(i, p)| (p.as_str(), i))
        .collect();
    let mut ranked: Vec<(f64, usize, usize)> = Vec::new();
    for (joined, piece) in pieces.iter().enumerate() {
        for (split, _) in piece.char_indices().skip(1) {
            let (left, right) = piece.split_at(split);
            if let (Some(&l), Some(&r)) = (ids.get(left), ids.get(right)) {
                ranked.push((scores[joined], l, r));
            }
        }
    }
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    ranked
        .into_iter()
        .map(|(_, l, r)| (pieces[l].clone(), pieces[r].clone()))
        .collect()
}

fn array<'a>(content: &'a Content, key: &str) -> anyhow::Result<&'a Vec<Value>> {
    match content.metadata.get(key) {
        Some(Value::Array(values)) => Ok(values),
        Some(other) => bail!("GGUF {key} is not an array: {other:?}"),
        None => bail!("GGUF has no {key}"),
    }
}

fn strings(content: &Content, key: &str) -> anyhow::Result<Vec<String>> {
    array(content, key)?
        .iter()
        .map(|v| match v {
            Value::String(s) => Ok(s.clone()),
            other => bail!("GGUF {key} holds a non-string: {other:?}"),
        })
        .collect()
}

/// `key`'s `len` numbers, each converted by `convert`; `default` for each where the file has
/// no `key`.
fn numbers<T: Clone>(
    content: &Content,
    key: &str,
    len: usize,
    default: T,
    convert: impl Fn(&Value) -> Option<T>,
) -> anyhow::Result<Vec<T>> {
    if !content.metadata.contains_key(key) {
        return Ok(vec![default; len]);
    }
    let values = array(content, key)?;
    if values.len() != len {
        bail!("GGUF {key} has {} entries for {len} tokens", values.len());
    }
    values
        .iter()
        .map(|v| convert(v).with_context(|| format!("GGUF {key} holds {v:?}")))
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::backend::candle::test_gguf::{gguf_bytes, read};

    const UNK: u32 = 0;
    const BOS: u32 = 1;
    const END_OF_TURN: u32 = 3;
    const NEWLINES: u32 = 4;
    /// Byte pieces `<0x00>`..`<0xFF>` take ids 5..261.
    const FIRST_BYTE: u32 = 5;

    /// Special, user-defined and byte pieces, then normal pieces with their scores.
    fn tokenizer(space_prefix: bool, add_bos: bool) -> Tokenizer {
        let bytes = gguf_bytes(&metadata(space_prefix, add_bos), &[]);
        let (content, _) = read(&bytes);
        assert!(describes(&content));
        from_gguf(&content).unwrap()
    }

    /// The metadata of a small SentencePiece vocabulary (see [`tokenizer`]).
    pub fn metadata(space_prefix: bool, add_bos: bool) -> Vec<(&'static str, Value)> {
        let mut pieces = vec![
            ("<unk>".to_owned(), 0.0, token_type::UNKNOWN),
            ("<s>".to_owned(), 0.0, token_type::CONTROL),
            ("</s>".to_owned(), 0.0, token_type::CONTROL),
            ("<end_of_turn>".to_owned(), 0.0, token_type::CONTROL),
            ("\n\n".to_owned(), 0.0, token_type::USER_DEFINED),
        ];
        pieces.extend((0..=255u8).map(|b| (format!("<0x{b:02X}>"), 0.0, token_type::BYTE)));
        for (piece, score) in [
            (SPACE, -3.0),
            ("a", -3.0),
            ("b", -3.0),
            ("c", -3.0),
            // "bc" outranks "ab": "abc" splits as a + bc.
            ("ab", -1.0),
            ("bc", -0.5),
            ("\u{2581}a", -0.1),
        ] {
            pieces.push((piece.to_owned(), score, 1));
        }
        let list =
            |f: &dyn Fn(&(String, f32, i64)) -> Value| Value::Array(pieces.iter().map(f).collect());
        vec![
            ("general.architecture", Value::String("gemma3".into())),
            ("tokenizer.ggml.model", Value::String("llama".into())),
            (
                "tokenizer.ggml.tokens",
                list(&|p| Value::String(p.0.clone())),
            ),
            ("tokenizer.ggml.scores", list(&|p| Value::F32(p.1))),
            (
                "tokenizer.ggml.token_type",
                list(&|p| Value::I32(p.2 as i32)),
            ),
            ("tokenizer.ggml.bos_token_id", Value::U32(BOS)),
            ("tokenizer.ggml.unknown_token_id", Value::U32(UNK)),
            ("tokenizer.ggml.add_bos_token", Value::Bool(add_bos)),
            ("tokenizer.ggml.add_space_prefix", Value::Bool(space_prefix)),
        ]
    }

    fn ids(tokenizer: &Tokenizer, text: &str, add_special: bool) -> Vec<u32> {
        let encoding = tokenizer.encode(text, add_special).unwrap();
        encoding.get_ids().to_vec()
    }

    fn id(tokenizer: &Tokenizer, piece: &str) -> u32 {
        tokenizer.token_to_id(piece).unwrap()
    }

    #[test]
    fn the_pair_whose_joined_piece_scores_highest_merges_first() {
        let t = tokenizer(false, false);

        assert_eq!(ids(&t, "abc", false), [id(&t, "a"), id(&t, "bc")]);
        assert_eq!(ids(&t, "ab", false), [id(&t, "ab")]);
    }

    #[test]
    fn spaces_become_the_boundary_mark_with_a_prefix_where_the_file_says() {
        let plain = tokenizer(false, false);
        let prefixed = tokenizer(true, false);

        let (a, b, space) = (id(&plain, "a"), id(&plain, "b"), id(&plain, SPACE));
        assert_eq!(ids(&plain, "a b", false), [a, space, b]);
        let space_a = id(&prefixed, "\u{2581}a");
        assert_eq!(ids(&prefixed, "a b", false), [space_a, space, b]);
        // Generated pieces continue a prompt: a first mark stays a space.
        assert_eq!(prefixed.decode(&[space_a, space, b], true).unwrap(), " a b");
        assert_eq!(plain.decode(&[space, b], true).unwrap(), " b");
    }

    #[test]
    fn text_outside_the_vocabulary_falls_back_to_bytes_and_decodes_back() {
        let t = tokenizer(false, false);

        let got = ids(&t, "é", false);

        assert_eq!(got, [FIRST_BYTE + 0xC3, FIRST_BYTE + 0xA9]);
        assert_eq!(t.decode(&got, true).unwrap(), "é");
    }

    #[test]
    fn control_and_user_defined_pieces_are_matched_whole() {
        let t = tokenizer(false, false);

        let got = ids(&t, "a\n\nb<end_of_turn>", false);

        assert_eq!(got, [id(&t, "a"), NEWLINES, id(&t, "b"), END_OF_TURN]);
        // User-defined pieces are text; control pieces are special, dropped when skipping.
        assert_eq!(t.decode(&got, true).unwrap(), "a\n\nb");
        let special = t.get_added_tokens_decoder();
        assert!(special[&END_OF_TURN].special && !special[&NEWLINES].special);
    }

    #[test]
    fn a_bos_goes_first_where_the_file_says() {
        let with = tokenizer(false, true);
        let without = tokenizer(false, false);

        assert_eq!(ids(&with, "a", true), [BOS, id(&with, "a")]);
        assert_eq!(ids(&with, "a", false), [id(&with, "a")]);
        assert_eq!(ids(&without, "a", true), [id(&without, "a")]);
    }
}
