//! Causal self-attention over one generation's KV cache, for the models written here.
//!
//! On the CPU, K and V go into one preallocated interleaved buffer per layer that candle-nn's
//! attention kernels read in place: no concatenation, no repeated K/V heads. A decode step uses
//! the interleaved decode kernel; a prompt chunk uses two matrix products while its score
//! matrix is small and the flash kernel (causal offset, memory independent of the context)
//! beyond. Other devices take a plain tensor path (concatenated cache, explicit mask).

use candle_core::{DType, Device, Storage, Tensor};
use candle_nn::attention::cpu_flash::causal::causal_decode_f32_interleaved;
use candle_nn::attention::{flash_attn, AttnMask};
use candle_nn::kv_cache::RawInterleavedKvCache;
use candle_transformers::utils::{build_additive_causal_mask, build_causal_mask, repeat_kv};

/// Largest score matrix (bytes) a prompt chunk's attention materialises; longer contexts use
/// the flash kernel, whose memory does not grow with the context but whose per-score `exp` is
/// slower than two matrix products for short ones.
pub const MATMUL_ATTENTION_BYTES: usize = 64 << 20;

/// The attention's head layout.
#[derive(Debug, Clone, Copy)]
pub struct Heads {
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    /// Prompt chunks whose attention scores fit in this many bytes use matrix products.
    pub matmul_attention_bytes: usize,
}

/// One layer's K and V for one generation.
pub enum KvCache {
    /// `(positions, kv_heads, 2 * head_dim)`: each position's K then V, per head.
    Cpu(RawInterleavedKvCache),
    /// `(1, kv_heads, positions, head_dim)` K and V.
    Tensors(Option<(Tensor, Tensor)>),
}

impl KvCache {
    /// An empty cache with room for `capacity` positions (it grows past them if needed).
    pub fn new(device: &Device, heads: Heads, capacity: usize) -> Self {
        match device.is_cpu() {
            true => KvCache::Cpu(RawInterleavedKvCache::new(
                heads.n_kv_head,
                heads.head_dim,
                capacity.max(1),
            )),
            false => KvCache::Tensors(None),
        }
    }

    /// Forgets every position, keeping the buffer.
    pub fn reset(&mut self) {
        match self {
            KvCache::Cpu(raw) => raw.reset(),
            KvCache::Tensors(kv) => *kv = None,
        }
    }

    /// Appends this step's K/V (`(1, t, kv_heads, head_dim)`, rotated) and attends `q`
    /// (`(1, t, heads, head_dim)`) over everything cached. Returns `(1, t, heads * head_dim)`.
    pub fn attend(
        &mut self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        pos: usize,
        heads: Heads,
    ) -> candle_core::Result<Tensor> {
        let Heads {
            n_head,
            n_kv_head,
            head_dim,
            ..
        } = heads;
        let (b, t, _, _) = q.dims4()?;
        let scale = 1.0 / (head_dim as f32).sqrt();
        match self {
            KvCache::Cpu(raw) => {
                if raw.len() != pos {
                    candle_core::bail!(
                        "attention: cache holds {} positions, fed at {pos}",
                        raw.len()
                    );
                }
                with_f32(k, |k| with_f32(v, |v| raw.write_kv_batch(k, v, t)))??;
                let kv_len = raw.len();
                if t == 1 {
                    let y = with_f32(q, |q| {
                        causal_decode_f32_interleaved(
                            q,
                            raw.data(),
                            n_head,
                            n_kv_head,
                            head_dim,
                            kv_len,
                            scale,
                        )
                    })??;
                    return y.reshape((b, 1, n_head * head_dim));
                }
                let kv =
                    Tensor::from_slice(raw.data(), (kv_len, n_kv_head, 2 * head_dim), q.device())?;
                let k_all = kv.narrow(2, 0, head_dim)?;
                let v_all = kv.narrow(2, head_dim, head_dim)?;
                if n_head * t * kv_len * 4 <= heads.matmul_attention_bytes {
                    return matmul_attention(q, &k_all, &v_all, pos, heads);
                }
                let (k_all, v_all) = (k_all.unsqueeze(0)?, v_all.unsqueeze(0)?);
                let mask = AttnMask::causal_with_offset(pos);
                let y = flash_attn::<f32>(q, &k_all, &v_all, scale, mask, None, None)?;
                y.transpose(1, 2)?.reshape((b, t, n_head * head_dim))
            }
            KvCache::Tensors(cached) => {
                let k = k.transpose(1, 2)?.contiguous()?;
                let v = v.transpose(1, 2)?.contiguous()?;
                let (k, v) = match cached.take() {
                    Some((ck, cv)) => (Tensor::cat(&[&ck, &k], 2)?, Tensor::cat(&[&cv, &v], 2)?),
                    None => (k, v),
                };
                *cached = Some((k.clone(), v.clone()));
                let q = q.transpose(1, 2)?.contiguous()?;
                let k = repeat_kv(k, n_head / n_kv_head)?.contiguous()?;
                let v = repeat_kv(v, n_head / n_kv_head)?.contiguous()?;
                let att = (q.matmul(&k.t()?)? * scale as f64)?;
                let att = match t {
                    1 => att,
                    _ => {
                        let mask =
                            build_causal_mask(t, pos, q.device())?.broadcast_as(att.shape())?;
                        let neg_inf = Tensor::new(f32::NEG_INFINITY, q.device())?
                            .to_dtype(att.dtype())?
                            .broadcast_as(att.shape())?;
                        mask.where_cond(&neg_inf, &att)?
                    }
                };
                let y = candle_nn::ops::softmax_last_dim(&att)?.matmul(&v)?;
                y.transpose(1, 2)?.reshape((b, t, n_head * head_dim))
            }
        }
    }
}

/// Attention of a prompt chunk as two matrix products. `q` is `(1, t, heads, head_dim)`, `k`
/// and `v` are `(kv_len, kv_heads, head_dim)`; the query heads that share a KV head are
/// stacked so K and V are never repeated. Returns `(1, t, heads * head_dim)`.
fn matmul_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    pos: usize,
    heads: Heads,
) -> candle_core::Result<Tensor> {
    let Heads {
        n_head,
        n_kv_head,
        head_dim,
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
    let scores = (q.matmul(&k.t()?)? * (1.0 / (head_dim as f64).sqrt()))?;
    let mask = build_additive_causal_mask(t, pos, None, q.device(), DType::F32)?;
    let scores = scores
        .reshape((n_kv_head, group, t, kv_len))?
        .broadcast_add(&mask)?;
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
