//! The command line of `coder-load`: one clap struct per subcommand (those of `verdict`'s
//! benchmarks live beside their rules, in [`crate::verdict`]).
//!
//! Every flag also reads `CODER_LOAD_<FLAG>` from the environment. The prefix is `CODER_LOAD_`
//! rather than `CODER_` because the gateway and the worker already read `CODER_MODEL`,
//! `CODER_CONCURRENCY` and `CODER_NATS_URL`: a shell set up for them must not silently reshape a
//! load test.

use crate::max_tokens::MaxTokens;
pub use crate::verdict::VerdictArgs;
use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "coder-load",
    version,
    about = "LLM-aware load generator and benchmarks"
)]
pub struct Cli {
    /// Runtime threads of the load generator; by default 1 for `run` (so it takes at most one
    /// core from the stack it measures) and 2 for `raw-nats` (which plays both gateway and worker).
    #[arg(long, global = true, env = "CODER_LOAD_THREADS")]
    pub threads: Option<usize>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load the gateway's OpenAI API, report, and check the gateway's own accounting.
    Run(Box<RunArgs>),
    /// Benchmark a raw async-nats JetStream publish + pull + reply round trip.
    RawNats(RawNatsArgs),
    /// Wait until the gateway is ready (and, with `--model`, serves that model).
    WaitReady(WaitReadyArgs),
    /// Put several result.json files side by side in one Markdown table.
    Summary(SummaryArgs),
    /// A benchmark's notes and PASS/MISS lines against its targets, for bench.sh's summaries.
    Verdict(VerdictArgs),
    /// Hostile and malformed requests against a running stack beside a normal load: fails on a
    /// 5xx, a held connection, a normal request's error, or a watched process gone or leaking.
    Abuse(Box<AbuseArgs>),
}

impl Cli {
    /// Runtime threads for the chosen subcommand.
    pub fn runtime_threads(&self) -> usize {
        let default = match self.command {
            Command::RawNats(_) => 2,
            _ => 1,
        };
        self.threads.unwrap_or(default).max(1)
    }
}

/// `coder-load abuse`.
#[derive(Debug, Clone, Parser)]
pub struct AbuseArgs {
    /// Base URL of the gateway's OpenAI API (`http://` only: cases are written on raw TCP).
    #[arg(long, env = "CODER_LOAD_URL", default_value = "http://127.0.0.1:8000")]
    pub url: String,
    /// A model the stack serves: the valid parts of each case, and the normal load.
    #[arg(long, env = "CODER_LOAD_MODEL")]
    pub model: String,
    /// API key, when the gateway has keys.
    #[arg(long, env = "CODER_LOAD_API_KEY")]
    pub api_key: Option<String>,
    /// Seed of the random cases.
    #[arg(long, env = "CODER_LOAD_SEED", default_value_t = 1)]
    pub seed: u64,
    /// Random cases (several hostile fields at once) beside the fixed ones.
    #[arg(long, env = "CODER_LOAD_RANDOM_CASES", default_value_t = 200)]
    pub random_cases: usize,
    /// Cases in flight at once.
    #[arg(long, env = "CODER_LOAD_PARALLEL", default_value_t = 8)]
    pub parallel: usize,
    /// Seconds a case may take before its connection counts as held (past the gateway's body
    /// read timeout, 60 s by default).
    #[arg(long, env = "CODER_LOAD_CASE_TIMEOUT", default_value = "75", value_parser = parse_seconds)]
    pub case_timeout: Duration,
    /// Seconds a slow client (slowloris, never reading) may be held before it counts as held
    /// (past the gateway's header read and idle write timeouts, 30 s by default).
    #[arg(long, env = "CODER_LOAD_SLOW_LIMIT", default_value = "45", value_parser = parse_seconds)]
    pub slow_limit: Duration,
    /// `max_tokens` of the streamed answer the never-reading client asks for.
    #[arg(long, env = "CODER_LOAD_STOP_READING_TOKENS", default_value_t = 30_000)]
    pub stop_reading_tokens: u32,
    /// The gateway's `--max-body-bytes`: bodies just under and over it are sent.
    #[arg(long, env = "CODER_LOAD_MAX_BODY_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Connections of the normal load (valid 4-token completions, each must be a 200).
    #[arg(long, env = "CODER_LOAD_NORMAL_CONCURRENCY", default_value_t = 2)]
    pub normal_concurrency: usize,
    /// A process to watch, `NAME=PID` (repeat): it must still run at the end, and come back
    /// within the slacks below of its resident memory and open descriptors at the start.
    #[arg(long, env = "CODER_LOAD_WATCH", value_delimiter = ',')]
    pub watch: Vec<crate::abuse::watch::Watched>,
    /// MiB of resident memory a watched process may keep above its start.
    #[arg(long, env = "CODER_LOAD_RSS_SLACK_MIB", default_value_t = 64)]
    pub rss_slack_mib: u64,
    /// Open descriptors a watched process may keep above its start.
    #[arg(long, env = "CODER_LOAD_FD_SLACK", default_value_t = 16)]
    pub fd_slack: u64,
    /// Seconds to wait for the watched processes to come back after the cases.
    #[arg(long, env = "CODER_LOAD_SETTLE", default_value = "30", value_parser = parse_seconds)]
    pub settle: Duration,
    /// Write the report (every case's status, the totals, the processes) as JSON here.
    #[arg(long, env = "CODER_LOAD_OUT")]
    pub out: Option<PathBuf>,
}

/// `coder-load run`.
#[derive(Debug, Clone, Parser)]
#[command(group(ArgGroup::new("shape").required(true).args(["concurrency", "rate"])))]
#[command(group(ArgGroup::new("bound").required(true).args(["requests", "duration", "conversations"])))]
pub struct RunArgs {
    /// Base URL of the gateway's OpenAI API (`/v1/...` is appended).
    #[arg(long, env = "CODER_LOAD_URL", default_value = "http://127.0.0.1:8000")]
    pub url: String,
    /// Model name sent in every request.
    #[arg(long, env = "CODER_LOAD_MODEL")]
    pub model: String,
    /// Closed loop: this many connections, each sending its next request when its last one ends.
    #[arg(long, env = "CODER_LOAD_CONCURRENCY")]
    pub concurrency: Option<usize>,
    /// Open loop: requests per second with Poisson arrivals, whatever the answers' speed.
    #[arg(long, env = "CODER_LOAD_RATE")]
    pub rate: Option<f64>,
    /// Stop after sending this many requests. In an open loop, arrivals skipped because
    /// --max-in-flight requests were outstanding are not sent and do not count: exactly N are
    /// sent, and the skipped arrivals are reported beside them.
    #[arg(long, env = "CODER_LOAD_REQUESTS")]
    pub requests: Option<u64>,
    /// Stop sending after this many seconds (requests in flight are waited for).
    #[arg(long, env = "CODER_LOAD_DURATION", value_parser = parse_seconds)]
    pub duration: Option<Duration>,
    /// Ask for server-sent events and measure time to first token and inter-token latency.
    #[arg(long, env = "CODER_LOAD_STREAM")]
    pub stream: bool,
    /// Use `/v1/chat/completions` (one user message) instead of `/v1/completions`.
    #[arg(long, env = "CODER_LOAD_CHAT")]
    pub chat: bool,
    /// `max_tokens` of every request: `N`, or `MIN..MAX` (both included) to draw each request's
    /// value uniformly from that range with a seeded RNG (see --length-seed).
    #[arg(long, env = "CODER_LOAD_MAX_TOKENS", default_value = "16")]
    pub max_tokens: MaxTokens,
    /// Seed of the per-request `max_tokens` draws when --max-tokens is a range (random when not
    /// given; the result records it). Request n gets the same value for the same seed.
    #[arg(long, env = "CODER_LOAD_LENGTH_SEED")]
    pub length_seed: Option<u64>,
    /// `temperature` of every request.
    #[arg(long, env = "CODER_LOAD_TEMPERATURE", default_value_t = 0.0)]
    pub temperature: f32,
    /// `seed` of every request (omitted when not given).
    #[arg(long, env = "CODER_LOAD_SEED")]
    pub seed: Option<u64>,
    /// Prompts, one per line (a line starting with `"` is a JSON string, for multi-line prompts);
    /// requests cycle through them. Without it, a built-in set of code prompts is used.
    #[arg(long, env = "CODER_LOAD_PROMPT_FILE")]
    pub prompt_file: Option<PathBuf>,
    /// What to send: `plain` (the prompts, in turn), `repo-context` (one long source file ahead
    /// of many short, different questions: every request shares the file) or `multiturn`
    /// (conversations sharing a system prompt, each turn resending the history with the answers
    /// given; chat, --concurrency conversations at once, bounded by --conversations).
    #[arg(long, env = "CODER_LOAD_WORKLOAD", value_enum, default_value_t = WorkloadKind::Plain)]
    pub workload: WorkloadKind,
    /// multiturn: conversations to play; the run sends --conversations × --turns requests.
    #[arg(long, env = "CODER_LOAD_CONVERSATIONS")]
    pub conversations: Option<usize>,
    /// multiturn: turns per conversation.
    #[arg(long, env = "CODER_LOAD_TURNS", default_value_t = 4)]
    pub turns: usize,
    /// repo-context and multiturn: bytes of the shared file (about 4 bytes a token).
    #[arg(long, env = "CODER_LOAD_SHARED_PREFIX_BYTES", default_value_t = 4000)]
    pub shared_prefix_bytes: usize,
    /// repo-context and multiturn: seed of the generated file and questions (random when not
    /// given; the result records it).
    #[arg(long, env = "CODER_LOAD_WORKLOAD_SEED")]
    pub workload_seed: Option<u64>,
    /// Open every request's prompt with a line naming the run and the request, so that no two
    /// requests (warm-ups included) share a prefix a server's prompt cache could reuse. Bodies
    /// are then built per request: for model benchmarks, not for the pipeline's rates.
    #[arg(long, env = "CODER_LOAD_DISTINCT_PROMPTS")]
    pub distinct_prompts: bool,
    /// A JSON object whose fields are added to every request body, for a server's own options
    /// (e.g. `{"cache_prompt": false}` for llama-server); a field of the same name is replaced.
    #[arg(long, env = "CODER_LOAD_EXTRA_FIELDS", value_parser = parse_extra_fields)]
    pub extra_fields: Option<ExtraFields>,
    /// Folder for result.json and report.html (created if missing).
    #[arg(long, env = "CODER_LOAD_OUT")]
    pub out: PathBuf,
    /// Name of this run in reports (default: derived from the load shape).
    #[arg(long, env = "CODER_LOAD_LABEL")]
    pub label: Option<String>,
    /// The gateway's Prometheus endpoint (default: the `--url` host, port 8001, `/metrics`).
    #[arg(long, env = "CODER_LOAD_METRICS_URL")]
    pub metrics_url: Option<String>,
    /// Workers' Prometheus endpoints (repeat or comma-separate): also check that every accepted
    /// request got exactly one worker outcome.
    #[arg(long, env = "CODER_LOAD_WORKER_METRICS_URL", value_delimiter = ',')]
    pub worker_metrics_url: Vec<String>,
    /// After the run, send each distinct request body once more and check that every
    /// successful answer equals that reference to the byte (no token lost, none repeated); a
    /// mismatch fails the accounting. For backends whose answer depends only on the body (the
    /// synthetic backend, or temperature 0).
    #[arg(long, env = "CODER_LOAD_CHECK_ANSWERS")]
    pub check_answers: bool,
    /// Skip the accounting check (for gateways whose /metrics cannot be reached).
    #[arg(long, env = "CODER_LOAD_NO_ACCOUNTING")]
    pub no_accounting: bool,
    /// How long to poll /metrics after the run for the counters to settle, in seconds.
    #[arg(long, env = "CODER_LOAD_SETTLE_TIMEOUT", value_parser = parse_seconds, default_value = "5")]
    pub settle_timeout: Duration,
    /// Per-request limit, in seconds; a request past it counts as a timeout.
    #[arg(long, env = "CODER_LOAD_TIMEOUT", value_parser = parse_seconds, default_value = "300")]
    pub timeout: Duration,
    /// Requests sent one at a time before the measured run (not measured, not accounted).
    #[arg(long, env = "CODER_LOAD_WARMUP_REQUESTS", default_value_t = 0)]
    pub warmup_requests: u64,
    /// Open loop: most requests in flight at once; an arrival beyond it is not sent, and is
    /// counted as skipped (it does not use up one of --requests).
    #[arg(long, env = "CODER_LOAD_MAX_IN_FLIGHT", default_value_t = 10_000)]
    pub max_in_flight: usize,
    /// Open loop: seed of the arrival process (random when not given; the result records it).
    #[arg(long, env = "CODER_LOAD_ARRIVAL_SEED")]
    pub arrival_seed: Option<u64>,
    /// Bearer token for gateways configured with API keys.
    #[arg(long, env = "CODER_LOAD_API_KEY", hide_env_values = true)]
    pub api_key: Option<ApiKey>,
    /// Open a new connection for every request rather than reusing an idle one. For servers
    /// that close a connection after a streamed response while their headers promise to keep
    /// it (llama.cpp's llama-server): a request sent on such a connection races the close and
    /// fails as `transport`. Costs a loopback connect per request: for model benchmarks, not
    /// for the pipeline's rates.
    #[arg(long, env = "CODER_LOAD_FRESH_CONNECTIONS")]
    pub fresh_connections: bool,
    /// Do not draw the progress bar.
    #[arg(long, env = "CODER_LOAD_NO_PROGRESS")]
    pub no_progress: bool,
    /// Do not print the final table on stdout.
    #[arg(long, env = "CODER_LOAD_QUIET")]
    pub quiet: bool,
}

/// What `coder-load run` sends (`--workload`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WorkloadKind {
    /// The prompts of --prompt-file (or the built-in ones), in turn.
    Plain,
    /// A long shared file, then one of many short questions.
    RepoContext,
    /// Conversations resending their growing history.
    Multiturn,
}

impl WorkloadKind {
    /// The name in `result.json` and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plain => "plain",
            Self::RepoContext => "repo-context",
            Self::Multiturn => "multiturn",
        }
    }
}

/// `coder-load raw-nats`.
#[derive(Debug, Clone, Parser)]
#[command(group(ArgGroup::new("bound").required(true).args(["requests", "duration"])))]
pub struct RawNatsArgs {
    /// NATS with JetStream: servers, credentials and TLS, as the gateway and the workers take
    /// them (`--nats-url`, `--nats-user`, `--nats-tls-ca`...; `CODER_NATS_*`). The user must be
    /// allowed to create and delete its own stream `CODER_LOAD_RAW_*` and use `coder-load.raw.>`:
    /// the shipped roles are not (nats/config/auth.conf), on purpose.
    #[command(flatten)]
    pub nats: coder_nats::client_args::NatsArgs,
    /// Round trips in flight at once (closed loop).
    #[arg(long, env = "CODER_LOAD_CONCURRENCY", default_value_t = 16)]
    pub concurrency: usize,
    /// Stop after this many round trips.
    #[arg(long, env = "CODER_LOAD_REQUESTS")]
    pub requests: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long, env = "CODER_LOAD_DURATION", value_parser = parse_seconds)]
    pub duration: Option<Duration>,
    /// Bytes of each request payload.
    #[arg(long, env = "CODER_LOAD_PAYLOAD_BYTES", default_value_t = 256)]
    pub payload_bytes: usize,
    /// Bytes of each reply payload.
    #[arg(long, env = "CODER_LOAD_REPLY_BYTES", default_value_t = 128)]
    pub reply_bytes: usize,
    /// Pulling responders (each one plays a worker).
    #[arg(long, env = "CODER_LOAD_WORKERS", default_value_t = 1)]
    pub workers: usize,
    /// Messages a responder asks for per pull.
    #[arg(long, env = "CODER_LOAD_BATCH", default_value_t = 64)]
    pub batch: usize,
    /// Keep the benchmark stream in memory (the product's stream is on file storage).
    #[arg(long, env = "CODER_LOAD_MEMORY")]
    pub memory: bool,
    /// Folder for result.json (optional).
    #[arg(long, env = "CODER_LOAD_OUT")]
    pub out: Option<PathBuf>,
    /// Name of this run in reports.
    #[arg(long, env = "CODER_LOAD_LABEL", default_value = "raw-nats")]
    pub label: String,
    /// Do not print the final table on stdout.
    #[arg(long, env = "CODER_LOAD_QUIET")]
    pub quiet: bool,
}

/// `coder-load wait-ready`.
#[derive(Debug, Clone, Parser)]
pub struct WaitReadyArgs {
    /// Base URL of the gateway's API.
    #[arg(long, env = "CODER_LOAD_URL", default_value = "http://127.0.0.1:8000")]
    pub url: String,
    /// Also wait until `/v1/models` lists this model (a worker for it has announced itself).
    #[arg(long, env = "CODER_LOAD_MODEL")]
    pub model: Option<String>,
    /// Give up after this many seconds.
    #[arg(long, env = "CODER_LOAD_READY_TIMEOUT", value_parser = parse_seconds, default_value = "60")]
    pub timeout: Duration,
    /// Bearer token for gateways configured with API keys.
    #[arg(long, env = "CODER_LOAD_API_KEY", hide_env_values = true)]
    pub api_key: Option<ApiKey>,
}

/// `coder-load summary`.
#[derive(Debug, Clone, Args)]
pub struct SummaryArgs {
    /// Results as `LABEL=PATH`, PATH a result.json or the folder holding one.
    #[arg(required = true)]
    pub results: Vec<String>,
    /// Label whose throughput the `ratio` column divides by.
    #[arg(long, env = "CODER_LOAD_BASELINE")]
    pub baseline: Option<String>,
    /// Heading above the table.
    #[arg(long, env = "CODER_LOAD_TITLE")]
    pub title: Option<String>,
    /// Also write the table to this file.
    #[arg(long, env = "CODER_LOAD_SUMMARY_OUT")]
    pub out: Option<PathBuf>,
}

/// `--extra-fields`, parsed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExtraFields(pub serde_json::Map<String, serde_json::Value>);

fn parse_extra_fields(text: &str) -> Result<ExtraFields, String> {
    crate::workload::parse_extra_fields(text)
        .map(ExtraFields)
        .map_err(|e| format!("{e:#}"))
}

/// An API key; never printed by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(pub String);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

impl std::str::FromStr for ApiKey {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

/// Seconds as a decimal number, with an optional `s` suffix: `20`, `2.5`, `0.5s`.
pub fn parse_seconds(text: &str) -> Result<Duration, String> {
    let number = text.trim().trim_end_matches('s');
    let seconds: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("`{text}` is not a valid duration"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_needs_exactly_one_shape_and_one_bound() {
        let base = ["coder-load", "run", "--model", "m", "--out", "o"];
        let with = |extra: &[&str]| Cli::try_parse_from(base.iter().chain(extra)).map(|_| ());
        assert!(with(&["--concurrency", "4", "--requests", "10"]).is_ok());
        assert!(with(&["--rate", "5", "--duration", "2.5"]).is_ok());
        assert!(with(&["--requests", "10"]).is_err());
        assert!(with(&["--concurrency", "4"]).is_err());
        assert!(with(&["--concurrency", "4", "--rate", "5", "--requests", "1"]).is_err());
        assert!(with(&["--concurrency", "4", "--requests", "1", "--duration", "1"]).is_err());
        assert!(with(&["--concurrency", "4", "--conversations", "3"]).is_ok());
        assert!(with(&[
            "--concurrency",
            "4",
            "--conversations",
            "3",
            "--requests",
            "1"
        ])
        .is_err());
        assert!(with(&[
            "--concurrency",
            "4",
            "--requests",
            "1",
            "--workload",
            "nope"
        ])
        .is_err());
        let issue = [
            "--url",
            "http://gw:8000",
            "--concurrency",
            "4",
            "--requests",
            "10",
        ];
        assert!(with(&[&issue[..], &["--stream", "--max-tokens", "32"]].concat()).is_ok());
    }

    #[test]
    fn extra_fields_take_a_json_object_only() {
        let base = ["coder-load", "run", "--model", "m", "--out", "o"];
        let run = [
            "--concurrency",
            "1",
            "--requests",
            "1",
            "--distinct-prompts",
        ];
        let parse = |fields: &str| {
            let flag = ["--extra-fields", fields];
            let words = base.iter().chain(&run).chain(&flag);
            match Cli::try_parse_from(words).map(|cli| cli.command) {
                Ok(Command::Run(args)) => Ok(args),
                Ok(other) => panic!("{other:?}"),
                Err(error) => Err(error.to_string()),
            }
        };
        let args = parse(r#"{"cache_prompt": false}"#).unwrap();
        assert!(args.distinct_prompts);
        let fields = args.extra_fields.unwrap().0;
        assert_eq!(fields["cache_prompt"], serde_json::Value::Bool(false));
        let error = parse("[false]").unwrap_err();
        assert!(error.contains("must be a JSON object"), "{error}");
    }

    #[test]
    fn max_tokens_takes_a_number_or_a_range() {
        let parse = |extra: &[&str]| {
            let base = [
                "coder-load",
                "run",
                "--model",
                "m",
                "--out",
                "o",
                "--rate",
                "5",
            ];
            let words = base.iter().chain(["--requests", "1"].iter()).chain(extra);
            match Cli::try_parse_from(words).map(|cli| cli.command) {
                Ok(Command::Run(args)) => Ok(args.max_tokens),
                Ok(other) => panic!("{other:?}"),
                Err(error) => Err(error.to_string()),
            }
        };
        assert_eq!(parse(&[]), Ok(MaxTokens::fixed(16)));
        assert_eq!(parse(&["--max-tokens", "1"]), Ok(MaxTokens::fixed(1)));
        let range = MaxTokens { min: 16, max: 256 };
        assert_eq!(parse(&["--max-tokens", "16..256"]), Ok(range));
        let error = parse(&["--max-tokens", "256..16"]).unwrap_err();
        assert!(error.contains("start is above its end"), "{error}");
    }

    #[test]
    fn seconds_accept_decimals_and_a_suffix() {
        assert_eq!(parse_seconds("2.5"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_seconds("3s"), Ok(Duration::from_secs(3)));
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("soon").is_err());
    }

    #[test]
    fn api_keys_do_not_print() {
        assert_eq!(format!("{:?}", ApiKey("secret".into())), "ApiKey(***)");
    }
}
