//! Worker events lost between the worker and the gateway, here by a proxy that drops chosen
//! messages the worker publishes: the gateway's receipt asks for the request again and the
//! client's answer is resumed whole, or, on the last delivery, the request fails saying so (502
//! `events_lost`). Never
//! a 200 with text missing, never a wait for the deadline.

mod support;

use coder_nats::testing::NatsServer;
use serde_json::{json, Value};
use support::lossy_proxy::{lose_first, LossRule, LossyProxy};
use support::*;

const MODEL: &str = "lossy";

/// A gateway and a synthetic worker (`--max-deliver` deliveries) whose connection to NATS loses
/// what `rule` picks; a request not answered in 30 s would be a 504.
async fn lossy_stack(
    rule: LossRule,
    max_deliver: &str,
) -> (NatsServer, LossyProxy, Gateway, Worker) {
    let nats = NatsServer::start();
    let proxy = LossyProxy::start(&nats, rule).await;
    let gateway = Gateway::start(
        &nats,
        &["--request-timeout", "30", "--max-deliver", max_deliver],
    );
    let worker = Worker::start(
        &nats,
        MODEL,
        &[
            "--nats-url",
            &proxy.url,
            "--synthetic-ms-per-token",
            "5",
            "--max-deliver",
            max_deliver,
        ],
    );
    wait_for_model(&gateway, MODEL).await;
    (nats, proxy, gateway, worker)
}

fn body(stream: bool) -> Value {
    json!({"model": MODEL, "prompt": "lose a token", "max_tokens": 12, "seed": 7, "stream": stream})
}

/// The text of a whole answer, which must be a 200.
async fn answer_text(gateway: &Gateway) -> String {
    let response = post(gateway, "/v1/completions", &body(false)).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    answer["choices"][0]["text"].as_str().unwrap().to_owned()
}

async fn redeliveries(gateway: &Gateway) -> f64 {
    let scrape = scrape(&gateway.metrics_url()).await;
    value(&scrape, "coder_queue_redeliveries_total", &[]).unwrap_or(0.0)
}

#[tokio::test]
async fn a_token_lost_mid_stream_is_regenerated_and_the_stream_resumed_without_a_hole() {
    // The third token event of the first attempt never reaches the gateway.
    let rule = lose_first(1, &[r#""event":"token""#, r#""index":2,"#]);
    let (_nats, proxy, gateway, _worker) = lossy_stack(rule, "3").await;

    let response = post(&gateway, "/v1/completions", &body(true)).await;
    assert_eq!(response.status(), 200);
    let chunks = read_sse(response).await;
    let streamed: String = chunks
        .iter()
        .filter_map(|chunk| chunk["choices"][0]["text"].as_str())
        .collect();
    assert_eq!(proxy.dropped(), 1, "the proxy lost one token event");
    // The same seeded request with nothing lost: the text the client must have seen.
    assert_eq!(streamed, answer_text(&gateway).await);
    assert_eq!(redeliveries(&gateway).await, 1.0);
}

#[tokio::test]
async fn a_lost_last_token_is_caught_by_the_final_count() {
    // Nothing after it skips an index: only `final`'s count shows it.
    let rule = lose_first(1, &[r#""event":"token""#, r#""index":11,"#]);
    let (_nats, proxy, gateway, _worker) = lossy_stack(rule, "3").await;

    let lossy = answer_text(&gateway).await;
    assert_eq!(proxy.dropped(), 1);
    assert_eq!(lossy, answer_text(&gateway).await, "no token missing");
    assert_eq!(redeliveries(&gateway).await, 1.0);
}

#[tokio::test]
async fn a_lost_final_is_sent_again_until_the_gateway_receipts_it() {
    let rule = lose_first(1, &[r#""event":"final""#]);
    let (_nats, proxy, gateway, _worker) = lossy_stack(rule, "3").await;

    let lossy = answer_text(&gateway).await;
    assert_eq!(proxy.dropped(), 1);
    assert_eq!(lossy, answer_text(&gateway).await);
    assert_eq!(redeliveries(&gateway).await, 0.0, "resent, not regenerated");
}

#[tokio::test]
async fn a_gap_in_the_last_delivery_fails_the_request_saying_so() {
    // Every attempt loses its third token; with one delivery there is no second.
    let rule = lose_first(usize::MAX, &[r#""event":"token""#, r#""index":2,"#]);
    let (_nats, _proxy, gateway, _worker) = lossy_stack(rule, "1").await;

    let response = post(&gateway, "/v1/completions", &body(false)).await;
    assert_eq!(response.status(), 502);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "events_lost", "{error}");
    let message = error["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("events of the answer were lost"),
        "{error}"
    );

    // Streamed, the client gets what arrived before the gap, then an error, never a finish.
    let response = post(&gateway, "/v1/completions", &body(true)).await;
    assert_eq!(response.status(), 200);
    let chunks = read_sse(response).await;
    assert!(
        chunks.iter().any(|c| c["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("events of the answer were lost"))),
        "{chunks:?}"
    );
    assert!(
        chunks
            .iter()
            .all(|c| c["choices"][0]["finish_reason"].is_null()),
        "{chunks:?}"
    );
}
