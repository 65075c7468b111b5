//! Reading one level's round files into each engine's medians.
//!
//! The files, in the level's folder (`DIR/avx2/`, `DIR/native/`): `candle-N.json` (`gpu-worker
//! bench --json`), `llama-pp-N.json` and `llama-tg-N.json` (`llama-bench -o json`, the prompt and
//! the generation test), `llama-N.rss_kib` (`/usr/bin/time -f %M` of the generation test). A
//! round that failed leaves an empty or partial file, which is left out (its failure is already
//! in failures.txt); a level whose folder is missing has no figures.

use crate::verdict::format::median;
use anyhow::Context;
use serde_json::Value;
use std::path::{Path, PathBuf};

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
const KIB_PER_GIB: f64 = 1024.0 * 1024.0;

/// One engine's medians over the rounds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Engine {
    pub decode_tps: Option<f64>,
    pub prompt_tps: Option<f64>,
    pub peak_rss_gib: Option<f64>,
}

/// One level's figures: both engines, and the kernels the worker said it ran.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LevelRounds {
    pub candle: Engine,
    pub llama: Engine,
    /// `cpu_kernels` of the candle rounds, each distinct value once, in round order.
    pub kernels: Vec<String>,
}

impl LevelRounds {
    /// Reads the round files in `dir`; a missing folder is a level without rounds.
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        if !dir.is_dir() {
            return Ok(Self::default());
        }
        let candle = json_rounds(dir, "candle-", ".json")?;
        let candle_field = |key: &str| candle.iter().filter_map(|r| r.get(key)?.as_f64()).collect();
        let mut kernels: Vec<String> = Vec::new();
        for name in candle.iter().filter_map(|r| r.get("cpu_kernels")?.as_str()) {
            if !kernels.iter().any(|k| k == name) {
                kernels.push(name.to_owned());
            }
        }
        let candle_rss: Vec<f64> = candle_field("peak_rss_bytes");
        Ok(Self {
            candle: Engine {
                decode_tps: median(candle_field("decode_tokens_per_second")),
                prompt_tps: median(candle_field("prompt_tokens_per_second")),
                peak_rss_gib: median(candle_rss.iter().map(|b| b / GIB).collect()),
            },
            llama: Engine {
                decode_tps: median(avg_ts(&json_rounds(dir, "llama-tg-", ".json")?)),
                prompt_tps: median(avg_ts(&json_rounds(dir, "llama-pp-", ".json")?)),
                peak_rss_gib: median(rss_rounds(dir)?),
            },
            kernels,
        })
    }
}

/// The rounds' files named `prefix*suffix` in `dir`, in name order.
fn round_files(dir: &Path, prefix: &str, suffix: &str) -> anyhow::Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if name.starts_with(prefix) && name.ends_with(suffix) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// The JSON round files that parse.
fn json_rounds(dir: &Path, prefix: &str, suffix: &str) -> anyhow::Result<Vec<Value>> {
    let mut rounds = Vec::new();
    for path in round_files(dir, prefix, suffix)? {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        if let Ok(value) = serde_json::from_str(&text) {
            rounds.push(value);
        }
    }
    Ok(rounds)
}

/// Every test's `avg_ts` in llama-bench's JSON arrays.
fn avg_ts(rounds: &[Value]) -> Vec<f64> {
    rounds
        .iter()
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(|test| test.get("avg_ts")?.as_f64())
        .collect()
}

/// llama-bench's peak RSS per round in GiB, from `/usr/bin/time`'s `%M` (KiB); its other lines
/// ("Command exited with non-zero status") are not figures.
fn rss_rounds(dir: &Path) -> anyhow::Result<Vec<f64>> {
    let mut gib = Vec::new();
    for path in round_files(dir, "llama-", ".rss_kib")? {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        gib.extend(
            text.lines()
                .filter_map(|line| line.trim().parse::<f64>().ok())
                .map(|kib| kib / KIB_PER_GIB),
        );
    }
    Ok(gib)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn rounds_are_read_into_medians() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for (round, decode, rss) in [(1, 36.0, 1.1), (2, 37.0, 1.2), (3, 35.0, 1.3)] {
            let candle = serde_json::json!({
                "cpu_kernels": "avx2",
                "decode_tokens_per_second": decode, "prompt_tokens_per_second": 160.0 + decode,
                "peak_rss_bytes": rss * GIB,
            });
            write(d, &format!("candle-{round}.json"), &candle.to_string());
            let tg = format!(r#"[{{"avg_ts": {}}}]"#, decode - 1.0);
            write(d, &format!("llama-tg-{round}.json"), &tg);
            write(
                d,
                &format!("llama-pp-{round}.json"),
                r#"[{"avg_ts": 180.0}]"#,
            );
            write(
                d,
                &format!("llama-{round}.rss_kib"),
                &format!("{}\n", 1_782_580 + round),
            );
        }
        // A failed round: an empty candle file and time's note before the figure.
        write(d, "candle-4.json", "");
        write(
            d,
            "llama-4.rss_kib",
            "Command exited with non-zero status 1\n1782579\n",
        );
        let rounds = LevelRounds::load(d).unwrap();
        let (candle, llama) = (rounds.candle, rounds.llama);
        assert_eq!(rounds.kernels, ["avx2"]);
        assert_eq!(candle.decode_tps, Some(36.0));
        assert_eq!(candle.prompt_tps, Some(196.0));
        assert!((candle.peak_rss_gib.unwrap() - 1.2).abs() < 1e-9);
        assert_eq!(llama.decode_tps, Some(35.0));
        assert_eq!(llama.prompt_tps, Some(180.0));
        let llama_rss = llama.peak_rss_gib.unwrap();
        assert!(
            (llama_rss - 1_782_581.5 / KIB_PER_GIB).abs() < 1e-12,
            "{llama_rss}"
        );
    }

    #[test]
    fn every_kernel_level_the_rounds_report_is_kept_once() {
        let dir = tempfile::tempdir().unwrap();
        for (round, kernels) in [(1, "avx2"), (2, "generic"), (3, "avx2")] {
            let candle = serde_json::json!({ "cpu_kernels": kernels });
            write(
                dir.path(),
                &format!("candle-{round}.json"),
                &candle.to_string(),
            );
        }
        let rounds = LevelRounds::load(dir.path()).unwrap();
        assert_eq!(rounds.kernels, ["avx2", "generic"]);
    }

    #[test]
    fn a_missing_or_empty_folder_has_no_figures() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            LevelRounds::load(&dir.path().join("native")).unwrap(),
            LevelRounds::default()
        );
        assert_eq!(
            LevelRounds::load(dir.path()).unwrap(),
            LevelRounds::default()
        );
    }
}
