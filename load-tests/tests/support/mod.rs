//! A stand-in for the gateway, for testing the load generator on its own: the OpenAI routes
//! (JSON and SSE), `x-request-id` on every response, 429s on demand, and a `/metrics` page with
//! `coder_model_requests_total` on its own port. It can be told to miscount, so the accounting's
//! failure path is exercised too.

#![allow(dead_code)] // each test binary uses a different part of the fake

use axum::body::Body;
use axum::extract::{MatchedPath, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::{Json, Router};
use futures::StreamExt as _;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the fake behaves.
#[derive(Debug, Clone, Default)]
pub struct Behaviour {
    /// Every n-th request (1-based) is refused with 429.
    pub reject_every: Option<u64>,
    /// Leave every n-th successful request out of the metrics.
    pub forget_every: Option<u64>,
    /// Streamed text chunks per request.
    pub tokens: u32,
    /// Pause before each streamed chunk.
    pub token_delay: Duration,
    /// Non-streamed answers report the request's `max_tokens` as their completion tokens.
    pub echo_max_tokens: bool,
}

#[derive(Clone)]
struct FakeState {
    behaviour: Behaviour,
    seq: Arc<AtomicU64>,
    /// (endpoint, code) → requests counted.
    counts: Arc<Mutex<BTreeMap<(String, u16), u64>>>,
    /// Every request body, in arrival order.
    bodies: Arc<Mutex<Vec<Value>>>,
}

pub struct FakeGateway {
    pub api: SocketAddr,
    pub metrics: SocketAddr,
    bodies: Arc<Mutex<Vec<Value>>>,
}

impl FakeGateway {
    pub async fn start(behaviour: Behaviour) -> Self {
        let state = FakeState {
            behaviour,
            seq: Arc::default(),
            counts: Arc::default(),
            bodies: Arc::default(),
        };
        let bodies = state.bodies.clone();
        let api = Router::new()
            .route("/v1/completions", post(generate))
            .route("/v1/chat/completions", post(generate))
            .with_state(state.clone());
        let metrics = Router::new()
            .route("/metrics", get(metrics))
            .with_state(state);
        Self {
            api: serve(api).await,
            metrics: serve(metrics).await,
            bodies,
        }
    }

    /// The bodies of every request received so far, in arrival order.
    pub fn bodies(&self) -> Vec<Value> {
        self.bodies.lock().unwrap().clone()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.api)
    }

    pub fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.metrics)
    }

    /// `coder-load run` words against this gateway and its metrics, writing to `out`, quiet and
    /// quick to settle; the load's shape and bound come in `load`.
    pub fn run_words(&self, out: &Path, load: &[&str]) -> Vec<String> {
        let base = [
            "run",
            "--url",
            &self.url(),
            "--metrics-url",
            &self.metrics_url(),
            "--model",
            "fake",
            "--out",
            out.to_str().expect("a UTF-8 path"),
            "--no-progress",
            "--quiet",
            "--settle-timeout",
            "1",
        ]
        .map(str::to_owned);
        base.into_iter()
            .chain(load.iter().map(|word| (*word).to_owned()))
            .collect()
    }
}

/// The `result.json` a run wrote into `out`.
pub fn read_result(out: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(out.join("result.json")).expect("result.json written");
    serde_json::from_str(&text).expect("result.json is JSON")
}

async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
    // Without TCP_NODELAY, Nagle's algorithm and delayed ACKs hold back small SSE frames ~40 ms.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move { axum::serve(listener, router).await.expect("serve") });
    addr
}

async fn generate(
    State(state): State<FakeState>,
    path: MatchedPath,
    Json(body): Json<Value>,
) -> Response {
    state.bodies.lock().unwrap().push(body.clone());
    let n = state.seq.fetch_add(1, Ordering::Relaxed) + 1;
    let request_id = format!("fake-{n}");
    let rejected = state.behaviour.reject_every.is_some_and(|k| n % k == 0);
    let code = if rejected { 429 } else { 200 };
    let forget = !rejected && state.behaviour.forget_every.is_some_and(|k| n % k == 0);
    if !forget {
        *state
            .counts
            .lock()
            .unwrap()
            .entry((path.as_str().to_owned(), code))
            .or_default() += 1;
    }
    let mut response = if rejected {
        let error = json!({"error": {"message": "backlog full", "type": "rate_limit_error",
                                     "param": null, "code": "backlog_full"}});
        (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, "1")],
            Json(error),
        )
            .into_response()
    } else if body["stream"] == true {
        stream(&state.behaviour, path.as_str() == "/v1/chat/completions")
    } else {
        let tokens = match state.behaviour.echo_max_tokens {
            true => body["max_tokens"].as_u64().expect("max_tokens") as u32,
            false => state.behaviour.tokens,
        };
        let usage = json!({"prompt_tokens": 5, "completion_tokens": tokens,
                           "total_tokens": 5 + tokens});
        Json(json!({"id": request_id, "object": "text_completion",
                    "choices": [{"index": 0, "text": "x", "finish_reason": "length"}],
                    "usage": usage}))
        .into_response()
    };
    response
        .headers_mut()
        .insert("x-request-id", request_id.parse().unwrap());
    response
}

fn stream(behaviour: &Behaviour, chat: bool) -> Response {
    let (tokens, delay) = (behaviour.tokens, behaviour.token_delay);
    let mut events: Vec<Value> = Vec::new();
    if chat {
        events.push(
            json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}),
        );
    }
    for _ in 0..tokens {
        let choice = if chat {
            json!({"index": 0, "delta": {"content": "tok"}})
        } else {
            json!({"index": 0, "text": "tok"})
        };
        events.push(json!({"choices": [choice]}));
    }
    events.push(
        json!({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": tokens,
                                                "total_tokens": 5 + tokens}}),
    );
    let mut frames: Vec<String> = events.iter().map(|e| format!("data: {e}\n\n")).collect();
    frames.push("data: [DONE]\n\n".to_owned());
    let body = futures::stream::iter(frames).then(move |frame| async move {
        tokio::time::sleep(delay).await;
        Ok::<_, std::convert::Infallible>(frame)
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(Body::from_stream(body))
        .unwrap()
}

async fn metrics(State(state): State<FakeState>) -> String {
    let mut page = String::from("# TYPE coder_model_requests_total counter\n");
    let mut refused = 0;
    for ((endpoint, code), n) in state.counts.lock().unwrap().iter() {
        let status = if *code < 400 { "success" } else { "error" };
        page.push_str(&format!(
            "coder_model_requests_total{{code=\"{code}\",endpoint=\"{endpoint}\",model_name=\"fake\",status=\"{status}\"}} {n}\n"
        ));
        if *code == 429 {
            refused += n;
        }
    }
    // Like the gateway, every 429 is a queue refusal for lack of room.
    page.push_str("# TYPE coder_queue_rejected_total counter\n");
    page.push_str(&format!(
        "coder_queue_rejected_total{{model_name=\"fake\",reason=\"backlog_full\"}} {refused}\n"
    ));
    page
}
