//! The gateway's queue signals, checked from outside: backlog, oldest request age, in-flight
//! requests, connected workers, rejections and redeliveries on the real `/metrics`, as requests
//! wait for, reach and leave real synthetic workers through a real nats-server.

mod support;

use coder_nats::testing::NatsServer;
use reqwest::StatusCode;
use std::collections::BTreeMap;
use support::*;

const MODEL: &str = "Qwen/Qwen2.5-Coder:1.5b test";
/// A model with a consumer (`--models`) and no worker: its requests stay queued.
const IDLE_MODEL: &str = "idle/coder:v1 x";

#[tokio::test]
async fn pending_and_oldest_age_rise_while_no_worker_serves_the_model() {
    let nats = NatsServer::start();
    let gateway = idle_gateway(&nats, IDLE_MODEL, &[]).await;
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
    tokio::time::sleep(4 * QUEUE_POLL_INTERVAL).await;
    let later = scrape(&url).await;
    let oldest_now = value(&later, "coder_queue_oldest_request_age_seconds", &labels).unwrap();
    assert!(
        oldest_now >= oldest_then + QUEUE_POLL_INTERVAL.as_secs_f64(),
        "oldest age did not keep rising: {oldest_then} then {oldest_now}"
    );
}

#[tokio::test]
async fn pending_and_oldest_age_fall_to_zero_when_a_worker_starts() {
    let nats = NatsServer::start();
    let gateway = idle_gateway(&nats, IDLE_MODEL, &[]).await;
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
    let gateway = idle_gateway(&nats, IDLE_MODEL, &[]).await;
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
        let flags = ["--models", IDLE_MODEL, "--request-timeout", "0.1"];
        let gateway = Gateway::spawn(&nats, &flags, &[]);
        gateway.wait_ready_closely();

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
    let gateway = idle_gateway(&nats, IDLE_MODEL, &["--max-pending-per-model", "1"]).await;
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
