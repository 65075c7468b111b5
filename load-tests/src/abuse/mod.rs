//! `coder-load abuse`: hostile and malformed requests against a running stack while a normal
//! load runs beside them.
//!
//! Every case is sent on its own connection and its status recorded. The run fails when a case
//! gets a 5xx or a connection the gateway never lets go of, when the normal load sees anything
//! but 200, or when a watched process (`--watch gateway=PID`) is gone (crashed, restarted) or
//! has not given back its memory and connections once the cases are over.
//!
//! # Layout
//! - [`cases`]: the seeded generator of hostile requests.
//! - [`send`]: raw HTTP over TCP, and the slow clients.
//! - [`watch`]: a process's memory and open descriptors from `/proc`.

pub mod cases;
pub mod send;
pub mod watch;

use crate::cli::AbuseArgs;
use anyhow::Context;
use cases::{Action, Target};
use futures::StreamExt;
use send::Seen;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use watch::{Sample, Watched};

/// What `coder-load abuse` found.
#[derive(Debug, Serialize)]
pub struct AbuseReport {
    /// Per case, the status seen (a code, `closed` or `held`).
    pub cases: Vec<(String, String)>,
    /// Cases per status seen.
    pub statuses: BTreeMap<String, u64>,
    pub normal_ok: u64,
    pub normal_errors: u64,
    /// The first error the normal load saw.
    pub normal_first_error: Option<String>,
    /// Per watched process: before, at its peak (resident), after settling.
    pub processes: Vec<ProcessReport>,
    /// Why the run fails; empty when it passes.
    pub failures: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct ProcessReport {
    pub name: String,
    pub before: Sample,
    pub after: Option<Sample>,
}

impl AbuseReport {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

pub async fn run(args: &AbuseArgs) -> anyhow::Result<AbuseReport> {
    let addr = api_addr(&args.url)?;
    let target = Target {
        model: &args.model,
        api_key: args.api_key.as_deref(),
        max_body_bytes: args.max_body_bytes,
    };
    let cases = cases::generate(&target, args.seed, args.random_cases);
    let mut before = Vec::new();
    for process in &args.watch {
        let sample = process
            .sample()
            .with_context(|| format!("no process {} ({})", process.pid, process.name))?;
        before.push(sample);
    }

    let normal = NormalLoad::start(args);
    let stream_request = cases::http_request(
        "POST",
        "/v1/completions",
        &auth_and_json(args.api_key.as_deref()),
        &serde_json::to_vec(&serde_json::json!({
            "model": args.model, "prompt": "never read", "max_tokens": args.stop_reading_tokens, "stream": true
        }))?,
    );
    let seen: Vec<(String, Seen)> = futures::stream::iter(cases)
        .map(|case| {
            let stream_request = stream_request.clone();
            async move {
                let seen = match &case.action {
                    Action::Raw(bytes) => send::exchange(addr, bytes, args.case_timeout).await,
                    Action::Slowloris => send::slowloris(addr, args.slow_limit).await,
                    Action::StopReading => {
                        send::stop_reading(addr, &stream_request, args.slow_limit).await
                    }
                };
                (case.name, seen)
            }
        })
        .buffer_unordered(args.parallel.max(1))
        .collect()
        .await;
    let (normal_ok, normal_errors, normal_first_error) = normal.stop().await;

    let mut report = AbuseReport {
        statuses: BTreeMap::new(),
        cases: Vec::new(),
        normal_ok,
        normal_errors,
        normal_first_error,
        processes: Vec::new(),
        failures: Vec::new(),
    };
    for (name, seen) in seen {
        *report.statuses.entry(seen.label()).or_default() += 1;
        if seen.is_failure() {
            report
                .failures
                .push(format!("case {name}: {}", seen.label()));
        }
        report.cases.push((name, seen.label()));
    }
    if normal_errors > 0 {
        report.failures.push(format!(
            "the normal load saw {normal_errors} errors (first: {})",
            report.normal_first_error.as_deref().unwrap_or("?")
        ));
    }
    settle_and_check(args, &before, &mut report).await;
    Ok(report)
}

/// Waits up to `--settle` for each watched process to come back near where it started; records
/// what it came back to and fails the ones that did not, or are gone.
async fn settle_and_check(args: &AbuseArgs, before: &[Sample], report: &mut AbuseReport) {
    let rss_slack_kib = args.rss_slack_mib * 1024;
    let settled = |start: &Sample, now: &Sample| {
        now.rss_kib <= start.rss_kib + rss_slack_kib
            && now.open_fds <= start.open_fds + args.fd_slack
    };
    let deadline = tokio::time::Instant::now() + args.settle;
    loop {
        let now: Vec<Option<Sample>> = args.watch.iter().map(Watched::sample).collect();
        let all_settled = now
            .iter()
            .zip(before)
            .all(|(now, start)| now.as_ref().is_some_and(|now| settled(start, now)));
        if all_settled || tokio::time::Instant::now() >= deadline {
            for ((process, start), now) in args.watch.iter().zip(before).zip(now) {
                match &now {
                    None => report
                        .failures
                        .push(format!("{} (pid {}) is gone", process.name, process.pid)),
                    Some(now) if !settled(start, now) => report.failures.push(format!(
                        "{} did not come back: {} KiB resident and {} open descriptors, from {} KiB and {}",
                        process.name, now.rss_kib, now.open_fds, start.rss_kib, start.open_fds
                    )),
                    Some(_) => {}
                }
                report.processes.push(ProcessReport {
                    name: process.name.clone(),
                    before: *start,
                    after: now,
                });
            }
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn auth_and_json(api_key: Option<&str>) -> Vec<(&'static str, String)> {
    let mut headers = vec![("content-type", "application/json".to_owned())];
    if let Some(key) = api_key {
        headers.push(("authorization", format!("Bearer {key}")));
    }
    headers
}

/// `host:port` of an `http://` URL.
fn api_addr(url: &str) -> anyhow::Result<SocketAddr> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("--url `{url}` must start with http://"))?;
    let host_port = rest.split('/').next().unwrap_or(rest);
    use std::net::ToSocketAddrs;
    host_port
        .to_socket_addrs()
        .with_context(|| format!("--url `{url}`: cannot resolve `{host_port}`"))?
        .next()
        .with_context(|| format!("--url `{url}`: no address for `{host_port}`"))
}

/// Valid short completions in a closed loop beside the cases; every answer must be a 200.
struct NormalLoad {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
    first_error: Arc<Mutex<Option<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl NormalLoad {
    fn start(args: &AbuseArgs) -> Self {
        let load = Self {
            stop: Arc::default(),
            ok: Arc::default(),
            errors: Arc::default(),
            first_error: Arc::default(),
            tasks: Vec::new(),
        };
        let client = reqwest::Client::new();
        let url = format!("{}/v1/completions", args.url.trim_end_matches('/'));
        let body =
            serde_json::json!({"model": args.model, "prompt": "def add(a, b):", "max_tokens": 4});
        let tasks = (0..args.normal_concurrency)
            .map(|_| {
                let (client, url, body) = (client.clone(), url.clone(), body.clone());
                let (stop, ok, errors) = (load.stop.clone(), load.ok.clone(), load.errors.clone());
                let first_error = load.first_error.clone();
                let api_key = args.api_key.clone();
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let mut request = client
                            .post(&url)
                            .json(&body)
                            .timeout(Duration::from_secs(60));
                        if let Some(key) = &api_key {
                            request = request.bearer_auth(key);
                        }
                        let error = match request.send().await {
                            Ok(response) if response.status() == 200 => {
                                let _ = response.bytes().await;
                                ok.fetch_add(1, Ordering::Relaxed);
                                continue;
                            }
                            Ok(response) => format!("status {}", response.status()),
                            Err(error) => error.to_string(),
                        };
                        errors.fetch_add(1, Ordering::Relaxed);
                        first_error.lock().expect("lock").get_or_insert(error);
                    }
                })
            })
            .collect();
        Self { tasks, ..load }
    }

    /// Stops after the requests in flight; the answers counted.
    async fn stop(self) -> (u64, u64, Option<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            let _ = task.await;
        }
        let first = self.first_error.lock().expect("lock").clone();
        (
            self.ok.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
            first,
        )
    }
}

/// The report as the terminal shows it: one line per case, then the totals and failures.
pub fn print(report: &AbuseReport) {
    for (name, seen) in &report.cases {
        println!("{seen:>6}  {name}");
    }
    println!("cases: {}", report.cases.len());
    for (status, count) in &report.statuses {
        println!("  {status}: {count}");
    }
    println!(
        "normal load: {} ok, {} errors",
        report.normal_ok, report.normal_errors
    );
    for process in &report.processes {
        let after = process
            .after
            .map(|s| format!("{} KiB resident, {} fds", s.rss_kib, s.open_fds))
            .unwrap_or_else(|| "gone".into());
        println!(
            "{}: {} KiB resident, {} fds before; peak {} KiB; after: {after}",
            process.name,
            process.before.rss_kib,
            process.before.open_fds,
            process.after.map_or(0, |s| s.peak_rss_kib)
        );
    }
    if report.passed() {
        println!("PASS");
    } else {
        for failure in &report.failures {
            println!("FAIL {failure}");
        }
    }
}
