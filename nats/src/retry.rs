//! Retrying a step that needs NATS (provisioning the stream and consumers) until it succeeds or
//! the service stops, with the same backoff in every service.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

/// The first wait after a failed provisioning attempt; it doubles up to [`PROVISIONING_MAX`].
pub const PROVISIONING_FIRST: Duration = Duration::from_millis(100);
pub const PROVISIONING_MAX: Duration = Duration::from_secs(5);

/// Waits that double from `first` up to `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub const fn new(first: Duration, max: Duration) -> Self {
        Self {
            first,
            max,
            next: first,
        }
    }

    /// The wait before the next try; each call doubles the one after, up to the maximum.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    /// After a success: the next failure waits the first delay again.
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

/// Runs `attempt` until it succeeds, logging each failure as "`what` failed; retrying" and
/// waiting the provisioning backoff between tries. `None` once `stop` completes, even in the
/// middle of an attempt: a JetStream request to an unreachable server waits out its timeout
/// (10 s), and a SIGTERM meanwhile must not.
pub async fn until_ok<T, E, Attempt>(
    what: &str,
    stop: impl Future<Output = ()>,
    mut attempt: impl FnMut() -> Attempt,
) -> Option<T>
where
    Attempt: Future<Output = Result<T, E>>,
    E: Display,
{
    let mut backoff = Backoff::new(PROVISIONING_FIRST, PROVISIONING_MAX);
    tokio::pin!(stop);
    loop {
        let outcome = tokio::select! {
            _ = &mut stop => return None,
            outcome = attempt() => outcome,
        };
        match outcome {
            Ok(value) => return Some(value),
            Err(error) => tracing::warn!(%error, "{what} failed; retrying"),
        }
        tokio::select! {
            _ = &mut stop => return None,
            _ = tokio::time::sleep(backoff.next_delay()) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::{pending, ready};
    use std::time::Instant;

    #[test]
    fn the_backoff_doubles_up_to_its_maximum_and_starts_over_after_a_reset() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(300));
        let delays: Vec<u128> = (0..4).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 300, 300]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_millis(100));
    }

    #[tokio::test]
    async fn failures_are_retried_until_an_attempt_succeeds() {
        let mut tries = 0;
        let started = Instant::now();

        let result = until_ok("the step", pending(), || {
            tries += 1;
            ready(if tries < 3 { Err("down") } else { Ok(tries) })
        })
        .await;

        assert_eq!(result, Some(3));
        // Two waits: 100 ms, then 200 ms.
        assert!(started.elapsed() >= Duration::from_millis(300));
    }

    #[tokio::test]
    async fn a_stop_ends_an_attempt_that_hangs() {
        let result: Option<()> =
            until_ok("the step", ready(()), pending::<Result<(), String>>).await;

        assert_eq!(result, None);
    }

    #[tokio::test]
    async fn a_stop_ends_the_wait_between_attempts() {
        let stop = tokio::time::sleep(Duration::from_millis(50));
        let started = Instant::now();

        let result: Option<()> = until_ok("the step", stop, || ready(Err("down"))).await;

        assert_eq!(result, None);
        assert!(started.elapsed() < PROVISIONING_FIRST * 2);
    }
}
