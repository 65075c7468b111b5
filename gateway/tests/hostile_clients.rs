//! Hostile and careless clients: input refused before it can reach a NATS subject or header, and
//! floods of requests that must not become floods of JetStream calls, and forged worker events.

mod support;

use coder_nats::{
    subjects, testing::NatsServer, FinishReason, Logprob, TokenLogprobs, ToolCallDelta, Usage,
    WorkerEvent,
};
use futures::StreamExt;
use serde_json::json;
use std::time::{Duration, Instant};
use support::*;

const MODEL: &str = "hostile-model";
/// A flood: this many requests, one after another.
const FLOOD: usize = 20;

/// Messages `subscriber` receives until it has been quiet for a moment.
async fn count_until_quiet(subscriber: &mut async_nats::Subscriber) -> usize {
    let mut count = 0;
    let quiet = Duration::from_millis(300);
    while let Ok(Some(_)) = tokio::time::timeout(quiet, subscriber.next()).await {
        count += 1;
    }
    count
}

/// A plain client on `nats` following `subject`: it sees every JetStream API request the
/// gateway makes there.
async fn watch(nats: &NatsServer, subject: String) -> (async_nats::Client, async_nats::Subscriber) {
    let client = async_nats::connect(nats.url())
        .await
        .expect("watcher connects");
    let subscriber = client.subscribe(subject).await.expect("watcher subscribes");
    client.flush().await.expect("subscription registered");
    (client, subscriber)
}

/// How many look-ups a window-limited cache may make while `elapsed` passes.
fn allowed_look_ups(elapsed: Duration, window: Duration) -> usize {
    1 + (elapsed.as_secs_f64() / window.as_secs_f64()) as usize
}

#[tokio::test]
async fn a_model_name_too_long_for_a_subject_is_400_and_the_gateway_stays_on_nats() {
    let (_nats, gateway, _worker) = stack(MODEL, &[], &[]).await;
    // 1,400 characters, each escaped to three bytes in a subject: past nats-server's 4,096-byte
    // control line.
    let long_name = ":".repeat(1_400);

    let completion = post(&gateway, "/v1/completions", &completion_body(&long_name, 1)).await;
    expect_error(completion, 400, Some("model")).await;
    let chat = json!({"model": long_name, "messages": [{"role": "user", "content": "hi"}]});
    expect_error(
        post(&gateway, "/v1/chat/completions", &chat).await,
        400,
        Some("model"),
    )
    .await;

    assert_eq!(get_status(&gateway, "/readyz").await, 200);
    complete(&gateway, MODEL, 2).await;
}

#[tokio::test]
async fn a_flood_of_unknown_models_makes_one_jetstream_look_up_per_window() {
    let nats = NatsServer::start();
    let gateway = idle_gateway(&nats, MODEL, &[]).await;
    let (_client, mut look_ups) = watch(
        &nats,
        format!("$JS.API.CONSUMER.INFO.{}.*", subjects::STREAM_NAME),
    )
    .await;

    let started = Instant::now();
    for i in 0..FLOOD {
        let name = format!("no-such-model-{}", i % 2);
        let response = post(&gateway, "/v1/completions", &completion_body(&name, 1)).await;
        expect_error(response, 404, Some("model")).await;
    }
    let elapsed = started.elapsed();

    let made = count_until_quiet(&mut look_ups).await;
    let window = ::gateway::known_models::MISS_RECHECK_INTERVAL;
    assert!(
        (1..=allowed_look_ups(elapsed, window)).contains(&made),
        "{FLOOD} requests for unknown models in {elapsed:?} made {made} consumer look-ups"
    );
}

#[tokio::test]
async fn a_flood_of_readiness_probes_makes_one_stream_look_up_per_window() {
    let nats = NatsServer::start();
    let gateway = Gateway::start(&nats, &[]);
    let (_client, mut look_ups) = watch(
        &nats,
        format!("$JS.API.STREAM.INFO.{}", subjects::STREAM_NAME),
    )
    .await;

    let started = Instant::now();
    for _ in 0..FLOOD {
        assert_eq!(get_status(&gateway, "/readyz").await, 200);
    }
    let elapsed = started.elapsed();

    let made = count_until_quiet(&mut look_ups).await;
    let window = ::gateway::routes::health::READY_CACHE_FOR;
    assert!(
        made <= allowed_look_ups(elapsed, window),
        "{FLOOD} readiness probes in {elapsed:?} made {made} stream look-ups"
    );
}

#[tokio::test]
async fn a_post_body_that_is_not_declared_json_is_415_naming_the_header() {
    let (_nats, gateway, _worker) = stack(MODEL, &[], &[]).await;
    let body = completion_body(MODEL, 1).to_string();

    for path in ["/v1/completions", "/v1/chat/completions"] {
        let text = http()
            .post(gateway.url(path))
            .header("content-type", "text/plain")
            .body(body.clone())
            .send()
            .await
            .expect("gateway answers");
        let error = expect_error(text, 415, None).await;
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains("Content-Type"), "{error}");
        assert!(message.contains("text/plain"), "{error}");

        let undeclared = http()
            .post(gateway.url(path))
            .body(body.clone())
            .send()
            .await
            .expect("gateway answers");
        expect_error(undeclared, 415, None).await;
    }

    let declared = http()
        .post(gateway.url("/v1/completions"))
        .header("content-type", "application/json; charset=utf-8")
        .body(body)
        .send()
        .await
        .expect("gateway answers");
    assert_eq!(declared.status(), 200);
}

#[tokio::test]
async fn a_stop_sequence_longer_than_the_bound_is_400_naming_stop() {
    let (_nats, gateway, _worker) = stack(MODEL, &[], &[]).await;
    let long_stop = "x".repeat(10_000);

    for stop in [json!(long_stop), json!(["\n", long_stop])] {
        let body = json!({"model": MODEL, "prompt": "x", "max_tokens": 1, "stop": stop});
        expect_error(
            post(&gateway, "/v1/completions", &body).await,
            400,
            Some("stop"),
        )
        .await;
    }
    let body = json!({"model": MODEL, "prompt": "x", "max_tokens": 1, "stop": ["\n\n", "```"]});
    assert_eq!(post(&gateway, "/v1/completions", &body).await.status(), 200);
}

#[tokio::test]
async fn forged_worker_events_with_extreme_numbers_leave_the_gateway_answering() {
    let slow = ["--synthetic-ms-per-token", "50"];
    let (nats, gateway, _worker) = stack(MODEL, &[], &slow).await;
    let (forger, mut replies) = watch(&nats, "coder.replies.>".to_owned()).await;
    let request = spawn_completion(&gateway, MODEL, 200);
    let first = tokio::time::timeout(Duration::from_secs(20), replies.next())
        .await
        .expect("the worker replies")
        .expect("a reply");

    // Anyone on NATS can publish on a reply subject: numbers at their extremes.
    let forged = [
        WorkerEvent::Token {
            attempt: 1,
            index: u32::MAX,
            text: "forged".into(),
            choice: 0,
            logprobs: None,
            // Calls for a request that offered no tools, at the furthest index.
            tool_calls: vec![ToolCallDelta {
                index: u32::MAX,
                id: Some("forged".into()),
                name: Some("x".repeat(100_000)),
                arguments: "{".into(),
            }],
        },
        // A choice the request never asked for, with more alternatives than anyone may ask.
        WorkerEvent::Token {
            attempt: 1,
            index: 0,
            text: "forged".into(),
            choice: u32::MAX,
            logprobs: Some(TokenLogprobs {
                chosen: Logprob::new(b"x".to_vec(), f32::MAX),
                top: vec![Logprob::new(b"y".to_vec(), f32::MIN); 10_000],
            }),
            tool_calls: Vec::new(),
        },
        WorkerEvent::Final {
            attempt: 1,
            finish_reason: FinishReason::Length,
            usage: Usage {
                prompt_tokens: u32::MAX,
                completion_tokens: u32::MAX,
                cached_tokens: u32::MAX,
            },
            finish_reasons: vec![FinishReason::ToolCalls; 1000],
            token_events: vec![u32::MAX; 1000],
        },
    ];
    for event in forged {
        let subject = first.subject.to_string();
        forger
            .publish(subject, event.to_json().into())
            .await
            .unwrap();
    }
    forger.flush().await.unwrap();

    assert_eq!(
        request.await.expect("an answer, not a dropped connection"),
        200
    );
    assert_eq!(get_status(&gateway, "/readyz").await, 200);
    complete(&gateway, MODEL, 2).await;
}

/// Posts `body` as it is, declared JSON.
async fn post_raw(gateway: &Gateway, path: &str, body: String) -> reqwest::Response {
    http()
        .post(gateway.url(path))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("gateway answers")
}

#[tokio::test]
async fn bodies_of_countless_small_values_are_400_naming_where_before_they_are_built() {
    let (_nats, gateway, _worker) = stack(MODEL, &[], &[]).await;
    // ~4 MiB each, under the body limit: a million empty objects in a list, under an unknown
    // field, and nested far past any real request.
    let objects = vec!["{}"; 1_000_000].join(",");
    let deep = format!("{}1{}", "[".repeat(2_000_000), "]".repeat(2_000_000));
    // Lists within their bound but values past the whole body's.
    let part = format!("[{}]", vec!["1"; 4_000].join(","));
    let many = vec![part; 20].join(",");
    let cases = [
        (
            format!(r#"{{"model": "{MODEL}", "messages": [{objects}]}}"#),
            Some("messages"),
            "more than 4096 elements",
        ),
        (
            format!(r#"{{"model": "{MODEL}", "filler": [{objects}]}}"#),
            Some("filler"),
            "not a field of this API",
        ),
        (
            format!(r#"{{"model": "{MODEL}", "stop": {deep}}}"#),
            Some("stop[0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0]"),
            "deeper than 32 levels",
        ),
        (
            format!(r#"{{"model": "{MODEL}", "messages": [{{"role": "user", "content": [{many}]}}]}}"#),
            None,
            "more than 65536 JSON values",
        ),
    ];
    for (body, field, why) in cases {
        let response = post_raw(&gateway, "/v1/chat/completions", body).await;
        let error = expect_error(response, 400, field).await;
        let message = error["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(why), "{error}");
    }

    complete(&gateway, MODEL, 2).await;
}

#[tokio::test]
async fn a_request_asking_for_its_replies_elsewhere_is_refused_by_the_worker() {
    let (nats, _gateway, worker) = stack(MODEL, &[], &[]).await;
    // Where a queued request's forged reply header points: the request stream itself.
    let target = subjects::request_subject("victim", 0);
    let (client, mut watched) = watch(&nats, target.clone()).await;
    let request = coder_nats::GenerationRequest {
        id: uuid::Uuid::now_v7(),
        model: MODEL.to_owned(),
        prompt: coder_nats::Prompt::Text("x".into()),
        params: coder_nats::SamplingParams::default(),
    };
    let headers = coder_nats::headers::RequestHeaders {
        msg_id: request.id.to_string(),
        reply_to: target,
        deadline: std::time::SystemTime::now() + Duration::from_secs(60),
        traceparent: None,
    };
    async_nats::jetstream::new(client)
        .publish_with_headers(
            subjects::request_subject(MODEL, 0),
            headers.to_header_map(),
            request.to_json().into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();

    // Terminated, counted as failed, and nothing published where the header pointed.
    wait_for_sample(
        &worker.metrics_url(),
        "coder_worker_requests_total",
        &[("outcome", "failed")],
        1.0,
    )
    .await;
    assert_eq!(count_until_quiet(&mut watched).await, 0);
}

#[tokio::test]
async fn a_forged_attempt_beyond_max_deliver_cannot_take_a_request_over() {
    let slow = ["--synthetic-ms-per-token", "20"];
    let (nats, gateway, _worker) = stack(MODEL, &[], &slow).await;
    let (forger, mut replies) = watch(&nats, "coder.replies.>".to_owned()).await;
    let body = json!({"model": MODEL, "prompt": "take me over", "max_tokens": 40, "seed": 7});
    let request = tokio::spawn({
        let url = gateway.url("/v1/completions");
        let body = body.clone();
        async move {
            http()
                .post(url)
                .json(&body)
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    });
    let first = tokio::time::timeout(Duration::from_secs(20), replies.next())
        .await
        .expect("the worker replies")
        .expect("a reply");

    // Attempt 4 with the default --max-deliver 3: JetStream never gives it.
    let forged = [
        WorkerEvent::Started {
            attempt: 4,
            worker_id: "forger".into(),
            queue_wait_ms: 0,
        },
        WorkerEvent::Token {
            attempt: 4,
            index: 0,
            text: "FORGED".into(),
            choice: 0,
            logprobs: None,
            tool_calls: Vec::new(),
        },
        WorkerEvent::Final {
            attempt: 4,
            finish_reason: FinishReason::Stop,
            usage: Usage::default(),
            finish_reasons: Vec::new(),
            token_events: vec![1],
        },
    ];
    for event in forged {
        forger
            .publish(first.subject.to_string(), event.to_json().into())
            .await
            .unwrap();
    }
    forger.flush().await.unwrap();

    let answer = request.await.unwrap();
    let text = answer["choices"][0]["text"].as_str().unwrap();
    assert!(!text.contains("FORGED"), "{answer}");
    assert_eq!(answer["usage"]["completion_tokens"], 40, "{answer}");
    let again = post(&gateway, "/v1/completions", &body).await;
    let expected: serde_json::Value = again.json().await.unwrap();
    assert_eq!(answer["choices"][0]["text"], expected["choices"][0]["text"]);
}
