//! The chaos benchmark's verdict: a steady load through NATS node, worker and gateway-node
//! failures on a 3-node cluster. At most 1% of requests answered 503 when the stream leader's
//! node dies, no error but 503 and 429, and nothing lost: the accounting held and every answer
//! was whole (`--check-answers`). Latency p99 before, during and after the failures, the window
//! the errors fell in and the redeliveries are reported beside them.

use super::check::{Check, Verdict};
use super::figures::RunFigures;
use super::format::{decimals, percent};
use crate::report::{REQUESTS_FILE, REQUESTS_HEADER};
use crate::stats::percentile;
use anyhow::{bail, Context};
use clap::Args;
use std::path::{Path, PathBuf};

/// Most requests answered 503 (as a share of all) through the leader's loss.
pub const TARGET_503_PERCENT: f64 = 1.0;

/// `coder-load verdict chaos`.
#[derive(Debug, Clone, Args)]
pub struct ChaosArgs {
    /// The run (the folder holding its result.json and requests.tsv).
    #[arg(long, env = "CODER_LOAD_VERDICT_RUN")]
    pub run: PathBuf,
    /// The failures caused during the run: lines of `UNIX_SECONDS<TAB>WHAT`.
    #[arg(long, env = "CODER_LOAD_VERDICT_EVENTS")]
    pub events: PathBuf,
    /// Redeliveries the gateway counted during the run.
    #[arg(long, env = "CODER_LOAD_VERDICT_REDELIVERIES")]
    pub redeliveries: Option<u64>,
    /// Seconds after the last failure still counted as during the failures.
    #[arg(long, env = "CODER_LOAD_VERDICT_SETTLE", default_value_t = 10.0)]
    pub settle: f64,
}

/// One request as requests.tsv has it.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub start_s: f64,
    pub latency_ms: f64,
    pub status: Option<u16>,
    pub ok: bool,
}

/// A failure caused during the run, in seconds from the load's start.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub at_s: f64,
    pub what: String,
}

/// What the verdict reads.
#[derive(Debug, Clone)]
pub struct ChaosRun {
    pub figures: RunFigures,
    pub requests: Vec<Request>,
    pub events: Vec<Event>,
}

pub fn load(args: &ChaosArgs) -> anyhow::Result<ChaosRun> {
    let figures = RunFigures::load(&args.run)?;
    let started = figures
        .number(&["started_unix_s"])
        .context("the run's result.json has no started_unix_s")?;
    Ok(ChaosRun {
        requests: read_requests(&args.run.join(REQUESTS_FILE))?,
        events: read_events(&args.events, started)?,
        figures,
    })
}

fn read_requests(path: &Path) -> anyhow::Result<Vec<Request>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines = text.lines();
    if lines.next() != Some(REQUESTS_HEADER) {
        bail!("{} does not start with `{REQUESTS_HEADER}`", path.display());
    }
    lines
        .enumerate()
        .map(|(i, line)| {
            parse_request(line)
                .with_context(|| format!("{} line {}: {line:?}", path.display(), i + 2))
        })
        .collect()
}

fn parse_request(line: &str) -> Option<Request> {
    let fields: Vec<&str> = line.split('\t').collect();
    let [start, latency, status, outcome] = fields[..] else {
        return None;
    };
    Some(Request {
        start_s: start.parse().ok()?,
        latency_ms: latency.parse().ok()?,
        status: status.parse().ok(),
        ok: outcome == "ok",
    })
}

fn read_events(path: &Path, started_unix_s: f64) -> anyhow::Result<Vec<Event>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let (at, what) = line
                .split_once('\t')
                .with_context(|| format!("{}: {line:?} is not TIME<TAB>WHAT", path.display()))?;
            let at: f64 = at
                .parse()
                .with_context(|| format!("{}: {at:?} is not a time", path.display()))?;
            Ok(Event {
                at_s: at - started_unix_s,
                what: what.to_owned(),
            })
        })
        .collect()
}

/// p99 of the successful requests `chosen` picks, in ms.
fn p99_of(requests: &[Request], chosen: impl Fn(&Request) -> bool) -> Option<f64> {
    let mut latencies: Vec<f64> = requests
        .iter()
        .filter(|r| r.ok && chosen(r))
        .map(|r| r.latency_ms)
        .collect();
    latencies.sort_by(f64::total_cmp);
    percentile(&latencies, 99.0)
}

impl Request {
    fn end_s(&self) -> f64 {
        self.start_s + self.latency_ms / 1e3
    }
}

pub fn verdict(args: &ChaosArgs, run: &ChaosRun) -> Verdict {
    let requests = &run.requests;
    let total = requests.len() as f64;
    let count = |status: u16| requests.iter().filter(|r| r.status == Some(status)).count();
    let (unavailable, overloaded) = (count(503), count(429));
    let failed: Vec<&Request> = requests.iter().filter(|r| !r.ok).collect();
    let others = failed
        .iter()
        .filter(|r| !matches!(r.status, Some(503 | 429)))
        .count();
    let first = run.events.iter().map(|e| e.at_s).reduce(f64::min);
    let last = run.events.iter().map(|e| e.at_s).reduce(f64::max);
    let (from, to) = (
        first.unwrap_or(f64::INFINITY),
        last.map_or(f64::INFINITY, |t| t + args.settle),
    );
    let mut notes: Vec<String> = run
        .events
        .iter()
        .map(|e| format!("- at {:.1} s: {}", e.at_s, e.what))
        .collect();
    notes.push(String::new());
    notes.push(format!(
        "{} requests: {} answered, {unavailable} × 503, {overloaded} × 429, {others} other errors; \
         redeliveries counted by the gateway: {}.",
        requests.len(),
        requests.iter().filter(|r| r.ok).count(),
        args.redeliveries
            .map_or_else(|| "-".to_owned(), |n| n.to_string())
    ));
    let window = match (
        failed.iter().map(|r| r.start_s).reduce(f64::min),
        failed
            .iter()
            .map(|r| r.start_s + r.latency_ms / 1e3)
            .reduce(f64::max),
    ) {
        (Some(a), Some(b)) => format!("errors from {a:.1} s to {b:.1} s ({:.1} s)", b - a),
        _ => "no errors".to_owned(),
    };
    notes.push(format!(
        "Latency p99 of answered requests: steady (done before the first failure) {} ms; \
         through the failures (sent before {} s after the last, done after the first) {} ms; \
         after (sent later) {} ms; {window}.",
        decimals(p99_of(requests, |r| r.end_s() < from), 0),
        args.settle,
        decimals(p99_of(requests, |r| r.start_s < to && r.end_s() >= from), 0),
        decimals(p99_of(requests, |r| r.start_s >= to), 0),
    ));
    let share = percent(Some(unavailable as f64), Some(total), 2);
    let answers = &run.figures;
    let whole = answers.number(&["answers", "mismatched"]) == Some(0.0)
        && answers.number(&["answers", "answers"]).is_some();
    let checks = vec![
        Check::new(
            format!(
                "{unavailable} of {} requests answered 503 ({}%; target ≤ {TARGET_503_PERCENT}%)",
                requests.len(),
                decimals(share, 2)
            ),
            !requests.is_empty() && share.is_some_and(|s| s <= TARGET_503_PERCENT),
        ),
        Check::new(
            format!("no error but 503 and 429 ({others} others)"),
            others == 0,
        ),
        Check::new(
            format!(
                "nothing lost: accounting {}, answers whole ({} of {} differ from their reference)",
                match answers.accounting_ok() {
                    Some(true) => "held",
                    Some(false) => "FAILED",
                    None => "not checked",
                },
                decimals(answers.number(&["answers", "mismatched"]), 0),
                decimals(answers.number(&["answers", "answers"]), 0),
            ),
            answers.accounting_ok() == Some(true) && whole,
        ),
    ];
    Verdict { notes, checks }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(start_s: f64, latency_ms: f64, status: u16) -> Request {
        Request {
            start_s,
            latency_ms,
            status: Some(status),
            ok: status == 200,
        }
    }

    fn run(requests: Vec<Request>, mismatched: u64) -> ChaosRun {
        ChaosRun {
            figures: RunFigures::from_json(json!({
                "accounting_ok": true,
                "answers": {"answers": 100, "mismatched": mismatched},
            })),
            requests,
            events: vec![Event {
                at_s: 2.0,
                what: "SIGKILL the stream leader's node".into(),
            }],
        }
    }

    fn args() -> ChaosArgs {
        ChaosArgs {
            run: PathBuf::new(),
            events: PathBuf::new(),
            redeliveries: Some(3),
            settle: 10.0,
        }
    }

    #[test]
    fn few_503s_and_whole_answers_pass() {
        let mut requests: Vec<Request> = (0..199)
            .map(|i| request(i as f64 * 0.1, 50.0, 200))
            .collect();
        requests.push(request(2.1, 3.0, 503));
        let verdict = verdict(&args(), &run(requests, 0));
        assert!(
            verdict.checks.iter().all(|c| c.pass),
            "{}",
            verdict.render()
        );
        let text = verdict.render();
        assert!(text.contains("- at 2.0 s: SIGKILL"), "{text}");
        assert!(
            text.contains("1 of 200 requests answered 503 (0.50%"),
            "{text}"
        );
        assert!(text.contains("errors from 2.1 s to 2.1 s"), "{text}");
        assert!(
            text.contains("redeliveries counted by the gateway: 3"),
            "{text}"
        );
    }

    #[test]
    fn too_many_503s_other_errors_or_a_broken_answer_miss() {
        let mut requests: Vec<Request> = (0..90).map(|i| request(i as f64, 50.0, 200)).collect();
        requests.extend((0..10).map(|i| request(2.0 + i as f64 * 0.1, 3.0, 503)));
        requests.push(request(5.0, 300_000.0, 504));
        let verdict = verdict(&args(), &run(requests, 2));
        let passed: Vec<bool> = verdict.checks.iter().map(|c| c.pass).collect();
        assert_eq!(passed, [false, false, false], "{}", verdict.render());
    }

    #[test]
    fn requests_tsv_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(REQUESTS_FILE);
        std::fs::write(
            &path,
            format!("{REQUESTS_HEADER}\n1.5\t20.0\t200\tok\n2\t1\t-\ttimeout\n"),
        )
        .unwrap();
        let requests = read_requests(&path).unwrap();
        assert_eq!(requests[0], request(1.5, 20.0, 200));
        assert_eq!((requests[1].status, requests[1].ok), (None, false));
        std::fs::write(&path, "nope\n").unwrap();
        assert!(read_requests(&path).is_err());
    }
}
