//! Cache affinity on the queue, with two workers: a follow-up lands on the worker that holds its
//! prefix while that worker has room, an idle worker takes a request whose owner is busy, and a
//! killed owner's requests, running or new, are answered by the other.

mod support;

use coder_nats::testing::NatsServer;
use serde_json::{json, Value};
use std::time::Duration;
use support::*;

const MODEL: &str = "affinity/model";

/// A gateway and two synthetic workers with `worker_flags`, each worker knowing the other.
async fn two_workers(worker_flags: &[&str]) -> (NatsServer, Gateway, [Worker; 2]) {
    let nats = NatsServer::start();
    let gateway = Gateway::start(&nats, &[]);
    let workers = [
        Worker::start(&nats, MODEL, worker_flags),
        Worker::start(&nats, MODEL, worker_flags),
    ];
    wait_for(&gateway.metrics_url(), FOLLOW, "two workers", |s| {
        value(s, "coder_workers_connected", &[("model_name", MODEL)]) == Some(2.0)
    })
    .await;
    // Each worker hears the other's heartbeats (every 0.5 s here) and so agrees on the owners.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    (nats, gateway, workers)
}

/// How long a `wait_for` follows a gauge.
const FOLLOW: Duration = Duration::from_secs(15);

async fn completed(worker: &Worker) -> f64 {
    sample(
        &scrape(&worker.metrics_url()).await,
        "coder_worker_requests_total",
        &[("outcome", "completed")],
    )
}

/// The worker that is running a request, once one is.
async fn busy_one(workers: &[Worker; 2]) -> usize {
    let busy = [("model_name", MODEL), ("state", "busy")];
    let found = eventually(FOLLOW, || async {
        for (i, worker) in workers.iter().enumerate() {
            if value(
                &scrape(&worker.metrics_url()).await,
                "coder_worker_slots",
                &busy,
            ) == Some(1.0)
            {
                return Some(i);
            }
        }
        None
    })
    .await;
    found.expect("no worker ever ran the request")
}

#[tokio::test]
async fn follow_ups_land_on_the_worker_that_holds_their_prefix() {
    // A long --steal-after: on a loaded machine the owner may take a moment to fetch, and the
    // other worker must not take the request meanwhile (that is the stealing test's subject).
    let flags = ["--concurrency", "2", "--steal-after", "10"];
    let (_nats, gateway, workers) = two_workers(&flags).await;
    let conversations = 24;
    for i in 0..conversations {
        // Each conversation opens with text of its own, longer than the synthetic cache's
        // 64-byte blocks: only the worker that served the first turn can have it cached.
        let opening = format!("conversation {i}: {}", "refactor the parser; ".repeat(12));
        let mut messages = vec![json!({"role": "user", "content": opening})];
        let first = chat(&gateway, &messages).await;
        assert_eq!(cached_tokens(&first), 0, "conversation {i} is new");
        let answer = first["choices"][0]["message"]["content"].clone();
        messages.push(json!({"role": "assistant", "content": answer}));
        messages.push(json!({"role": "user", "content": "now add a test"}));
        let second = chat(&gateway, &messages).await;
        assert!(
            cached_tokens(&second) > 0,
            "the follow-up of conversation {i} went to the worker without its prefix: {second}"
        );
    }
    // A worker counts a request after its last event and ack, so the counts trail the answers.
    let all = f64::from(2 * conversations);
    let served = eventually(FOLLOW, || async {
        let served = [completed(&workers[0]).await, completed(&workers[1]).await];
        (served[0] + served[1] == all).then_some(served)
    })
    .await
    .expect("the workers never counted every request");
    assert!(
        served[0] > 0.0 && served[1] > 0.0,
        "one worker served every conversation: {served:?}"
    );
}

#[tokio::test]
async fn an_idle_worker_takes_a_request_whose_owner_is_busy() {
    let flags = ["--concurrency", "1", "--synthetic-ms-per-token", "50"];
    let (_nats, gateway, workers) = two_workers(&flags).await;
    // Both requests share a key, so a partition and an owner; the first keeps the owner busy
    // for 20 s.
    let long = json!({"model": MODEL, "prompt": "a long one", "max_tokens": 400,
                      "prompt_cache_key": "same-file", "stream": true});
    let running = tokio::spawn({
        let url = gateway.url("/v1/completions");
        async move { read_sse(http().post(url).json(&long).send().await.unwrap()).await }
    });
    let owner = busy_one(&workers).await;

    let short = json!({"model": MODEL, "prompt": "a short one", "max_tokens": 2,
                       "prompt_cache_key": "same-file"});
    let answer = post(&gateway, "/v1/completions", &short).await;
    assert_eq!(answer.status(), 200);
    assert!(
        !running.is_finished(),
        "the short request waited for the busy owner to finish"
    );
    let other = 1 - owner;
    let taken = eventually(FOLLOW, || async {
        (completed(&workers[other]).await == 1.0).then_some(())
    })
    .await;
    assert!(taken.is_some(), "the idle worker did not answer it");
    assert_eq!(completed(&workers[owner]).await, 0.0);
    running.abort();
}

#[tokio::test]
async fn a_killed_owners_requests_are_answered_by_the_other_worker() {
    let flags = [
        "--concurrency",
        "1",
        "--synthetic-ms-per-token",
        "40",
        "--ack-wait",
        "1.5",
    ];
    let (_nats, gateway, workers) = two_workers(&flags).await;
    let body = json!({"model": MODEL, "prompt": "redeliver me", "max_tokens": 40, "seed": 5,
                      "prompt_cache_key": "conversation-7", "stream": true});
    let running = tokio::spawn({
        let url = gateway.url("/v1/completions");
        let body = body.clone();
        async move { read_sse(http().post(url).json(&body).send().await.unwrap()).await }
    });
    let owner = busy_one(&workers).await;
    workers[owner].process.signal(9);

    // A new request of the dead owner's partition, before its heartbeats have expired.
    let next = json!({"model": MODEL, "prompt": "after the crash", "max_tokens": 3,
                      "prompt_cache_key": "conversation-7"});
    assert_eq!(post(&gateway, "/v1/completions", &next).await.status(), 200);
    // The running one is redelivered to the survivor and streamed to its end, once.
    let chunks = running.await.unwrap();
    let finishes = chunks
        .iter()
        .filter(|c| !c["choices"][0]["finish_reason"].is_null())
        .count();
    assert_eq!(finishes, 1, "one answer, not two or none: {chunks:?}");
    let survivor = &workers[1 - owner];
    let both = eventually(FOLLOW, || async {
        (completed(survivor).await == 2.0).then_some(())
    })
    .await;
    assert!(both.is_some(), "the survivor did not answer both");
}

async fn chat(gateway: &Gateway, messages: &[Value]) -> Value {
    let body = json!({"model": MODEL, "messages": messages, "max_tokens": 8, "seed": 1});
    let response = post(gateway, "/v1/chat/completions", &body).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn cached_tokens(answer: &Value) -> u64 {
    answer["usage"]["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap_or(0)
}
