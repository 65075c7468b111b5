//! Streaming a [`Generation`] as server-sent events, in its endpoint's chunk format (OpenAI's end
//! in `data: [DONE]`).
//!
//! The response is committed only when the first token (or the end) arrives, so a request that
//! fails while queued (expired, too long for the model, ...) still gets its proper HTTP status.
//! Dropping the stream (the client disconnected) drops the generation, which cancels the request.

use crate::error::ApiError;
use crate::generation::{Generation, Progress};
use crate::openai::common::UsageBody;
use crate::openai::endpoint::{to_json, ChunkFormat};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream::{self, StreamExt};
use std::convert::Infallible;

/// Waits for the first progress, then streams the rest.
pub async fn stream_response(
    mut generation: Generation,
    format: impl ChunkFormat,
    include_usage: bool,
) -> Result<Response, ApiError> {
    let first = generation.next().await?;
    let choices = generation.shape().choices;
    let opening = format.opening(generation.id, generation.model().as_str(), choices);
    let state = StreamState {
        generation,
        format,
        include_usage,
        pending: Some(first),
    };
    let rest = stream::unfold(Some(state), |state| async move {
        let mut state = state?;
        let (chunks, done) = state.step().await;
        Some((chunks, (!done).then_some(state)))
    })
    .flat_map(stream::iter);
    let events = stream::iter(opening)
        .chain(rest)
        .map(|data| Ok::<_, Infallible>(Event::default().data(data)));
    Ok(Sse::new(events).into_response())
}

struct StreamState<F> {
    generation: Generation,
    format: F,
    include_usage: bool,
    /// Progress already received (the first one) and not yet written.
    pending: Option<Progress>,
}

impl<F: ChunkFormat> StreamState<F> {
    /// The chunks for the next progress, and whether the stream is over.
    async fn step(&mut self) -> (Vec<String>, bool) {
        let progress = match self.pending.take() {
            Some(progress) => Ok(progress),
            None => self.generation.next().await,
        };
        let (id, model) = (self.generation.id, self.generation.model().as_str());
        match progress {
            Ok(Progress::Token(token))
                if token.text.is_empty()
                    && token.logprobs.is_none()
                    && token.tool_calls.is_empty() =>
            {
                (Vec::new(), false)
            }
            Ok(Progress::Token(token)) => (vec![self.format.token(id, model, token)], false),
            Ok(Progress::Done {
                finish_reasons,
                usage,
            }) => {
                let usage = self.include_usage.then(|| UsageBody::from(usage));
                (self.format.closing(id, model, finish_reasons, usage), true)
            }
            Err(error) => {
                // Headers are sent: report the error in-band, then end.
                tracing::warn!(request_id = %id, %error, "stream ended by an error");
                (self.format.failure(to_json(&error.body())), true)
            }
        }
    }
}
