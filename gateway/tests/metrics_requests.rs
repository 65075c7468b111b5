//! The gateway's request metrics, checked from outside: known traffic through a real
//! nats-server, the real gateway and a synthetic worker, then the real `/metrics` scraped:
//! counts by model, route template, status and code; durations, time to first token, time per
//! output token, tokens, queue wait and active requests.

mod support;

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use support::*;

const MODEL: &str = "Qwen/Qwen2.5-Coder:1.5b test";
/// The `endpoint` values the gateway may ever expose.
const ROUTES: &[&str] = &[
    "/v1/completions",
    "/v1/chat/completions",
    "/v1/models",
    "/healthz",
    "/readyz",
    "unmatched",
];
/// The routes the harness itself does not call.
const GENERATION_ROUTES: &[&str] = &["/v1/completions", "/v1/chat/completions"];

#[tokio::test]
async fn requests_total_counts_each_request_by_model_endpoint_status_and_code() {
    let (_nats, gateway, _worker) = stack(MODEL, &[], &[]).await;

    let sent = send_known_mix(&gateway).await;

    let scrape = scrape_when(&gateway.metrics_url(), |s| {
        value(s, "coder_model_requests_total", &[("code", "400")])
            == Some(f64::from(sent.bad_request))
    })
    .await;
    let mut counted = series(&scrape, "coder_model_requests_total");
    counted.retain(|labels, _| GENERATION_ROUTES.contains(&labels["endpoint"].as_str()));
    let request = |model: &str, endpoint: &str, status: &str, code: &str, sent: u32| {
        let keys = [("model_name", model), ("endpoint", endpoint)];
        let keys = keys.into_iter().chain([("status", status), ("code", code)]);
        (labels(keys), f64::from(sent))
    };
    let completions = "/v1/completions";
    let expected = BTreeMap::from([
        request(MODEL, completions, "success", "200", sent.completions_ok),
        request(
            MODEL,
            "/v1/chat/completions",
            "success",
            "200",
            sent.chat_ok,
        ),
        request("unknown", completions, "error", "404", sent.unknown_model),
        request("unknown", completions, "error", "400", sent.bad_request),
    ]);
    assert_eq!(counted, expected);
}

#[tokio::test]
async fn request_duration_counts_every_answered_request_per_model_and_endpoint() {
    let (_nats, gateway, _worker) = stack(MODEL, &[], &[]).await;

    let sent = send_known_mix(&gateway).await;

    let scrape = scrape_when(&gateway.metrics_url(), |s| {
        value(
            s,
            "coder_model_request_duration_seconds_count",
            &[("model_name", "unknown"), ("endpoint", "/v1/completions")],
        ) == Some(f64::from(sent.unknown_model + sent.bad_request))
    })
    .await;
    let count = |model: &str, endpoint: &str| {
        value(
            &scrape,
            "coder_model_request_duration_seconds_count",
            &[("model_name", model), ("endpoint", endpoint)],
        )
    };
    assert_eq!(
        count(MODEL, "/v1/completions"),
        Some(f64::from(sent.completions_ok))
    );
    assert_eq!(
        count(MODEL, "/v1/chat/completions"),
        Some(f64::from(sent.chat_ok))
    );
    assert_eq!(
        count("unknown", "/v1/completions"),
        Some(f64::from(sent.unknown_model + sent.bad_request))
    );
}

#[tokio::test]
async fn unknown_paths_are_counted_as_404_under_the_one_unmatched_endpoint() {
    let (_nats, gateway, _worker) = stack(MODEL, &[], &[]).await;
    let paths = random_unknown_paths(500);

    let statuses: Vec<StatusCode> = futures::stream::iter(paths.into_iter().enumerate())
        .map(|(i, path)| {
            let url = gateway.url(&path);
            async move {
                let request = if i % 2 == 0 {
                    http().get(url)
                } else {
                    http().post(url).json(&json!({"model": MODEL}))
                };
                request.send().await.expect("gateway answers").status()
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == StatusCode::NOT_FOUND));

    let scrape = scrape_when(&gateway.metrics_url(), |s| {
        value(
            s,
            "coder_model_requests_total",
            &[("endpoint", "unmatched")],
        ) >= Some(500.0)
    })
    .await;
    let endpoints: BTreeSet<String> = scrape
        .samples
        .iter()
        .filter(|s| s.metric.starts_with("coder_model_request"))
        .filter_map(|s| s.labels.get("endpoint").map(str::to_owned))
        .collect();
    let outside: Vec<&String> = endpoints
        .iter()
        .filter(|e| !ROUTES.contains(&e.as_str()))
        .collect();
    assert!(
        outside.is_empty(),
        "endpoint values outside the routes: {outside:?}"
    );
    let unmatched = [("endpoint", "unmatched"), ("model_name", "unknown")];
    let error_404 = [("status", "error"), ("code", "404")];
    let labels: Vec<(&str, &str)> = unmatched.iter().chain(&error_404).copied().collect();
    assert_eq!(
        value(&scrape, "coder_model_requests_total", &labels),
        Some(500.0)
    );
    assert_eq!(
        value(
            &scrape,
            "coder_model_request_duration_seconds_count",
            &unmatched
        ),
        Some(500.0)
    );
}

#[tokio::test]
async fn time_to_first_token_is_recorded_for_a_non_streamed_request() {
    let (_nats, gateway, _worker) = stack(MODEL, &[], &[]).await;

    complete(&gateway, MODEL, 3).await;

    let scrape = scrape(&gateway.metrics_url()).await;
    let ttft = value(
        &scrape,
        "coder_model_time_to_first_token_seconds_count",
        &[("model_name", MODEL)],
    );
    assert_eq!(ttft, Some(1.0));
}

#[tokio::test]
async fn time_to_first_token_is_recorded_for_streamed_requests() {
    let (_nats, gateway, _worker) = stack(MODEL, &[], &[]).await;

    stream_completion(&gateway, MODEL, 3).await;
    let chat = json!({
        "model": MODEL, "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 3, "stream": true,
    });
    read_sse(post(&gateway, "/v1/chat/completions", &chat).await).await;

    let scrape = scrape(&gateway.metrics_url()).await;
    let ttft = value(
        &scrape,
        "coder_model_time_to_first_token_seconds_count",
        &[("model_name", MODEL)],
    );
    assert_eq!(ttft, Some(2.0));
}

#[tokio::test]
async fn time_per_output_token_is_recorded_once_per_multi_token_request() {
    let (_nats, gateway, _worker) = stack(MODEL, &[], &["--synthetic-ms-per-token", "5"]).await;

    complete(&gateway, MODEL, 10).await;
    stream_completion(&gateway, MODEL, 10).await;

    let scrape = scrape(&gateway.metrics_url()).await;
    let labels = [("model_name", MODEL)];
    let count = value(
        &scrape,
        "coder_model_time_per_output_token_seconds_count",
        &labels,
    );
    let sum = value(
        &scrape,
        "coder_model_time_per_output_token_seconds_sum",
        &labels,
    );
    assert_eq!(count, Some(2.0));
    // Two means of ~5 ms tokens; generous bounds for a loaded machine.
    let sum = sum.expect("a sum");
    assert!(sum > 0.004 && sum < 1.0, "sum of per-token means {sum}");
}

#[tokio::test]
async fn time_per_output_token_follows_one_choice_when_there_are_several() {
    let (_nats, gateway, _worker) = stack(MODEL, &[], &["--synthetic-ms-per-token", "5"]).await;
    let mut body = completion_body(MODEL, 10);
    body["n"] = serde_json::json!(4);
    assert_eq!(post(&gateway, "/v1/completions", &body).await.status(), 200);

    let scrape = scrape(&gateway.metrics_url()).await;
    let labels = [("model_name", MODEL)];
    let metric = "coder_model_time_per_output_token_seconds";
    let count = value(&scrape, &format!("{metric}_count"), &labels);
    assert_eq!(count, Some(1.0));
    // Each choice's tokens come at least 5 ms apart; four choices interleaved would read as a
    // quarter of that.
    let mean = value(&scrape, &format!("{metric}_sum"), &labels).expect("a sum");
    assert!(
        mean > 0.004 && mean < 1.0,
        "mean time per output token {mean}"
    );
}

#[tokio::test]
async fn token_counters_equal_the_usage_returned_to_clients() {
    let (_nats, gateway, _worker) = stack(MODEL, &[], &[]).await;

    let mut prompt = 0;
    let mut generated = 0;
    for max_tokens in [3, 5, 8] {
        let body = complete(&gateway, MODEL, max_tokens).await;
        prompt += body["usage"]["prompt_tokens"].as_u64().unwrap();
        generated += body["usage"]["completion_tokens"].as_u64().unwrap();
    }

    let scrape = scrape(&gateway.metrics_url()).await;
    let labels = [("model_name", MODEL)];
    assert_eq!(generated, 16);
    assert_eq!(
        value(&scrape, "coder_model_prompt_tokens_total", &labels),
        Some(prompt as f64)
    );
    assert_eq!(
        value(&scrape, "coder_model_generation_tokens_total", &labels),
        Some(generated as f64)
    );
}

#[tokio::test]
async fn queue_wait_is_recorded_once_per_started_request() {
    let (_nats, gateway, _worker) = stack(MODEL, &[], &[]).await;

    for _ in 0..3 {
        complete(&gateway, MODEL, 2).await;
    }
    stream_completion(&gateway, MODEL, 2).await;

    let scrape = scrape(&gateway.metrics_url()).await;
    assert_eq!(
        value(
            &scrape,
            "coder_queue_wait_seconds_count",
            &[("model_name", MODEL)]
        ),
        Some(4.0)
    );
}

#[tokio::test]
async fn active_requests_counts_queued_and_running_requests_until_they_finish() {
    let slow = ["--concurrency", "1", "--synthetic-ms-per-token", "50"];
    let (_nats, gateway, _worker) = stack(MODEL, &[], &slow).await;
    let labels = [("model_name", MODEL)];

    let requests: Vec<_> = (0..2)
        .map(|_| spawn_completion(&gateway, MODEL, 30))
        .collect();

    wait_for(&gateway.metrics_url(), FOLLOW, "2 active", |s| {
        value(s, "coder_model_active_requests", &labels) == Some(2.0)
    })
    .await;
    for request in requests {
        assert_eq!(request.await.unwrap(), StatusCode::OK);
    }
    let after = scrape(&gateway.metrics_url()).await;
    assert_eq!(
        value(&after, "coder_model_active_requests", &labels),
        Some(0.0)
    );
}

/// How many requests of each kind [`send_known_mix`] sent.
struct Sent {
    completions_ok: u32,
    chat_ok: u32,
    unknown_model: u32,
    bad_request: u32,
}

/// 3 completions and 2 chats answered 200, 4 requests for an unknown model (404) and 5 invalid
/// ones (400), each status checked on the way.
async fn send_known_mix(gateway: &Gateway) -> Sent {
    let sent = Sent {
        completions_ok: 3,
        chat_ok: 2,
        unknown_model: 4,
        bad_request: 5,
    };
    for i in 0..sent.completions_ok {
        if i == 0 {
            stream_completion(gateway, MODEL, 2).await;
        } else {
            complete(gateway, MODEL, 2).await;
        }
    }
    for _ in 0..sent.chat_ok {
        let chat = json!({
            "model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2,
        });
        let response = post(gateway, "/v1/chat/completions", &chat).await;
        assert_eq!(response.status(), StatusCode::OK);
        // The whole answer, so the request is over (and counted) before the next one.
        response.bytes().await.expect("the chat answer");
    }
    for i in 0..sent.unknown_model {
        let body = completion_body(&format!("no-such-model-{i}"), 2);
        assert_eq!(
            post(gateway, "/v1/completions", &body).await.status(),
            StatusCode::NOT_FOUND
        );
    }
    let invalid = [
        json!({"model": MODEL, "prompt": "x", "max_tokens": -1}),
        json!({"model": MODEL, "prompt": "x", "temperature": 5.0}),
        json!({"model": MODEL}),
        json!({"prompt": "x"}),
        json!("not an object"),
    ];
    assert_eq!(invalid.len() as u32, sent.bad_request);
    for body in &invalid {
        assert_eq!(
            post(gateway, "/v1/completions", body).await.status(),
            StatusCode::BAD_REQUEST,
            "{body}"
        );
    }
    sent
}

/// `count` distinct paths that match no route (random segments under `/`, `/v1`, and below the
/// real routes).
fn random_unknown_paths(count: usize) -> Vec<String> {
    use rand::distr::Alphanumeric;
    use rand::Rng;
    let mut rng = rand::rng();
    let mut paths = BTreeSet::new();
    while paths.len() < count {
        let len = rng.random_range(1..16);
        let segment: String = (&mut rng)
            .sample_iter(Alphanumeric)
            .take(len)
            .map(char::from)
            .collect();
        let path = match rng.random_range(0..5) {
            0 => format!("/{segment}"),
            1 => format!("/v1/{segment}"),
            2 => format!("/v1/completions/{segment}"),
            3 => format!("/v1/models/{segment}"),
            _ => format!("/{segment}/{}/{segment}", rng.random_range(0..1000)),
        };
        if !ROUTES.contains(&path.as_str()) {
            paths.insert(path);
        }
    }
    paths.into_iter().collect()
}
