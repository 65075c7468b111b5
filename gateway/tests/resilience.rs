//! Failures: NATS outages and restarts, a worker killed mid-generation, graceful shutdown.

mod support;

use coder_nats::testing::NatsServer;
use serde_json::{json, Value};
use std::time::Duration;
use support::*;

const MODEL: &str = "resilient";

#[tokio::test]
async fn readyz_fails_while_nats_is_down_and_recovers() {
    let mut nats = NatsServer::start();
    let gateway = Gateway::start(&nats, &[]);

    nats.stop();
    let down = eventually(Duration::from_secs(10), || async {
        (get_status(&gateway, "/readyz").await == 503).then_some(())
    })
    .await;
    assert!(down.is_some(), "/readyz still ready with NATS down");
    assert_eq!(get_status(&gateway, "/healthz").await, 200);

    nats.restart();
    let up = eventually(Duration::from_secs(15), || async {
        (get_status(&gateway, "/readyz").await == 200).then_some(())
    })
    .await;
    assert!(up.is_some(), "/readyz did not recover");
}

#[tokio::test]
async fn a_worker_killed_mid_generation_leaves_its_request_to_another() {
    let nats = NatsServer::start();
    let gateway = Gateway::start(&nats, &[]);
    let slow = ["--synthetic-ms-per-token", "40", "--ack-wait", "1.5"];
    let doomed = Worker::start(&nats, MODEL, &slow);
    wait_for_model(&gateway, MODEL).await;
    let body = json!({"model": MODEL, "prompt": "redeliver me", "max_tokens": 60, "seed": 3, "stream": true});

    let request = tokio::spawn(post_owned(gateway.url("/v1/completions"), body.clone()));
    wait_for_sample(
        &doomed.metrics_url(),
        "coder_worker_slots",
        &[("state", "busy")],
        1.0,
    )
    .await;
    let survivor = Worker::start(&nats, MODEL, &slow);
    tokio::time::sleep(Duration::from_millis(300)).await; // a few tokens reach the client
    doomed.process.signal(9);

    let chunks = read_sse(request.await.unwrap()).await;
    let streamed: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["text"].as_str())
        .collect();
    let finishes = chunks
        .iter()
        .filter(|c| !c["choices"][0]["finish_reason"].is_null())
        .count();
    assert_eq!(finishes, 1, "one answer, not two");
    // The worker counts a request after its last event and ack: wait for it, then check it once.
    let completed = wait_for_sample(
        &survivor.metrics_url(),
        "coder_worker_requests_total",
        &[("outcome", "completed")],
        1.0,
    )
    .await;
    assert_eq!(completed, 1.0, "the second worker answered, once");
    // The same seed regenerates the same text: the client saw it once, without repeats or gaps.
    let mut again = body;
    again["stream"] = json!(false);
    let expected: Value = post(&gateway, "/v1/completions", &again)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(streamed, expected["choices"][0]["text"].as_str().unwrap());
    let redeliveries = sample(
        &scrape(&gateway.metrics_url()).await,
        "coder_queue_redeliveries_total",
        &[],
    );
    assert_eq!(redeliveries, 1.0);
}

async fn post_owned(url: String, body: Value) -> reqwest::Response {
    http()
        .post(url)
        .json(&body)
        .send()
        .await
        .expect("gateway answers")
}

#[tokio::test]
async fn requests_accepted_before_a_nats_restart_are_answered_after_it() {
    let mut nats = NatsServer::start();
    let queued_model = "queued-through-restart";
    let gateway = Gateway::start(&nats, &["--models", queued_model]);
    let live = Worker::start(&nats, MODEL, &[]);
    wait_for_model(&gateway, MODEL).await;

    // Three requests wait in the (file-backed) stream for a model with no worker yet.
    let waiting: Vec<_> = (0..3)
        .map(|_| {
            tokio::spawn(post_owned(
                gateway.url("/v1/completions"),
                completion_body(queued_model, 2),
            ))
        })
        .collect();
    let queued = eventually(Duration::from_secs(10), || async {
        let value = sample(
            &scrape(&gateway.metrics_url()).await,
            "coder_queue_pending_requests",
            &[("model_name", queued_model)],
        );
        (value >= 3.0).then_some(())
    })
    .await;
    assert!(queued.is_some(), "requests not queued");

    nats.restart();
    let up = eventually(Duration::from_secs(15), || async {
        (get_status(&gateway, "/readyz").await == 200).then_some(())
    })
    .await;
    assert!(up.is_some(), "the gateway did not reconnect");

    // The worker that was running reconnected by itself and serves again.
    let after = eventually(Duration::from_secs(15), || async {
        let response = post(&gateway, "/v1/completions", &completion_body(MODEL, 2)).await;
        (response.status() == 200).then_some(())
    })
    .await;
    assert!(after.is_some(), "the running worker did not come back");
    drop(live);
    // A worker for the queued model arrives and answers what was accepted before the restart.
    let _late = Worker::start(&nats, queued_model, &[]);
    for request in waiting {
        assert_eq!(request.await.unwrap().status(), 200);
    }
}

#[tokio::test]
async fn sigterm_lets_in_flight_requests_finish() {
    let (nats, mut gateway, mut worker) =
        stack(MODEL, &[], &["--synthetic-ms-per-token", "30"]).await;
    let request = tokio::spawn(post_owned(
        gateway.url("/v1/completions"),
        completion_body(MODEL, 200),
    ));
    wait_for_sample(
        &worker.metrics_url(),
        "coder_worker_slots",
        &[("state", "busy")],
        1.0,
    )
    .await;

    worker.process.signal(15);
    gateway.process.signal(15);

    // The gateway stops accepting at once, while the running request goes on.
    let refusing = eventually(Duration::from_secs(5), || async {
        std::net::TcpStream::connect(gateway.api)
            .is_err()
            .then_some(())
    })
    .await;
    assert!(
        refusing.is_some(),
        "the gateway still accepts after SIGTERM"
    );
    assert!(!request.is_finished(), "the request ended before the check");

    let response = request.await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["usage"]["completion_tokens"], 200);
    let worker_exit = worker
        .process
        .wait_exit(Duration::from_secs(10))
        .expect("worker exits after draining");
    assert!(worker_exit.success(), "worker exit {worker_exit}");
    // It acked before leaving: the work queue holds nothing to redeliver.
    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut stream = async_nats::jetstream::new(client)
        .get_stream(coder_nats::subjects::STREAM_NAME)
        .await
        .unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 0);
    let gateway_exit = gateway
        .process
        .wait_exit(Duration::from_secs(10))
        .expect("gateway exits");
    assert!(gateway_exit.success(), "gateway exit {gateway_exit}");
}

#[tokio::test]
async fn a_worker_stops_promptly_when_nats_is_gone() {
    let (mut nats, _gateway, mut worker) = stack(MODEL, &[], &["--shutdown-grace", "2"]).await;
    // Announced, so pulling; then NATS goes away for good.
    nats.stop();
    tokio::time::sleep(Duration::from_millis(500)).await;

    worker.process.signal(15);
    let signalled = std::time::Instant::now();
    let exit = worker
        .process
        .wait_exit(Duration::from_secs(60))
        .expect("the worker hangs at shutdown without NATS");
    assert!(exit.success(), "worker exit {exit}");
    // At most: the pull under way (3 s), the grace (nothing in flight: 0 s), the last flush (2 s).
    let took = signalled.elapsed();
    assert!(took < Duration::from_secs(7), "{took:?} to stop");
}

#[tokio::test]
async fn a_publish_that_finds_no_stream_is_retried_until_it_is_back_and_queued_once() {
    use async_nats::jetstream;
    use coder_nats::provision::{self, ConsumerSettings, StreamSettings};
    use coder_nats::subjects;

    let nats = NatsServer::start();
    let gateway = idle_gateway(&nats, MODEL, &["--publish-retry-window", "60"]).await;
    let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    // As when the stream's leader is lost: nothing answers a publish for a while.
    js.delete_stream(subjects::STREAM_NAME).await.unwrap();

    let request = spawn_completion(&gateway, MODEL, 2);
    // The gateway keeps trying rather than answering 503.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !request.is_finished(),
        "answered without the stream: {:?}",
        request.await
    );
    provision::ensure_stream(&js, &StreamSettings::default())
        .await
        .unwrap();
    provision::ensure_consumers_exist(&js, MODEL, &ConsumerSettings::default())
        .await
        .unwrap();

    let queued = eventually(Duration::from_secs(15), || async {
        let mut stream = js.get_stream(subjects::STREAM_NAME).await.ok()?;
        (stream.info().await.ok()?.state.messages > 0).then_some(())
    })
    .await;
    assert!(queued.is_some(), "the request never reached the stream");
    let mut stream = js.get_stream(subjects::STREAM_NAME).await.unwrap();
    assert_eq!(
        stream.info().await.unwrap().state.messages,
        1,
        "queued once"
    );

    let _worker = Worker::start(&nats, MODEL, &[]);
    assert_eq!(request.await.unwrap(), 200);
}

#[tokio::test]
async fn sigterm_stops_the_gateway_while_nats_is_down() {
    let mut nats = NatsServer::start();
    let mut gateway = Gateway::start(&nats, &[]);
    nats.stop();

    gateway.process.signal(15);

    // Its last flush would wait for a reconnect that never comes; it is bounded.
    let status = gateway.process.wait_exit(Duration::from_secs(20));
    assert!(status.is_some(), "the gateway did not stop");
}
