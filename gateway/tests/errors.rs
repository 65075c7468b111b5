//! Every error status of the HTTP API, each with OpenAI's error body and an `x-request-id`.

mod support;

use coder_nats::testing::NatsServer;
use serde_json::json;
use support::*;

const MODEL: &str = "err-model";

#[tokio::test]
async fn malformed_and_out_of_range_input_is_400_naming_the_field() {
    let (_nats, gateway, _worker) = stack(MODEL, &[], &[]).await;
    let cases = [
        (
            json!({"model": MODEL, "prompt": "x", "max_tokens": "ten"}),
            Some("max_tokens"),
        ),
        (
            json!({"model": MODEL, "prompt": "x", "temperature": 9}),
            Some("temperature"),
        ),
        (
            json!({"model": MODEL, "prompt": "x", "top_p": 0}),
            Some("top_p"),
        ),
        (
            json!({"model": MODEL, "prompt": "x", "max_tokens": 0}),
            Some("max_tokens"),
        ),
        (json!({"model": MODEL, "prompt": "x", "n": 9}), Some("n")),
        (json!({"model": MODEL}), Some("prompt")),
        (json!({"prompt": "x"}), Some("model")),
        (json!({"model": MODEL, "prompt": [1, 2, 3]}), Some("prompt")),
    ];
    for (body, param) in cases {
        expect_error(post(&gateway, "/v1/completions", &body).await, 400, param).await;
    }
    let chat = json!({"model": MODEL, "messages": [{"role": "wizard", "content": "x"}]});
    expect_error(
        post(&gateway, "/v1/chat/completions", &chat).await,
        400,
        Some("messages[0].role"),
    )
    .await;
    let chat = json!({"model": MODEL, "messages": []});
    expect_error(
        post(&gateway, "/v1/chat/completions", &chat).await,
        400,
        Some("messages"),
    )
    .await;

    let not_json = http()
        .post(gateway.url("/v1/completions"))
        .header("content-type", "application/json")
        .body("{\"model\": ")
        .send()
        .await
        .unwrap();
    let body = expect_error(not_json, 400, None).await;
    assert!(
        body["error"]["message"].as_str().unwrap().contains("JSON"),
        "{body}"
    );
}

#[tokio::test]
async fn unknown_model_and_unknown_route_are_404_and_a_wrong_method_405() {
    let (_nats, gateway, _worker) = stack(MODEL, &[], &[]).await;

    let body = expect_error(
        post(
            &gateway,
            "/v1/completions",
            &completion_body("no-such-model", 1),
        )
        .await,
        404,
        Some("model"),
    )
    .await;
    assert_eq!(body["error"]["code"], "model_not_found");
    let response = http()
        .get(gateway.url("/v2/everything"))
        .send()
        .await
        .unwrap();
    expect_error(response, 404, None).await;
    let wrong_method = http()
        .get(gateway.url("/v1/completions"))
        .send()
        .await
        .unwrap();
    expect_error(wrong_method, 405, None).await;
}

#[tokio::test]
async fn api_keys_guard_v1_routes_but_not_health() {
    let keys = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(keys.path(), "# operators\nsk-test-123\n").unwrap();
    let keys_path = keys.path().to_str().unwrap();
    let nats = NatsServer::start();
    // Through the environment, as a Kubernetes Secret would hand it over.
    let gateway = Gateway::start_with_env(&nats, &[], &[("CODER_API_KEYS_FILE", keys_path)]);
    let _worker = Worker::start(&nats, MODEL, &[]);
    let body = completion_body(MODEL, 2);
    let authorized = || {
        http()
            .post(gateway.url("/v1/completions"))
            .bearer_auth("sk-test-123")
            .json(&body)
            .send()
    };
    let served = eventually(READY_TIMEOUT, || async {
        (authorized().await.ok()?.status() == 200).then_some(())
    })
    .await;
    assert!(served.is_some(), "the right key is never served");

    let missing = http()
        .post(gateway.url("/v1/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    expect_error(missing, 401, None).await;
    let wrong = http()
        .post(gateway.url("/v1/completions"))
        .bearer_auth("sk-wrong")
        .json(&body)
        .send()
        .await
        .unwrap();
    expect_error(wrong, 401, None).await;
    let models = http().get(gateway.url("/v1/models")).send().await.unwrap();
    expect_error(models, 401, None).await;
    assert_eq!(get_status(&gateway, "/healthz").await, 200);
    assert_eq!(get_status(&gateway, "/readyz").await, 200);
}

#[tokio::test]
async fn oversized_bodies_and_prompts_are_413() {
    let (_nats, gateway, _worker) = stack(MODEL, &["--max-body-bytes", "4000000"], &[]).await;

    let huge_body = json!({"model": MODEL, "prompt": "x".repeat(5_000_000)});
    expect_error(
        post(&gateway, "/v1/completions", &huge_body).await,
        413,
        None,
    )
    .await;
    // Under the body limit but over NATS's 1 MiB max_payload: 413, not a timeout.
    let huge_prompt = json!({"model": MODEL, "prompt": "y".repeat(2_000_000), "max_tokens": 1});
    let body = expect_error(
        post(&gateway, "/v1/completions", &huge_prompt).await,
        413,
        None,
    )
    .await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("queue message"),
        "{body}"
    );
}

#[tokio::test]
async fn nats_down_is_503_and_an_expired_deadline_is_504() {
    let mut nats = NatsServer::start();
    let gateway = Gateway::start(&nats, &["--models", MODEL, "--request-timeout", "1"]);

    // No worker: the request waits in the queue until its deadline.
    let started = std::time::Instant::now();
    let body = expect_error(
        post(&gateway, "/v1/completions", &completion_body(MODEL, 1)).await,
        504,
        None,
    )
    .await;
    assert_eq!(body["error"]["code"], "deadline_exceeded");
    assert!(started.elapsed() >= std::time::Duration::from_millis(900));

    nats.stop();
    let unavailable = eventually(std::time::Duration::from_secs(10), || async {
        let response = post(&gateway, "/v1/completions", &completion_body(MODEL, 1)).await;
        (response.status() == 503).then_some(response)
    })
    .await
    .expect("503 while NATS is down");
    let body = expect_error(unavailable, 503, None).await;
    assert!(
        !body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("127.0.0.1"),
        "5xx bodies stay opaque"
    );
}

#[tokio::test]
async fn the_pending_limit_gives_429_with_retry_after_and_loses_nothing() {
    let nats = NatsServer::start();
    let gateway = Gateway::start(&nats, &["--models", MODEL, "--max-pending-per-model", "3"]);

    // No worker yet: three requests queue, the next three are refused.
    let requests = completions_in_background(&gateway, MODEL, 3);
    let queued = eventually(std::time::Duration::from_secs(10), || async {
        let scrape = scrape(&gateway.metrics_url()).await;
        (sample(
            &scrape,
            "coder_queue_pending_requests",
            &[("model_name", MODEL)],
        ) >= 3.0)
            .then_some(())
    })
    .await;
    assert!(
        queued.is_some(),
        "the three requests never showed as pending"
    );
    for _ in 0..3 {
        let refused = post(&gateway, "/v1/completions", &completion_body(MODEL, 2)).await;
        assert_eq!(refused.headers()["retry-after"], "1");
        let body = expect_error(refused, 429, None).await;
        assert_eq!(body["error"]["type"], "rate_limit_error");
    }

    // A worker arrives: every accepted request is answered.
    let _worker = Worker::start(&nats, MODEL, &[]);
    for request in requests {
        let response = request.await.unwrap().expect("answered");
        assert_eq!(response.status(), 200);
    }
    let rejected = sample(
        &scrape(&gateway.metrics_url()).await,
        "coder_queue_rejected_total",
        &[("reason", "backlog_full")],
    );
    assert_eq!(rejected, 3.0);
}

#[tokio::test]
async fn a_full_stream_gives_429_with_retry_after_and_loses_nothing() {
    let nats = NatsServer::start();
    let limits = ["--models", MODEL, "--stream-max-messages", "2"];
    let gateway = Gateway::start(&nats, &limits);

    // No worker yet: the stream takes two requests, then refuses; the pending limit (256) is far.
    let requests = completions_in_background(&gateway, MODEL, 2);
    wait_for_sample(
        &gateway.metrics_url(),
        "coder_queue_pending_requests",
        &[("model_name", MODEL)],
        2.0,
    )
    .await;
    let refused = post(&gateway, "/v1/completions", &completion_body(MODEL, 2)).await;
    assert_eq!(refused.headers()["retry-after"], "1");
    let body = expect_error(refused, 429, None).await;
    assert_eq!(body["error"]["type"], "rate_limit_error");
    let scrape = scrape(&gateway.metrics_url()).await;
    let rejected = |reason| sample(&scrape, "coder_queue_rejected_total", &[("reason", reason)]);
    assert_eq!(rejected("stream_full"), 1.0);
    assert_eq!(rejected("backlog_full"), 0.0);

    let _worker = Worker::start(&nats, MODEL, &[]);
    for request in requests {
        assert_eq!(request.await.unwrap().expect("answered").status(), 200);
    }
}
