//! The scaling benchmark's verdict: four synthetic workers serve at least 3.6 times what one
//! does.

use super::check::{Check, Verdict};
use super::figures::RunFigures;
use super::format::{decimals, ratio, rounded};
use clap::Args;
use std::path::PathBuf;

/// Four workers must give at least this many times one worker's throughput.
pub const TARGET_RATIO: f64 = 3.6;

/// `coder-load verdict scaling`.
#[derive(Debug, Clone, Args)]
pub struct ScalingArgs {
    /// The run against one worker (the folder holding its result.json).
    #[arg(long, env = "CODER_LOAD_VERDICT_ONE")]
    pub one: PathBuf,
    /// The run against four workers.
    #[arg(long, env = "CODER_LOAD_VERDICT_FOUR")]
    pub four: PathBuf,
}

pub fn load(args: &ScalingArgs) -> anyhow::Result<(RunFigures, RunFigures)> {
    Ok((RunFigures::load(&args.one)?, RunFigures::load(&args.four)?))
}

pub fn verdict(one: &RunFigures, four: &RunFigures) -> Verdict {
    let rps = |run: &RunFigures| run.number(&["throughput_rps"]);
    let scaled = ratio(rps(four), rps(one)).map(|r| rounded(r, 2));
    Verdict {
        notes: vec![],
        checks: vec![Check::new(
            format!(
                "4 workers give {}× one worker (target ≥ 3.6×)",
                decimals(scaled, 2)
            ),
            scaled.is_some_and(|r| r >= TARGET_RATIO),
        )],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(rps: f64) -> RunFigures {
        RunFigures::from_json(json!({ "throughput_rps": rps }))
    }

    #[test]
    fn near_linear_scaling_passes() {
        let verdict = verdict(&run(12.2), &run(48.4));
        assert_eq!(
            verdict.render(),
            "- PASS: 4 workers give 3.97× one worker (target ≥ 3.6×)\n"
        );
    }

    #[test]
    fn poor_scaling_misses() {
        let verdict = verdict(&run(12.0), &run(40.0));
        assert_eq!(
            verdict.render(),
            "- MISS: 4 workers give 3.33× one worker (target ≥ 3.6×)\n"
        );
    }

    #[test]
    fn the_ratio_is_judged_as_printed() {
        // 3.596 prints as 3.60, and 3.60 meets the target.
        assert!(verdict(&run(1.0), &run(3.596)).checks[0].pass);
        assert!(!verdict(&run(1.0), &run(3.594)).checks[0].pass);
    }

    #[test]
    fn a_missing_or_idle_worker_run_misses() {
        for (one, four) in [
            (RunFigures::missing(), run(40.0)),
            (run(12.0), RunFigures::missing()),
            (run(0.0), run(40.0)),
        ] {
            let check = &verdict(&one, &four).checks[0];
            assert!(!check.pass);
            assert_eq!(check.text, "4 workers give -× one worker (target ≥ 3.6×)");
        }
    }
}
