//! The models written here (`qwen2.rs`, `gemma3.rs`) behind [`Model`]: weights shared by
//! every generation behind an `Arc`, and a session of one [`KvCache`] per layer.

use std::sync::Arc;

use candle_core::{Device, IndexOp, Module, Tensor};
use candle_transformers::quantized_nn::RmsNorm;

use super::attention::{Heads, KvCache};
use super::linear::Linear;
use super::{Model, Session};

/// What a session's caches are made to fit.
#[derive(Debug, Clone)]
pub struct CacheLayout {
    pub heads: Heads,
    /// Each layer's sliding window, `None` for a layer that sees every position.
    pub windows: Vec<Option<usize>>,
    /// Longest prompt + completion, in positions.
    pub context_length: usize,
    pub device: Device,
}

/// A network's weights and its forward pass over caches it does not own.
pub trait Transformer: Send + Sync + 'static {
    /// The architecture, for errors.
    const NAME: &'static str;

    fn layout(&self) -> &CacheLayout;
    /// Feeds `tokens` at positions `pos..pos + tokens.len()`, inside the context, through the
    /// layers with `caches` (one per layer); returns the last token's logits, rank 1.
    fn forward(
        &self,
        tokens: &[u32],
        pos: usize,
        caches: &mut [KvCache],
    ) -> candle_core::Result<Tensor>;
}

/// The logits of the last of `hidden`'s `(1, t, hidden)` rows, rank 1: the final `norm`, then
/// the `output` projection.
pub fn last_logits(
    hidden: &Tensor,
    norm: &RmsNorm,
    output: &Linear,
) -> candle_core::Result<Tensor> {
    let t = hidden.dim(1)?;
    let last = hidden.i((.., t - 1.., ..))?.contiguous()?;
    output.forward(&norm.forward(&last)?)?.flatten_all()
}

/// A [`Transformer`] as a [`Model`].
pub struct TransformerModel<N> {
    transformer: Arc<N>,
}

impl<N: Transformer> TransformerModel<N> {
    pub fn new(transformer: N) -> Self {
        Self {
            transformer: Arc::new(transformer),
        }
    }
}

impl<N: Transformer> Model for TransformerModel<N> {
    fn new_session(&self, capacity: usize) -> anyhow::Result<Box<dyn Session>> {
        let layout = self.transformer.layout();
        let capacity = capacity.min(layout.context_length);
        let caches = layout
            .windows
            .iter()
            .map(|&window| KvCache::new(&layout.device, layout.heads, capacity, window))
            .collect();
        Ok(Box::new(TransformerSession {
            transformer: self.transformer.clone(),
            caches,
        }))
    }

    fn context_length(&self) -> usize {
        self.transformer.layout().context_length
    }
}

/// One generation's KV caches over a shared transformer.
struct TransformerSession<N> {
    transformer: Arc<N>,
    caches: Vec<KvCache>,
}

impl<N: Transformer> Session for TransformerSession<N> {
    fn forward(&mut self, tokens: &[u32], pos: usize) -> candle_core::Result<Tensor> {
        let end = pos + tokens.len();
        let context = self.transformer.layout().context_length;
        if tokens.is_empty() || end > context {
            candle_core::bail!(
                "{}: positions {pos}..{end} outside the context of {context}",
                N::NAME
            );
        }
        self.transformer.forward(tokens, pos, &mut self.caches)
    }

    fn reset(&mut self) {
        self.caches.iter_mut().for_each(KvCache::reset);
    }
}
