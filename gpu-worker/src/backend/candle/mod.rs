//! The candle backend: real models on the CPU or a CUDA GPU.
//!
//! [`CandleBackend::load`] opens a GGUF file (qwen2, llama, qwen3, gemma3) or a Hugging Face
//! directory holding a llama-shaped model (IQuest-Coder-V1 among them), builds its tokenizer and
//! chat template, and runs one short generation so the first request does not pay for lazy
//! initialisation. [`Backend::generate`] then runs on the caller's thread, one KV cache per
//! generation, so one backend serves every slot of a worker.
//!
//! # Layout
//!
//! - `options.rs`: [`CandleOptions`], what to load and where.
//! - `device.rs`: `cpu` / `cuda:N` strings to candle devices.
//! - `gguf.rs`, `hf.rs`, `hf_config.rs`: the two checkpoint formats and which configs run.
//! - `qwen2.rs` (the default model's architecture) and `gemma3.rs`, written here for speed and
//!   memory (and, for gemma3, prompts in chunks), over `linear.rs` and `qmatrix.rs` (quantized
//!   weights held once, in their GGUF blocks), `rotary.rs` and `attention.rs` (the
//!   per-generation KV cache and its attention kernels, sliding windows included; on the CPU
//!   the cache is a `kv_buffer.rs`, which drops what a sliding window no longer sees).
//! - `x8.rs`, `q4k_x8.rs`, `q6k.rs`, `block32.rs`: AVX-512 VNNI kernels for Q4_K, Q6_K, Q5_0
//!   and Q8_0 products.
//! - `model.rs`: weights shared across generations, a session (KV cache) per generation;
//!   `network.rs` puts the models written here behind it.
//! - `vocab.rs`, `chat.rs`, `detokenize.rs`: tokens, chat templates, streaming text;
//!   `spm.rs` builds the SentencePiece tokenizers GGUF files describe (Gemma, Llama 2).
//! - `sampler.rs`, `generate.rs`: the decoding loop.
//! - `progress.rs`: loading progress in the log and on a terminal.

mod attention;
mod block32;
mod chat;
mod detokenize;
mod device;
mod gemma3;
mod generate;
mod gguf;
mod hf;
mod hf_config;
mod huge_pages;
mod kv_buffer;
mod linear;
mod model;
mod network;
mod options;
mod progress;
mod q4k_x8;
mod q6k;
mod qmatrix;
mod qwen2;
mod rotary;
mod sampler;
mod spm;
#[cfg(test)]
mod test_gguf;
mod vocab;
mod x8;

use std::time::{Duration, Instant};

use anyhow::Context;
use coder_nats::{FinishReason, GenerationRequest, Prompt, SamplingParams, Usage};

pub use options::{CandleOptions, PromptTiles};

use self::chat::ChatTemplate;
use self::model::{Model, SessionPool};
use self::vocab::Vocab;
use super::{Backend, BackendError, BackendInfo, Flow, Generation, TokenSink};

/// What a checkpoint loader produces.
struct Loaded {
    model: Box<dyn Model>,
    vocab: Vocab,
    chat: ChatTemplate,
    /// `general.architecture` or `model_type`, for logs.
    architecture: String,
}

/// A model loaded with candle, ready to generate.
pub struct CandleBackend {
    info: BackendInfo,
    sessions: SessionPool,
    vocab: Vocab,
    chat: ChatTemplate,
    prefill_chunk: usize,
    architecture: String,
    load_duration: Duration,
}

impl CandleBackend {
    /// Loads and warms up the model. Blocking and slow (seconds): call it off the async
    /// executor.
    pub fn load(options: &CandleOptions) -> anyhow::Result<Self> {
        let started = Instant::now();
        let mut progress = progress::LoadProgress::new(&options.model_name);
        let device = device::open(&options.device)?;
        let path = &options.model_path;
        anyhow::ensure!(
            path.exists(),
            "model path {} does not exist",
            path.display()
        );
        let loaded = if path.is_dir() {
            hf::load(options, &device, &mut progress)
        } else {
            gguf::load(options, &device, &mut progress)
        }
        .with_context(|| format!("loading {}", path.display()))?;

        let context_length = loaded.model.context_length();
        let mut backend = Self {
            info: BackendInfo {
                kind: "candle",
                device: device::name(&device),
                context_length: u32::try_from(context_length).unwrap_or(u32::MAX),
            },
            sessions: SessionPool::new(loaded.model),
            vocab: loaded.vocab,
            chat: loaded.chat,
            prefill_chunk: options.prefill_chunk.max(1),
            architecture: loaded.architecture,
            load_duration: Duration::ZERO,
        };
        progress.stage("warming up");
        backend.warm_up().context("warming up the model")?;
        backend.load_duration = started.elapsed();
        tracing::info!(
            model = %options.model_name,
            architecture = %backend.architecture,
            device = %backend.info.device,
            context_length,
            eos = ?backend.vocab.eos_ids().collect::<Vec<_>>(),
            seconds = backend.load_duration.as_secs_f64(),
            "model loaded"
        );
        Ok(backend)
    }

    /// Wall time of [`CandleBackend::load`], warm-up included.
    pub fn load_duration(&self) -> Duration {
        self.load_duration
    }

    /// The checkpoint's architecture (`qwen2`, `llama`, `iquestcoder`, ...).
    pub fn architecture(&self) -> &str {
        &self.architecture
    }

    /// The token ids a prompt becomes: a text prompt as is, a chat through the model's
    /// template. An empty text prompt starts from the BOS token.
    pub fn encode_prompt(&self, prompt: &Prompt) -> Result<Vec<u32>, BackendError> {
        let ids = match prompt {
            Prompt::Text(text) => self.vocab.encode(text, true)?,
            Prompt::Chat(messages) => {
                let text = self.chat.render(messages).map_err(|e| {
                    BackendError::InvalidRequest(format!(
                        "the model's chat template refused the messages: {e:#}"
                    ))
                })?;
                self.vocab.encode(&text, false)?
            }
        };
        match (ids.is_empty(), self.vocab.bos()) {
            (false, _) => Ok(ids),
            (true, Some(bos)) => Ok(vec![bos]),
            (true, None) => Err(BackendError::InvalidRequest(
                "the prompt is empty".to_owned(),
            )),
        }
    }

    /// Generates for already tokenized input (the benchmark's entry point).
    pub fn generate_tokens(
        &self,
        prompt: &[u32],
        params: &SamplingParams,
        sink: &mut dyn TokenSink,
    ) -> Result<Generation, BackendError> {
        super::check_context(prompt.len(), params.max_tokens, self.info.context_length)?;
        let max_tokens = params.max_tokens as usize;
        if prompt.is_empty() {
            return Err(BackendError::InvalidRequest(
                "the prompt is empty".to_owned(),
            ));
        }
        if max_tokens == 0 {
            let usage = Usage {
                prompt_tokens: prompt.len() as u32,
                completion_tokens: 0,
            };
            return Ok(Generation {
                finish_reason: FinishReason::Length,
                usage,
            });
        }
        if sink.is_cancelled() {
            return Err(BackendError::Cancelled);
        }
        let job = generate::Job {
            vocab: &self.vocab,
            prompt,
            params,
            chunk: self.prefill_chunk,
        };
        let mut session = self.sessions.take(prompt.len() + max_tokens)?;
        let result = generate::run(&job, session.as_mut(), sink);
        self.sessions.put_back(session);
        result
    }

    /// One short prompt and one decode step: candle repacks quantized weights for its fast
    /// kernels on first use, which would otherwise land on the first request.
    fn warm_up(&self) -> Result<(), BackendError> {
        let prompt =
            self.encode_prompt(&Prompt::Text("def hello_world():\n    print(".to_owned()))?;
        let params = SamplingParams {
            max_tokens: 2,
            temperature: 0.0,
            ..Default::default()
        };
        self.generate_tokens(&prompt, &params, &mut Discard)?;
        Ok(())
    }
}

impl Backend for CandleBackend {
    fn info(&self) -> &BackendInfo {
        &self.info
    }

    fn generate(
        &self,
        request: &GenerationRequest,
        sink: &mut dyn TokenSink,
    ) -> Result<Generation, BackendError> {
        let prompt = self.encode_prompt(&request.prompt)?;
        self.generate_tokens(&prompt, &request.params, sink)
    }
}

/// A sink that keeps nothing, for the warm-up.
struct Discard;

impl TokenSink for Discard {
    fn token(&mut self, _text: &str) -> Flow {
        Flow::Continue
    }
    fn is_cancelled(&self) -> bool {
        false
    }
}
