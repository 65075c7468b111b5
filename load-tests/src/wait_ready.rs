//! `coder-load wait-ready`: block until the gateway answers `/readyz` with 200 and, when a model
//! is named, `/v1/models` lists it (a worker for it has announced itself).

use crate::cli::WaitReadyArgs;
use anyhow::{bail, Context};
use reqwest::header::AUTHORIZATION;
use serde::Deserialize;
use std::time::Duration;
use tokio::time::{sleep, Instant};

const POLL: Duration = Duration::from_millis(100);

#[derive(Deserialize)]
struct ModelList {
    data: Vec<ModelEntry>,
}

#[derive(Deserialize)]
struct ModelEntry {
    id: String,
}

pub async fn wait_ready(args: &WaitReadyArgs) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .context("building the HTTP client")?;
    let base = args.url.trim_end_matches('/');
    let base = base.strip_suffix("/v1").unwrap_or(base);
    let give_up = Instant::now() + args.timeout;
    loop {
        let why = match check(&http, base, args).await {
            Ok(()) => return Ok(()),
            Err(why) => why,
        };
        if Instant::now() >= give_up {
            bail!("{base} not ready after {:?}: {why:#}", args.timeout);
        }
        sleep(POLL).await;
    }
}

async fn check(http: &reqwest::Client, base: &str, args: &WaitReadyArgs) -> anyhow::Result<()> {
    let ready = http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .context("GET /readyz")?;
    if !ready.status().is_success() {
        bail!("/readyz answered {}", ready.status());
    }
    let Some(model) = &args.model else {
        return Ok(());
    };
    let mut request = http.get(format!("{base}/v1/models"));
    if let Some(key) = &args.api_key {
        request = request.header(AUTHORIZATION, format!("Bearer {}", key.0));
    }
    let response = request.send().await.context("GET /v1/models")?;
    if !response.status().is_success() {
        bail!("/v1/models answered {}", response.status());
    }
    let models: ModelList = response.json().await.context("reading /v1/models")?;
    if models.data.iter().any(|m| &m.id == model) {
        Ok(())
    } else {
        bail!("/v1/models does not list {model} yet")
    }
}
