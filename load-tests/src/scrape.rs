//! Reading the counters the accounting compares from a Prometheus `/metrics` page.
//!
//! Names and label keys come from `metrics-common`, the one place the catalogue is declared: each
//! instrument's `exposed` name is the one in the exposition (`_total` and unit suffix included).

use metrics_common::names::{self, label, value};
use prometheus_parse::{Sample, Scrape, Value};
use std::collections::BTreeMap;
use std::time::Duration;
use thiserror::Error;

/// Counter values keyed by one label's value (the HTTP code, the worker outcome).
pub type Counts = BTreeMap<String, f64>;

#[derive(Debug, Error)]
pub enum ScrapeError {
    #[error("GET {url} failed")]
    Request { url: String, source: reqwest::Error },
    #[error("GET {url} answered {status}")]
    Status { url: String, status: u16 },
    #[error("{url} is not Prometheus text exposition")]
    Parse { url: String, source: std::io::Error },
}

/// `coder_model_requests_total`.
pub fn gateway_requests_metric() -> String {
    names::MODEL_REQUESTS.exposed.to_owned()
}

/// `coder_worker_requests_total`.
pub fn worker_requests_metric() -> String {
    names::WORKER_REQUESTS.exposed.to_owned()
}

/// `coder_queue_redeliveries_total`.
pub fn queue_redeliveries_metric() -> String {
    names::QUEUE_REDELIVERIES.exposed.to_owned()
}

/// A worker's prefix cache counters for one model: prompt tokens looked up, and found cached.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PrefixCounts {
    pub queried: f64,
    pub hits: f64,
}

impl PrefixCounts {
    /// `queried` and `hits` summed.
    pub fn plus(self, other: Self) -> Self {
        Self {
            queried: self.queried + other.queried,
            hits: self.hits + other.hits,
        }
    }

    /// Hits over queried tokens from `before` to `self`; `None` when nothing was looked up
    /// (or a counter went back: a worker restarted).
    pub fn hit_rate_since(self, before: Self) -> Option<f64> {
        let queried = self.queried - before.queried;
        let hits = self.hits - before.hits;
        (queried > 0.0 && hits >= 0.0).then(|| hits / queried)
    }
}

/// `coder_worker_prefix_cache_{queried,hit}_tokens_total` of one model.
pub fn prefix_counts(scrape: &Scrape, model: &str) -> PrefixCounts {
    let mut counts = PrefixCounts::default();
    for sample in &scrape.samples {
        if sample.labels.get(label::MODEL_NAME) != Some(model) {
            continue;
        }
        if sample.metric == names::WORKER_PREFIX_QUERIED.exposed {
            counts.queried += number(sample);
        } else if sample.metric == names::WORKER_PREFIX_HITS.exposed {
            counts.hits += number(sample);
        }
    }
    counts
}

/// Fetches and parses one `/metrics` page.
pub async fn fetch(http: &reqwest::Client, url: &str) -> Result<Scrape, ScrapeError> {
    let request = |source| ScrapeError::Request {
        url: url.to_owned(),
        source,
    };
    let response = http
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .map_err(request)?;
    if !response.status().is_success() {
        return Err(ScrapeError::Status {
            url: url.to_owned(),
            status: response.status().as_u16(),
        });
    }
    let text = response.text().await.map_err(request)?;
    parse(&text).map_err(|source| ScrapeError::Parse {
        url: url.to_owned(),
        source,
    })
}

pub fn parse(text: &str) -> std::io::Result<Scrape> {
    Scrape::parse(text.lines().map(|line| Ok(line.to_owned())))
}

/// The gateway's request counter for one model and endpoint, by `code`.
///
/// Series labelled `model_name="unknown"` are included: the gateway uses that value for requests
/// it refused before validating the model (401, some 400s), and those are this client's too.
pub fn gateway_counts(scrape: &Scrape, model: &str, endpoint: &str) -> Counts {
    let metric = gateway_requests_metric();
    let mut counts = Counts::new();
    for sample in scrape.samples.iter().filter(|s| s.metric == metric) {
        let labels = &sample.labels;
        let model_matches = matches!(labels.get(label::MODEL_NAME), Some(m) if m == model || m == value::UNKNOWN_MODEL);
        if model_matches && labels.get(label::ENDPOINT) == Some(endpoint) {
            let code = labels.get(label::CODE).unwrap_or("").to_owned();
            *counts.entry(code).or_default() += number(sample);
        }
    }
    counts
}

/// A worker's request counter for one model, by `outcome`.
pub fn worker_counts(scrape: &Scrape, model: &str) -> Counts {
    let metric = worker_requests_metric();
    let mut counts = Counts::new();
    for sample in scrape.samples.iter().filter(|s| s.metric == metric) {
        if sample.labels.get(label::MODEL_NAME) == Some(model) {
            let outcome = sample.labels.get(label::OUTCOME).unwrap_or("").to_owned();
            *counts.entry(outcome).or_default() += number(sample);
        }
    }
    counts
}

/// The gateway's queue counters for one model that the accounting reads: the redeliveries under
/// [`queue_redeliveries_metric`], the refusals under [`queue_rejected_key`] of their reason. A
/// counter not yet incremented is absent, as in the exposition.
pub fn queue_counts(scrape: &Scrape, model: &str) -> Counts {
    let redeliveries = queue_redeliveries_metric();
    let rejected = names::QUEUE_REJECTED.exposed;
    let mut counts = Counts::new();
    for sample in &scrape.samples {
        if sample.labels.get(label::MODEL_NAME) != Some(model) {
            continue;
        }
        let key = if sample.metric == redeliveries {
            redeliveries.clone()
        } else if sample.metric == rejected {
            queue_rejected_key(sample.labels.get(label::REASON).unwrap_or(""))
        } else {
            continue;
        };
        *counts.entry(key).or_default() += number(sample);
    }
    counts
}

/// The gateway's `coder_model_active_requests` for one model, all endpoints together.
pub fn active_requests(scrape: &Scrape, model: &str) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == names::MODEL_ACTIVE_REQUESTS.exposed)
        .filter(|s| s.labels.get(label::MODEL_NAME) == Some(model))
        .map(number)
        .sum()
}

/// The key of `coder_queue_rejected_total{reason}` in [`queue_counts`].
pub fn queue_rejected_key(reason: &str) -> String {
    format!("{}{{reason={reason}}}", names::QUEUE_REJECTED.exposed)
}

/// Adds `more` into `into` (several workers' counts).
pub fn add_counts(into: &mut Counts, more: &Counts) {
    for (key, value) in more {
        *into.entry(key.clone()).or_default() += value;
    }
}

fn number(sample: &Sample) -> f64 {
    match sample.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
        Value::Histogram(_) | Value::Summary(_) => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"# HELP coder_model_requests_total Requests by model, endpoint and code
# TYPE coder_model_requests_total counter
coder_model_requests_total{code="200",endpoint="/v1/completions",model_name="m",status="success"} 12
coder_model_requests_total{code="429",endpoint="/v1/completions",model_name="m",status="error"} 3
coder_model_requests_total{code="200",endpoint="/v1/chat/completions",model_name="m",status="success"} 7
coder_model_requests_total{code="200",endpoint="/v1/completions",model_name="other",status="success"} 99
coder_model_requests_total{code="401",endpoint="/v1/completions",model_name="unknown",status="error"} 1
# TYPE coder_worker_requests_total counter
coder_worker_requests_total{model_name="m",outcome="completed"} 19
coder_worker_requests_total{model_name="m",outcome="cancelled"} 1
# TYPE coder_queue_redeliveries_total counter
coder_queue_redeliveries_total{model_name="m"} 2
coder_queue_redeliveries_total{model_name="other"} 5
# TYPE coder_model_request_duration_seconds histogram
coder_model_request_duration_seconds_bucket{endpoint="/v1/completions",model_name="m",le="0.1"} 15
coder_model_request_duration_seconds_bucket{endpoint="/v1/completions",model_name="m",le="+Inf"} 15
coder_model_request_duration_seconds_sum{endpoint="/v1/completions",model_name="m"} 0.3
coder_model_request_duration_seconds_count{endpoint="/v1/completions",model_name="m"} 15
"#;

    #[test]
    fn gateway_counts_select_model_and_endpoint() {
        let scrape = parse(PAGE).unwrap();
        let counts = gateway_counts(&scrape, "m", "/v1/completions");
        assert_eq!(
            counts,
            Counts::from([
                ("200".into(), 12.0),
                ("401".into(), 1.0),
                ("429".into(), 3.0)
            ])
        );
        let chat = gateway_counts(&scrape, "m", "/v1/chat/completions");
        assert_eq!(chat, Counts::from([("200".into(), 7.0)]));
    }

    #[test]
    fn worker_counts_are_by_outcome() {
        let scrape = parse(PAGE).unwrap();
        let counts = worker_counts(&scrape, "m");
        assert_eq!(
            counts,
            Counts::from([("cancelled".into(), 1.0), ("completed".into(), 19.0)])
        );
        assert!(worker_counts(&scrape, "other").is_empty());
    }

    #[test]
    fn queue_counts_are_the_models_redeliveries() {
        let scrape = parse(PAGE).unwrap();
        assert_eq!(
            queue_counts(&scrape, "m"),
            Counts::from([("coder_queue_redeliveries_total".into(), 2.0)])
        );
        assert!(queue_counts(&scrape, "none").is_empty());
    }

    #[test]
    fn an_empty_page_has_no_counts() {
        assert!(gateway_counts(&parse("").unwrap(), "m", "/v1/completions").is_empty());
    }
}
