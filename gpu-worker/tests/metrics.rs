//! The worker's metric catalogue (`gateway/tests/support/catalogue.rs`), checked from outside:
//! requests queued through a real nats-server as a gateway queues them, the real `gpu-worker`
//! binary (synthetic backend), then its `/metrics` scraped and parsed with `prometheus-parse`
//! (and checked with `promtool check metrics`). The same requests through the gateway are in
//! `gateway/tests`.

mod worker_support;

use prometheus_parse::Scrape;
use std::time::{Duration, SystemTime};
use worker_support::*;

const MODEL: &str = "Qwen/Qwen2.5-Coder:1.5b test";

#[tokio::test]
async fn worker_exposes_exactly_the_catalogue_names_types_and_label_keys() {
    let (_nats, queue, worker) = worker_on_queue(MODEL, &[]).await;
    queue.complete(MODEL, 3).await;

    // The outcome is counted after the ack, which may come after the last event.
    let scrape = scrape_when(&worker.metrics_url(), |s| {
        value(s, "coder_worker_requests_total", &[]).is_some()
    })
    .await;

    let catalogue: Vec<&Family> = WORKER_CATALOGUE
        .iter()
        .chain(ENGINE_CATALOGUE)
        .chain(GPU_CATALOGUE)
        .collect();
    let optional: Vec<&str> = GPU_CATALOGUE
        .iter()
        .chain(ENGINE_CATALOGUE)
        .map(|f| f.name)
        .collect();
    let problems = catalogue_problems(&scrape, catalogue, &optional);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test]
async fn a_candle_worker_exposes_its_engine_steps() {
    let Some(model_path) = default_model() else {
        return;
    };
    let flags = [
        "--backend",
        "candle",
        "--model-path",
        &model_path,
        "--concurrency",
        "2",
    ];
    let (_nats, queue, worker) = worker_on_queue(MODEL, &flags).await;

    let both = [
        queue.submit_in_time(MODEL, 4).await,
        queue.submit_in_time(MODEL, 4).await,
    ];
    for request in both {
        request.assert_completed().await;
    }

    let by_model = [("model_name", MODEL)];
    // The step that retires the last sequence is recorded just after its last event goes out.
    let scrape = scrape_when(&worker.metrics_url(), |s| {
        value(s, "coder_worker_requests_total", &[]).is_some()
            && value(s, "coder_worker_kv_cache_usage_ratio", &by_model) == Some(0.0)
    })
    .await;
    let catalogue: Vec<&Family> = WORKER_CATALOGUE.iter().chain(ENGINE_CATALOGUE).collect();
    let problems = catalogue_problems(&scrape, catalogue, &[]);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let prefill = value(&scrape, "coder_worker_prefill_tokens_total", &by_model);
    let decode = value(&scrape, "coder_worker_decode_tokens_total", &by_model);
    let steps = value(&scrape, "coder_worker_batch_size_count", &by_model);
    assert!(prefill.is_some_and(|n| n >= 2.0), "{prefill:?}");
    // At most 3 of a request's 4 tokens are fed back (the last one never is).
    assert!(
        decode.is_some_and(|n| (1.0..=6.0).contains(&n)),
        "{decode:?}"
    );
    assert!(steps.is_some_and(|n| n >= 2.0), "{steps:?}");
    let queried = value(
        &scrape,
        "coder_worker_prefix_cache_queried_tokens_total",
        &by_model,
    );
    assert_eq!(
        queried, prefill,
        "every prompt token was looked up, none found"
    );
}

#[tokio::test]
async fn worker_exposes_no_otel_scope_labels_or_target_info() {
    let (_nats, queue, worker) = worker_on_queue(MODEL, &[]).await;
    queue.complete(MODEL, 3).await;
    queue.complete(MODEL, 3).await;
    let url = worker.metrics_url();
    wait_for_sample(&url, "coder_worker_requests_total", &[], 2.0).await;

    let text = exposition(&url).await;

    assert_no_otel_scope(&url, &text);
}

#[tokio::test]
async fn worker_slots_follow_concurrency() {
    let slow = ["--concurrency", "3", "--synthetic-ms-per-token", "50"];
    let (_nats, queue, worker) = worker_on_queue(MODEL, &slow).await;
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

    let mut requests = Vec::new();
    for _ in 0..3 {
        requests.push(queue.submit_in_time(MODEL, 40).await);
    }

    let (during, _) = wait_for(&url, FOLLOW, "3 busy slots", |s| {
        slots(s, "busy") == Some(3.0)
    })
    .await;
    assert_eq!(slots(&during, "idle"), Some(0.0));
    for request in requests {
        request.assert_completed().await;
    }
    wait_for(&url, FOLLOW, "all slots idle again", |s| {
        slots(s, "busy") == Some(0.0) && slots(s, "idle") == Some(3.0)
    })
    .await;
}

#[tokio::test]
async fn worker_info_names_its_backend_device_and_cpu_kernels() {
    let (_nats, _queue, worker) = worker_on_queue(MODEL, &[]).await;

    // The synthetic backend runs no CPU kernel: its level is `none`.
    let info = [
        ("model_name", MODEL),
        ("backend", "synthetic"),
        ("device", "cpu"),
        ("cpu_kernels", "none"),
    ];
    let seen = wait_for_sample(&worker.metrics_url(), "coder_worker_info", &info, 1.0).await;
    assert_eq!(seen, 1.0);
}

#[tokio::test]
async fn worker_requests_total_counts_completed_requests() {
    let (_nats, queue, worker) = worker_on_queue(MODEL, &[]).await;

    for _ in 0..4 {
        queue.complete(MODEL, 2).await;
    }

    outcome_reaches(&worker, "completed", 4.0).await;
}

#[tokio::test]
async fn worker_counts_a_cancelled_request_as_cancelled() {
    let slow = ["--synthetic-ms-per-token", "50"];
    let (_nats, queue, worker) = worker_on_queue(MODEL, &slow).await;
    let mut request = queue.submit_in_time(MODEL, 200).await;
    request.first_token().await;

    queue.cancel(request.id).await;

    let scrape = outcome_reaches(&worker, "cancelled", 1.0).await;
    let completed = [("model_name", MODEL), ("outcome", "completed")];
    assert_eq!(
        value(&scrape, "coder_worker_requests_total", &completed),
        None
    );
}

#[tokio::test]
async fn worker_counts_a_request_that_expired_in_the_queue_as_expired() {
    let nats = coder_nats::testing::NatsServer::start();
    let queue = QueueClient::connect(&nats).await;
    queue.provision(MODEL).await;
    let passed = SystemTime::now() - Duration::from_secs(1);
    let _expired_request = queue.submit(MODEL, 2, passed).await;

    let worker = Worker::start(&nats, MODEL, &[]);

    outcome_reaches(&worker, "expired", 1.0).await;
}

#[tokio::test]
async fn requests_cancelled_while_no_worker_runs_are_answered_without_compute() {
    let nats = coder_nats::testing::NatsServer::start();
    let queue = QueueClient::connect(&nats).await;
    queue.provision(MODEL).await;
    let mut abandoned = Vec::new();
    for _ in 0..5 {
        let request = queue.submit_in_time(MODEL, 50).await;
        queue.cancel(request.id).await;
        abandoned.push(request);
    }

    let worker = Worker::start(&nats, MODEL, &[]);

    for request in abandoned {
        request.assert_cancelled_uncomputed().await;
    }
    let scrape = outcome_reaches(&worker, "cancelled", 5.0).await;
    let completed = [("model_name", MODEL), ("outcome", "completed")];
    assert_eq!(
        value(&scrape, "coder_worker_requests_total", &completed),
        None
    );
}

#[tokio::test]
async fn promtool_accepts_the_worker_exposition_without_lint_findings() {
    let (_nats, queue, worker) = worker_on_queue(MODEL, &[]).await;
    queue.complete(MODEL, 3).await;
    let url = worker.metrics_url();
    wait_for_sample(&url, "coder_worker_requests_total", &[], 1.0).await;

    let text = exposition(&url).await;

    assert_promtool_accepts(&text);
}

/// Waits until `coder_worker_requests_total{outcome}` reads `count`; the scrape that did.
async fn outcome_reaches(worker: &Worker, outcome: &str, count: f64) -> Scrape {
    let labels = [("model_name", MODEL), ("outcome", outcome)];
    let (scrape, _) = wait_for(&worker.metrics_url(), FOLLOW, outcome, |s| {
        value(s, "coder_worker_requests_total", &labels) == Some(count)
    })
    .await;
    scrape
}
