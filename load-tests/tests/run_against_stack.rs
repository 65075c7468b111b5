//! A short bounded load against the real stack: a nats-server, the gateway and a synthetic
//! gpu-worker, each its own process. The accounting must hold against the gateway's and the
//! worker's own metrics, and the report files must be written.
//!
//! The gateway and gpu-worker binaries come from `target/debug`: run `cargo build --workspace`
//! before `cargo test -p load-tests`.

mod real_stack;

use real_stack::{runtime, Stack};
use std::path::Path;

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
