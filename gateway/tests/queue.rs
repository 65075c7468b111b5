//! Queue semantics: fair sharing, cancellation, deadlines and poison messages.

mod support;

use coder_nats::testing::NatsServer;
use futures::StreamExt;
use serde_json::json;
use std::time::Duration;
use support::*;

const MODEL: &str = "queue/model:v1";

#[tokio::test]
async fn two_workers_share_the_queue() {
    let nats = NatsServer::start();
    let gateway = Gateway::start(&nats, &[]);
    let pace = ["--synthetic-ms-per-token", "10"];
    let first = Worker::start(&nats, MODEL, &pace);
    let second = Worker::start(&nats, MODEL, &pace);
    wait_for_model(&gateway, MODEL).await;

    let body = completion_body(MODEL, 5);
    let requests = (0..20).map(|_| post(&gateway, "/v1/completions", &body));
    let responses = futures::future::join_all(requests).await;

    assert!(responses.iter().all(|r| r.status() == 200));
    let completed = |url: String| async move {
        sample(
            &scrape(&url).await,
            "coder_worker_requests_total",
            &[("outcome", "completed")],
        )
    };
    // A worker counts a request after its last event and ack, so the counters trail the answers.
    let counts = || async {
        (
            completed(first.metrics_url()).await,
            completed(second.metrics_url()).await,
        )
    };
    let settled = eventually(Duration::from_secs(10), || async {
        let (a, b) = counts().await;
        (a + b >= 20.0).then_some(())
    })
    .await;
    assert!(settled.is_some(), "the workers never counted 20 requests");
    let (a, b) = counts().await;
    assert_eq!(a + b, 20.0, "every request was answered exactly once");
    assert!(a > 0.0 && b > 0.0, "both workers served some: {a} and {b}");
}

#[tokio::test]
async fn a_client_that_disconnects_stops_the_generation() {
    let (_nats, gateway, worker) = stack(MODEL, &[], &["--synthetic-ms-per-token", "20"]).await;
    let body = json!({"model": MODEL, "prompt": "loop", "max_tokens": 2000, "stream": true});

    let response = post(&gateway, "/v1/completions", &body).await;
    let mut stream = response.bytes_stream();
    stream.next().await.expect("a first chunk").expect("bytes");
    drop(stream); // the client goes away after the first token

    assert_stopped_not_completed(&worker).await;
    let generated = sample(
        &scrape(&gateway.metrics_url()).await,
        "coder_model_generation_tokens_total",
        &[],
    );
    assert_eq!(generated, 0.0, "a cancelled request reports no usage");
}

/// The worker ended one request as `cancelled` and completed none.
async fn assert_stopped_not_completed(worker: &Worker) {
    let cancelled = wait_for_sample(
        &worker.metrics_url(),
        "coder_worker_requests_total",
        &[("outcome", "cancelled")],
        1.0,
    )
    .await;
    assert_eq!(cancelled, 1.0);
    let completed = sample(
        &scrape(&worker.metrics_url()).await,
        "coder_worker_requests_total",
        &[("outcome", "completed")],
    );
    assert_eq!(completed, 0.0, "the worker generated to the end");
}

#[tokio::test]
async fn a_request_whose_deadline_passed_in_the_queue_is_never_computed() {
    let nats = NatsServer::start();
    let gateway = Gateway::start(&nats, &["--models", MODEL, "--request-timeout", "1"]);

    let response = post(&gateway, "/v1/completions", &completion_body(MODEL, 3)).await;
    assert_eq!(response.status(), 504);
    let worker = Worker::start(&nats, MODEL, &[]);

    wait_for_sample(
        &worker.metrics_url(),
        "coder_worker_requests_total",
        &[("outcome", "expired")],
        1.0,
    )
    .await;
    let completed = sample(
        &scrape(&worker.metrics_url()).await,
        "coder_worker_requests_total",
        &[("outcome", "completed")],
    );
    assert_eq!(completed, 0.0, "the expired request was computed");
}

#[tokio::test]
async fn a_deadline_that_passes_mid_generation_stops_the_worker() {
    let nats = NatsServer::start();
    let gateway = Gateway::start(&nats, &["--request-timeout", "1"]);
    let pacing = [("CODER_SYNTHETIC_MS_PER_TOKEN", "50")];
    let worker = Worker::start_with_env(&nats, MODEL, &[], &pacing);
    wait_for_model(&gateway, MODEL).await;

    // 1,000 tokens at 50 ms each would take 50 s; the deadline is 1 s.
    let response = post(&gateway, "/v1/completions", &completion_body(MODEL, 1000)).await;
    assert_eq!(response.status(), 504);
    assert_stopped_not_completed(&worker).await;
}

#[tokio::test]
async fn a_poison_message_is_terminated_and_the_worker_keeps_serving() {
    let (nats, gateway, worker) = stack(MODEL, &[], &[]).await;
    let client = async_nats::connect(nats.url()).await.unwrap();
    let jetstream = async_nats::jetstream::new(client);
    // Straight into a partition, with no doorbell: a worker's sweep finds it.
    let subject = coder_nats::subjects::request_subject(MODEL, 3);

    jetstream
        .publish(subject.clone(), "{not json".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(coder_nats::headers::REPLY_TO, "coder.replies.x.y");
    headers.insert(coder_nats::headers::DEADLINE_MS, "99999999999999");
    jetstream
        .publish_with_headers(subject, headers, b"\xff\xfe".as_slice().into())
        .await
        .unwrap()
        .await
        .unwrap();

    wait_for_sample(
        &worker.metrics_url(),
        "coder_worker_requests_total",
        &[("outcome", "failed")],
        2.0,
    )
    .await;
    let response = post(&gateway, "/v1/completions", &completion_body(MODEL, 2)).await;
    assert_eq!(response.status(), 200, "the worker survived the poison");
    let stream = jetstream
        .get_stream(coder_nats::subjects::STREAM_NAME)
        .await
        .unwrap();
    // The last request's ack lands just after its answer: poll until the work queue is empty
    // (acked and terminated messages leave it; pending and unacked ones stay).
    let drained = eventually(Duration::from_secs(5), || {
        let mut stream = stream.clone();
        async move {
            let info = stream.info().await.ok()?;
            (info.state.messages == 0).then_some(())
        }
    })
    .await;
    assert!(drained.is_some(), "poison is redelivered or left pending");
}
