//! `coder-load summary`: several runs side by side, as a Markdown table for the README.
//!
//! It reads any result.json written by `run` or `raw-nats`, through the keys they share.

use crate::cli::SummaryArgs;
use crate::report::table::num;
use anyhow::{bail, Context};
use serde_json::Value;
use std::fmt::Write;
use std::path::PathBuf;

/// One labelled result file.
#[derive(Debug, Clone)]
pub struct Entry {
    pub label: String,
    pub result: Value,
}

pub fn summary(args: &SummaryArgs) -> anyhow::Result<String> {
    let entries = args
        .results
        .iter()
        .map(|spec| load(spec))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let table = render(&entries, args.baseline.as_deref(), args.title.as_deref())?;
    if let Some(out) = &args.out {
        std::fs::write(out, &table).with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(table)
}

/// Reads `LABEL=PATH` (PATH a result.json or a folder holding one).
pub fn load(spec: &str) -> anyhow::Result<Entry> {
    let (label, path) = spec
        .split_once('=')
        .with_context(|| format!("`{spec}` is not LABEL=PATH"))?;
    let mut path = PathBuf::from(path);
    if path.is_dir() {
        path = path.join(crate::report::RESULT_FILE);
    }
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let result =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    Ok(Entry {
        label: label.to_owned(),
        result,
    })
}

pub fn render(
    entries: &[Entry],
    baseline: Option<&str>,
    title: Option<&str>,
) -> anyhow::Result<String> {
    let base_rps = match baseline {
        None => None,
        Some(label) => match entries.iter().find(|e| e.label == label) {
            Some(entry) => number(&entry.result, &["throughput_rps"]),
            None => bail!("baseline `{label}` is not among the results"),
        },
    };
    let mut out = String::new();
    if let Some(title) = title {
        let _ = writeln!(out, "### {title}\n");
    }
    out.push_str(
        "| run | requests | ok/s | p50 ms | p90 ms | p99 ms | max ms | ttft p50 ms | out tok/s \
         | errors | 429 share | 5xx | accounting |",
    );
    if base_rps.is_some() {
        out.push_str(" ratio |");
    }
    out.push_str("\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    if base_rps.is_some() {
        out.push_str("---:|");
    }
    out.push('\n');
    for entry in entries {
        out.push_str(&row(entry, base_rps));
    }
    Ok(out)
}

fn row(entry: &Entry, base_rps: Option<f64>) -> String {
    let r = &entry.result;
    let requests = number(r, &["requests"]).unwrap_or(0.0);
    let errors_by_status = r.get("errors_by_status").and_then(Value::as_object);
    let count = |pred: &dyn Fn(&str) -> bool| -> f64 {
        errors_by_status
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| pred(k))
                    .filter_map(|(_, v)| v.as_f64())
                    .fold(0.0, |sum, v| sum + v) // an empty f64 `sum()` is -0.0
            })
            .unwrap_or(0.0)
    };
    let rejected = count(&|k| k == "429");
    let server_errors = count(&|k| k.starts_with('5'));
    let share = if requests > 0.0 {
        format!("{:.1}%", 100.0 * rejected / requests)
    } else {
        "-".into()
    };
    let accounting = match r.get("accounting_ok") {
        Some(Value::Bool(true)) => "ok",
        Some(Value::Bool(false)) => "FAILED",
        _ => "-",
    };
    let rps = number(r, &["throughput_rps"]);
    let mut line = format!(
        "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {share} | {} | {accounting} |",
        entry.label,
        requests,
        num(rps),
        num(number(r, &["latency_ms", "p50"])),
        num(number(r, &["latency_ms", "p90"])),
        num(number(r, &["latency_ms", "p99"])),
        num(number(r, &["latency_ms", "max"])),
        num(number(r, &["ttft_ms", "p50"])),
        num(number(r, &["output_tokens_per_s"])),
        number(r, &["errors"]).unwrap_or(0.0),
        server_errors,
    );
    if let Some(base) = base_rps {
        let ratio = rps
            .filter(|_| base > 0.0)
            .map(|rps| format!("{:.2}x", rps / base));
        let _ = write!(line, " {} |", ratio.unwrap_or_else(|| "-".into()));
    }
    line.push('\n');
    line
}

fn number(value: &Value, path: &[&str]) -> Option<f64> {
    path.iter().try_fold(value, |v, key| v.get(key))?.as_f64()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(label: &str, rps: f64, errors: Value) -> Entry {
        Entry {
            label: label.into(),
            result: json!({
                "requests": 100, "errors": 10, "throughput_rps": rps,
                "latency_ms": {"p50": 1.5, "p90": 2.0, "p99": 3.0, "max": 4.0},
                "ttft_ms": {"p50": null}, "errors_by_status": errors, "accounting_ok": true,
            }),
        }
    }

    #[test]
    fn the_table_shows_ratios_rejections_and_server_errors() {
        let entries = [
            entry("one", 100.0, json!({})),
            entry("two", 0.0, json!({"timeout": 1})),
            entry("four", 380.0, json!({"429": 8, "503": 2})),
        ];
        let table = render(&entries, Some("one"), Some("Scaling")).unwrap();
        assert!(table.starts_with("### Scaling"));
        let four = table.lines().find(|l| l.starts_with("| four")).unwrap();
        assert!(four.contains("| 8.0% | 2 | ok | 3.80x |"), "{four}");
        let one = table.lines().find(|l| l.starts_with("| one")).unwrap();
        assert!(one.contains("| 0.0% | 0 | ok | 1.00x |"), "{one}");
        assert!(render(&entries, Some("three"), None).is_err());
        let columns: Vec<usize> = table
            .lines()
            .skip(2)
            .map(|l| l.matches('|').count())
            .collect();
        assert!(
            columns.iter().all(|c| *c == columns[0]),
            "{columns:?}\n{table}"
        );
    }
}
