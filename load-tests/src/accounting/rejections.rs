//! The gateway's queue refusals against the 429s the client received.
//!
//! The gateway answers 429 only when it refuses a request at the queue (its pending limit or a
//! full stream), and it counts every such refusal in `coder_queue_rejected_total` with reason
//! `backlog_full` or `stream_full`. Over a run the refusals and the client's 429s are therefore
//! equal, except that a refused request whose 429 never reached the client (it got no response)
//! may be counted too. Like the other checks, this assumes the client is the model's only user.

use super::fate::Bounds;
use super::tally::ClientTally;
use crate::scrape::{queue_rejected_key, Counts};
use metrics_common::names::value::RejectReason;

const TOO_MANY_REQUESTS: &str = "429";

/// `queue` is the run's delta of [`crate::scrape::queue_counts`].
pub fn rejection_problems(client: &ClientTally, queue: &Counts) -> Vec<String> {
    let refused: f64 = [RejectReason::BacklogFull, RejectReason::StreamFull]
        .into_iter()
        .map(|reason| {
            queue
                .get(&queue_rejected_key(reason.as_str()))
                .copied()
                .unwrap_or(0.0)
        })
        .sum();
    let answered = client.by_code.get(TOO_MANY_REQUESTS).copied().unwrap_or(0);
    let allowed = Bounds {
        min: answered,
        max: answered + client.no_response,
    };
    let fewer = || {
        format!(
            "the client received {answered} 429s but the gateway counted {refused} queue refusals"
        )
    };
    let more = || {
        format!(
            "the gateway counted {refused} queue refusals but the client received {answered} 429s \
             (and {} requests got no response)",
            client.no_response
        )
    };
    allowed.outside(refused, fewer, more).into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(too_many: u64, no_response: u64) -> ClientTally {
        let mut tally = ClientTally::default();
        if too_many > 0 {
            tally.by_code.insert(TOO_MANY_REQUESTS.to_owned(), too_many);
        }
        tally.no_response = no_response;
        tally
    }

    fn refusals(backlog: f64, stream: f64) -> Counts {
        let mut counts = Counts::new();
        counts.insert(queue_rejected_key("backlog_full"), backlog);
        counts.insert(queue_rejected_key("stream_full"), stream);
        // Refusals for other reasons answer 413 or 503, not 429.
        counts.insert(queue_rejected_key("too_large"), 7.0);
        counts
    }

    #[test]
    fn every_429_is_one_refusal_of_either_reason() {
        assert!(rejection_problems(&client(5, 0), &refusals(3.0, 2.0)).is_empty());
        assert!(rejection_problems(&client(0, 0), &Counts::new()).is_empty());
    }

    #[test]
    fn a_429_the_gateway_did_not_count_fails() {
        let problems = rejection_problems(&client(5, 0), &refusals(4.0, 0.0));
        assert!(problems[0].contains("received 5 429s"), "{problems:?}");
    }

    #[test]
    fn surplus_refusals_need_requests_without_a_response() {
        assert!(!rejection_problems(&client(5, 0), &refusals(6.0, 0.0)).is_empty());
        assert!(rejection_problems(&client(5, 1), &refusals(6.0, 0.0)).is_empty());
    }
}
