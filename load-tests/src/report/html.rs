//! `report.html`: one self-contained page (inline CSS and SVG, no scripts) per run.

use super::plots;
use super::table::num;
use crate::record::RequestRecord;
use crate::result::RunResult;
use crate::stats::Summary;
use std::fmt::Write;

const STYLE: &str = "body{font-family:sans-serif;margin:2em;max-width:900px;color:#222}\
table{border-collapse:collapse;margin:.5em 0 1.5em}\
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}\
th:first-child,td:first-child{text-align:left}\
.ok{color:#1a7f37;font-weight:bold}.bad{color:#b42318;font-weight:bold}\
figure{margin:1em 0}";

pub fn render(result: &RunResult, records: &[RequestRecord]) -> anyhow::Result<String> {
    let ms = |f: fn(&RequestRecord) -> Option<std::time::Duration>| -> Vec<f64> {
        records
            .iter()
            .filter(|r| r.is_ok())
            .filter_map(f)
            .map(|d| d.as_secs_f64() * 1e3)
            .collect()
    };
    let latencies = ms(|r| Some(r.latency));
    let ttfts = ms(|r| r.ttft);
    let mut charts = vec![
        plots::histogram(&latencies, "End-to-end latency of successes", "latency ms")?,
        plots::latency_over_time(&result.timeline)?,
        plots::throughput_over_time(&result.timeline)?,
    ];
    if !ttfts.is_empty() {
        charts.push(plots::histogram(&ttfts, "Time to first token", "ttft ms")?);
    }
    let s = &result.settings;
    let mut page = String::new();
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>coder-load: {label}</title>\
         <style>{STYLE}</style></head><body>\n<h1>coder-load: {label}</h1>\n",
        label = escape(&s.label)
    );
    page.push_str(&settings_table(result));
    page.push_str(&summary_table(result));
    page.push_str(&turns_table(result));
    page.push_str(&errors_table(result));
    page.push_str(&accounting_section(result));
    page.push_str("<h2>Charts</h2>\n");
    for svg in charts {
        let _ = writeln!(page, "<figure>{svg}</figure>");
    }
    page.push_str("</body></html>\n");
    Ok(page)
}

fn settings_table(result: &RunResult) -> String {
    let s = &result.settings;
    let shape = match (s.concurrency, s.rate) {
        (Some(c), _) => format!("closed loop, {c} connections"),
        (_, Some(r)) => format!(
            "open loop, {r} req/s Poisson (seed {})",
            s.arrival_seed.unwrap_or(0)
        ),
        _ => "?".to_owned(),
    };
    let bound = match (s.requested_requests, s.requested_duration_s) {
        (Some(n), _) => format!("{n} requests"),
        (_, Some(d)) => format!("{d} s"),
        _ => "?".to_owned(),
    };
    let rows = [
        ("started", result.started_at.clone()),
        ("target", format!("{} {}", s.url, s.endpoint)),
        ("model", s.model.clone()),
        ("load", shape),
        ("bound", bound),
        ("stream", s.stream.to_string()),
        ("max_tokens", super::table::max_tokens_setting(result)),
        ("duration", format!("{:.2} s", result.duration_s)),
    ];
    let mut html = String::from("<table>\n");
    for (key, value) in rows {
        let _ = writeln!(html, "<tr><th>{key}</th><td>{}</td></tr>", escape(&value));
    }
    html.push_str("</table>\n");
    html
}

fn summary_table(result: &RunResult) -> String {
    let mut html = format!(
        "<h2>Results</h2>\n<p>{} requests: {} ok, {} errors{}. Throughput {:.1} ok/s ({:.1} req/s \
         all outcomes), {:.1} output tokens/s.</p>\n<table>\n<tr><th></th><th>p50</th><th>p90</th>\
         <th>p99</th><th>max</th><th>mean</th><th>n</th></tr>\n",
        result.requests,
        result.successes,
        result.errors,
        match result.skipped {
            0 => String::new(),
            n => format!(", and {n} arrivals skipped, not sent (too many in flight)"),
        },
        result.throughput_rps,
        result.requests_rps,
        result.output_tokens_per_s
    );
    let rows: [(&str, &Summary); 7] = [
        ("latency ms", &result.latency_ms),
        ("time to first token ms", &result.ttft_ms),
        ("inter-token latency ms", &result.itl_ms),
        ("tokens/s per request", &result.tokens_per_s),
        ("prompt tokens", &result.prompt_tokens),
        ("output tokens", &result.output_tokens),
        ("max_tokens asked", &result.requested_max_tokens),
    ];
    for (name, s) in rows {
        let _ = writeln!(
            html,
            "<tr><td>{name}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            num(s.p50),
            num(s.p90),
            num(s.p99),
            num(s.max),
            num(s.mean),
            s.count
        );
    }
    html.push_str("</table>\n");
    html
}

/// The shared-prefix figures and, for conversations, one row per turn.
fn turns_table(result: &RunResult) -> String {
    let percent =
        |ratio: Option<f64>| ratio.map_or("-".to_owned(), |r| format!("{:.1}%", r * 100.0));
    let mut html = String::new();
    if result.cached_tokens_ratio.is_none() && result.turns.is_empty() {
        return html;
    }
    let _ = writeln!(
        html,
        "<h2>Shared prefixes ({})</h2>\n<p>Cached prompt tokens (usage): {}; the workers' prefix \
         cache hit rate: {}.</p>",
        escape(&result.settings.workload),
        percent(result.cached_tokens_ratio),
        percent(result.prefix_cache_hit_rate)
    );
    if result.turns.is_empty() {
        return html;
    }
    html.push_str(
        "<table>\n<tr><th>turn</th><th>ok / sent</th><th>ttft p50 ms</th><th>ttft p99 ms</th>\
         <th>latency p50 ms</th><th>prompt tokens p50</th><th>cached</th></tr>\n",
    );
    for turn in &result.turns {
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td>{} / {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            turn.turn,
            turn.successes,
            turn.requests,
            num(turn.ttft_ms.p50),
            num(turn.ttft_ms.p99),
            num(turn.latency_ms.p50),
            num(turn.prompt_tokens.p50),
            percent(turn.cached_tokens_ratio)
        );
    }
    html.push_str("</table>\n");
    html
}

fn errors_table(result: &RunResult) -> String {
    let mut html = String::from(
        "<h2>Responses by status</h2>\n<table>\n<tr><th>status</th><th>requests</th></tr>\n",
    );
    for (status, n) in &result.status_counts {
        let _ = writeln!(html, "<tr><td>{}</td><td>{n}</td></tr>", escape(status));
    }
    html.push_str("</table>\n");
    if !result.errors_by_status.is_empty() {
        html.push_str("<table>\n<tr><th>error</th><th>requests</th></tr>\n");
        for (key, n) in &result.errors_by_status {
            let _ = writeln!(html, "<tr><td>{}</td><td>{n}</td></tr>", escape(key));
        }
        html.push_str("</table>\n");
    }
    html
}

fn accounting_section(result: &RunResult) -> String {
    let accounting = &result.accounting;
    let verdict = match accounting.verdict() {
        None => "<span>skipped</span>".to_owned(),
        Some(true) => "<span class=\"ok\">ok</span>".to_owned(),
        Some(false) => "<span class=\"bad\">FAILED</span>".to_owned(),
    };
    let client = &accounting.client;
    let mut html = format!(
        "<h2>Accounting: {verdict}</h2>\n<p>{} requests sent, {} terminal outcomes, {} without a \
         response.</p>\n",
        client.sent, client.terminal, client.no_response
    );
    if !accounting.codes.is_empty() {
        html.push_str("<table>\n<tr><th>code</th><th>client</th><th>gateway counted</th></tr>\n");
        for row in &accounting.codes {
            let _ = writeln!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&row.code),
                row.client,
                row.gateway
            );
        }
        html.push_str("</table>\n");
    }
    if let Some(workers) = &accounting.worker_outcomes {
        let outcomes: Vec<String> = workers.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(
            html,
            "<p>Worker outcomes: {}</p>",
            escape(&outcomes.join(", "))
        );
    }
    if let Some(check) = &accounting.worker_check {
        let (e, f) = (&check.expected, &check.fates);
        let range = |b: crate::accounting::Bounds| format!("{}–{}", b.min, b.max);
        let _ = writeln!(
            html,
            "<p>Allowed by the client's answers ({} successes, {} 500/504/stream errors, {} other \
             broken 2xx, {} 400s, {} 503s/other codes/no response, {} never queued; {} \
             redeliveries): completed {}, cancelled/expired/failed {}, all {}.</p>",
            f.completed,
            f.failed,
            f.ended,
            f.maybe_failed,
            f.unknown,
            f.not_queued,
            check.redeliveries,
            range(e.completed),
            range(e.otherwise),
            range(e.total)
        );
    }
    if !accounting.problems.is_empty() {
        html.push_str("<ul>\n");
        for problem in &accounting.problems {
            let _ = writeln!(html, "<li>{}</li>", escape(problem));
        }
        html.push_str("</ul>\n");
    }
    html
}

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
