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
    /// `plain`, `repo-context` or `multiturn` (`plain` in results from before the option).
    #[serde(default = "plain")]
    pub workload: String,
    /// multiturn: conversations and turns each.
    #[serde(default)]
    pub conversations: Option<usize>,
    #[serde(default)]
    pub turns: Option<usize>,
    /// repo-context and multiturn: the generated text's seed.
    #[serde(default)]
    pub workload_seed: Option<u64>,
}

fn plain() -> String {
    "plain".to_owned()
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
    /// The same, in seconds since the Unix epoch (to place other events on the run's clock).
    #[serde(default)]
    pub started_unix_s: f64,
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
    /// Of the prompt tokens of successful requests whose usage reports it, the share the server
    /// had cached (`usage.prompt_tokens_details.cached_tokens`); `null` when none reports it.
    #[serde(default)]
    pub cached_tokens_ratio: Option<f64>,
    /// The workers' own prefix cache hit rate over the run (hit over queried token counter
    /// deltas), when worker metrics were given and a prompt was looked up.
    #[serde(default)]
    pub prefix_cache_hit_rate: Option<f64>,
    /// Per conversation turn (multiturn), from turn 1.
    #[serde(default)]
    pub turns: Vec<TurnFigures>,
    /// TTFT of the follow-up turns (turn 2 on) of successful streamed requests (multiturn).
    #[serde(default)]
    pub follow_up_ttft_ms: Summary,
    /// Every answer against a reference answer to its body (`--check-answers`).
    #[serde(default)]
    pub answers: Option<crate::answers::AnswerCheck>,
}

/// One conversation turn's figures over every conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TurnFigures {
    /// From 1.
    pub turn: u32,
    pub requests: u64,
    pub successes: u64,
    pub latency_ms: Summary,
    pub ttft_ms: Summary,
    pub prompt_tokens: Summary,
    pub cached_tokens_ratio: Option<f64>,
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
            started_unix_s: 0.0,
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
            cached_tokens_ratio: cached_ratio(&ok),
            prefix_cache_hit_rate: None,
            turns: turn_figures(records),
            follow_up_ttft_ms: Summary::of(
                ok.iter()
                    .filter(|r| r.turn.is_some_and(|t| t >= 2))
                    .filter_map(|r| r.ttft)
                    .map(ms),
            ),
            answers: None,
        }
    }
}

/// Cached over prompt tokens, over the requests whose usage says both.
fn cached_ratio(ok: &[&RequestRecord]) -> Option<f64> {
    let (cached, prompt) = ok
        .iter()
        .filter_map(|r| Some((r.cached_tokens?, r.prompt_tokens?)))
        .fold((0u64, 0u64), |(c, p), (cached, prompt)| {
            (c + u64::from(cached), p + u64::from(prompt))
        });
    (prompt > 0).then(|| cached as f64 / prompt as f64)
}

/// Each turn's figures, for the records that carry a turn.
fn turn_figures(records: &[RequestRecord]) -> Vec<TurnFigures> {
    let last = records.iter().filter_map(|r| r.turn).max().unwrap_or(0);
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    (1..=last)
        .map(|turn| {
            let all: Vec<&RequestRecord> =
                records.iter().filter(|r| r.turn == Some(turn)).collect();
            let ok: Vec<&RequestRecord> = all.iter().copied().filter(|r| r.is_ok()).collect();
            TurnFigures {
                turn,
                requests: all.len() as u64,
                successes: ok.len() as u64,
                latency_ms: Summary::of(ok.iter().map(|r| ms(r.latency))),
                ttft_ms: Summary::of(ok.iter().filter_map(|r| r.ttft).map(ms)),
                prompt_tokens: Summary::of(
                    ok.iter().filter_map(|r| r.prompt_tokens).map(f64::from),
                ),
                cached_tokens_ratio: cached_ratio(&ok),
            }
        })
        .collect()
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
            workload: "multiturn".into(),
            conversations: Some(2),
            turns: Some(2),
            workload_seed: Some(1),
        }
    }

    #[test]
    fn turns_get_their_own_ttft_and_cached_share() {
        let turn = |turn, ttft_ms, prompt, cached| {
            let mut r = RequestRecord::new(
                Duration::ZERO,
                Duration::from_millis(100),
                Some(200),
                Outcome::Ok,
            );
            (r.turn, r.ttft) = (Some(turn), Some(Duration::from_millis(ttft_ms)));
            (r.prompt_tokens, r.cached_tokens) = (Some(prompt), Some(cached));
            r
        };
        let records = vec![
            turn(1, 900, 100, 0),
            turn(2, 100, 200, 150),
            turn(1, 700, 100, 50),
        ];
        let accounting = Accounting::skipped(ClientTally::from_records(3, &records));
        let result = RunResult::build(settings(), "now".into(), &records, 3, 0, 1.0, accounting);
        assert_eq!(result.turns.len(), 2);
        assert_eq!(result.turns[0].requests, 2);
        assert_eq!(result.turns[0].ttft_ms.max, Some(900.0));
        assert_eq!(result.turns[0].cached_tokens_ratio, Some(0.25));
        assert_eq!(result.turns[1].cached_tokens_ratio, Some(0.75));
        assert_eq!(result.follow_up_ttft_ms.p50, Some(100.0));
        assert_eq!(result.cached_tokens_ratio, Some(200.0 / 400.0));
        let json = serde_json::to_value(&result).unwrap();
        assert_eq!(json["turns"][1]["ttft_ms"]["p50"], 100.0);
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
