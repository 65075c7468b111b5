//! Helpers shared by the candle backend's test files: a word-level tokenizer, deterministic
//! noise for weights, the default model, a recording sink and request builders.

#![allow(dead_code)] // each test file uses its own subset

mod noise;

#[allow(unused_imports)] // only the files that build weights use it
pub use noise::noise;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use coder_nats::{GenerationRequest, Prompt, SamplingParams, TokenLogprobs};
use gpu_worker::backend::candle::{CandleBackend, CandleOptions};
use gpu_worker::backend::{Backend, Finished, Flow, TokenSink};
use tokenizers::models::wordlevel::WordLevel;
use tokenizers::pre_tokenizers::whitespace::Whitespace;
use tokenizers::{AddedToken, Tokenizer};

pub const BOS: u32 = 1;
pub const EOS: u32 = 2;

/// Writes `tokenizer.json` (and the `vocab.json` it is built from) into `dir`: words `<unk>`,
/// `<s>`, `</s>`, then `w3` ... `w{vocab-1}`, each id equal to the number in its word.
pub fn write_tokenizer(dir: &Path, vocab_size: usize) {
    let mut vocab: HashMap<String, u32> = HashMap::new();
    for id in 0..vocab_size as u32 {
        let word = match id {
            0 => "<unk>".to_owned(),
            1 => "<s>".to_owned(),
            2 => "</s>".to_owned(),
            n => format!("w{n}"),
        };
        vocab.insert(word, id);
    }
    let vocab_file = dir.join("vocab.json");
    std::fs::write(&vocab_file, serde_json::to_string(&vocab).unwrap()).unwrap();
    let model = WordLevel::builder()
        .files(vocab_file.to_string_lossy().into_owned())
        .unk_token("<unk>".to_owned())
        .build()
        .unwrap();
    let mut tokenizer = Tokenizer::new(model);
    tokenizer.with_pre_tokenizer(Some(Whitespace));
    let specials = ["<unk>", "<s>", "</s>"].map(|t| AddedToken::from(t.to_owned(), true));
    tokenizer.add_special_tokens(specials).unwrap();
    tokenizer.save(dir.join("tokenizer.json"), false).unwrap();
}

/// The default model's file, Qwen2.5-Coder-1.5B-Instruct Q4_K_M (`scripts/fetch-model.sh`).
pub fn default_model_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../models")
        .join("qwen2.5-coder-1.5b-instruct-q4_k_m.gguf")
}

/// The default model, loaded with `max_sequences` in a batch (`None`: the backend's default),
/// or `None` with a notice when the file was not fetched (the test then passes without it).
pub fn load_default_model(max_sequences: Option<usize>) -> Option<CandleBackend> {
    let path = default_model_path();
    if !path.is_file() {
        eprintln!(
            "NOTICE: {} is absent; skipping default-model tests (run scripts/fetch-model.sh)",
            path.display()
        );
        return None;
    }
    let mut options = CandleOptions::new(path, "qwen2.5-coder-1.5b-instruct");
    if let Some(max_sequences) = max_sequences {
        options.max_sequences = max_sequences;
    }
    Some(CandleBackend::load(&options).expect("the default model loads"))
}

/// Records what the backend streams; can ask to stop after some tokens.
#[derive(Default)]
pub struct Recorder {
    pub pieces: Vec<String>,
    /// Each token's log probabilities, when the request asked for them.
    pub logprobs: Vec<TokenLogprobs>,
    pub stop_after: Option<usize>,
    pub cancelled: bool,
}

impl Recorder {
    pub fn text(&self) -> String {
        self.pieces.concat()
    }
}

impl TokenSink for Recorder {
    fn token(&mut self, text: &str) -> Flow {
        self.pieces.push(text.to_owned());
        match self.stop_after {
            Some(n) if self.pieces.len() >= n => Flow::Stop,
            _ => Flow::Continue,
        }
    }
    fn generated(&mut self, text: &str, logprobs: Option<TokenLogprobs>) -> Flow {
        self.logprobs.extend(logprobs);
        self.token(text)
    }
    fn is_cancelled(&self) -> bool {
        self.cancelled
    }
}

pub fn request(prompt: Prompt, params: SamplingParams) -> GenerationRequest {
    GenerationRequest {
        id: uuid::Uuid::now_v7(),
        model: "tiny".into(),
        prompt,
        params,
    }
}

pub fn greedy(max_tokens: u32) -> SamplingParams {
    SamplingParams {
        max_tokens,
        temperature: 0.0,
        ..Default::default()
    }
}

pub fn text(words: &str) -> Prompt {
    Prompt::Text(words.to_owned())
}

pub fn run(backend: &CandleBackend, req: &GenerationRequest) -> (Finished, Recorder) {
    let mut sink = Recorder::default();
    let generation = backend.generate(req, &mut sink).unwrap();
    (generation, sink)
}
