//! Model backends: what turns a [`GenerationRequest`] into tokens.
//!
//! A backend is synchronous and blocking on purpose: the worker runs every generation on a
//! dedicated thread, never on the async executor, and receives tokens through a [`TokenSink`].
//! The sink is also the cancellation channel: a backend checks [`TokenSink::is_cancelled`] between
//! prompt chunks and stops as soon as [`TokenSink::token`] answers [`Flow::Stop`].
//!
//! Both backends shape an answer the same way when a request asks for JSON or a tool call:
//! through [`constraint`], which turns the request into a grammar and each step into a token
//! mask (the candle engine samples under it, the synthetic backend walks it).

pub mod candle;
pub mod chain_hash;
pub mod constraint;
pub mod conversation;
pub mod stop;
pub mod synthetic;

use std::borrow::Cow;

use coder_nats::{FinishReason, GenerationRequest, TokenLogprobs, Usage};

use crate::tool_calls::format::ToolFormat;

/// What the worker announces about a loaded backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendInfo {
    /// `candle` or `synthetic`.
    pub kind: &'static str,
    /// `cpu`, `cuda:0`, ...
    pub device: String,
    /// Longest prompt + completion the model takes, in tokens.
    pub context_length: u32,
    /// The instruction-set level of the CPU kernels (`avx512vnni`, `avxvnni`, `avx2`, `generic`), or
    /// `none` where no CPU kernel runs (a GPU, the synthetic backend).
    pub cpu_kernels: &'static str,
}

/// Receives a generation's output, one decoded piece of text at a time.
pub trait TokenSink {
    /// Called once per generated token (with its text, possibly empty while a multi-byte
    /// character or a possible stop string is held back). `Flow::Stop` ends generation.
    fn token(&mut self, text: &str) -> Flow;
    /// As [`TokenSink::token`], with the token's log probabilities when the request asked for
    /// them. A sink that has no use for them keeps the default, which drops them.
    fn generated(&mut self, text: &str, logprobs: Option<TokenLogprobs>) -> Flow {
        let _ = logprobs;
        self.token(text)
    }
    /// True once the request was cancelled; checked between prompt chunks.
    fn is_cancelled(&self) -> bool;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

/// How a generation that ran to its end finished: why it stopped and what it used. (The
/// gateway's `Generation` is something else: a request in flight, seen from the HTTP side.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    pub finish_reason: FinishReason,
    pub usage: Usage,
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The request cannot run on this model (too long for the context, ...): the client's fault.
    #[error("{0}")]
    InvalidRequest(String),
    /// As `InvalidRequest`, caused by one request field, which the gateway's 400 names.
    #[error("{message}")]
    InvalidField {
        /// The field's path as the client wrote it (`suffix`, `tools[2].function.parameters`).
        param: Cow<'static, str>,
        message: String,
    },
    /// The sink asked to stop.
    #[error("cancelled")]
    Cancelled,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Refuses a request whose prompt and completion together exceed the model's context, naming
/// both numbers (the gateway answers it with 400).
pub fn check_context(
    prompt_tokens: usize,
    max_tokens: u32,
    context: u32,
) -> Result<(), BackendError> {
    if prompt_tokens + max_tokens as usize > context as usize {
        return Err(BackendError::InvalidRequest(format!(
            "the prompt has {prompt_tokens} tokens and max_tokens is {max_tokens}, but the \
             model's context is {context} tokens"
        )));
    }
    Ok(())
}

/// A loaded model. Implementations are shared across slots (`Arc<dyn Backend>`) and must keep
/// per-generation state (KV caches, RNG) inside `generate`.
pub trait Backend: Send + Sync + 'static {
    fn info(&self) -> &BackendInfo;

    /// The syntax the model writes tool calls in, or `None` when its chat template shows no
    /// tools to it (requests offering tools are then refused).
    fn tool_format(&self) -> Option<ToolFormat>;

    /// Runs one generation to completion, blocking the calling thread.
    fn generate(
        &self,
        request: &GenerationRequest,
        sink: &mut dyn TokenSink,
    ) -> Result<Finished, BackendError>;

    /// Requests accepted but waiting inside the backend for memory: while any wait, the worker
    /// pulls no more, so the rest stays in the queue where every worker can take it.
    fn waiting(&self) -> usize {
        0
    }

    /// Sends each forward step's figures to `observer` (a backend without steps sends none).
    fn observe_steps(&self, _observer: std::sync::Arc<dyn StepObserver>) {}
}

/// One forward step's figures, for the worker's metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StepStats {
    /// Sequences fed in the step.
    pub sequences: usize,
    /// Prompt tokens fed.
    pub prefill_tokens: usize,
    /// Sampled tokens fed back (one per decoding sequence).
    pub decode_tokens: usize,
    /// Share of the KV budget reserved after the step, 0 to 1.
    pub kv_usage_ratio: f64,
    /// Prompt tokens looked up in the prefix cache since the last step.
    pub prefix_queried_tokens: u64,
    /// Of those, tokens found cached.
    pub prefix_hit_tokens: u64,
    /// Prefix cache entries evicted since the last step.
    pub prefix_evictions: u64,
    /// Bytes of KV the prefix cache holds.
    pub prefix_cache_bytes: u64,
}

/// A prefix cache's figures since it last reported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrefixCacheStats {
    /// Prompt tokens looked up.
    pub queried_tokens: u64,
    /// Of those, tokens found cached.
    pub hit_tokens: u64,
    /// Entries evicted.
    pub evictions: u64,
    /// Bytes the cache holds now.
    pub bytes: u64,
}

/// Receives [`StepStats`] from a backend's engine thread; must be quick.
pub trait StepObserver: Send + Sync {
    fn step(&self, stats: &StepStats);

    /// The prefix cache's figures of a backend without steps (the synthetic one, once per
    /// request); an engine's come with each [`StepStats`].
    fn prefix_cache(&self, _stats: &PrefixCacheStats) {}
}
