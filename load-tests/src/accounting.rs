//! End-to-end accounting: did the system count exactly what the client sent?
//!
//! The client's side is a [`ClientTally`] of its records. The system's side is the delta of
//! `coder_model_requests_total` for the model and endpoint between a scrape before and after the
//! run, by `code`, and optionally of the workers' `coder_worker_requests_total` by `outcome`.
//! [`Accounting::check`] holds them against each other:
//!
//! 1. every request sent has exactly one terminal outcome on the client (a response or an error),
//!    and every response carries a distinct `x-request-id`;
//! 2. for each HTTP code, the gateway counted exactly as many requests as the client received
//!    with that code. Requests that got no response at all (timeouts, broken connections) may
//!    appear in the gateway's counts under any code, or not at all: the gateway's surplus over
//!    the client may be at most their number, and is zero when there are none;
//! 3. with worker metrics: the workers completed exactly as many requests as the client saw
//!    succeed, and ended no more others than the client saw fail after acceptance (5xx, broken
//!    2xx bodies, no response).
//!
//! The check assumes this client is the only one using the model and endpoint during the run.

use crate::record::RequestRecord;
use crate::scrape::Counts;
use metrics_common::names::value::Outcome as WorkerOutcome;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// What the client saw, in the terms the accounting compares.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientTally {
    /// Requests handed to the HTTP client.
    pub sent: u64,
    /// Terminal outcomes recorded (must equal `sent`).
    pub terminal: u64,
    /// Responses by HTTP code.
    pub by_code: BTreeMap<String, u64>,
    /// Requests that ended without any response status.
    pub no_response: u64,
    /// Complete 2xx responses.
    pub successes: u64,
    /// Requests the system may have accepted and then not completed: 5xx, broken 2xx bodies,
    /// no response.
    pub failed_after_accept: u64,
    pub missing_request_ids: u64,
    pub duplicate_request_ids: u64,
}

impl ClientTally {
    pub fn from_records(sent: u64, records: &[RequestRecord]) -> Self {
        let mut tally = Self {
            sent,
            terminal: records.len() as u64,
            ..Self::default()
        };
        let mut ids = HashSet::with_capacity(records.len());
        for record in records {
            if record.is_ok() {
                tally.successes += 1;
            }
            match record.status {
                None => {
                    tally.no_response += 1;
                    tally.failed_after_accept += 1;
                }
                Some(code) => {
                    *tally.by_code.entry(code.to_string()).or_default() += 1;
                    if code >= 500 || (!record.is_ok() && code < 300) {
                        tally.failed_after_accept += 1;
                    }
                    match &record.request_id {
                        None => tally.missing_request_ids += 1,
                        Some(id) if !ids.insert(id.as_str()) => tally.duplicate_request_ids += 1,
                        Some(_) => {}
                    }
                }
            }
        }
        tally
    }
}

/// The counters read from `/metrics` at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// The gateway's requests for the model and endpoint, by code.
    pub gateway: Counts,
    /// All workers' requests for the model, by outcome (when worker metrics were given).
    pub workers: Option<Counts>,
}

/// One HTTP code, as each side counted it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CodeRow {
    pub code: String,
    pub client: u64,
    pub gateway: f64,
}

/// The verdict and the figures behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Accounting {
    /// False when the check was skipped (`--no-accounting`).
    pub checked: bool,
    pub ok: bool,
    pub client: ClientTally,
    pub codes: Vec<CodeRow>,
    /// Workers' outcome counts during the run, when worker metrics were given.
    pub worker_outcomes: Option<Counts>,
    /// Each reason the check failed, in words.
    pub problems: Vec<String>,
}

impl Accounting {
    pub fn skipped(client: ClientTally) -> Self {
        Self {
            checked: false,
            ok: false,
            client,
            codes: Vec::new(),
            worker_outcomes: None,
            problems: Vec::new(),
        }
    }

    /// The verdict when the scrapes themselves failed.
    pub fn unavailable(client: ClientTally, problem: String) -> Self {
        Self {
            checked: true,
            problems: vec![problem],
            ..Self::skipped(client)
        }
    }

    /// The check over the run between two snapshots.
    pub fn between(client: &ClientTally, before: &Snapshot, after: &Snapshot) -> Self {
        let (gateway, mut resets) = delta(&before.gateway, &after.gateway);
        let workers = match (&before.workers, &after.workers) {
            (Some(before), Some(after)) => {
                let (workers, worker_resets) = delta(before, after);
                resets.extend(worker_resets);
                Some(workers)
            }
            _ => None,
        };
        let mut accounting = Self::check(client, &gateway, workers.as_ref());
        accounting.problems.extend(resets);
        accounting.ok = accounting.problems.is_empty();
        accounting
    }

    /// `gateway` and `workers` are deltas over the run (see [`delta`]).
    pub fn check(client: &ClientTally, gateway: &Counts, workers: Option<&Counts>) -> Self {
        let mut problems = client_problems(client);
        let codes = code_rows(client, gateway);
        problems.extend(code_problems(client, &codes));
        if let Some(workers) = workers {
            problems.extend(worker_problems(client, workers));
        }
        Self {
            checked: true,
            ok: problems.is_empty(),
            client: client.clone(),
            codes,
            worker_outcomes: workers.cloned(),
            problems,
        }
    }

    /// `Some(verdict)` when checked, `None` when skipped: `accounting_ok` in result.json.
    pub fn verdict(&self) -> Option<bool> {
        self.checked.then_some(self.ok)
    }
}

/// `after - before` per key; a key that went down or vanished means a counter reset (a restarted
/// process), reported as a problem. Zero deltas are dropped.
pub fn delta(before: &Counts, after: &Counts) -> (Counts, Vec<String>) {
    let mut problems = Vec::new();
    let mut out = Counts::new();
    for key in before.keys().chain(after.keys()).collect::<BTreeSet<_>>() {
        let (b, a) = (
            before.get(key).copied().unwrap_or(0.0),
            after.get(key).copied().unwrap_or(0.0),
        );
        if a < b {
            problems.push(format!(
                "counter `{key}` went down from {b} to {a} (a process restarted?)"
            ));
        } else if a > b {
            out.insert(key.clone(), a - b);
        }
    }
    (out, problems)
}

fn client_problems(client: &ClientTally) -> Vec<String> {
    let mut problems = Vec::new();
    if client.terminal != client.sent {
        problems.push(format!(
            "{} requests sent but {} terminal outcomes recorded",
            client.sent, client.terminal
        ));
    }
    if client.missing_request_ids > 0 {
        problems.push(format!(
            "{} responses without x-request-id",
            client.missing_request_ids
        ));
    }
    if client.duplicate_request_ids > 0 {
        problems.push(format!(
            "{} responses repeated another response's x-request-id",
            client.duplicate_request_ids
        ));
    }
    problems
}

fn code_rows(client: &ClientTally, gateway: &Counts) -> Vec<CodeRow> {
    let codes: BTreeSet<&String> = client.by_code.keys().chain(gateway.keys()).collect();
    codes
        .into_iter()
        .map(|code| CodeRow {
            code: code.clone(),
            client: client.by_code.get(code).copied().unwrap_or(0),
            gateway: gateway.get(code).copied().unwrap_or(0.0),
        })
        .collect()
}

fn code_problems(client: &ClientTally, rows: &[CodeRow]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut surplus = 0.0;
    for row in rows {
        let diff = row.gateway - row.client as f64;
        if diff < -0.5 {
            problems.push(format!(
                "code {}: the client received {} but the gateway counted {}",
                row.code, row.client, row.gateway
            ));
        } else if diff > 0.5 {
            surplus += diff;
        }
    }
    if surplus > client.no_response as f64 + 0.5 {
        let extra: Vec<String> = rows
            .iter()
            .filter(|r| r.gateway - r.client as f64 > 0.5)
            .map(|r| format!("{} ({} vs {})", r.code, r.gateway, r.client))
            .collect();
        problems.push(format!(
            "the gateway counted {surplus} requests more than the client received ({}), and only {} \
             requests went without a response",
            extra.join(", "),
            client.no_response
        ));
    }
    problems
}

fn worker_problems(client: &ClientTally, workers: &Counts) -> Vec<String> {
    let mut problems = Vec::new();
    let completed = workers
        .get(WorkerOutcome::Completed.as_str())
        .copied()
        .unwrap_or(0.0);
    let total = workers.values().fold(0.0, |sum, v| sum + v);
    if (completed - client.successes as f64).abs() > 0.5 {
        problems.push(format!(
            "workers completed {completed} requests but the client received {} successes",
            client.successes
        ));
    }
    let others = total - completed;
    if others > client.failed_after_accept as f64 + 0.5 {
        problems.push(format!(
            "workers ended {others} requests without completing them, but the client saw only {} \
             fail after acceptance",
            client.failed_after_accept
        ));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Outcome;
    use crate::scrape::{gateway_counts, parse, worker_counts};
    use std::time::Duration;

    const ENDPOINT: &str = "/v1/completions";

    fn page(ok: u64, rejected: u64, completed: u64) -> String {
        format!(
            "# TYPE coder_model_requests_total counter\n\
             coder_model_requests_total{{code=\"200\",endpoint=\"{ENDPOINT}\",model_name=\"m\",status=\"success\"}} {ok}\n\
             coder_model_requests_total{{code=\"429\",endpoint=\"{ENDPOINT}\",model_name=\"m\",status=\"error\"}} {rejected}\n\
             # TYPE coder_worker_requests_total counter\n\
             coder_worker_requests_total{{model_name=\"m\",outcome=\"completed\"}} {completed}\n"
        )
    }

    fn record(id: u64, status: Option<u16>, outcome: Outcome) -> RequestRecord {
        let mut r = RequestRecord::new(Duration::ZERO, Duration::from_millis(1), status, outcome);
        r.request_id = status.map(|_| format!("req-{id}"));
        r
    }

    /// `ok` successes and `rejected` 429s, with distinct request ids.
    fn records(ok: u64, rejected: u64) -> Vec<RequestRecord> {
        let ok = (0..ok).map(|i| record(i, Some(200), Outcome::Ok));
        let rejected = (0..rejected).map(|i| record(1000 + i, Some(429), Outcome::HttpError));
        ok.chain(rejected).collect()
    }

    fn snapshot(page: &str) -> Snapshot {
        let scrape = parse(page).unwrap();
        Snapshot {
            gateway: gateway_counts(&scrape, "m", ENDPOINT),
            workers: Some(worker_counts(&scrape, "m")),
        }
    }

    /// Accounting of a run between two scrape pages.
    fn account(before: &str, after: &str, tally: &ClientTally) -> Accounting {
        Accounting::between(tally, &snapshot(before), &snapshot(after))
    }

    #[test]
    fn matching_counts_pass() {
        let tally = ClientTally::from_records(10, &records(8, 2));
        let accounting = account(&page(100, 5, 100), &page(108, 7, 108), &tally);
        assert!(accounting.ok, "{:?}", accounting.problems);
        assert_eq!(accounting.verdict(), Some(true));
        assert_eq!(
            accounting.codes,
            vec![
                CodeRow {
                    code: "200".into(),
                    client: 8,
                    gateway: 8.0
                },
                CodeRow {
                    code: "429".into(),
                    client: 2,
                    gateway: 2.0
                },
            ]
        );
    }

    #[test]
    fn a_request_the_gateway_did_not_count_fails() {
        let tally = ClientTally::from_records(10, &records(8, 2));
        let accounting = account(&page(0, 0, 0), &page(7, 2, 8), &tally);
        assert!(!accounting.ok);
        assert!(
            accounting.problems[0].contains("code 200"),
            "{:?}",
            accounting.problems
        );
    }

    #[test]
    fn a_request_counted_twice_fails() {
        let tally = ClientTally::from_records(10, &records(8, 2));
        let accounting = account(&page(0, 0, 0), &page(8, 3, 8), &tally);
        assert!(!accounting.ok);
        assert!(accounting.problems[0].contains("more than the client received"));
    }

    #[test]
    fn a_request_under_another_code_fails() {
        let tally = ClientTally::from_records(10, &records(8, 2));
        let accounting = account(&page(0, 0, 0), &page(9, 1, 8), &tally);
        assert_eq!(accounting.problems.len(), 2, "{:?}", accounting.problems);
    }

    #[test]
    fn requests_without_a_response_may_be_counted_under_any_code() {
        let mut recs = records(8, 2);
        recs.push(record(99, None, Outcome::Timeout));
        let tally = ClientTally::from_records(11, &recs);
        assert!(account(&page(0, 0, 0), &page(8, 2, 8), &tally).ok);
        assert!(account(&page(0, 0, 0), &page(8, 3, 8), &tally).ok);
        assert!(!account(&page(0, 0, 0), &page(9, 3, 8), &tally).ok);
    }

    #[test]
    fn a_request_without_a_terminal_outcome_fails() {
        let tally = ClientTally::from_records(11, &records(8, 2));
        let accounting = account(&page(0, 0, 0), &page(8, 2, 8), &tally);
        assert_eq!(
            accounting.problems,
            vec!["11 requests sent but 10 terminal outcomes recorded"]
        );
    }

    #[test]
    fn responses_must_carry_distinct_request_ids() {
        let mut recs = records(8, 2);
        recs[1].request_id = recs[0].request_id.clone();
        recs[2].request_id = None;
        let tally = ClientTally::from_records(10, &recs);
        assert_eq!(
            (tally.duplicate_request_ids, tally.missing_request_ids),
            (1, 1)
        );
        assert_eq!(
            account(&page(0, 0, 0), &page(8, 2, 8), &tally)
                .problems
                .len(),
            2
        );
    }

    #[test]
    fn workers_must_complete_exactly_the_successes() {
        let tally = ClientTally::from_records(10, &records(8, 2));
        let accounting = account(&page(0, 0, 0), &page(8, 2, 9), &tally);
        assert!(!accounting.ok);
        assert!(accounting.problems[0].starts_with("workers completed 9"));
    }

    #[test]
    fn a_counter_reset_fails() {
        let tally = ClientTally::from_records(10, &records(8, 2));
        let accounting = account(&page(100, 5, 100), &page(8, 2, 108), &tally);
        assert!(accounting.problems.iter().any(|p| p.contains("went down")));
    }

    #[test]
    fn a_skipped_check_has_no_verdict() {
        assert_eq!(Accounting::skipped(ClientTally::default()).verdict(), None);
    }
}
