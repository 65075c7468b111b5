//! `CODER_CPU_KERNELS` through the real binary: `gpu-worker bench` on the default model reports
//! the level it ran, takes every level this CPU has, and refuses a level it lacks or a name
//! that is none, before reading any weight. Without the model file these tests print a notice
//! and pass; the project's test command fetches it first.

use std::path::PathBuf;
use std::process::{Command, Output};

fn model_path() -> Option<PathBuf> {
    let file = "../models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf";
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(file);
    match path.is_file() {
        true => Some(path),
        false => {
            eprintln!("NOTICE: {} is absent; skipping", path.display());
            None
        }
    }
}

/// A short bench at `level`, its report as JSON on success.
fn bench(model: &PathBuf, level: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gpu-worker"))
        .args([
            "bench",
            "--prompt-tokens",
            "16",
            "--max-tokens",
            "2",
            "--runs",
            "1",
        ])
        .arg("--json")
        .arg("--model-path")
        .arg(model)
        .env("CODER_CPU_KERNELS", level)
        .output()
        .expect("gpu-worker runs")
}

/// The levels this CPU has, as `/proc/cpuinfo` tells them (independently of the code under
/// test).
fn cpu_has(flags: &[&str]) -> bool {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let line = info.lines().find(|l| l.starts_with("flags")).unwrap_or("");
    let have: Vec<&str> = line.split_whitespace().collect();
    flags.iter().all(|flag| have.contains(flag))
}

#[test]
fn every_level_this_cpu_has_runs_and_is_reported() {
    let Some(model) = model_path() else { return };
    let avx2 = ["avx2", "fma", "f16c"];
    let avx512 = [
        "avx2",
        "fma",
        "f16c",
        "avx512f",
        "avx512bw",
        "avx512vl",
        "avx512_vnni",
    ];
    let avx_vnni = ["avx2", "fma", "f16c", "avx_vnni"];
    let levels = [
        ("generic", true),
        ("avx2", cpu_has(&avx2)),
        ("avxvnni", cpu_has(&avx_vnni)),
        ("avx512vnni", cpu_has(&avx512)),
    ];
    for (level, available) in levels {
        let output = bench(&model, level);
        let stderr = String::from_utf8_lossy(&output.stderr);
        if available {
            assert!(output.status.success(), "{level}: {stderr}");
            let report: serde_json::Value = serde_json::from_slice(&output.stdout)
                .unwrap_or_else(|e| panic!("{level}: the report is JSON ({e})"));
            assert_eq!(report["cpu_kernels"], level, "{report}");
            assert!(report["decode_tokens_per_second"].as_f64().unwrap() > 0.0);
        } else {
            assert!(!output.status.success(), "{level} ran on a CPU without it");
            assert!(
                stderr.contains("CODER_CPU_KERNELS") && stderr.contains("lacks"),
                "{level}: {stderr}"
            );
        }
    }
}

#[test]
fn a_name_that_is_no_level_is_refused_with_the_names() {
    let Some(model) = model_path() else { return };
    let output = bench(&model, "sse9");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("CODER_CPU_KERNELS=sse9")
            && stderr.contains("generic, avx2, avxvnni, avx512vnni"),
        "{stderr}"
    );
}
