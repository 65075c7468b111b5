//! The default model (Qwen2.5-Coder-1.5B-Instruct Q4_K_M, fetched by scripts/fetch-model.sh)
//! served by a candle worker through the whole pipeline, driven by the official openai client.

mod support;

use coder_nats::testing::NatsServer;
use serde_json::{json, Value};
use std::path::PathBuf;
use support::*;

const MODEL: &str = "qwen2.5-coder-1.5b-instruct";

fn model_path() -> PathBuf {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf");
    assert!(
        path.exists(),
        "{} is missing: run scripts/fetch-model.sh",
        path.display()
    );
    path
}

/// A gateway and a candle worker serving the default model, on a fresh nats-server.
async fn default_model_stack() -> (NatsServer, Gateway, Worker) {
    let nats = NatsServer::start();
    let gateway = Gateway::start(&nats, &[]);
    let path = model_path();
    let worker = Worker::start(
        &nats,
        MODEL,
        &[
            "--backend",
            "candle",
            "--model-path",
            path.to_str().unwrap(),
        ],
    );
    wait_for_model(&gateway, MODEL).await;
    (nats, gateway, worker)
}

#[tokio::test]
async fn the_default_model_answers_through_the_gateway() {
    let (_nats, gateway, _worker) = default_model_stack().await;

    // Greedy completion of a function header is code.
    let body =
        json!({"model": MODEL, "prompt": "def fibonacci(n):", "max_tokens": 24, "temperature": 0});
    let response = post(&gateway, "/v1/completions", &body).await;
    assert_eq!(response.status(), 200);
    let completion: Value = response.json().await.unwrap();
    let text = completion["choices"][0]["text"].as_str().unwrap();
    assert!(text.contains("return"), "{text:?}");

    // An over-long request is a 400 naming both numbers, not a crash.
    let too_long = json!({"model": MODEL, "prompt": "x = 1\n".repeat(20_000), "max_tokens": 16});
    let response = post(&gateway, "/v1/completions", &too_long).await;
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("context"),
        "{error}"
    );

    // The official client, both modes, completions and chat.
    assert_openai_client_works(&gateway, MODEL).await;
}

#[tokio::test]
async fn the_default_model_fills_in_the_middle_with_logprobs_and_choices() {
    let (_nats, gateway, _worker) = default_model_stack().await;

    // Fill-in-the-middle: a non-empty middle, ended by one of the model's FIM end tokens (no
    // stop string was given, and max_tokens leaves room), not by the token budget.
    let body = json!({"model": MODEL,
                      "prompt": "def is_even(n):\n    return n % 2 == 0\n\n\ndef is_odd(n):\n    ",
                      "suffix": "\n\n\nprint(is_odd(3))\n", "max_tokens": 32, "temperature": 0});
    let response = post(&gateway, "/v1/completions", &body).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    let middle = answer["choices"][0]["text"].as_str().unwrap();
    // Recorded: `return not is_even(n)`.
    let plausible = middle.contains("is_even") || middle.contains("% 2");
    assert!(middle.contains("return") && plausible, "{answer}");
    assert!(
        !middle.contains("print(is_odd"),
        "the middle repeated the suffix: {answer}"
    );
    assert_eq!(answer["choices"][0]["finish_reason"], "stop", "{answer}");

    // Greedy log probabilities: the chosen token leads its alternatives, all sorted, none
    // above 0, and together no more likely than certainty.
    let body = json!({"model": MODEL, "messages": [{"role": "user", "content": "Say hi"}],
                      "max_tokens": 6, "temperature": 0, "logprobs": true, "top_logprobs": 5});
    let response = post(&gateway, "/v1/chat/completions", &body).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    let content = answer["choices"][0]["logprobs"]["content"]
        .as_array()
        .unwrap();
    assert!(!content.is_empty(), "{answer}");
    for entry in content {
        let top = entry["top_logprobs"].as_array().unwrap();
        assert_eq!(top.len(), 5, "{entry}");
        assert_eq!(top[0]["token"], entry["token"], "{entry}");
        assert_eq!(top[0]["logprob"], entry["logprob"], "{entry}");
        let values: Vec<f64> = top.iter().map(|t| t["logprob"].as_f64().unwrap()).collect();
        assert!(values.windows(2).all(|w| w[0] >= w[1]), "{entry}");
        assert!(values.iter().all(|&v| v <= 0.0), "{entry}");
        let total: f64 = values.iter().map(|v| v.exp()).sum();
        assert!(total <= 1.0 + 1e-3, "{entry}");
    }

    // Three sampled choices, each with its own index.
    let body = json!({"model": MODEL, "prompt": "def fibonacci(n):", "max_tokens": 8,
                      "temperature": 1.0, "seed": 3, "n": 3});
    let response = post(&gateway, "/v1/completions", &body).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    let mut indexes: Vec<u64> = answer["choices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["index"].as_u64().unwrap())
        .collect();
    indexes.sort_unstable();
    assert_eq!(indexes, [0, 1, 2], "{answer}");
}
