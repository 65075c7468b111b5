//! Causal self-attention over one generation's KV cache, for the models written here.
//!
//! On the CPU, K and V go into one interleaved buffer per layer (`kv_buffer.rs`) that
//! candle-nn's decode kernel reads in place: no concatenation, no repeated K/V heads. Every
//! query, a decode step's or one of a prompt chunk's, goes through that kernel on its own over
//! the keys it sees: a query's output is then the same bits however the prompt was cut into
//! chunks and whatever else shares the step, which the batch invariance of the engine needs
//! (matrix products over a whole chunk sum in an order that depends on the chunk's length).
//! Other devices take a plain tensor path (concatenated cache, explicit mask), which is not
//! chunk-invariant.
//!
//! A layer with a sliding window (gemma3's local layers) sees only the keys less than `window`
//! positions behind each query, and its CPU buffer drops the others once it is full (the tensor
//! path keeps every position).

use candle_core::{Device, Storage, Tensor};
use candle_nn::attention::cpu_flash::causal::causal_decode_f32_interleaved;
use candle_transformers::utils::repeat_kv;

use super::kv_buffer::KvBuffer;

/// The attention's head layout.
#[derive(Debug, Clone, Copy)]
pub struct Heads {
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    /// What scores are multiplied by before the softmax, `1 / sqrt(head_dim)` for most models.
    pub scale: f32,
}

impl Heads {
    /// The usual layout, scaled by `1 / sqrt(head_dim)`.
    pub fn new(n_head: usize, n_kv_head: usize, head_dim: usize) -> Self {
        Self {
            n_head,
            n_kv_head,
            head_dim,
            scale: 1.0 / (head_dim as f32).sqrt(),
        }
    }
}

/// One layer's K and V for one generation.
pub struct KvCache {
    /// Positions each query sees, itself included; `None` for all before it.
    window: Option<usize>,
    store: Store,
}

enum Store {
    /// `(positions, kv_heads, 2 * head_dim)`: each position's K then V, per head.
    Cpu(KvBuffer),
    /// `(1, kv_heads, positions, head_dim)` K and V.
    Tensors(Option<(Tensor, Tensor)>),
}

impl KvCache {
    /// An empty cache with room for `capacity` positions (it grows past them if needed), for a
    /// layer whose queries see the last `window` positions (all of them without one). On the
    /// CPU a windowed cache starts with room for `min(capacity, 2 * window)` positions and
    /// drops what no query sees any more when that is full.
    ///
    /// # Panics
    /// On a window of 0 positions.
    pub fn new(device: &Device, heads: Heads, capacity: usize, window: Option<usize>) -> Self {
        assert_ne!(window, Some(0), "a sliding window of 0 positions");
        let store = match device.is_cpu() {
            true => {
                let room = window.map_or(capacity, |w| capacity.min(2 * w));
                Store::Cpu(KvBuffer::new(heads.n_kv_head, heads.head_dim, room, window))
            }
            false => Store::Tensors(None),
        };
        Self { window, store }
    }

    /// The tensor path other devices take, on any device (for tests on the CPU).
    #[cfg(test)]
    fn tensors(window: Option<usize>) -> Self {
        Self {
            window,
            store: Store::Tensors(None),
        }
    }

    /// Takes positions `0..positions` of `other`'s K and V, this cache holding nothing yet:
    /// the same values feeding those positions here would give. False where `other` no longer
    /// holds all of them (a window dropped some) or is of another kind.
    pub fn copy_prefix(&mut self, other: &KvCache, positions: usize) -> candle_core::Result<bool> {
        if self.window != other.window {
            return Ok(false);
        }
        match (&mut self.store, &other.store) {
            (Store::Cpu(mine), Store::Cpu(theirs)) => Ok(mine.copy_prefix(theirs, positions)),
            (Store::Tensors(mine @ None), Store::Tensors(Some((k, v)))) => {
                if k.dim(2)? < positions {
                    return Ok(false);
                }
                let prefix = |t: &Tensor| t.narrow(2, 0, positions)?.copy();
                *mine = Some((prefix(k)?, prefix(v)?));
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Forgets every position, keeping the buffer.
    pub fn reset(&mut self) {
        match &mut self.store {
            Store::Cpu(buffer) => buffer.reset(),
            Store::Tensors(kv) => *kv = None,
        }
    }

    /// Appends this step's K/V (`(1, t, kv_heads, head_dim)`, rotated) and attends `q`
    /// (`(1, t, heads, head_dim)`) over everything cached, or with the cache's window over the
    /// keys fewer than `window` positions behind each query. Returns `(1, t, heads * head_dim)`.
    pub fn attend(
        &mut self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        pos: usize,
        heads: Heads,
    ) -> candle_core::Result<Tensor> {
        let window = self.window;
        let Heads {
            n_head,
            n_kv_head,
            head_dim,
            scale,
            ..
        } = heads;
        let (b, t, _, _) = q.dims4()?;
        // The first position any query of this step may see.
        let first = window.map_or(0, |w| (pos + 1).saturating_sub(w));
        match &mut self.store {
            Store::Cpu(buffer) => {
                if buffer.end() != pos {
                    candle_core::bail!(
                        "attention: cache holds {} positions, fed at {pos}",
                        buffer.end()
                    );
                }
                with_f32(k, |k| with_f32(v, |v| buffer.append(k, v, t)))??;
                let seen = buffer.since(first)?;
                let stride = n_kv_head * 2 * head_dim;
                let width = n_head * head_dim;
                let queries = with_f32(q, |q| {
                    (0..t)
                        .map(|i| {
                            let query = pos + i;
                            let from = window.map_or(0, |w| (query + 1).saturating_sub(w));
                            let (offset, span) = (from - first, query + 1 - from);
                            causal_decode_f32_interleaved(
                                &q[i * width..(i + 1) * width],
                                &seen[offset * stride..(offset + span) * stride],
                                n_head,
                                n_kv_head,
                                head_dim,
                                span,
                                scale,
                            )
                        })
                        .collect::<candle_core::Result<Vec<_>>>()
                })??;
                // Each query's output is `(heads, 1, head_dim)`: one row of `width`.
                let y = match <[Tensor; 1]>::try_from(queries) {
                    Ok([y]) => y,
                    Err(queries) => Tensor::cat(&queries, 0)?,
                };
                y.reshape((b, t, width))
            }
            Store::Tensors(cached) => {
                let k = k.transpose(1, 2)?.contiguous()?;
                let v = v.transpose(1, 2)?.contiguous()?;
                let (k, v) = match cached.take() {
                    Some((ck, cv)) => (Tensor::cat(&[&ck, &k], 2)?, Tensor::cat(&[&cv, &v], 2)?),
                    None => (k, v),
                };
                *cached = Some((k.clone(), v.clone()));
                let span = pos + t - first;
                let (k, v) = (k.narrow(2, first, span)?, v.narrow(2, first, span)?);
                let q = q.transpose(1, 2)?.contiguous()?;
                let k = repeat_kv(k.contiguous()?, n_head / n_kv_head)?.contiguous()?;
                let v = repeat_kv(v.contiguous()?, n_head / n_kv_head)?.contiguous()?;
                let att = (q.matmul(&k.t()?)? * scale as f64)?;
                let att = match t {
                    1 => att,
                    _ => {
                        let mask = attention_mask(t, pos, first, span, window, q.device())?;
                        att.broadcast_add(&mask.to_dtype(att.dtype())?)?
                    }
                };
                let y = candle_nn::ops::softmax_last_dim(&att)?.matmul(&v)?;
                y.transpose(1, 2)?.reshape((b, t, n_head * head_dim))
            }
        }
    }
}

/// The additive `(t, span)` mask of `t` queries at `pos..` over the keys at
/// `first..first + span`: 0 where a query sees the key (not after it, and with a `window`,
/// fewer than `window` positions behind it), minus infinity elsewhere.
fn attention_mask(
    t: usize,
    pos: usize,
    first: usize,
    span: usize,
    window: Option<usize>,
    device: &Device,
) -> candle_core::Result<Tensor> {
    let window = window.unwrap_or(usize::MAX);
    let mask: Vec<f32> = (0..t)
        .flat_map(|i| {
            let query = pos + i;
            (first..first + span).map(move |key| match key <= query && query - key < window {
                true => 0.0,
                false => f32::NEG_INFINITY,
            })
        })
        .collect();
    Tensor::from_vec(mask, (t, span), device)
}

/// Runs `f` over a contiguous CPU f32 tensor's elements.
fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> candle_core::Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        candle_core::bail!("expected a CPU tensor");
    };
    let data = cpu.as_slice::<f32>()?;
    let start = layout.start_offset();
    Ok(f(&data[start..start + t.elem_count()]))
}

#[cfg(test)]
mod tests {
    //! The CPU cache's kernel against the plain tensor path that other devices take, with
    //! and without a window, over steps of several sizes; and the CPU path's outputs the same
    //! bits however the positions are cut into steps.

    use super::*;
    use crate::backend::candle::test_gguf::{max_diff, noise};

    const HEADS: usize = 4;
    const KV_HEADS: usize = 2;
    const HEAD_DIM: usize = 8;
    /// Tokens fed per step: a prompt in chunks, then decode steps, then another chunk.
    const STEPS: [usize; 6] = [5, 1, 4, 1, 1, 3];

    fn random(seed: u64, shape: (usize, usize, usize, usize)) -> Tensor {
        let values = noise(seed, shape.0 * shape.1 * shape.2 * shape.3, 1.0);
        Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
    }

    /// The outputs of `cache` fed the same positions' Q, K and V in steps of `steps` tokens,
    /// concatenated over positions.
    fn outputs_in(steps: &[usize], mut cache: KvCache, heads: Heads) -> Tensor {
        let total: usize = steps.iter().sum();
        let q = random(1, (1, total, HEADS, HEAD_DIM));
        let k = random(2, (1, total, KV_HEADS, HEAD_DIM));
        let v = random(3, (1, total, KV_HEADS, HEAD_DIM));
        let mut pos = 0;
        let mut ys = Vec::new();
        for &t in steps {
            let part = |x: &Tensor| x.narrow(1, pos, t).unwrap();
            ys.push(
                cache
                    .attend(&part(&q), &part(&k), &part(&v), pos, heads)
                    .unwrap(),
            );
            pos += t;
        }
        Tensor::cat(&ys, 1).unwrap()
    }

    fn outputs(cache: KvCache, heads: Heads) -> Tensor {
        outputs_in(&STEPS, cache, heads)
    }

    fn compare(window: Option<usize>) {
        let heads = Heads::new(HEADS, KV_HEADS, HEAD_DIM);
        let cpu = outputs(KvCache::new(&Device::Cpu, heads, 4, window), heads);
        let tensors = outputs(KvCache::tensors(window), heads);

        let diff = max_diff(&cpu, &tensors);
        assert!(diff < 1e-5, "window {window:?}: outputs differ by {diff}");
    }

    #[test]
    fn cpu_kernel_matches_the_tensor_path_without_a_window() {
        compare(None);
    }

    #[test]
    fn cpu_kernel_matches_the_tensor_path_with_a_window() {
        for window in [1, 2, 3, 6] {
            compare(Some(window));
        }
    }

    #[test]
    fn cpu_outputs_are_the_same_bits_however_the_steps_are_cut() {
        let heads = Heads::new(HEADS, KV_HEADS, HEAD_DIM);
        for window in [None, Some(2), Some(5)] {
            let cache = || KvCache::new(&Device::Cpu, heads, 4, window);
            let reference = outputs_in(&[15], cache(), heads);
            for steps in [&[1; 15][..], &[5, 1, 4, 1, 1, 3], &[7, 8], &[2, 13]] {
                let cut = outputs_in(steps, cache(), heads);
                assert_eq!(
                    max_diff(&reference, &cut),
                    0.0,
                    "window {window:?}, steps {steps:?}"
                );
            }
        }
    }

    #[test]
    #[should_panic(expected = "window of 0")]
    fn a_window_of_zero_positions_is_refused() {
        KvCache::new(
            &Device::Cpu,
            Heads::new(HEADS, KV_HEADS, HEAD_DIM),
            4,
            Some(0),
        );
    }

    #[test]
    fn a_window_wider_than_the_context_changes_nothing() {
        let heads = Heads::new(HEADS, KV_HEADS, HEAD_DIM);
        let total = STEPS.iter().sum();
        let windowed = outputs(KvCache::tensors(Some(total)), heads);
        let plain = outputs(KvCache::tensors(None), heads);

        assert_eq!(max_diff(&windowed, &plain), 0.0);
    }

    #[test]
    fn a_window_changes_what_late_queries_see() {
        let heads = Heads::new(HEADS, KV_HEADS, HEAD_DIM);
        let windowed = outputs(KvCache::new(&Device::Cpu, heads, 4, Some(2)), heads);
        let plain = outputs(KvCache::new(&Device::Cpu, heads, 4, None), heads);

        // The first two positions see the same keys either way; later ones do not.
        let early = |t: &Tensor| t.narrow(1, 0, 2).unwrap();
        assert_eq!(max_diff(&early(&windowed), &early(&plain)), 0.0);
        assert!(max_diff(&windowed, &plain) > 1e-3);
    }
}
