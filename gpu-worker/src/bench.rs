//! `gpu-worker bench`: how fast a model runs on this machine with the candle backend.
//!
//! Loads the model (warm-up included, as the worker does), then generates greedily from a
//! prompt of a chosen length several times, measuring time to first token, prompt tokens/s
//! (prefill), decode tokens/s (after the first token) and the process's peak resident memory.
//! With `--concurrency N`, each run starts N generations at once on distinct prompts, which the
//! engine batches, and the report adds their aggregate output tokens/s.
//! Numbers from a busy machine are not numbers: on two cores any other process halves them.

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use coder_nats::{Prompt, SamplingParams};
use serde::Serialize;

use crate::backend::candle::{CandleBackend, CandleOptions, PromptTiles};
use crate::backend::{Backend, Flow, TokenSink};

/// Arguments of `gpu-worker bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// The model to measure: a GGUF file or a Hugging Face directory.
    #[arg(
        long,
        env = "CODER_MODEL_PATH",
        default_value = "models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
    )]
    pub model_path: PathBuf,
    /// `cpu`, or `cuda:N` in a build with the `cuda` feature.
    #[arg(long, env = "CODER_DEVICE", default_value = "cpu")]
    pub device: String,
    /// Prompt length in tokens.
    #[arg(long, default_value_t = 512)]
    pub prompt_tokens: usize,
    /// Tokens to generate per run (fewer if the model ends its answer first).
    #[arg(long, default_value_t = 128)]
    pub max_tokens: u32,
    /// Measured runs; the report gives the median of each figure.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Generations started at once per run, on distinct prompts (the engine batches them).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub concurrency: u32,
    /// Tokens per forward step, every sequence's together (the worker's `--max-batch-tokens`).
    #[arg(long, default_value_t = CandleOptions::DEFAULT_MAX_BATCH_TOKENS)]
    pub max_batch_tokens: usize,
    /// Keep the tiles candle builds for prompt products of matrices without a kernel of this
    /// crate's (GGUF qwen2 and gemma3 on the CPU): faster prompts for those, twice their memory.
    #[arg(long)]
    pub keep_prompt_tiles: bool,
    /// Print the report as JSON (for scripts) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// What one bench measured. Serialises to JSON; `Display` prints it for people.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub model_path: String,
    pub architecture: String,
    pub device: String,
    /// The CPU kernels' instruction-set level (`CODER_CPU_KERNELS` sets it), `none` on a GPU.
    pub cpu_kernels: String,
    /// Load and warm-up, as `coder_worker_model_load_seconds` reports it.
    pub load_seconds: f64,
    pub prompt_tokens: usize,
    pub max_tokens: u32,
    /// Generations per run.
    pub concurrency: u32,
    /// Medians over every generation of every run.
    pub time_to_first_token_seconds: f64,
    pub prompt_tokens_per_second: f64,
    pub decode_tokens_per_second: f64,
    /// Median over the runs of all generations' tokens over the run's wall time.
    pub aggregate_output_tokens_per_second: f64,
    /// `VmHWM` of this process after the runs.
    pub peak_rss_bytes: u64,
    pub runs: Vec<BenchRun>,
}

/// One measured generation.
#[derive(Debug, Clone, Serialize)]
pub struct BenchRun {
    pub time_to_first_token_seconds: f64,
    pub generated_tokens: u32,
    pub decode_seconds: f64,
    pub prompt_tokens_per_second: f64,
    pub decode_tokens_per_second: f64,
}

/// Loads the model and measures `args.runs` generations.
pub fn run(args: &BenchArgs) -> anyhow::Result<BenchReport> {
    anyhow::ensure!(args.runs > 0, "--runs must be at least 1");
    anyhow::ensure!(args.prompt_tokens > 0, "--prompt-tokens must be at least 1");
    let mut options = CandleOptions::new(&args.model_path, "bench");
    options.device = args.device.clone();
    options.max_sequences = args.concurrency as usize;
    options.max_batch_tokens = args.max_batch_tokens;
    // Every run feeds the same prompts: measured from a cold start each time.
    options.prefix_cache_bytes = 0;
    if args.keep_prompt_tiles {
        options.prompt_tiles = PromptTiles::Kept;
    }
    let backend = CandleBackend::load(&options).context("loading the model")?;
    let prompts = (0..args.concurrency as usize)
        .map(|i| prompt_of(&backend, args.prompt_tokens, i))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let params = SamplingParams {
        max_tokens: args.max_tokens,
        temperature: 0.0,
        ..Default::default()
    };

    let mut runs = Vec::with_capacity(args.runs * prompts.len());
    let mut aggregates = Vec::with_capacity(args.runs);
    for i in 0..args.runs {
        let started = Instant::now();
        let generations = generate_together(&backend, &prompts, &params)?;
        let wall = started.elapsed().as_secs_f64();
        let generated: u32 = generations.iter().map(|run| run.generated_tokens).sum();
        aggregates.push(generated as f64 / wall);
        for run in generations {
            tracing::info!(run = i + 1, ?run, "bench run");
            runs.push(run);
        }
    }
    let median_of = |f: fn(&BenchRun) -> f64| median(runs.iter().map(f).collect());
    Ok(BenchReport {
        model_path: args.model_path.display().to_string(),
        architecture: backend.architecture().to_owned(),
        device: backend.info().device.clone(),
        cpu_kernels: backend.info().cpu_kernels.to_owned(),
        load_seconds: backend.load_duration().as_secs_f64(),
        prompt_tokens: args.prompt_tokens,
        max_tokens: args.max_tokens,
        concurrency: args.concurrency,
        time_to_first_token_seconds: median_of(|r| r.time_to_first_token_seconds),
        prompt_tokens_per_second: median_of(|r| r.prompt_tokens_per_second),
        decode_tokens_per_second: median_of(|r| r.decode_tokens_per_second),
        aggregate_output_tokens_per_second: median(aggregates),
        peak_rss_bytes: peak_rss_bytes().unwrap_or(0),
        runs,
    })
}

/// One generation per prompt, all started at once on threads of their own, as a worker's
/// slots start them.
fn generate_together(
    backend: &CandleBackend,
    prompts: &[Vec<u32>],
    params: &SamplingParams,
) -> anyhow::Result<Vec<BenchRun>> {
    std::thread::scope(|scope| {
        let running: Vec<_> = prompts
            .iter()
            .map(|prompt| {
                scope.spawn(move || {
                    let mut sink = Timing::new();
                    let generation = backend.generate_tokens(prompt, params, &mut sink)?;
                    Ok(sink.report(prompt.len(), generation.usage.completion_tokens))
                })
            })
            .collect();
        running
            .into_iter()
            .map(|thread| match thread.join() {
                Ok(result) => result,
                Err(_) => Err(anyhow::anyhow!("a bench generation panicked")),
            })
            .collect()
    })
}

/// Exactly `n` prompt tokens of ordinary code; `variant` starts them at another token, so
/// each of several generations has a prompt of its own.
fn prompt_of(backend: &CandleBackend, n: usize, variant: usize) -> anyhow::Result<Vec<u32>> {
    const CODE: &str = "def quicksort(items):\n    if len(items) <= 1:\n        return items\n    \
        pivot = items[len(items) // 2]\n    left = [x for x in items if x < pivot]\n    \
        middle = [x for x in items if x == pivot]\n    right = [x for x in items if x > pivot]\n    \
        return quicksort(left) + middle + quicksort(right)\n\n";
    let unit = backend.encode_prompt(&Prompt::Text(CODE.to_owned()))?;
    Ok(unit
        .iter()
        .copied()
        .cycle()
        .skip(variant * 7)
        .take(n)
        .collect())
}

/// Peak resident set size of this process (`VmHWM`), on Linux.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// Records when each token arrives.
struct Timing {
    started: Instant,
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Timing {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            first: None,
            last: None,
        }
    }

    fn report(&self, prompt_tokens: usize, generated: u32) -> BenchRun {
        let ttft = self
            .first
            .map_or(Duration::ZERO, |f| f - self.started)
            .as_secs_f64();
        let decode = match (self.first, self.last) {
            (Some(first), Some(last)) => (last - first).as_secs_f64(),
            _ => 0.0,
        };
        let per_second = |n: f64, s: f64| if s > 0.0 { n / s } else { 0.0 };
        BenchRun {
            time_to_first_token_seconds: ttft,
            generated_tokens: generated,
            decode_seconds: decode,
            prompt_tokens_per_second: per_second(prompt_tokens as f64, ttft),
            decode_tokens_per_second: per_second(generated.saturating_sub(1) as f64, decode),
        }
    }
}

impl TokenSink for Timing {
    fn token(&mut self, _text: &str) -> Flow {
        let now = Instant::now();
        self.first.get_or_insert(now);
        self.last = Some(now);
        Flow::Continue
    }
    fn is_cancelled(&self) -> bool {
        false
    }
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "model           {} ({}, {}, CPU kernels {})",
            self.model_path, self.architecture, self.device, self.cpu_kernels
        )?;
        writeln!(f, "load + warm-up  {:.2} s", self.load_seconds)?;
        writeln!(
            f,
            "prompt          {} tokens, up to {} generated, {} at once, {} runs",
            self.prompt_tokens,
            self.max_tokens,
            self.concurrency,
            self.runs.len() / self.concurrency.max(1) as usize
        )?;
        writeln!(
            f,
            "time to first   {:.3} s",
            self.time_to_first_token_seconds
        )?;
        writeln!(
            f,
            "prompt          {:.1} tokens/s",
            self.prompt_tokens_per_second
        )?;
        writeln!(
            f,
            "decode          {:.1} tokens/s",
            self.decode_tokens_per_second
        )?;
        writeln!(
            f,
            "aggregate       {:.1} output tokens/s",
            self.aggregate_output_tokens_per_second
        )?;
        write!(
            f,
            "peak RSS        {:.2} GiB",
            self.peak_rss_bytes as f64 / (1u64 << 30) as f64
        )
    }
}
