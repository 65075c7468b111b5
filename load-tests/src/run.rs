//! `coder-load run`: warm up, snapshot the counters, load, settle, account, check the answers
//! (`--check-answers`), report.

use crate::accounting::{Accounting, ClientTally};
use crate::answers;
use crate::cli::{RunArgs, WorkloadKind};
use crate::client::LoadClient;
use crate::progress::Progress;
use crate::record::RequestRecord;
use crate::report::{self, table};
use crate::result::{RunResult, RunSettings};
use crate::runner::{self, Bound, Live, LoadPlan, Shape};
use crate::shared_prefix;
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
    check_workload(&args)?;
    let plan = plan(&args)?;
    // A conversation is a chat.
    let endpoint = Endpoint::from_chat_flag(args.chat || args.workload == WorkloadKind::Multiturn);
    let workload_seed = args.workload_seed.unwrap_or_else(rand::random);
    let http = http_client(args.fresh_connections)?;
    let shape = request_shape(&args, &plan, endpoint);
    let prompts = prompts(&args, workload_seed)?;
    let client = load_client(&args, &shape, &prompts, http.clone())?;
    let client = Arc::new(match args.workload {
        WorkloadKind::Multiturn => client.keeping_answers(),
        _ if args.check_answers => client.keeping_answers(),
        _ => client,
    });
    let targets = metrics_targets(&args, endpoint)?;

    warm_up(&client, args.warmup_requests).await?;
    let before =
        match &targets {
            Some(targets) => Some(targets.take_stable(&http, BEFORE_SETTLE).await.context(
                "scraping the gateway's metrics before the run (or pass --no-accounting)",
            )?),
            None => None,
        };
    let prefix_before = prefix_counts(&targets, &http).await?;

    let started_at = now_rfc3339();
    let started_unix_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let live = Arc::new(Live::default());
    let progress = Progress::start(plan.bound, live.clone(), !args.no_progress);
    let load = match (args.workload, plan.shape.clone()) {
        (WorkloadKind::Multiturn, Shape::Closed { concurrency }) => {
            let conversations = shared_prefix::conversations(
                workload_seed,
                args.shared_prefix_bytes,
                args.conversations.unwrap_or(0),
                args.turns,
            );
            runner::run_conversations(conversations, concurrency, shape, client.clone(), live).await
        }
        _ => runner::run_load(&plan, client.clone(), live).await,
    };
    progress.finish();
    let load = load?;

    let tally = ClientTally::from_records(load.sent, &load.records);
    let mut accounting = match (&targets, &before) {
        (Some(targets), Some(before)) => {
            targets
                .settle(&http, before, &tally, args.settle_timeout)
                .await
        }
        _ => Accounting::skipped(tally),
    };
    let answers = match args.check_answers {
        true => Some(answers::check(&client, &load.records).await),
        false => None,
    };
    if let Some(answers) = answers.as_ref().filter(|answers| !answers.ok()) {
        accounting.fail_answers(answers);
    }
    let settings = settings(&args, &plan, endpoint, workload_seed);
    let mut result = RunResult::build(
        settings,
        started_at,
        &load.records,
        load.sent,
        load.skipped,
        load.wall.as_secs_f64(),
        accounting,
    );
    result.answers = answers;
    result.started_unix_s = started_unix_s;
    if let (Some(before), Some(after)) = (prefix_before, prefix_counts(&targets, &http).await?) {
        result.prefix_cache_hit_rate = after.hit_rate_since(before);
    }
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

/// Refuses flags that do not fit `--workload`, naming them.
pub fn check_workload(args: &RunArgs) -> anyhow::Result<()> {
    let generated = args.workload != WorkloadKind::Plain;
    let name = args.workload.as_str();
    if generated && args.prompt_file.is_some() {
        bail!("--workload {name} generates its prompts: --prompt-file is for --workload plain");
    }
    if generated && args.distinct_prompts {
        bail!("--workload {name} shares prefixes on purpose: --distinct-prompts is for --workload plain");
    }
    match (args.workload, args.conversations) {
        (WorkloadKind::Multiturn, None) => {
            bail!("--workload multiturn is bounded by --conversations (not --requests or --duration)")
        }
        (WorkloadKind::Multiturn, Some(0)) => bail!("--conversations must be at least 1"),
        (WorkloadKind::Multiturn, Some(_)) if args.rate.is_some() => bail!(
            "--workload multiturn plays --concurrency conversations at once: --rate does not apply"
        ),
        (WorkloadKind::Multiturn, Some(_)) if args.turns == 0 => {
            bail!("--turns must be at least 1")
        }
        (WorkloadKind::Multiturn, Some(_)) if args.warmup_requests > 0 => bail!(
            "--workload multiturn has no warm-up requests: a conversation's first turn is its cold one"
        ),
        (_, Some(_)) if args.workload != WorkloadKind::Multiturn => {
            bail!("--conversations is for --workload multiturn")
        }
        _ => Ok(()),
    }
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
    let bound = match (args.requests, args.duration, args.conversations) {
        (Some(n), None, None) => Bound::Requests(n),
        (None, Some(d), None) => Bound::Duration(d),
        (None, None, Some(n)) => Bound::Requests((n as u64).saturating_mul(args.turns as u64)),
        _ => bail!("give exactly one of --requests, --duration and --conversations"),
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

/// The fields every request of the run shares.
fn request_shape(args: &RunArgs, plan: &LoadPlan, endpoint: Endpoint) -> RequestShape {
    RequestShape {
        endpoint,
        model: args.model.clone(),
        max_tokens: args.max_tokens,
        length_seed: plan.length_seed,
        stream: args.stream,
        temperature: args.temperature,
        seed: args.seed,
        extra_fields: args.extra_fields.clone().unwrap_or_default().0,
        distinct_prompts: args.distinct_prompts,
    }
}

/// The prompts of a plain or repo-context run (a multi-turn run builds its own per turn).
fn prompts(args: &RunArgs, workload_seed: u64) -> anyhow::Result<Vec<String>> {
    match args.workload {
        WorkloadKind::Plain => workload::load_prompts(args.prompt_file.as_deref()),
        WorkloadKind::RepoContext | WorkloadKind::Multiturn => Ok(
            shared_prefix::repo_context_prompts(workload_seed, args.shared_prefix_bytes),
        ),
    }
}

/// The workers' prefix cache counters, when worker metrics are scraped.
async fn prefix_counts(
    targets: &Option<MetricsTargets>,
    http: &reqwest::Client,
) -> anyhow::Result<Option<crate::scrape::PrefixCounts>> {
    match targets {
        Some(targets) => targets
            .prefix_counts(http)
            .await
            .context("scraping the workers' prefix cache counters"),
        None => Ok(None),
    }
}

fn load_client(
    args: &RunArgs,
    shape: &RequestShape,
    prompts: &[String],
    http: reqwest::Client,
) -> anyhow::Result<LoadClient> {
    let endpoint = shape.endpoint;
    let workload = Workload::new(shape, prompts)?;
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

fn settings(
    args: &RunArgs,
    plan: &LoadPlan,
    endpoint: Endpoint,
    workload_seed: u64,
) -> RunSettings {
    let multiturn = args.workload == WorkloadKind::Multiturn;
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
        workload: args.workload.as_str().to_owned(),
        conversations: args.conversations.filter(|_| multiturn),
        turns: multiturn.then_some(args.turns),
        workload_seed: (args.workload != WorkloadKind::Plain).then_some(workload_seed),
    }
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn check(load: &[&str]) -> Result<(), String> {
        let base = ["run", "--model", "m", "--out", "o"];
        let args = RunArgs::try_parse_from(base.iter().chain(load)).map_err(|e| e.to_string())?;
        check_workload(&args).map_err(|e| e.to_string())
    }

    #[test]
    fn flags_that_do_not_fit_the_workload_are_refused_by_name() {
        let multiturn = ["--workload", "multiturn", "--concurrency", "2"];
        assert!(check(&[&multiturn[..], &["--conversations", "3"]].concat()).is_ok());
        let error = check(&[
            "--workload",
            "multiturn",
            "--concurrency",
            "2",
            "--requests",
            "3",
        ]);
        assert!(error.unwrap_err().contains("--conversations"));
        let error = check(&[
            "--workload",
            "multiturn",
            "--rate",
            "2",
            "--conversations",
            "3",
        ]);
        assert!(error.unwrap_err().contains("--rate"));
        let error = check(&[&multiturn[..], &["--conversations", "3", "--turns", "0"]].concat());
        assert!(error.unwrap_err().contains("--turns"));
        let error = check(&["--concurrency", "2", "--conversations", "3"]);
        assert!(error.unwrap_err().contains("--workload multiturn"));
        let repo = [
            "--workload",
            "repo-context",
            "--concurrency",
            "2",
            "--requests",
            "3",
        ];
        assert!(check(&repo).is_ok());
        let error = check(&[&repo[..], &["--distinct-prompts"]].concat());
        assert!(error.unwrap_err().contains("--distinct-prompts"));
        let error = check(&[&repo[..], &["--prompt-file", "p.txt"]].concat());
        assert!(error.unwrap_err().contains("--prompt-file"));
    }
}
