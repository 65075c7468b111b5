//! A short bounded load against the real stack: a nats-server, the gateway and a synthetic
//! gpu-worker, each its own process. The accounting must hold against the gateway's and the
//! worker's own metrics, and the report files must be written.
//!
//! The gateway and gpu-worker binaries come from `target/debug`: run `cargo build --workspace`
//! before `cargo test -p load-tests`.

use clap::Parser;
use coder_nats::testing::{free_port, NatsServer, Service};
use load_tests::{RunArgs, WaitReadyArgs};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

const MODEL: &str = "synthetic";
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// One nats-server, one gateway and one synthetic worker; all stopped on drop.
struct Stack {
    api: SocketAddr,
    gateway_metrics: SocketAddr,
    worker_metrics: SocketAddr,
    _worker: Service,
    _gateway: Service,
    _nats: NatsServer,
}

impl Stack {
    fn start(worker_slots: u32, ms_per_token: u32) -> Self {
        let nats = NatsServer::start();
        let loopback = |port| SocketAddr::from(([127, 0, 0, 1], port));
        let (api, gateway_metrics, worker_metrics) = (
            loopback(free_port()),
            loopback(free_port()),
            loopback(free_port()),
        );
        let gateway_args = [
            "--listen".to_owned(),
            api.to_string(),
            "--metrics-listen".to_owned(),
            gateway_metrics.to_string(),
            "--nats-url".to_owned(),
            nats.url(),
        ];
        let mut gateway = Service::spawn("gateway", &gateway_args, &[]);
        let worker_args = [
            "--nats-url".to_owned(),
            nats.url(),
            "--metrics-listen".to_owned(),
            worker_metrics.to_string(),
            "--backend".to_owned(),
            "synthetic".to_owned(),
            "--model".to_owned(),
            MODEL.to_owned(),
            "--concurrency".to_owned(),
            worker_slots.to_string(),
            "--synthetic-ms-per-token".to_owned(),
            ms_per_token.to_string(),
        ];
        let mut worker = Service::spawn("gpu-worker", &worker_args, &[]);
        gateway.wait_http_ok(api, "/readyz", READY_TIMEOUT);
        worker.wait_http_ok(worker_metrics, "/metrics", READY_TIMEOUT);
        Self {
            api,
            gateway_metrics,
            worker_metrics,
            _worker: worker,
            _gateway: gateway,
            _nats: nats,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.api)
    }

    /// `coder-load run` arguments against this stack, with the accounting on both sides.
    fn run_args(&self, out: &Path, load: &[&str]) -> RunArgs {
        let base = [
            "run".to_owned(),
            "--url".to_owned(),
            self.url(),
            "--metrics-url".to_owned(),
            format!("http://{}/metrics", self.gateway_metrics),
            "--worker-metrics-url".to_owned(),
            format!("http://{}/metrics", self.worker_metrics),
            "--model".to_owned(),
            MODEL.to_owned(),
            "--out".to_owned(),
            out.display().to_string(),
            "--no-progress".to_owned(),
        ];
        let load = load.iter().map(|s| (*s).to_owned());
        RunArgs::try_parse_from(base.into_iter().chain(load)).expect("valid arguments")
    }

    /// Waits until the gateway lists the model (the worker's heartbeat has arrived).
    async fn wait_for_model(&self) {
        let args = WaitReadyArgs {
            url: self.url(),
            model: Some(MODEL.to_owned()),
            timeout: READY_TIMEOUT,
            api_key: None,
        };
        load_tests::wait_ready::wait_ready(&args)
            .await
            .expect("the gateway serves the model");
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Every request was answered without error and counted exactly once.
fn assert_accounted_without_errors(outcome: &load_tests::RunOutcome) {
    let accounting = &outcome.result.accounting;
    assert_eq!(
        outcome.accounting_ok(),
        Some(true),
        "{:?}",
        accounting.problems
    );
    assert!(outcome.result.requests > 0);
    assert_eq!(
        outcome.result.errors, 0,
        "{:?}",
        outcome.result.errors_by_status
    );
}

fn assert_reports_written(out: &Path) -> serde_json::Value {
    let html = std::fs::read_to_string(out.join("report.html")).expect("report.html written");
    assert!(html.contains("<svg"), "the report has charts");
    let text = std::fs::read_to_string(out.join("result.json")).expect("result.json written");
    serde_json::from_str(&text).expect("result.json is JSON")
}

#[test]
fn a_closed_loop_of_completions_is_accounted_for_end_to_end() {
    let stack = Stack::start(8, 0);
    let out = tempfile::tempdir().unwrap();
    let rt = runtime();
    rt.block_on(stack.wait_for_model());
    let args = stack.run_args(
        out.path(),
        &[
            "--concurrency",
            "8",
            "--duration",
            "3",
            "--max-tokens",
            "4",
            "--warmup-requests",
            "5",
        ],
    );

    let outcome = rt
        .block_on(load_tests::run(args))
        .expect("the run completes");

    assert_accounted_without_errors(&outcome);
    let result = assert_reports_written(out.path());
    assert_eq!(result["accounting_ok"], true);
    assert!(result["latency_ms"]["p99"].as_f64().is_some());
}

#[test]
fn an_open_loop_of_streamed_chat_is_accounted_for_end_to_end() {
    let stack = Stack::start(8, 2);
    let out = tempfile::tempdir().unwrap();
    let rt = runtime();
    rt.block_on(stack.wait_for_model());
    let args = stack.run_args(
        out.path(),
        &[
            "--rate",
            "40",
            "--duration",
            "3",
            "--stream",
            "--chat",
            "--max-tokens",
            "8",
        ],
    );

    let outcome = rt
        .block_on(load_tests::run(args))
        .expect("the run completes");

    assert_accounted_without_errors(&outcome);
    let result = assert_reports_written(out.path());
    assert!(
        result["ttft_ms"]["p50"].as_f64().is_some(),
        "streams measure time to first token"
    );
    assert!(result["output_tokens"]["max"].as_f64().unwrap() <= 8.0);
}

#[test]
fn a_multiturn_run_reports_each_turns_ttft_and_the_cache_hits_it_got() {
    let stack = Stack::start(4, 1);
    let out = tempfile::tempdir().unwrap();
    let rt = runtime();
    rt.block_on(stack.wait_for_model());
    let args = stack.run_args(
        out.path(),
        &[
            "--workload",
            "multiturn",
            "--conversations",
            "3",
            "--turns",
            "3",
            "--concurrency",
            "2",
            "--stream",
            "--max-tokens",
            "8",
        ],
    );

    let outcome = rt
        .block_on(load_tests::run(args))
        .expect("the run completes");

    assert_accounted_without_errors(&outcome);
    let result = assert_reports_written(out.path());
    assert_eq!(result["requests"], 9);
    let turns = result["turns"].as_array().unwrap();
    assert_eq!(turns.len(), 3);
    for turn in turns {
        assert!(turn["ttft_ms"]["p50"].as_f64().is_some(), "{turn}");
    }
    // Every follow-up starts with its conversation's previous prompt: the worker had it.
    assert!(
        turns[1]["cached_tokens_ratio"].as_f64().unwrap() > 0.5,
        "{}",
        turns[1]
    );
    assert_eq!(result["follow_up_ttft_ms"]["count"], 6);
    let hit_rate = result["prefix_cache_hit_rate"].as_f64().unwrap();
    let cached = result["cached_tokens_ratio"].as_f64().unwrap();
    assert!(
        hit_rate > 0.0 && (hit_rate - cached).abs() < 1e-9,
        "{hit_rate} {cached}"
    );
}
