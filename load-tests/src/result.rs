//! `result.json`: one run's figures, for scripts, CI and the reports.
//!
//! Stable keys scripts rely on: `requests`, `errors`, `throughput_rps`, `latency_ms` and
//! `ttft_ms` (each with `p50`, `p90`, `p99`, `max`, in milliseconds, `null` without samples),
//! `errors_by_status` and `accounting_ok` (`true`/`false`, `null` when the check was skipped).

use crate::accounting::Accounting;
use crate::max_tokens::MaxTokens;
use crate::record::RequestRecord;
use crate::runner::{LoadPlan, Shape};
use crate::stats::Summary;
use crate::timeline::{self, Bin};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What was asked for, as it appears in reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSettings {
    pub label: String,
    pub url: String,
    pub model: String,
    pub endpoint: String,
    /// `closed` or `open`.
    pub mode: String,
    pub concurrency: Option<usize>,
    pub rate: Option<f64>,
    pub arrival_seed: Option<u64>,
    pub requested_requests: Option<u64>,
    pub requested_duration_s: Option<f64>,
    pub stream: bool,
    /// `{"min": N, "max": N}`; equal for a single `--max-tokens` value.
    pub max_tokens: MaxTokens,
    /// Seed of the per-request `max_tokens` draws, when `max_tokens` is a range.
    pub length_seed: Option<u64>,
}

impl RunSettings {
    /// `c16-completions`, `r50-chat-stream`, ...
    pub fn default_label(plan: &LoadPlan, chat: bool, stream: bool) -> String {
        let shape = match plan.shape {
            Shape::Closed { concurrency } => format!("c{concurrency}"),
            Shape::Open { rate, .. } => format!("r{rate}"),
        };
        let endpoint = if chat { "chat" } else { "completions" };
        let stream = if stream { "-stream" } else { "" };
        format!("{shape}-{endpoint}{stream}")
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    pub settings: RunSettings,
    /// RFC 3339, when the load started.
    pub started_at: String,
    /// From the first send to the last terminal outcome, in seconds.
    pub duration_s: f64,
    /// Requests with a terminal outcome.
    pub requests: u64,
    /// Requests handed to the HTTP client (equals `requests` unless something was lost).
    pub sent: u64,
    /// Open loop: arrivals not sent because too many requests were in flight. They are not
    /// among `requests`, nor do they use up `--requests`.
    pub skipped: u64,
    pub successes: u64,
    pub errors: u64,
    /// Responses by HTTP code, plus `none` for requests without a response.
    pub status_counts: BTreeMap<String, u64>,
    /// Failures by HTTP code, or by what went wrong when there was no error code.
    pub errors_by_status: BTreeMap<String, u64>,
    /// Successful requests per second.
    pub throughput_rps: f64,
    /// All terminal outcomes per second.
    pub requests_rps: f64,
    /// Output tokens of successful requests per second.
    pub output_tokens_per_s: f64,
    /// End-to-end latency of successful requests.
    pub latency_ms: Summary,
    /// Time to first token of successful streamed requests.
    pub ttft_ms: Summary,
    /// Gaps between streamed text chunks of successful requests.
    pub itl_ms: Summary,
    /// Per-request generation speed (after the first token for streams).
    pub tokens_per_s: Summary,
    pub prompt_tokens: Summary,
    pub output_tokens: Summary,
    /// The `max_tokens` every request asked for (a spread when `--max-tokens` is a range).
    pub requested_max_tokens: Summary,
    pub accounting_ok: Option<bool>,
    pub accounting: Accounting,
    pub timeline: Vec<Bin>,
}

impl RunResult {
    pub fn build(
        settings: RunSettings,
        started_at: String,
        records: &[RequestRecord],
        sent: u64,
        skipped: u64,
        wall_s: f64,
        accounting: Accounting,
    ) -> Self {
        let ok: Vec<&RequestRecord> = records.iter().filter(|r| r.is_ok()).collect();
        let per_s = |n: f64| if wall_s > 0.0 { n / wall_s } else { 0.0 };
        let output_tokens: u64 = ok
            .iter()
            .filter_map(|r| r.output_tokens)
            .map(u64::from)
            .sum();
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        Self {
            started_at,
            duration_s: wall_s,
            requests: records.len() as u64,
            sent,
            skipped,
            successes: ok.len() as u64,
            errors: (records.len() - ok.len()) as u64,
            status_counts: count_by(records, |r| {
                Some(
                    r.status
                        .map_or_else(|| "none".to_owned(), |s| s.to_string()),
                )
            }),
            errors_by_status: count_by(records, RequestRecord::error_key),
            throughput_rps: per_s(ok.len() as f64),
            requests_rps: per_s(records.len() as f64),
            output_tokens_per_s: per_s(output_tokens as f64),
            latency_ms: Summary::of(ok.iter().map(|r| ms(r.latency))),
            ttft_ms: Summary::of(ok.iter().filter_map(|r| r.ttft).map(ms)),
            itl_ms: Summary::of(
                ok.iter()
                    .flat_map(|r| r.token_gaps_us.iter())
                    .map(|us| f64::from(*us) / 1e3),
            ),
            tokens_per_s: Summary::of(ok.iter().filter_map(|r| r.tokens_per_second())),
            prompt_tokens: Summary::of(ok.iter().filter_map(|r| r.prompt_tokens).map(f64::from)),
            output_tokens: Summary::of(ok.iter().filter_map(|r| r.output_tokens).map(f64::from)),
            requested_max_tokens: Summary::of(
                records.iter().filter_map(|r| r.max_tokens).map(f64::from),
            ),
            accounting_ok: accounting.verdict(),
            accounting,
            timeline: timeline::timeline(records, wall_s),
            settings,
        }
    }
}

fn count_by(
    records: &[RequestRecord],
    key: impl Fn(&RequestRecord) -> Option<String>,
) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for k in records.iter().filter_map(key) {
        *counts.entry(k).or_default() += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounting::ClientTally;
    use crate::record::Outcome;
    use std::time::Duration;

    fn settings() -> RunSettings {
        RunSettings {
            label: "t".into(),
            url: "http://h".into(),
            model: "m".into(),
            endpoint: "/v1/completions".into(),
            mode: "closed".into(),
            concurrency: Some(1),
            rate: None,
            arrival_seed: None,
            requested_requests: Some(4),
            requested_duration_s: None,
            stream: false,
            max_tokens: MaxTokens::fixed(4),
            length_seed: None,
        }
    }

    #[test]
    fn result_json_has_the_keys_scripts_rely_on() {
        let ok = |ms| {
            let mut r = RequestRecord::new(
                Duration::ZERO,
                Duration::from_millis(ms),
                Some(200),
                Outcome::Ok,
            );
            r.output_tokens = Some(4);
            r
        };
        let records = vec![
            ok(10),
            ok(20),
            ok(30),
            RequestRecord::new(
                Duration::ZERO,
                Duration::from_millis(1),
                Some(429),
                Outcome::HttpError,
            ),
        ];
        let accounting = Accounting::skipped(ClientTally::from_records(4, &records));
        let result = RunResult::build(settings(), "now".into(), &records, 4, 0, 2.0, accounting);
        let json = serde_json::to_value(&result).unwrap();
        assert_eq!(json["requests"], 4);
        assert_eq!(json["errors"], 1);
        assert_eq!(json["throughput_rps"], 1.5);
        assert_eq!(json["latency_ms"]["p50"], 20.0);
        assert_eq!(json["latency_ms"]["max"], 30.0);
        for key in ["p50", "p90", "p99", "max"] {
            assert!(json["ttft_ms"][key].is_null());
        }
        assert_eq!(json["errors_by_status"]["429"], 1);
        assert!(json["accounting_ok"].is_null());
        assert_eq!(json["output_tokens_per_s"], 6.0);
    }
}
