//! Reading the batching benchmark's runs: per engine and concurrency level, the `coder-load run`
//! figures (`DIR/ENGINE-cN/result.json`) and the server's peak resident memory
//! (`DIR/ENGINE-cN/peak_rss_kib`, the `VmHWM` bench.sh read from /proc before stopping it). A
//! level an engine did not run, or a file a failed run did not leave, is a missing figure.

use crate::verdict::figures::RunFigures;
use anyhow::Context;
use std::path::Path;

/// File beside a run's result.json with the server process's peak RSS in KiB.
pub const PEAK_RSS_FILE: &str = "peak_rss_kib";

const KIB_PER_GIB: f64 = 1024.0 * 1024.0;

/// The two servers the benchmark drives with the same load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// gateway → NATS → one gpu-worker with `--concurrency` equal to the load.
    Worker,
    /// llama.cpp's `llama-server --parallel N`.
    LlamaServer,
}

impl Engine {
    pub const BOTH: [Engine; 2] = [Engine::Worker, Engine::LlamaServer];

    /// The prefix of its run folders, as bench.sh names them.
    pub fn name(self) -> &'static str {
        match self {
            Self::Worker => "worker",
            Self::LlamaServer => "llama-server",
        }
    }

    /// `worker-c4`.
    pub fn run_name(self, concurrency: usize) -> String {
        format!("{}-c{concurrency}", self.name())
    }
}

/// One engine's run at one level.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LevelRun {
    pub figures: RunFigures,
    pub peak_rss_gib: Option<f64>,
}

impl LevelRun {
    /// Reads `dir/result.json` and `dir/peak_rss_kib`; both may be missing.
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let figures = RunFigures::load(dir)?;
        let rss_path = dir.join(PEAK_RSS_FILE);
        let peak_rss_gib = match std::fs::read_to_string(&rss_path) {
            Ok(text) => text.trim().parse::<f64>().ok().map(|kib| kib / KIB_PER_GIB),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("reading {}", rss_path.display())),
        };
        Ok(Self {
            figures,
            peak_rss_gib,
        })
    }

    /// Output tokens of successful requests per second, over the whole run.
    pub fn aggregate_tps(&self) -> Option<f64> {
        self.figures.number(&["output_tokens_per_s"])
    }

    /// Per-request decode speed (tokens/s after the first token), median.
    pub fn decode_tps_p50(&self) -> Option<f64> {
        self.figures.number(&["tokens_per_s", "p50"])
    }

    /// Time to first token in seconds, `p50` or `p99`.
    pub fn ttft_s(&self, percentile: &str) -> Option<f64> {
        self.figures
            .number(&["ttft_ms", percentile])
            .map(|ms| ms / 1e3)
    }

    pub fn prompt_tokens_mean(&self) -> Option<f64> {
        self.figures.number(&["prompt_tokens", "mean"])
    }

    pub fn output_tokens_mean(&self) -> Option<f64> {
        self.figures.number(&["output_tokens", "mean"])
    }

    pub fn requests(&self) -> Option<f64> {
        self.figures.number(&["requests"])
    }

    /// Failed requests; `None` for a run that left no result.
    pub fn errors(&self) -> Option<f64> {
        self.figures.number(&["errors"])
    }
}

/// Both engines' runs at one concurrency level.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Level {
    pub concurrency: usize,
    pub worker: LevelRun,
    pub llama: LevelRun,
}

impl Level {
    /// Reads both engines' runs at `concurrency` from `dir`.
    pub fn load(dir: &Path, concurrency: usize) -> anyhow::Result<Self> {
        let run = |engine: Engine| LevelRun::load(&dir.join(engine.run_name(concurrency)));
        Ok(Self {
            concurrency,
            worker: run(Engine::Worker)?,
            llama: run(Engine::LlamaServer)?,
        })
    }

    pub fn run(&self, engine: Engine) -> &LevelRun {
        match engine {
            Engine::Worker => &self.worker,
            Engine::LlamaServer => &self.llama,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::RESULT_FILE;

    #[test]
    fn a_level_reads_both_engines_folders_and_tolerates_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let worker = dir.path().join("worker-c4");
        std::fs::create_dir(&worker).unwrap();
        std::fs::write(
            worker.join(RESULT_FILE),
            r#"{"output_tokens_per_s": 30.5, "ttft_ms": {"p50": 1500, "p99": null},
                "tokens_per_s": {"p50": 8.0}, "errors": 0, "requests": 16}"#,
        )
        .unwrap();
        std::fs::write(worker.join(PEAK_RSS_FILE), "1258291\n").unwrap();
        let level = Level::load(dir.path(), 4).unwrap();
        assert_eq!(level.concurrency, 4);
        assert_eq!(level.worker.aggregate_tps(), Some(30.5));
        assert_eq!(level.worker.ttft_s("p50"), Some(1.5));
        assert_eq!(level.worker.ttft_s("p99"), None);
        assert_eq!(level.worker.decode_tps_p50(), Some(8.0));
        assert_eq!(level.worker.errors(), Some(0.0));
        assert!((level.worker.peak_rss_gib.unwrap() - 1.2).abs() < 1e-6);
        assert_eq!(level.llama, LevelRun::default());
        assert_eq!(level.run(Engine::LlamaServer).errors(), None);
    }

    #[test]
    fn run_folders_are_named_engine_dash_level() {
        assert_eq!(Engine::Worker.run_name(1), "worker-c1");
        assert_eq!(Engine::LlamaServer.run_name(8), "llama-server-c8");
    }
}
