//! The pipeline benchmark's verdict: the gateway against the FastAPI baseline measured in the
//! same run, at twice its throughput and a p99 under 10 ms, under `coder-load` and under the
//! baseline's own load generator, wrk.

use super::check::{Check, Verdict};
use super::figures::RunFigures;
use super::format::{decimals, plain, ratio};
use clap::Args;
use std::path::PathBuf;

/// The gateway must serve at least this many times the baseline's requests per second.
pub const THROUGHPUT_FACTOR: f64 = 2.0;
/// The gateway's p99 must stay under this, in milliseconds.
pub const P99_LIMIT_MS: f64 = 10.0;

/// `coder-load verdict pipeline`.
#[derive(Debug, Clone, Args)]
pub struct PipelineArgs {
    /// The FastAPI baseline under wrk (the folder holding its result.json).
    #[arg(long, env = "CODER_LOAD_VERDICT_BASELINE")]
    pub baseline: PathBuf,
    /// The gateway's closed-loop `coder-load` run at 16 connections.
    #[arg(long, env = "CODER_LOAD_VERDICT_CLOSED")]
    pub closed: PathBuf,
    /// The gateway under wrk.
    #[arg(long, env = "CODER_LOAD_VERDICT_WRK")]
    pub wrk: PathBuf,
}

/// The three runs the verdict compares.
#[derive(Debug, Clone, Default)]
pub struct PipelineRuns {
    pub baseline: RunFigures,
    pub closed: RunFigures,
    pub wrk: RunFigures,
}

pub fn load(args: &PipelineArgs) -> anyhow::Result<PipelineRuns> {
    Ok(PipelineRuns {
        baseline: RunFigures::load(&args.baseline)?,
        closed: RunFigures::load(&args.closed)?,
        wrk: RunFigures::load(&args.wrk)?,
    })
}

pub fn verdict(runs: &PipelineRuns) -> Verdict {
    let rps = |run: &RunFigures| run.number(&["throughput_rps"]);
    let p99 = |run: &RunFigures| run.number(&["latency_ms", "p99"]);
    let (base_rps, base_p99) = (rps(&runs.baseline), p99(&runs.baseline));
    let (closed_rps, closed_p99) = (rps(&runs.closed), p99(&runs.closed));
    let (wrk_rps, wrk_p99) = (rps(&runs.wrk), p99(&runs.wrk));
    let notes = vec![format!(
        "Measured baseline: {} req/s, p99 {} ms. Target: the gateway at 2× its req/s, p99 < 10 ms.",
        plain(base_rps),
        plain(base_p99)
    )];
    let checks = vec![
        Check::new(
            format!(
                "closed loop at 16 connections (coder-load): {} req/s{} (target ≥ 2×)",
                decimals(closed_rps, 1),
                versus_baseline(closed_rps, base_rps)
            ),
            fast_enough(closed_rps, base_rps),
        ),
        Check::new(
            format!(
                "closed loop p99 {} ms (target < 10 ms; FastAPI's p99 {} ms)",
                decimals(closed_p99, 1),
                plain(base_p99)
            ),
            quick_enough(closed_p99),
        ),
        Check::new(
            format!(
                "gateway under wrk, the baseline's own load generator: {} req/s{} (target ≥ 2×), \
                 p99 {} ms (target < 10 ms)",
                plain(wrk_rps),
                versus_baseline(wrk_rps, base_rps),
                plain(wrk_p99)
            ),
            fast_enough(wrk_rps, base_rps) && quick_enough(wrk_p99),
        ),
    ];
    Verdict { notes, checks }
}

/// At least [`THROUGHPUT_FACTOR`] times a measured (positive) baseline.
pub fn fast_enough(rps: Option<f64>, base_rps: Option<f64>) -> bool {
    match (rps, base_rps) {
        (Some(rps), Some(base)) => base > 0.0 && rps >= THROUGHPUT_FACTOR * base,
        _ => false,
    }
}

/// A p99 that was measured and is under [`P99_LIMIT_MS`].
pub fn quick_enough(p99: Option<f64>) -> bool {
    p99.is_some_and(|p99| p99 < P99_LIMIT_MS)
}

/// ` = N× the FastAPI baseline's R req/s`, or why there is no ratio.
fn versus_baseline(rps: Option<f64>, base_rps: Option<f64>) -> String {
    match base_rps.filter(|base| *base > 0.0) {
        Some(base) => format!(
            " = {:.2}× the FastAPI baseline's {} req/s",
            ratio(rps, Some(base)).unwrap_or(0.0),
            plain(Some(base))
        ),
        None => ", but no FastAPI baseline was measured (see failures.txt)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(rps: f64, p99: f64) -> RunFigures {
        RunFigures::from_json(json!({"throughput_rps": rps, "latency_ms": {"p99": p99}}))
    }

    fn runs(closed: RunFigures, wrk: RunFigures) -> PipelineRuns {
        PipelineRuns {
            baseline: run(2437.1, 37.654),
            closed,
            wrk,
        }
    }

    #[test]
    fn twice_the_baseline_and_a_low_p99_pass() {
        let verdict = verdict(&runs(run(5870.04, 5.63), run(5591.2, 6.812)));
        assert_eq!(
            verdict.render(),
            "Measured baseline: 2437.1 req/s, p99 37.654 ms. Target: the gateway at 2× its req/s, \
             p99 < 10 ms.\n\n\
             - PASS: closed loop at 16 connections (coder-load): 5870.0 req/s = 2.41× the FastAPI \
             baseline's 2437.1 req/s (target ≥ 2×)\n\
             - PASS: closed loop p99 5.6 ms (target < 10 ms; FastAPI's p99 37.654 ms)\n\
             - PASS: gateway under wrk, the baseline's own load generator: 5591.2 req/s = 2.29× \
             the FastAPI baseline's 2437.1 req/s (target ≥ 2×), p99 6.812 ms (target < 10 ms)\n"
        );
    }

    #[test]
    fn under_twice_the_baseline_misses() {
        let checks = verdict(&runs(run(4000.0, 5.0), run(4800.0, 5.0))).checks;
        assert!(!checks[0].pass, "{}", checks[0]);
        assert!(checks[1].pass, "{}", checks[1]);
        assert!(!checks[2].pass, "{}", checks[2]);
    }

    #[test]
    fn a_p99_of_ten_ms_or_more_misses() {
        let checks = verdict(&runs(run(6000.0, 10.0), run(6000.0, 12.5))).checks;
        assert!(checks[0].pass);
        assert!(!checks[1].pass, "{}", checks[1]);
        assert!(!checks[2].pass, "{}", checks[2]);
    }

    #[test]
    fn without_a_baseline_nothing_is_twice_it() {
        let mut runs = runs(run(6000.0, 5.0), run(6000.0, 5.0));
        runs.baseline = RunFigures::missing();
        let verdict = verdict(&runs);
        assert_eq!(
            verdict.notes[0],
            "Measured baseline: - req/s, p99 - ms. Target: the gateway at 2× its req/s, p99 < 10 ms."
        );
        assert!(!verdict.checks[0].pass);
        assert!(verdict.checks[0]
            .text
            .contains("6000.0 req/s, but no FastAPI baseline was measured (see failures.txt)"));
        assert!(verdict.checks[1].pass);
        assert!(!verdict.checks[2].pass);
    }

    #[test]
    fn a_zero_baseline_is_no_baseline() {
        assert!(!fast_enough(Some(1.0), Some(0.0)));
        assert!(!fast_enough(None, Some(100.0)));
        assert!(fast_enough(Some(200.0), Some(100.0)));
    }

    #[test]
    fn missing_gateway_runs_miss_every_target() {
        let verdict = verdict(&runs(RunFigures::missing(), RunFigures::missing()));
        assert!(verdict.checks.iter().all(|c| !c.pass));
        assert!(verdict.checks[0].text.starts_with(
            "closed loop at 16 connections (coder-load): - req/s = 0.00× the FastAPI baseline's"
        ));
        assert!(verdict.checks[1].text.starts_with("closed loop p99 - ms"));
    }
}
