//! The metric catalogue of `DESIGN.md`, checked from outside: known traffic through a real
//! nats-server, the real gateway and synthetic workers, then the real `/metrics` endpoints
//! scraped and parsed with `prometheus-parse` (and checked with `promtool check metrics`).

mod support;

use coder_nats::testing::NatsServer;
use futures::StreamExt;
use metrics_common::names;
use prometheus_parse::{Scrape, Value as Reading};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;
use tokio::task::JoinHandle;

const MODEL: &str = "Qwen/Qwen2.5-Coder:1.5b test";
/// A model with a consumer (`--models`) and no worker: its requests stay queued.
const IDLE_MODEL: &str = "idle/coder:v1 x";
/// The harness's `--queue-poll-interval`.
const REFRESH: Duration = Duration::from_millis(250);
/// How long the queue gauges get to follow the queue: two refresh intervals, plus room for a
/// worker process to connect and fetch on a loaded two-core machine.
const FOLLOW: Duration = Duration::from_secs(3);
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
/// `coder_model_request_duration_seconds` boundaries of `DESIGN.md`, `+Inf` last.
const REQUEST_DURATION_BUCKETS: &[f64] = &[
    0.1,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    f64::INFINITY,
];
/// The OpenTelemetry SDK's default histogram boundaries: never acceptable here.
const OTEL_DEFAULT_BUCKETS: &[f64] = &[
    0.0, 5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1000.0, 2500.0, 5000.0, 7500.0,
    10000.0,
];

use Kind::{Counter, Gauge, Histogram};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
    /// `_sum` and `_count` lines of a histogram, as the parser reports them.
    Untyped,
}

/// One metric family of the catalogue: exposition name, type, label keys (without `le`).
struct Family {
    name: &'static str,
    kind: Kind,
    labels: &'static [&'static str],
}

const fn family(name: &'static str, kind: Kind, labels: &'static [&'static str]) -> Family {
    Family { name, kind, labels }
}

const BY_MODEL: &[&str] = &["model_name"];
const GPU: &[&str] = &["gpu_id", "model_name"];

#[rustfmt::skip]
const GATEWAY_CATALOGUE: &[Family] = &[
    family("coder_model_requests_total", Counter, &["model_name", "endpoint", "status", "code"]),
    family("coder_model_request_duration_seconds", Histogram, &["model_name", "endpoint"]),
    family("coder_model_active_requests", Gauge, BY_MODEL),
    family("coder_model_time_to_first_token_seconds", Histogram, BY_MODEL),
    family("coder_model_time_per_output_token_seconds", Histogram, BY_MODEL),
    family("coder_model_prompt_tokens_total", Counter, BY_MODEL),
    family("coder_model_generation_tokens_total", Counter, BY_MODEL),
    family("coder_queue_pending_requests", Gauge, BY_MODEL),
    family("coder_queue_inflight_requests", Gauge, BY_MODEL),
    family("coder_queue_oldest_request_age_seconds", Gauge, BY_MODEL),
    family("coder_queue_wait_seconds", Histogram, BY_MODEL),
    family("coder_queue_rejected_total", Counter, &["model_name", "reason"]),
    family("coder_queue_redeliveries_total", Counter, BY_MODEL),
    family("coder_workers_connected", Gauge, BY_MODEL),
];

#[rustfmt::skip]
const WORKER_CATALOGUE: &[Family] = &[
    family("coder_worker_slots", Gauge, &["model_name", "state"]),
    family("coder_worker_requests_total", Counter, &["model_name", "outcome"]),
    family("coder_worker_model_load_seconds", Gauge, BY_MODEL),
];

/// NVML families: only where a GPU is present, so optional here.
#[rustfmt::skip]
const GPU_CATALOGUE: &[Family] = &[
    family("nvidia_gpu_memory_used_bytes", Gauge, GPU),
    family("nvidia_gpu_memory_total_bytes", Gauge, GPU),
    family("nvidia_gpu_utilization_ratio", Gauge, GPU),
    family("nvidia_gpu_temperature_celsius", Gauge, GPU),
    family("nvidia_gpu_power_watts", Gauge, GPU),
];

// ---------------------------------------------------------------------------------------------
// Catalogue
// ---------------------------------------------------------------------------------------------

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
async fn worker_exposes_exactly_the_catalogue_names_types_and_label_keys() {
    let (_nats, gateway, worker) = stack(MODEL, &[], &[]).await;
    complete(&gateway, MODEL, 3).await;

    // The outcome is counted after the ack, which may come after the client's answer.
    let scrape = scrape_when(&worker.metrics_url(), |s| {
        value(s, "coder_worker_requests_total", &[]).is_some()
    })
    .await;

    let catalogue: Vec<&Family> = WORKER_CATALOGUE.iter().chain(GPU_CATALOGUE).collect();
    let optional: Vec<&str> = GPU_CATALOGUE.iter().map(|f| f.name).collect();
    let problems = catalogue_problems(&scrape, catalogue, &optional);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test]
async fn neither_endpoint_exposes_otel_scope_labels_or_target_info() {
    let (_nats, gateway, worker, _queued) = stack_with_every_gateway_family_and_worker().await;

    for url in [gateway.metrics_url(), worker.metrics_url()] {
        let text = exposition(&url).await;
        let scrape = parse(&text);

        let names: BTreeSet<&str> = scrape.samples.iter().map(|s| s.metric.as_str()).collect();
        assert!(!names.is_empty(), "{url} exposes nothing");
        let otel_names: Vec<&&str> = names
            .iter()
            .filter(|n| n.starts_with("target_info") || n.starts_with("otel_scope"))
            .collect();
        assert!(otel_names.is_empty(), "{url} exposes {otel_names:?}");
        let scoped: Vec<String> = scrape
            .samples
            .iter()
            .filter(|s| s.labels.keys().any(|k| k.starts_with("otel_scope")))
            .map(|s| format!("{}{{{}}}", s.metric, s.labels))
            .collect();
        assert!(scoped.is_empty(), "{url} has otel_scope labels: {scoped:?}");
        // The parser drops lines it cannot read: make sure these never appear in raw text either.
        assert!(!text.contains("otel_scope") && !text.contains("target_info"));
    }
}

// ---------------------------------------------------------------------------------------------
// Request counters and histograms
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Queue signals
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn pending_and_oldest_age_rise_while_no_worker_serves_the_model() {
    let nats = NatsServer::start();
    let gateway = idle_gateway(&nats, &[]).await;
    let url = gateway.metrics_url();
    let labels = [("model_name", IDLE_MODEL)];

    let _queued: Vec<_> = (0..4)
        .map(|_| spawn_completion(&gateway, IDLE_MODEL, 2))
        .collect();

    let (first, took) = wait_for(&url, FOLLOW, "pending = 4, oldest > 0", |s| {
        value(s, "coder_queue_pending_requests", &labels) == Some(4.0)
            && value(s, "coder_queue_oldest_request_age_seconds", &labels) > Some(0.0)
    })
    .await;
    eprintln!("backlog visible {took:?} after the requests were sent");
    let oldest_then = value(&first, "coder_queue_oldest_request_age_seconds", &labels).unwrap();
    assert_eq!(
        value(&first, "coder_queue_inflight_requests", &labels),
        Some(0.0)
    );
    tokio::time::sleep(4 * REFRESH).await;
    let later = scrape(&url).await;
    let oldest_now = value(&later, "coder_queue_oldest_request_age_seconds", &labels).unwrap();
    assert!(
        oldest_now >= oldest_then + REFRESH.as_secs_f64(),
        "oldest age did not keep rising: {oldest_then} then {oldest_now}"
    );
}

#[tokio::test]
async fn pending_and_oldest_age_fall_to_zero_when_a_worker_starts() {
    let nats = NatsServer::start();
    let gateway = idle_gateway(&nats, &[]).await;
    let url = gateway.metrics_url();
    let labels = [("model_name", IDLE_MODEL)];
    let queued: Vec<_> = (0..3)
        .map(|_| spawn_completion(&gateway, IDLE_MODEL, 2))
        .collect();
    wait_for(&url, FOLLOW, "pending = 3", |s| {
        value(s, "coder_queue_pending_requests", &labels) == Some(3.0)
            && value(s, "coder_queue_oldest_request_age_seconds", &labels) > Some(0.0)
    })
    .await;

    let _worker = Worker::start(&nats, IDLE_MODEL, &[]);

    let (_, took) = wait_for(&url, FOLLOW, "pending = 0 and oldest = 0", |s| {
        value(s, "coder_queue_pending_requests", &labels) == Some(0.0)
            && value(s, "coder_queue_oldest_request_age_seconds", &labels) == Some(0.0)
    })
    .await;
    eprintln!("backlog drained in the gauges {took:?} after the worker was up");
    for request in queued {
        assert_eq!(request.await.unwrap(), StatusCode::OK);
    }
}

#[tokio::test]
async fn workers_connected_goes_from_zero_to_one_when_a_worker_starts() {
    let nats = NatsServer::start();
    let gateway = idle_gateway(&nats, &[]).await;
    let url = gateway.metrics_url();
    let labels = [("model_name", IDLE_MODEL)];
    wait_for(&url, FOLLOW, "workers_connected = 0", |s| {
        value(s, "coder_workers_connected", &labels) == Some(0.0)
    })
    .await;

    let _worker = Worker::start(&nats, IDLE_MODEL, &[]);

    wait_for(&url, FOLLOW, "workers_connected = 1", |s| {
        value(s, "coder_workers_connected", &labels) == Some(1.0)
    })
    .await;
}

#[tokio::test]
async fn inflight_counts_running_requests_and_pending_the_ones_waiting_for_a_slot() {
    let slow = ["--concurrency", "2", "--synthetic-ms-per-token", "50"];
    let (_nats, gateway, _worker) = stack(MODEL, &[], &slow).await;
    let labels = [("model_name", MODEL)];

    let requests: Vec<_> = (0..3)
        .map(|_| spawn_completion(&gateway, MODEL, 40))
        .collect();

    wait_for(
        &gateway.metrics_url(),
        FOLLOW,
        "inflight 2, pending 1",
        |s| {
            value(s, "coder_queue_inflight_requests", &labels) == Some(2.0)
                && value(s, "coder_queue_pending_requests", &labels) == Some(1.0)
        },
    )
    .await;
    for request in requests {
        assert_eq!(request.await.unwrap(), StatusCode::OK);
    }
}

/// `/readyz` must not answer 200 before the `--models` consumers exist: a request in such a
/// window would be refused 404 ("model does not exist") instead of queued, and the backlog
/// gauges would never see it. Such a window would last a few milliseconds, so each try sends its
/// request the moment `/readyz` first answers 200.
#[tokio::test]
async fn a_configured_model_queues_from_the_moment_the_gateway_is_ready() {
    const TRIES: usize = 25;
    let mut refused = 0;
    for _ in 0..TRIES {
        let nats = NatsServer::start();
        let gateway = spawn_gateway(&nats, &["--models", IDLE_MODEL, "--request-timeout", "0.1"]);
        wait_ready_closely(&gateway);

        let response = post(&gateway, "/v1/completions", &completion_body(IDLE_MODEL, 2)).await;

        if response.status() == StatusCode::NOT_FOUND {
            refused += 1;
        }
    }
    assert_eq!(
        refused, 0,
        "{refused} of {TRIES} requests for a --models model refused 404 right after /readyz"
    );
}

#[tokio::test]
async fn a_full_backlog_is_counted_as_rejected_with_reason_backlog_full() {
    let nats = NatsServer::start();
    let gateway = idle_gateway(&nats, &["--max-pending-per-model", "1"]).await;
    let _queued = queue_one_and_wait(&gateway, IDLE_MODEL).await;

    let refused = post(&gateway, "/v1/completions", &completion_body(IDLE_MODEL, 2)).await;

    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let scrape = scrape_when(&gateway.metrics_url(), |s| {
        value(s, "coder_model_requests_total", &[("code", "429")]).is_some()
    })
    .await;
    let backlog_full = labels([("model_name", IDLE_MODEL), ("reason", "backlog_full")]);
    assert_eq!(
        series(&scrape, "coder_queue_rejected_total"),
        BTreeMap::from([(backlog_full, 1.0)])
    );
    let code_429 = [
        ("model_name", IDLE_MODEL),
        ("code", "429"),
        ("status", "error"),
    ];
    assert_eq!(
        value(&scrape, "coder_model_requests_total", &code_429),
        Some(1.0)
    );
}

#[tokio::test]
async fn a_redelivered_request_is_counted_once() {
    let first_flags = ["--ack-wait", "1", "--synthetic-ms-per-token", "100"];
    let (nats, gateway, first) = stack(MODEL, &[], &first_flags).await;
    let request = spawn_completion(&gateway, MODEL, 30);
    let busy = [("model_name", MODEL), ("state", "busy")];
    wait_for(&first.metrics_url(), FOLLOW, "first worker busy", |s| {
        value(s, "coder_worker_slots", &busy) == Some(1.0)
    })
    .await;

    first.process.signal(9);
    let _second = Worker::start(&nats, MODEL, &["--ack-wait", "1"]);

    assert_eq!(request.await.unwrap(), StatusCode::OK);
    let scrape = scrape(&gateway.metrics_url()).await;
    assert_eq!(
        label_keys(&scrape, "coder_queue_redeliveries_total"),
        vec![set(&["model_name"])]
    );
    assert_eq!(
        value(
            &scrape,
            "coder_queue_redeliveries_total",
            &[("model_name", MODEL)]
        ),
        Some(1.0)
    );
}

// ---------------------------------------------------------------------------------------------
// Worker
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn worker_slots_follow_concurrency() {
    let slow = ["--concurrency", "3", "--synthetic-ms-per-token", "50"];
    let (_nats, gateway, worker) = stack(MODEL, &[], &slow).await;
    let url = worker.metrics_url();
    let slots = |s: &Scrape, state: &str| {
        value(
            s,
            "coder_worker_slots",
            &[("model_name", MODEL), ("state", state)],
        )
    };
    let before = scrape(&url).await;
    assert_eq!(
        (slots(&before, "busy"), slots(&before, "idle")),
        (Some(0.0), Some(3.0))
    );

    let requests: Vec<_> = (0..3)
        .map(|_| spawn_completion(&gateway, MODEL, 40))
        .collect();

    let (during, _) = wait_for(&url, FOLLOW, "3 busy slots", |s| {
        slots(s, "busy") == Some(3.0)
    })
    .await;
    assert_eq!(slots(&during, "idle"), Some(0.0));
    for request in requests {
        assert_eq!(request.await.unwrap(), StatusCode::OK);
    }
    wait_for(&url, FOLLOW, "all slots idle again", |s| {
        slots(s, "busy") == Some(0.0) && slots(s, "idle") == Some(3.0)
    })
    .await;
}

#[tokio::test]
async fn worker_requests_total_counts_completed_requests() {
    let (_nats, gateway, worker) = stack(MODEL, &[], &[]).await;

    for _ in 0..3 {
        complete(&gateway, MODEL, 2).await;
    }
    stream_completion(&gateway, MODEL, 2).await;

    let completed = [("model_name", MODEL), ("outcome", "completed")];
    wait_for(&worker.metrics_url(), FOLLOW, "4 completed", |s| {
        value(s, "coder_worker_requests_total", &completed) == Some(4.0)
    })
    .await;
}

#[tokio::test]
async fn worker_counts_a_request_whose_client_went_away_as_cancelled() {
    let slow = ["--synthetic-ms-per-token", "50"];
    let (_nats, gateway, worker) = stack(MODEL, &[], &slow).await;
    let mut body = completion_body(MODEL, 200);
    body["stream"] = json!(true);
    let mut response = post(&gateway, "/v1/completions", &body).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.chunk().await.expect("first chunk").expect("data");

    drop(response);

    let cancelled = [("model_name", MODEL), ("outcome", "cancelled")];
    let (scrape, _) = wait_for(&worker.metrics_url(), FOLLOW, "1 cancelled", |s| {
        value(s, "coder_worker_requests_total", &cancelled) == Some(1.0)
    })
    .await;
    let completed = [("model_name", MODEL), ("outcome", "completed")];
    assert_eq!(
        value(&scrape, "coder_worker_requests_total", &completed),
        None
    );
}

#[tokio::test]
async fn worker_counts_a_request_that_expired_in_the_queue_as_expired() {
    let nats = NatsServer::start();
    let gateway = idle_gateway(&nats, &["--request-timeout", "1"]).await;
    let timed_out = post(&gateway, "/v1/completions", &completion_body(IDLE_MODEL, 2)).await;
    assert_eq!(timed_out.status(), StatusCode::GATEWAY_TIMEOUT);

    let worker = Worker::start(&nats, IDLE_MODEL, &[]);

    let expired = [("model_name", IDLE_MODEL), ("outcome", "expired")];
    wait_for(&worker.metrics_url(), FOLLOW, "1 expired", |s| {
        value(s, "coder_worker_requests_total", &expired) == Some(1.0)
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// promtool
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn promtool_accepts_the_gateway_exposition_without_lint_findings() {
    let (_nats, gateway, _worker, _queued) = stack_with_every_gateway_family().await;

    let text = exposition(&gateway.metrics_url()).await;

    assert_promtool_accepts(&text);
}

#[tokio::test]
async fn promtool_accepts_the_worker_exposition_without_lint_findings() {
    let (_nats, gateway, worker) = stack(MODEL, &[], &[]).await;
    complete(&gateway, MODEL, 3).await;
    wait_for_sample(
        &worker.metrics_url(),
        "coder_worker_requests_total",
        &[],
        1.0,
    )
    .await;

    let text = exposition(&worker.metrics_url()).await;

    assert_promtool_accepts(&text);
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

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

/// Every series of counter or gauge `name`: its labels and value.
fn series(scrape: &Scrape, name: &str) -> BTreeMap<BTreeMap<String, String>, f64> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter_map(|s| {
            let labels = s.labels.iter().map(|(k, v)| (k.clone(), v.clone()));
            Some((labels.collect(), reading(&s.value)?))
        })
        .collect()
}

fn labels<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> BTreeMap<String, String> {
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// A stack where every gateway family except redeliveries has a series: traffic of each kind
/// for `MODEL`, and one request queued for `IDLE_MODEL` (no worker) so that a second one is
/// refused with 429. The returned handle keeps the queued request waiting.
async fn stack_with_every_gateway_family() -> (NatsServer, Gateway, Worker, JoinHandle<StatusCode>)
{
    let flags = ["--models", IDLE_MODEL, "--max-pending-per-model", "1"];
    let (nats, gateway, worker) = stack(MODEL, &flags, &[]).await;
    wait_until_configured_model_is_known(&gateway).await;
    complete(&gateway, MODEL, 3).await;
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

/// [`stack_with_every_gateway_family`], with the worker's requests counted too.
async fn stack_with_every_gateway_family_and_worker(
) -> (NatsServer, Gateway, Worker, JoinHandle<StatusCode>) {
    let stack = stack_with_every_gateway_family().await;
    wait_for_sample(
        &stack.2.metrics_url(),
        "coder_worker_requests_total",
        &[],
        2.0,
    )
    .await;
    stack
}

/// A gateway with a consumer for `IDLE_MODEL` and no worker at all; requests wait up to two
/// minutes unless `extra` sets `--request-timeout`.
async fn idle_gateway(nats: &NatsServer, extra: &[&str]) -> Gateway {
    let mut flags = vec!["--models", IDLE_MODEL];
    if !extra.contains(&"--request-timeout") {
        flags.extend(["--request-timeout", "120"]);
    }
    flags.extend_from_slice(extra);
    let gateway = Gateway::start(nats, &flags);
    wait_until_configured_model_is_known(&gateway).await;
    gateway
}

/// Waits until the queue monitor reports `IDLE_MODEL`, which it does only once the `--models`
/// consumers exist. `/readyz` answers earlier (see
/// `a_configured_model_queues_from_the_moment_the_gateway_is_ready`), and a request sent in that
/// window is refused 404 instead of queued.
async fn wait_until_configured_model_is_known(gateway: &Gateway) {
    wait_for(
        &gateway.metrics_url(),
        FOLLOW,
        "the configured model known",
        |s| value(s, "coder_workers_connected", &[("model_name", IDLE_MODEL)]).is_some(),
    )
    .await;
}

/// Sends one request for `model` (which has no worker) and waits until the gauge shows it
/// queued.
async fn queue_one_and_wait(gateway: &Gateway, model: &str) -> JoinHandle<StatusCode> {
    let queued = spawn_completion(gateway, model, 2);
    wait_for(&gateway.metrics_url(), FOLLOW, "one request queued", |s| {
        value(s, "coder_queue_pending_requests", &[("model_name", model)]) == Some(1.0)
    })
    .await;
    queued
}

/// A non-streamed completion that must succeed; returns its body.
async fn complete(gateway: &Gateway, model: &str, max_tokens: u32) -> Value {
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
async fn stream_completion(gateway: &Gateway, model: &str, max_tokens: u32) -> Vec<Value> {
    let mut body = completion_body(model, max_tokens);
    body["stream"] = json!(true);
    let response = post(gateway, "/v1/completions", &body).await;
    assert_eq!(response.status(), StatusCode::OK);
    read_sse(response).await
}

/// A completion running in the background; the handle gives its status once answered.
fn spawn_completion(gateway: &Gateway, model: &str, max_tokens: u32) -> JoinHandle<StatusCode> {
    let url = gateway.url("/v1/completions");
    let body = completion_body(model, max_tokens);
    tokio::spawn(async move {
        let response = http().post(url).json(&body).send().await.expect("answer");
        let status = response.status();
        let _ = response.bytes().await;
        status
    })
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

/// The gateway of the harness, started without waiting for it.
fn spawn_gateway(nats: &NatsServer, extra: &[&str]) -> Gateway {
    let api: std::net::SocketAddr = ([127, 0, 0, 1], coder_nats::testing::free_port()).into();
    let metrics: std::net::SocketAddr = ([127, 0, 0, 1], coder_nats::testing::free_port()).into();
    let mut args: Vec<String> = [
        "--listen",
        &api.to_string(),
        "--metrics-listen",
        &metrics.to_string(),
        "--nats-url",
        &nats.url(),
        "--queue-poll-interval",
        "0.25",
    ]
    .map(str::to_owned)
    .to_vec();
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let process = coder_nats::testing::Service::spawn("gateway", &args, &[]);
    Gateway {
        process,
        api,
        metrics,
    }
}

/// Polls `/readyz` every millisecond until it answers 200.
fn wait_ready_closely(gateway: &Gateway) {
    let start = Instant::now();
    while coder_nats::testing::http_get_status(gateway.api, "/readyz") != Some(200) {
        assert!(start.elapsed() < READY_TIMEOUT, "gateway never ready");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The raw exposition text.
async fn exposition(url: &str) -> String {
    let response = http().get(url).send().await.expect("metrics answer");
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.expect("metrics text")
}

fn parse(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("valid exposition")
}

fn reading(value: &Reading) -> Option<f64> {
    match value {
        Reading::Counter(v) | Reading::Gauge(v) | Reading::Untyped(v) => Some(*v),
        _ => None,
    }
}

/// The sum of `name`'s samples whose labels include `labels`; `None` when there is none (unlike
/// `support::sample`, absence is not 0).
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let values: Vec<f64> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .filter_map(|s| reading(&s.value))
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// Each series of histogram `name`: its labels (without `le`) and buckets in exposition order.
fn histograms(scrape: &Scrape, name: &str) -> Vec<(String, Vec<prometheus_parse::HistogramCount>)> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter_map(|s| match &s.value {
            Reading::Histogram(buckets) => Some((s.labels.to_string(), buckets.clone())),
            _ => None,
        })
        .collect()
}

fn label_keys(scrape: &Scrape, name: &str) -> Vec<BTreeSet<String>> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .map(|s| s.labels.keys().cloned().collect())
        .collect()
}

fn set(keys: &[&str]) -> BTreeSet<String> {
    keys.iter().map(|k| (*k).to_owned()).collect()
}

fn kind_of(value: &Reading) -> Kind {
    match value {
        Reading::Counter(_) => Kind::Counter,
        Reading::Gauge(_) => Kind::Gauge,
        Reading::Histogram(_) => Kind::Histogram,
        Reading::Summary(_) | Reading::Untyped(_) => Kind::Untyped,
    }
}

/// Everything in `scrape` that departs from `catalogue`: a family missing (unless `optional`),
/// a sample of another type or label-key set, a histogram without its `+Inf` bucket, `_sum` or
/// `_count`, and any sample name the catalogue does not have.
fn catalogue_problems<'a>(
    scrape: &Scrape,
    catalogue: impl IntoIterator<Item = &'a Family>,
    optional: &[&str],
) -> Vec<String> {
    let mut expected: Vec<(String, Kind, BTreeSet<String>, bool)> = Vec::new();
    for family in catalogue {
        let labels = set(family.labels);
        let required = !optional.contains(&family.name);
        expected.push((
            family.name.to_owned(),
            family.kind,
            labels.clone(),
            required,
        ));
        if family.kind == Kind::Histogram {
            for suffix in ["_sum", "_count"] {
                let name = format!("{}{suffix}", family.name);
                expected.push((name, Kind::Untyped, labels.clone(), required));
            }
        }
    }
    let mut problems = Vec::new();
    for (name, kind, labels, required) in &expected {
        let samples: Vec<_> = scrape
            .samples
            .iter()
            .filter(|s| &s.metric == name)
            .collect();
        if samples.is_empty() && *required {
            problems.push(format!("{name}: missing"));
        }
        for sample in samples {
            let keys: BTreeSet<String> = sample.labels.keys().cloned().collect();
            if kind_of(&sample.value) != *kind {
                problems.push(format!("{name}: {:?}, expected {kind:?}", sample.value));
            }
            if &keys != labels {
                problems.push(format!("{name}: label keys {keys:?}, expected {labels:?}"));
            }
            if let Reading::Histogram(buckets) = &sample.value {
                if buckets.last().map(|b| b.less_than) != Some(f64::INFINITY) {
                    problems.push(format!(
                        "{name}{{{}}}: no le=\"+Inf\" bucket",
                        sample.labels
                    ));
                }
            }
        }
    }
    let known: BTreeSet<&str> = expected.iter().map(|(n, ..)| n.as_str()).collect();
    let unexpected: BTreeSet<&str> = scrape
        .samples
        .iter()
        .map(|s| s.metric.as_str())
        .filter(|n| !known.contains(n))
        .collect();
    for name in unexpected {
        problems.push(format!("{name}: not in the catalogue"));
    }
    problems
}

/// Scrapes `url` until `check` holds, at most `within`; returns the scrape and the time it took.
async fn wait_for(
    url: &str,
    within: Duration,
    what: &str,
    mut check: impl FnMut(&Scrape) -> bool,
) -> (Scrape, Duration) {
    let start = Instant::now();
    loop {
        let text = exposition(url).await;
        let scrape = parse(&text);
        if check(&scrape) {
            return (scrape, start.elapsed());
        }
        if start.elapsed() > within {
            let lines: Vec<&str> = text
                .lines()
                .filter(|l| !l.starts_with('#') && !l.contains("_bucket"))
                .collect();
            panic!(
                "{what}: not within {within:?}; last scrape:\n{}",
                lines.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The first scrape of `url` where `check` holds, or the last one after two seconds. Request
/// metrics are recorded when the server drops the response body, which may be just after the
/// client read it; the caller's assertions then say what differs.
async fn scrape_when(url: &str, mut check: impl FnMut(&Scrape) -> bool) -> Scrape {
    let start = Instant::now();
    loop {
        let scrape = scrape(url).await;
        if check(&scrape) || start.elapsed() > Duration::from_secs(2) {
            return scrape;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// `promtool check metrics` exits 0 (1 is a parse error, 3 a lint finding) and prints nothing.
fn assert_promtool_accepts(text: &str) {
    let promtool = std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".to_owned());
    let mut child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {promtool} (Debian package `prometheus`): {e}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("exposition written to promtool");
    let output = child.wait_with_output().expect("promtool finishes");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && said.trim().is_empty(),
        "promtool check metrics: {} {said}\n--- exposition ---\n{text}",
        output.status
    );
}
