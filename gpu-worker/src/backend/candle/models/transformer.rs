//! The models written here (`qwen2.rs`, `gemma3.rs`) behind [`Model`]: weights shared by
//! every generation behind an `Arc`, a session of one [`KvCache`] per layer, and forward
//! passes over several sessions at once ([`Model::forward_batch`]).

use std::any::Any;
use std::sync::Arc;

use candle_core::{Device, Tensor};

use super::attention::{Heads, KvCache};
use super::step_rows::SeqRows;
use super::{Model, Session, StepInput};

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

impl CacheLayout {
    /// Bytes one position takes in a session's caches: K and V in f32, every layer counted
    /// (an upper bound for windowed layers, which keep at most `2 * window` positions).
    pub fn bytes_per_position(&self) -> usize {
        let Heads {
            n_kv_head,
            head_dim,
            ..
        } = self.heads;
        self.windows.len() * n_kv_head * 2 * head_dim * std::mem::size_of::<f32>()
    }
}

/// A network's weights and its forward pass over caches it does not own.
pub trait Transformer: Send + Sync + 'static {
    /// The architecture, for errors.
    const NAME: &'static str;

    fn layout(&self) -> &CacheLayout;
    /// Feeds every sequence's tokens at its positions, inside the context, through the layers
    /// with its caches (one per layer), all sequences' rows together; returns the last row's
    /// logits (rank 1) of each sequence that wants them.
    fn forward(&self, seqs: &mut [SeqRows<'_>]) -> candle_core::Result<Vec<Option<Tensor>>>;
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

    fn kv_bytes_per_position(&self) -> usize {
        self.transformer.layout().bytes_per_position()
    }

    fn batches(&self) -> bool {
        true
    }

    fn copies_prefixes(&self) -> bool {
        true
    }

    fn copy_prefix(
        &self,
        from: &dyn Session,
        to: &mut dyn Session,
        positions: usize,
    ) -> candle_core::Result<bool> {
        let from = from.as_any().downcast_ref::<TransformerSession<N>>();
        let to = to.as_any_mut().downcast_mut::<TransformerSession<N>>();
        let (Some(from), Some(to)) = (from, to) else {
            return Ok(false);
        };
        for (mine, theirs) in to.caches.iter_mut().zip(&from.caches) {
            if !mine.copy_prefix(theirs, positions)? {
                to.caches.iter_mut().for_each(KvCache::reset);
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn forward_batch(
        &self,
        inputs: &mut [StepInput<'_>],
    ) -> candle_core::Result<Vec<Option<Tensor>>> {
        let mut seqs = Vec::with_capacity(inputs.len());
        for input in inputs.iter_mut() {
            let Some(session) = input
                .session
                .as_any_mut()
                .downcast_mut::<TransformerSession<N>>()
            else {
                candle_core::bail!("{}: a session of another model in the batch", N::NAME);
            };
            check_positions::<N>(input.tokens.len(), input.pos, self.context_length())?;
            seqs.push(SeqRows {
                tokens: input.tokens,
                pos: input.pos,
                caches: &mut session.caches,
                logits: input.logits,
            });
        }
        self.transformer.forward(&mut seqs)
    }
}

/// Refuses an empty feed or one past the context.
fn check_positions<N: Transformer>(
    tokens: usize,
    pos: usize,
    context: usize,
) -> candle_core::Result<()> {
    let end = pos + tokens;
    if tokens == 0 || end > context {
        candle_core::bail!(
            "{}: positions {pos}..{end} outside the context of {context}",
            N::NAME
        );
    }
    Ok(())
}

/// One generation's KV caches over a shared transformer.
struct TransformerSession<N> {
    transformer: Arc<N>,
    caches: Vec<KvCache>,
}

impl<N: Transformer> Session for TransformerSession<N> {
    fn forward(&mut self, tokens: &[u32], pos: usize) -> candle_core::Result<Tensor> {
        check_positions::<N>(tokens.len(), pos, self.transformer.layout().context_length)?;
        let mut seq = [SeqRows {
            tokens,
            pos,
            caches: &mut self.caches,
            logits: true,
        }];
        let [logits] = <[Option<Tensor>; 1]>::try_from(self.transformer.forward(&mut seq)?)
            .map_err(|_| candle_core::Error::Msg("one sequence, not one output".to_owned()))?;
        logits.ok_or_else(|| candle_core::Error::Msg("no logits for the sequence".to_owned()))
    }

    fn reset(&mut self) {
        self.caches.iter_mut().for_each(KvCache::reset);
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
