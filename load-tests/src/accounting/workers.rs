//! The workers' outcomes against the requests the gateway put on the queue.
//!
//! Each request's fate ([`QueueFate`]) gives a range of worker outcomes; the run's outcomes, by
//! kind, must fall inside the sum of the ranges. Requests without a response that the gateway
//! nevertheless counted under a code are placed by that code first, which narrows the ranges.

use super::codes::CodeRow;
use super::fate::{Expected, Fates, QueueFate};
use crate::scrape::Counts;
use metrics_common::names::value::Outcome as WorkerOutcome;
use serde::{Deserialize, Serialize};

/// What the worker check compared, for result.json and the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerCheck {
    /// The requests' fates, the ones without a response placed by the gateway's code if it
    /// counted them.
    pub fates: Fates,
    /// Redeliveries the gateway saw during the run (`coder_queue_redeliveries_total`).
    pub redeliveries: u64,
    pub expected: Expected,
}

impl WorkerCheck {
    pub fn new(
        client_fates: &Fates,
        no_response: u64,
        codes: &[CodeRow],
        redeliveries: f64,
    ) -> Self {
        let mut fates = client_fates.clone();
        let mut unplaced = no_response;
        for row in codes {
            let Ok(code) = row.code.parse::<u16>() else {
                continue;
            };
            let to = QueueFate::of_code(code);
            unplaced -= fates.reclassify(QueueFate::Unknown, to, row.surplus().min(unplaced));
        }
        let redeliveries = redeliveries.max(0.0).round() as u64;
        Self {
            expected: fates.expected(redeliveries),
            fates,
            redeliveries,
        }
    }

    /// Each way `workers` (outcome counts over the run) falls outside the expected ranges.
    pub fn problems(&self, workers: &Counts) -> Vec<String> {
        let completed = workers
            .get(WorkerOutcome::Completed.as_str())
            .copied()
            .unwrap_or(0.0);
        let total = workers.values().fold(0.0, |sum, v| sum + v);
        [
            self.completed_problem(completed),
            self.otherwise_problem(total - completed),
            self.total_problem(total),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    fn completed_problem(&self, got: f64) -> Option<String> {
        let (f, bounds) = (&self.fates, self.expected.completed);
        let why = bounds.outside(
            got,
            || format!("but the client received {} successes", f.completed),
            || {
                format!(
                    "but the client received {} successes and at most {} more could have \
                     completed ({} broken 2xx bodies, {})",
                    f.completed,
                    bounds.max - bounds.min,
                    f.ended,
                    self.unanswered(false)
                )
            },
        )?;
        Some(format!("workers completed {got} requests, {why}"))
    }

    fn otherwise_problem(&self, got: f64) -> Option<String> {
        let (f, bounds) = (&self.fates, self.expected.otherwise);
        let why = bounds.outside(
            got,
            || {
                format!(
                    "but {} requests got a 500 or an error in their stream, and each needs one \
                     such outcome",
                    f.failed
                )
            },
            || {
                format!(
                    "but at most {} can have ({} 500s/stream errors, {} 504s/broken 2xx bodies, {})",
                    bounds.max,
                    f.failed,
                    f.ended,
                    self.unanswered(true)
                )
            },
        )?;
        Some(format!(
            "workers cancelled, expired or failed {got} requests, {why}"
        ))
    }

    fn total_problem(&self, got: f64) -> Option<String> {
        let (f, bounds) = (&self.fates, self.expected.total);
        let why = bounds.outside(
            got,
            || {
                format!(
                    "but {} requests reached the queue ({} successes, {} 500s/stream errors, \
                     {} 504s/broken 2xx bodies): {} accepted requests have no worker outcome \
                     (lost, or still queued: raise --settle-timeout?)",
                    bounds.min,
                    f.completed,
                    f.failed,
                    f.ended,
                    bounds.min as f64 - got
                )
            },
            || {
                format!(
                    "but at most {} can have reached the queue ({} certainly, {}): a request ran \
                     twice, or another client used the model",
                    bounds.max,
                    bounds.min,
                    self.unanswered(true)
                )
            },
        )?;
        Some(format!("workers ended {got} requests, {why}"))
    }

    /// The requests that may or may not have an outcome, and the redeliveries, in words.
    fn unanswered(&self, with_400s: bool) -> String {
        let f = &self.fates;
        let bad_requests = match with_400s {
            true => format!("{} 400s, ", f.maybe_failed),
            false => String::new(),
        };
        format!(
            "{bad_requests}{} 503s/other codes/requests without a response, {} redeliveries the \
             gateway saw",
            f.unknown, self.redeliveries
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Accounting, ClientTally};
    use crate::record::{Outcome, RequestRecord};
    use crate::scrape::Counts;
    use std::time::Duration;

    /// `n` requests per `(status, outcome, n)`, with distinct request ids.
    fn records(answers: &[(Option<u16>, Outcome, u64)]) -> Vec<RequestRecord> {
        let mut records = Vec::new();
        for &(status, outcome, n) in answers {
            for _ in 0..n {
                let latency = Duration::from_millis(1);
                let mut r = RequestRecord::new(Duration::ZERO, latency, status, outcome);
                r.request_id = status.map(|_| format!("req-{}", records.len()));
                records.push(r);
            }
        }
        records
    }

    /// Eight successes, then `more`.
    fn eight_ok_and(more: &[(Option<u16>, Outcome, u64)]) -> Vec<RequestRecord> {
        let mut answers = vec![(Some(200), Outcome::Ok, 8)];
        answers.extend_from_slice(more);
        records(&answers)
    }

    fn counts(pairs: &[(&str, f64)]) -> Counts {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }

    /// The accounting's problems when the gateway counted the client's codes plus
    /// `unanswered` (requests without a response it counted under a code), saw `redeliveries`,
    /// and the workers ended requests with `outcomes`.
    fn problems(
        records: &[RequestRecord],
        unanswered: &[(&str, f64)],
        redeliveries: f64,
        outcomes: &[(&str, f64)],
    ) -> Vec<String> {
        let tally = ClientTally::from_records(records.len() as u64, records);
        let mut gateway: Counts = tally
            .by_code
            .iter()
            .map(|(code, n)| (code.clone(), *n as f64))
            .collect();
        for (code, n) in unanswered {
            *gateway.entry((*code).to_owned()).or_default() += n;
        }
        Accounting::check(&tally, &gateway, redeliveries, Some(&counts(outcomes))).problems
    }

    const GATEWAY_TIMEOUT: (Option<u16>, Outcome, u64) = (Some(504), Outcome::HttpError, 1);
    const NO_RESPONSE: (Option<u16>, Outcome, u64) = (None, Outcome::Timeout, 1);

    #[test]
    fn a_gateway_timeout_without_any_worker_outcome_fails() {
        let problems = problems(
            &eight_ok_and(&[GATEWAY_TIMEOUT]),
            &[],
            0.0,
            &[("completed", 8.0)],
        );
        assert!(
            problems
                .iter()
                .any(|p| p.contains("1 accepted requests have no worker outcome")),
            "{problems:?}"
        );
    }

    #[test]
    fn a_gateway_500_without_any_worker_outcome_fails() {
        let recs = eight_ok_and(&[(Some(500), Outcome::HttpError, 1)]);
        assert!(!problems(&recs, &[], 0.0, &[("completed", 8.0)]).is_empty());
        assert!(problems(&recs, &[], 0.0, &[("completed", 8.0), ("failed", 1.0)]).is_empty());
    }

    #[test]
    fn a_gateway_timeout_ends_with_exactly_one_outcome() {
        let recs = eight_ok_and(&[GATEWAY_TIMEOUT]);
        for outcome in ["cancelled", "expired", "failed"] {
            let found = problems(&recs, &[], 0.0, &[("completed", 8.0), (outcome, 1.0)]);
            assert!(found.is_empty(), "{outcome}: {found:?}");
        }
        let twice = problems(&recs, &[], 0.0, &[("completed", 8.0), ("expired", 2.0)]);
        assert!(
            twice.iter().any(|p| p.contains("a request ran twice")),
            "{twice:?}"
        );
    }

    #[test]
    fn a_gateway_timeout_may_have_a_worker_that_completed_at_the_deadline() {
        // A `final` sent just before the deadline reached the gateway just after it.
        let recs = eight_ok_and(&[GATEWAY_TIMEOUT]);
        let found = problems(&recs, &[], 0.0, &[("completed", 9.0)]);
        assert!(found.is_empty(), "{found:?}");
        let twice = problems(&recs, &[], 0.0, &[("completed", 9.0), ("cancelled", 1.0)]);
        assert!(
            twice.iter().any(|p| p.contains("a request ran twice")),
            "{twice:?}"
        );
    }

    #[test]
    fn a_rejected_request_must_not_reach_a_worker() {
        let recs = eight_ok_and(&[(Some(429), Outcome::HttpError, 2)]);
        let found = problems(&recs, &[], 0.0, &[("completed", 8.0), ("failed", 1.0)]);
        assert!(
            found
                .iter()
                .any(|p| p.contains("at most 8 can have reached the queue")),
            "{found:?}"
        );
    }

    #[test]
    fn a_request_without_a_response_has_at_most_one_outcome() {
        let recs = eight_ok_and(&[NO_RESPONSE]);
        let ok = [
            vec![("completed", 8.0)],
            vec![("completed", 8.0), ("cancelled", 1.0)],
            vec![("completed", 9.0)], // still queued when the client left: it ran anyway
        ];
        for outcomes in ok {
            assert!(
                problems(&recs, &[], 0.0, &outcomes).is_empty(),
                "{outcomes:?}"
            );
        }
        let twice = [("completed", 8.0), ("cancelled", 2.0)];
        assert!(!problems(&recs, &[], 0.0, &twice).is_empty());
    }

    #[test]
    fn a_request_without_a_response_the_gateway_answered_needs_an_outcome() {
        // The gateway counted it under 200: its stream had started when the client left.
        let recs = eight_ok_and(&[NO_RESPONSE]);
        let none = problems(&recs, &[("200", 1.0)], 0.0, &[("completed", 8.0)]);
        assert!(
            none.iter().any(|p| p.contains("have no worker outcome")),
            "{none:?}"
        );
        let one = [("completed", 8.0), ("cancelled", 1.0)];
        assert!(problems(&recs, &[("200", 1.0)], 0.0, &one).is_empty());
        // Counted under 429: it never reached the queue.
        let rejected = problems(&recs, &[("429", 1.0)], 0.0, &one);
        assert!(!rejected.is_empty());
    }

    #[test]
    fn a_400_may_come_from_the_worker_but_never_completes() {
        let recs = eight_ok_and(&[(Some(400), Outcome::HttpError, 1)]);
        assert!(problems(&recs, &[], 0.0, &[("completed", 8.0)]).is_empty());
        assert!(problems(&recs, &[], 0.0, &[("completed", 8.0), ("failed", 1.0)]).is_empty());
        assert!(!problems(&recs, &[], 0.0, &[("completed", 9.0)]).is_empty());
    }

    #[test]
    fn a_broken_2xx_body_needs_exactly_one_outcome_of_any_kind() {
        let recs = eight_ok_and(&[(Some(200), Outcome::Incomplete, 1)]);
        assert!(!problems(&recs, &[], 0.0, &[("completed", 8.0)]).is_empty());
        assert!(problems(&recs, &[], 0.0, &[("completed", 9.0)]).is_empty());
        assert!(problems(&recs, &[], 0.0, &[("completed", 8.0), ("cancelled", 1.0)]).is_empty());
    }

    #[test]
    fn a_stream_ended_by_an_error_needs_an_outcome_other_than_completed() {
        let recs = eight_ok_and(&[(Some(200), Outcome::StreamError, 1)]);
        assert!(problems(&recs, &[], 0.0, &[("completed", 8.0), ("failed", 1.0)]).is_empty());
        assert!(!problems(&recs, &[], 0.0, &[("completed", 9.0)]).is_empty());
    }

    #[test]
    fn each_redelivery_the_gateway_saw_allows_one_more_outcome() {
        let recs = eight_ok_and(&[]);
        assert!(!problems(&recs, &[], 0.0, &[("completed", 9.0)]).is_empty());
        assert!(problems(&recs, &[], 1.0, &[("completed", 9.0)]).is_empty());
        assert!(!problems(&recs, &[], 1.0, &[("completed", 10.0)]).is_empty());
    }
}
