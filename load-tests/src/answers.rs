//! `--check-answers`: was every answer whole, with nothing missing and nothing repeated?
//!
//! The counters of [`crate::accounting`] tell that every request ended once; they cannot tell
//! that a streamed answer lost a token on the way (a gap) or repeated some (a redelivered
//! request resumed at the wrong place). For a backend whose answer depends only on the request
//! body (the synthetic backend; a model at temperature 0 on one device), each distinct body the
//! run sent is sent once more after the run, on a quiet system, and every successful answer of
//! the run must equal that reference to the byte.

use crate::client::LoadClient;
use crate::record::RequestRecord;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use tokio::time::Instant;

/// Examples of mismatches kept for the report.
const EXAMPLES: usize = 5;

/// The outcome of the check.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerCheck {
    /// Successful answers compared.
    pub answers: u64,
    /// Distinct request bodies, each sent once more for its reference answer.
    pub references: u64,
    /// Answers that differ from their reference.
    pub mismatched: u64,
    /// What went wrong, in words: the first mismatches, a reference that failed.
    pub problems: Vec<String>,
}

impl AnswerCheck {
    pub fn ok(&self) -> bool {
        self.mismatched == 0 && self.problems.is_empty()
    }
}

/// Sends each distinct body of `records`' successes once more with `client` (which keeps
/// answers), all at once, and compares.
pub async fn check(client: &LoadClient, records: &[RequestRecord]) -> AnswerCheck {
    let mut by_body: HashMap<&Bytes, Vec<&RequestRecord>> = HashMap::new();
    for record in records.iter().filter(|r| r.is_ok()) {
        if let Some(body) = &record.body {
            by_body.entry(body).or_default().push(record);
        }
    }
    let origin = Instant::now();
    // The references at once: one request per distinct body, on a system that is quiet again.
    let references = futures::future::join_all(by_body.iter().map(|(body, answered)| {
        let max_tokens = answered[0].max_tokens.unwrap_or_default();
        client.send_body((*body).clone(), max_tokens, origin)
    }))
    .await;
    let mut check = AnswerCheck::default();
    for ((_, answered), reference) in by_body.iter().zip(references) {
        check.references += 1;
        let ok = reference.is_ok();
        let Some(expected) = reference.answer.as_deref().filter(|_| ok) else {
            check.problems.push(format!(
                "the reference answer failed ({}): {} answers not compared",
                reference.error_key().unwrap_or_default(),
                answered.len()
            ));
            continue;
        };
        for record in answered {
            check.answers += 1;
            compare(&mut check, record, expected);
        }
    }
    check
}

/// Counts `record`'s answer as a mismatch unless it is `expected`, describing the first ones.
fn compare(check: &mut AnswerCheck, record: &RequestRecord, expected: &str) {
    let answer = record.answer.as_deref().unwrap_or_default();
    if answer == expected {
        return;
    }
    check.mismatched += 1;
    if check.problems.len() < EXAMPLES {
        check.problems.push(format!(
            "request {} (sent at {:.3} s): {}",
            record.request_id.as_deref().unwrap_or("without an id"),
            record.start.as_secs_f64(),
            difference(answer, expected)
        ));
    }
}

/// Where `answer` departs from `expected`, in words.
pub fn difference(answer: &str, expected: &str) -> String {
    let common = answer
        .char_indices()
        .zip(expected.chars())
        .take_while(|((_, a), e)| a == e)
        .last()
        .map_or(0, |((i, a), _)| i + a.len_utf8());
    format!(
        "{} bytes where the reference has {}; they part at byte {common}",
        answer.len(),
        expected.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Outcome;
    use std::time::Duration;

    fn answered(text: &str) -> RequestRecord {
        let mut record = RequestRecord::new(
            Duration::ZERO,
            Duration::from_millis(5),
            Some(200),
            Outcome::Ok,
        );
        record.answer = Some(text.to_owned());
        record
    }

    #[test]
    fn gaps_and_repeats_are_mismatches_and_say_where() {
        let mut check = AnswerCheck::default();
        compare(&mut check, &answered("a b c"), "a b c");
        assert!(check.ok());
        compare(&mut check, &answered("a c"), "a b c");
        compare(&mut check, &answered("a b b c"), "a b c");
        assert_eq!(check.mismatched, 2);
        assert_eq!(
            check.problems[0],
            "request without an id (sent at 0.000 s): 3 bytes where the reference has 5; they \
             part at byte 2"
        );
        assert!(!check.ok());
    }
}
