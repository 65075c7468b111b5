//! Gemma 3 over GGUF weights, written for this worker like `qwen2.rs` and on the same parts:
//! blocks kept once (Q/K/V and gate/up stacked), an embedding table that stays quantized, and a
//! per-generation cache that takes prompts in chunks.
//!
//! candle-transformers' `quantized_gemma3` cannot serve here: a forward of several tokens after
//! the first masks out the whole cached prefix (so prompts cannot go in chunks), decode steps
//! ignore the sliding window, and its feed-forward uses SiLU where Gemma 3 uses tanh-GELU. This
//! one follows llama.cpp's reading of the same files:
//!
//! - the embedding is scaled by `sqrt(hidden)`; norm weights are used as stored (the converter
//!   already added Gemma's `1 +`);
//! - Q and K are RMS-normalised per head before the rotary embedding;
//! - each block normalises its attention and feed-forward outputs before the residual add;
//! - every `attention.sliding_window_pattern`-th layer (default 6) is global, with
//!   `rope.freq_base` (default 10,000) and linear `rope.scaling.factor`; the others see the
//!   last `attention.sliding_window` positions, with `rope.freq_base_swa` (default 10,000) and
//!   no scaling (without a window, every layer is global);
//! - scores are scaled by `1 / sqrt(head_dim)`, except for the 62-layer (27B) model, which
//!   scales by `1 / sqrt(hidden / heads)` as its `query_pre_attn_scalar` says;
//! - logits are capped by `final_logit_softcapping` where the file gives it.
//!
//! candle's names for the same two settings, `attention.sliding_window_type` and
//! `rope.local_freq_base`, are read where llama.cpp's are absent. A key present in another type
//! than expected is a load error naming it, never a silent default.

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

/// Layers are global every this many unless the file says otherwise.
const DEFAULT_SLIDING_WINDOW_TYPE: usize = 6;
/// The rotary base of the local layers unless the file says otherwise.
const DEFAULT_LOCAL_ROPE_BASE: f32 = 10_000.0;
/// The global layers' rotary base unless the file says otherwise (llama.cpp's default for
/// every architecture; released Gemma 3 files say 1,000,000).
const DEFAULT_ROPE_BASE: f32 = 10_000.0;
/// Gemma 3 27B's layer count: its scores are scaled by its hidden size per head.
const LAYERS_27B: usize = 62;

/// The norms of one block, read before its matrices.
struct Norms {
    attn: RmsNorm,
    q: RmsNorm,
    k: RmsNorm,
    post_attn: RmsNorm,
    ffn: RmsNorm,
    post_ffn: RmsNorm,
}

struct Layer {
    norms: Norms,
    /// Q, K, V.
    qkv: Projection,
    wo: Linear,
    /// Gate, up.
    gate_up: Projection,
    w_down: Linear,
    /// Positions a query sees, itself included; `None` for a global layer.
    window: Option<usize>,
}

/// A loaded Gemma3 model.
pub struct Gemma3 {
    layout: CacheLayout,
    hidden: usize,
    /// `(vocab, hidden)`, quantized.
    embed: Linear,
    layers: Vec<Layer>,
    norm: RmsNorm,
    output: Linear,
    /// `c` in `c · tanh(logits / c)`, where the file caps logits.
    softcap: Option<f64>,
    global_rotary: Rotary,
    local_rotary: Rotary,
}

/// What scores are multiplied by: `1 / sqrt(query_pre_attn_scalar)`, which the GGUF does not
/// carry. It is the head size for every released Gemma 3 but the 27B (62 layers), where it is
/// `hidden / heads` (llama.cpp's rule).
fn attention_scale(blocks: usize, hidden: usize, n_head: usize, head_dim: usize) -> f32 {
    let query_pre_attn_scalar = match blocks {
        LAYERS_27B => hidden / n_head,
        _ => head_dim,
    };
    1.0 / (query_pre_attn_scalar as f32).sqrt()
}

impl Gemma3 {
    /// Reads the weights named by `ct` from `reader`.
    pub fn from_gguf<R: Read + Seek>(
        ct: &gguf_file::Content,
        reader: &mut R,
        device: &Device,
        tiles: PromptTiles,
    ) -> anyhow::Result<Self> {
        let meta = ArchMeta::new(ct, "gemma3");
        let n_head = meta.usize("attention.head_count")?;
        let n_kv_head = meta.usize("attention.head_count_kv")?;
        let hidden = meta.usize("embedding_length")?;
        let head_dim = meta.usize("attention.key_length")?;
        let blocks = meta.usize("block_count")?;
        let context_length = meta.usize("context_length")?;
        let eps = meta.f32("attention.layer_norm_rms_epsilon")? as f64;
        let window = meta
            .optional_usize("attention.sliding_window")?
            .filter(|&w| w > 0);
        let window_type = match meta.optional_usize("attention.sliding_window_pattern")? {
            Some(pattern) => pattern,
            None => meta
                .optional_usize("attention.sliding_window_type")?
                .unwrap_or(DEFAULT_SLIDING_WINDOW_TYPE),
        };
        let rope_base = meta
            .optional_f32("rope.freq_base")?
            .unwrap_or(DEFAULT_ROPE_BASE);
        let local_rope_base = match meta.optional_f32("rope.freq_base_swa")? {
            Some(base) => base,
            None => meta
                .optional_f32("rope.local_freq_base")?
                .unwrap_or(DEFAULT_LOCAL_ROPE_BASE),
        };
        let rope_factor = meta
            .optional_f32("rope.scaling.factor")?
            .filter(|&f| f > 0.0)
            .unwrap_or(1.0);
        let softcap = meta
            .optional_f32("final_logit_softcapping")?
            .filter(|&c| c > 0.0);
        anyhow::ensure!(
            n_kv_head > 0 && n_head.is_multiple_of(n_kv_head),
            "gemma3: {n_head} heads are not a multiple of {n_kv_head} KV heads"
        );
        anyhow::ensure!(window_type > 0, "gemma3: a sliding window pattern of 0");
        let mut heads = Heads::new(n_head, n_kv_head, head_dim);
        heads.scale = attention_scale(blocks, hidden, n_head, head_dim);

        let mut tensor = |name: &str| {
            ct.tensor(reader, name, device)
                .with_context(|| format!("reading tensor {name}"))
        };
        let mut norms = Vec::with_capacity(blocks);
        for i in 0..blocks {
            let mut norm = |name: &str| -> anyhow::Result<RmsNorm> {
                let weight = tensor(&format!("blk.{i}.{name}.weight"))?;
                Ok(RmsNorm::from_qtensor(weight, eps)?)
            };
            norms.push(Norms {
                attn: norm("attn_norm")?,
                q: norm("attn_q_norm")?,
                k: norm("attn_k_norm")?,
                post_attn: norm("post_attention_norm")?,
                ffn: norm("ffn_norm")?,
                post_ffn: norm("post_ffw_norm")?,
            });
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
        for (i, norms) in norms.into_iter().enumerate() {
            let name = |part: &str| format!("blk.{i}.{part}.weight");
            let (q, k, v) = (name("attn_q"), name("attn_k"), name("attn_v"));
            let (gate, up) = (name("ffn_gate"), name("ffn_up"));
            let global = (i + 1).is_multiple_of(window_type);
            layers.push(Layer {
                norms,
                qkv: weights.projection(&[&q, &k, &v])?,
                wo: weights.linear(&name("attn_output"))?,
                gate_up: weights.projection(&[&gate, &up])?,
                w_down: weights.linear(&name("ffn_down"))?,
                window: window.filter(|_| !global),
            });
        }
        let output = weights.output_or_tied(&embed)?;
        Ok(Self {
            layout: CacheLayout {
                heads,
                windows: layers.iter().map(|layer| layer.window).collect(),
                context_length,
                device: device.clone(),
            },
            hidden,
            embed,
            layers,
            norm,
            output,
            softcap: softcap.map(f64::from),
            global_rotary: Rotary::new(head_dim, rope_base, 1.0 / rope_factor, device)?,
            local_rotary: Rotary::new(head_dim, local_rope_base, 1.0, device)?,
        })
    }
}

/// The rotary tables of this forward pass, global and local.
struct Angles {
    global: (Tensor, Tensor),
    local: (Tensor, Tensor),
}

impl Transformer for Gemma3 {
    const NAME: &'static str = "gemma3";

    fn layout(&self) -> &CacheLayout {
        &self.layout
    }

    fn forward(&self, seqs: &mut [SeqRows<'_>]) -> candle_core::Result<Vec<Option<Tensor>>> {
        let rows = StepRows::new(seqs)?;
        let mut x =
            (self.embed.embedding(rows.ids(), &self.layout.device)? * (self.hidden as f64).sqrt())?;
        let angles = Angles {
            global: self.global_rotary.tables(rows.positions())?,
            local: self.local_rotary.tables(rows.positions())?,
        };
        for (index, layer) in self.layers.iter().enumerate() {
            let at = LayerStep {
                rows: &rows,
                seqs: &mut *seqs,
                index,
            };
            x = layer.forward(&x, &angles, at, self.layout.heads)?;
        }
        rows.logits(&x, |last| {
            let logits = self.output.forward(&self.norm.forward(last)?)?;
            match self.softcap {
                Some(cap) => (logits / cap)?.tanh()? * cap,
                None => Ok(logits),
            }
        })
    }
}

impl Layer {
    fn forward(
        &self,
        x: &Tensor,
        angles: &Angles,
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
        let norms = &self.norms;
        let h = norms.attn.forward(x)?;
        let [q, k, v] = self.qkv.forward_array(&h)?;
        let q = norms.q.forward(&q.reshape((b, t, n_head, head_dim))?)?;
        let k = norms.k.forward(&k.reshape((b, t, n_kv_head, head_dim))?)?;
        let v = v.reshape((b, t, n_kv_head, head_dim))?;
        let (cos, sin) = match self.window {
            Some(_) => &angles.local,
            None => &angles.global,
        };
        let q = rope_thd(&q, cos, sin)?;
        let k = rope_thd(&k, cos, sin)?;
        let y = at.attend((&q, &k, &v), heads)?;
        let x = (x + norms.post_attn.forward(&self.wo.forward(&y)?)?)?;

        let h = norms.ffn.forward(&x)?;
        let [gate, up] = self.gate_up.forward_array(&h)?;
        let y = self.w_down.forward(&(gate.gelu()? * up)?)?;
        x + norms.post_ffn.forward(&y)?
    }
}

/// The `gemma3` row of the registry.
pub fn load_gguf(input: GgufInput<'_>) -> anyhow::Result<Box<dyn Model>> {
    let mut weights = input.weights;
    let model = Gemma3::from_gguf(&input.content, &mut weights, input.device, input.tiles)?;
    Ok(Box::new(TransformerModel::new(model)))
}

#[cfg(test)]
mod tests {
    //! This model against candle-transformers' full-precision `gemma3` (the Hugging Face
    //! layout) fed the same weights dequantized, and against itself fed in chunks.
    //!
    //! The reference is fed one token at a time: its prompt path fails on the CPU (it writes a
    //! transposed V into its cache) and its prompt mask lets a local layer see one position too
    //! many, but its decode steps keep exactly the last `window` positions.

    use std::collections::HashMap;

    use candle_core::quantized::gguf_file::Value;
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::DType;
    use candle_nn::{Activation, VarBuilder};
    use candle_transformers::models::gemma3 as reference;

    use super::*;
    use crate::backend::candle::models::transformer::TransformerModel;
    use crate::backend::candle::models::{Model, Session};
    use crate::backend::candle::test_gguf::{
        fed_in_chunks, gguf_bytes, ids, max_diff, read, relative_diff, RandomTensors,
    };

    const HIDDEN: usize = 256;
    const VOCAB: usize = 256;
    const FFN: usize = 512;
    const HEADS: usize = 4;
    const KV_HEADS: usize = 2;
    const HEAD_DIM: usize = 64;
    /// Layers 0 and 2 local, layer 1 global.
    const LAYERS: usize = 3;
    const WINDOW_TYPE: usize = 2;
    const WINDOW: usize = 6;
    const CONTEXT: usize = 64;

    /// GGUF name, Hugging Face name and quantization of each block's matrices and norms.
    const BLOCK: [(&str, &str, Option<GgmlDType>); 13] = [
        ("attn_q", "self_attn.q_proj", Some(GgmlDType::Q4K)),
        ("attn_k", "self_attn.k_proj", Some(GgmlDType::Q4K)),
        ("attn_v", "self_attn.v_proj", Some(GgmlDType::Q6K)),
        ("attn_output", "self_attn.o_proj", Some(GgmlDType::Q8_0)),
        ("ffn_gate", "mlp.gate_proj", Some(GgmlDType::Q4K)),
        ("ffn_up", "mlp.up_proj", Some(GgmlDType::Q4K)),
        ("ffn_down", "mlp.down_proj", Some(GgmlDType::Q6K)),
        ("attn_norm", "input_layernorm", None),
        ("attn_q_norm", "self_attn.q_norm", None),
        ("attn_k_norm", "self_attn.k_norm", None),
        ("post_attention_norm", "post_attention_layernorm", None),
        ("ffn_norm", "pre_feedforward_layernorm", None),
        ("post_ffw_norm", "post_feedforward_layernorm", None),
    ];

    fn shape(gguf_name: &str) -> (usize, usize) {
        let (q, kv) = (HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM);
        match gguf_name {
            "attn_q" => (q, HIDDEN),
            "attn_k" | "attn_v" => (kv, HIDDEN),
            "attn_output" => (HIDDEN, q),
            "ffn_gate" | "ffn_up" => (FFN, HIDDEN),
            "ffn_down" => (HIDDEN, FFN),
            "attn_q_norm" | "attn_k_norm" => (1, HEAD_DIM),
            _ => (1, HIDDEN),
        }
    }

    /// The GGUF tensors and the same weights under their Hugging Face names, dequantized
    /// (norm weights without the `1 +` the converter adds).
    struct Checkpoint {
        gguf: Vec<u8>,
        hf: HashMap<String, Tensor>,
    }

    /// Matrices in the quantizations of [`BLOCK`].
    fn checkpoint() -> Checkpoint {
        checkpoint_with(WINDOW_TYPE, true)
    }

    /// With a `window_type` above [`LAYERS`], every layer is local; without `quantized`,
    /// every matrix is f32, so only summation order separates this model from the reference.
    fn checkpoint_with(window_type: usize, quantized: bool) -> Checkpoint {
        checkpoint_with_extra(window_type, quantized, Vec::new())
    }

    /// [`checkpoint_with`], with `extra` metadata replacing or adding to the usual.
    fn checkpoint_with_extra(
        window_type: usize,
        quantized: bool,
        extra: Vec<(&str, Value)>,
    ) -> Checkpoint {
        let dtype = |quantization: GgmlDType| match quantized {
            true => quantization,
            false => GgmlDType::F32,
        };
        let arch = |key: &str| format!("gemma3.{key}");
        let metadata = [
            (arch("attention.head_count"), Value::U32(HEADS as u32)),
            (arch("attention.head_count_kv"), Value::U32(KV_HEADS as u32)),
            (arch("embedding_length"), Value::U32(HIDDEN as u32)),
            (arch("attention.key_length"), Value::U32(HEAD_DIM as u32)),
            (arch("attention.value_length"), Value::U32(HEAD_DIM as u32)),
            (arch("context_length"), Value::U32(CONTEXT as u32)),
            (arch("block_count"), Value::U32(LAYERS as u32)),
            (arch("attention.layer_norm_rms_epsilon"), Value::F32(1e-6)),
            (arch("attention.sliding_window"), Value::U32(WINDOW as u32)),
            (
                arch("attention.sliding_window_type"),
                Value::U32(window_type as u32),
            ),
            (arch("rope.freq_base"), Value::F32(1_000_000.0)),
        ];
        let mut random = RandomTensors::default();
        let mut hf = HashMap::new();
        let mut tensors = Vec::new();
        let mut add = |gguf: String, hf_name: String, tensor: QTensor, is_norm: bool| {
            let dense = tensor.dequantize(&Device::Cpu).unwrap();
            let dense = match is_norm {
                true => (dense - 1.0).unwrap(),
                false => dense,
            };
            hf.insert(hf_name, dense);
            tensors.push((gguf, tensor));
        };
        let embed = random.next(&[VOCAB, HIDDEN], dtype(GgmlDType::Q8_0), 0.1);
        add(
            "token_embd.weight".into(),
            "model.embed_tokens.weight".into(),
            embed,
            false,
        );
        let norm = random.norm(HIDDEN, 0.2);
        add(
            "output_norm.weight".into(),
            "model.norm.weight".into(),
            norm,
            true,
        );
        for i in 0..LAYERS {
            for (gguf, hf_name, quantization) in BLOCK {
                let (rows, cols) = shape(gguf);
                let tensor = match quantization {
                    Some(quantization) => random.next(&[rows, cols], dtype(quantization), 0.1),
                    None => random.norm(cols, 0.2),
                };
                add(
                    format!("blk.{i}.{gguf}.weight"),
                    format!("model.layers.{i}.{hf_name}.weight"),
                    tensor,
                    quantization.is_none(),
                );
            }
        }
        let mut metadata: Vec<(&str, Value)> = metadata
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .filter(|(k, _)| extra.iter().all(|(e, _)| e != k))
            .collect();
        metadata.push(("general.architecture", Value::String("gemma3".into())));
        metadata.extend(extra);
        Checkpoint {
            gguf: gguf_bytes(&metadata, &tensors),
            hf,
        }
    }

    fn ours(checkpoint: &Checkpoint) -> Box<dyn Session> {
        let (content, mut reader) = read(&checkpoint.gguf);
        let model =
            Gemma3::from_gguf(&content, &mut reader, &Device::Cpu, PromptTiles::Never).unwrap();
        TransformerModel::new(model).new_session(8).unwrap()
    }

    fn reference(checkpoint: &Checkpoint) -> reference::Model {
        let config = reference::Config {
            attention_bias: false,
            head_dim: HEAD_DIM,
            hidden_activation: Activation::GeluPytorchTanh,
            hidden_size: HIDDEN,
            intermediate_size: FFN,
            num_attention_heads: HEADS,
            num_hidden_layers: LAYERS,
            num_key_value_heads: KV_HEADS,
            rms_norm_eps: 1e-6,
            rope_theta: 1_000_000.0,
            rope_local_base_freq: 10_000.0,
            vocab_size: VOCAB,
            final_logit_softcapping: None,
            attn_logit_softcapping: None,
            query_pre_attn_scalar: HEAD_DIM,
            sliding_window: WINDOW,
            sliding_window_pattern: WINDOW_TYPE,
            max_position_embeddings: CONTEXT,
        };
        let vb = VarBuilder::from_tensors(checkpoint.hf.clone(), DType::F32, &Device::Cpu);
        reference::Model::new(false, &config, vb).unwrap()
    }

    fn tokens(n: usize) -> Vec<u32> {
        (0..n as u32)
            .map(|i| (i * 37 + 11) % VOCAB as u32)
            .collect()
    }

    #[test]
    fn matches_the_reference_for_a_prompt_in_chunks_then_decoding() {
        let checkpoint = checkpoint_with(WINDOW_TYPE, false);
        let mut session = ours(&checkpoint);
        let mut candle = reference(&checkpoint);
        let prompt = tokens(2 * WINDOW + 1);

        let got = fed_in_chunks(session.as_mut(), &prompt, 4);
        let mut expected = None;
        for (pos, &token) in prompt.iter().enumerate() {
            expected = Some(candle.forward(&ids(&[token]), pos).unwrap());
        }
        let diff = relative_diff(&got, &expected.unwrap());
        assert!(diff < 1e-4, "prompt logits differ by {diff}");

        for (step, token) in tokens(4 * WINDOW)
            .into_iter()
            .enumerate()
            .skip(prompt.len())
        {
            let got = session.forward(&[token], step).unwrap();
            let expected = candle.forward(&ids(&[token]), step).unwrap();
            let diff = relative_diff(&got, &expected);
            assert!(
                diff < 1e-4,
                "decode logits at position {step} differ by {diff}"
            );
        }
    }

    #[test]
    fn a_prompt_longer_than_the_window_gives_the_same_logits_in_any_chunks() {
        let checkpoint = checkpoint();
        let prompt = tokens(4 * WINDOW + 1);
        let one_by_one = fed_in_chunks(ours(&checkpoint).as_mut(), &prompt, 1);

        for chunk in [2, WINDOW - 1, WINDOW + 1, prompt.len()] {
            let got = fed_in_chunks(ours(&checkpoint).as_mut(), &prompt, chunk);
            let diff = relative_diff(&got, &one_by_one);
            assert!(diff < 1e-4, "chunks of {chunk} differ by {diff}");
        }
    }

    #[test]
    fn scores_are_scaled_by_the_head_size_but_for_the_27b_model() {
        // Gemma 3 1B (26 layers, 1152 / 4 heads, head size 256) and 27B (62 layers, 5376 / 32
        // heads = 168, head size 128).
        assert_eq!(attention_scale(26, 1152, 4, 256), 1.0 / 16.0);
        assert_eq!(attention_scale(62, 5376, 32, 128), 1.0 / 168f32.sqrt());
    }

    #[test]
    fn logits_are_capped_where_the_file_says_so() {
        let plain = checkpoint();
        let capped = checkpoint_with_extra(
            WINDOW_TYPE,
            true,
            vec![("gemma3.final_logit_softcapping", Value::F32(0.5))],
        );
        let prompt = tokens(5);

        let uncapped = fed_in_chunks(ours(&plain).as_mut(), &prompt, 5);
        let got = fed_in_chunks(ours(&capped).as_mut(), &prompt, 5);

        let expected = ((&uncapped / 0.5).unwrap().tanh().unwrap() * 0.5).unwrap();
        assert!(max_diff(&got, &expected) < 1e-6);
        assert!(max_diff(&got, &uncapped) > 1e-3, "the cap changed nothing");
    }

    #[test]
    fn without_a_window_every_layer_is_global() {
        let all_global = checkpoint_with(1, true);
        let no_window = checkpoint_with_extra(
            WINDOW_TYPE,
            true,
            vec![("gemma3.attention.sliding_window", Value::U32(0))],
        );
        let prompt = tokens(3 * WINDOW);

        let expected = fed_in_chunks(ours(&all_global).as_mut(), &prompt, 4);
        let got = fed_in_chunks(ours(&no_window).as_mut(), &prompt, 4);

        assert!(max_diff(&got, &expected) < 1e-6);
    }

    #[test]
    fn llama_cpp_names_win_over_candle_names() {
        // llama.cpp's pattern of 1 (every layer global) over candle's 2 in the same file.
        let both = checkpoint_with_extra(
            WINDOW_TYPE,
            true,
            vec![("gemma3.attention.sliding_window_pattern", Value::U32(1))],
        );
        let prompt = tokens(3 * WINDOW);

        let expected = fed_in_chunks(ours(&checkpoint_with(1, true)).as_mut(), &prompt, 4);
        let got = fed_in_chunks(ours(&both).as_mut(), &prompt, 4);

        assert!(max_diff(&got, &expected) < 1e-6);
    }

    #[test]
    fn a_setting_of_the_wrong_type_is_an_error_naming_it() {
        let bad = checkpoint_with_extra(
            WINDOW_TYPE,
            true,
            vec![(
                "gemma3.attention.sliding_window",
                Value::String("512".into()),
            )],
        );
        let (content, mut reader) = read(&bad.gguf);

        let err = Gemma3::from_gguf(&content, &mut reader, &Device::Cpu, PromptTiles::Never)
            .err()
            .expect("a string window");

        assert!(
            err.to_string().contains("gemma3.attention.sliding_window"),
            "{err}"
        );
    }

    #[test]
    fn local_layers_forget_what_left_the_window() {
        // Two prompts that differ only in their first token, longer than the span three local
        // layers reach back (3 * (WINDOW - 1) + 1 positions): with only local layers the last
        // logits are the same, with a global layer they are not.
        let a = tokens(3 * WINDOW);
        let mut b = a.clone();
        b[0] = (b[0] + 1) % VOCAB as u32;
        let last = |checkpoint: &Checkpoint, prompt: &[u32]| {
            fed_in_chunks(ours(checkpoint).as_mut(), prompt, 4)
        };

        let all_local = checkpoint_with(LAYERS + 1, true);
        let local_diff = relative_diff(&last(&all_local, &a), &last(&all_local, &b));
        let with_global = checkpoint();
        let global_diff = relative_diff(&last(&with_global, &a), &last(&with_global, &b));

        assert!(local_diff < 1e-6, "local layers still see it: {local_diff}");
        assert!(
            global_diff > 1e-3,
            "the global layer sees it: {global_diff}"
        );
    }
}
