//! Causal self-attention over one generation's KV cache, for the models written here.
//!
//! On the CPU, K and V go into one interleaved buffer per layer (`kv_buffer.rs`) that
//! candle-nn's decode kernel reads in place: no concatenation, no repeated K/V heads. A decode
//! step uses that kernel; a prompt chunk uses two matrix products while its score matrix is
//! small and the flash kernel (causal offset, memory independent of the context) beyond. Other
//! devices take a plain tensor path (concatenated cache, explicit mask).
//!
//! A layer with a sliding window (gemma3's local layers) sees only the keys less than `window`
//! positions behind each query, and its CPU buffer drops the others once it is full (the tensor
//! path keeps every position): a decode step reads the cache from the window's start, and a
//! prompt chunk attends over the span its queries' windows cover, with a mask for the rest, as
//! matrix products over pieces of the chunk small enough that each piece's scores fit in
//! [`Heads::matmul_attention_bytes`] (a piece of `p` queries sees at most `p + window - 1`
//! keys); windowed layers never take the flash kernel.

use candle_core::{Device, Storage, Tensor};
use candle_nn::attention::cpu_flash::causal::causal_decode_f32_interleaved;
use candle_nn::attention::{flash_attn, AttnMask};
use candle_transformers::utils::repeat_kv;

use super::kv_buffer::KvBuffer;

/// Largest score matrix (bytes) a prompt chunk's attention materialises; longer contexts use
/// the flash kernel, whose memory does not grow with the context but whose per-score `exp` is
/// slower than two matrix products for short ones (a windowed layer splits the chunk instead).
pub const MATMUL_ATTENTION_BYTES: usize = 64 << 20;

/// The attention's head layout.
#[derive(Debug, Clone, Copy)]
pub struct Heads {
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    /// What scores are multiplied by before the softmax, `1 / sqrt(head_dim)` for most models.
    pub scale: f32,
    /// Prompt chunks whose attention scores fit in this many bytes use matrix products (a
    /// windowed layer's chunks always do, in pieces that fit).
    pub matmul_attention_bytes: usize,
}

impl Heads {
    /// The usual layout, scaled by `1 / sqrt(head_dim)`.
    pub fn new(n_head: usize, n_kv_head: usize, head_dim: usize) -> Self {
        Self {
            n_head,
            n_kv_head,
            head_dim,
            scale: 1.0 / (head_dim as f32).sqrt(),
            matmul_attention_bytes: MATMUL_ATTENTION_BYTES,
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
                let span = buffer.end() - first;
                let seen = buffer.since(first)?;
                if t == 1 {
                    let y = with_f32(q, |q| {
                        causal_decode_f32_interleaved(
                            q, seen, n_head, n_kv_head, head_dim, span, scale,
                        )
                    })??;
                    return y.reshape((b, 1, n_head * head_dim));
                }
                let kv = Tensor::from_slice(seen, (span, n_kv_head, 2 * head_dim), q.device())?;
                let k_all = kv.narrow(2, 0, head_dim)?;
                let v_all = kv.narrow(2, head_dim, head_dim)?;
                if let Some(window) = window {
                    return windowed_attention(q, &k_all, &v_all, (pos, first), window, heads);
                }
                if n_head * t * span * 4 <= heads.matmul_attention_bytes {
                    let mask = attention_mask(t, pos, first, span, None, q.device())?;
                    return matmul_attention(q, &k_all, &v_all, &mask, heads);
                }
                let (k_all, v_all) = (k_all.unsqueeze(0)?, v_all.unsqueeze(0)?);
                let mask = AttnMask::causal_with_offset(pos);
                let y = flash_attn::<f32>(q, &k_all, &v_all, scale, mask, None, None)?;
                y.transpose(1, 2)?.reshape((b, t, n_head * head_dim))
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

/// Attention of a prompt chunk at `pos` in a sliding `window`, over keys `k` and `v` from
/// position `first` on, as [`matmul_attention`] over pieces of the chunk whose scores fit in
/// `heads.matmul_attention_bytes` (at least one query per piece).
fn windowed_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    (pos, first): (usize, usize),
    window: usize,
    heads: Heads,
) -> candle_core::Result<Tensor> {
    let t = q.dim(1)?;
    let score_bytes = |queries: usize| heads.n_head * queries * (queries + window - 1) * 4;
    let mut piece = t;
    while piece > 1 && score_bytes(piece) > heads.matmul_attention_bytes {
        piece = piece.div_ceil(2);
    }
    let mut outputs = Vec::with_capacity(t.div_ceil(piece));
    for start in (0..t).step_by(piece) {
        let len = piece.min(t - start);
        let query_pos = pos + start;
        let piece_first = (query_pos + 1).saturating_sub(window).max(first);
        let span = query_pos + len - piece_first;
        let (offset, device) = (piece_first - first, q.device());
        let mask = attention_mask(len, query_pos, piece_first, span, Some(window), device)?;
        outputs.push(matmul_attention(
            &q.narrow(1, start, len)?,
            &k.narrow(0, offset, span)?,
            &v.narrow(0, offset, span)?,
            &mask,
            heads,
        )?);
    }
    Tensor::cat(&outputs, 1)
}

/// Attention of a prompt chunk as two matrix products. `q` is `(1, t, heads, head_dim)`, `k`
/// and `v` are `(span, kv_heads, head_dim)` and `mask` is additive `(t, span)`; the query
/// heads that share a KV head are stacked so K and V are never repeated. Returns
/// `(1, t, heads * head_dim)`.
fn matmul_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: &Tensor,
    heads: Heads,
) -> candle_core::Result<Tensor> {
    let Heads {
        n_head,
        n_kv_head,
        head_dim,
        scale,
        ..
    } = heads;
    let (_, t, _, _) = q.dims4()?;
    let kv_len = k.dim(0)?;
    let group = n_head / n_kv_head;
    let q =
        q.squeeze(0)?
            .transpose(0, 1)?
            .contiguous()?
            .reshape((n_kv_head, group * t, head_dim))?;
    let k = k.transpose(0, 1)?.contiguous()?;
    let v = v.transpose(0, 1)?.contiguous()?;
    let scores = (q.matmul(&k.t()?)? * scale as f64)?;
    let scores = scores
        .reshape((n_kv_head, group, t, kv_len))?
        .broadcast_add(mask)?;
    let probs =
        candle_nn::ops::softmax_last_dim(&scores)?.reshape((n_kv_head, group * t, kv_len))?;
    let y = probs.matmul(&v)?;
    y.reshape((n_head, t, head_dim))?
        .transpose(0, 1)?
        .reshape((1, t, n_head * head_dim))
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
    //! The CPU cache's kernels (decode, matrix products, flash) against the plain tensor path
    //! that other devices take, with and without a window, over steps of several sizes.

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

    /// Each step's output of `cache`, concatenated over positions.
    fn outputs(mut cache: KvCache, heads: Heads) -> Tensor {
        let mut pos = 0;
        let mut ys = Vec::new();
        for (step, t) in STEPS.into_iter().enumerate() {
            let seed = 3 * step as u64;
            let q = random(seed + 1, (1, t, HEADS, HEAD_DIM));
            let k = random(seed + 2, (1, t, KV_HEADS, HEAD_DIM));
            let v = random(seed + 3, (1, t, KV_HEADS, HEAD_DIM));
            ys.push(cache.attend(&q, &k, &v, pos, heads).unwrap());
            pos += t;
        }
        Tensor::cat(&ys, 1).unwrap()
    }

    fn compare(window: Option<usize>, matmul_attention_bytes: usize) {
        let mut heads = Heads::new(HEADS, KV_HEADS, HEAD_DIM);
        heads.matmul_attention_bytes = matmul_attention_bytes;
        let cpu = outputs(KvCache::new(&Device::Cpu, heads, 4, window), heads);
        let tensors = outputs(KvCache::tensors(window), heads);

        let diff = max_diff(&cpu, &tensors);
        assert!(diff < 1e-5, "window {window:?}: outputs differ by {diff}");
    }

    #[test]
    fn cpu_kernels_match_the_tensor_path_without_a_window() {
        compare(None, MATMUL_ATTENTION_BYTES);
    }

    #[test]
    fn cpu_flash_kernel_matches_the_tensor_path() {
        compare(None, 0);
    }

    #[test]
    fn cpu_kernels_match_the_tensor_path_with_a_window() {
        for window in [1, 2, 3, 6] {
            compare(Some(window), MATMUL_ATTENTION_BYTES);
        }
    }

    #[test]
    fn a_windowed_chunk_split_into_pieces_matches_the_tensor_path() {
        // A budget of no bytes: one query per piece.
        for window in [1, 3] {
            compare(Some(window), 0);
        }
        // Two or three queries per piece of the 5-token chunk.
        compare(Some(3), HEADS * 3 * (3 + 3 - 1) * 4);
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
