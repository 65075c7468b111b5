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

#[tokio::test]
async fn the_default_model_answers_through_the_gateway() {
    let nats = NatsServer::start();
    let gateway = Gateway::start(&nats, &[]);
    let path = model_path();
    let _worker = Worker::start(
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
