//! End-to-end accounting: did the system count exactly what the client sent?
//!
//! The client's side is a [`ClientTally`] of its records. The system's side is the delta between
//! a scrape before and after the run of the gateway's `coder_model_requests_total` for the model
//! and endpoint, by `code`, of its `coder_queue_redeliveries_total` for the model, and optionally
//! of the workers' `coder_worker_requests_total` for the model, by `outcome`.
//! [`Accounting::check`] holds them against each other:
//!
//! 1. every request sent has exactly one terminal outcome on the client (a response or an error),
//!    and every response carries a distinct `x-request-id`;
//! 2. for each HTTP code, the gateway counted exactly as many requests as the client received
//!    with that code. Requests that got no response at all (timeouts, broken connections) may
//!    appear in the gateway's counts under any code, or not at all: the gateway's surplus over
//!    the client may be at most their number, and is zero when there are none;
//! 3. with worker metrics: every request the gateway put on the queue ended with exactly one
//!    worker outcome, and no other request did. Each request's answer tells whether it reached
//!    the queue and which outcomes it allows ([`fate`]): a complete 2xx exactly one `completed`;
//!    a 500 or a 2xx stream ended by an error exactly one `cancelled`, `expired` or `failed`; a
//!    504 or another broken 2xx exactly one of any kind (a `final` sent just before the deadline
//!    can reach the gateway just after it; a 504 for a request still queued becomes `expired`
//!    only when a worker takes it off the queue: the settle loop waits for that, and
//!    `--settle-timeout` must cover the backlog's drain); a 4xx other than 400 none.
//!    The workers' `completed`, their other outcomes, and all their outcomes must each fall
//!    within the range these add up to ([`workers`]); with no uncertain request (below) the
//!    ranges are single numbers.
//!
//! 4. the gateway's queue refusals (`coder_queue_rejected_total`, reasons `backlog_full` and
//!    `stream_full`) equal the 429s the client received ([`rejections`]);
//! 5. the gateway's `coder_model_active_requests` is back where it was ([`active`]).
//!
//! What the metrics cannot pin down, and the check therefore allows:
//! - the counters carry no request ids, so the check is on totals by kind: a request that ended
//!   twice and another of the same kind that never ended cancel out;
//! - a 400 may come from the gateway's validation (never queued) or from the worker (`failed`),
//!   so it allows zero or one non-`completed` outcome;
//! - a 503 (NATS down before the publish, a publish whose ack never came although the message was
//!   stored, or a worker's cancel), a code the gateway never sends (a proxy's), and a request
//!   without a response all allow zero or one outcome of any kind: a request the client left
//!   while it was queued still runs, since a cancel reaches only a worker running the request.
//!   A request without a response that the gateway counted under a code is placed by that code;
//! - each redelivery the gateway saw allows one more outcome (the worker that lost the message
//!   may have ended it too). A redelivery after the gateway was done with the request (a lost
//!   ack: the worker logs "ack not confirmed") is not seen, and fails the check;
//! - the gateway's redelivery counter is per model, the request counter per model and endpoint:
//!   the check assumes this client is the only one using the model during the run.

pub mod active;
pub mod codes;
pub mod fate;
pub mod rejections;
pub mod tally;
pub mod workers;

use crate::scrape::Counts;
pub use codes::CodeRow;
use codes::{code_problems, code_rows};
pub use fate::{Bounds, Expected, Fates, QueueFate};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
pub use tally::ClientTally;
pub use workers::WorkerCheck;

/// The counters read from `/metrics` at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// The gateway's requests for the model and endpoint, by code.
    pub gateway: Counts,
    /// The gateway's queue counters for the model, by metric name (see
    /// [`crate::scrape::queue_counts`]).
    pub queue: Counts,
    /// The gateway's requests in progress for the model (a gauge).
    pub active: f64,
    /// All workers' requests for the model, by outcome (when worker metrics were given).
    pub workers: Option<Counts>,
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
    /// What the workers' outcomes were held against, when worker metrics were given.
    pub worker_check: Option<WorkerCheck>,
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
            worker_check: None,
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
        let (queue, queue_resets) = delta(&before.queue, &after.queue);
        resets.extend(queue_resets);
        let workers = match (&before.workers, &after.workers) {
            (Some(before), Some(after)) => {
                let (workers, worker_resets) = delta(before, after);
                resets.extend(worker_resets);
                Some(workers)
            }
            _ => None,
        };
        let redeliveries = queue
            .get(&crate::scrape::queue_redeliveries_metric())
            .copied()
            .unwrap_or(0.0);
        let mut accounting = Self::check(client, &gateway, redeliveries, workers.as_ref());
        accounting
            .problems
            .extend(rejections::rejection_problems(client, &queue));
        accounting
            .problems
            .extend(active::active_problems(client, before.active, after.active));
        accounting.problems.extend(resets);
        accounting.ok = accounting.problems.is_empty();
        accounting
    }

    /// `gateway`, `redeliveries` and `workers` are deltas over the run (see [`delta`]).
    pub fn check(
        client: &ClientTally,
        gateway: &Counts,
        redeliveries: f64,
        workers: Option<&Counts>,
    ) -> Self {
        let mut problems = client_problems(client);
        let codes = code_rows(client, gateway);
        problems.extend(code_problems(client, &codes));
        let worker_check = workers.map(|workers| {
            let check = WorkerCheck::new(&client.fates, client.no_response, &codes, redeliveries);
            problems.extend(check.problems(workers));
            check
        });
        Self {
            checked: true,
            ok: problems.is_empty(),
            client: client.clone(),
            codes,
            worker_outcomes: workers.cloned(),
            worker_check,
            problems,
        }
    }

    /// Fails the accounting for answers that were not whole (`--check-answers`): a request
    /// answered with a gap or a repeat was not answered exactly once.
    pub fn fail_answers(&mut self, answers: &crate::answers::AnswerCheck) {
        self.checked = true;
        self.ok = false;
        self.problems.push(format!(
            "{} of {} answers differ from a reference answer to the same body",
            answers.mismatched, answers.answers
        ));
        self.problems.extend(answers.problems.iter().cloned());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Outcome;
    use crate::record::RequestRecord;
    use crate::scrape::{active_requests, gateway_counts, parse, queue_counts, worker_counts};
    use std::time::Duration;

    const ENDPOINT: &str = "/v1/completions";

    fn page(ok: u64, rejected: u64, completed: u64) -> String {
        format!(
            "# TYPE coder_model_requests_total counter\n\
             coder_model_requests_total{{code=\"200\",endpoint=\"{ENDPOINT}\",model_name=\"m\",status=\"success\"}} {ok}\n\
             coder_model_requests_total{{code=\"429\",endpoint=\"{ENDPOINT}\",model_name=\"m\",status=\"error\"}} {rejected}\n\
             # TYPE coder_queue_rejected_total counter\n\
             coder_queue_rejected_total{{model_name=\"m\",reason=\"backlog_full\"}} {rejected}\n\
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
            queue: queue_counts(&scrape, "m"),
            active: active_requests(&scrape, "m"),
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
        // 200 over, 429 under, and one 429 the gateway's queue refusals do not explain.
        assert_eq!(accounting.problems.len(), 3, "{:?}", accounting.problems);
        assert!(accounting.problems[2].contains("queue refusals"));
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
    fn redeliveries_on_the_gateway_page_allow_one_more_worker_outcome_each() {
        let tally = ClientTally::from_records(10, &records(8, 2));
        let redelivered = |page: String, n: u64| {
            page + "# TYPE coder_queue_redeliveries_total counter\n"
                + &format!("coder_queue_redeliveries_total{{model_name=\"m\"}} {n}\n")
        };
        let during = account(&page(0, 0, 0), &redelivered(page(8, 2, 9), 1), &tally);
        assert!(during.ok, "{:?}", during.problems);
        assert_eq!(during.worker_check.unwrap().redeliveries, 1);
        let before = account(
            &redelivered(page(0, 0, 0), 1),
            &redelivered(page(8, 2, 9), 1),
            &tally,
        );
        assert!(!before.ok, "a redelivery before the run explains nothing");
    }

    #[test]
    fn a_skipped_check_has_no_verdict() {
        assert_eq!(Accounting::skipped(ClientTally::default()).verdict(), None);
    }
}
