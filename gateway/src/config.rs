//! Command-line flags, each also read from `CODER_<FLAG>`.

use crate::http::ClientTimeouts;
use clap::Parser;
use coder_nats::client_args::NatsArgs;
use coder_nats::provision::StreamSettings;
use coder_nats::subjects;
use coder_service::parse_seconds;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "gateway",
    version,
    about = "OpenAI-compatible gateway in front of a NATS JetStream work queue"
)]
pub struct Config {
    /// Address of the OpenAI-compatible HTTP API.
    #[arg(long, env = "CODER_LISTEN", default_value = "0.0.0.0:8000")]
    pub listen: SocketAddr,

    /// Address of the Prometheus `/metrics` listener.
    #[arg(long, env = "CODER_METRICS_LISTEN", default_value = "0.0.0.0:8001")]
    pub metrics_listen: SocketAddr,

    /// Where NATS is and the credentials and TLS files to connect with.
    #[command(flatten)]
    pub nats: NatsArgs,

    /// The token after `coder.replies.` in this gateway's reply subjects
    /// (`coder.replies.<scope>.<gateway-id>.<request-id>`): NATS permissions let a gateway user
    /// read one scope's replies, so deployments that must not read each other's use different
    /// scopes and users.
    #[arg(long, env = "CODER_REPLIES_SCOPE", default_value = subjects::DEFAULT_REPLIES_SCOPE, value_parser = parse_replies_scope)]
    pub replies_scope: String,

    /// File of API keys, one `name:key` per line (a bare key is named `key-<line>`); when set,
    /// every `/v1` route requires `Authorization: Bearer <key>`. Read again on SIGHUP.
    #[arg(long, env = "CODER_API_KEYS_FILE")]
    pub api_keys_file: Option<PathBuf>,

    /// Serve the API without keys on a non-loopback address (refused otherwise).
    #[arg(long, env = "CODER_ALLOW_UNAUTHENTICATED", default_value_t = false)]
    pub allow_unauthenticated: bool,

    /// Requests one key may have open at once (0: no limit); beyond, 429. Without keys, all
    /// clients together.
    #[arg(long, env = "CODER_MAX_CONCURRENT_PER_KEY", default_value_t = 0)]
    pub max_concurrent_per_key: u32,

    /// Requests one key may make per minute, in bursts of up to that many (0: no limit); beyond,
    /// 429 with `Retry-After`. Without keys, all clients together.
    #[arg(long, env = "CODER_RATE_LIMIT_PER_KEY", default_value_t = 0)]
    pub rate_limit_per_key: u32,

    /// Seconds a client has to send a request's headers (and a connection may sit idle between
    /// requests) before it is closed.
    #[arg(long, env = "CODER_HEADER_READ_TIMEOUT", default_value = "30", value_parser = parse_seconds)]
    pub header_read_timeout: Duration,

    /// Seconds a client has to send a request's body, from its headers on.
    #[arg(long, env = "CODER_BODY_READ_TIMEOUT", default_value = "60", value_parser = parse_seconds)]
    pub body_read_timeout: Duration,

    /// Seconds a response may wait for a client that reads nothing before the connection is
    /// closed (and its generation cancelled).
    #[arg(long, env = "CODER_IDLE_WRITE_TIMEOUT", default_value = "30", value_parser = parse_seconds)]
    pub idle_write_timeout: Duration,

    /// Worker events a request may have waiting for its client; a client slower than that is
    /// cut off and its generation cancelled.
    #[arg(long, env = "CODER_STREAM_EVENT_BUFFER", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..))]
    pub stream_event_buffer: u32,

    /// Seconds a request may take from receipt to its last token (queueing included) before it is
    /// cancelled and answered 504.
    #[arg(long, env = "CODER_REQUEST_TIMEOUT", default_value = "300", value_parser = parse_seconds)]
    pub request_timeout: Duration,

    /// Seconds a request's publish is retried, with the same `Nats-Msg-Id`, while JetStream
    /// acks nothing (a stream leader election, a reconnect to another node) before the client
    /// gets 503; never past the request's deadline.
    #[arg(long, env = "CODER_PUBLISH_RETRY_WINDOW", default_value = "10", value_parser = parse_seconds)]
    pub publish_retry_window: Duration,

    /// Deliveries JetStream makes of a request at most: the workers' `--max-deliver`. Worker
    /// events with a higher attempt number cannot be genuine and are dropped.
    #[arg(long, env = "CODER_MAX_DELIVER", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_deliver: u32,

    /// Requests a model may have queued (not yet started) before new ones get 429.
    #[arg(long, env = "CODER_MAX_PENDING_PER_MODEL", default_value_t = 256)]
    pub max_pending_per_model: u64,

    /// Largest accepted request body, in bytes (413 beyond).
    #[arg(long, env = "CODER_MAX_BODY_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Models to provision consumers for at start, comma-separated, so requests for them queue
    /// even before any worker has ever run (scale from zero).
    #[arg(long, env = "CODER_MODELS", value_delimiter = ',')]
    pub models: Vec<String>,

    /// Replicas of the request stream (3 on a 3-node NATS cluster).
    #[arg(long, env = "CODER_STREAM_REPLICAS", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=5))]
    pub stream_replicas: u8,

    /// Requests the stream holds, all models together; beyond, new requests get 429.
    #[arg(long, env = "CODER_STREAM_MAX_MESSAGES", default_value_t = StreamSettings::default().max_messages, value_parser = clap::value_parser!(i64).range(1..))]
    pub stream_max_messages: i64,

    /// Bytes the stream holds, all models together; beyond, new requests get 429.
    #[arg(long, env = "CODER_STREAM_MAX_BYTES", default_value_t = StreamSettings::default().max_bytes, value_parser = clap::value_parser!(i64).range(1..))]
    pub stream_max_bytes: i64,

    /// Requests the stream holds for one model; beyond, new requests for it get 429.
    #[arg(long, env = "CODER_STREAM_MAX_MESSAGES_PER_MODEL", default_value_t = StreamSettings::default().max_messages_per_model, value_parser = clap::value_parser!(i64).range(1..))]
    pub stream_max_messages_per_model: i64,

    /// Largest `max_tokens` a request may ask for.
    #[arg(long, env = "CODER_MAX_TOKENS_LIMIT", default_value_t = 32_768)]
    pub max_tokens_limit: u32,

    /// Seconds between reads of the queue state (backlog gauges, admission, known models).
    #[arg(long, env = "CODER_QUEUE_POLL_INTERVAL", default_value = "1", value_parser = parse_seconds)]
    pub queue_poll_interval: Duration,

    /// Seconds in-flight requests get to finish after SIGTERM.
    #[arg(long, env = "CODER_SHUTDOWN_GRACE", default_value = "30", value_parser = parse_seconds)]
    pub shutdown_grace: Duration,

    /// Record metrics (off only to measure what instrumentation costs).
    #[arg(long, env = "CODER_METRICS_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    pub metrics_enabled: bool,

    /// Log as JSON lines instead of human-readable text.
    #[arg(long, env = "CODER_LOG_JSON", default_value_t = false)]
    pub log_json: bool,
}

impl Config {
    /// The limits on a client's pace.
    pub fn client_timeouts(&self) -> ClientTimeouts {
        ClientTimeouts {
            header_read: self.header_read_timeout,
            body_read: self.body_read_timeout,
            idle_write: self.idle_write_timeout,
        }
    }

    /// The request stream's limits, which the gateway owns.
    pub fn stream_settings(&self) -> StreamSettings {
        StreamSettings {
            max_messages: self.stream_max_messages,
            max_bytes: self.stream_max_bytes,
            max_messages_per_model: self.stream_max_messages_per_model,
            replicas: usize::from(self.stream_replicas),
            ..StreamSettings::default()
        }
    }
}

fn parse_replies_scope(value: &str) -> Result<String, String> {
    subjects::check_replies_scope(value).map(|()| value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_design() {
        let config = Config::parse_from(["gateway"]);
        assert_eq!(config.listen.port(), 8000);
        assert_eq!(config.metrics_listen.port(), 8001);
        assert_eq!(config.nats.url, "nats://127.0.0.1:4222");
        assert_eq!(config.replies_scope, "gateway");
        assert!(config.metrics_enabled);
    }

    #[test]
    fn a_replies_scope_that_is_not_one_token_is_refused() {
        let error = Config::try_parse_from(["gateway", "--replies-scope", "a.b"]).unwrap_err();
        assert!(error.to_string().contains("--replies-scope"), "{error}");
    }
}
