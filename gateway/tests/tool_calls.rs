//! Tool calls and JSON answers through gateway → queue → synthetic worker, whole and streamed.
//!
//! The synthetic worker answers a conversation by walking the grammar the request asks for
//! (`gpu-worker/src/backend/synthetic/structured.rs`): a required call is
//! `<tool_call>\n{"name": "<first tool>", "arguments": {<required properties, empty>}}\n</tool_call>`,
//! parsed by the worker into OpenAI's deltas, so the shapes are checked exactly here.

mod support;

use serde_json::{json, Value};
use support::*;

const MODEL: &str = "tools-model";

fn weather() -> Value {
    json!({"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"], "additionalProperties": false}}})
}

fn question(tool_choice: Value) -> Value {
    json!({"model": MODEL, "max_tokens": 64, "seed": 1, "tool_choice": tool_choice,
           "tools": [weather(), {"type": "function", "function": {"name": "now"}}],
           "messages": [{"role": "user", "content": "Weather in Paris?"}]})
}

async fn ok_json(gateway: &Gateway, body: &Value) -> Value {
    let response = post(gateway, "/v1/chat/completions", body).await;
    assert_eq!(response.status(), 200, "{body}");
    response.json().await.unwrap()
}

async fn ok_stream(gateway: &Gateway, body: &Value) -> Vec<Value> {
    let mut body = body.clone();
    body["stream"] = json!(true);
    let response = post(gateway, "/v1/chat/completions", &body).await;
    assert_eq!(response.status(), 200, "{body}");
    read_sse(response).await
}

#[tokio::test]
async fn a_required_call_comes_whole_and_in_openais_stream_pieces() {
    let (_nats, gateway, _worker) = stack(MODEL, &[], &[]).await;
    let answer = ok_json(&gateway, &question(json!("required"))).await;
    let choice = &answer["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{answer}");
    let message = &choice["message"];
    assert_eq!(message["content"], Value::Null, "{answer}");
    let calls = message["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1, "{answer}");
    assert_eq!(calls[0]["type"], "function");
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    assert_eq!(calls[0]["function"]["arguments"], r#"{"city": ""}"#);
    let id = calls[0]["id"].as_str().unwrap();
    assert!(id.starts_with("call_"), "{id}");

    // Streamed: the role, then the call's index, id, type and name with no arguments yet, then
    // only argument pieces, then the finish; never a `content` beside the call.
    let chunks = ok_stream(&gateway, &question(json!("required"))).await;
    let deltas: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| {
            c["choices"][0]["delta"]
                .as_object()
                .map(|_| &c["choices"][0]["delta"])
        })
        .collect();
    assert_eq!(deltas[0]["role"], "assistant", "{chunks:?}");
    let pieces: Vec<&Value> = deltas
        .iter()
        .filter_map(|d| d["tool_calls"].as_array())
        .flatten()
        .collect();
    let (first, rest) = pieces.split_first().expect("call pieces");
    assert_eq!(first["index"], 0);
    assert_eq!(first["type"], "function");
    assert_eq!(first["function"]["name"], "get_weather");
    assert!(
        first["id"].as_str().unwrap().starts_with("call_"),
        "{first}"
    );
    assert!(!rest.is_empty(), "the arguments come in pieces: {pieces:?}");
    assert!(rest
        .iter()
        .all(|p| p["index"] == 0 && p.get("id").is_none() && p["function"].get("name").is_none()));
    let arguments: String = pieces
        .iter()
        .map(|p| p["function"]["arguments"].as_str().unwrap())
        .collect();
    assert_eq!(arguments, r#"{"city": ""}"#);
    assert!(
        deltas.iter().skip(1).all(|d| d.get("content").is_none()),
        "{chunks:?}"
    );
    let finish = chunks.last().unwrap()["choices"][0]["finish_reason"].clone();
    assert_eq!(finish, "tool_calls");
}

#[tokio::test]
async fn a_round_trip_gets_a_call_then_a_text_answer_to_its_result() {
    let (_nats, gateway, _worker) = stack(MODEL, &[], &[]).await;
    let first = ok_json(&gateway, &question(json!("auto"))).await;
    let call = first["choices"][0]["message"]["tool_calls"][0].clone();
    assert_eq!(call["function"]["name"], "get_weather", "{first}");

    let mut follow_up = question(json!("auto"));
    follow_up["messages"].as_array_mut().unwrap().extend([
        json!({"role": "assistant", "content": null, "tool_calls": [call.clone()]}),
        json!({"role": "tool", "tool_call_id": call["id"], "content": "18 C, clear"}),
    ]);
    let answer = ok_json(&gateway, &follow_up).await;
    let message = &answer["choices"][0]["message"];
    assert!(
        message["content"]
            .as_str()
            .is_some_and(|text| !text.is_empty()),
        "{answer}"
    );
    assert!(message.get("tool_calls").is_none(), "{answer}");
    assert_ne!(answer["choices"][0]["finish_reason"], "tool_calls");

    // `none` shows no tools: text even after a user message.
    let none = ok_json(&gateway, &question(json!("none"))).await;
    assert!(
        none["choices"][0]["message"].get("tool_calls").is_none(),
        "{none}"
    );
}

#[tokio::test]
async fn each_choice_calls_with_its_own_id_and_a_named_function_is_the_one_called() {
    let (_nats, gateway, _worker) = stack(MODEL, &[], &[]).await;
    let named = json!({"type": "function", "function": {"name": "now"}});
    let mut body = question(named);
    body["n"] = json!(2);
    let answer = ok_json(&gateway, &body).await;
    let ids: Vec<&str> = (0..2)
        .map(|i| {
            let call = &answer["choices"][i]["message"]["tool_calls"][0];
            assert_eq!(call["function"]["name"], "now", "{answer}");
            assert_eq!(call["function"]["arguments"], "{}", "{answer}");
            call["id"].as_str().unwrap()
        })
        .collect();
    assert_ne!(ids[0], ids[1]);
}

#[tokio::test]
async fn json_answers_follow_their_schema_and_an_unenforceable_one_is_named() {
    let (_nats, gateway, _worker) = stack(MODEL, &[], &[]).await;
    let schema = json!({"type": "object", "properties": {
        "name": {"type": "string"}, "age": {"type": "integer"},
        "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "minItems": 1}},
        "required": ["name", "age", "tags"], "additionalProperties": false});
    let body = json!({"model": MODEL, "max_tokens": 64, "seed": 1,
        "messages": [{"role": "user", "content": "A person, as JSON."}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "person", "schema": schema}}});
    let answer = ok_json(&gateway, &body).await;
    assert_eq!(answer["choices"][0]["finish_reason"], "stop", "{answer}");
    let text = answer["choices"][0]["message"]["content"].as_str().unwrap();
    let person: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(person.as_object().unwrap().len(), 3, "{text}");
    // In the schema's order, as a grammar built from it writes them.
    let at = |key: &str| text.find(&format!("\"{key}\"")).unwrap();
    assert!(at("name") < at("age") && at("age") < at("tags"), "{text}");
    assert!(
        person["name"].is_string() && person["age"].is_i64(),
        "{text}"
    );
    let tags = person["tags"].as_array().unwrap();
    assert!(
        !tags.is_empty() && tags.iter().all(|t| t == "a" || t == "b"),
        "{text}"
    );

    let mut object = body.clone();
    object["response_format"] = json!({"type": "json_object"});
    let answer = ok_json(&gateway, &object).await;
    let text = answer["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(
        serde_json::from_str::<Value>(text).unwrap().is_object(),
        "{text}"
    );

    // A keyword the grammar engine cannot enforce is refused by the worker, naming the field.
    let mut unenforceable = body.clone();
    unenforceable["response_format"]["json_schema"]["schema"] =
        json!({"type": "object", "if": {"required": ["a"]}});
    expect_error(
        post(&gateway, "/v1/chat/completions", &unenforceable).await,
        400,
        Some("response_format"),
    )
    .await;
    let mut bad_tool = question(json!("required"));
    bad_tool["tools"][1]["function"]["parameters"] = json!({"type": "object", "if": {}});
    expect_error(
        post(&gateway, "/v1/chat/completions", &bad_tool).await,
        400,
        Some("tools[1].function.parameters"),
    )
    .await;
}
