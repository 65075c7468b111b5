//! The architectures candle-transformers ships, behind [`Model`]: its quantized GGUF llama and
//! qwen3, whose `ModelWeights` hold the KV cache inside, and its safetensors llama, whose cache
//! is a separate value.

use std::any::Any;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use candle_transformers::models::{llama, quantized_llama, quantized_qwen3};

use super::registry::GgufInput;
use super::{Model, Session};
use crate::backend::candle::gguf_meta::ArchMeta;

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
    kv_bytes_per_position: usize,
    reuse_sessions: bool,
}

/// Bytes per position of a cache of `layers` layers of `kv_heads` K and V heads of
/// `head_dim` values of `dtype`.
pub fn kv_bytes(layers: usize, kv_heads: usize, head_dim: usize, dtype: DType) -> usize {
    layers * kv_heads * 2 * head_dim * dtype.size_in_bytes()
}

impl<M: CandleQuantized> QuantizedModel<M> {
    pub fn new(
        template: M,
        device: Device,
        context_length: usize,
        kv_bytes_per_position: usize,
    ) -> Self {
        Self {
            template,
            device,
            context_length,
            kv_bytes_per_position,
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
    fn kv_bytes_per_position(&self) -> usize {
        self.kv_bytes_per_position
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
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn as_any(&self) -> &dyn Any {
        self
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
    kv_bytes_per_position: usize,
}

impl LlamaModel {
    pub fn new(
        llama: llama::Llama,
        cache: llama::Cache,
        device: Device,
        config: &llama::Config,
        dtype: DType,
    ) -> Self {
        let head_dim = config.hidden_size / config.num_attention_heads.max(1);
        Self {
            llama: Arc::new(llama),
            cache,
            device,
            context_length: config.max_position_embeddings,
            kv_bytes_per_position: kv_bytes(
                config.num_hidden_layers,
                config.num_key_value_heads,
                head_dim,
                dtype,
            ),
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
    fn kv_bytes_per_position(&self) -> usize {
        self.kv_bytes_per_position
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
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The `llama` row of the registry: candle-transformers' quantized llama, whose context is
/// capped by its own rotary tables.
pub fn load_quantized_llama(mut input: GgufInput<'_>) -> anyhow::Result<Box<dyn Model>> {
    let kv = gguf_kv_bytes(&input, "llama")?;
    let weights =
        quantized_llama::ModelWeights::from_gguf(input.content, &mut input.weights, input.device)?;
    let context = input.context_length.min(quantized_llama::MAX_SEQ_LEN);
    Ok(Box::new(QuantizedModel::new(
        weights,
        input.device.clone(),
        context,
        kv,
    )))
}

/// The `qwen3` row of the registry: candle-transformers' quantized qwen3.
pub fn load_quantized_qwen3(mut input: GgufInput<'_>) -> anyhow::Result<Box<dyn Model>> {
    let kv = gguf_kv_bytes(&input, "qwen3")?;
    let weights =
        quantized_qwen3::ModelWeights::from_gguf(input.content, &mut input.weights, input.device)?;
    let model = QuantizedModel::new(weights, input.device.clone(), input.context_length, kv);
    Ok(Box::new(model.reusing_sessions()))
}

/// KV bytes per position of a GGUF model of `arch` from its metadata; candle-transformers'
/// quantized models keep their caches in f32.
fn gguf_kv_bytes(input: &GgufInput<'_>, arch: &'static str) -> anyhow::Result<usize> {
    let meta = ArchMeta::new(&input.content, arch);
    let heads = meta.usize("attention.head_count")?.max(1);
    let head_dim = match meta.optional_usize("attention.key_length")? {
        Some(length) => length,
        None => meta.usize("embedding_length")? / heads,
    };
    let kv_heads = meta
        .optional_usize("attention.head_count_kv")?
        .unwrap_or(heads);
    Ok(kv_bytes(
        meta.usize("block_count")?,
        kv_heads,
        head_dim,
        DType::F32,
    ))
}
