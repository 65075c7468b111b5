//! Sending a request's last event until its gateway says whether it holds the whole attempt.
//!
//! Events go out on core NATS, which drops what a gateway misses while it moves to another NATS
//! node. The terminal event (`final`, `error`) is therefore sent as a NATS request, and the
//! JetStream message is acked only once the gateway answered [`EndReceipt::Complete`]; on
//! [`EndReceipt::Redeliver`] the caller naks it so the request is generated again. Without an
//! answer (no subscriber right now, or a timeout) the same event is sent again with a growing
//! pause, the message kept alive with in-progress acks, until the give-up time; then the caller
//! acks anyway (the gateway is gone for longer than a reconnect: its client with it).

use async_nats::jetstream::{AckKind, Message};
use bytes::Bytes;
use coder_nats::retry::Backoff;
use coder_nats::EndReceipt;
use std::time::Duration;
use tokio::time::Instant;

/// How long one try waits for the gateway's answer.
const ANSWER_WAIT: Duration = Duration::from_secs(1);
/// The pause after the first unanswered try; it doubles up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(1);
/// How long a last event is sent again at most: several of a gateway's reconnects.
pub const CONFIRM_WINDOW: Duration = Duration::from_secs(15);

/// What became of the last event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirmed {
    /// The gateway answered.
    Answered(EndReceipt),
    /// Nobody answered before the give-up time.
    Unanswered { tries: u32 },
}

/// Sends `payload` to `subject` as a request until the gateway answers or `give_up_at` passes,
/// sending `message` in-progress acks meanwhile.
pub async fn confirm_end(
    client: &async_nats::Client,
    subject: &str,
    payload: Bytes,
    message: &Message,
    give_up_at: Instant,
) -> Confirmed {
    let mut backoff = Backoff::new(RETRY_FIRST, RETRY_MAX);
    let mut tries = 0;
    loop {
        tries += 1;
        let request = async_nats::Request::new()
            .payload(payload.clone())
            .timeout(Some(ANSWER_WAIT));
        match client.send_request(subject.to_owned(), request).await {
            Ok(answer) => match EndReceipt::from_json(&answer.payload) {
                Ok(receipt) => return Confirmed::Answered(receipt),
                Err(error) => {
                    // Not a receipt: a gateway older than receipts cannot answer; treat it so.
                    tracing::warn!(%error, "the gateway's answer to the last event is not a receipt");
                    return Confirmed::Answered(EndReceipt::Complete);
                }
            },
            Err(error) => {
                let delay = backoff.next_delay();
                if Instant::now() + delay >= give_up_at {
                    return Confirmed::Unanswered { tries };
                }
                tracing::debug!(%error, tries, "last event unanswered; sending it again");
                if let Err(error) = message.ack_with(AckKind::Progress).await {
                    tracing::debug!(%error, "in-progress ack failed");
                }
                tokio::time::sleep(delay).await;
            }
        }
    }
}
