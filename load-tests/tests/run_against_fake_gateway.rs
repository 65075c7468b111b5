//! `load_tests::run` end to end against a stand-in gateway: the load shapes, streaming
//! measurements, the files a run writes, and both verdicts of the accounting.

mod support;

use clap::Parser;
use load_tests::commands::{execute, Verdict};
use load_tests::{Command, RunArgs};
use std::path::Path;
use std::time::Duration;
use support::{Behaviour, FakeGateway};

fn args(gateway: &FakeGateway, out: &Path, extra: &[&str]) -> RunArgs {
    let base = [
        "run",
        "--url",
        &gateway.url(),
        "--metrics-url",
        &gateway.metrics_url(),
        "--model",
        "fake",
        "--out",
        out.to_str().unwrap(),
        "--no-progress",
        "--quiet",
        "--settle-timeout",
        "1",
    ];
    RunArgs::try_parse_from(base.iter().chain(extra)).expect("valid arguments")
}

fn read_result(out: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(out.join("result.json")).expect("result.json written");
    serde_json::from_str(&text).expect("result.json is JSON")
}

#[tokio::test]
async fn a_closed_loop_run_is_counted_and_reported() {
    let gateway = FakeGateway::start(Behaviour {
        tokens: 3,
        ..Default::default()
    })
    .await;
    let out = tempfile::tempdir().unwrap();

    let outcome = load_tests::run(args(
        &gateway,
        out.path(),
        &["--concurrency", "4", "--requests", "40"],
    ))
    .await
    .expect("run");

    assert_eq!(
        outcome.accounting_ok(),
        Some(true),
        "{:?}",
        outcome.result.accounting.problems
    );
    let result = read_result(out.path());
    assert_eq!(result["requests"], 40);
    assert_eq!(result["errors"], 0);
    assert!(result["throughput_rps"].as_f64().unwrap() > 0.0);
    for key in ["p50", "p90", "p99", "max"] {
        assert!(
            result["latency_ms"][key].as_f64().unwrap() > 0.0,
            "latency_ms.{key}"
        );
        assert!(
            result["ttft_ms"][key].is_null(),
            "no ttft without streaming"
        );
    }
    assert_eq!(result["output_tokens"]["p50"], 3.0);
    let html = std::fs::read_to_string(out.path().join("report.html")).expect("report written");
    assert!(
        html.matches("<svg").count() >= 3,
        "latency histogram, latency and throughput charts"
    );
}

#[tokio::test]
async fn an_open_loop_streaming_run_measures_tokens_and_counts_rejections() {
    let behaviour = Behaviour {
        reject_every: Some(5),
        tokens: 4,
        token_delay: Duration::from_millis(5),
        ..Default::default()
    };
    let gateway = FakeGateway::start(behaviour).await;
    let out = tempfile::tempdir().unwrap();
    let extra = [
        "--rate",
        "200",
        "--requests",
        "60",
        "--stream",
        "--chat",
        "--arrival-seed",
        "3",
    ];

    let outcome = load_tests::run(args(&gateway, out.path(), &extra))
        .await
        .expect("run");

    assert_eq!(
        outcome.accounting_ok(),
        Some(true),
        "{:?}",
        outcome.result.accounting.problems
    );
    let result = read_result(out.path());
    assert_eq!(result["requests"], 60);
    assert_eq!(result["errors_by_status"]["429"], 12);
    assert_eq!(result["successes"], 48);
    let ttft = result["ttft_ms"]["p50"].as_f64().expect("ttft measured");
    assert!(
        ttft >= 4.0,
        "the first token follows a 5 ms pause (and the role chunk): {ttft}"
    );
    assert!(result["itl_ms"]["p50"].as_f64().expect("itl measured") >= 4.0);
    assert_eq!(result["itl_ms"]["count"], 48 * 3);
    assert_eq!(result["output_tokens"]["max"], 4.0);
    assert_eq!(result["settings"]["arrival_seed"], 3);
}

#[tokio::test]
async fn a_duration_bound_run_stops_on_time() {
    let gateway = FakeGateway::start(Behaviour::default()).await;
    let out = tempfile::tempdir().unwrap();

    let outcome = load_tests::run(args(
        &gateway,
        out.path(),
        &["--concurrency", "2", "--duration", "0.5"],
    ))
    .await
    .expect("run");

    assert_eq!(outcome.accounting_ok(), Some(true));
    assert!(outcome.result.requests > 0);
    assert!(
        outcome.result.duration_s < 1.5,
        "took {} s",
        outcome.result.duration_s
    );
}

#[tokio::test]
async fn requests_missing_from_the_metrics_fail_the_run() {
    let gateway = FakeGateway::start(Behaviour {
        forget_every: Some(7),
        ..Default::default()
    })
    .await;
    let out = tempfile::tempdir().unwrap();
    let run = args(
        &gateway,
        out.path(),
        &["--concurrency", "2", "--requests", "20"],
    );

    let verdict = execute(Command::Run(run))
        .await
        .expect("the run itself works");

    assert_eq!(verdict, Verdict::AccountingFailed);
    assert_eq!(verdict.exit_code(), 2);
    let result = read_result(out.path());
    assert_eq!(result["accounting_ok"], false);
    let problems = result["accounting"]["problems"].as_array().unwrap();
    assert!(
        problems[0].as_str().unwrap().contains("code 200"),
        "{problems:?}"
    );
}

#[tokio::test]
async fn an_unreachable_metrics_endpoint_stops_the_run_before_it_starts() {
    let gateway = FakeGateway::start(Behaviour::default()).await;
    let out = tempfile::tempdir().unwrap();
    let mut run = args(
        &gateway,
        out.path(),
        &["--concurrency", "1", "--requests", "1"],
    );
    run.metrics_url = Some("http://127.0.0.1:9/metrics".into());

    let error = load_tests::run(run).await.expect_err("no metrics, no run");

    assert!(
        format!("{error:#}").contains("--no-accounting"),
        "{error:#}"
    );
}
