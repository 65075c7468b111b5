//! The candle backend on tiny GGUF files of each supported architecture (qwen2, llama, qwen3,
//! gemma3), written by the test with candle's GGUF writer, with a word-level `tokenizer.json`
//! beside them and the chat template and end-of-turn id in the metadata.
//!
//! Like the IQuest tests, the weights are random but steered: every embedding carries a large
//! value in dimension 0 and one output row reads it, so greedy decoding picks that row's token.

mod candle_support;

use std::path::PathBuf;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use coder_nats::{ChatMessage, FinishReason, Infill, Prompt, SamplingParams};
use gpu_worker::backend::candle::{CandleBackend, CandleOptions};
use gpu_worker::backend::{Backend, BackendError};
use tempfile::TempDir;

use candle_support::{greedy, noise, request, run, text, write_tokenizer, Recorder, BOS, EOS};

const VOCAB: usize = 64;
const HIDDEN: usize = 64;
const FFN: usize = 128;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const HEAD_DIM: usize = HIDDEN / HEADS;
const LAYERS: usize = 2;
const CONTEXT: u32 = 96;
const REPEATED: u32 = 10;
const TEMPLATE: &str =
    "{% for m in messages %}{{ m.role }} {{ m.content }} {% endfor %}{% if add_generation_prompt %}assistant{% endif %}";

/// A GGUF file of one architecture plus `tokenizer.json`, in a temporary directory.
struct TinyGguf {
    dir: TempDir,
}

impl TinyGguf {
    fn write(arch: &str, steer_to: u32) -> TinyGguf {
        Self::write_with(arch, steer_to, Vec::new())
    }

    /// As [`TinyGguf::write`], with `extra` metadata.
    fn write_with(arch: &str, steer_to: u32, extra: Vec<(String, Value)>) -> TinyGguf {
        let dir = TempDir::new().unwrap();
        write_tokenizer(dir.path(), VOCAB);
        let mut metadata = metadata(arch);
        metadata.extend(extra);
        let tensors = tensors(arch, steer_to);
        let metadata: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let mut file = std::fs::File::create(dir.path().join("model.gguf")).unwrap();
        gguf_file::write(&mut file, &metadata, &tensors).unwrap();
        TinyGguf { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("model.gguf")
    }

    fn load(&self) -> CandleBackend {
        CandleBackend::load(&CandleOptions::new(self.path(), "tiny")).unwrap()
    }
}

fn metadata(arch: &str) -> Vec<(String, Value)> {
    let key = |k: &str| format!("{arch}.{k}");
    let mut m = vec![
        (
            "general.architecture".to_owned(),
            Value::String(arch.to_owned()),
        ),
        (key("attention.head_count"), Value::U32(HEADS as u32)),
        (key("attention.head_count_kv"), Value::U32(KV_HEADS as u32)),
        (key("embedding_length"), Value::U32(HIDDEN as u32)),
        (key("block_count"), Value::U32(LAYERS as u32)),
        (key("context_length"), Value::U32(CONTEXT)),
        (key("attention.layer_norm_rms_epsilon"), Value::F32(1e-6)),
        (key("rope.freq_base"), Value::F32(10_000.0)),
        (key("attention.key_length"), Value::U32(HEAD_DIM as u32)),
        (key("attention.value_length"), Value::U32(HEAD_DIM as u32)),
        (key("rope.dimension_count"), Value::U32(HEAD_DIM as u32)),
        (key("attention.sliding_window"), Value::U32(32)),
        ("tokenizer.ggml.bos_token_id".to_owned(), Value::U32(BOS)),
        ("tokenizer.ggml.eos_token_id".to_owned(), Value::U32(EOS)),
        (
            "tokenizer.chat_template".to_owned(),
            Value::String(TEMPLATE.to_owned()),
        ),
    ];
    m.sort_by(|a, b| a.0.cmp(&b.0));
    m
}

fn tensors(arch: &str, steer_to: u32) -> Vec<(String, QTensor)> {
    let mut seed = 0;
    let mut matrix = |rows: usize, cols: usize, edit: &dyn Fn(&mut [f32])| {
        seed += 1;
        let mut values = noise(seed, rows * cols, 0.1);
        edit(&mut values);
        let t = Tensor::from_vec(values, (rows, cols), &Device::Cpu).unwrap();
        QTensor::quantize(&t, GgmlDType::Q8_0).unwrap()
    };
    let vector = |n: usize, value: f32| {
        let t = Tensor::from_vec(vec![value; n], n, &Device::Cpu).unwrap();
        QTensor::quantize(&t, GgmlDType::F32).unwrap()
    };
    let one = 1.0;
    let (q, kv) = (HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM);
    let mut t = vec![
        (
            "token_embd.weight".to_owned(),
            matrix(VOCAB, HIDDEN, &|e| {
                e.chunks_mut(HIDDEN).for_each(|row| row[0] = 8.0)
            }),
        ),
        (
            "output.weight".to_owned(),
            matrix(VOCAB, HIDDEN, &|w| w[steer_to as usize * HIDDEN] = 1.0),
        ),
        ("output_norm.weight".to_owned(), vector(HIDDEN, one)),
    ];
    for i in 0..LAYERS {
        let name = |part: &str| format!("blk.{i}.{part}");
        t.push((name("attn_q.weight"), matrix(q, HIDDEN, &|_| {})));
        t.push((name("attn_k.weight"), matrix(kv, HIDDEN, &|_| {})));
        t.push((name("attn_v.weight"), matrix(kv, HIDDEN, &|_| {})));
        t.push((name("attn_output.weight"), matrix(HIDDEN, q, &|_| {})));
        t.push((name("ffn_gate.weight"), matrix(FFN, HIDDEN, &|_| {})));
        t.push((name("ffn_up.weight"), matrix(FFN, HIDDEN, &|_| {})));
        t.push((name("ffn_down.weight"), matrix(HIDDEN, FFN, &|_| {})));
        t.push((name("attn_norm.weight"), vector(HIDDEN, one)));
        t.push((name("ffn_norm.weight"), vector(HIDDEN, one)));
        match arch {
            "qwen2" => {
                t.push((name("attn_q.bias"), vector(q, 0.0)));
                t.push((name("attn_k.bias"), vector(kv, 0.0)));
                t.push((name("attn_v.bias"), vector(kv, 0.0)));
            }
            "qwen3" | "gemma3" => {
                t.push((name("attn_q_norm.weight"), vector(HEAD_DIM, one)));
                t.push((name("attn_k_norm.weight"), vector(HEAD_DIM, one)));
            }
            _ => {}
        }
        if arch == "gemma3" {
            t.push((name("post_attention_norm.weight"), vector(HIDDEN, one)));
            t.push((name("post_ffw_norm.weight"), vector(HIDDEN, one)));
        }
    }
    t
}

const ARCHITECTURES: [&str; 4] = ["qwen2", "llama", "qwen3", "gemma3"];

#[test]
fn every_architecture_loads_and_generates_to_max_tokens() {
    for arch in ARCHITECTURES {
        let backend = TinyGguf::write(arch, REPEATED).load();

        let (generation, sink) = run(&backend, &request(text("w5 w6 w7"), greedy(4)));

        assert_eq!(backend.architecture(), arch);
        assert_eq!(backend.info().context_length, CONTEXT, "{arch}");
        assert_eq!(generation.finish_reason, FinishReason::Length, "{arch}");
        assert_eq!(generation.usage.completion_tokens, 4, "{arch}");
        assert_eq!(sink.pieces.len(), 4, "{arch}");
        assert_eq!(sink.text(), "w10 w10 w10 w10", "{arch}");
    }
}

#[test]
fn the_metadata_eos_id_ends_generation() {
    for arch in ARCHITECTURES {
        let backend = TinyGguf::write(arch, EOS).load();

        let (generation, _) = run(&backend, &request(text("w5 w6 w7"), greedy(8)));

        assert_eq!(generation.finish_reason, FinishReason::Stop, "{arch}");
        assert_eq!(generation.usage.completion_tokens, 1, "{arch}");
    }
}

#[test]
fn fill_in_the_middle_needs_the_models_fim_tokens_and_ends_at_them() {
    let arch = "qwen2";
    let infill = Prompt::Infill(Infill {
        prefix: "w5 w6".into(),
        suffix: "w7".into(),
        files: Vec::new(),
    });
    let without = TinyGguf::write(arch, REPEATED).load();
    match without.generate(
        &request(infill.clone(), greedy(4)),
        &mut Recorder::default(),
    ) {
        Err(BackendError::InvalidField { param, message }) => {
            assert_eq!(param, "suffix");
            assert!(message.contains("fill-in-the-middle"), "{message}");
        }
        other => panic!("{:?}", other.map(|f| f.finish_reason)),
    }

    // Declared in the metadata as llama.cpp reads them: w20, w21, w22 build the prompt, and
    // the FIM pad is w10, the token the weights steer to, which ends a middle.
    let fim = [("pre", 20), ("suf", 21), ("mid", 22), ("pad", REPEATED)]
        .map(|(key, id)| (format!("tokenizer.ggml.fim_{key}_token_id"), Value::U32(id)));
    let backend = TinyGguf::write_with(arch, REPEATED, fim.into()).load();
    let (generation, _) = run(&backend, &request(infill, greedy(4)));
    assert_eq!(generation.finish_reason, FinishReason::Stop);
    assert_eq!(generation.usage.completion_tokens, 1);
    // w20 w5 w6 w21 w7 w22.
    assert_eq!(generation.usage.prompt_tokens, 6);
    let (plain, _) = run(&backend, &request(text("w5 w6"), greedy(4)));
    assert_eq!(
        plain.finish_reason,
        FinishReason::Length,
        "the FIM pad ends only a middle"
    );
}

#[test]
fn greedy_logprobs_come_from_the_engine_with_the_chosen_token_first() {
    for arch in ARCHITECTURES {
        let backend = TinyGguf::write(arch, REPEATED).load();
        let params = SamplingParams {
            logprobs: Some(3),
            ..greedy(4)
        };

        let (generation, recorder) = run(&backend, &request(text("w5 w6 w7"), params));

        assert_eq!(generation.usage.completion_tokens, 4, "{arch}");
        assert_eq!(recorder.logprobs.len(), 4, "{arch}: one per token");
        for logprobs in &recorder.logprobs {
            assert_eq!(logprobs.chosen.token, format!("w{REPEATED}"), "{arch}");
            assert_eq!(logprobs.chosen.bytes, logprobs.chosen.token.as_bytes());
            assert_eq!(logprobs.top.len(), 3, "{arch}");
            assert_eq!(logprobs.top[0], logprobs.chosen, "{arch}");
            assert!(logprobs
                .top
                .windows(2)
                .all(|w| w[0].logprob >= w[1].logprob));
            assert!(logprobs.top.iter().all(|l| l.logprob <= 0.0), "{arch}");
        }
        let (_, plain) = run(&backend, &request(text("w5 w6 w7"), greedy(4)));
        assert!(plain.logprobs.is_empty(), "{arch}: none unless asked for");
    }
}

#[test]
fn chat_uses_the_template_from_the_metadata() {
    for arch in ARCHITECTURES {
        let backend = TinyGguf::write(arch, REPEATED).load();
        let messages = vec![ChatMessage {
            role: "user".into(),
            content: "w5 w6".into(),
            name: None,
            ..Default::default()
        }];

        let (generation, _) = run(&backend, &request(Prompt::Chat(messages), greedy(2)));

        // "user" "w5" "w6" "assistant": the template's words, unknown to the vocabulary, are
        // `<unk>` tokens.
        assert_eq!(generation.usage.prompt_tokens, 4, "{arch}");
    }
}

#[test]
fn a_long_prompt_goes_in_chunks_and_matches_one_pass() {
    for arch in ARCHITECTURES {
        let file = TinyGguf::write(arch, REPEATED);
        let whole = file.load();
        let mut options = CandleOptions::new(file.path(), "tiny");
        options.max_batch_tokens = 5;
        let chunked = CandleBackend::load(&options).unwrap();
        let words: Vec<String> = (0..40).map(|i| format!("w{}", 3 + (i * 7) % 60)).collect();
        let prompt = text(&words.join(" "));

        let a = run(&whole, &request(prompt.clone(), greedy(6))).1.text();
        let b = run(&chunked, &request(prompt, greedy(6))).1.text();

        assert_eq!(a, b, "{arch}");
    }
}

#[test]
fn context_overflow_is_an_invalid_request_for_gguf_too() {
    let backend = TinyGguf::write("qwen2", REPEATED).load();
    let words: Vec<String> = (0..90).map(|i| format!("w{}", 3 + i % 60)).collect();
    let mut sink = Recorder::default();

    let err = backend
        .generate(&request(text(&words.join(" ")), greedy(10)), &mut sink)
        .unwrap_err();

    let BackendError::InvalidRequest(message) = err else {
        panic!("{err:?}")
    };
    assert!(
        message.contains("90") && message.contains("10") && message.contains("96"),
        "{message}"
    );
}

#[test]
fn an_unsupported_architecture_is_named_in_the_error() {
    let file = TinyGguf::write("qwen2", REPEATED);
    let mut metadata = metadata("qwen2");
    for (key, value) in metadata.iter_mut() {
        if key == "general.architecture" {
            *value = Value::String("phi3".to_owned());
        }
    }
    let metadata: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut out = std::fs::File::create(file.path()).unwrap();
    gguf_file::write(&mut out, &metadata, &[]).unwrap();

    let err = CandleBackend::load(&CandleOptions::new(file.path(), "phi"))
        .err()
        .unwrap();

    let message = format!("{err:#}");
    assert!(
        message.contains("phi3") && message.contains("qwen2, llama, qwen3, gemma3"),
        "{message}"
    );
}
