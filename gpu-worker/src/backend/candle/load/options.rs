//! What `CandleBackend::load` needs to know.

use std::path::PathBuf;

use crate::backend::candle::kernels::qmatrix::PromptTiles;

/// Options for [`CandleBackend::load`](crate::backend::candle::CandleBackend::load).
#[derive(Debug, Clone)]
pub struct CandleOptions {
    /// A `.gguf` file, or a Hugging Face directory (`config.json`, `*.safetensors`,
    /// `tokenizer.json`).
    pub model_path: PathBuf,
    /// `cpu`, `cuda` or `cuda:N` (CUDA needs the crate's `cuda` feature).
    pub device: String,
    /// A `tokenizer.json` to use instead of the one beside or inside the model.
    pub tokenizer_path: Option<PathBuf>,
    /// The name the model is served under; only used in logs.
    pub model_name: String,
    /// Tokens per forward step, every running sequence's together: a decoding sequence feeds
    /// one, prompts share the rest (cut into chunks), so it bounds how long a step, and so each
    /// decoding sequence's next token, waits on prompts.
    pub max_batch_tokens: usize,
    /// Sequences that run at once (the worker's `--concurrency`): sizes the default KV budget.
    pub max_sequences: usize,
    /// KV memory the running sequences may reserve; by default every sequence's full context.
    pub kv_cache_bytes: Option<u64>,
    /// KV memory finished sequences' prefixes may keep for later prompts (0: none).
    pub prefix_cache_bytes: u64,
    /// CPU, GGUF qwen2 and gemma3: keep the tiles candle builds for prompt products of matrices
    /// without a kernel of this crate's (faster prompts for those, twice their memory) rather
    /// than rebuilding them per prompt chunk.
    pub prompt_tiles: PromptTiles,
}

impl CandleOptions {
    /// The prefix cache's budget unless told otherwise: 1 GiB.
    pub const DEFAULT_PREFIX_CACHE_BYTES: u64 = 1 << 30;

    /// Tokens per forward step unless told otherwise.
    pub const DEFAULT_MAX_BATCH_TOKENS: usize = 256;

    pub fn new(model_path: impl Into<PathBuf>, model_name: impl Into<String>) -> Self {
        Self {
            model_path: model_path.into(),
            device: "cpu".to_owned(),
            tokenizer_path: None,
            model_name: model_name.into(),
            max_batch_tokens: Self::DEFAULT_MAX_BATCH_TOKENS,
            max_sequences: 1,
            kv_cache_bytes: None,
            prefix_cache_bytes: Self::DEFAULT_PREFIX_CACHE_BYTES,
            prompt_tiles: PromptTiles::default(),
        }
    }

    pub fn with_device(mut self, device: impl Into<String>) -> Self {
        self.device = device.into();
        self
    }

    pub fn with_tokenizer(mut self, tokenizer_path: impl Into<PathBuf>) -> Self {
        self.tokenizer_path = Some(tokenizer_path.into());
        self
    }
}
