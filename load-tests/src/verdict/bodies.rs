//! The bodies benchmark's verdict: clients sending large adversarial bodies (a list of 1.4
//! million empty objects, 4 MiB each, just under the body limit) beside a normal load. Every adversarial body
//! is answered 400, the normal requests all succeed, and the gateway's peak resident memory stays
//! within the limit (64 MiB by default).

use super::check::{Check, Verdict};
use super::figures::RunFigures;
use super::format::decimals;
use super::rss::mib;
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;

/// `coder-load verdict bodies`.
#[derive(Debug, Clone, Args)]
pub struct BodiesArgs {
    /// The normal load's folder (its result.json).
    #[arg(long)]
    pub run: PathBuf,
    /// Files of the HTTP statuses the adversarial clients got, one per line.
    #[arg(long, required = true, num_args = 1..)]
    pub statuses: Vec<PathBuf>,
    /// The gateway's peak resident memory (VmHWM) at the end, in KiB.
    #[arg(long)]
    pub peak_rss: PathBuf,
    /// The adversarial body's size, in bytes.
    #[arg(long)]
    pub body_bytes: u64,
    /// Seconds the adversarial clients sent for.
    #[arg(long)]
    pub duration: u64,
    /// The peak RSS target, in MiB.
    #[arg(long, default_value_t = 64)]
    pub rss_limit_mib: u64,
}

/// What the benchmark left.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BodiesFigures {
    pub run: RunFigures,
    /// Every status the adversarial clients got.
    pub statuses: Vec<String>,
    /// `None` when the gateway left no figure.
    pub peak_rss_kib: Option<u64>,
}

pub fn load(args: &BodiesArgs) -> anyhow::Result<BodiesFigures> {
    let mut statuses = Vec::new();
    for path in &args.statuses {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        statuses.extend(
            text.lines()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from),
        );
    }
    let peak_rss_kib = std::fs::read_to_string(&args.peak_rss)
        .ok()
        .and_then(|text| text.trim().parse().ok());
    Ok(BodiesFigures {
        run: RunFigures::load(&args.run)?,
        statuses,
        peak_rss_kib,
    })
}

pub fn verdict(args: &BodiesArgs, figures: &BodiesFigures) -> Verdict {
    let BodiesFigures {
        run,
        statuses,
        peak_rss_kib,
    } = figures;
    let clients = args.statuses.len();
    let refused = statuses.iter().filter(|s| *s == "400").count();
    let other = statuses.len() - refused;
    let errors = run.errors_where(|_| true);
    let requests = run.number(&["requests"]);
    let peak = peak_rss_kib.map(mib);
    let notes = vec![
        format!(
            "{clients} clients sent {} adversarial bodies of {} MiB in {} s ({refused} answered \
             400, {other} otherwise), beside a normal load of {} requests.",
            statuses.len(),
            decimals(Some(args.body_bytes as f64 / 1_048_576.0), 1),
            args.duration,
            decimals(requests, 0)
        ),
        format!(
            "Gateway peak resident memory (VmHWM, the whole process life): {} MiB.",
            peak.map_or_else(|| "-".into(), |mib| mib.to_string())
        ),
    ];
    let checks = vec![
        Check::new(
            format!(
                "every adversarial body answered 400 ({refused} of {})",
                statuses.len()
            ),
            !statuses.is_empty() && other == 0,
        ),
        Check::new(
            format!("no normal request failed ({errors} failed)"),
            run.present() && requests.is_some_and(|n| n > 0.0) && errors == 0,
        ),
        Check::new(
            format!(
                "gateway peak RSS {} MiB (target <= {} MiB)",
                peak.map_or_else(|| "-".into(), |mib| mib.to_string()),
                args.rss_limit_mib
            ),
            peak.is_some_and(|mib| mib <= args.rss_limit_mib),
        ),
    ];
    Verdict { notes, checks }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args() -> BodiesArgs {
        BodiesArgs {
            run: "normal".into(),
            statuses: vec!["a".into(), "b".into()],
            peak_rss: "rss".into(),
            body_bytes: 4 << 20,
            duration: 10,
            rss_limit_mib: 64,
        }
    }

    fn figures(statuses: &[&str], errors: u64, peak_kib: Option<u64>) -> BodiesFigures {
        BodiesFigures {
            run: RunFigures::from_json(json!({
                "requests": 120, "errors_by_status": if errors > 0 { json!({"503": errors}) } else { json!({}) }
            })),
            statuses: statuses.iter().map(|s| s.to_string()).collect(),
            peak_rss_kib: peak_kib,
        }
    }

    fn passes(figures: &BodiesFigures) -> Vec<bool> {
        verdict(&args(), figures)
            .checks
            .iter()
            .map(|c| c.pass)
            .collect()
    }

    #[test]
    fn refused_bodies_served_requests_and_bounded_memory_pass() {
        let figures = figures(&["400", "400", "400"], 0, Some(40 * 1024));
        let text = verdict(&args(), &figures).render();
        assert!(text.starts_with(
            "2 clients sent 3 adversarial bodies of 4.0 MiB in 10 s (3 answered 400, 0 \
             otherwise), beside a normal load of 120 requests.\n"
        ));
        assert!(text.ends_with(
            "- PASS: every adversarial body answered 400 (3 of 3)\n\
             - PASS: no normal request failed (0 failed)\n\
             - PASS: gateway peak RSS 40 MiB (target <= 64 MiB)\n"
        ));
    }

    #[test]
    fn each_failure_misses_its_own_target() {
        assert_eq!(
            passes(&figures(&["400", "413"], 0, Some(1024))),
            [false, true, true]
        );
        assert_eq!(passes(&figures(&[], 0, Some(1024))), [false, true, true]);
        assert_eq!(
            passes(&figures(&["400"], 2, Some(1024))),
            [true, false, true]
        );
        assert_eq!(
            passes(&figures(&["400"], 0, Some(65 * 1024))),
            [true, true, false]
        );
        assert_eq!(passes(&figures(&["400"], 0, None)), [true, true, false]);
        let mut no_run = figures(&["400"], 0, Some(1024));
        no_run.run = RunFigures::missing();
        assert_eq!(passes(&no_run), [true, false, true]);
    }
}
