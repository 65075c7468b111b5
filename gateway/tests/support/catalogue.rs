//! The metric catalogue as exposed (names, types, label keys, buckets), written out by hand apart
//! from `metrics-common`'s `names.rs` since it is the contract (the README, "Metrics"), and the
//! checks of an exposition against it: nothing missing, nothing else, no OpenTelemetry scope
//! labels, and `promtool check metrics` without findings.
//!
//! Shared by path with `gpu-worker/tests`, so it names nothing else of the harness.

use prometheus_parse::{Scrape, Value as Reading};
use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};
use Kind::{Counter, Gauge, Histogram};

/// `coder_model_request_duration_seconds` boundaries of the contract, `+Inf` last.
pub const REQUEST_DURATION_BUCKETS: &[f64] = &[
    0.1,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    f64::INFINITY,
];
/// The OpenTelemetry SDK's default histogram boundaries: never acceptable here.
pub const OTEL_DEFAULT_BUCKETS: &[f64] = &[
    0.0, 5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1000.0, 2500.0, 5000.0, 7500.0,
    10000.0,
];

/// A sample's type, as the parser reports it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
    /// `_sum` and `_count` lines of a histogram, as the parser reports them.
    Untyped,
}

/// One metric family of the catalogue: exposition name, type, label keys (without `le`).
pub struct Family {
    pub name: &'static str,
    pub kind: Kind,
    pub labels: &'static [&'static str],
}

pub const fn family(name: &'static str, kind: Kind, labels: &'static [&'static str]) -> Family {
    Family { name, kind, labels }
}

pub const BY_MODEL: &[&str] = &["model_name"];
pub const GPU: &[&str] = &["gpu_id", "model_name"];

#[rustfmt::skip]
pub const GATEWAY_CATALOGUE: &[Family] = &[
    family("coder_model_requests_total", Counter, &["model_name", "endpoint", "status", "code"]),
    family("coder_model_request_duration_seconds", Histogram, &["model_name", "endpoint"]),
    family("coder_model_active_requests", Gauge, BY_MODEL),
    family("coder_model_time_to_first_token_seconds", Histogram, BY_MODEL),
    family("coder_model_time_per_output_token_seconds", Histogram, BY_MODEL),
    family("coder_model_prompt_tokens_total", Counter, BY_MODEL),
    family("coder_model_generation_tokens_total", Counter, BY_MODEL),
    family("coder_queue_pending_requests", Gauge, BY_MODEL),
    family("coder_queue_inflight_requests", Gauge, BY_MODEL),
    family("coder_queue_oldest_request_age_seconds", Gauge, BY_MODEL),
    family("coder_queue_wait_seconds", Histogram, BY_MODEL),
    family("coder_queue_rejected_total", Counter, &["model_name", "reason"]),
    family("coder_queue_redeliveries_total", Counter, BY_MODEL),
    family("coder_workers_connected", Gauge, BY_MODEL),
];

#[rustfmt::skip]
pub const WORKER_CATALOGUE: &[Family] = &[
    family("coder_worker_slots", Gauge, &["model_name", "state"]),
    family("coder_worker_requests_total", Counter, &["model_name", "outcome"]),
    family("coder_worker_info", Gauge, &["model_name", "backend", "device", "cpu_kernels"]),
    family("coder_worker_model_load_seconds", Gauge, BY_MODEL),
];

/// The engine's families: only from a backend that runs forward steps (candle), so optional
/// for the synthetic backend.
#[rustfmt::skip]
pub const ENGINE_CATALOGUE: &[Family] = &[
    family("coder_worker_batch_size", Histogram, BY_MODEL),
    family("coder_worker_step_tokens", Histogram, BY_MODEL),
    family("coder_worker_prefill_tokens_total", Counter, BY_MODEL),
    family("coder_worker_decode_tokens_total", Counter, BY_MODEL),
    family("coder_worker_kv_cache_usage_ratio", Gauge, BY_MODEL),
    family("coder_worker_prefix_cache_queried_tokens_total", Counter, BY_MODEL),
    family("coder_worker_prefix_cache_hit_tokens_total", Counter, BY_MODEL),
    family("coder_worker_prefix_cache_bytes", Gauge, BY_MODEL),
    family("coder_worker_prefix_cache_evictions_total", Counter, BY_MODEL),
];

/// NVML families: only where a GPU is present, so optional here.
#[rustfmt::skip]
pub const GPU_CATALOGUE: &[Family] = &[
    family("nvidia_gpu_memory_used_bytes", Gauge, GPU),
    family("nvidia_gpu_memory_total_bytes", Gauge, GPU),
    family("nvidia_gpu_utilization_ratio", Gauge, GPU),
    family("nvidia_gpu_temperature_celsius", Gauge, GPU),
    family("nvidia_gpu_power_watts", Gauge, GPU),
];

/// Everything in `scrape` that departs from `catalogue`: a family missing (unless `optional`),
/// a sample of another type or label-key set, a histogram without its `+Inf` bucket, `_sum` or
/// `_count`, and any sample name the catalogue does not have.
pub fn catalogue_problems<'a>(
    scrape: &Scrape,
    catalogue: impl IntoIterator<Item = &'a Family>,
    optional: &[&str],
) -> Vec<String> {
    let mut expected: Vec<(String, Kind, BTreeSet<String>, bool)> = Vec::new();
    for family in catalogue {
        let labels = set(family.labels);
        let required = !optional.contains(&family.name);
        expected.push((
            family.name.to_owned(),
            family.kind,
            labels.clone(),
            required,
        ));
        if family.kind == Kind::Histogram {
            for suffix in ["_sum", "_count"] {
                let name = format!("{}{suffix}", family.name);
                expected.push((name, Kind::Untyped, labels.clone(), required));
            }
        }
    }
    let mut problems = Vec::new();
    for (name, kind, labels, required) in &expected {
        let samples: Vec<_> = scrape
            .samples
            .iter()
            .filter(|s| &s.metric == name)
            .collect();
        if samples.is_empty() && *required {
            problems.push(format!("{name}: missing"));
        }
        for sample in samples {
            let keys: BTreeSet<String> = sample.labels.keys().cloned().collect();
            if kind_of(&sample.value) != *kind {
                problems.push(format!("{name}: {:?}, expected {kind:?}", sample.value));
            }
            if &keys != labels {
                problems.push(format!("{name}: label keys {keys:?}, expected {labels:?}"));
            }
            if let Reading::Histogram(buckets) = &sample.value {
                if buckets.last().map(|b| b.less_than) != Some(f64::INFINITY) {
                    problems.push(format!(
                        "{name}{{{}}}: no le=\"+Inf\" bucket",
                        sample.labels
                    ));
                }
            }
        }
    }
    let known: BTreeSet<&str> = expected.iter().map(|(n, ..)| n.as_str()).collect();
    let unexpected: BTreeSet<&str> = scrape
        .samples
        .iter()
        .map(|s| s.metric.as_str())
        .filter(|n| !known.contains(n))
        .collect();
    for name in unexpected {
        problems.push(format!("{name}: not in the catalogue"));
    }
    problems
}

/// Neither sample names (`target_info`, `otel_scope_*`) nor labels (`otel_scope_*`) of the
/// OpenTelemetry SDK in `url`'s exposition: the catalogue's names and labels are all there is.
pub fn assert_no_otel_scope(url: &str, text: &str) {
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("valid exposition");
    let names: BTreeSet<&str> = scrape.samples.iter().map(|s| s.metric.as_str()).collect();
    assert!(!names.is_empty(), "{url} exposes nothing");
    let otel_names: Vec<&&str> = names
        .iter()
        .filter(|n| n.starts_with("target_info") || n.starts_with("otel_scope"))
        .collect();
    assert!(otel_names.is_empty(), "{url} exposes {otel_names:?}");
    let scoped: Vec<String> = scrape
        .samples
        .iter()
        .filter(|s| s.labels.keys().any(|k| k.starts_with("otel_scope")))
        .map(|s| format!("{}{{{}}}", s.metric, s.labels))
        .collect();
    assert!(scoped.is_empty(), "{url} has otel_scope labels: {scoped:?}");
    // The parser drops lines it cannot read: make sure these never appear in raw text either.
    assert!(!text.contains("otel_scope") && !text.contains("target_info"));
}

/// A set of label keys, as `label_keys` gives them.
pub fn set(keys: &[&str]) -> BTreeSet<String> {
    keys.iter().map(|k| (*k).to_owned()).collect()
}

fn kind_of(value: &Reading) -> Kind {
    match value {
        Reading::Counter(_) => Kind::Counter,
        Reading::Gauge(_) => Kind::Gauge,
        Reading::Histogram(_) => Kind::Histogram,
        Reading::Summary(_) | Reading::Untyped(_) => Kind::Untyped,
    }
}

/// `promtool check metrics` exits 0 (1 is a parse error, 3 a lint finding) and prints nothing.
pub fn assert_promtool_accepts(text: &str) {
    let promtool = std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".to_owned());
    let mut child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {promtool} (Debian package `prometheus`): {e}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("exposition written to promtool");
    let output = child.wait_with_output().expect("promtool finishes");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && said.trim().is_empty(),
        "promtool check metrics: {} {said}\n--- exposition ---\n{text}",
        output.status
    );
}
