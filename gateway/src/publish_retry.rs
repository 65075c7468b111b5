//! Publishing a request until JetStream acks it, through a stream leader election or a lost
//! connection.
//!
//! While a cluster elects a new leader for the stream, or the client moves to another node, a
//! publish gets no ack (no responders, a timeout, a disconnect). Such a failure is retried with
//! the same headers, `Nats-Msg-Id` included, so a publish that was stored but whose ack was lost
//! is dropped by JetStream's duplicate window: the request is queued exactly once. Retries stop
//! at the give-up time (the request's deadline or `--publish-retry-window`, whichever is first);
//! a refusal that no retry changes (stream full, message too large) is returned at once.

use async_nats::jetstream::context::{PublishAckFuture, PublishError, PublishErrorKind};
use async_nats::jetstream::{self, publish::PublishAck};
use async_nats::HeaderMap;
use bytes::Bytes;
use coder_nats::publish_error::{classify, PublishFailure};
use coder_nats::retry::Backoff;
use std::future::IntoFuture;
use std::time::Duration;
use tokio::time::Instant;

/// The wait after the first failed try; it doubles up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(1);

/// What a publish came to, and after how many tries.
pub struct Published {
    pub outcome: Result<PublishAck, PublishError>,
    pub attempts: u32,
}

/// Publishes `payload` to `subject` with `headers` until acked, retrying while JetStream is
/// unavailable and `give_up_at` is not reached.
pub async fn publish_until_acked(
    client: &async_nats::Client,
    jetstream: &jetstream::Context,
    subject: String,
    headers: HeaderMap,
    payload: Bytes,
    give_up_at: Instant,
) -> Published {
    let mut backoff = Backoff::new(RETRY_FIRST, RETRY_MAX);
    let mut attempts = 0;
    loop {
        let outcome = if client.connection_state() == async_nats::connection::State::Connected {
            attempts += 1;
            let published = jetstream
                .publish_with_headers(subject.clone(), headers.clone(), payload.clone())
                .await;
            match published {
                Ok(ack) => acked_by(ack, give_up_at).await,
                Err(error) => Err(error),
            }
        } else {
            Err(PublishError::with_source(
                PublishErrorKind::BrokenPipe,
                "not connected to NATS",
            ))
        };
        let error = match outcome {
            Ok(ack) => {
                return Published {
                    outcome: Ok(ack),
                    attempts,
                }
            }
            Err(error) => error,
        };
        let delay = backoff.next_delay();
        if classify(&error) != PublishFailure::Unavailable || Instant::now() + delay >= give_up_at {
            return Published {
                outcome: Err(error),
                attempts,
            };
        }
        tracing::debug!(%error, attempts, ?delay, "publish not acknowledged; retrying with the same Nats-Msg-Id");
        tokio::time::sleep(delay).await;
    }
}

/// The ack, waited for until `give_up_at` at most.
async fn acked_by(ack: PublishAckFuture, give_up_at: Instant) -> Result<PublishAck, PublishError> {
    match tokio::time::timeout_at(give_up_at, ack.into_future()).await {
        Ok(outcome) => outcome,
        Err(_) => Err(PublishError::new(PublishErrorKind::TimedOut)),
    }
}
