//! The gateway's metric catalogue (`support::catalogue`), checked from outside: traffic of every
//! kind through a real nats-server, the real gateway and a synthetic worker, then the real
//! `/metrics` scraped and parsed with `prometheus-parse` (and checked with `promtool check
//! metrics`).
//! The worker's catalogue is checked in `gpu-worker/tests/metrics.rs`.

mod support;

use coder_nats::testing::NatsServer;
use metrics_common::names;
use reqwest::StatusCode;
use serde_json::json;
use support::*;
use tokio::task::JoinHandle;

const MODEL: &str = "Qwen/Qwen2.5-Coder:1.5b test";
/// A model with a consumer (`--models`) and no worker: its requests stay queued.
const IDLE_MODEL: &str = "idle/coder:v1 x";

#[tokio::test]
async fn gateway_exposes_exactly_the_catalogue_names_types_and_label_keys() {
    let (_nats, gateway, _worker, _queued) = stack_with_every_gateway_family().await;

    let scrape = scrape(&gateway.metrics_url()).await;

    // A redelivery needs a worker to die mid-request: its family is checked, with its value, by
    // `a_redelivered_request_is_counted_once`; here it may be absent, never different.
    let problems = catalogue_problems(
        &scrape,
        GATEWAY_CATALOGUE,
        &["coder_queue_redeliveries_total"],
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test]
async fn gateway_exposes_no_otel_scope_labels_or_target_info() {
    let (_nats, gateway, _worker, _queued) = stack_with_every_gateway_family().await;

    let url = gateway.metrics_url();
    let text = exposition(&url).await;

    assert_no_otel_scope(&url, &text);
}

#[tokio::test]
async fn request_duration_buckets_are_exactly_the_catalogue_boundaries() {
    let (_nats, gateway, _worker) = stack(MODEL, &[], &[]).await;
    complete(&gateway, MODEL, 2).await;
    let _ = post(&gateway, "/no/such/route", &json!({})).await;

    let scrape = scrape(&gateway.metrics_url()).await;

    let histograms = histograms(&scrape, "coder_model_request_duration_seconds");
    assert!(
        histograms.len() >= 2,
        "expected a series per route, got {histograms:?}"
    );
    for (labels, buckets) in histograms {
        let bounds: Vec<f64> = buckets.iter().map(|b| b.less_than).collect();
        assert_eq!(bounds, REQUEST_DURATION_BUCKETS, "buckets of {labels}");
    }
}

#[tokio::test]
async fn latency_histograms_use_the_catalogue_buckets_never_otel_defaults() {
    let (_nats, gateway, _worker) = stack(MODEL, &[], &[]).await;
    complete(&gateway, MODEL, 4).await;

    let scrape = scrape(&gateway.metrics_url()).await;

    for (name, catalogue) in [
        (
            "coder_model_time_to_first_token_seconds",
            names::TTFT_BUCKETS,
        ),
        (
            "coder_model_time_per_output_token_seconds",
            names::TPOT_BUCKETS,
        ),
        ("coder_queue_wait_seconds", names::QUEUE_WAIT_BUCKETS),
    ] {
        let histograms = histograms(&scrape, name);
        assert_eq!(histograms.len(), 1, "{name}: {histograms:?}");
        let bounds: Vec<f64> = histograms[0].1.iter().map(|b| b.less_than).collect();
        let finite = &bounds[..bounds.len() - 1];
        assert_eq!(bounds.last(), Some(&f64::INFINITY), "{name}");
        assert_ne!(finite, OTEL_DEFAULT_BUCKETS, "{name} uses OTel defaults");
        assert_eq!(finite, catalogue, "{name}");
    }
}

#[tokio::test]
async fn promtool_accepts_the_gateway_exposition_without_lint_findings() {
    let (_nats, gateway, _worker, _queued) = stack_with_every_gateway_family().await;

    let text = exposition(&gateway.metrics_url()).await;

    assert_promtool_accepts(&text);
}

/// A stack where every gateway family except redeliveries has a series: traffic of each kind
/// for `MODEL`, and one request queued for `IDLE_MODEL` (no worker) so that a second one is
/// refused with 429. The returned handle keeps the queued request waiting.
async fn stack_with_every_gateway_family() -> (NatsServer, Gateway, Worker, JoinHandle<StatusCode>)
{
    let flags = ["--models", IDLE_MODEL, "--max-pending-per-model", "1"];
    let (nats, gateway, worker) = stack(MODEL, &flags, &[]).await;
    wait_until_configured_model_is_known(&gateway, IDLE_MODEL).await;
    complete(&gateway, MODEL, 3).await;
    // Admission reads the backlog the queue monitor last saw: a poll that caught the request in
    // the moment between its publish and a worker's fetch would refuse the next one (the limit
    // is 1) until the next poll.
    wait_for(
        &gateway.metrics_url(),
        std::time::Duration::from_secs(15),
        "no request pending",
        |s| value(s, "coder_queue_pending_requests", &[("model_name", MODEL)]) == Some(0.0),
    )
    .await;
    stream_completion(&gateway, MODEL, 3).await;
    let body = completion_body("no-such-model", 2);
    assert_eq!(
        post(&gateway, "/v1/completions", &body).await.status(),
        StatusCode::NOT_FOUND
    );
    let queued = queue_one_and_wait(&gateway, IDLE_MODEL).await;
    let refused = post(&gateway, "/v1/completions", &completion_body(IDLE_MODEL, 2)).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    (nats, gateway, worker, queued)
}
