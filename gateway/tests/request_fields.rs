//! Nothing a client sends is silently ignored: every field is honoured, or refused with a 400
//! naming it (`user`, `metadata` and `store` excepted: accepted and ignored, as documented).

mod support;

use serde_json::{json, Value};
use support::*;

const MODEL: &str = "fields-model";

fn chat(extra: Value) -> Value {
    let mut body = json!({
        "model": MODEL,
        "messages": [{"role": "user", "content": "write a loop"}],
        "max_tokens": 8,
        "temperature": 0,
    });
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    body
}

fn completion(extra: Value) -> Value {
    let mut body = json!({"model": MODEL, "prompt": "def f():", "max_tokens": 8, "temperature": 0});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    body
}

/// The generated text of a 200 answer to `body` on `path`.
async fn text_of(gateway: &Gateway, path: &str, body: &Value) -> String {
    let response = post(gateway, path, body).await;
    assert_eq!(response.status(), 200, "{body}");
    let answer: Value = response.json().await.unwrap();
    let choice = &answer["choices"][0];
    choice["message"]["content"]
        .as_str()
        .or(choice["text"].as_str())
        .unwrap_or_else(|| panic!("no text in {answer}"))
        .to_owned()
}

#[tokio::test]
async fn malformed_tools_and_formats_and_unknown_fields_are_refused_by_name() {
    let (_nats, gateway, _worker) = stack(MODEL, &[], &[]).await;
    let tool = json!({"type": "function", "function": {"name": "get_time", "parameters": {}}});
    let refused_chat = [
        (
            json!({"tools": [{"type": "custom", "function": {"name": "f"}}]}),
            "tools[0].type",
        ),
        (
            json!({"tools": [tool], "tool_choice": {"type": "function",
                                                   "function": {"name": "other"}}}),
            "tool_choice.function.name",
        ),
        (json!({"tool_choice": "required"}), "tool_choice"),
        (json!({"parallel_tool_calls": "yes"}), "parallel_tool_calls"),
        (json!({"functions": [{"name": "f"}]}), "functions"),
        (json!({"function_call": "auto"}), "function_call"),
        (
            json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}),
            "response_format.json_schema.schema",
        ),
        (json!({"logit_bias": {"1": 100}}), "logit_bias"),
        (json!({"logprobs": "yes"}), "logprobs"),
        (
            json!({"logprobs": true, "top_logprobs": 21}),
            "top_logprobs",
        ),
        (json!({"top_logprobs": 2}), "top_logprobs"),
        (json!({"n": 9}), "n"),
        (json!({"n": 0}), "n"),
        (json!({"temprature": 0.5}), "temprature"),
        (json!({"prompt": "x"}), "prompt"),
        (
            json!({"messages": [{"role": "user", "content": "x", "tool_call_id": "c1"}]}),
            "messages[0].tool_call_id",
        ),
        (
            json!({"stream": true, "stream_options": {"include_usage": true, "chunk": 1}}),
            "stream_options.chunk",
        ),
        (json!({"frequency_penalty": 2.5}), "frequency_penalty"),
        (json!({"presence_penalty": -2.01}), "presence_penalty"),
    ];
    for (extra, field) in refused_chat {
        let body = chat(extra);
        let response = post(&gateway, "/v1/chat/completions", &body).await;
        let error = expect_error(response, 400, Some(field)).await;
        println!("{field}: {}", error["error"]["message"]);
    }
    let refused_completion = [
        (json!({"suffix": 7}), "suffix"),
        (json!({"logprobs": 6}), "logprobs"),
        (json!({"top_logprobs": 2}), "top_logprobs"),
        (json!({"n": 9}), "n"),
        (json!({"echo": true}), "echo"),
        (json!({"logit_bias": {"1": -100}}), "logit_bias"),
        (json!({"tools": []}), "tools"),
        (json!({"frequency_penalty": -3}), "frequency_penalty"),
    ];
    for (extra, field) in refused_completion {
        let response = post(&gateway, "/v1/completions", &completion(extra)).await;
        expect_error(response, 400, Some(field)).await;
    }
    // The deprecated form says what to use instead.
    let response = post(
        &gateway,
        "/v1/chat/completions",
        &chat(json!({"functions": [{"name": "f"}]})),
    )
    .await;
    let body = expect_error(response, 400, Some("functions")).await;
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("use `tools`"), "{message}");
}

#[tokio::test]
async fn hints_and_neutral_values_are_accepted_without_changing_the_answer() {
    let (_nats, gateway, _worker) = stack(MODEL, &[], &[]).await;
    let plain = text_of(&gateway, "/v1/chat/completions", &chat(json!({}))).await;
    let hinted = chat(json!({
        "user": "ann", "metadata": {"team": "a"}, "store": false, "n": 1, "top_logprobs": null,
        "tool_choice": "none", "response_format": {"type": "text"}, "logit_bias": {},
        "logprobs": false, "frequency_penalty": 0, "presence_penalty": 0,
    }));
    assert_eq!(
        text_of(&gateway, "/v1/chat/completions", &hinted).await,
        plain
    );
}

#[tokio::test]
async fn penalties_in_range_are_accepted_and_reach_the_worker() {
    let (_nats, gateway, _worker) = stack(MODEL, &[], &[]).await;
    for path in ["/v1/chat/completions", "/v1/completions"] {
        let body = |extra: Value| match path {
            "/v1/completions" => completion(extra),
            _ => chat(extra),
        };
        let plain = text_of(&gateway, path, &body(json!({}))).await;
        for extra in [
            json!({"frequency_penalty": 2.0}),
            json!({"presence_penalty": -2.0}),
            json!({"frequency_penalty": 0.5, "presence_penalty": 0.5}),
        ] {
            // The synthetic worker's text depends on the penalties as a model's would: a
            // gateway that dropped them would answer the plain text.
            let penalised = text_of(&gateway, path, &body(extra.clone())).await;
            assert_ne!(penalised, plain, "{path} {extra}");
        }
    }
}
