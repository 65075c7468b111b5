//! `load_tests::run` end to end against a stand-in gateway: the load shapes, streaming
//! measurements, the files a run writes, and both verdicts of the accounting.

mod support;

use clap::Parser;
use load_tests::commands::{execute, Verdict};
use load_tests::{Command, RunArgs};
use std::path::Path;
use std::time::Duration;
use support::{read_result, Behaviour, FakeGateway};

fn args(gateway: &FakeGateway, out: &Path, load: &[&str]) -> RunArgs {
    RunArgs::try_parse_from(gateway.run_words(out, load)).expect("valid arguments")
}

/// Runs `load` against `gateway`, checks that the accounting held, and returns result.json.
async fn accounted_run(gateway: &FakeGateway, out: &Path, load: &[&str]) -> serde_json::Value {
    let outcome = load_tests::run(args(gateway, out, load))
        .await
        .expect("run");
    assert_eq!(
        outcome.accounting_ok(),
        Some(true),
        "{:?}",
        outcome.result.accounting.problems
    );
    read_result(out)
}

#[tokio::test]
async fn a_closed_loop_run_is_counted_and_reported() {
    let gateway = FakeGateway::start(Behaviour {
        tokens: 3,
        ..Default::default()
    })
    .await;
    let out = tempfile::tempdir().unwrap();

    let load = ["--concurrency", "4", "--requests", "40"];

    let result = accounted_run(&gateway, out.path(), &load).await;

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

    let result = accounted_run(&gateway, out.path(), &extra).await;

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

    let load = ["--concurrency", "2", "--duration", "0.5"];

    let result = accounted_run(&gateway, out.path(), &load).await;

    assert!(result["requests"].as_u64().unwrap() > 0);
    let took = result["duration_s"].as_f64().unwrap();
    assert!(took < 1.5, "took {took} s");
}

#[tokio::test]
async fn an_open_loop_sends_exactly_the_requests_asked_for_and_reports_skipped_arrivals() {
    let gateway = FakeGateway::start(Behaviour {
        tokens: 2,
        token_delay: Duration::from_millis(20),
        ..Default::default()
    })
    .await;
    let out = tempfile::tempdir().unwrap();
    // One request at a time, each ~80 ms, arrivals every ~2.5 ms: most arrivals find no room.
    let load = [
        "--rate",
        "400",
        "--requests",
        "12",
        "--max-in-flight",
        "1",
        "--stream",
        "--arrival-seed",
        "5",
    ];

    let result = accounted_run(&gateway, out.path(), &load).await;

    assert_eq!(
        (result["requests"].as_u64(), result["sent"].as_u64()),
        (Some(12), Some(12))
    );
    assert!(
        result["skipped"].as_u64().unwrap() > 12,
        "{}",
        result["skipped"]
    );
}

#[tokio::test]
async fn each_request_draws_its_max_tokens_from_a_range() {
    let gateway = FakeGateway::start(Behaviour {
        echo_max_tokens: true,
        ..Default::default()
    })
    .await;
    let out = tempfile::tempdir().unwrap();
    let load = [
        "--concurrency",
        "2",
        "--requests",
        "60",
        "--max-tokens",
        "4..64",
        "--length-seed",
        "9",
    ];

    let result = accounted_run(&gateway, out.path(), &load).await;

    assert_eq!(
        result["settings"]["max_tokens"],
        serde_json::json!({"min": 4, "max": 64})
    );
    assert_eq!(result["settings"]["length_seed"], 9);
    let asked = &result["requested_max_tokens"];
    assert_eq!(asked["count"], 60);
    assert!(asked["min"].as_f64().unwrap() >= 4.0 && asked["max"].as_f64().unwrap() <= 64.0);
    assert_ne!(asked["min"], asked["max"], "the draws vary");
    assert_eq!(
        result["output_tokens"], *asked,
        "the gateway saw each request's own max_tokens"
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

    let verdict = execute(Command::Run(Box::new(run)))
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

#[tokio::test]
async fn a_multiturn_run_resends_each_conversations_history_with_the_answers_given() {
    let gateway = FakeGateway::start(Behaviour::default()).await;
    let out = tempfile::tempdir().unwrap();
    let load = [
        "--workload",
        "multiturn",
        "--conversations",
        "3",
        "--turns",
        "3",
        "--concurrency",
        "2",
        "--shared-prefix-bytes",
        "500",
        "--workload-seed",
        "5",
    ];

    let result = accounted_run(&gateway, out.path(), &load).await;

    assert_eq!(result["requests"], 9);
    assert_eq!(result["settings"]["workload"], "multiturn");
    assert_eq!(result["settings"]["endpoint"], "/v1/chat/completions");
    let turns = result["turns"].as_array().unwrap();
    assert_eq!(turns.len(), 3);
    assert!(turns
        .iter()
        .all(|t| t["requests"] == 3 && t["successes"] == 3));
    let bodies = gateway.bodies();
    assert_eq!(bodies.len(), 9);
    let system = &bodies[0]["messages"][0]["content"];
    for body in &bodies {
        let messages = body["messages"].as_array().unwrap();
        assert_eq!(&messages[0]["content"], system, "one shared system prompt");
        // system, then (question, answer) per earlier turn, then this turn's question.
        assert_eq!(messages.len() % 2, 0, "{messages:?}");
        for answer in messages.iter().skip(2).step_by(2) {
            assert_eq!(answer["role"], "assistant");
            assert_eq!(answer["content"], "x", "the answer the fake gave");
        }
    }
    let longest = bodies
        .iter()
        .map(|b| b["messages"].as_array().unwrap().len());
    assert_eq!(
        longest.max(),
        Some(6),
        "the third turn carries two earlier turns"
    );
}

#[tokio::test]
async fn a_repo_context_run_shares_one_file_ahead_of_different_questions() {
    let gateway = FakeGateway::start(Behaviour::default()).await;
    let out = tempfile::tempdir().unwrap();
    let load = [
        "--workload",
        "repo-context",
        "--concurrency",
        "2",
        "--requests",
        "6",
        "--shared-prefix-bytes",
        "800",
    ];

    let result = accounted_run(&gateway, out.path(), &load).await;

    assert_eq!(result["requests"], 6);
    assert_eq!(result["settings"]["workload"], "repo-context");
    let prompts: Vec<String> = gateway
        .bodies()
        .iter()
        .map(|b| b["prompt"].as_str().unwrap().to_owned())
        .collect();
    let file_end = prompts[0].find("# Question").unwrap();
    assert!(file_end >= 800);
    assert!(prompts
        .iter()
        .all(|p| p[..file_end] == prompts[0][..file_end]));
    let distinct: std::collections::HashSet<&String> = prompts.iter().collect();
    assert_eq!(distinct.len(), 6, "each request asks its own question");
}
