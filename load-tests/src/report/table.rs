//! The plain-text table printed at the end of a run.

use crate::result::RunResult;
use crate::stats::Summary;
use std::fmt::Write;

/// The shared-prefix figures: the cached share of prompt tokens, the workers' hit rate, and
/// with conversations one line per turn (TTFT of streamed requests, else latency).
fn prefix_lines(result: &RunResult) -> String {
    let mut out = String::new();
    let percent =
        |ratio: Option<f64>| ratio.map_or("-".to_owned(), |r| format!("{:.1}%", r * 100.0));
    if result.cached_tokens_ratio.is_some() || result.prefix_cache_hit_rate.is_some() {
        let _ = writeln!(
            out,
            "workload {}: cached prompt tokens {} (usage), workers' prefix cache hit rate {}",
            result.settings.workload,
            percent(result.cached_tokens_ratio),
            percent(result.prefix_cache_hit_rate)
        );
    }
    for turn in &result.turns {
        let (what, summary) = match turn.ttft_ms.count {
            0 => ("latency", &turn.latency_ms),
            _ => ("ttft", &turn.ttft_ms),
        };
        let _ = writeln!(
            out,
            "turn {:<3} {} ok of {}: {what} ms p50 {} p99 {}, prompt tokens p50 {}, cached {}",
            turn.turn,
            turn.successes,
            turn.requests,
            num(summary.p50),
            num(summary.p99),
            num(turn.prompt_tokens.p50),
            percent(turn.cached_tokens_ratio)
        );
    }
    out
}

pub fn render(result: &RunResult) -> String {
    let s = &result.settings;
    let mut out = String::new();
    let shape = match (s.concurrency, s.rate) {
        (Some(c), _) => format!("closed loop, {c} connections"),
        (_, Some(r)) => format!("open loop, {r} req/s (Poisson)"),
        _ => String::from("?"),
    };
    let stream = if s.stream { ", streaming" } else { "" };
    let _ = writeln!(
        out,
        "{}: {shape}, {} {}{stream}, model {}, max_tokens {}",
        s.label,
        s.url,
        s.endpoint,
        s.model,
        max_tokens_setting(result)
    );
    let _ = writeln!(
        out,
        "{:<16}{:>10}{:>10}{:>10}{:>10}{:>10}{:>9}",
        "", "p50", "p90", "p99", "max", "mean", "n"
    );
    let no_spread = Summary::default();
    let asked = match s.max_tokens.is_fixed() {
        true => &no_spread,
        false => &result.requested_max_tokens,
    };
    let rows: [(&str, &Summary); 7] = [
        ("latency ms", &result.latency_ms),
        ("ttft ms", &result.ttft_ms),
        ("itl ms", &result.itl_ms),
        ("tokens/s/req", &result.tokens_per_s),
        ("prompt tokens", &result.prompt_tokens),
        ("output tokens", &result.output_tokens),
        ("max_tokens asked", asked),
    ];
    for (name, summary) in rows.into_iter().filter(|(_, s)| s.count > 0) {
        let _ = writeln!(
            out,
            "{name:<16}{:>10}{:>10}{:>10}{:>10}{:>10}{:>9}",
            num(summary.p50),
            num(summary.p90),
            num(summary.p99),
            num(summary.max),
            num(summary.mean),
            summary.count
        );
    }
    let _ = writeln!(
        out,
        "requests {} (ok {}, errors {}){} in {:.2} s: {:.1} ok/s, {:.1} req/s, {:.1} output tok/s",
        result.requests,
        result.successes,
        result.errors,
        match result.skipped {
            0 => String::new(),
            n => format!(" plus {n} arrivals skipped, not sent (--max-in-flight reached)"),
        },
        result.duration_s,
        result.throughput_rps,
        result.requests_rps,
        result.output_tokens_per_s
    );
    out.push_str(&prefix_lines(result));
    if !result.errors_by_status.is_empty() {
        let errors: Vec<String> = result
            .errors_by_status
            .iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect();
        let _ = writeln!(out, "errors by status: {}", errors.join(", "));
    }
    out.push_str(&accounting_line(result));
    out
}

/// `16`, or `16..256 (uniform, length seed 7)`.
pub fn max_tokens_setting(result: &RunResult) -> String {
    let s = &result.settings;
    match s.length_seed {
        Some(seed) if !s.max_tokens.is_fixed() => {
            format!("{} (uniform, length seed {seed})", s.max_tokens)
        }
        _ => s.max_tokens.to_string(),
    }
}

fn accounting_line(result: &RunResult) -> String {
    let accounting = &result.accounting;
    match accounting.verdict() {
        None => "accounting: skipped\n".to_owned(),
        Some(true) => {
            let counted = accounting.codes.iter().fold(0.0, |sum, c| sum + c.gateway);
            format!(
                "accounting: ok ({} sent, {} outcomes, gateway counted {counted})\n",
                accounting.client.sent, accounting.client.terminal
            )
        }
        Some(false) => {
            let mut line = String::from("accounting: FAILED\n");
            for problem in &accounting.problems {
                let _ = writeln!(line, "  - {problem}");
            }
            line
        }
    }
}

/// A figure with precision fitting its size; `-` when absent.
pub fn num(value: Option<f64>) -> String {
    match value {
        None => "-".to_owned(),
        Some(v) if v.abs() >= 1000.0 => format!("{v:.0}"),
        Some(v) if v.abs() >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.3}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_keep_a_readable_precision() {
        assert_eq!(num(None), "-");
        assert_eq!(num(Some(0.1234)), "0.123");
        assert_eq!(num(Some(12.345)), "12.3");
        assert_eq!(num(Some(12345.6)), "12346");
    }
}
