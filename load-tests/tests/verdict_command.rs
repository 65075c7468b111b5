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

    let output = scaling(&one, &four);

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

    let output = scaling(&one, &out.path().join("workers-4"));

    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("parsing"), "{stderr}");
}

#[test]
fn llama_cpp_prints_a_row_and_checks_per_level() {
    let out = tempfile::tempdir().unwrap();
    let avx2 = out.path().join("avx2");
    std::fs::create_dir_all(&avx2).unwrap();
    let candle = r#"{"cpu_kernels": "avx2", "decode_tokens_per_second": 20.5,
        "prompt_tokens_per_second": 60.4, "peak_rss_bytes": 1234567890}"#;
    std::fs::write(avx2.join("candle-1.json"), candle).unwrap();
    std::fs::write(avx2.join("llama-tg-1.json"), r#"[{"avg_ts": 20.3}]"#).unwrap();
    std::fs::write(avx2.join("llama-pp-1.json"), r#"[{"avg_ts": 67.0}]"#).unwrap();
    std::fs::write(avx2.join("llama-1.rss_kib"), "1782580\n").unwrap();

    let output = coder_load(&llama_cpp_args(
        out.path(),
        "avx2",
        &[
            "--cpu-has",
            "avx2",
            "--cpu-lacks",
            "avx512f avx512_vnni avx_vnni",
        ],
    ));

    assert_eq!(output.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("| avx2 | candle / llama.cpp | 101% | 90% | |\n"),
        "{stdout}"
    );
    assert!(stdout.contains("No native row"), "{stdout}");
    assert!(stdout.ends_with(
        "- PASS: avx2: decode at 101% of llama.cpp's avx2 build (target >= 100%)\n\
         - PASS: avx2: prompt at 90% of llama.cpp's avx2 build (target >= 90%)\n\
         - PASS: avx2: candle peak RSS 1.15 GiB (target <= 1.5 GiB)\n"
    ));
}

#[test]
fn llama_cpp_refuses_a_level_it_has_no_build_for() {
    let out = tempfile::tempdir().unwrap();
    let output = coder_load(&llama_cpp_args(out.path(), "avx512", &[]));

    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
}

#[test]
fn batching_prints_a_row_per_engine_and_level_and_the_targets() {
    let out = tempfile::tempdir().unwrap();
    let run = |name: &str, aggregate: f64, ttft_ms: f64, rss_kib: &str| {
        let dir = out.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let result = format!(
            r#"{{"output_tokens_per_s": {aggregate}, "ttft_ms": {{"p50": {ttft_ms}, "p99": {ttft_ms}}},
                "tokens_per_s": {{"p50": 9.5}}, "errors": 0, "requests": 4}}"#
        );
        std::fs::write(dir.join("result.json"), result).unwrap();
        std::fs::write(dir.join("peak_rss_kib"), rss_kib).unwrap();
    };
    run("worker-c1", 16.0, 500.0, "1258291\n");
    run("llama-server-c1", 16.4, 400.0, "1782580\n");
    run("worker-c4", 36.0, 900.0, "1300000\n");
    // llama-server's c4 run left nothing: its figures are missing, its targets missed.

    let dir = out.path().to_str().unwrap();
    let output = coder_load(&[
        "verdict",
        "batching",
        "--dir",
        dir,
        "--levels",
        "1,4",
        "--cpu",
        "AMD EPYC",
        "--commit",
        "abc1234",
        "--model-file",
        "m.gguf",
        "--threads",
        "2",
        "--max-tokens",
        "64",
        "--requests-per-connection",
        "4",
    ]);

    assert_eq!(output.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(
            "| 1 | worker (--concurrency 1) | 16.0 | 9.5 | 0.50 | 0.50 | - | - | 4 | 0 | 1.20 |\n"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("| 4 | llama-server (--parallel 4) | - |"),
        "{stdout}"
    );
    assert!(
        stdout.ends_with(
            "- PASS: worker: aggregate output tok/s at c4 2.25× its c1 (target >= 2.0×)\n\
         - MISS: worker: aggregate output tok/s at c4 - llama-server's (target >= 1.0×)\n\
         - MISS: worker: aggregate output tok/s at c8 - llama-server's (target >= 1.0×)\n\
         - PASS: worker: TTFT p50 at c4 1.80× its c1 (target <= 2.0×)\n\
         - PASS: worker: 0 errors in 8 requests (target 0)\n\
         - MISS: llama-server: 0 errors in 4 requests (target 0); no result at c4\n"
        ),
        "{stdout}"
    );
}

/// `verdict llama-cpp` over `dir` at `levels` on an AVX2 CPU (detected `avx2`), one round of a
/// 128-token prompt and 64 generated on 2 threads, with `extra` flags.
fn llama_cpp_args<'a>(
    dir: &'a std::path::Path,
    levels: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec!["verdict", "llama-cpp", "--dir", dir.to_str().unwrap()];
    args.extend([
        "--levels",
        levels,
        "--detected",
        "avx2",
        "--cpu",
        "AMD EPYC",
    ]);
    args.extend([
        "--commit",
        "abc1234",
        "--model-file",
        "m.gguf",
        "--threads",
        "2",
    ]);
    args.extend(["--rounds", "1", "--prompt", "128", "--generate", "64"]);
    args.extend(extra);
    args
}

/// `verdict scaling` over the results of one and of four workers.
fn scaling(one: &std::path::Path, four: &std::path::Path) -> Output {
    let (one, four) = (one.to_str().unwrap(), four.to_str().unwrap());
    coder_load(&["verdict", "scaling", "--one", one, "--four", four])
}

#[test]
fn prefix_reads_bench_sh_folders_and_misses_what_a_missing_run_cannot_show() {
    let out = tempfile::tempdir().unwrap();
    let run = |name: &str, json: &str| {
        let dir = out.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("result.json"), json).unwrap();
    };
    run(
        "multiturn-on",
        r#"{"follow_up_ttft_ms": {"p50": 500}, "errors": 0}"#,
    );
    run(
        "multiturn-off",
        r#"{"follow_up_ttft_ms": {"p50": 4000}, "errors": 0}"#,
    );
    run(
        "repo-context-on",
        r#"{"ttft_ms": {"p50": 600}, "errors": 0}"#,
    );
    run(
        "repo-context-off",
        r#"{"ttft_ms": {"p50": 6000}, "errors": 0}"#,
    );
    run(
        "distinct-on",
        r#"{"output_tokens_per_s": 9.9, "errors": 0}"#,
    );

    let dir = out.path().to_str().unwrap();
    let output = coder_load(&["verdict", "prefix", "--dir", dir]);

    assert_eq!(output.status.code(), Some(0));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("- PASS: multiturn follow-up TTFT p50 with the cache is 0.12×"),
        "{text}"
    );
    assert!(
        text.contains("- MISS: without shared prefixes the cache keeps -×"),
        "{text}"
    );
    assert!(text.contains("- MISS: every run left a result"), "{text}");
}
