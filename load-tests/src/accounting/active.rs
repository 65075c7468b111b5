//! The gateway's requests in progress, before and after a run.
//!
//! `coder_model_active_requests` goes up when the gateway takes a request and down when it is
//! done with it, whatever the outcome. Once the run's counters have settled, the gauge must be
//! back where it was: a request the gateway never let go of would keep it up for good (and keep
//! a dashboard and `HighActiveRequests` wrong). A request whose client gave up (no response)
//! may still be open at the gateway until its own deadline, so each of those allows one. The
//! gauge may end lower: requests of an earlier run can finish during this one.

use super::tally::ClientTally;

pub fn active_problems(client: &ClientTally, before: f64, after: f64) -> Vec<String> {
    let still_open = after - before;
    if still_open > client.no_response as f64 + 0.5 {
        vec![format!(
            "coder_model_active_requests went from {before} to {after} over the run: {still_open} \
             requests never ended at the gateway ({} got no response)",
            client.no_response
        )]
    } else {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(no_response: u64) -> ClientTally {
        ClientTally {
            no_response,
            ..ClientTally::default()
        }
    }

    #[test]
    fn the_gauge_must_come_back_down() {
        assert!(active_problems(&client(0), 2.0, 2.0).is_empty());
        assert!(
            active_problems(&client(0), 2.0, 0.0).is_empty(),
            "earlier requests ended"
        );
        let stuck = active_problems(&client(0), 0.0, 3.0);
        assert!(stuck[0].contains("3 requests never ended"), "{stuck:?}");
    }

    #[test]
    fn requests_without_a_response_may_still_be_open() {
        assert!(active_problems(&client(2), 0.0, 2.0).is_empty());
        assert!(!active_problems(&client(2), 0.0, 3.0).is_empty());
    }
}
