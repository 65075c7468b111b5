//! Command-line flags, each also read from `CODER_<FLAG>`.

use crate::affinity::signals::AffinitySettings;
use clap::{Args, Parser, Subcommand, ValueEnum};
use coder_nats::client_args::NatsArgs;
use coder_nats::provision::{ConsumerSettings, StreamSettings};
use coder_service::parse_seconds;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "gpu-worker",
    version,
    about = "Serves a code model from the NATS JetStream work queue"
)]
#[command(args_conflicts_with_subcommands = true, args_override_self = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: WorkerConfig,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Measure prompt and decode speed, time to first token and peak memory of a model file.
    Bench(crate::bench::BenchArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// A real model with candle (GGUF file or Hugging Face directory).
    Candle,
    /// Deterministic code-like text without a model, for load tests.
    Synthetic,
}

#[derive(Debug, Clone, Args)]
pub struct WorkerConfig {
    /// Where NATS is and the credentials and TLS files to connect with.
    #[command(flatten)]
    pub nats: NatsArgs,

    /// Address of the Prometheus `/metrics` listener.
    #[arg(long, env = "CODER_METRICS_LISTEN", default_value = "0.0.0.0:8002")]
    pub metrics_listen: SocketAddr,

    /// What generates the tokens.
    #[arg(long, env = "CODER_BACKEND", value_enum, default_value_t = BackendKind::Candle)]
    pub backend: BackendKind,

    /// The model name clients ask for (any string: `.`, `/`, `:` and spaces are fine).
    #[arg(
        long,
        env = "CODER_MODEL",
        default_value = "qwen2.5-coder-1.5b-instruct"
    )]
    pub model: String,

    /// GGUF file or Hugging Face directory (candle backend).
    #[arg(
        long,
        env = "CODER_MODEL_PATH",
        default_value = "models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
    )]
    pub model_path: PathBuf,

    /// `tokenizer.json` to use instead of the one in the GGUF metadata or model directory.
    #[arg(long, env = "CODER_TOKENIZER_PATH")]
    pub tokenizer_path: Option<PathBuf>,

    /// `cpu` or `cuda:N` (needs the `cuda` feature).
    #[arg(long, env = "CODER_DEVICE", default_value = "cpu")]
    pub device: String,

    /// Requests generated at once: the sequences of a batch (candle), each fed in every
    /// forward step. The worker pulls only when one is free.
    #[arg(long, env = "CODER_CONCURRENCY", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub concurrency: u32,

    /// Candle: tokens per forward step, every sequence's together. Each decoding sequence feeds
    /// one; prompts share the rest in chunks, so a long prompt holds the others' next token up
    /// for one step at most.
    #[arg(long, env = "CODER_MAX_BATCH_TOKENS", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub max_batch_tokens: u32,

    /// Candle: bytes of KV cache the running sequences may reserve (each reserves its prompt
    /// plus `max_tokens`; a request that does not fit waits in the worker, and the worker pulls
    /// no more meanwhile). Default: the model's full context for every sequence.
    #[arg(long, env = "CODER_KV_CACHE_BYTES", value_parser = clap::value_parser!(u64).range(1..))]
    pub kv_cache_bytes: Option<u64>,

    /// Candle (qwen2, gemma3): bytes of KV that finished requests leave for later prompts that
    /// start with the same tokens, which then feed only the rest; least recently used first out.
    /// The synthetic backend counts bytes of prompt text it has seen instead. 0 turns the prefix
    /// cache off.
    #[arg(long, env = "CODER_PREFIX_CACHE_BYTES", default_value_t = 1 << 30)]
    pub prefix_cache_bytes: u64,

    /// Cache affinity: take the requests of the queue partitions this worker owns (those it wins
    /// among the live workers of its model) first, so follow-ups land where their prefix is
    /// cached. `false`: every partition is everyone's, first come first served.
    #[arg(long, env = "CODER_PREFIX_AFFINITY", default_value_t = true, action = clap::ArgAction::Set)]
    pub prefix_affinity: bool,

    /// Seconds a request in another worker's partition waits for that worker before this one
    /// takes it, while that worker says it has room (one that is full or gone is not waited
    /// for).
    #[arg(long, env = "CODER_STEAL_AFTER", default_value = "0.25", value_parser = parse_seconds)]
    pub steal_after: Duration,

    /// Synthetic backend: milliseconds per generated token.
    #[arg(long, env = "CODER_SYNTHETIC_MS_PER_TOKEN", default_value_t = 0.0)]
    pub synthetic_ms_per_token: f64,

    /// Seconds a delivered request may go without an ack or progress before JetStream redelivers
    /// it (the consumer's `ack_wait`); progress is sent every third of it while generating.
    #[arg(long, env = "CODER_ACK_WAIT", default_value = "30", value_parser = parse_seconds)]
    pub ack_wait: Duration,

    /// Deliveries of one request before JetStream gives up on it.
    #[arg(long, env = "CODER_MAX_DELIVER", default_value_t = 3)]
    pub max_deliver: i64,

    /// Replicas of the request stream (3 on a 3-node NATS cluster).
    #[arg(long, env = "CODER_STREAM_REPLICAS", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=5))]
    pub stream_replicas: u8,

    /// Seconds between heartbeats; the gateway forgets a worker after three missed ones.
    #[arg(long, env = "CODER_HEARTBEAT_INTERVAL", default_value = "2", value_parser = parse_seconds)]
    pub heartbeat_interval: Duration,

    /// Seconds in-flight generations get to finish after SIGTERM.
    #[arg(long, env = "CODER_SHUTDOWN_GRACE", default_value = "60", value_parser = parse_seconds)]
    pub shutdown_grace: Duration,

    /// Log as JSON lines instead of human-readable text.
    #[arg(long, env = "CODER_LOG_JSON", default_value_t = false)]
    pub log_json: bool,
}

impl WorkerConfig {
    /// The stream as a worker creates it when it starts first: its limits are the gateway's.
    pub fn stream_settings(&self) -> StreamSettings {
        StreamSettings {
            replicas: usize::from(self.stream_replicas),
            ..StreamSettings::default()
        }
    }

    /// How the pull loop weighs partition ownership.
    pub fn affinity(&self) -> AffinitySettings {
        AffinitySettings {
            enabled: self.prefix_affinity,
            steal_after: self.steal_after,
        }
    }

    /// The model's consumers, which belong to its workers.
    pub fn consumer_settings(&self) -> ConsumerSettings {
        ConsumerSettings {
            ack_wait: self.ack_wait,
            max_deliver: self.max_deliver,
            ..ConsumerSettings::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_design() {
        let cli = Cli::parse_from(["gpu-worker", "--backend", "synthetic", "--model", "a/b:c d"]);
        assert!(cli.command.is_none());
        assert_eq!(cli.serve.metrics_listen.port(), 8002);
        assert_eq!(cli.serve.backend, BackendKind::Synthetic);
        assert_eq!(cli.serve.model, "a/b:c d");
        assert_eq!(cli.serve.concurrency, 1);
        assert_eq!(cli.serve.max_batch_tokens, 256);
        assert_eq!(cli.serve.kv_cache_bytes, None);
        assert_eq!(cli.serve.prefix_cache_bytes, 1 << 30);
        assert!(cli.serve.prefix_affinity);
        assert_eq!(cli.serve.steal_after, Duration::from_millis(250));
        let off = Cli::parse_from(["gpu-worker", "--prefix-affinity", "false"]);
        assert!(!off.serve.prefix_affinity);
    }

    #[test]
    fn zero_concurrency_is_refused() {
        assert!(Cli::try_parse_from(["gpu-worker", "--concurrency", "0"]).is_err());
    }
}
