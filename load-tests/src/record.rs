//! What the client saw of one request: its timings and its single terminal outcome.

use std::time::Duration;

/// How a request ended, seen from the client. Every request gets exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// A 2xx response whose body (or stream, through `[DONE]`) arrived whole.
    Ok,
    /// A response with a status of 400 or more (or another non-2xx status).
    HttpError,
    /// A 2xx stream that carried an error object.
    StreamError,
    /// A 2xx body or stream that ended early (no `[DONE]`, or the connection broke mid-body).
    Incomplete,
    /// A 2xx body or stream event that is not the JSON the API promises.
    BadBody,
    /// The request ran past `--timeout` (with or without a response status).
    Timeout,
    /// No connection to the gateway.
    Connect,
    /// Any other failure before a response status arrived.
    Transport,
}

impl Outcome {
    /// Stable name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::HttpError => "http_error",
            Self::StreamError => "stream_error",
            Self::Incomplete => "incomplete",
            Self::BadBody => "bad_body",
            Self::Timeout => "timeout",
            Self::Connect => "connect",
            Self::Transport => "transport",
        }
    }
}

/// One request, as measured.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestRecord {
    /// When it was sent, from the start of the load.
    pub start: Duration,
    /// Send to last byte (or to the failure).
    pub latency: Duration,
    /// HTTP status, if a response arrived.
    pub status: Option<u16>,
    pub outcome: Outcome,
    /// Send to the first chunk carrying text (streams only).
    pub ttft: Option<Duration>,
    /// Gaps between successive text chunks, in microseconds (streams only).
    pub token_gaps_us: Vec<u32>,
    /// The `max_tokens` the request asked for.
    pub max_tokens: Option<u32>,
    /// From the response's `usage`.
    pub prompt_tokens: Option<u32>,
    /// From the response's `usage`, else the number of text chunks of a stream.
    pub output_tokens: Option<u32>,
    /// The response's `x-request-id`.
    pub request_id: Option<String>,
    /// `error.type` of an OpenAI error body or stream error.
    pub error_type: Option<String>,
    /// What the HTTP client said, for failures without a response (kept for diagnostics only).
    pub detail: Option<String>,
    /// `usage.prompt_tokens_details.cached_tokens`, when the server reports it.
    pub cached_tokens: Option<u32>,
    /// A conversation's turn (from 1), for the multi-turn workload.
    pub turn: Option<u32>,
    /// The answer's text, kept only by clients that resend it (the multi-turn workload) or
    /// check it (`--check-answers`).
    pub answer: Option<String>,
    /// The request body, kept with the answer, so the answer can be checked against another to
    /// the same body.
    pub body: Option<bytes::Bytes>,
}

impl RequestRecord {
    /// A record with only the timing and outcome filled in.
    pub fn new(start: Duration, latency: Duration, status: Option<u16>, outcome: Outcome) -> Self {
        Self {
            start,
            latency,
            status,
            outcome,
            ttft: None,
            token_gaps_us: Vec::new(),
            max_tokens: None,
            prompt_tokens: None,
            output_tokens: None,
            request_id: None,
            error_type: None,
            detail: None,
            cached_tokens: None,
            turn: None,
            answer: None,
            body: None,
        }
    }

    pub fn is_ok(&self) -> bool {
        self.outcome == Outcome::Ok
    }

    /// When it ended, from the start of the load.
    pub fn end(&self) -> Duration {
        self.start + self.latency
    }

    /// The key under which a failure is counted in "errors by status": the HTTP code for an
    /// error response, the outcome for a failure without one, both for a broken 2xx body.
    pub fn error_key(&self) -> Option<String> {
        match (self.outcome, self.status) {
            (Outcome::Ok, _) => None,
            (Outcome::HttpError, Some(code)) => Some(code.to_string()),
            (outcome, Some(code)) => Some(format!("{code} {}", outcome.as_str())),
            (outcome, None) => Some(outcome.as_str().to_owned()),
        }
    }

    /// Generation speed of this request in tokens/s: after the first token for streams, over the
    /// whole request otherwise.
    pub fn tokens_per_second(&self) -> Option<f64> {
        let tokens = f64::from(self.output_tokens?);
        match self.ttft {
            Some(ttft) if tokens > 1.0 => {
                let decode = (self.latency.saturating_sub(ttft)).as_secs_f64();
                (decode > 0.0).then(|| (tokens - 1.0) / decode)
            }
            Some(_) => None,
            None => {
                let total = self.latency.as_secs_f64();
                (total > 0.0 && tokens > 0.0).then(|| tokens / total)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(status: Option<u16>, outcome: Outcome) -> RequestRecord {
        RequestRecord::new(Duration::ZERO, Duration::from_millis(10), status, outcome)
    }

    #[test]
    fn errors_are_keyed_by_code_or_by_what_went_wrong() {
        assert_eq!(record(Some(200), Outcome::Ok).error_key(), None);
        assert_eq!(
            record(Some(429), Outcome::HttpError).error_key().as_deref(),
            Some("429")
        );
        assert_eq!(
            record(Some(200), Outcome::Incomplete)
                .error_key()
                .as_deref(),
            Some("200 incomplete")
        );
        assert_eq!(
            record(None, Outcome::Timeout).error_key().as_deref(),
            Some("timeout")
        );
    }

    #[test]
    fn streaming_speed_excludes_the_first_token() {
        let mut r = record(Some(200), Outcome::Ok);
        r.latency = Duration::from_millis(1100);
        r.ttft = Some(Duration::from_millis(100));
        r.output_tokens = Some(11);
        assert!((r.tokens_per_second().unwrap() - 10.0).abs() < 1e-9);
        r.ttft = None;
        assert!((r.tokens_per_second().unwrap() - 10.0).abs() < 1e-9);
    }
}
