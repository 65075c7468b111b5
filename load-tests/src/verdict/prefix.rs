//! The prefix benchmark's verdict: the worker's prefix cache on against off, with the default
//! model, on the two shared-prefix workloads and on one without shared prefixes; and the
//! conversations with two workers, cache affinity on against off.
//!
//! Targets of issue 16 on the machine that runs it, ratios from one run: follow-up turns' TTFT
//! p50 with the cache ≤ 25% of the same run with the cache off; no loss of throughput on a
//! workload without shared prefixes (≥ 0.97× cache off); with two workers, the hit rate with
//! affinity ≥ 0.8× one worker's (without affinity it should fall to about half: shown, not
//! checked).

use super::check::{Check, Verdict};
use super::figures::RunFigures;
use super::format::{decimals, ratio, rounded};
use clap::Args;
use std::path::PathBuf;

/// Follow-up turns' TTFT p50 with the cache, at most this share of the cache off.
pub const FOLLOW_UP_TTFT_TARGET: f64 = 0.25;
/// Output tokens/s without shared prefixes, at least this share of the cache off.
pub const NO_SHARING_THROUGHPUT_TARGET: f64 = 0.97;
/// Two workers' hit rate with cache affinity, at least this share of one worker's.
pub const AFFINITY_HIT_RATE_TARGET: f64 = 0.8;

/// The two-worker conversation runs, under `--dir`: `<AFFINITY_RUNS>-on` and `-off`.
pub const AFFINITY_RUNS: &str = "multiturn-2-workers-affinity";

/// The runs, as bench.sh names their folders under `--dir`: each workload with the cache `on`
/// and `off`.
pub const WORKLOADS: [&str; 3] = ["multiturn", "repo-context", "distinct"];

/// `coder-load verdict prefix`.
#[derive(Debug, Clone, Args)]
pub struct PrefixArgs {
    /// The benchmark's folder, holding `<workload>-on` and `<workload>-off` run folders.
    #[arg(long, env = "CODER_LOAD_VERDICT_DIR")]
    pub dir: PathBuf,
}

/// One workload's pair of runs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pair {
    pub on: RunFigures,
    pub off: RunFigures,
}

/// What the benchmark ran: the pairs of [`WORKLOADS`], in that order (cache on and off), and
/// the two-worker conversations (affinity on and off).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PrefixRuns {
    pub cache: Vec<Pair>,
    pub affinity: Pair,
}

pub fn load(args: &PrefixArgs) -> anyhow::Result<PrefixRuns> {
    let pair = |name: &str| -> anyhow::Result<Pair> {
        Ok(Pair {
            on: RunFigures::load(&args.dir.join(format!("{name}-on")))?,
            off: RunFigures::load(&args.dir.join(format!("{name}-off")))?,
        })
    };
    Ok(PrefixRuns {
        cache: WORKLOADS
            .iter()
            .map(|w| pair(w))
            .collect::<anyhow::Result<_>>()?,
        affinity: pair(AFFINITY_RUNS)?,
    })
}

/// A run's hit rate: the workers' (hit tokens over looked-up tokens), else the usage's.
fn hit_rate(run: &RunFigures) -> Option<f64> {
    run.number(&["prefix_cache_hit_rate"])
        .or(run.number(&["cached_tokens_ratio"]))
}

/// A run's line in the notes: hit rate, TTFT (follow-ups for conversations), tokens/s.
fn describe(name: &str, run: &RunFigures, ttft: &str) -> String {
    format!(
        "{name}: hit rate {}, {ttft} TTFT p50 {} ms, p99 {} ms, aggregate {} output tok/s, errors {}.",
        decimals(hit_rate(run), 3),
        decimals(run.number(&[ttft_key(ttft), "p50"]), 0),
        decimals(run.number(&[ttft_key(ttft), "p99"]), 0),
        decimals(run.number(&["output_tokens_per_s"]), 2),
        decimals(run.number(&["errors"]), 0),
    )
}

fn ttft_key(ttft: &str) -> &'static str {
    match ttft {
        "follow-up" => "follow_up_ttft_ms",
        _ => "ttft_ms",
    }
}

pub fn verdict(runs: &PrefixRuns) -> Verdict {
    let pairs = &runs.cache;
    let [multiturn, repo, distinct] = [0, 1, 2].map(|i| pairs.get(i).cloned().unwrap_or_default());
    let mut notes = Vec::new();
    for (workload, pair, ttft) in [
        ("multiturn", &multiturn, "follow-up"),
        ("repo-context", &repo, "all"),
        ("distinct prompts", &distinct, "all"),
    ] {
        notes.push(describe(&format!("{workload}, cache on"), &pair.on, ttft));
        notes.push(describe(&format!("{workload}, cache off"), &pair.off, ttft));
    }
    let affinity = &runs.affinity;
    notes.push(describe(
        "multiturn, 2 workers, affinity on",
        &affinity.on,
        "follow-up",
    ));
    notes.push(describe(
        "multiturn, 2 workers, affinity off",
        &affinity.off,
        "follow-up",
    ));
    let kept_hits = ratio(hit_rate(&affinity.on), hit_rate(&multiturn.on)).map(|r| rounded(r, 2));
    let random_hits =
        ratio(hit_rate(&affinity.off), hit_rate(&multiturn.on)).map(|r| rounded(r, 2));
    notes.push(format!(
        "2 workers without affinity: hit rate {}× one worker's.",
        decimals(random_hits, 2)
    ));
    let follow_ups = |run: &RunFigures| run.number(&["follow_up_ttft_ms", "p50"]);
    let follow_up =
        ratio(follow_ups(&multiturn.on), follow_ups(&multiturn.off)).map(|r| rounded(r, 2));
    let repo_ttft = |run: &RunFigures| run.number(&["ttft_ms", "p50"]);
    let repo_ratio = ratio(repo_ttft(&repo.on), repo_ttft(&repo.off)).map(|r| rounded(r, 2));
    notes.push(format!(
        "repo-context TTFT p50 with the cache: {}× the cache off.",
        decimals(repo_ratio, 2)
    ));
    let tokens = |run: &RunFigures| run.number(&["output_tokens_per_s"]);
    let kept = ratio(tokens(&distinct.on), tokens(&distinct.off)).map(|r| rounded(r, 2));
    let every_pair = || pairs.iter().chain([affinity]);
    let errors: f64 = every_pair()
        .flat_map(|pair| [&pair.on, &pair.off])
        .map(|run| run.number(&["errors"]).unwrap_or(0.0))
        .sum();
    let all_present = pairs.len() == WORKLOADS.len()
        && every_pair().all(|pair| pair.on.present() && pair.off.present());
    Verdict {
        notes,
        checks: vec![
            Check::new(
                format!(
                    "multiturn follow-up TTFT p50 with the cache is {}× the cache off (target ≤ 0.25×)",
                    decimals(follow_up, 2)
                ),
                follow_up.is_some_and(|r| r <= FOLLOW_UP_TTFT_TARGET),
            ),
            Check::new(
                format!(
                    "without shared prefixes the cache keeps {}× the output tok/s (target ≥ 0.97×)",
                    decimals(kept, 2)
                ),
                kept.is_some_and(|r| r >= NO_SHARING_THROUGHPUT_TARGET),
            ),
            Check::new(
                format!(
                    "2 workers with cache affinity keep {}× one worker's hit rate (target ≥ 0.8×)",
                    decimals(kept_hits, 2)
                ),
                kept_hits.is_some_and(|r| r >= AFFINITY_HIT_RATE_TARGET),
            ),
            Check::new(
                format!("every run left a result, no errors ({errors} errors)"),
                all_present && errors == 0.0,
            ),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(follow_up_p50: f64, ttft_p50: f64, tokens_per_s: f64, hit_rate: f64) -> RunFigures {
        RunFigures::from_json(json!({
            "follow_up_ttft_ms": {"p50": follow_up_p50, "p99": follow_up_p50 * 2.0},
            "ttft_ms": {"p50": ttft_p50, "p99": ttft_p50 * 2.0},
            "output_tokens_per_s": tokens_per_s,
            "prefix_cache_hit_rate": hit_rate,
            "errors": 0,
        }))
    }

    fn runs(follow_up_on: f64, distinct_on_tokens: f64, affinity_hits: f64) -> PrefixRuns {
        PrefixRuns {
            cache: pairs(follow_up_on, distinct_on_tokens),
            affinity: Pair {
                on: run(900.0, 900.0, 10.0, affinity_hits),
                off: run(2000.0, 2000.0, 10.0, 0.4),
            },
        }
    }

    fn pairs(follow_up_on: f64, distinct_on_tokens: f64) -> Vec<Pair> {
        vec![
            Pair {
                on: run(follow_up_on, 900.0, 10.0, 0.8),
                off: run(4000.0, 5000.0, 8.0, 0.0),
            },
            Pair {
                on: run(0.0, 600.0, 10.0, 0.9),
                off: run(0.0, 6000.0, 8.0, 0.0),
            },
            Pair {
                on: run(0.0, 800.0, distinct_on_tokens, 0.0),
                off: run(0.0, 800.0, 10.0, 0.0),
            },
        ]
    }

    fn checks(verdict: &Verdict) -> Vec<bool> {
        verdict.checks.iter().map(|c| c.pass).collect()
    }

    #[test]
    fn fast_follow_ups_kept_throughput_and_kept_hits_pass() {
        let verdict = verdict(&runs(800.0, 9.9, 0.72));
        assert_eq!(checks(&verdict), [true, true, true, true]);
        let text = verdict.render();
        assert!(
            text.contains("follow-up TTFT p50 with the cache is 0.20×"),
            "{text}"
        );
        assert!(text.contains("keeps 0.99×"), "{text}");
        assert!(
            text.contains("2 workers with cache affinity keep 0.90× one worker's hit rate"),
            "{text}"
        );
        assert!(
            text.contains("2 workers without affinity: hit rate 0.50× one worker's"),
            "{text}"
        );
        assert!(text.contains("multiturn, cache on: hit rate 0.800, follow-up TTFT p50 800 ms"));
        assert!(
            text.contains("repo-context TTFT p50 with the cache: 0.10×"),
            "{text}"
        );
    }

    #[test]
    fn slow_follow_ups_lost_throughput_lost_hits_or_a_missing_run_miss() {
        assert_eq!(
            checks(&verdict(&runs(1100.0, 9.0, 0.6))),
            [false, false, false, true]
        );
        let mut missing = runs(800.0, 9.9, 0.72);
        missing.cache[1].off = RunFigures::missing();
        assert_eq!(checks(&verdict(&missing)), [true, true, true, false]);
        let mut no_affinity_run = runs(800.0, 9.9, 0.72);
        no_affinity_run.affinity.off = RunFigures::missing();
        assert_eq!(
            checks(&verdict(&no_affinity_run)),
            [true, true, true, false]
        );
    }
}
