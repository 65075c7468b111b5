//! The candle backend on a tiny IQuest-Coder-V1-shaped checkpoint that each test writes itself:
//! `config.json` with the `iquestcoder` fields, random bf16 weights in safetensors, and a
//! word-level `tokenizer.json` built with `tokenizers`.
//!
//! Random weights make random text, so the checkpoints that test stopping are *steered*: every
//! token embedding carries a large value in dimension 0 and one `lm_head` row reads it, so
//! greedy decoding always picks that row's token, while every other weight stays random and
//! every layer still runs.

mod candle_support;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use coder_nats::{ChatMessage, FinishReason, Prompt, SamplingParams};
use gpu_worker::backend::candle::{CandleBackend, CandleOptions};
use gpu_worker::backend::{Backend, BackendError};
use serde_json::json;
use tempfile::TempDir;

use candle_support::{greedy, noise, request, run, text, write_tokenizer, Recorder};

const VOCAB: usize = 64;
const CONTEXT: usize = 64;
const HIDDEN: usize = 64;
const LAYERS: usize = 2;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const HEAD_DIM: usize = HIDDEN / HEADS;
const INTERMEDIATE: usize = 128;
const BOS: u32 = 1;
/// Like IQuest-Coder-V1's `[2, 75864, 75869]`, scaled into the tiny vocabulary.
const EOS: [u32; 3] = [2, 60, 61];
/// The token the "never stops" checkpoint always picks.
const REPEATED: u32 = 10;

/// Which token greedy decoding is steered towards, if any.
#[derive(Clone, Copy)]
enum Steer {
    Random,
    Token(u32),
}

/// A checkpoint directory that lives as long as the value.
struct Checkpoint {
    dir: TempDir,
}

impl Checkpoint {
    fn write(steer: Steer, dtype: &str) -> Checkpoint {
        let dir = TempDir::new().unwrap();
        std::fs::write(dir.path().join("config.json"), config(dtype).to_string()).unwrap();
        write_tokenizer(dir.path(), VOCAB);
        let tokenizer_config = json!({
            "bos_token": "<s>",
            "eos_token": "</s>",
            "chat_template": "{{ bos_token }}{% for m in messages %}{{ m.role }} {{ m.content }} \
                {% endfor %}{% if add_generation_prompt %}assistant{% endif %}",
        });
        std::fs::write(
            dir.path().join("tokenizer_config.json"),
            tokenizer_config.to_string(),
        )
        .unwrap();
        write_weights(&dir.path().join("model.safetensors"), steer, dtype);
        Checkpoint { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    fn load(&self) -> CandleBackend {
        CandleBackend::load(&CandleOptions::new(self.path(), "tiny-iquest")).unwrap()
    }
}

fn config(dtype: &str) -> serde_json::Value {
    json!({
        "architectures": ["IQuestCoderForCausalLM"],
        "model_type": "iquestcoder",
        "auto_map": {
            "AutoConfig": "configuration_iquestcoder.IQuestCoderConfig",
            "AutoModelForCausalLM": "modeling_iquestcoder.IQuestCoderForCausalLM"
        },
        "hidden_size": HIDDEN,
        "intermediate_size": INTERMEDIATE,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS,
        "head_dim": HEAD_DIM,
        "hidden_act": "silu",
        "vocab_size": VOCAB,
        "max_position_embeddings": CONTEXT,
        "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0,
        "rope_scaling": null,
        "bos_token_id": BOS,
        "eos_token_id": EOS,
        "tie_word_embeddings": false,
        "torch_dtype": dtype,
        "clip_qkv": null,
        "use_sliding_window": false,
        "sliding_window": null,
        "max_window_layers": 0,
        "attention_bias": false,
        "attention_dropout": 0.0,
        "mlp_bias": false,
        "initializer_range": 0.02,
        "use_cache": true
    })
}

fn write_weights(path: &Path, steer: Steer, dtype: &str) {
    let dtype = match dtype {
        "bfloat16" => DType::BF16,
        "float16" => DType::F16,
        _ => DType::F32,
    };
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    let mut add = |name: String, shape: &[usize], values: Vec<f32>| {
        let t = Tensor::from_vec(values, shape, &Device::Cpu)
            .unwrap()
            .to_dtype(dtype)
            .unwrap();
        tensors.push((name, t));
    };
    let mut seed = 0;
    let mut random = |rows: usize, cols: usize| {
        seed += 1;
        noise(seed, rows * cols, 0.1)
    };
    let (q, kv) = (HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM);

    let mut embed = random(VOCAB, HIDDEN);
    let mut head = random(VOCAB, HIDDEN);
    if let Steer::Token(token) = steer {
        embed.chunks_mut(HIDDEN).for_each(|row| row[0] = 8.0);
        head[token as usize * HIDDEN] = 1.0;
    }
    add("model.embed_tokens.weight".into(), &[VOCAB, HIDDEN], embed);
    add("lm_head.weight".into(), &[VOCAB, HIDDEN], head);
    add("model.norm.weight".into(), &[HIDDEN], vec![1.0; HIDDEN]);
    for i in 0..LAYERS {
        let p = format!("model.layers.{i}");
        for (name, rows, cols) in [
            ("self_attn.q_proj", q, HIDDEN),
            ("self_attn.k_proj", kv, HIDDEN),
            ("self_attn.v_proj", kv, HIDDEN),
            ("self_attn.o_proj", HIDDEN, q),
            ("mlp.gate_proj", INTERMEDIATE, HIDDEN),
            ("mlp.up_proj", INTERMEDIATE, HIDDEN),
            ("mlp.down_proj", HIDDEN, INTERMEDIATE),
        ] {
            add(
                format!("{p}.{name}.weight"),
                &[rows, cols],
                random(rows, cols),
            );
        }
        for norm in ["input_layernorm", "post_attention_layernorm"] {
            add(format!("{p}.{norm}.weight"), &[HIDDEN], vec![1.0; HIDDEN]);
        }
    }
    safetensors::serialize_to_file(tensors.iter().map(|(n, t)| (n.as_str(), t)), None, path)
        .unwrap();
}

#[test]
fn loads_an_iquestcoder_directory() {
    let checkpoint = Checkpoint::write(Steer::Random, "bfloat16");

    let backend = checkpoint.load();

    let info = backend.info();
    assert_eq!(
        (info.kind, info.device.as_str(), info.context_length),
        ("candle", "cpu", 64)
    );
    assert_eq!(backend.architecture(), "iquestcoder");
    assert!(backend.load_duration().as_secs_f64() > 0.0);
}

#[test]
fn generation_stops_at_an_eos_id_from_config() {
    for eos in [EOS[0], EOS[2]] {
        let backend = Checkpoint::write(Steer::Token(eos), "bfloat16").load();

        let (generation, sink) = run(&backend, &request(text("w5 w6 w7"), greedy(8)));

        assert_eq!(generation.finish_reason, FinishReason::Stop, "eos {eos}");
        assert_eq!(generation.usage.completion_tokens, 1);
        assert_eq!(generation.usage.prompt_tokens, 3);
        assert_eq!(sink.text(), "");
    }
}

#[test]
fn chat_renders_the_template_and_stops_at_eos() {
    let backend = Checkpoint::write(Steer::Token(EOS[0]), "bfloat16").load();
    let messages = vec![ChatMessage {
        role: "user".into(),
        content: "w5 w6".into(),
        name: None,
        ..Default::default()
    }];

    let (generation, _) = run(&backend, &request(Prompt::Chat(messages), greedy(8)));

    assert_eq!(generation.finish_reason, FinishReason::Stop);
    // "<s>" "user" "w5" "w6" "assistant": the template's words unknown to the vocabulary are
    // `<unk>` tokens, which still count.
    assert_eq!(generation.usage.prompt_tokens, 5);
}

#[test]
fn max_tokens_ends_with_length_and_one_sink_call_per_token() {
    let backend = Checkpoint::write(Steer::Token(REPEATED), "bfloat16").load();

    let (generation, sink) = run(&backend, &request(text("w5 w6"), greedy(5)));

    assert_eq!(generation.finish_reason, FinishReason::Length);
    assert_eq!(generation.usage.completion_tokens, 5);
    assert_eq!(sink.pieces.len(), 5);
    assert_eq!(sink.text(), "w10 w10 w10 w10 w10");
}

#[test]
fn a_stop_string_ends_generation_without_being_sent() {
    let backend = Checkpoint::write(Steer::Token(REPEATED), "bfloat16").load();
    let params = SamplingParams {
        stop: vec![" w10 w10".into()],
        ..greedy(10)
    };

    let (generation, sink) = run(&backend, &request(text("w5"), params));

    assert_eq!(generation.finish_reason, FinishReason::Stop);
    assert_eq!(generation.usage.completion_tokens, 3);
    assert_eq!(sink.text(), "w10");
}

#[test]
fn same_seed_gives_the_same_text_and_another_seed_differs() {
    let backend = Checkpoint::write(Steer::Random, "bfloat16").load();
    let sampled = |seed| {
        let params = SamplingParams {
            max_tokens: 12,
            temperature: 1.0,
            seed,
            ..Default::default()
        };
        run(&backend, &request(text("w5 w6 w7"), params)).1.pieces
    };

    assert_eq!(sampled(42), sampled(42));
    assert_ne!(sampled(42), sampled(43));
}

#[test]
fn concurrent_generations_do_not_share_a_cache() {
    let backend = Checkpoint::write(Steer::Random, "bfloat16").load();
    let prompts = ["w5 w6 w7 w8", "w30 w31", "w12 w40 w41 w42 w43 w44"];
    let alone: Vec<String> = prompts
        .iter()
        .map(|p| run(&backend, &request(text(p), greedy(16))).1.text())
        .collect();

    let together: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = prompts
            .iter()
            .map(|p| s.spawn(|| run(&backend, &request(text(p), greedy(16))).1.text()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });

    assert_eq!(alone, together);
}

#[test]
fn chunked_prefill_matches_one_pass() {
    let checkpoint = Checkpoint::write(Steer::Random, "float32");
    let whole = checkpoint.load();
    let mut options = CandleOptions::new(checkpoint.path(), "tiny-iquest");
    options.max_batch_tokens = 3;
    let chunked = CandleBackend::load(&options).unwrap();
    let prompt = text("w5 w6 w7 w8 w9 w10 w11 w12 w13 w14");

    let a = run(&whole, &request(prompt.clone(), greedy(12))).1.text();
    let b = run(&chunked, &request(prompt, greedy(12))).1.text();

    assert_eq!(a, b);
}

#[test]
fn f16_and_f32_checkpoints_load_and_generate() {
    for dtype in ["float16", "float32"] {
        let backend = Checkpoint::write(Steer::Token(REPEATED), dtype).load();

        let (generation, sink) = run(&backend, &request(text("w5"), greedy(3)));

        assert_eq!(generation.usage.completion_tokens, 3, "{dtype}");
        assert_eq!(sink.text(), "w10 w10 w10", "{dtype}");
    }
}

#[test]
fn prompt_plus_max_tokens_beyond_the_context_is_an_invalid_request() {
    let backend = Checkpoint::write(Steer::Random, "bfloat16").load();
    let words: Vec<String> = (0..60).map(|i| format!("w{}", 3 + i % 50)).collect();

    let mut sink = Recorder::default();
    let err = backend
        .generate(&request(text(&words.join(" ")), greedy(10)), &mut sink)
        .unwrap_err();

    let BackendError::InvalidRequest(message) = err else {
        panic!("expected InvalidRequest, got {err:?}")
    };
    assert!(
        message.contains("60") && message.contains("10") && message.contains("64"),
        "{message}"
    );
    assert!(sink.pieces.is_empty());
}

#[test]
fn a_sink_that_says_stop_cancels_within_one_token() {
    let backend = Checkpoint::write(Steer::Token(REPEATED), "bfloat16").load();
    let mut sink = Recorder {
        stop_after: Some(2),
        ..Default::default()
    };

    let err = backend
        .generate(&request(text("w5"), greedy(20)), &mut sink)
        .unwrap_err();

    assert!(matches!(err, BackendError::Cancelled), "{err:?}");
    assert_eq!(sink.pieces.len(), 2);
}

#[test]
fn a_request_cancelled_before_it_starts_computes_nothing() {
    let backend = Checkpoint::write(Steer::Token(REPEATED), "bfloat16").load();
    let mut sink = Recorder {
        cancelled: true,
        ..Default::default()
    };

    let err = backend
        .generate(&request(text("w5"), greedy(20)), &mut sink)
        .unwrap_err();

    assert!(matches!(err, BackendError::Cancelled), "{err:?}");
    assert!(sink.pieces.is_empty());
}

#[test]
fn the_loop_variant_is_refused_with_what_is_unsupported() {
    let checkpoint = Checkpoint::write(Steer::Random, "bfloat16");
    let mut config = config("bfloat16");
    config["model_type"] = json!("iquestloopcoder");
    config["architectures"] = json!(["IQuestLoopCoderForCausalLM"]);
    config["loop_num"] = json!(2);
    std::fs::write(checkpoint.path().join("config.json"), config.to_string()).unwrap();

    let err = CandleBackend::load(&CandleOptions::new(checkpoint.path(), "loop"))
        .err()
        .unwrap();

    let message = format!("{err:#}");
    assert!(message.contains("iquestloopcoder"), "{message}");
    assert!(
        message.contains("Loop") && message.contains("not implement"),
        "{message}"
    );
}

#[test]
fn a_missing_tensor_is_an_error_naming_it() {
    let checkpoint = Checkpoint::write(Steer::Random, "bfloat16");
    let mut config = config("bfloat16");
    config["num_hidden_layers"] = json!(3);
    std::fs::write(checkpoint.path().join("config.json"), config.to_string()).unwrap();

    let err = CandleBackend::load(&CandleOptions::new(checkpoint.path(), "broken"))
        .err()
        .unwrap();

    assert!(format!("{err:#}").contains("model.layers.2."), "{err:#}");
}
