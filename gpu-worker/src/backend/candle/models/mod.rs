//! The models: a loaded checkpoint ([`Model`]) hands out one [`Session`] (its KV cache) per
//! generation over weights every generation shares.
//!
//! Three words for three layers, from the top: the worker runs a `Backend` (the candle backend
//! or the synthetic one); the candle backend holds one [`Model`], whatever its architecture;
//! the architectures written here are a [`Transformer`](transformer::Transformer) each (weights and a forward pass over
//! caches it does not own), made a [`Model`] by [`TransformerModel`].
//!
//! The backend is shared across slots, so two generations must never touch the same cache.
//! Each architecture answers [`Model::new_session`] with state of its own over weights that
//! are reference-counted (candle tensors and quantized matrices are `Arc`s inside), and the
//! [`SessionPool`] keeps finished sessions for reuse so their buffers are allocated once per
//! slot rather than once per request.
//!
//! # Layout
//!
//! - [`registry`]: the GGUF architectures this backend runs, one row each with its loader.
//! - [`transformer`]: [`Transformer`](transformer::Transformer), and [`TransformerModel`] which puts one behind [`Model`].
//! - [`qwen2`] (the default model's architecture) and [`gemma3`]: written here for speed, memory
//!   and prompts in chunks.
//! - [`candle_models`]: the architectures candle-transformers ships (quantized llama and qwen3,
//!   the safetensors llama) behind [`Model`].
//! - [`attention`] (the per-generation KV cache and its kernels, sliding windows included) over
//!   [`kv_buffer`] (the CPU cache, which drops what a window no longer sees); [`rotary`] and
//!   [`linear`] (quantized or dense projections).
//! - [`session_pool`]: finished sessions kept for reuse.
//! - [`step_rows`]: one forward pass over several sequences' rows (token ids, positions,
//!   each sequence's attention over its own cache, the logits of the rows that want them).

pub mod attention;
pub mod candle_models;
pub mod gemma3;
pub mod kv_buffer;
pub mod linear;
pub mod qwen2;
pub mod registry;
pub mod rotary;
pub mod session_pool;
pub mod step_rows;
pub mod transformer;

use std::any::Any;

use candle_core::Tensor;

pub use session_pool::SessionPool;
pub use transformer::TransformerModel;

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
    /// Bytes of KV cache one position of one session takes, every layer together (a windowed
    /// layer's at most `2 * window` positions aside): what admission counts.
    fn kv_bytes_per_position(&self) -> usize;
    /// Whether [`Model::forward_batch`] runs its sequences as one pass (each weight read once
    /// for all of them) rather than one after another.
    fn batches(&self) -> bool {
        false
    }
    /// Whether [`Model::copy_prefix`] can copy (else a prefix cache is pointless).
    fn copies_prefixes(&self) -> bool {
        false
    }
    /// Gives `to` (a fresh session of this model) the KV of positions `0..positions` that
    /// `from` holds, as feeding those tokens to `to` would: a prefix cache's hit. False where
    /// the model cannot (the default) or `from` no longer holds them all.
    fn copy_prefix(
        &self,
        _from: &dyn Session,
        _to: &mut dyn Session,
        _positions: usize,
    ) -> candle_core::Result<bool> {
        Ok(false)
    }
    /// Feeds each input's tokens into its session and returns, for each input that asked, the
    /// logits after its last token (rank 1, f32), `None` for the others. A sequence's logits
    /// are the same bits whatever else is in the batch. This default runs the sessions one
    /// after another.
    fn forward_batch(
        &self,
        inputs: &mut [StepInput<'_>],
    ) -> candle_core::Result<Vec<Option<Tensor>>> {
        inputs
            .iter_mut()
            .map(|input| {
                let logits = input.session.forward(input.tokens, input.pos)?;
                Ok(input.logits.then_some(logits))
            })
            .collect()
    }
}

/// One sequence's part of a forward pass.
pub struct StepInput<'a> {
    pub session: &'a mut dyn Session,
    /// Fed at positions `pos..pos + tokens.len()`.
    pub tokens: &'a [u32],
    pub pos: usize,
    /// Whether its logits are wanted (not for a prompt chunk before the last).
    pub logits: bool,
}

/// One generation's forward state.
pub trait Session: Send + Any {
    /// Feeds `tokens` at positions `pos..pos + tokens.len()` and returns the logits of the last
    /// one as a rank-1 f32 tensor of the vocabulary's size.
    fn forward(&mut self, tokens: &[u32], pos: usize) -> candle_core::Result<Tensor>;
    /// Forgets everything fed so far, keeping buffers for the next generation.
    fn reset(&mut self);
    /// For a model's [`Model::forward_batch`] to reach its own sessions' state.
    fn as_any_mut(&mut self) -> &mut dyn Any;
    /// For a model's [`Model::copy_prefix`] to read another session's state.
    fn as_any(&self) -> &dyn Any;
}
