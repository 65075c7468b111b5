//! `coder-load run`: warm up, snapshot the counters, load, settle, account, report.

use crate::accounting::{Accounting, ClientTally};
use crate::cli::RunArgs;
use crate::client::LoadClient;
use crate::progress::Progress;
use crate::record::RequestRecord;
use crate::report::{self, table};
use crate::result::{RunResult, RunSettings};
use crate::runner::{self, Bound, Live, LoadPlan, Shape};
use crate::snapshot::{self, MetricsTargets};
use crate::workload::{self, Endpoint, RequestShape, Turn, Workload};
use anyhow::{bail, Context};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How long the scrape before the run may wait for the counters to stop moving.
const BEFORE_SETTLE: Duration = Duration::from_secs(3);

/// What a finished run produced.
#[derive(Debug)]
pub struct RunOutcome {
    pub result: RunResult,
    pub result_path: PathBuf,
    pub report_path: PathBuf,
}

impl RunOutcome {
    /// `Some(false)` when the accounting failed: the run must exit non-zero.
    pub fn accounting_ok(&self) -> Option<bool> {
        self.result.accounting_ok
    }
}

/// Runs a load test as `args` describe; see the crate docs.
pub async fn run(args: RunArgs) -> anyhow::Result<RunOutcome> {
    let plan = plan(&args)?;
    let endpoint = Endpoint::from_chat_flag(args.chat);
    let http = http_client(args.fresh_connections)?;
    let client = Arc::new(load_client(&args, &plan, endpoint, http.clone())?);
    let targets = metrics_targets(&args, endpoint)?;

    warm_up(&client, args.warmup_requests).await?;
    let before =
        match &targets {
            Some(targets) => Some(targets.take_stable(&http, BEFORE_SETTLE).await.context(
                "scraping the gateway's metrics before the run (or pass --no-accounting)",
            )?),
            None => None,
        };

    let started_at = now_rfc3339();
    let live = Arc::new(Live::default());
    let progress = Progress::start(plan.bound, live.clone(), !args.no_progress);
    let load = runner::run_load(&plan, client.clone(), live).await;
    progress.finish();
    let load = load?;

    let tally = ClientTally::from_records(load.sent, &load.records);
    let accounting = match (&targets, &before) {
        (Some(targets), Some(before)) => {
            targets
                .settle(&http, before, &tally, args.settle_timeout)
                .await
        }
        _ => Accounting::skipped(tally),
    };
    let settings = settings(&args, &plan, endpoint);
    let result = RunResult::build(
        settings,
        started_at,
        &load.records,
        load.sent,
        load.skipped,
        load.wall.as_secs_f64(),
        accounting,
    );
    let (result_path, report_path) = report::write_all(&args.out, &result, &load.records)?;
    if !args.quiet {
        print!("{}", table::render(&result));
        println!(
            "wrote {} and {}",
            result_path.display(),
            report_path.display()
        );
    }
    Ok(RunOutcome {
        result,
        result_path,
        report_path,
    })
}

/// The load plan `args` ask for.
pub fn plan(args: &RunArgs) -> anyhow::Result<LoadPlan> {
    let shape = match (args.concurrency, args.rate) {
        (Some(0), _) => bail!("--concurrency must be at least 1"),
        (Some(concurrency), None) => Shape::Closed { concurrency },
        (None, Some(rate)) if rate.is_finite() && rate > 0.0 => Shape::Open {
            rate,
            seed: args.arrival_seed.unwrap_or_else(rand::random),
            max_in_flight: args.max_in_flight,
        },
        (None, Some(rate)) => bail!("--rate must be a positive number, not {rate}"),
        _ => bail!("give exactly one of --concurrency and --rate"),
    };
    let bound = match (args.requests, args.duration) {
        (Some(n), None) => Bound::Requests(n),
        (None, Some(d)) => Bound::Duration(d),
        _ => bail!("give exactly one of --requests and --duration"),
    };
    let length_seed = args.length_seed.unwrap_or_else(rand::random);
    Ok(LoadPlan {
        shape,
        bound,
        length_seed,
    })
}

/// The run's HTTP client: idle connections are kept for reuse unless `fresh_connections`.
fn http_client(fresh_connections: bool) -> anyhow::Result<reqwest::Client> {
    let builder = reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(90));
    let builder = match fresh_connections {
        true => builder.pool_max_idle_per_host(0),
        false => builder,
    };
    builder.build().context("building the HTTP client")
}

fn load_client(
    args: &RunArgs,
    plan: &LoadPlan,
    endpoint: Endpoint,
    http: reqwest::Client,
) -> anyhow::Result<LoadClient> {
    let shape = RequestShape {
        endpoint,
        model: args.model.clone(),
        max_tokens: args.max_tokens,
        length_seed: plan.length_seed,
        stream: args.stream,
        temperature: args.temperature,
        seed: args.seed,
        extra_fields: args.extra_fields.clone().unwrap_or_default().0,
        distinct_prompts: args.distinct_prompts,
    };
    let prompts = workload::load_prompts(args.prompt_file.as_deref())?;
    let workload = Workload::new(&shape, &prompts)?;
    let api_key = args.api_key.as_ref().map(|k| k.0.as_str());
    LoadClient::new(
        http,
        &args.url,
        endpoint,
        workload,
        args.stream,
        args.timeout,
        api_key,
    )
}

fn metrics_targets(args: &RunArgs, endpoint: Endpoint) -> anyhow::Result<Option<MetricsTargets>> {
    if args.no_accounting {
        return Ok(None);
    }
    let gateway_url = match &args.metrics_url {
        Some(url) => url.clone(),
        None => snapshot::default_metrics_url(&args.url)?,
    };
    Ok(Some(MetricsTargets {
        gateway_url,
        worker_urls: args.worker_metrics_url.clone(),
        model: args.model.clone(),
        endpoint: endpoint.path(),
    }))
}

/// Sends `n` requests one after another; any failure stops the run before it starts.
async fn warm_up(client: &LoadClient, n: u64) -> anyhow::Result<()> {
    let origin = tokio::time::Instant::now();
    for seq in 0..n {
        let record: RequestRecord = client.send_turn(Turn::WarmUp(seq), origin).await;
        if !record.is_ok() {
            let detail = record
                .detail
                .clone()
                .or(record.error_type.clone())
                .unwrap_or_default();
            bail!(
                "warm-up request {} of {n} to {} failed: {} {detail}",
                seq + 1,
                client.url(),
                record.error_key().unwrap_or_default()
            );
        }
    }
    Ok(())
}

fn settings(args: &RunArgs, plan: &LoadPlan, endpoint: Endpoint) -> RunSettings {
    let (mode, concurrency, rate, arrival_seed) = match plan.shape {
        Shape::Closed { concurrency } => ("closed", Some(concurrency), None, None),
        Shape::Open { rate, seed, .. } => ("open", None, Some(rate), Some(seed)),
    };
    let (requested_requests, requested_duration_s) = match plan.bound {
        Bound::Requests(n) => (Some(n), None),
        Bound::Duration(d) => (None, Some(d.as_secs_f64())),
    };
    RunSettings {
        label: args
            .label
            .clone()
            .unwrap_or_else(|| RunSettings::default_label(plan, args.chat, args.stream)),
        url: args.url.clone(),
        model: args.model.clone(),
        endpoint: endpoint.path().to_owned(),
        mode: mode.to_owned(),
        concurrency,
        rate,
        arrival_seed,
        requested_requests,
        requested_duration_s,
        stream: args.stream,
        max_tokens: args.max_tokens,
        length_seed: (!args.max_tokens.is_fixed()).then_some(plan.length_seed),
    }
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
