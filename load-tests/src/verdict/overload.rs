//! The overload benchmark's verdict: at several times its capacity the stack sheds load with
//! 429s, keeps the accepted requests' p99 within what its backlog bound allows, answers no 5xx,
//! loses nothing, and keeps the gateway's memory bounded.
//!
//! The p99 bound: admission keeps at most `--max-pending` requests waiting, so an accepted one
//! waits at most for that backlog to drain at the rate requests were served, then takes about as
//! long as a request at capacity (whose p99 includes its own slot wait).

use super::check::{Check, Verdict};
use super::figures::RunFigures;
use super::format::{decimals, percent, rounded};
use super::rss::{mib, RssSamples};
use crate::cli::parse_seconds;
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

/// `coder-load verdict overload`.
#[derive(Debug, Clone, Args)]
pub struct OverloadArgs {
    /// The closed-loop run that measured capacity (the folder holding its result.json).
    #[arg(long, env = "CODER_LOAD_VERDICT_CAPACITY")]
    pub capacity: PathBuf,
    /// The open-loop run past capacity.
    #[arg(long, env = "CODER_LOAD_VERDICT_RUN")]
    pub run: PathBuf,
    /// The gateway's RSS samples during that run (`unix_time`, `vm_rss_kib`, tab-separated).
    #[arg(long, env = "CODER_LOAD_VERDICT_RSS")]
    pub rss: PathBuf,
    /// Connections of the capacity run.
    #[arg(long, env = "CODER_LOAD_VERDICT_CONNECTIONS")]
    pub connections: usize,
    /// Arrival rate of the overload run, in requests per second.
    #[arg(long, env = "CODER_LOAD_VERDICT_RATE")]
    pub rate: f64,
    /// Length of the overload run, in seconds.
    #[arg(long, env = "CODER_LOAD_VERDICT_DURATION", value_parser = parse_seconds)]
    pub duration: Duration,
    /// The gateway's `--max-pending-per-model`.
    #[arg(long, env = "CODER_LOAD_VERDICT_MAX_PENDING")]
    pub max_pending: u64,
    /// The most resident memory the gateway may reach, in MiB.
    #[arg(long, env = "CODER_LOAD_VERDICT_RSS_LIMIT_MIB", default_value_t = 512)]
    pub rss_limit_mib: u64,
}

/// What the verdict reads besides the arguments.
#[derive(Debug, Clone, Default)]
pub struct OverloadFigures {
    pub capacity: RunFigures,
    pub run: RunFigures,
    pub rss: RssSamples,
}

pub fn load(args: &OverloadArgs) -> anyhow::Result<OverloadFigures> {
    Ok(OverloadFigures {
        capacity: RunFigures::load(&args.capacity)?,
        run: RunFigures::load(&args.run)?,
        rss: RssSamples::load(&args.rss)?,
    })
}

/// The bound on an accepted request's p99 and its two parts, each to 0.1 ms as printed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct P99Bound {
    /// How long `max_pending` requests take to drain at the served rate.
    pub drain_ms: Option<f64>,
    /// `drain_ms` plus the p99 at capacity.
    pub bound_ms: Option<f64>,
}

impl P99Bound {
    pub fn new(max_pending: u64, served_rps: Option<f64>, capacity_p99: Option<f64>) -> Self {
        let drain_ms = served_rps
            .filter(|rps| *rps > 0.0)
            .map(|rps| rounded(1000.0 * max_pending as f64 / rps, 1));
        let bound_ms = drain_ms
            .zip(capacity_p99)
            .map(|(drain, p99)| rounded(drain + p99, 1));
        Self { drain_ms, bound_ms }
    }
}

pub fn verdict(args: &OverloadArgs, figures: &OverloadFigures) -> Verdict {
    let OverloadFigures { capacity, run, rss } = figures;
    let served_rps = run.number(&["throughput_rps"]);
    let capacity_p99 = capacity.number(&["latency_ms", "p99"]);
    let bound = P99Bound::new(args.max_pending, served_rps, capacity_p99);
    let rss_file = args.rss.file_name().unwrap_or_default().to_string_lossy();
    let notes = vec![
        format!(
            "Capacity (closed loop, {} connections): {} req/s; overload: Poisson arrivals at {} \
             req/s for {} s.",
            args.connections,
            decimals(capacity.number(&["throughput_rps"]), 1),
            args.rate,
            args.duration.as_secs_f64()
        ),
        format!(
            "Gateway VmRSS: {} MiB at the start, {} MiB peak, {} MiB at the end (samples in \
             {rss_file}).",
            mib(rss.first_kib),
            mib(rss.peak_kib),
            mib(rss.last_kib)
        ),
        format!(
            "Accepted p99 bound: at most {} requests wait (--max-pending-per-model), drained at \
             the served",
            args.max_pending
        ),
        format!(
            "{} req/s in {} ms, plus the p99 at capacity, {} ms: {} ms (the gateway's",
            decimals(served_rps, 1),
            decimals(bound.drain_ms, 1),
            decimals(capacity_p99, 1),
            decimals(bound.bound_ms, 1)
        ),
        "request timeout, 300 s by default, would only bound it far above).".into(),
    ];
    Verdict {
        notes,
        checks: checks(args, figures, bound),
    }
}

fn checks(args: &OverloadArgs, figures: &OverloadFigures, bound: P99Bound) -> Vec<Check> {
    let run = &figures.run;
    let requests = run.number(&["requests"]).unwrap_or(0.0);
    let rejected = run.errors_where(|status| status == "429");
    let server_errors = run.errors_where(|status| status.starts_with('5'));
    let accepted_p99 = run.number(&["latency_ms", "p99"]);
    let accounting = run.accounting_ok();
    let peak_kib = figures.rss.peak_kib;
    let share = percent(Some(rejected as f64), Some(requests), 1).unwrap_or(0.0);
    vec![
        Check::new(
            format!("429s: {rejected} of {requests} requests ({share:.1}%)"),
            rejected > 0,
        ),
        Check::new(
            format!(
                "accepted p99: {} ms (bound {} ms: backlog drain + p99 at capacity)",
                decimals(accepted_p99, 1),
                decimals(bound.bound_ms, 1)
            ),
            within(accepted_p99, bound.bound_ms),
        ),
        Check::new(
            format!("no 5xx ({server_errors})"),
            run.present() && server_errors == 0,
        ),
        Check::new(
            format!(
                "nothing lost (accounting against gateway and worker: {})",
                accounting.map_or_else(|| "null".into(), |ok| ok.to_string())
            ),
            accounting == Some(true),
        ),
        Check::new(
            format!(
                "gateway memory bounded: peak {} MiB (limit {} MiB)",
                mib(peak_kib),
                args.rss_limit_mib
            ),
            peak_kib > 0 && peak_kib <= args.rss_limit_mib * 1024,
        ),
    ]
}

/// A p99 that was measured and is under a bound that could be worked out.
fn within(p99: Option<f64>, bound: Option<f64>) -> bool {
    matches!((p99, bound), (Some(p99), Some(bound)) if p99 < bound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args() -> OverloadArgs {
        OverloadArgs {
            capacity: "3-overload/capacity".into(),
            run: "3-overload/overload-5x".into(),
            rss: "3-overload/gateway-rss.tsv".into(),
            connections: 16,
            rate: 474.0,
            duration: Duration::from_secs(20),
            max_pending: 64,
            rss_limit_mib: 512,
        }
    }

    fn figures(run: serde_json::Value) -> OverloadFigures {
        OverloadFigures {
            capacity: RunFigures::from_json(json!({
                "throughput_rps": 94.87, "latency_ms": {"p99": 205.3}
            })),
            run: RunFigures::from_json(run),
            rss: RssSamples {
                first_kib: 8 * 1024,
                peak_kib: 12 * 1024 + 100,
                last_kib: 10 * 1024,
            },
        }
    }

    fn shed_load() -> serde_json::Value {
        json!({
            "requests": 9480, "throughput_rps": 95.1, "latency_ms": {"p99": 753.04},
            "errors_by_status": {"429": 7584}, "accounting_ok": true
        })
    }

    fn check(run: serde_json::Value, index: usize) -> Check {
        verdict(&args(), &figures(run)).checks[index].clone()
    }

    #[test]
    fn a_stack_that_sheds_load_cleanly_passes_everything() {
        assert_eq!(
            verdict(&args(), &figures(shed_load())).render(),
            "Capacity (closed loop, 16 connections): 94.9 req/s; overload: Poisson arrivals at \
             474 req/s for 20 s.\n\
             Gateway VmRSS: 8 MiB at the start, 12 MiB peak, 10 MiB at the end (samples in \
             gateway-rss.tsv).\n\
             Accepted p99 bound: at most 64 requests wait (--max-pending-per-model), drained at \
             the served\n\
             95.1 req/s in 673.0 ms, plus the p99 at capacity, 205.3 ms: 878.3 ms (the gateway's\n\
             request timeout, 300 s by default, would only bound it far above).\n\n\
             - PASS: 429s: 7584 of 9480 requests (80.0%)\n\
             - PASS: accepted p99: 753.0 ms (bound 878.3 ms: backlog drain + p99 at capacity)\n\
             - PASS: no 5xx (0)\n\
             - PASS: nothing lost (accounting against gateway and worker: true)\n\
             - PASS: gateway memory bounded: peak 12 MiB (limit 512 MiB)\n"
        );
    }

    #[test]
    fn no_429s_misses() {
        let mut run = shed_load();
        run["errors_by_status"] = json!({});
        let check = check(run, 0);
        assert!(!check.pass);
        assert_eq!(check.text, "429s: 0 of 9480 requests (0.0%)");
    }

    #[test]
    fn a_p99_at_or_past_the_bound_misses() {
        let mut run = shed_load();
        run["latency_ms"]["p99"] = json!(878.3);
        assert!(!check(run.clone(), 1).pass);
        run["latency_ms"]["p99"] = json!(878.2);
        assert!(check(run, 1).pass);
    }

    #[test]
    fn without_a_served_rate_or_a_capacity_p99_there_is_no_bound() {
        assert_eq!(
            P99Bound::new(64, Some(0.0), Some(200.0)),
            P99Bound {
                drain_ms: None,
                bound_ms: None
            }
        );
        assert_eq!(P99Bound::new(64, Some(100.0), None).bound_ms, None);
        assert_eq!(P99Bound::new(64, Some(100.0), None).drain_ms, Some(640.0));
        let mut figures = figures(shed_load());
        figures.capacity = RunFigures::missing();
        let check = &verdict(&args(), &figures).checks[1];
        assert!(!check.pass);
        assert_eq!(
            check.text,
            "accepted p99: 753.0 ms (bound - ms: backlog drain + p99 at capacity)"
        );
    }

    #[test]
    fn a_5xx_misses() {
        let mut run = shed_load();
        run["errors_by_status"]["503"] = json!(2);
        run["errors_by_status"]["500"] = json!(1);
        let check = check(run, 2);
        assert!(!check.pass);
        assert_eq!(check.text, "no 5xx (3)");
    }

    #[test]
    fn failed_or_skipped_accounting_misses() {
        for (value, shown) in [(json!(false), "false"), (json!(null), "null")] {
            let mut run = shed_load();
            run["accounting_ok"] = value;
            let check = check(run, 3);
            assert!(!check.pass);
            assert!(
                check.text.ends_with(&format!("worker: {shown})")),
                "{check}"
            );
        }
    }

    #[test]
    fn memory_past_the_limit_or_never_sampled_misses() {
        let mut over = figures(shed_load());
        over.rss.peak_kib = 512 * 1024 + 1;
        assert!(!verdict(&args(), &over).checks[4].pass);
        let mut at = figures(shed_load());
        at.rss.peak_kib = 512 * 1024;
        assert!(verdict(&args(), &at).checks[4].pass);
        let mut none = figures(shed_load());
        none.rss = RssSamples::default();
        assert!(!verdict(&args(), &none).checks[4].pass);
    }

    #[test]
    fn a_run_that_left_no_result_misses_every_target() {
        let mut figures = figures(json!({}));
        figures.run = RunFigures::missing();
        figures.rss = RssSamples::default();
        let verdict = verdict(&args(), &figures);
        assert!(verdict.checks.iter().all(|c| !c.pass), "{verdict:?}");
        assert_eq!(verdict.checks[0].text, "429s: 0 of 0 requests (0.0%)");
        assert!(verdict.notes[3].starts_with("- req/s in - ms"));
    }
}
