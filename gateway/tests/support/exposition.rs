//! Reading a `/metrics` endpoint with a real exposition parser (`prometheus-parse`), and waiting
//! for a value to show.
//!
//! Shared by path with `gpu-worker/tests`, so it names nothing else of the harness.

use prometheus_parse::{HistogramCount, Scrape, Value as Reading};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::time::{Duration, Instant};

/// How long a gauge gets to follow what happened: two queue-poll intervals, plus room for a
/// worker process to connect and fetch on a loaded two-core machine.
pub const FOLLOW: Duration = Duration::from_secs(3);

/// How long [`wait_for_sample`] waits.
const SAMPLE_TIMEOUT: Duration = Duration::from_secs(15);

/// The raw exposition text of `url`, which must answer 200.
pub async fn exposition(url: &str) -> String {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client");
    let response = client.get(url).send().await.expect("metrics answer");
    assert_eq!(response.status(), reqwest::StatusCode::OK, "{url}");
    response.text().await.expect("metrics text")
}

pub fn parse(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("valid exposition")
}

/// One scrape, parsed.
pub async fn scrape(url: &str) -> Scrape {
    parse(&exposition(url).await)
}

/// A counter's, gauge's or untyped sample's value; `None` for a histogram or summary.
pub fn reading(value: &Reading) -> Option<f64> {
    match value {
        Reading::Counter(v) | Reading::Gauge(v) | Reading::Untyped(v) => Some(*v),
        _ => None,
    }
}

/// The sum of `name`'s samples whose labels include `labels`; `None` when there is none.
pub fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let values: Vec<f64> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .filter_map(|s| reading(&s.value))
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// As [`value`], with 0 for an absent sample.
pub fn sample(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    value(scrape, name, labels).unwrap_or(0.0)
}

/// Every series of counter or gauge `name`: its labels and value.
pub fn series(scrape: &Scrape, name: &str) -> BTreeMap<BTreeMap<String, String>, f64> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter_map(|s| {
            let labels = s.labels.iter().map(|(k, v)| (k.clone(), v.clone()));
            Some((labels.collect(), reading(&s.value)?))
        })
        .collect()
}

/// A label set, as [`series`] keys them.
pub fn labels<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> BTreeMap<String, String> {
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The labels of `name`'s samples, as maps.
pub fn label_sets(scrape: &Scrape, name: &str) -> Vec<HashMap<String, String>> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .map(|s| {
            s.labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .collect()
}

/// The label keys of each of `name`'s samples.
pub fn label_keys(scrape: &Scrape, name: &str) -> Vec<BTreeSet<String>> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .map(|s| s.labels.keys().cloned().collect())
        .collect()
}

/// Each series of histogram `name`: its labels (without `le`) and buckets in exposition order.
pub fn histograms(scrape: &Scrape, name: &str) -> Vec<(String, Vec<HistogramCount>)> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter_map(|s| match &s.value {
            Reading::Histogram(buckets) => Some((s.labels.to_string(), buckets.clone())),
            _ => None,
        })
        .collect()
}

/// Polls `check` every 50 ms until it gives `Some`, or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if start.elapsed() > timeout {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Scrapes `url` until `check` holds, at most `within`; returns the scrape and the time it took.
/// Panics with `what` and the last scrape's samples otherwise.
pub async fn wait_for(
    url: &str,
    within: Duration,
    what: &str,
    mut check: impl FnMut(&Scrape) -> bool,
) -> (Scrape, Duration) {
    let start = Instant::now();
    loop {
        let text = exposition(url).await;
        let scrape = parse(&text);
        if check(&scrape) {
            return (scrape, start.elapsed());
        }
        if start.elapsed() > within {
            let lines: Vec<&str> = text
                .lines()
                .filter(|l| !l.starts_with('#') && !l.contains("_bucket"))
                .collect();
            panic!(
                "{what}: not within {within:?}; last scrape:\n{}",
                lines.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits until the sample reaches `at_least`; returns the value seen then.
pub async fn wait_for_sample(url: &str, name: &str, labels: &[(&str, &str)], at_least: f64) -> f64 {
    let what = format!("{name}{labels:?} reaching {at_least}");
    let (scrape, _) = wait_for(url, SAMPLE_TIMEOUT, &what, |s| {
        sample(s, name, labels) >= at_least
    })
    .await;
    sample(&scrape, name, labels)
}

/// The first scrape of `url` where `check` holds, or the last one after two seconds. Request
/// metrics are recorded when the server drops the response body, which may be just after the
/// client read it; the caller's assertions then say what differs.
pub async fn scrape_when(url: &str, mut check: impl FnMut(&Scrape) -> bool) -> Scrape {
    let start = Instant::now();
    loop {
        let scrape = scrape(url).await;
        if check(&scrape) || start.elapsed() > Duration::from_secs(2) {
            return scrape;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
