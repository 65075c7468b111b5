//! Black-box test harness: a real nats-server, the real `gateway` and `gpu-worker` binaries on
//! free ports, and typed helpers to talk to them over HTTP.
#![allow(dead_code)] // each test binary uses a different part of the harness

use coder_nats::testing::{free_port, NatsServer, Service};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

pub struct Gateway {
    pub process: Service,
    pub api: SocketAddr,
    pub metrics: SocketAddr,
}

impl Gateway {
    pub fn start(nats: &NatsServer, extra: &[&str]) -> Self {
        Self::start_with_env(nats, extra, &[])
    }

    /// As [`Gateway::start`], with `CODER_*` settings in the environment instead of flags.
    pub fn start_with_env(nats: &NatsServer, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let api: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let metrics: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let mut args = vec![
            "--listen".to_owned(),
            api.to_string(),
            "--metrics-listen".into(),
            metrics.to_string(),
            "--nats-url".into(),
            nats.url(),
            "--queue-poll-interval".into(),
            "0.25".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut process = Service::spawn("gateway", &args, env);
        process.wait_http_ok(api, "/readyz", READY_TIMEOUT);
        Self {
            process,
            api,
            metrics,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.api)
    }

    pub fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.metrics)
    }
}

pub struct Worker {
    pub process: Service,
    pub metrics: SocketAddr,
}

impl Worker {
    /// A synthetic worker for `model`; `extra` adds or overrides flags.
    pub fn start(nats: &NatsServer, model: &str, extra: &[&str]) -> Self {
        Self::start_with_env(nats, model, extra, &[])
    }

    /// As [`Worker::start`], with `CODER_*` settings in the environment instead of flags.
    pub fn start_with_env(
        nats: &NatsServer,
        model: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let metrics: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let mut args = vec![
            "--nats-url".to_owned(),
            nats.url(),
            "--metrics-listen".into(),
            metrics.to_string(),
            "--backend".into(),
            "synthetic".into(),
            "--model".into(),
            model.into(),
            "--heartbeat-interval".into(),
            "0.5".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut process = Service::spawn("gpu-worker", &args, env);
        process.wait_http_ok(metrics, "/metrics", READY_TIMEOUT);
        Self { process, metrics }
    }

    pub fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.metrics)
    }
}

/// A gateway and one synthetic worker for `model` on a fresh nats-server, with the worker
/// announced (so `/v1/models` lists it).
pub async fn stack(
    model: &str,
    gateway_flags: &[&str],
    worker_flags: &[&str],
) -> (NatsServer, Gateway, Worker) {
    let nats = NatsServer::start();
    let gateway = Gateway::start(&nats, gateway_flags);
    let worker = Worker::start(&nats, model, worker_flags);
    wait_for_model(&gateway, model).await;
    (nats, gateway, worker)
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("http client")
}

/// Waits until `/v1/models` lists `model`.
pub async fn wait_for_model(gateway: &Gateway, model: &str) {
    let found = eventually(READY_TIMEOUT, || async {
        let models: Value = http()
            .get(gateway.url("/v1/models"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        models["data"]
            .as_array()?
            .iter()
            .any(|m| m["id"] == model)
            .then_some(())
    })
    .await;
    assert!(
        found.is_some(),
        "model {model} never appeared in /v1/models"
    );
}

/// Polls `check` every 50 ms until it gives `Some`, or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if start.elapsed() > timeout {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn completion_body(model: &str, max_tokens: u32) -> Value {
    json!({ "model": model, "prompt": "def fibonacci(n):", "max_tokens": max_tokens })
}

/// `count` 2-token completions for `model`, each sent from its own task.
pub fn completions_in_background(
    gateway: &Gateway,
    model: &str,
    count: usize,
) -> Vec<tokio::task::JoinHandle<reqwest::Result<reqwest::Response>>> {
    (0..count)
        .map(|_| {
            tokio::spawn(
                http()
                    .post(gateway.url("/v1/completions"))
                    .json(&completion_body(model, 2))
                    .send(),
            )
        })
        .collect()
}

pub async fn post(gateway: &Gateway, path: &str, body: &Value) -> reqwest::Response {
    http()
        .post(gateway.url(path))
        .json(body)
        .send()
        .await
        .expect("gateway answers")
}

/// Concatenated text and parsed chunks of an SSE response; panics without `data: [DONE]`.
pub async fn read_sse(response: reqwest::Response) -> Vec<Value> {
    let text = response.text().await.expect("stream body");
    let mut chunks = Vec::new();
    let mut done = false;
    for line in text.lines().filter(|l| !l.is_empty()) {
        let data = line
            .strip_prefix("data: ")
            .unwrap_or_else(|| panic!("not an SSE data line: {line}"));
        if data == "[DONE]" {
            done = true;
        } else {
            assert!(!done, "data after [DONE]");
            chunks.push(serde_json::from_str(data).expect("chunk is JSON"));
        }
    }
    assert!(done, "stream did not end with [DONE]: {text}");
    chunks
}

/// One scrape, parsed with a real exposition parser.
pub async fn scrape(url: &str) -> prometheus_parse::Scrape {
    let text = http()
        .get(url)
        .send()
        .await
        .expect("metrics answer")
        .text()
        .await
        .expect("text");
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("valid exposition")
}

/// The value of the sample `name` whose labels include all of `labels` (0 when absent).
pub fn sample(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

/// Waits until the sample reaches `at_least`; returns the last value seen.
pub async fn wait_for_sample(url: &str, name: &str, labels: &[(&str, &str)], at_least: f64) -> f64 {
    let mut last = 0.0;
    let reached = eventually(Duration::from_secs(15), || {
        let url = url.to_owned();
        async move {
            let value = sample(&scrape(&url).await, name, labels);
            (value >= at_least).then_some(value)
        }
    })
    .await;
    if let Some(value) = reached {
        last = value;
    }
    assert!(
        reached.is_some(),
        "{name}{labels:?} never reached {at_least}"
    );
    last
}

/// The labels of `name`'s samples, as maps.
pub fn label_sets(scrape: &prometheus_parse::Scrape, name: &str) -> Vec<HashMap<String, String>> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .map(|s| {
            s.labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .collect()
}

/// The status of `GET path`, or 0 when nothing answered.
pub async fn get_status(gateway: &Gateway, path: &str) -> u16 {
    match http().get(gateway.url(path)).send().await {
        Ok(response) => response.status().as_u16(),
        Err(_) => 0,
    }
}

/// Runs `openai_client.py` (the official openai Python client, both modes, completions and chat)
/// against the gateway and asserts every check passed.
pub async fn assert_openai_client_works(gateway: &Gateway, model: &str) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = root.join(".venv/bin/python");
    let output = tokio::process::Command::new(&python)
        .arg(root.join("gateway/tests/openai_client.py"))
        .arg(gateway.url("/v1"))
        .arg(model)
        .output()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} (run scripts/setup.sh): {e}",
                python.display()
            )
        });
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("openai client: 4 checks passed"),
        "{stdout}"
    );
}
