//! Sends one request and measures it into a [`RequestRecord`].
//!
//! A request never fails out of [`LoadClient::send`]: whatever happens becomes the record's single
//! [`Outcome`]. The per-request deadline is enforced here, around both the headers and the body,
//! so a timeout is told apart from a connection error and keeps the status when one arrived.

use crate::record::{Outcome, RequestRecord};
use crate::sse::{self, SseDecoder, StreamEvent, Usage};
use crate::workload::{Endpoint, Turn, Workload};
use anyhow::Context;
use bytes::Bytes;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use serde::Deserialize;
use std::time::Duration;
use tokio::time::{timeout_at, Instant};

/// Header every gateway response carries.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// An HTTP client bound to one endpoint and workload.
#[derive(Debug, Clone)]
pub struct LoadClient {
    http: reqwest::Client,
    url: reqwest::Url,
    workload: Workload,
    stream: bool,
    timeout: Duration,
    authorization: Option<HeaderValue>,
    /// Keep each answer's text in its record (for workloads that resend it).
    keep_answers: bool,
}

impl LoadClient {
    pub fn new(
        http: reqwest::Client,
        base_url: &str,
        endpoint: Endpoint,
        workload: Workload,
        stream: bool,
        timeout: Duration,
        api_key: Option<&str>,
    ) -> anyhow::Result<Self> {
        let url = endpoint_url(base_url, endpoint)?;
        let authorization = api_key
            .map(|key| HeaderValue::from_str(&format!("Bearer {key}")))
            .transpose()
            .context("the API key is not a valid header value")?
            .map(|mut value| {
                value.set_sensitive(true);
                value
            });
        Ok(Self {
            http,
            url,
            workload,
            stream,
            timeout,
            authorization,
            keep_answers: false,
        })
    }

    /// The same client, keeping each answer's text in its record.
    pub fn keeping_answers(mut self) -> Self {
        self.keep_answers = true;
        self
    }

    pub fn url(&self) -> &reqwest::Url {
        &self.url
    }

    /// Sends the `seq`-th request; `origin` is the start of the load, for the record's `start`.
    pub async fn send(&self, seq: u64, origin: Instant) -> RequestRecord {
        self.send_turn(Turn::Run(seq), origin).await
    }

    /// Sends `turn`'s request (a warm-up, or one of the run).
    pub async fn send_turn(&self, turn: Turn, origin: Instant) -> RequestRecord {
        let (body, max_tokens) = self.workload.body_for(turn);
        let sent = Instant::now();
        let mut record = self.exchange(body.clone(), sent).await;
        record.start = sent.duration_since(origin);
        record.max_tokens = Some(max_tokens);
        record.body = self.keep_answers.then_some(body);
        record
    }

    /// Sends `body` (asking for `max_tokens`), built by the caller (a conversation's turn).
    pub async fn send_body(&self, body: Bytes, max_tokens: u32, origin: Instant) -> RequestRecord {
        let sent = Instant::now();
        let mut record = self.exchange(body, sent).await;
        record.start = sent.duration_since(origin);
        record.max_tokens = Some(max_tokens);
        record
    }

    /// One request and its answer, measured from `sent`.
    async fn exchange(&self, body: Bytes, sent: Instant) -> RequestRecord {
        let deadline = sent + self.timeout;
        let mut request = self
            .http
            .post(self.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(auth) = &self.authorization {
            request = request.header(AUTHORIZATION, auth.clone());
        }
        let failed = |outcome| RequestRecord::new(Duration::ZERO, sent.elapsed(), None, outcome);
        let response = match timeout_at(deadline, request.send()).await {
            Ok(Ok(response)) => response,
            Ok(Err(error)) => {
                let mut record = failed(match () {
                    () if error.is_connect() => Outcome::Connect,
                    () if error.is_timeout() => Outcome::Timeout,
                    () => Outcome::Transport,
                });
                record.detail = Some(error_chain(&error));
                return record;
            }
            Err(_) => return failed(Outcome::Timeout),
        };
        let status = response.status().as_u16();
        let request_id = response
            .headers()
            .get(REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut record = if !response.status().is_success() {
            read_error(response, sent, deadline).await
        } else if self.stream {
            read_stream(response, sent, deadline, self.keep_answers).await
        } else {
            read_json(response, sent, deadline, self.keep_answers).await
        };
        record.status = Some(status);
        record.request_id = request_id;
        record
    }
}

/// `<base>/v1/...`, accepting a base with or without a trailing `/` or `/v1`.
pub fn endpoint_url(base_url: &str, endpoint: Endpoint) -> anyhow::Result<reqwest::Url> {
    let base = base_url.trim_end_matches('/');
    let base = base.strip_suffix("/v1").unwrap_or(base);
    let url = format!("{base}{}", endpoint.path());
    reqwest::Url::parse(&url).with_context(|| format!("`{base_url}` is not a valid base URL"))
}

/// An error and its sources, `: `-separated (reqwest's own message is only the outermost).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[derive(Deserialize)]
struct CompletionBody {
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    choices: Vec<AnswerChoice>,
}

/// A whole answer's choice: a completion's `text` or a chat `message.content`.
#[derive(Deserialize)]
struct AnswerChoice {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    message: Option<AnswerMessage>,
}

#[derive(Deserialize)]
struct AnswerMessage {
    #[serde(default)]
    content: Option<String>,
}

impl CompletionBody {
    fn answer(self) -> String {
        let choice = self.choices.into_iter().next();
        choice
            .and_then(|c| c.text.or(c.message.and_then(|m| m.content)))
            .unwrap_or_default()
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    error: sse::ErrorObject,
}

async fn read_json(
    response: reqwest::Response,
    sent: Instant,
    deadline: Instant,
    keep_answer: bool,
) -> RequestRecord {
    let body = timeout_at(deadline, response.bytes()).await;
    let mut record = RequestRecord::new(Duration::ZERO, sent.elapsed(), None, Outcome::Ok);
    match body {
        Err(_) => record.outcome = Outcome::Timeout,
        Ok(Err(_)) => record.outcome = Outcome::Incomplete,
        Ok(Ok(bytes)) => match serde_json::from_slice::<CompletionBody>(&bytes) {
            Ok(body) => {
                let usage = body.usage;
                record.prompt_tokens = usage.map(|u| u.prompt_tokens);
                record.output_tokens = usage.map(|u| u.completion_tokens);
                record.cached_tokens = usage.and_then(|u| u.cached_tokens());
                record.answer = keep_answer.then(|| body.answer());
            }
            Err(_) => record.outcome = Outcome::BadBody,
        },
    }
    record
}

async fn read_error(
    response: reqwest::Response,
    sent: Instant,
    deadline: Instant,
) -> RequestRecord {
    let body = timeout_at(deadline, response.bytes()).await;
    let mut record = RequestRecord::new(Duration::ZERO, sent.elapsed(), None, Outcome::HttpError);
    if let Ok(Ok(bytes)) = body {
        record.error_type = serde_json::from_slice::<ErrorBody>(&bytes)
            .ok()
            .and_then(|body| body.error.error_type);
    }
    record
}

/// What a stream has shown so far.
#[derive(Default)]
struct StreamProgress {
    ttft: Option<Duration>,
    last_token: Option<Instant>,
    gaps_us: Vec<u32>,
    text_chunks: u32,
    usage: Option<Usage>,
    done: bool,
    failure: Option<(Outcome, Option<String>)>,
    /// The text so far, when the answer is kept.
    answer: Option<String>,
}

impl StreamProgress {
    fn on_event(&mut self, data: &str, sent: Instant) {
        match sse::parse_event(data) {
            Ok(StreamEvent::Done) => self.done = true,
            Ok(StreamEvent::Chunk { has_content, usage }) => {
                if has_content {
                    let now = Instant::now();
                    match self.last_token {
                        None => self.ttft = Some(now.duration_since(sent)),
                        Some(last) => {
                            let gap = now.duration_since(last).as_micros();
                            self.gaps_us.push(u32::try_from(gap).unwrap_or(u32::MAX));
                        }
                    }
                    self.last_token = Some(now);
                    self.text_chunks += 1;
                    if let Some(answer) = self.answer.as_mut() {
                        answer.push_str(&sse::chunk_text(data).unwrap_or_default());
                    }
                }
                self.usage = usage.or(self.usage);
            }
            Ok(StreamEvent::Error { error_type }) => {
                self.failure
                    .get_or_insert((Outcome::StreamError, error_type));
            }
            Err(_) => {
                self.failure.get_or_insert((Outcome::BadBody, None));
            }
        }
    }
}

async fn read_stream(
    mut response: reqwest::Response,
    sent: Instant,
    deadline: Instant,
    keep_answer: bool,
) -> RequestRecord {
    let mut decoder = SseDecoder::default();
    let mut events = Vec::new();
    let mut progress = StreamProgress {
        answer: keep_answer.then(String::new),
        ..StreamProgress::default()
    };
    let ended = loop {
        match timeout_at(deadline, response.chunk()).await {
            Err(_) => break Some(Outcome::Timeout),
            Ok(Err(_)) => break Some(Outcome::Incomplete),
            Ok(Ok(None)) => break None,
            Ok(Ok(Some(bytes))) => {
                decoder.push(&bytes, &mut events);
                for data in events.drain(..) {
                    progress.on_event(&data, sent);
                }
            }
        }
    };
    let outcome = match (ended, progress.failure.as_ref(), progress.done) {
        (_, Some((failure, _)), _) => *failure,
        (Some(broken), None, _) => broken,
        (None, None, true) => Outcome::Ok,
        (None, None, false) => Outcome::Incomplete,
    };
    let mut record = RequestRecord::new(Duration::ZERO, sent.elapsed(), None, outcome);
    record.ttft = progress.ttft;
    record.token_gaps_us = progress.gaps_us;
    record.prompt_tokens = progress.usage.map(|u| u.prompt_tokens);
    record.cached_tokens = progress.usage.and_then(|u| u.cached_tokens());
    record.answer = progress.answer;
    record.output_tokens = Some(
        progress
            .usage
            .map_or(progress.text_chunks, |u| u.completion_tokens),
    );
    record.error_type = progress.failure.and_then(|(_, error_type)| error_type);
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_urls_tolerate_slashes_and_v1() {
        for base in [
            "http://h:8000",
            "http://h:8000/",
            "http://h:8000/v1",
            "http://h:8000/v1/",
        ] {
            assert_eq!(
                endpoint_url(base, Endpoint::ChatCompletions)
                    .unwrap()
                    .as_str(),
                "http://h:8000/v1/chat/completions"
            );
        }
        assert!(endpoint_url("not a url", Endpoint::Completions).is_err());
    }

    #[test]
    fn a_llama_server_stream_counts_one_token_per_chunk_and_takes_its_usage() {
        let mut decoder = SseDecoder::default();
        let mut events = Vec::new();
        decoder.push(
            crate::sse::tests::LLAMA_SERVER_CHAT_STREAM.as_bytes(),
            &mut events,
        );
        let mut progress = StreamProgress::default();
        let sent = Instant::now();
        for data in &events {
            progress.on_event(data, sent);
        }
        assert!(progress.done);
        assert!(progress.failure.is_none());
        assert_eq!(progress.text_chunks, 4);
        assert_eq!(progress.gaps_us.len(), 3);
        assert!(progress.ttft.is_some());
        assert_eq!(
            progress.usage,
            Some(Usage {
                prompt_tokens: 35,
                completion_tokens: 4,
                prompt_tokens_details: Some(crate::sse::PromptTokensDetails {
                    cached_tokens: Some(0),
                }),
            })
        );
    }
}
