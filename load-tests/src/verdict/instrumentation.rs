//! The instrumentation benchmark's verdict: the gateway's metrics recording costs under 3% of
//! its throughput, measured as runs with recording on against runs with it off; beside it, the
//! gateway's CPU per request on each side and the share of it that the recording
//! microbenchmark (`cargo bench -p metrics-common --bench recording`) accounts for.

use super::check::{Check, Verdict};
use super::figures::RunFigures;
use super::format::{decimals, mean, rounded};
use anyhow::Context;
use clap::Args;
use std::path::{Path, PathBuf};

/// Recording may cost at most this share of throughput, in percent (exclusive).
pub const COST_LIMIT_PERCENT: f64 = 3.0;
/// The file in each run's folder with the gateway's CPU time during the run, in clock ticks.
pub const CPU_TICKS_FILE: &str = "gateway_cpu_ticks";

/// `coder-load verdict instrumentation`.
#[derive(Debug, Clone, Args)]
pub struct InstrumentationArgs {
    /// The benchmark's folder, holding one `metrics-on-*` or `metrics-off-*` folder per run
    /// (result.json and gateway_cpu_ticks).
    #[arg(long, env = "CODER_LOAD_VERDICT_DIR")]
    pub dir: PathBuf,
    /// Warm-up requests per run: the gateway's CPU reading includes them.
    #[arg(long, env = "CODER_LOAD_VERDICT_WARMUP", default_value_t = 0)]
    pub warmup: u64,
    /// Clock ticks per second of the CPU readings (`getconf CLK_TCK`).
    #[arg(long, env = "CODER_LOAD_VERDICT_CLOCK_TICKS", default_value_t = 100)]
    pub clock_ticks: u64,
    /// The recording microbenchmark's output (its `cost:` line gives ns per request).
    #[arg(long, env = "CODER_LOAD_VERDICT_RECORDING")]
    pub recording: PathBuf,
}

/// One run's throughput and the gateway's CPU per request, in µs.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RunCost {
    pub rps: Option<f64>,
    pub cpu_us: Option<f64>,
}

impl RunCost {
    /// `ticks` of gateway CPU over the run's requests plus its warm-up requests.
    pub fn new(run: &RunFigures, ticks: Option<u64>, warmup: u64, clock_ticks: u64) -> Self {
        let handled = run.number(&["requests"]).map(|n| n + warmup as f64);
        let cpu_us = match (ticks, handled) {
            (Some(ticks), Some(handled)) if handled > 0.0 && clock_ticks > 0 => {
                Some(ticks as f64 * 1e6 / clock_ticks as f64 / handled)
            }
            _ => None,
        };
        Self {
            rps: run.number(&["throughput_rps"]),
            cpu_us,
        }
    }
}

/// One side's means over its runs, to 0.1 as printed.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Side {
    pub rps: Option<f64>,
    pub cpu_us: Option<f64>,
}

impl Side {
    pub fn of(runs: &[RunCost]) -> Self {
        let mean_of = |pick: fn(&RunCost) -> Option<f64>| {
            let values: Vec<f64> = runs.iter().filter_map(pick).collect();
            mean(&values).map(|m| rounded(m, 1))
        };
        Self {
            rps: mean_of(|run| run.rps),
            cpu_us: mean_of(|run| run.cpu_us),
        }
    }
}

/// Each side's runs, and the microbenchmark's output.
#[derive(Debug, Clone, Default)]
pub struct InstrumentationFigures {
    pub on: Vec<RunCost>,
    pub off: Vec<RunCost>,
    pub recording: String,
}

pub fn load(args: &InstrumentationArgs) -> anyhow::Result<InstrumentationFigures> {
    let recording = std::fs::read_to_string(&args.recording).unwrap_or_default();
    Ok(InstrumentationFigures {
        on: side_runs(args, "metrics-on-")?,
        off: side_runs(args, "metrics-off-")?,
        recording,
    })
}

/// The runs in `args.dir` whose folder name starts with `prefix` and that left a result.
fn side_runs(args: &InstrumentationArgs, prefix: &str) -> anyhow::Result<Vec<RunCost>> {
    let entries =
        std::fs::read_dir(&args.dir).with_context(|| format!("reading {}", args.dir.display()))?;
    let mut runs = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if !name.starts_with(prefix) {
            continue;
        }
        let run = RunFigures::load(&path)?;
        if run.present() {
            let ticks = cpu_ticks(&path);
            runs.push(RunCost::new(&run, ticks, args.warmup, args.clock_ticks));
        }
    }
    Ok(runs)
}

fn cpu_ticks(run_dir: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(run_dir.join(CPU_TICKS_FILE)).ok()?;
    text.trim().parse().ok()
}

/// ns per request from the microbenchmark's `cost:` line.
pub fn recording_ns(output: &str) -> Option<f64> {
    let line = output.lines().find(|line| line.starts_with("cost:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

pub fn verdict(figures: &InstrumentationFigures) -> Verdict {
    let (on, off) = (Side::of(&figures.on), Side::of(&figures.off));
    let cost = match (on.rps, off.rps) {
        (Some(on), Some(off)) if off > 0.0 => Some(rounded(100.0 * (off - on) / off, 1)),
        _ => None,
    };
    let share = match (recording_ns(&figures.recording), on.cpu_us) {
        (Some(ns), Some(us)) if us > 0.0 => Some(100.0 * ns / 1000.0 / us),
        _ => None,
    };
    let mut notes = vec![
        format!(
            "Mean throughput: on {} req/s, off {} req/s. Gateway CPU per request (all",
            decimals(on.rps, 1),
            decimals(off.rps, 1)
        ),
        format!(
            "threads, from /proc): on {} µs, off {} µs.",
            decimals(on.cpu_us, 1),
            decimals(off.cpu_us, 1)
        ),
        String::new(),
        "Recording one request's metrics (`cargo bench -p metrics-common --bench recording`, \
         one core):"
            .into(),
        String::new(),
    ];
    notes.extend(figures.recording.lines().map(|line| format!("    {line}")));
    notes.push(String::new());
    notes.push(format!(
        "That is {}% of the gateway's CPU per request.",
        decimals(share, 2)
    ));
    Verdict {
        notes,
        checks: vec![Check::new(
            format!(
                "metrics recording costs {}% of throughput (target < 3%)",
                decimals(cost, 1)
            ),
            cost.is_some_and(|cost| cost < COST_LIMIT_PERCENT),
        )],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const RECORDING: &str =
        "enabled:       612 ns per request\ncost:          551 ns per request\n";

    fn runs(rps: &[f64], cpu_us: f64) -> Vec<RunCost> {
        rps.iter()
            .map(|rps| RunCost {
                rps: Some(*rps),
                cpu_us: Some(cpu_us),
            })
            .collect()
    }

    fn figures(on: &[f64], off: &[f64]) -> InstrumentationFigures {
        InstrumentationFigures {
            on: runs(on, 92.8),
            off: runs(off, 91.2),
            recording: RECORDING.into(),
        }
    }

    #[test]
    fn a_cost_under_three_percent_passes() {
        let verdict = verdict(&figures(&[5000.0, 5112.0], &[4990.0, 4998.0]));
        assert_eq!(
            verdict.render(),
            "Mean throughput: on 5056.0 req/s, off 4994.0 req/s. Gateway CPU per request (all\n\
             threads, from /proc): on 92.8 µs, off 91.2 µs.\n\
             \n\
             Recording one request's metrics (`cargo bench -p metrics-common --bench recording`, \
             one core):\n\
             \n    enabled:       612 ns per request\n    cost:          551 ns per request\n\
             \n\
             That is 0.59% of the gateway's CPU per request.\n\
             \n\
             - PASS: metrics recording costs -1.2% of throughput (target < 3%)\n"
        );
    }

    #[test]
    fn a_cost_of_three_percent_or_more_misses() {
        let check = &verdict(&figures(&[970.0], &[1000.0])).checks[0];
        assert!(!check.pass);
        assert_eq!(
            check.text,
            "metrics recording costs 3.0% of throughput (target < 3%)"
        );
        assert!(verdict(&figures(&[971.0], &[1000.0])).checks[0].pass);
    }

    #[test]
    fn a_side_without_runs_has_no_cost_and_misses() {
        for (on, off) in [(&[][..], &[1000.0][..]), (&[1000.0][..], &[][..])] {
            let verdict = verdict(&figures(on, off));
            assert!(!verdict.checks[0].pass);
            assert_eq!(
                verdict.checks[0].text,
                "metrics recording costs -% of throughput (target < 3%)"
            );
        }
        let zero = verdict(&figures(&[0.0], &[0.0]));
        assert!(!zero.checks[0].pass);
    }

    #[test]
    fn cpu_per_request_counts_the_warmup_and_the_tick_length() {
        let run = RunFigures::from_json(json!({"requests": 800, "throughput_rps": 50.0}));
        let cost = RunCost::new(&run, Some(10), 200, 100);
        assert_eq!(cost.cpu_us, Some(100.0));
        assert_eq!(RunCost::new(&run, None, 200, 100).cpu_us, None);
        let idle = RunFigures::from_json(json!({"requests": 0}));
        assert_eq!(RunCost::new(&idle, Some(10), 0, 100).cpu_us, None);
    }

    #[test]
    fn the_recording_share_needs_the_cost_line_and_a_cpu_figure() {
        assert_eq!(recording_ns(RECORDING), Some(551.0));
        assert_eq!(recording_ns("error: no bench"), None);
        let mut figures = figures(&[1000.0], &[1000.0]);
        figures.recording = String::new();
        let notes = verdict(&figures).notes;
        assert_eq!(
            notes.last().unwrap(),
            "That is -% of the gateway's CPU per request."
        );
    }
}
