//! `coder-load verdict` as bench.sh runs it: result.json folders in, the Markdown for the
//! summary on stdout, exit status 0 whether the targets were met or not.

use std::path::Path;
use std::process::Output;

fn coder_load(words: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_coder-load"))
        .args(words)
        .output()
        .expect("coder-load starts")
}

fn write_result(dir: &Path, rps: f64) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("result.json"),
        format!(r#"{{"throughput_rps": {rps}}}"#),
    )
    .unwrap();
}

#[test]
fn scaling_prints_its_verdict_for_the_summary() {
    let out = tempfile::tempdir().unwrap();
    let (one, four) = (out.path().join("workers-1"), out.path().join("workers-4"));
    write_result(&one, 12.2);
    write_result(&four, 40.0);

    let output = coder_load(&[
        "verdict",
        "scaling",
        "--one",
        one.to_str().unwrap(),
        "--four",
        four.to_str().unwrap(),
    ]);

    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "- MISS: 4 workers give 3.28× one worker (target ≥ 3.6×)\n"
    );
}

#[test]
fn a_malformed_result_fails_the_command() {
    let out = tempfile::tempdir().unwrap();
    let one = out.path().join("workers-1");
    std::fs::create_dir_all(&one).unwrap();
    std::fs::write(one.join("result.json"), "{").unwrap();

    let output = coder_load(&[
        "verdict",
        "scaling",
        "--one",
        one.to_str().unwrap(),
        "--four",
        out.path().join("workers-4").to_str().unwrap(),
    ]);

    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("parsing"), "{stderr}");
}
