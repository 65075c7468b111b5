//! `coder-load raw-nats` against a real nats-server: every JetStream publish + pull + reply round
//! trip completes, the result is written, and the benchmark leaves no stream behind.

use clap::Parser;
use coder_nats::testing::NatsServer;
use futures::StreamExt;
use load_tests::raw_nats::{self, RawNatsResult};
use load_tests::RawNatsArgs;
use std::path::Path;

async fn raw_nats(nats: &NatsServer, out: &Path, extra: &[&str]) -> RawNatsResult {
    let url = nats.url();
    let base = ["raw-nats", "--nats-url", &url, "--quiet", "--out"];
    let words = base
        .into_iter()
        .chain([out.to_str().unwrap()])
        .chain(extra.iter().copied());
    let args = RawNatsArgs::try_parse_from(words).expect("valid arguments");
    raw_nats::run(args).await.expect("the benchmark runs")
}

/// The server's JetStream streams.
async fn streams(nats: &NatsServer) -> Vec<String> {
    let client = async_nats::connect(nats.url()).await.expect("connect");
    let names: Vec<_> = async_nats::jetstream::new(client)
        .stream_names()
        .collect()
        .await;
    names
        .into_iter()
        .collect::<Result<_, _>>()
        .expect("stream names")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounded_run_completes_every_round_trip_and_cleans_up() {
    let nats = NatsServer::start();
    let out = tempfile::tempdir().unwrap();
    let load = [
        "--requests",
        "300",
        "--concurrency",
        "8",
        "--workers",
        "2",
        "--batch",
        "16",
    ];

    let result = raw_nats(&nats, out.path(), &load).await;

    assert_eq!(result.requests, 300);
    assert_eq!(result.successes, 300, "{:?}", result.errors_by_status);
    assert_eq!((result.storage.as_str(), result.workers), ("file", 2));
    assert!(result.throughput_rps > 0.0);
    let (round_trip, ack) = (
        result.latency_ms.p50.unwrap(),
        result.publish_ack_ms.p50.unwrap(),
    );
    assert!(
        round_trip >= ack,
        "the reply follows the ack: {round_trip} < {ack}"
    );
    let written = std::fs::read_to_string(out.path().join("result.json")).expect("written");
    let written: serde_json::Value = serde_json::from_str(&written).expect("JSON");
    assert_eq!(written["successes"], 300);
    assert_eq!(streams(&nats).await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_run_on_a_memory_stream_stops_on_time() {
    let nats = NatsServer::start();
    let out = tempfile::tempdir().unwrap();

    let result = raw_nats(&nats, out.path(), &["--duration", "0.5", "--memory"]).await;

    assert!(result.successes > 0);
    assert_eq!((result.errors, result.storage.as_str()), (0, "memory"));
    assert!(result.duration_s < 5.0, "took {} s", result.duration_s);
    assert_eq!(streams(&nats).await, Vec::<String>::new());
}

/// `raw-nats` runs against a secured server with the services' flags: without them it is
/// refused at connect; with the gateway user's, TLS and the password are accepted, and what the
/// server refuses is the benchmark's own stream, which no shipped role may create.
#[tokio::test]
async fn the_nats_flags_carry_tls_and_credentials() {
    let nats = NatsServer::start_secured();
    let out = tempfile::tempdir().unwrap();
    let attempt = |flags: Vec<String>| {
        let url = nats.url();
        let mut words = vec!["raw-nats".to_owned(), "--nats-url".to_owned(), url];
        words.extend(flags);
        words.extend(["--quiet", "--requests", "1", "--out"].map(String::from));
        words.push(out.path().to_string_lossy().into_owned());
        let args = RawNatsArgs::try_parse_from(words).expect("valid arguments");
        raw_nats::run(args)
    };

    let anonymous = format!("{:#}", attempt(Vec::new()).await.unwrap_err());
    assert!(anonymous.starts_with("connecting to NATS"), "{anonymous}");

    let flags = nats.client_flags(coder_nats::testing::Role::Gateway);
    let as_gateway = format!("{:#}", attempt(flags).await.unwrap_err());
    assert!(!as_gateway.contains("connecting to NATS"), "{as_gateway}");
    assert!(
        as_gateway.starts_with("creating the benchmark stream"),
        "{as_gateway}"
    );
}
