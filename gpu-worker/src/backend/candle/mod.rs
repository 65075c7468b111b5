//! The candle backend: real models on the CPU or a CUDA GPU.
//!
//! [`CandleBackend::load`] opens a GGUF file (qwen2, llama, qwen3, gemma3) or a Hugging Face
//! directory holding a llama-shaped model (IQuest-Coder-V1 among them), builds its tokenizer and
//! chat template, starts the model's engine thread and runs one short generation so the first
//! request does not pay for lazy initialisation. [`Backend::generate`] hands the request to the
//! engine, which runs every request of the worker in one forward pass per step (continuous
//! batching, `engine/`), and relays its text on the caller's thread.
//!
//! # Layout
//!
//! - [`load`]: checkpoints (GGUF, Hugging Face directories) to a model, tokenizer and chat
//!   template; the options and device strings.
//! - [`models`]: the architectures and their per-generation sessions (KV caches); the GGUF
//!   architecture table (`models/registry.rs`).
//! - [`kernels`]: CPU kernels for quantized products and the matrices that feed them.
//! - [`text`]: tokenizers, chat templates, streaming detokenization.
//! - `gguf_meta.rs`: typed GGUF metadata look-ups, below everything else.
//! - [`engine`]: the engine thread, its scheduling and KV budget, and a request's decoding.
//! - `sampler.rs`: picking the next token (among the ones a grammar allows, if any).
//! - `structured.rs`: the vocabulary and tool-call syntax constrained decoding needs.

mod engine;
mod gguf_meta;
mod kernels;
mod load;
mod models;
mod sampler;
mod structured;
#[cfg(test)]
mod test_gguf;
mod text;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use coder_nats::{Conversation, FinishReason, GenerationRequest, Prompt, SamplingParams, Usage};

pub use self::kernels::cpu_kernels::CpuKernels;
pub use self::kernels::qmatrix::PromptTiles;
pub use self::load::options::CandleOptions;

use self::engine::{Engine, EngineConfig};
use self::models::SessionPool;
use self::structured::Structured;
use self::text::chat::ChatTemplate;
use self::text::chat_input::ChatInput;
use self::text::fim::FimTokens;
use self::text::vocab::Vocab;
use super::constraint::Constraint;
use super::{Backend, BackendError, BackendInfo, Finished, Flow, StepObserver, TokenSink};
use crate::tool_calls::format::ToolFormat;

/// A model loaded with candle, ready to generate.
pub struct CandleBackend {
    info: BackendInfo,
    engine: Engine,
    vocab: Arc<Vocab>,
    chat: ChatTemplate,
    /// The grammar engine over this vocabulary, for answers with a required shape.
    structured: Structured,
    architecture: String,
    load_duration: Duration,
}

impl CandleBackend {
    /// Loads and warms up the model. Blocking and slow (seconds): call it off the async
    /// executor.
    pub fn load(options: &CandleOptions) -> anyhow::Result<Self> {
        let started = Instant::now();
        let mut progress = load::progress::LoadProgress::new(&options.model_name);
        let device = load::device::open(&options.device)?;
        // A `CODER_CPU_KERNELS` level this CPU lacks fails the load, before any weight is read
        // in a layout that level would have chosen.
        let cpu_kernels = match device.is_cpu() {
            true => CpuKernels::configured().map_err(anyhow::Error::msg)?.name(),
            false => "none",
        };
        let loaded = load::checkpoint(options, &device, &mut progress)?;

        let context_length = loaded.model.context_length();
        let batches = loaded.model.batches();
        let kv_per_position = loaded.model.kv_bytes_per_position();
        let config = EngineConfig {
            max_batch_tokens: options.max_batch_tokens.max(1),
            kv_cache_bytes: options.kv_cache_bytes.unwrap_or_else(|| {
                let per_sequence = (context_length as u64).saturating_mul(kv_per_position as u64);
                per_sequence.saturating_mul(options.max_sequences.max(1) as u64)
            }),
            prefix_cache_bytes: options.prefix_cache_bytes,
        };
        let vocab = Arc::new(loaded.vocab);
        progress.stage("indexing the vocabulary");
        let structured = Structured::new(&vocab, ToolFormat::detect(loaded.chat.source()));
        let engine = Engine::start(SessionPool::new(loaded.model), Arc::clone(&vocab), config)?;
        let mut backend = Self {
            info: BackendInfo {
                kind: "candle",
                device: load::device::name(&device),
                context_length: u32::try_from(context_length).unwrap_or(u32::MAX),
                cpu_kernels,
            },
            engine,
            vocab,
            chat: loaded.chat,
            structured,
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
            cpu_kernels = backend.info.cpu_kernels,
            context_length,
            batches,
            max_batch_tokens = config.max_batch_tokens,
            kv_cache_bytes = config.kv_cache_bytes,
            prefix_cache_bytes = config.prefix_cache_bytes,
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

    /// The token ids a prompt becomes: a text prompt as is (special-token spellings in it are
    /// control tokens, as llama.cpp's server reads a raw prompt), a chat through the model's
    /// template with only the template's markup as control tokens (a conversation with its
    /// offered tools and the calls and results in its history). An empty text prompt starts
    /// from the BOS token.
    ///
    /// A fill-in-the-middle prompt is built from the model's FIM tokens (`text/fim.rs`); a
    /// model without them refuses it, naming `suffix`.
    pub fn encode_prompt(&self, prompt: &Prompt) -> Result<Vec<u32>, BackendError> {
        let ids = match prompt {
            Prompt::Text(text) => self.vocab.encode(text, true)?,
            Prompt::Chat(messages) => {
                let input = ChatInput::from_messages(messages);
                text::chat_tokens::encode(&self.chat, &self.vocab, &input)?
            }
            Prompt::Infill(infill) => self.fim()?.encode(&self.vocab, infill)?,
            Prompt::Conversation(conversation) => {
                super::conversation::check_tools(self.structured.tool_format(), conversation)?;
                let input = ChatInput::from_conversation(conversation);
                text::chat_tokens::encode(&self.chat, &self.vocab, &input)?
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

    /// The model's FIM tokens, or the 400 a fill-in-the-middle request gets without them.
    fn fim(&self) -> Result<&FimTokens, BackendError> {
        self.vocab.fim().ok_or_else(|| BackendError::InvalidField {
            param: "suffix".into(),
            message: "this model has no fill-in-the-middle tokens: `suffix` cannot be used with it"
                .to_owned(),
        })
    }

    /// Generates for already tokenized input (the benchmark's entry point).
    pub fn generate_tokens(
        &self,
        prompt: &[u32],
        params: &SamplingParams,
        sink: &mut dyn TokenSink,
    ) -> Result<Finished, BackendError> {
        self.generate_ending(prompt, params, Vec::new(), None, sink)
    }

    /// As [`Self::generate_tokens`], with the answer shaped as `conversation` asks (its
    /// `response_format` and `tool_choice`, see [`super::constraint`]); its messages are not
    /// read: `prompt` is the input.
    pub fn generate_tokens_shaped(
        &self,
        prompt: &[u32],
        params: &SamplingParams,
        conversation: &Conversation,
        sink: &mut dyn TokenSink,
    ) -> Result<Finished, BackendError> {
        let shape = Prompt::Conversation(Conversation {
            messages: Vec::new(),
            ..conversation.clone()
        });
        let constraint = self.structured.constraint(&shape)?;
        self.generate_ending(prompt, params, Vec::new(), constraint, sink)
    }

    /// As [`Self::generate_tokens`], also ending at the tokens `ends`, and following
    /// `constraint`'s grammar when there is one.
    fn generate_ending(
        &self,
        prompt: &[u32],
        params: &SamplingParams,
        ends: Vec<u32>,
        constraint: Option<Constraint>,
        sink: &mut dyn TokenSink,
    ) -> Result<Finished, BackendError> {
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
                cached_tokens: 0,
            };
            return Ok(Finished {
                finish_reason: FinishReason::Length,
                usage,
            });
        }
        if sink.is_cancelled() {
            return Err(BackendError::Cancelled);
        }
        self.engine
            .generate(prompt.to_vec(), params, ends, constraint, sink)
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

    fn tool_format(&self) -> Option<ToolFormat> {
        self.structured.tool_format()
    }

    fn generate(
        &self,
        request: &GenerationRequest,
        sink: &mut dyn TokenSink,
    ) -> Result<Finished, BackendError> {
        let constraint = self.structured.constraint(&request.prompt)?;
        let prompt = self.encode_prompt(&request.prompt)?;
        let ends = match &request.prompt {
            Prompt::Infill(_) => self.fim()?.ends.clone(),
            _ => Vec::new(),
        };
        self.generate_ending(&prompt, &request.params, ends, constraint, sink)
    }

    fn waiting(&self) -> usize {
        self.engine.waiting()
    }

    fn observe_steps(&self, observer: Arc<dyn StepObserver>) {
        self.engine.observe(observer);
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
