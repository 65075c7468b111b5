//! Taking [`Snapshot`]s of the gateway's and workers' counters, and waiting for them to settle.
//!
//! Counters move a moment after the response that they count has left (the gateway counts when
//! its handler returns; a worker counts after it has sent `final`), so the scrape after a run is
//! polled until the accounting holds or `--settle-timeout` passes.

use crate::accounting::{Accounting, ClientTally, Snapshot};
use crate::scrape::{self, ScrapeError};
use anyhow::Context;
use std::time::Duration;
use tokio::time::{sleep, Instant};

/// Pause between two scrapes while waiting.
const POLL: Duration = Duration::from_millis(100);

/// Where to read counters, and which series.
#[derive(Debug, Clone)]
pub struct MetricsTargets {
    pub gateway_url: String,
    pub worker_urls: Vec<String>,
    pub model: String,
    /// The gateway's `endpoint` label value.
    pub endpoint: &'static str,
}

impl MetricsTargets {
    pub async fn take(&self, http: &reqwest::Client) -> Result<Snapshot, ScrapeError> {
        let page = scrape::fetch(http, &self.gateway_url).await?;
        let gateway = scrape::gateway_counts(&page, &self.model, self.endpoint);
        let queue = scrape::queue_counts(&page, &self.model);
        let active = scrape::active_requests(&page, &self.model);
        let mut workers = None;
        for url in &self.worker_urls {
            let page = scrape::fetch(http, url).await?;
            let counts = scrape::worker_counts(&page, &self.model);
            scrape::add_counts(workers.get_or_insert_with(Default::default), &counts);
        }
        Ok(Snapshot {
            gateway,
            queue,
            active,
            workers,
        })
    }

    /// The workers' prefix cache counters, summed; `None` without worker metrics.
    pub async fn prefix_counts(
        &self,
        http: &reqwest::Client,
    ) -> Result<Option<scrape::PrefixCounts>, ScrapeError> {
        let mut total = None;
        for url in &self.worker_urls {
            let page = scrape::fetch(http, url).await?;
            let counts = scrape::prefix_counts(&page, &self.model);
            total = Some(counts.plus(total.unwrap_or_default()));
        }
        Ok(total)
    }

    /// A snapshot equal to the one taken just before it (so that the requests of a warm-up, or
    /// of an earlier run, are all counted), or the last one taken after `timeout`.
    pub async fn take_stable(
        &self,
        http: &reqwest::Client,
        timeout: Duration,
    ) -> Result<Snapshot, ScrapeError> {
        let give_up = Instant::now() + timeout;
        let mut last = self.take(http).await?;
        loop {
            sleep(POLL).await;
            let next = self.take(http).await?;
            if next == last || Instant::now() >= give_up {
                return Ok(next);
            }
            last = next;
        }
    }

    /// Polls until the accounting against `before` holds, or `timeout` passes.
    pub async fn settle(
        &self,
        http: &reqwest::Client,
        before: &Snapshot,
        client: &ClientTally,
        timeout: Duration,
    ) -> Accounting {
        let give_up = Instant::now() + timeout;
        loop {
            let verdict = match self.take(http).await {
                Ok(after) => Accounting::between(client, before, &after),
                Err(error) => Accounting::unavailable(
                    client.clone(),
                    format!("scraping after the run: {:#}", anyhow::Error::new(error)),
                ),
            };
            if verdict.ok || Instant::now() >= give_up {
                return verdict;
            }
            sleep(POLL).await;
        }
    }
}

/// The gateway's `/metrics` by default: the API URL's host on port 8001.
pub fn default_metrics_url(api_url: &str) -> anyhow::Result<String> {
    let mut url =
        reqwest::Url::parse(api_url).with_context(|| format!("`{api_url}` is not a valid URL"))?;
    url.set_port(Some(8001))
        .map_err(|()| anyhow::anyhow!("`{api_url}` cannot have a port"))?;
    url.set_path("/metrics");
    url.set_query(None);
    Ok(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_metrics_url_is_port_8001_on_the_api_host() {
        assert_eq!(
            default_metrics_url("http://10.0.0.5:8000/v1").unwrap(),
            "http://10.0.0.5:8001/metrics"
        );
        assert_eq!(
            default_metrics_url("http://gw").unwrap(),
            "http://gw:8001/metrics"
        );
    }
}
