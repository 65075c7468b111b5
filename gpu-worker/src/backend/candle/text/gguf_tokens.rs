//! The tokenizer candle builds from GGUF metadata, with the file's user-defined tokens as
//! ordinary text.
//!
//! candle marks every token whose GGUF type is neither normal nor byte as special. Qwen2.5's
//! `<tool_call>` and `</tool_call>` are user-defined (type 4): in its Hugging Face
//! `tokenizer.json` they are added tokens with `special: false`, matched as one token wherever
//! they appear and decoded as text. Marked special, they would vanish from the decoded output
//! (the worker decodes without special tokens) and no tool call could be read from it, and a
//! template's `<tool_call>` in a conversation's history would be a control token where Hugging
//! Face has text. Control tokens (type 3: `<|im_end|>`, ...) stay special.

use std::collections::HashSet;

use anyhow::Context;
use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::tokenizer::TokenizerFromGguf;
use tokenizers::Tokenizer;

/// GGUF's `LLAMA_TOKEN_TYPE_USER_DEFINED`.
const USER_DEFINED: i32 = 4;

/// The GGUF file's tokenizer, its user-defined tokens not special.
pub fn from_gguf(content: &Content) -> anyhow::Result<Tokenizer> {
    let tokenizer = Tokenizer::from_gguf(content).map_err(anyhow::Error::new)?;
    let user_defined = user_defined_ids(content);
    if user_defined.is_empty() {
        return Ok(tokenizer);
    }
    not_special(&tokenizer, &user_defined)
}

fn user_defined_ids(content: &Content) -> HashSet<u64> {
    let Some(Value::Array(types)) = content.metadata.get("tokenizer.ggml.token_type") else {
        return HashSet::new();
    };
    types
        .iter()
        .enumerate()
        .filter(|(_, kind)| matches!(kind, Value::I32(USER_DEFINED)))
        .map(|(id, _)| id as u64)
        .collect()
}

/// `tokenizer` with the added tokens `ids` as `special: false` (tokenizers has no setter: the
/// flag is changed in its serialized form).
fn not_special(tokenizer: &Tokenizer, ids: &HashSet<u64>) -> anyhow::Result<Tokenizer> {
    let serialized = tokenizer.to_string(false).map_err(anyhow::Error::msg)?;
    let mut json: serde_json::Value =
        serde_json::from_str(&serialized).context("reading the serialized tokenizer")?;
    let added = json["added_tokens"]
        .as_array_mut()
        .context("the serialized tokenizer has no added tokens")?;
    for token in added {
        if token["id"].as_u64().is_some_and(|id| ids.contains(&id)) {
            token["special"] = serde_json::Value::Bool(false);
        }
    }
    Tokenizer::from_bytes(json.to_string().as_bytes()).map_err(anyhow::Error::msg)
}

#[cfg(test)]
mod tests {
    use super::super::detokenize::IncrementalDecoder;
    use super::super::qwen_tokenizer;
    use super::super::vocab::Vocab;

    #[test]
    fn tool_call_markup_is_text_and_chat_markup_is_not() {
        let Some(tokenizer) = qwen_tokenizer() else {
            return;
        };
        let vocab = Vocab::new(tokenizer.clone(), [], None);
        let markup = "<tool_call>\n{}\n</tool_call><|im_end|>";
        let ids = vocab.encode(markup, false).unwrap();
        assert_eq!(ids[0], 151657, "<tool_call> is one token");
        assert_eq!(
            vocab.encode_text("<tool_call>").unwrap(),
            [151657],
            "an added text token stays one token in text"
        );
        assert_eq!(
            vocab.special_spans(markup).len(),
            1,
            "only <|im_end|> is a control token"
        );

        let mut decoder = IncrementalDecoder::new(&tokenizer);
        let mut out = String::new();
        for id in ids {
            out.push_str(&decoder.push(id).unwrap());
        }
        out.push_str(&decoder.flush().unwrap());
        assert_eq!(out, "<tool_call>\n{}\n</tool_call>");
    }
}
