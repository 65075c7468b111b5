//! The API fields coding tools send beyond plain text, through gateway → queue → synthetic
//! worker: fill-in-the-middle (`suffix`), log probabilities in both of OpenAI's shapes, and `n`
//! choices; whole and streamed. The synthetic worker's answers are documented in its module
//! (`gpu-worker/src/backend/synthetic.rs`), so they are checked exactly here.

mod support;

use async_nats::jetstream;
use coder_nats::headers::RequestHeaders;
use coder_nats::testing::NatsServer;
use coder_nats::{subjects, ErrorKind, WorkerEvent};
use futures::StreamExt;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use support::*;

const MODEL: &str = "coding-model";
/// The synthetic worker's log probability of every chosen token: probability 1/2.
const CHOSEN: f64 = -std::f64::consts::LN_2;

fn fim_body() -> Value {
    json!({"model": MODEL, "prompt": "def add(a, b):\n    ", "suffix": "\n\nprint(add(1, 2))\n",
           "max_tokens": 32, "temperature": 0})
}

async fn ok_json(gateway: &Gateway, path: &str, body: &Value) -> Value {
    let response = post(gateway, path, body).await;
    assert_eq!(response.status(), 200, "{body}");
    response.json().await.unwrap()
}

async fn ok_stream(gateway: &Gateway, path: &str, body: &Value) -> Vec<Value> {
    let mut body = body.clone();
    body["stream"] = json!(true);
    let response = post(gateway, path, &body).await;
    assert_eq!(response.status(), 200, "{body}");
    read_sse(response).await
}

#[tokio::test]
async fn a_suffix_gets_the_middle_and_stops_at_the_fim_end() {
    let (_nats, gateway, _worker) = stack(MODEL, &[], &[]).await;
    let answer = ok_json(&gateway, "/v1/completions", &fim_body()).await;
    let choice = &answer["choices"][0];
    // The synthetic middle names the prefix's 2 lines and the suffix's 3.
    assert_eq!(choice["text"], "return fill(2, 3)\n", "{answer}");
    assert_eq!(choice["finish_reason"], "stop", "{answer}");
    // Six text tokens and the FIM end token.
    assert_eq!(answer["usage"]["completion_tokens"], 7, "{answer}");

    let chunks = ok_stream(&gateway, "/v1/completions", &fim_body()).await;
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["text"].as_str())
        .collect();
    assert_eq!(text, "return fill(2, 3)\n");
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );

    // Without a suffix the same prompt is a plain completion.
    let mut plain = fim_body();
    plain.as_object_mut().unwrap().remove("suffix");
    let answer = ok_json(&gateway, "/v1/completions", &plain).await;
    assert_ne!(answer["choices"][0]["text"], "return fill(2, 3)\n");
}

#[tokio::test]
async fn llama_cpps_infill_route_answers_in_its_own_shape() {
    let (_nats, gateway, _worker) = stack(MODEL, &[], &[]).await;
    // The same middle as `suffix` gives: the line before the cursor joins the prefix.
    let body = json!({"model": MODEL, "input_prefix": "def add(a, b):\n", "prompt": "    ",
                      "input_suffix": "\n\nprint(add(1, 2))\n", "n_predict": 32,
                      "temperature": 0, "cache_prompt": true, "id_slot": -1});
    let answer = ok_json(&gateway, "/infill", &body).await;
    assert_eq!(answer["content"], "return fill(2, 3)\n", "{answer}");
    assert_eq!(answer["stop"], true, "{answer}");
    assert_eq!(answer["stop_type"], "eos", "{answer}");
    assert_eq!(answer["tokens_predicted"], 7, "{answer}");
    assert!(answer["tokens_evaluated"].as_u64().unwrap() > 0, "{answer}");

    // Streamed as llama.cpp streams: pieces, then one last event with the counts, no [DONE].
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let response = post(&gateway, "/infill", &streamed).await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let events: Vec<Value> = text
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .map(|data| serde_json::from_str(data).expect("each event is JSON"))
        .collect();
    let (last, pieces) = events.split_last().expect("events");
    let content: String = pieces
        .iter()
        .filter_map(|e| e["content"].as_str())
        .collect();
    assert_eq!(content, "return fill(2, 3)\n", "{text}");
    assert!(pieces.iter().all(|e| e["stop"] == false), "{text}");
    assert_eq!(
        (&last["stop"], &last["tokens_predicted"]),
        (&json!(true), &json!(7)),
        "{text}"
    );

    // What it does not do is named; `model` is required, as on every route here.
    for (field, value) in [("n_indent", json!(4)), ("samplers", json!(["top_k"]))] {
        let mut refused = body.clone();
        refused[field] = value;
        expect_error(post(&gateway, "/infill", &refused).await, 400, Some(field)).await;
    }
    let mut anonymous = body.clone();
    anonymous.as_object_mut().unwrap().remove("model");
    expect_error(
        post(&gateway, "/infill", &anonymous).await,
        400,
        Some("model"),
    )
    .await;
}

#[tokio::test]
async fn a_field_the_worker_refuses_is_a_400_naming_it() {
    // No worker: the test takes the request off the queue and answers as a worker whose model
    // has no FIM tokens does.
    let nats = NatsServer::start();
    let gateway = idle_gateway(&nats, MODEL, &[]).await;
    let request = tokio::spawn({
        let url = gateway.url("/v1/completions");
        async move { http().post(url).json(&fim_body()).send().await.unwrap() }
    });
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = jetstream::new(client.clone());
    let message = queued_request(&js).await;
    let headers = RequestHeaders::from_header_map(message.headers.as_ref().unwrap()).unwrap();
    let events = [
        WorkerEvent::Started {
            attempt: 1,
            worker_id: "test".into(),
            queue_wait_ms: 0,
        },
        WorkerEvent::Error {
            attempt: 1,
            kind: ErrorKind::InvalidRequest,
            message: "this model has no fill-in-the-middle tokens".into(),
            param: Some("suffix".into()),
        },
    ];
    for event in events {
        let subject = headers.reply_to.clone();
        client
            .publish(subject, event.to_json().into())
            .await
            .unwrap();
    }
    message.ack().await.unwrap();
    let body = expect_error(request.await.unwrap(), 400, Some("suffix")).await;
    let text = body["error"]["message"].as_str().unwrap();
    assert!(text.contains("fill-in-the-middle"), "{body}");
}

/// Checks one chat `logprobs.content` entry against the synthetic worker's figures.
fn check_chat_entry(entry: &Value, top: usize) {
    let token = entry["token"].as_str().unwrap();
    let bytes: Vec<u8> = serde_json::from_value(entry["bytes"].clone()).unwrap();
    assert_eq!(bytes, token.as_bytes(), "{entry}");
    let logprob = entry["logprob"].as_f64().unwrap();
    assert!((logprob - CHOSEN).abs() < 1e-6, "{entry}");
    let alternatives = entry["top_logprobs"].as_array().unwrap();
    assert_eq!(alternatives.len(), top, "{entry}");
    let values: Vec<f64> = alternatives
        .iter()
        .map(|a| a["logprob"].as_f64().unwrap())
        .collect();
    assert!(values.windows(2).all(|w| w[0] >= w[1]), "sorted: {entry}");
    assert!(values.iter().all(|&v| v <= 0.0), "{entry}");
    if top >= 1 {
        // Greedy: the chosen token is the most likely one.
        assert_eq!(alternatives[0]["token"], token, "{entry}");
    }
}

#[tokio::test]
async fn chat_logprobs_have_openais_shape_whole_and_streamed() {
    let (_nats, gateway, _worker) = stack(MODEL, &[], &[]).await;
    for top in [0, 3, 20] {
        let body = json!({"model": MODEL, "messages": [{"role": "user", "content": "a loop"}],
                          "max_tokens": 6, "temperature": 0, "logprobs": true,
                          "top_logprobs": top});
        let answer = ok_json(&gateway, "/v1/chat/completions", &body).await;
        let choice = &answer["choices"][0];
        let content = choice["logprobs"]["content"].as_array().unwrap();
        assert_eq!(content.len(), 6, "{answer}");
        content
            .iter()
            .for_each(|entry| check_chat_entry(entry, top));
        let tokens: String = content
            .iter()
            .map(|e| e["token"].as_str().unwrap())
            .collect();
        assert_eq!(tokens, choice["message"]["content"].as_str().unwrap());

        let chunks = ok_stream(&gateway, "/v1/chat/completions", &body).await;
        let streamed: Vec<&Value> = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["logprobs"]["content"].as_array())
            .flatten()
            .collect();
        assert_eq!(streamed.len(), 6, "{chunks:?}");
        assert_eq!(streamed, content.iter().collect::<Vec<_>>());
    }
    // Without `logprobs`, none.
    let body = json!({"model": MODEL, "messages": [{"role": "user", "content": "a loop"}],
                      "max_tokens": 2});
    let answer = ok_json(&gateway, "/v1/chat/completions", &body).await;
    assert!(answer["choices"][0]["logprobs"].is_null(), "{answer}");
}

#[tokio::test]
async fn completion_logprobs_have_openais_legacy_shape_whole_and_streamed() {
    let (_nats, gateway, _worker) = stack(MODEL, &[], &[]).await;
    let body = json!({"model": MODEL, "prompt": "def f():", "max_tokens": 5, "temperature": 0,
                      "logprobs": 2});
    let answer = ok_json(&gateway, "/v1/completions", &body).await;
    let choice = &answer["choices"][0];
    let logprobs = &choice["logprobs"];
    let tokens: Vec<&str> = logprobs["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(tokens.len(), 5, "{answer}");
    assert_eq!(tokens.concat(), choice["text"].as_str().unwrap());
    let mut offset = 0;
    for (i, token) in tokens.iter().enumerate() {
        assert_eq!(logprobs["text_offset"][i], offset, "{answer}");
        offset += token.chars().count();
        let logprob = logprobs["token_logprobs"][i].as_f64().unwrap();
        assert!((logprob - CHOSEN).abs() < 1e-6, "{answer}");
        let top: BTreeMap<String, f64> =
            serde_json::from_value(logprobs["top_logprobs"][i].clone()).unwrap();
        // The two most likely, the chosen one among them.
        assert_eq!(top.len(), 2, "{answer}");
        assert_eq!(top.get(*token), Some(&logprob), "{answer}");
        assert!(top.values().all(|&v| v <= 0.0));
    }

    let chunks = ok_stream(&gateway, "/v1/completions", &body).await;
    let mut streamed_tokens = Vec::new();
    let mut streamed_offsets = Vec::new();
    for chunk in &chunks {
        let Some(logprobs) = chunk["choices"][0]["logprobs"].as_object() else {
            continue;
        };
        streamed_tokens.extend(logprobs["tokens"].as_array().unwrap().clone());
        streamed_offsets.extend(logprobs["text_offset"].as_array().unwrap().clone());
    }
    assert_eq!(Value::from(streamed_tokens), logprobs["tokens"]);
    assert_eq!(Value::from(streamed_offsets), logprobs["text_offset"]);
}

/// Each choice's text of an answer, by `index`.
fn texts_by_index(answer: &Value, field: &str) -> BTreeMap<u64, String> {
    answer["choices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let text = c.pointer(field).and_then(Value::as_str).unwrap();
            (c["index"].as_u64().unwrap(), text.to_owned())
        })
        .collect()
}

#[tokio::test]
async fn n_choices_each_have_their_index_and_a_seed_repeats_them() {
    let (_nats, gateway, _worker) = stack(MODEL, &[], &[]).await;
    let body = json!({"model": MODEL, "prompt": "def f():", "max_tokens": 4, "temperature": 0.8,
                      "seed": 11, "n": 3});
    let answer = ok_json(&gateway, "/v1/completions", &body).await;
    let texts = texts_by_index(&answer, "/text");
    assert_eq!(
        texts.keys().copied().collect::<Vec<_>>(),
        [0, 1, 2],
        "{answer}"
    );
    let distinct: std::collections::HashSet<_> = texts.values().collect();
    assert_eq!(distinct.len(), 3, "each choice has its own seed: {answer}");
    assert_eq!(answer["usage"]["completion_tokens"], 12, "{answer}");
    assert!(answer["choices"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["finish_reason"] == "length"));
    // The same seed, the same three choices; choice 0 is the `n: 1` answer.
    let again = ok_json(&gateway, "/v1/completions", &body).await;
    assert_eq!(texts_by_index(&again, "/text"), texts);
    let mut one = body.clone();
    one["n"] = json!(1);
    let single = ok_json(&gateway, "/v1/completions", &one).await;
    assert_eq!(single["choices"][0]["text"].as_str().unwrap(), texts[&0]);

    // Streamed: each chunk names its choice, and every choice finishes.
    let chunks = ok_stream(&gateway, "/v1/completions", &body).await;
    let mut streamed: BTreeMap<u64, String> = BTreeMap::new();
    let mut finished = Vec::new();
    for choice in chunks.iter().flat_map(|c| c["choices"].as_array().unwrap()) {
        let index = choice["index"].as_u64().unwrap();
        streamed
            .entry(index)
            .or_default()
            .push_str(choice["text"].as_str().unwrap());
        if choice["finish_reason"].is_string() {
            finished.push(index);
        }
    }
    assert_eq!(streamed, texts);
    assert_eq!(finished, [0, 1, 2]);
}

#[tokio::test]
async fn chat_streams_each_choice_with_its_role_and_index() {
    let (_nats, gateway, _worker) = stack(MODEL, &[], &[]).await;
    let body = json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}],
                      "max_tokens": 3, "n": 2, "seed": 5,
                      "stream_options": {"include_usage": true}});
    let whole = ok_json(&gateway, "/v1/chat/completions", &body).await;
    let texts = texts_by_index(&whole, "/message/content");
    assert_eq!(texts.len(), 2, "{whole}");
    let chunks = ok_stream(&gateway, "/v1/chat/completions", &body).await;
    let mut roles = Vec::new();
    let mut streamed: BTreeMap<u64, String> = BTreeMap::new();
    for choice in chunks.iter().flat_map(|c| c["choices"].as_array().unwrap()) {
        let index = choice["index"].as_u64().unwrap();
        if choice["delta"]["role"] == "assistant" {
            roles.push(index);
        }
        if let Some(text) = choice["delta"]["content"].as_str() {
            streamed.entry(index).or_default().push_str(text);
        }
    }
    assert_eq!(roles, [0, 1]);
    assert_eq!(streamed, texts);
    assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 6);
}

/// The one request the gateway queued, taken off whichever partition of [`MODEL`] holds it.
async fn queued_request(js: &jetstream::Context) -> jetstream::Message {
    let stream = js.get_stream(subjects::STREAM_NAME).await.unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline {
        for partition in 0..coder_nats::affinity::PARTITIONS {
            let consumer: jetstream::consumer::PullConsumer = stream
                .get_consumer(&subjects::consumer_name(MODEL, partition))
                .await
                .unwrap();
            let mut batch = consumer.fetch().max_messages(1).messages().await.unwrap();
            if let Some(message) = batch.next().await {
                return message.unwrap();
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the request is never queued");
}
