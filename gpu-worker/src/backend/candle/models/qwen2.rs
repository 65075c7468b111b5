//! Qwen2 over GGUF weights: the default model's architecture, written for this worker.
//!
//! candle-transformers' `quantized_qwen2` computes the same thing, but it keeps the KV cache
//! inside weights that cannot be cloned, expands the token-embedding table to f32 (0.93 GB of
//! the default model's ~3 GB peak) and concatenates the whole cache every token. Here:
//!
//! - the embedding table stays quantized; a forward pass dequantizes only the rows it looks up;
//! - on the CPU, weights stay in their GGUF blocks, once (see `qmatrix.rs`), with Q/K/V and
//!   gate/up stacked so each group is one matrix product;
//! - weights sit behind an `Arc` shared by every generation, the cache in a session of its own
//!   (`transformer.rs`), and one forward pass takes several sequences' rows (`step_rows.rs`);
//! - on the CPU, the cache is an interleaved buffer per layer, sized for the generation up
//!   front, that candle-nn's decode kernel reads in place (see `attention.rs`).

use std::io::{Read, Seek};

use anyhow::Context;
use candle_core::quantized::gguf_file;
use candle_core::{Device, Module, Tensor};
use candle_nn::rotary_emb::rope_thd;
use candle_transformers::quantized_nn::RmsNorm;

use super::attention::Heads;
use super::linear::{Linear, Projection, WeightReader};
use super::registry::GgufInput;
use super::rotary::Rotary;
use super::step_rows::{LayerStep, SeqRows, StepRows};
use super::transformer::{CacheLayout, Transformer};
use super::{Model, TransformerModel};
use crate::backend::candle::gguf_meta::ArchMeta;
use crate::backend::candle::kernels::qmatrix::PromptTiles;

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

/// A loaded Qwen2 model.
pub struct Qwen2 {
    layout: CacheLayout,
    /// `(vocab, hidden)`, quantized.
    embed: Linear,
    layers: Vec<Layer>,
    norm: RmsNorm,
    output: Linear,
    rotary: Rotary,
}

impl Qwen2 {
    /// Reads the weights named by `ct` from `reader`.
    pub fn from_gguf<R: Read + Seek>(
        ct: &gguf_file::Content,
        reader: &mut R,
        device: &Device,
        tiles: PromptTiles,
    ) -> anyhow::Result<Self> {
        let meta = ArchMeta::new(ct, "qwen2");
        let n_head = meta.usize("attention.head_count")?;
        let n_kv_head = meta.usize("attention.head_count_kv")?;
        let hidden = meta.usize("embedding_length")?;
        let head_dim = meta
            .optional_usize("attention.key_length")?
            .unwrap_or(hidden / n_head);
        let heads = Heads::new(n_head, n_kv_head, head_dim);
        let context_length = meta.usize("context_length")?;
        let blocks = meta.usize("block_count")?;
        let eps = meta.f32("attention.layer_norm_rms_epsilon")? as f64;
        let rope_base = meta.optional_f32("rope.freq_base")?.unwrap_or(10_000.0);
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
        let output = weights.output_or_tied(&embed)?;
        let rotary = Rotary::new(head_dim, rope_base, 1.0, device)?;
        Ok(Self {
            layout: CacheLayout {
                heads,
                windows: vec![None; layers.len()],
                context_length,
                device: device.clone(),
            },
            embed,
            layers,
            norm,
            output,
            rotary,
        })
    }
}

impl Transformer for Qwen2 {
    const NAME: &'static str = "qwen2";

    fn layout(&self) -> &CacheLayout {
        &self.layout
    }

    fn forward(&self, seqs: &mut [SeqRows<'_>]) -> candle_core::Result<Vec<Option<Tensor>>> {
        let rows = StepRows::new(seqs)?;
        let mut x = self.embed.embedding(rows.ids(), &self.layout.device)?;
        let angles = self.rotary.tables(rows.positions())?;
        for (index, layer) in self.layers.iter().enumerate() {
            let at = LayerStep {
                rows: &rows,
                seqs: &mut *seqs,
                index,
            };
            x = layer.forward(&x, &angles, at, self.layout.heads)?;
        }
        rows.logits(&x, |last| self.output.forward(&self.norm.forward(last)?))
    }
}

impl Layer {
    fn forward(
        &self,
        x: &Tensor,
        (cos, sin): &(Tensor, Tensor),
        at: LayerStep<'_, '_>,
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
        let [q, k, v] = self.qkv.forward_array(&h)?;
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
        let y = at.attend((&q, &k, &v), heads)?;
        let x = (x + self.wo.forward(&y)?)?;

        let h = self.ffn_norm.forward(&x)?;
        let [gate, up] = self.gate_up.forward_array(&h)?;
        let y = self.w_down.forward(&(candle_nn::ops::silu(&gate)? * up)?)?;
        x + y
    }
}

/// The `qwen2` row of the registry.
pub fn load_gguf(input: GgufInput<'_>) -> anyhow::Result<Box<dyn Model>> {
    let mut weights = input.weights;
    let model = Qwen2::from_gguf(&input.content, &mut weights, input.device, input.tiles)?;
    Ok(Box::new(TransformerModel::new(model)))
}

#[cfg(test)]
mod tests {
    //! This model against candle-transformers' `quantized_qwen2` on a tiny random GGUF: the
    //! same logits for a prompt fed whole or in chunks, then for decode steps.

    use candle_core::quantized::gguf_file::Value;
    use candle_core::quantized::GgmlDType;
    use candle_transformers::models::quantized_qwen2;

    use super::*;
    use crate::backend::candle::models::transformer::TransformerModel;
    use crate::backend::candle::models::{Model, Session, StepInput};
    use crate::backend::candle::test_gguf::{
        fed_in_chunks, gguf_bytes, ids, max_diff, read, relative_diff, RandomTensors,
    };

    const HIDDEN: usize = 256;
    const VOCAB: usize = 256;
    const FFN: usize = 512;
    const LAYERS: usize = 2;

    /// A GGUF with K-quant matrices (so prompts take the tiled path) and f32 norms/biases.
    fn tiny_gguf(tied: bool) -> Vec<u8> {
        let metadata = [
            ("general.architecture", Value::String("qwen2".into())),
            ("qwen2.attention.head_count", Value::U32(4)),
            ("qwen2.attention.head_count_kv", Value::U32(2)),
            ("qwen2.embedding_length", Value::U32(HIDDEN as u32)),
            ("qwen2.context_length", Value::U32(128)),
            ("qwen2.block_count", Value::U32(LAYERS as u32)),
            ("qwen2.attention.layer_norm_rms_epsilon", Value::F32(1e-6)),
            ("qwen2.rope.freq_base", Value::F32(1_000_000.0)),
        ];
        let mut random = RandomTensors::default();
        let mut tensors = vec![
            (
                "token_embd.weight".to_owned(),
                random.next(&[VOCAB, HIDDEN], GgmlDType::Q4K, 1.0),
            ),
            (
                "output_norm.weight".to_owned(),
                random.next(&[HIDDEN], GgmlDType::F32, 1.0),
            ),
        ];
        if !tied {
            tensors.push((
                "output.weight".to_owned(),
                random.next(&[VOCAB, HIDDEN], GgmlDType::Q6K, 0.1),
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
                tensors.push((format!("blk.{i}.{name}"), random.next(&shape, dtype, 0.1)));
            }
        }
        gguf_bytes(&metadata, &tensors)
    }

    fn ours(bytes: &[u8]) -> Box<dyn Session> {
        ours_with(bytes, PromptTiles::Never)
    }

    fn ours_with(bytes: &[u8], tiles: PromptTiles) -> Box<dyn Session> {
        let (content, mut reader) = read(bytes);
        let model = Qwen2::from_gguf(&content, &mut reader, &Device::Cpu, tiles).unwrap();
        TransformerModel::new(model).new_session(8).unwrap()
    }

    fn reference(bytes: &[u8]) -> quantized_qwen2::ModelWeights {
        let (content, mut reader) = read(bytes);
        quantized_qwen2::ModelWeights::from_gguf(content, &mut reader, &Device::Cpu).unwrap()
    }

    fn compare(tied: bool, chunk: usize) {
        compare_with(tied, chunk, PromptTiles::Never);
    }

    fn compare_with(tied: bool, chunk: usize, tiles: PromptTiles) {
        let bytes = tiny_gguf(tied);
        let mut session = ours_with(&bytes, tiles);
        let mut candle = reference(&bytes);
        let prompt: Vec<u32> = (0..48).map(|i| (i * 37 + 11) % VOCAB as u32).collect();

        let logits = fed_in_chunks(session.as_mut(), &prompt, chunk);
        let expected = candle.forward(&ids(&prompt), 0).unwrap();
        let diff = relative_diff(&logits, &expected);
        assert!(
            diff < 1e-2,
            "prompt logits differ by {diff} (tied {tied}, chunk {chunk})"
        );

        for (step, token) in [5u32, 77, 200].into_iter().enumerate() {
            let pos = prompt.len() + step;
            let got = session.forward(&[token], pos).unwrap();
            let expected = candle.forward(&ids(&[token]), pos).unwrap();
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
    fn matches_candle_quantized_qwen2_with_kept_prompt_tiles() {
        compare_with(false, 16, PromptTiles::Kept);
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

    /// Steps of three sequences: `(sequence, tokens, position, logits wanted)`.
    type Step<'a> = Vec<(usize, &'a [u32], usize, bool)>;

    fn run_steps(model: &dyn Model, steps: &[Step<'_>]) -> Vec<Vec<Option<Tensor>>> {
        let mut sessions: Vec<_> = (0..3).map(|_| model.new_session(32).unwrap()).collect();
        steps
            .iter()
            .map(|step| {
                let mut picked: Vec<Option<&mut Box<dyn Session>>> =
                    sessions.iter_mut().map(Some).collect();
                let mut inputs: Vec<StepInput<'_>> = step
                    .iter()
                    .map(|&(seq, tokens, pos, logits)| StepInput {
                        session: picked[seq].take().unwrap().as_mut(),
                        tokens,
                        pos,
                        logits,
                    })
                    .collect();
                model.forward_batch(&mut inputs).unwrap()
            })
            .collect()
    }

    #[test]
    fn a_sequence_gets_the_same_logits_alone_and_in_any_batch() {
        let bytes = tiny_gguf(false);
        let (content, mut reader) = read(&bytes);
        let qwen2 = Qwen2::from_gguf(&content, &mut reader, &Device::Cpu, PromptTiles::Never);
        let model = TransformerModel::new(qwen2.unwrap());
        let prompt: Vec<u32> = (0..20).map(|i| (i * 37 + 11) % VOCAB as u32).collect();
        let other: Vec<u32> = (0..9).map(|i| (i * 13 + 3) % VOCAB as u32).collect();
        let decode = [[5u32], [77], [200]];

        // Alone: the whole prompt in one step, then one token a step.
        let mut alone: Vec<Step<'_>> = vec![vec![(0, &prompt[..], 0, true)]];
        for (i, token) in decode.iter().enumerate() {
            alone.push(vec![(0, &token[..], 20 + i, true)]);
        }
        // Beside two others: the prompt in two chunks, each step shared with another
        // sequence's prompt chunk or decode step, in another order each time.
        let batched: Vec<Step<'_>> = vec![
            vec![(1, &other[..], 0, true), (0, &prompt[..7], 0, false)],
            vec![
                (2, &other[..4], 0, false),
                (0, &prompt[7..], 7, true),
                (1, &decode[0], 9, true),
            ],
            vec![(0, &decode[0], 20, true), (2, &other[4..], 4, true)],
            vec![
                (1, &decode[1], 10, true),
                (2, &decode[1], 9, true),
                (0, &decode[1], 21, true),
            ],
            vec![(0, &decode[2], 22, true)],
        ];

        let expected: Vec<Tensor> = run_steps(&model, &alone)
            .into_iter()
            .map(|mut out| out.remove(0).unwrap())
            .collect();
        let got = run_steps(&model, &batched);
        let ours = |step: usize, index: usize| got[step][index].clone().unwrap();
        assert!(
            got[0][1].is_none(),
            "a chunk before the last wants no logits"
        );
        for (want, have) in expected
            .iter()
            .zip([ours(1, 1), ours(2, 0), ours(3, 2), ours(4, 0)])
        {
            assert_eq!(max_diff(want, &have), 0.0);
        }
    }

    #[test]
    fn a_copied_prefix_gives_the_same_logits_as_feeding_it() {
        let bytes = tiny_gguf(false);
        let (content, mut reader) = read(&bytes);
        let qwen2 = Qwen2::from_gguf(&content, &mut reader, &Device::Cpu, PromptTiles::Never);
        let model = TransformerModel::new(qwen2.unwrap());
        let prompt: Vec<u32> = (0..24).map(|i| (i * 37 + 11) % VOCAB as u32).collect();

        let mut fed = model.new_session(32).unwrap();
        let expected = fed.forward(&prompt, 0).unwrap();
        let mut copied = model.new_session(32).unwrap();
        assert!(model
            .copy_prefix(fed.as_ref(), copied.as_mut(), 16)
            .unwrap());
        let got = copied.forward(&prompt[16..], 16).unwrap();

        assert_eq!(max_diff(&expected, &got), 0.0);
        let mut short = model.new_session(32).unwrap();
        assert!(!model.copy_prefix(fed.as_ref(), short.as_mut(), 25).unwrap());
    }
}
