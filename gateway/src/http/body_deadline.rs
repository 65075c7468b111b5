//! A request body that must arrive whole before a deadline: a client that trickles its body (or
//! stops sending it) gets an error instead of holding the connection and a handler.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Sleep;

/// The body was not received in time.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
pub struct BodyTimedOut(pub Duration);

pub struct DeadlineBody<B> {
    inner: B,
    /// Started with the body: the head has arrived.
    deadline: Pin<Box<Sleep>>,
    limit: Duration,
}

impl<B> DeadlineBody<B> {
    pub fn new(inner: B, limit: Duration) -> Self {
        Self {
            inner,
            deadline: Box::pin(tokio::time::sleep(limit)),
            limit,
        }
    }
}

impl<B> Body for DeadlineBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|result| result.map_err(Into::into)));
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(BodyTimedOut(self.limit).into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test(start_paused = true)]
    async fn a_body_that_never_ends_fails_at_its_deadline() {
        let silent = futures::stream::pending::<Result<Frame<Bytes>, std::io::Error>>();
        let body = http_body_util::StreamBody::new(silent);
        let mut body = DeadlineBody::new(body, Duration::from_secs(5));
        let error = body.frame().await.expect("an error frame").unwrap_err();
        assert!(error.is::<BodyTimedOut>(), "{error}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_whole_body_in_time_passes() {
        let whole = http_body_util::Full::new(Bytes::from("{}"));
        let body = DeadlineBody::new(whole, Duration::from_secs(5));
        let bytes = body.collect().await.expect("the body").to_bytes();
        assert_eq!(bytes, "{}");
    }
}
