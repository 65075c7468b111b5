//! Reading a run's figures from its `result.json`, where a run that left none, or a key that is
//! `null`, is a missing figure rather than an error: a failed run is already in failures.txt, and
//! its verdicts say MISS.

use crate::report::RESULT_FILE;
use anyhow::Context;
use serde_json::Value;
use std::path::Path;

/// One run's `result.json` (written by `run`, `raw-nats` or wrk's script), or nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunFigures(Option<Value>);

impl RunFigures {
    /// Reads `dir/result.json`; a missing file is a run without figures, an unreadable or
    /// malformed one an error.
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join(RESULT_FILE);
        if !path.exists() {
            return Ok(Self(None));
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        Ok(Self(Some(value)))
    }

    pub fn from_json(value: Value) -> Self {
        Self(Some(value))
    }

    pub fn missing() -> Self {
        Self(None)
    }

    /// Whether the run left a result at all.
    pub fn present(&self) -> bool {
        self.0.is_some()
    }

    /// The number at `path` (`["latency_ms", "p99"]`), if there is one.
    pub fn number(&self, path: &[&str]) -> Option<f64> {
        let mut value = self.0.as_ref()?;
        for key in path {
            value = value.get(key)?;
        }
        value.as_f64()
    }

    /// `accounting_ok`: `Some(true)` or `Some(false)`, `None` when skipped or missing.
    pub fn accounting_ok(&self) -> Option<bool> {
        self.0.as_ref()?.get("accounting_ok")?.as_bool()
    }

    /// The failures in `errors_by_status` whose key `matches` (0 when there are none).
    pub fn errors_where(&self, matches: impl Fn(&str) -> bool) -> u64 {
        let Some(by_status) = self
            .0
            .as_ref()
            .and_then(|r| r.get("errors_by_status"))
            .and_then(Value::as_object)
        else {
            return 0;
        };
        by_status
            .iter()
            .filter(|(key, _)| matches(key))
            .filter_map(|(_, count)| count.as_u64())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_are_read_by_path_and_null_is_missing() {
        let run = RunFigures::from_json(json!({
            "throughput_rps": 12.5, "latency_ms": {"p99": null, "p50": 3}
        }));
        assert_eq!(run.number(&["throughput_rps"]), Some(12.5));
        assert_eq!(run.number(&["latency_ms", "p50"]), Some(3.0));
        assert_eq!(run.number(&["latency_ms", "p99"]), None);
        assert_eq!(run.number(&["ttft_ms", "p50"]), None);
        assert_eq!(RunFigures::missing().number(&["throughput_rps"]), None);
    }

    #[test]
    fn errors_are_counted_by_status_key() {
        let run = RunFigures::from_json(json!({
            "errors_by_status": {"429": 7, "500": 1, "503": 2, "timeout": 4}
        }));
        assert_eq!(run.errors_where(|k| k == "429"), 7);
        assert_eq!(run.errors_where(|k| k.starts_with('5')), 3);
        assert_eq!(RunFigures::missing().errors_where(|_| true), 0);
    }

    #[test]
    fn a_folder_without_a_result_is_a_missing_run_and_a_bad_one_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!RunFigures::load(dir.path()).unwrap().present());
        std::fs::write(dir.path().join(RESULT_FILE), r#"{"accounting_ok": true}"#).unwrap();
        let run = RunFigures::load(dir.path()).unwrap();
        assert_eq!(run.accounting_ok(), Some(true));
        std::fs::write(dir.path().join(RESULT_FILE), "{").unwrap();
        assert!(RunFigures::load(dir.path()).is_err());
    }
}
