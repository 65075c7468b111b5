//! `coder-load raw-nats`: the floor under the pipeline's latency.
//!
//! The same queue round trip the product makes, with nothing else: a "gateway" connection
//! publishes to a JetStream work-queue stream with the product's request headers and waits for
//! the publish ack; "worker" connections pull from a durable consumer, publish a reply on core
//! NATS to the request's reply subject and ack the message; the gateway side routes replies from
//! ONE wildcard subscription to the waiting request, as the gateway does. Comparing this with
//! `coder-load run` on the synthetic backend shows what the gateway and the worker add.
//!
//! It creates its own stream and consumer under unique names (never the product's) and deletes
//! them afterwards.

use crate::cli::RawNatsArgs;
use crate::report::table::num;
use crate::runner::tickets::{Bound, Tickets};
use crate::stats::Summary;
use anyhow::Context;
use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use coder_nats::client_args::NatsArgs;
use coder_nats::headers::RequestHeaders;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// The benchmark's request inboxes (JetStream acks, pulls).
const INBOX_PREFIX: &str = "_INBOX.coder-load";

/// Longest a round trip may take before it counts as lost.
const ROUND_TRIP_TIMEOUT: Duration = Duration::from_secs(10);

/// Names of this benchmark's stream, subjects and consumer, unique per run.
#[derive(Debug, Clone)]
pub struct BenchNames {
    pub run_id: String,
    pub stream: String,
    pub requests_subject: String,
    pub consumer: String,
    replies_prefix: String,
}

impl BenchNames {
    pub fn new() -> Self {
        let run_id = uuid::Uuid::now_v7().simple().to_string();
        Self {
            stream: format!("CODER_LOAD_RAW_{run_id}"),
            requests_subject: format!("coder-load.raw.{run_id}.requests"),
            consumer: format!("coder-load-raw-{run_id}"),
            replies_prefix: format!("coder-load.raw.{run_id}.replies"),
            run_id,
        }
    }

    pub fn replies_wildcard(&self) -> String {
        format!("{}.*", self.replies_prefix)
    }

    pub fn reply_subject(&self, seq: u64) -> String {
        format!("{}.{seq}", self.replies_prefix)
    }
}

impl Default for BenchNames {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RawNatsResult {
    pub label: String,
    pub nats_url: String,
    /// `file` or `memory`.
    pub storage: String,
    pub concurrency: usize,
    pub workers: usize,
    pub payload_bytes: usize,
    pub reply_bytes: usize,
    pub duration_s: f64,
    pub requests: u64,
    pub successes: u64,
    pub errors: u64,
    pub errors_by_status: BTreeMap<String, u64>,
    /// Completed round trips per second.
    pub throughput_rps: f64,
    /// Publish to reply.
    pub latency_ms: Summary,
    /// Publish to JetStream's ack.
    pub publish_ack_ms: Summary,
}

/// One round trip, or the step at which it failed.
type RoundTrip = Result<(Duration, Duration), &'static str>;

/// Replies awaited, by request sequence number.
type Waiting = Arc<Mutex<HashMap<u64, oneshot::Sender<()>>>>;

pub async fn run(args: RawNatsArgs) -> anyhow::Result<RawNatsResult> {
    let bound = match (args.requests, args.duration) {
        (Some(n), None) => Bound::Requests(n),
        (None, Some(d)) => Bound::Duration(d),
        _ => anyhow::bail!("give exactly one of --requests and --duration"),
    };
    let names = BenchNames::new();
    let gateway = connect(&args.nats, "coder-load-raw-gateway").await?;
    let js = jetstream::new(gateway.clone());
    provision(&js, &names, &args).await?;
    let outcome = measure(&args, bound, &names, gateway, &js).await;
    js.delete_stream(&names.stream)
        .await
        .with_context(|| format!("deleting the benchmark stream {}", names.stream))?;
    let result = outcome?;
    if let Some(dir) = &args.out {
        write(dir, &result)?;
    }
    if !args.quiet {
        print!("{}", render(&result));
    }
    Ok(result)
}

/// Connects as the services do: the seed list, credentials and TLS of `nats`.
async fn connect(nats: &NatsArgs, name: &str) -> anyhow::Result<async_nats::Client> {
    coder_nats::connection::connect(nats, name, INBOX_PREFIX)
        .await
        .with_context(|| format!("connecting to NATS at {}", nats.url))
}

async fn provision(
    js: &jetstream::Context,
    names: &BenchNames,
    args: &RawNatsArgs,
) -> anyhow::Result<()> {
    let storage = if args.memory {
        stream::StorageType::Memory
    } else {
        stream::StorageType::File
    };
    let stream = js
        .create_stream(stream::Config {
            name: names.stream.clone(),
            subjects: vec![names.requests_subject.clone()],
            retention: stream::RetentionPolicy::WorkQueue,
            storage,
            discard: stream::DiscardPolicy::New,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await
        .context("creating the benchmark stream (is JetStream enabled?)")?;
    stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some(names.consumer.clone()),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: Duration::from_secs(30),
            max_deliver: 3,
            ..Default::default()
        })
        .await
        .context("creating the benchmark consumer")?;
    Ok(())
}

async fn measure(
    args: &RawNatsArgs,
    bound: Bound,
    names: &BenchNames,
    gateway: async_nats::Client,
    js: &jetstream::Context,
) -> anyhow::Result<RawNatsResult> {
    let mut responders = JoinSet::new();
    for _ in 0..args.workers.max(1) {
        let worker = connect(&args.nats, "coder-load-raw-worker").await?;
        let consumer: consumer::PullConsumer = jetstream::new(worker.clone())
            .get_consumer_from_stream(&names.consumer, &names.stream)
            .await
            .context("opening the benchmark consumer")?;
        let reply = Bytes::from(vec![b'r'; args.reply_bytes]);
        responders.spawn(respond(worker, consumer, args.batch.max(1), reply));
    }
    let waiting: Waiting = Arc::default();
    let replies = gateway
        .subscribe(names.replies_wildcard())
        .await
        .context("subscribing to the benchmark's replies")?;
    let router = tokio::spawn(route_replies(replies, waiting.clone()));

    let origin = Instant::now();
    let tickets = Arc::new(Tickets::new(&bound, origin));
    let payload = Bytes::from(vec![b'p'; args.payload_bytes]);
    let mut clients = JoinSet::new();
    for _ in 0..args.concurrency.max(1) {
        let (js, names, waiting) = (js.clone(), names.clone(), waiting.clone());
        let (tickets, payload) = (tickets.clone(), payload.clone());
        clients.spawn(async move {
            let mut trips = Vec::new();
            while let Some(seq) = tickets.take(Instant::now()) {
                trips.push(round_trip(&js, &names, &waiting, seq, payload.clone()).await);
            }
            trips
        });
    }
    let mut trips = Vec::new();
    while let Some(done) = clients.join_next().await {
        trips.extend(done.context("a benchmark client task failed")?);
    }
    let wall = origin.elapsed().as_secs_f64();
    router.abort();
    responders.abort_all();
    Ok(summarise(args, wall, &trips))
}

/// A worker: pull, reply, ack.
async fn respond(
    worker: async_nats::Client,
    consumer: consumer::PullConsumer,
    batch: usize,
    reply: Bytes,
) -> anyhow::Result<()> {
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(batch)
        .messages()
        .await?;
    while let Some(message) = messages.next().await {
        let message = message?;
        let headers = message
            .headers
            .as_ref()
            .and_then(RequestHeaders::from_header_map);
        if let Some(headers) = headers {
            worker.publish(headers.reply_to, reply.clone()).await?;
        }
        message
            .ack()
            .await
            .map_err(|e| anyhow::anyhow!("ack: {e}"))?;
    }
    Ok(())
}

/// The gateway's single reply subscription, routing each reply to its waiting request.
async fn route_replies(mut replies: async_nats::Subscriber, waiting: Waiting) {
    while let Some(message) = replies.next().await {
        let seq = message
            .subject
            .rsplit('.')
            .next()
            .and_then(|s| s.parse::<u64>().ok());
        let sender = seq.and_then(|seq| waiting.lock().ok()?.remove(&seq));
        if let Some(sender) = sender {
            let _ = sender.send(());
        }
    }
}

async fn round_trip(
    js: &jetstream::Context,
    names: &BenchNames,
    waiting: &Waiting,
    seq: u64,
    payload: Bytes,
) -> RoundTrip {
    let (tx, rx) = oneshot::channel();
    waiting.lock().map_err(|_| "poisoned")?.insert(seq, tx);
    let headers = RequestHeaders {
        msg_id: format!("{}-{seq}", names.run_id),
        reply_to: names.reply_subject(seq),
        deadline: SystemTime::now() + ROUND_TRIP_TIMEOUT,
        traceparent: None,
    };
    let sent = Instant::now();
    let result = async {
        let ack = js
            .publish_with_headers(
                names.requests_subject.clone(),
                headers.to_header_map(),
                payload,
            )
            .await
            .map_err(|_| "publish")?;
        ack.await.map_err(|_| "publish_ack")?;
        let acked = sent.elapsed();
        match tokio::time::timeout_at(sent + ROUND_TRIP_TIMEOUT, rx).await {
            Ok(Ok(())) => Ok((sent.elapsed(), acked)),
            Ok(Err(_)) => Err("reply_lost"),
            Err(_) => Err("timeout"),
        }
    }
    .await;
    if result.is_err() {
        if let Ok(mut waiting) = waiting.lock() {
            waiting.remove(&seq);
        }
    }
    result
}

fn summarise(args: &RawNatsArgs, wall_s: f64, trips: &[RoundTrip]) -> RawNatsResult {
    let ms = |d: &Duration| d.as_secs_f64() * 1e3;
    let ok: Vec<&(Duration, Duration)> = trips.iter().filter_map(|t| t.as_ref().ok()).collect();
    let mut errors_by_status = BTreeMap::new();
    for error in trips.iter().filter_map(|t| t.as_ref().err()) {
        *errors_by_status.entry((*error).to_owned()).or_default() += 1;
    }
    RawNatsResult {
        label: args.label.clone(),
        nats_url: args.nats.url.clone(),
        storage: if args.memory { "memory" } else { "file" }.to_owned(),
        concurrency: args.concurrency,
        workers: args.workers,
        payload_bytes: args.payload_bytes,
        reply_bytes: args.reply_bytes,
        duration_s: wall_s,
        requests: trips.len() as u64,
        successes: ok.len() as u64,
        errors: (trips.len() - ok.len()) as u64,
        errors_by_status,
        throughput_rps: if wall_s > 0.0 {
            ok.len() as f64 / wall_s
        } else {
            0.0
        },
        latency_ms: Summary::of(ok.iter().map(|(total, _)| ms(total))),
        publish_ack_ms: Summary::of(ok.iter().map(|(_, ack)| ms(ack))),
    }
}

fn write(dir: &Path, result: &RawNatsResult) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(crate::report::RESULT_FILE);
    let json = serde_json::to_string_pretty(result).context("serialising the result")?;
    std::fs::write(&path, json + "\n").with_context(|| format!("writing {}", path.display()))
}

pub fn render(r: &RawNatsResult) -> String {
    format!(
        "{}: JetStream publish + pull + reply, {} in flight, {} worker(s), {} storage, {} B payload\n\
         round trips {} (errors {}) in {:.2} s: {:.1}/s\n\
         latency ms      p50 {}  p90 {}  p99 {}  max {}\n\
         publish ack ms  p50 {}  p90 {}  p99 {}  max {}\n",
        r.label,
        r.concurrency,
        r.workers,
        r.storage,
        r.payload_bytes,
        r.requests,
        r.errors,
        r.duration_s,
        r.throughput_rps,
        num(r.latency_ms.p50),
        num(r.latency_ms.p90),
        num(r.latency_ms.p99),
        num(r.latency_ms.max),
        num(r.publish_ack_ms.p50),
        num(r.publish_ack_ms.p90),
        num(r.publish_ack_ms.p99),
        num(r.publish_ack_ms.max),
    )
}
