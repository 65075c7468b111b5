//! The loaded network, split into weights shared by every generation and a per-generation
//! [`Session`] that owns the KV cache.
//!
//! The backend is shared across slots, so two generations must never touch the same cache.
//! Each architecture answers [`Model::new_session`] with state of its own over weights that
//! are reference-counted (candle tensors and quantized matrices are `Arc`s inside), and the
//! [`SessionPool`] keeps finished sessions for reuse so their buffers are allocated once per
//! slot rather than once per request.

use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Tensor};
use candle_transformers::models::{llama, quantized_llama, quantized_qwen3};

/// A loaded network.
pub trait Model: Send + Sync {
    /// Fresh forward state. `capacity` is the number of positions the caller will feed, a hint
    /// for preallocating the KV cache.
    fn new_session(&self, capacity: usize) -> anyhow::Result<Box<dyn Session>>;
    /// Longest prompt + completion the model takes, in tokens.
    fn context_length(&self) -> usize;
    /// Whether finished sessions are worth keeping: yes when making one copies buffers, no
    /// when it is cheap and a kept one would only hold on to its cache's memory.
    fn reuse_sessions(&self) -> bool {
        false
    }
}

/// One generation's forward state.
pub trait Session: Send {
    /// Feeds `tokens` at positions `pos..pos + tokens.len()` and returns the logits of the last
    /// one as a rank-1 f32 tensor of the vocabulary's size.
    fn forward(&mut self, tokens: &[u32], pos: usize) -> candle_core::Result<Tensor>;
    /// Forgets everything fed so far, keeping buffers for the next generation.
    fn reset(&mut self);
}

/// Token ids as the `(1, n)` tensor candle models take.
pub fn input_ids(tokens: &[u32], device: &Device) -> candle_core::Result<Tensor> {
    Tensor::new(tokens, device)?.unsqueeze(0)
}

/// Logits of shape `(1, vocab)` (or `(vocab,)`) in any float type to `(vocab,)` f32.
fn last_logits(logits: Tensor) -> candle_core::Result<Tensor> {
    let logits = if logits.rank() == 2 {
        logits.squeeze(0)?
    } else {
        logits
    };
    logits.to_dtype(DType::F32)
}

/// The quantized GGUF models candle-transformers ships, whose `ModelWeights` hold the KV cache
/// inside: a session is a clone of a never-used template (the clone shares the weights).
pub trait CandleQuantized: Clone + Send + Sync + 'static {
    fn forward(&mut self, x: &Tensor, pos: usize) -> candle_core::Result<Tensor>;
    fn clear(&mut self);
}

impl CandleQuantized for quantized_llama::ModelWeights {
    fn forward(&mut self, x: &Tensor, pos: usize) -> candle_core::Result<Tensor> {
        quantized_llama::ModelWeights::forward(self, x, pos)
    }
    fn clear(&mut self) {
        self.clear_kv_cache();
    }
}

impl CandleQuantized for quantized_qwen3::ModelWeights {
    fn forward(&mut self, x: &Tensor, pos: usize) -> candle_core::Result<Tensor> {
        quantized_qwen3::ModelWeights::forward(self, x, pos)
    }
    fn clear(&mut self) {
        self.clear_kv_cache();
    }
}

/// A candle-transformers quantized model behind [`Model`].
pub struct QuantizedModel<M> {
    template: M,
    device: Device,
    context_length: usize,
    reuse_sessions: bool,
}

impl<M: CandleQuantized> QuantizedModel<M> {
    pub fn new(template: M, device: Device, context_length: usize) -> Self {
        Self {
            template,
            device,
            context_length,
            reuse_sessions: false,
        }
    }

    /// For models whose clone copies a preallocated cache (candle's qwen3 on the CPU).
    pub fn reusing_sessions(mut self) -> Self {
        self.reuse_sessions = true;
        self
    }
}

impl<M: CandleQuantized> Model for QuantizedModel<M> {
    fn new_session(&self, _capacity: usize) -> anyhow::Result<Box<dyn Session>> {
        Ok(Box::new(QuantizedSession {
            model: self.template.clone(),
            device: self.device.clone(),
        }))
    }
    fn context_length(&self) -> usize {
        self.context_length
    }
    fn reuse_sessions(&self) -> bool {
        self.reuse_sessions
    }
}

struct QuantizedSession<M> {
    model: M,
    device: Device,
}

impl<M: CandleQuantized> Session for QuantizedSession<M> {
    fn forward(&mut self, tokens: &[u32], pos: usize) -> candle_core::Result<Tensor> {
        let x = input_ids(tokens, &self.device)?;
        last_logits(self.model.forward(&x, pos)?)
    }
    fn reset(&mut self) {
        self.model.clear();
    }
}

/// candle's safetensors llama (IQuest-Coder-V1 and other llama-shaped checkpoints), whose
/// cache is already a separate value.
pub struct LlamaModel {
    llama: Arc<llama::Llama>,
    /// A fresh cache; its rotary tables are shared by every clone.
    cache: llama::Cache,
    device: Device,
    context_length: usize,
}

impl LlamaModel {
    pub fn new(llama: llama::Llama, cache: llama::Cache, device: Device, ctx: usize) -> Self {
        Self {
            llama: Arc::new(llama),
            cache,
            device,
            context_length: ctx,
        }
    }
}

impl Model for LlamaModel {
    fn new_session(&self, _capacity: usize) -> anyhow::Result<Box<dyn Session>> {
        Ok(Box::new(LlamaSession {
            llama: self.llama.clone(),
            fresh: self.cache.clone(),
            cache: self.cache.clone(),
            device: self.device.clone(),
        }))
    }
    fn context_length(&self) -> usize {
        self.context_length
    }
}

struct LlamaSession {
    llama: Arc<llama::Llama>,
    fresh: llama::Cache,
    cache: llama::Cache,
    device: Device,
}

impl Session for LlamaSession {
    fn forward(&mut self, tokens: &[u32], pos: usize) -> candle_core::Result<Tensor> {
        let x = input_ids(tokens, &self.device)?;
        last_logits(self.llama.forward(&x, pos, &mut self.cache)?)
    }
    fn reset(&mut self) {
        self.cache = self.fresh.clone();
    }
}

/// Finished sessions kept for the next generation (at most one per concurrent generation seen
/// so far), for models whose sessions are costly to make.
pub struct SessionPool {
    model: Box<dyn Model>,
    idle: Mutex<Vec<Box<dyn Session>>>,
}

impl SessionPool {
    pub fn new(model: Box<dyn Model>) -> Self {
        Self {
            model,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// A session with nothing fed yet.
    pub fn take(&self, capacity: usize) -> anyhow::Result<Box<dyn Session>> {
        let reused = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match reused {
            Some(session) => Ok(session),
            None => self.model.new_session(capacity),
        }
    }

    /// Returns a session after its generation, whatever its outcome.
    pub fn put_back(&self, mut session: Box<dyn Session>) {
        if !self.model.reuse_sessions() {
            return;
        }
        session.reset();
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(session);
    }
}
