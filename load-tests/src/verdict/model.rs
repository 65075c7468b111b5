//! The model benchmark's notes: each run's per-request decode speed. The real model has no
//! target here (its speed is the machine's); llama-cpp's verdict compares it with llama.cpp.

use super::check::Verdict;
use super::figures::RunFigures;
use super::format::decimals;
use anyhow::Context;
use clap::Args;

/// `coder-load verdict model`.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// Runs as `LABEL=DIR`, DIR the folder holding the run's result.json.
    #[arg(required = true)]
    pub runs: Vec<String>,
}

pub fn load(args: &ModelArgs) -> anyhow::Result<Vec<(String, RunFigures)>> {
    args.runs
        .iter()
        .map(|spec| {
            let (label, dir) = spec
                .split_once('=')
                .with_context(|| format!("`{spec}` is not LABEL=DIR"))?;
            Ok((label.to_owned(), RunFigures::load(dir.as_ref())?))
        })
        .collect()
}

pub fn verdict(runs: &[(String, RunFigures)]) -> Verdict {
    let speeds: Vec<String> = runs
        .iter()
        .map(|(label, run)| {
            format!(
                "{label} {}",
                decimals(run.number(&["tokens_per_s", "p50"]), 1)
            )
        })
        .collect();
    Verdict {
        notes: vec![format!(
            "Per-request decode speed (tokens/s after the first token), p50: {}.",
            speeds.join(", ")
        )],
        checks: vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_run_shows_its_median_decode_speed() {
        let runs = vec![
            (
                "model-c1".to_owned(),
                RunFigures::from_json(json!({"tokens_per_s": {"p50": 38.27}})),
            ),
            ("model-c4".to_owned(), RunFigures::missing()),
        ];
        assert_eq!(
            verdict(&runs).render(),
            "Per-request decode speed (tokens/s after the first token), p50: model-c1 38.3, \
             model-c4 -.\n\n"
        );
    }

    #[test]
    fn a_run_is_named_label_equals_folder() {
        let args = ModelArgs {
            runs: vec!["no-equals-sign".into()],
        };
        assert!(load(&args).is_err());
    }
}
