//! The OpenAI API through the whole pipeline: gateway → JetStream → synthetic worker.

mod support;

use serde_json::{json, Value};
use support::*;

const MODEL: &str = "Qwen/Qwen2.5-Coder:1.5b test";

#[tokio::test]
async fn completion_returns_text_usage_and_the_request_id() {
    let (_nats, gateway, _worker) = stack(MODEL, &[], &[]).await;

    let response = post(&gateway, "/v1/completions", &completion_body(MODEL, 7)).await;

    assert_eq!(response.status(), 200);
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        uuid::Uuid::parse_str(&request_id)
            .unwrap()
            .get_version_num(),
        7
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["id"], request_id);
    assert_eq!(body["object"], "text_completion");
    assert_eq!(body["model"], MODEL);
    assert!(!body["choices"][0]["text"].as_str().unwrap().is_empty());
    assert_eq!(body["choices"][0]["finish_reason"], "length");
    assert_eq!(body["usage"]["completion_tokens"], 7);
    assert_eq!(
        body["usage"]["total_tokens"],
        body["usage"]["prompt_tokens"].as_u64().unwrap() + 7
    );
}

#[tokio::test]
async fn streamed_completion_matches_the_non_streamed_text() {
    let (_nats, gateway, _worker) = stack(MODEL, &[], &[]).await;
    let mut body = completion_body(MODEL, 9);
    body["seed"] = json!(11);
    let whole: Value = post(&gateway, "/v1/completions", &body)
        .await
        .json()
        .await
        .unwrap();

    body["stream"] = json!(true);
    body["stream_options"] = json!({ "include_usage": true });
    let response = post(&gateway, "/v1/completions", &body).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let chunks = read_sse(response).await;

    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["text"].as_str())
        .collect();
    assert_eq!(text, whole["choices"][0]["text"].as_str().unwrap());
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "length");
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"].as_array().unwrap().len(), 0);
    assert_eq!(usage["usage"]["completion_tokens"], 9);
}

#[tokio::test]
async fn chat_completion_answers_as_the_assistant() {
    let (_nats, gateway, _worker) = stack(MODEL, &[], &[]).await;
    let body = json!({
        "model": MODEL,
        "messages": [{"role": "system", "content": "You write code."}, {"role": "user", "content": "fizzbuzz"}],
        "max_completion_tokens": 5,
        "stop": ["\n\n\n"],
    });

    let response = post(&gateway, "/v1/chat/completions", &body).await;

    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert!(!body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .is_empty());
    assert_eq!(body["usage"]["completion_tokens"], 5);
}

#[tokio::test]
async fn streamed_chat_opens_with_the_role_and_ends_with_done() {
    let (_nats, gateway, _worker) = stack(MODEL, &[], &[]).await;
    let body = json!({
        "model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "stream": true,
    });

    let chunks = read_sse(post(&gateway, "/v1/chat/completions", &body).await).await;

    assert_eq!(chunks[0]["object"], "chat.completion.chunk");
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert!(!content.is_empty());
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "length"
    );
    assert!(
        chunks.iter().all(|c| c.get("usage").is_none()),
        "usage only when asked for"
    );
}

/// `usage.prompt_tokens_details.cached_tokens` of a completion of `prompt`, whole or streamed.
async fn cached_tokens(gateway: &Gateway, prompt: &str, stream: bool) -> u64 {
    let body = json!({
        "model": MODEL, "prompt": prompt, "max_tokens": 2,
        "stream": stream, "stream_options": stream.then(|| json!({"include_usage": true})),
    });
    let response = post(gateway, "/v1/completions", &body).await;
    assert_eq!(response.status(), 200);
    let usage = match stream {
        true => read_sse(response).await.last().unwrap()["usage"].clone(),
        false => response.json::<Value>().await.unwrap()["usage"].clone(),
    };
    usage["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap_or_else(|| panic!("no cached_tokens in {usage}"))
}

#[tokio::test]
async fn a_repeated_prompt_reports_its_cached_tokens_whole_and_streamed() {
    let (_nats, gateway, _worker) = stack(MODEL, &[], &[]).await;
    let prompt = "import os\nimport sys\n\ndef main():\n    pass\n".repeat(8);

    assert_eq!(cached_tokens(&gateway, &prompt, false).await, 0);
    assert!(cached_tokens(&gateway, &prompt, false).await > 0);
    assert!(cached_tokens(&gateway, &prompt, true).await > 0);
    assert_eq!(cached_tokens(&gateway, "def other():", true).await, 0);
}

#[tokio::test]
async fn a_worker_without_a_prefix_cache_reports_no_cached_tokens() {
    let (_nats, gateway, _worker) = stack(MODEL, &[], &["--prefix-cache-bytes", "0"]).await;
    let prompt = "import os\nimport sys\n\ndef main():\n    pass\n".repeat(8);

    for stream in [false, true, false] {
        assert_eq!(cached_tokens(&gateway, &prompt, stream).await, 0);
    }
}

#[tokio::test]
async fn models_lists_live_workers_and_health_routes_answer() {
    let (_nats, gateway, worker) = stack(MODEL, &[], &["--concurrency", "3"]).await;

    let models = model_list(&gateway).await.expect("the model list");
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], MODEL);
    assert_eq!(models["data"][0]["workers"], 1);
    assert_eq!(get_status(&gateway, "/healthz").await, 200);
    assert_eq!(get_status(&gateway, "/readyz").await, 200);

    // A worker that leaves is gone from the list (its last heartbeat says so).
    worker.process.signal(15);
    let gone = eventually(std::time::Duration::from_secs(10), || async {
        let models = model_list(&gateway).await?;
        models["data"].as_array()?.is_empty().then_some(())
    })
    .await;
    assert!(gone.is_some(), "the stopped worker is still listed");
}

#[tokio::test]
async fn the_official_openai_python_client_works_in_both_modes() {
    let (_nats, gateway, _worker) = stack(MODEL, &[], &[]).await;
    assert_openai_client_works(&gateway, MODEL).await;
}
