//! Text in and out: the tokenizer, chat templates and streaming detokenization.
//!
//! # Layout
//!
//! - [`vocab`]: the tokenizer with the model's BOS and end-of-generation tokens.
//! - [`gguf_tokens`]: the tokenizer a GGUF file describes, its user-defined tokens as text.
//! - [`spm`]: the SentencePiece tokenizers GGUF files describe (Gemma, Llama 2).
//! - [`chat`]: the model's chat template, rendered with minijinja.
//! - [`chat_input`]: the `messages` and `tools` a template reads, in Hugging Face's shapes.
//! - [`python_json`]: the template's `tojson`, written as Python's `json.dumps` writes.
//! - [`chat_tokens`]: a chat's token ids, with only the template's markup as control tokens.
//! - [`detokenize`]: token ids to text as they stream, never splitting a character.
//! - [`fim`]: the model's fill-in-the-middle tokens and the prompt they build.
//! - [`token_bytes`]: a token's exact bytes, for log probabilities.

pub mod chat;
pub mod chat_input;
pub mod chat_tokens;
#[cfg(test)]
mod chat_tools_tests;
pub mod detokenize;
pub mod fim;
pub mod gguf_tokens;
pub mod python_json;
pub mod spm;
pub mod token_bytes;
pub mod vocab;

/// The default model's tokenizer, read from its GGUF file, for tests; `None` (with a notice)
/// when the model was not fetched.
#[cfg(test)]
pub fn qwen_tokenizer() -> Option<tokenizers::Tokenizer> {
    use candle_core::quantized::gguf_file::Content;

    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf");
    if !path.is_file() {
        eprintln!("NOTICE: {} is absent; skipping", path.display());
        return None;
    }
    let mut file = std::fs::File::open(path).unwrap();
    Some(gguf_tokens::from_gguf(&Content::read(&mut file).unwrap()).unwrap())
}
