//! The `coder-load` binary's exit status, which scripts and CI act on: 2 when the accounting
//! fails (and result.json says so), 0 when the run is sound.

mod support;

use std::process::Output;
use support::{read_result, Behaviour, FakeGateway};

/// Runs the real binary with `words` and waits for it.
async fn coder_load(words: Vec<String>) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_coder-load"))
        .args(words)
        .output()
        .await
        .expect("coder-load starts")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_that_miscounts_makes_the_binary_exit_2() {
    let gateway = FakeGateway::start(Behaviour {
        forget_every: Some(5),
        ..Default::default()
    })
    .await;
    let out = tempfile::tempdir().unwrap();
    let load = ["--concurrency", "2", "--requests", "20"];

    let output = coder_load(gateway.run_words(out.path(), &load)).await;

    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let result = read_result(out.path());
    assert_eq!(result["accounting_ok"], false);
    assert_eq!(result["requests"], 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sound_run_makes_the_binary_exit_0() {
    let gateway = FakeGateway::start(Behaviour::default()).await;
    let out = tempfile::tempdir().unwrap();
    let load = ["--concurrency", "2", "--requests", "20"];

    let output = coder_load(gateway.run_words(out.path(), &load)).await;

    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(read_result(out.path())["accounting_ok"], true);
}
