//! Talking to the gateway over HTTP as clients do: completions whole and streamed, chat, and the
//! official openai Python client.

use super::gateway::Gateway;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::task::JoinHandle;

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("http client")
}

pub async fn post(gateway: &Gateway, path: &str, body: &Value) -> reqwest::Response {
    http()
        .post(gateway.url(path))
        .json(body)
        .send()
        .await
        .expect("gateway answers")
}

/// Asserts the status, the body shape and the named field; returns the body.
pub async fn expect_error(response: reqwest::Response, status: u16, param: Option<&str>) -> Value {
    assert_eq!(response.status(), status);
    assert!(
        response.headers().contains_key("x-request-id"),
        "no x-request-id on {status}"
    );
    let body: Value = response.json().await.expect("error body is JSON");
    let error = &body["error"];
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(error["type"].as_str().is_some(), "{body}");
    assert_eq!(error["param"].as_str(), param, "{body}");
    assert!(error.get("code").is_some(), "{body}");
    body
}

/// The status of `GET path`, or 0 when nothing answered.
pub async fn get_status(gateway: &Gateway, path: &str) -> u16 {
    match http().get(gateway.url(path)).send().await {
        Ok(response) => response.status().as_u16(),
        Err(_) => 0,
    }
}

/// The `/v1/models` body; `None` when it could not be read.
pub async fn model_list(gateway: &Gateway) -> Option<Value> {
    let response = http().get(gateway.url("/v1/models")).send().await.ok()?;
    response.json().await.ok()
}

pub fn completion_body(model: &str, max_tokens: u32) -> Value {
    json!({ "model": model, "prompt": "def fibonacci(n):", "max_tokens": max_tokens })
}

/// A non-streamed completion that must succeed; returns its body.
pub async fn complete(gateway: &Gateway, model: &str, max_tokens: u32) -> Value {
    let response = post(
        gateway,
        "/v1/completions",
        &completion_body(model, max_tokens),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.expect("completion JSON")
}

/// A streamed completion that must succeed and end with `[DONE]`.
pub async fn stream_completion(gateway: &Gateway, model: &str, max_tokens: u32) -> Vec<Value> {
    let mut body = completion_body(model, max_tokens);
    body["stream"] = json!(true);
    let response = post(gateway, "/v1/completions", &body).await;
    assert_eq!(response.status(), StatusCode::OK);
    read_sse(response).await
}

/// A completion running in the background; the handle gives its status once answered.
pub fn spawn_completion(gateway: &Gateway, model: &str, max_tokens: u32) -> JoinHandle<StatusCode> {
    let url = gateway.url("/v1/completions");
    let body = completion_body(model, max_tokens);
    tokio::spawn(async move {
        let response = http().post(url).json(&body).send().await.expect("answer");
        let status = response.status();
        let _ = response.bytes().await;
        status
    })
}

/// `count` 2-token completions for `model`, each sent from its own task.
pub fn completions_in_background(
    gateway: &Gateway,
    model: &str,
    count: usize,
) -> Vec<JoinHandle<reqwest::Result<reqwest::Response>>> {
    (0..count)
        .map(|_| {
            tokio::spawn(
                http()
                    .post(gateway.url("/v1/completions"))
                    .json(&completion_body(model, 2))
                    .send(),
            )
        })
        .collect()
}

/// Concatenated text and parsed chunks of an SSE response; panics without `data: [DONE]`.
pub async fn read_sse(response: reqwest::Response) -> Vec<Value> {
    let text = response.text().await.expect("stream body");
    let mut chunks = Vec::new();
    let mut done = false;
    for line in text.lines().filter(|l| !l.is_empty()) {
        let data = line
            .strip_prefix("data: ")
            .unwrap_or_else(|| panic!("not an SSE data line: {line}"));
        if data == "[DONE]" {
            done = true;
        } else {
            assert!(!done, "data after [DONE]");
            chunks.push(serde_json::from_str(data).expect("chunk is JSON"));
        }
    }
    assert!(done, "stream did not end with [DONE]: {text}");
    chunks
}

/// Runs `openai_client.py` (the official openai Python client, both modes, completions and chat,
/// penalties accepted, fill-in-the-middle, log probabilities, `n` choices, tool calls (a round
/// trip, required and named, streamed), JSON answers that follow their schema, a repeated prompt's
/// cached tokens, and unsupported or out-of-range fields refused by name) against the gateway
/// and asserts
/// every check passed.
pub async fn assert_openai_client_works(gateway: &Gateway, model: &str) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = root.join(".venv/bin/python");
    let output = tokio::process::Command::new(&python)
        .arg(root.join("gateway/tests/openai_client.py"))
        .arg(gateway.url("/v1"))
        .arg(model)
        .output()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} (run scripts/setup.sh): {e}",
                python.display()
            )
        });
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("openai client: 11 checks passed"),
        "{stdout}"
    );
}
