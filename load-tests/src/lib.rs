//! `coder-load`: an LLM-aware load generator for the OpenAI API the gateway serves, with
//! end-to-end accounting against the gateway's and workers' own metrics, and the benchmarks that
//! back the project's claims about speed and "nothing lost".
//!
//! A run sends completions or chat completions in a closed loop (N connections) or an open loop
//! (Poisson arrivals at a rate), bounded by a request count or a duration. It measures end-to-end
//! latency and, when streaming, time to first token and the gaps between tokens; it prints a
//! table, writes `result.json` and an HTML report with charts, and checks that the gateway counted
//! every request exactly once under the code the client saw. A failed check fails the run.
//!
//! # Layout
//! - [`cli`]: the command line, one clap struct per subcommand.
//! - [`commands`]: dispatch of a subcommand and its exit status.
//! - [`mod@run`]: `coder-load run` end to end; [`run()`] is the library entry tests call.
//! - [`workload`]: endpoints, prompts and the pre-serialised request bodies.
//! - [`shared_prefix`]: the repo-context and multi-turn workloads' text, seeded.
//! - [`max_tokens`]: `--max-tokens` as one value or a range each request draws from.
//! - [`client`]: one request, measured into a [`record::RequestRecord`].
//! - [`sse`]: server-sent event decoding and chunk parsing.
//! - [`record`]: a request's timings and single terminal outcome.
//! - [`runner`]: closed and open loops, Poisson arrivals, the run's bound, live counters.
//! - [`progress`]: the progress bar.
//! - [`stats`]: nearest-rank percentiles and summaries.
//! - [`timeline`]: throughput and latency per time bin.
//! - [`scrape`]: reading counters from Prometheus text exposition.
//! - [`accounting`]: client tallies against counter deltas: the verdict.
//! - [`answers`]: every answer whole, against a reference answer to the same body.
//! - [`snapshot`]: taking counter snapshots and waiting for them to settle.
//! - [`result`]: what `result.json` holds.
//! - [`report`]: the terminal table, the charts and the HTML report.
//! - [`raw_nats`]: the raw JetStream round-trip benchmark.
//! - [`wait_ready`]: waiting for a gateway (and a model) to be ready.
//! - [`summary`]: several results as one Markdown table.
//! - [`abuse`]: hostile and malformed requests beside a normal load, and the processes watched.
//! - [`verdict`]: a benchmark's notes and PASS/MISS lines against its targets, for bench.sh.

pub mod abuse;
pub mod accounting;
pub mod answers;
pub mod cli;
pub mod client;
pub mod commands;
pub mod max_tokens;
pub mod progress;
pub mod raw_nats;
pub mod record;
pub mod report;
pub mod result;
pub mod run;
pub mod runner;
pub mod scrape;
pub mod shared_prefix;
pub mod snapshot;
pub mod sse;
pub mod stats;
pub mod summary;
pub mod timeline;
pub mod verdict;
pub mod wait_ready;
pub mod workload;

pub use cli::{Cli, Command, RawNatsArgs, RunArgs, SummaryArgs, VerdictArgs, WaitReadyArgs};
pub use run::{run, RunOutcome};
