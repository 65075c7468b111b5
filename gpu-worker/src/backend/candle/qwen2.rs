//! Qwen2 over GGUF weights: the default model's architecture, written for this worker.
//!
//! candle-transformers' `quantized_qwen2` computes the same thing, but it keeps the KV cache
//! inside weights that cannot be cloned, expands the token-embedding table to f32 (0.93 GB of
//! the default model's ~3 GB peak) and concatenates the whole cache every token. Here:
//!
//! - the embedding table stays quantized; a forward pass dequantizes only the rows it looks up;
//! - on the CPU, weights stay in their GGUF blocks, once (see `qmatrix.rs`), with Q/K/V and
//!   gate/up stacked so each group is one matrix product;
//! - weights sit behind an `Arc` shared by every generation, the cache in a [`Qwen2Session`];
//! - on the CPU, the cache is a preallocated interleaved buffer per layer that candle-nn's
//!   attention kernels read in place (see `attention.rs`).

use std::io::{Read, Seek};
use std::sync::Arc;

use anyhow::Context;
use candle_core::quantized::gguf_file;
use candle_core::{DType, Device, IndexOp, Module, Tensor};
use candle_nn::rotary_emb::rope_thd;
use candle_transformers::quantized_nn::RmsNorm;

use super::attention::{Heads, KvCache, MATMUL_ATTENTION_BYTES};
use super::linear::{Linear, Projection, WeightReader};
use super::model::{Model, Session};
use super::qmatrix::PromptTiles;

struct Layer {
    attn_norm: RmsNorm,
    /// Q, K, V.
    qkv: Projection,
    bq: Tensor,
    bk: Tensor,
    bv: Tensor,
    wo: Linear,
    ffn_norm: RmsNorm,
    /// Gate, up.
    gate_up: Projection,
    w_down: Linear,
}

struct Weights {
    heads: Heads,
    context_length: usize,
    device: Device,
    /// `(vocab, hidden)`, quantized.
    embed: Linear,
    layers: Vec<Layer>,
    norm: RmsNorm,
    output: Linear,
    /// Rotary tables, `(context_length, head_dim / 2)`.
    cos: Tensor,
    sin: Tensor,
}

/// A loaded Qwen2 model.
pub struct Qwen2 {
    weights: Arc<Weights>,
}

impl Qwen2 {
    /// Reads the weights named by `ct` from `reader`.
    pub fn from_gguf<R: Read + Seek>(
        ct: &gguf_file::Content,
        reader: &mut R,
        device: &Device,
        tiles: PromptTiles,
    ) -> anyhow::Result<Self> {
        let meta = |key: &str| {
            ct.metadata
                .get(&format!("qwen2.{key}"))
                .with_context(|| format!("GGUF has no qwen2.{key}"))
        };
        let n_head = meta("attention.head_count")?.to_u32()? as usize;
        let n_kv_head = meta("attention.head_count_kv")?.to_u32()? as usize;
        let hidden = meta("embedding_length")?.to_u32()? as usize;
        let head_dim = match meta("attention.key_length") {
            Ok(v) => v.to_u32()? as usize,
            Err(_) => hidden / n_head,
        };
        let heads = Heads {
            n_head,
            n_kv_head,
            head_dim,
            matmul_attention_bytes: MATMUL_ATTENTION_BYTES,
        };
        let context_length = meta("context_length")?.to_u32()? as usize;
        let blocks = meta("block_count")?.to_u32()? as usize;
        let eps = meta("attention.layer_norm_rms_epsilon")?.to_f32()? as f64;
        let rope_base = meta("rope.freq_base")
            .and_then(|v| Ok(v.to_f32()?))
            .unwrap_or(10_000.0);
        anyhow::ensure!(
            n_kv_head > 0 && n_head.is_multiple_of(n_kv_head),
            "qwen2: {n_head} heads are not a multiple of {n_kv_head} KV heads"
        );

        let mut tensor = |name: &str| {
            ct.tensor(reader, name, device)
                .with_context(|| format!("reading tensor {name}"))
        };
        let mut norms_and_biases = Vec::with_capacity(blocks);
        for i in 0..blocks {
            let mut t = |name: &str| tensor(&format!("blk.{i}.{name}"));
            norms_and_biases.push((
                RmsNorm::from_qtensor(t("attn_norm.weight")?, eps)?,
                t("attn_q.bias")?.dequantize(device)?,
                t("attn_k.bias")?.dequantize(device)?,
                t("attn_v.bias")?.dequantize(device)?,
                RmsNorm::from_qtensor(t("ffn_norm.weight")?, eps)?,
            ));
        }
        let norm = RmsNorm::from_qtensor(tensor("output_norm.weight")?, eps)?;

        let mut weights = WeightReader {
            content: ct,
            reader,
            device,
            tiles,
        };
        let embed = weights.linear("token_embd.weight")?;
        let mut layers = Vec::with_capacity(blocks);
        for (i, (attn_norm, bq, bk, bv, ffn_norm)) in norms_and_biases.into_iter().enumerate() {
            let name = |part: &str| format!("blk.{i}.{part}.weight");
            let (q, k, v) = (name("attn_q"), name("attn_k"), name("attn_v"));
            let (gate, up) = (name("ffn_gate"), name("ffn_up"));
            layers.push(Layer {
                attn_norm,
                qkv: weights.projection(&[&q, &k, &v])?,
                bq,
                bk,
                bv,
                wo: weights.linear(&name("attn_output"))?,
                ffn_norm,
                gate_up: weights.projection(&[&gate, &up])?,
                w_down: weights.linear(&name("ffn_down"))?,
            });
        }
        let output = match ct.tensor_infos.contains_key("output.weight") {
            true => weights.linear("output.weight")?,
            // Tied embeddings: the same quantized matrix, not a second copy.
            false => embed.clone(),
        };
        let (cos, sin) = rotary_tables(head_dim, rope_base, context_length, device)?;
        let weights = Weights {
            heads,
            context_length,
            device: device.clone(),
            embed,
            layers,
            norm,
            output,
            cos,
            sin,
        };
        Ok(Self {
            weights: Arc::new(weights),
        })
    }
}

fn rotary_tables(
    head_dim: usize,
    base: f32,
    positions: usize,
    device: &Device,
) -> candle_core::Result<(Tensor, Tensor)> {
    let inv_freq: Vec<f32> = (0..head_dim)
        .step_by(2)
        .map(|i| 1f32 / base.powf(i as f32 / head_dim as f32))
        .collect();
    let inv_freq = Tensor::new(inv_freq.as_slice(), device)?.reshape((1, head_dim / 2))?;
    let angles = Tensor::arange(0, positions as u32, device)?
        .to_dtype(DType::F32)?
        .reshape((positions, 1))?
        .matmul(&inv_freq)?;
    Ok((angles.cos()?, angles.sin()?))
}

impl Model for Qwen2 {
    fn new_session(&self, capacity: usize) -> anyhow::Result<Box<dyn Session>> {
        let w = &self.weights;
        let capacity = capacity.min(w.context_length);
        let caches = w
            .layers
            .iter()
            .map(|_| KvCache::new(&w.device, w.heads, capacity))
            .collect();
        Ok(Box::new(Qwen2Session {
            weights: w.clone(),
            caches,
        }))
    }

    fn context_length(&self) -> usize {
        self.weights.context_length
    }
}

/// One generation's KV cache over shared Qwen2 weights.
pub struct Qwen2Session {
    weights: Arc<Weights>,
    caches: Vec<KvCache>,
}

impl Session for Qwen2Session {
    fn forward(&mut self, tokens: &[u32], pos: usize) -> candle_core::Result<Tensor> {
        let w = &*self.weights;
        let t = tokens.len();
        if t == 0 || pos + t > w.context_length {
            candle_core::bail!(
                "qwen2: positions {pos}..{} outside the context of {}",
                pos + t,
                w.context_length
            );
        }
        let mut x = w.embed.embedding(tokens, &w.device)?;
        let cos = w.cos.narrow(0, pos, t)?;
        let sin = w.sin.narrow(0, pos, t)?;
        for (layer, cache) in w.layers.iter().zip(self.caches.iter_mut()) {
            x = layer.forward(&x, &cos, &sin, pos, cache, w.heads)?;
        }
        let last = x.i((.., t - 1.., ..))?.contiguous()?;
        let logits = w.output.forward(&w.norm.forward(&last)?)?;
        logits.flatten_all()
    }

    fn reset(&mut self) {
        self.caches.iter_mut().for_each(KvCache::reset);
    }
}

impl Layer {
    fn forward(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        pos: usize,
        cache: &mut KvCache,
        heads: Heads,
    ) -> candle_core::Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let Heads {
            n_head,
            n_kv_head,
            head_dim,
            ..
        } = heads;
        let h = self.attn_norm.forward(x)?;
        let [q, k, v] = three(self.qkv.forward(&h)?)?;
        let q = q
            .broadcast_add(&self.bq)?
            .reshape((b, t, n_head, head_dim))?;
        let k = k
            .broadcast_add(&self.bk)?
            .reshape((b, t, n_kv_head, head_dim))?;
        let v = v
            .broadcast_add(&self.bv)?
            .reshape((b, t, n_kv_head, head_dim))?;
        let q = rope_thd(&q, cos, sin)?;
        let k = rope_thd(&k, cos, sin)?;
        let y = cache.attend(&q, &k, &v, pos, heads)?;
        let x = (x + self.wo.forward(&y)?)?;

        let h = self.ffn_norm.forward(&x)?;
        let [gate, up] = two(self.gate_up.forward(&h)?)?;
        let y = self.w_down.forward(&(candle_nn::ops::silu(&gate)? * up)?)?;
        x + y
    }
}

fn three(outs: Vec<Tensor>) -> candle_core::Result<[Tensor; 3]> {
    <[Tensor; 3]>::try_from(outs)
        .map_err(|o| candle_core::Error::Msg(format!("{} outputs, not 3", o.len())))
}

fn two(outs: Vec<Tensor>) -> candle_core::Result<[Tensor; 2]> {
    <[Tensor; 2]>::try_from(outs)
        .map_err(|o| candle_core::Error::Msg(format!("{} outputs, not 2", o.len())))
}

#[cfg(test)]
mod tests {
    //! This model against candle-transformers' `quantized_qwen2` on a tiny random GGUF: the
    //! same logits for a prompt fed whole or in chunks, then for decode steps.

    use std::io::Cursor;

    use candle_core::quantized::gguf_file::{self, Value};
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_transformers::models::quantized_qwen2;

    use super::*;

    const HIDDEN: usize = 256;
    const VOCAB: usize = 256;
    const FFN: usize = 512;
    const LAYERS: usize = 2;

    /// A GGUF with K-quant matrices (so prompts take the tiled path) and f32 norms/biases.
    fn tiny_gguf(tied: bool) -> Vec<u8> {
        let meta = |k: &'static str, v: Value| (k, v);
        let metadata = [
            meta("general.architecture", Value::String("qwen2".into())),
            meta("qwen2.attention.head_count", Value::U32(4)),
            meta("qwen2.attention.head_count_kv", Value::U32(2)),
            meta("qwen2.embedding_length", Value::U32(HIDDEN as u32)),
            meta("qwen2.context_length", Value::U32(128)),
            meta("qwen2.block_count", Value::U32(LAYERS as u32)),
            meta("qwen2.attention.layer_norm_rms_epsilon", Value::F32(1e-6)),
            meta("qwen2.rope.freq_base", Value::F32(1_000_000.0)),
        ];
        let mut seed = 0u64;
        let mut tensor = |shape: &[usize], dtype: GgmlDType, scale: f32| {
            seed += 1;
            let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            let values: Vec<f32> = (0..shape.iter().product::<usize>())
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    ((state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
                })
                .collect();
            let t = Tensor::from_vec(values, shape, &Device::Cpu).unwrap();
            QTensor::quantize(&t, dtype).unwrap()
        };
        let mut tensors: Vec<(String, QTensor)> = vec![
            (
                "token_embd.weight".into(),
                tensor(&[VOCAB, HIDDEN], GgmlDType::Q4K, 1.0),
            ),
            (
                "output_norm.weight".into(),
                tensor(&[HIDDEN], GgmlDType::F32, 1.0),
            ),
        ];
        if !tied {
            tensors.push((
                "output.weight".into(),
                tensor(&[VOCAB, HIDDEN], GgmlDType::Q6K, 0.1),
            ));
        }
        let kv = HIDDEN / 2;
        for i in 0..LAYERS {
            for (name, shape, dtype) in [
                ("attn_q.weight", vec![HIDDEN, HIDDEN], GgmlDType::Q4K),
                ("attn_k.weight", vec![kv, HIDDEN], GgmlDType::Q4K),
                ("attn_v.weight", vec![kv, HIDDEN], GgmlDType::Q6K),
                ("attn_q.bias", vec![HIDDEN], GgmlDType::F32),
                ("attn_k.bias", vec![kv], GgmlDType::F32),
                ("attn_v.bias", vec![kv], GgmlDType::F32),
                ("attn_output.weight", vec![HIDDEN, HIDDEN], GgmlDType::Q8_0),
                ("ffn_gate.weight", vec![FFN, HIDDEN], GgmlDType::Q4K),
                ("ffn_up.weight", vec![FFN, HIDDEN], GgmlDType::Q4K),
                ("ffn_down.weight", vec![HIDDEN, FFN], GgmlDType::Q6K),
                ("attn_norm.weight", vec![HIDDEN], GgmlDType::F32),
                ("ffn_norm.weight", vec![HIDDEN], GgmlDType::F32),
            ] {
                tensors.push((format!("blk.{i}.{name}"), tensor(&shape, dtype, 0.1)));
            }
        }
        let mut out = Cursor::new(Vec::new());
        let metadata: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
        let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
        gguf_file::write(&mut out, &metadata, &tensors).unwrap();
        out.into_inner()
    }

    fn ours(bytes: &[u8]) -> Box<dyn Session> {
        ours_with(bytes, MATMUL_ATTENTION_BYTES, PromptTiles::Transient)
    }

    fn ours_with(
        bytes: &[u8],
        matmul_attention_bytes: usize,
        tiles: PromptTiles,
    ) -> Box<dyn Session> {
        let mut reader = Cursor::new(bytes);
        let content = gguf_file::Content::read(&mut reader).unwrap();
        let mut model = Qwen2::from_gguf(&content, &mut reader, &Device::Cpu, tiles).unwrap();
        Arc::get_mut(&mut model.weights)
            .unwrap()
            .heads
            .matmul_attention_bytes = matmul_attention_bytes;
        model.new_session(8).unwrap()
    }

    fn reference(bytes: &[u8]) -> quantized_qwen2::ModelWeights {
        let mut reader = Cursor::new(bytes);
        let content = gguf_file::Content::read(&mut reader).unwrap();
        quantized_qwen2::ModelWeights::from_gguf(content, &mut reader, &Device::Cpu).unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        let b = b.flatten_all().unwrap();
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    /// Largest difference relative to the largest logit: activations are quantized to 8 bits
    /// before each product, differently in the tiled and block kernels.
    fn relative_diff(a: &Tensor, b: &Tensor) -> f32 {
        let scale = b
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        max_diff(a, b) / scale.max(1e-6)
    }

    fn compare(tied: bool, chunk: usize) {
        compare_with(tied, chunk, MATMUL_ATTENTION_BYTES, PromptTiles::Transient);
    }

    fn compare_with(tied: bool, chunk: usize, matmul_attention_bytes: usize, tiles: PromptTiles) {
        let bytes = tiny_gguf(tied);
        let mut session = ours_with(&bytes, matmul_attention_bytes, tiles);
        let mut candle = reference(&bytes);
        let prompt: Vec<u32> = (0..48).map(|i| (i * 37 + 11) % VOCAB as u32).collect();

        let mut logits = None;
        for (i, piece) in prompt.chunks(chunk).enumerate() {
            logits = Some(session.forward(piece, i * chunk).unwrap());
        }
        let ids = Tensor::new(prompt.as_slice(), &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let expected = candle.forward(&ids, 0).unwrap();
        let diff = relative_diff(&logits.unwrap(), &expected);
        assert!(
            diff < 1e-2,
            "prompt logits differ by {diff} (tied {tied}, chunk {chunk})"
        );

        for (step, token) in [5u32, 77, 200].into_iter().enumerate() {
            let pos = prompt.len() + step;
            let got = session.forward(&[token], pos).unwrap();
            let ids = Tensor::new(&[token], &Device::Cpu)
                .unwrap()
                .unsqueeze(0)
                .unwrap();
            let expected = candle.forward(&ids, pos).unwrap();
            let diff = relative_diff(&got, &expected);
            assert!(diff < 1e-2, "decode step {step} logits differ by {diff}");
        }
    }

    #[test]
    fn matches_candle_quantized_qwen2_whole_prompt() {
        compare(false, 64);
    }

    #[test]
    fn matches_candle_quantized_qwen2_in_chunks() {
        compare(false, 7);
    }

    #[test]
    fn matches_candle_quantized_qwen2_with_tied_embeddings() {
        compare(true, 16);
    }

    #[test]
    fn matches_candle_quantized_qwen2_with_flash_attention_for_prompts() {
        compare_with(false, 7, 0, PromptTiles::Transient);
    }

    #[test]
    fn matches_candle_quantized_qwen2_with_kept_prompt_tiles() {
        compare_with(false, 16, MATMUL_ATTENTION_BYTES, PromptTiles::Kept);
    }

    #[test]
    fn a_reset_session_starts_over() {
        let bytes = tiny_gguf(false);
        let mut session = ours(&bytes);
        let first = session.forward(&[1, 2, 3], 0).unwrap();
        session.reset();
        let again = session.forward(&[1, 2, 3], 0).unwrap();
        assert_eq!(max_diff(&first, &again), 0.0);
    }
}
