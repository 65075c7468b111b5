//! The short chaos test: the shipped 3-node cluster (users per role, mutual TLS), the request
//! stream at R3, a gateway on the seed list of all three nodes and two synthetic workers; a
//! steady open-loop load of streamed completions, during which the node leading the stream is
//! SIGKILLed and later restarted, and then the node the gateway is connected to (so that worker
//! events published while the gateway moves are lost, and must be made good). Nothing may be
//! lost: the accounting against the gateway's
//! counters holds, and every answer equals a reference answer to its body, byte for byte
//! (`--check-answers`: no token lost, none repeated). No timing is asserted.
//!
//! The gateway and gpu-worker binaries come from `target/debug`: run `cargo build --workspace`
//! before `cargo test -p load-tests`.

use clap::Parser;
use coder_nats::subjects;
use coder_nats::testing::{free_port, NatsCluster, Role, Service};
use load_tests::{RunArgs, WaitReadyArgs};
use std::net::SocketAddr;
use std::time::Duration;

const MODEL: &str = "synthetic";
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A service of `role` on the nodes of `seeds`, with its user's flags.
fn spawn(
    cluster: &NatsCluster,
    seeds: String,
    role: Role,
    binary: &str,
    mut args: Vec<String>,
) -> Service {
    args.extend(["--nats-url".to_owned(), seeds]);
    args.extend(cluster.client_flags(role));
    args.extend(["--stream-replicas", "3", "--max-deliver", "3"].map(String::from));
    Service::spawn(binary, &args, &[])
}

/// The node leading the request stream, as the gateway's user reads it.
async fn stream_leader(cluster: &NatsCluster) -> usize {
    let args = cluster.client_args(Role::Gateway);
    let client =
        coder_nats::connection::connect(&args, "chaos-test", subjects::GATEWAY_INBOX_PREFIX)
            .await
            .expect("the test connects as the gateway");
    let jetstream = async_nats::jetstream::new(client);
    let mut stream = jetstream
        .get_stream(subjects::STREAM_NAME)
        .await
        .expect("the request stream");
    let info = stream.info().await.expect("the stream's info");
    let leader = info
        .cluster
        .as_ref()
        .and_then(|cluster| cluster.leader.clone())
        .expect("the stream has a leader");
    NatsCluster::index_of(&leader).unwrap_or_else(|| panic!("leader {leader} is not a node"))
}

/// The node the gateway is connected to, from each node's `/connz`.
async fn gateway_node(cluster: &NatsCluster) -> usize {
    for index in 0..coder_nats::testing::NODES {
        let url = format!("{}/connz?limit=4096", cluster.monitor_url(index));
        let Ok(response) = reqwest::get(url).await else {
            continue;
        };
        let connz: serde_json::Value = response.json().await.expect("connz JSON");
        let names = connz["connections"].as_array().into_iter().flatten();
        if names
            .filter_map(|c| c["name"].as_str())
            .any(|name| name.starts_with("gateway-"))
        {
            return index;
        }
    }
    panic!("no node has the gateway's connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_stream_leader_under_load_loses_nothing() {
    let mut cluster = NatsCluster::start();
    let loopback = |port| SocketAddr::from(([127, 0, 0, 1], port));
    let (api, metrics) = (loopback(free_port()), loopback(free_port()));
    let gateway_args = vec![
        "--listen".to_owned(),
        api.to_string(),
        "--metrics-listen".to_owned(),
        metrics.to_string(),
        "--models".to_owned(),
        MODEL.to_owned(),
    ];
    let mut gateway = spawn(
        &cluster,
        cluster.url(),
        Role::Gateway,
        "gateway",
        gateway_args,
    );
    gateway.wait_http_ok(api, "/readyz", READY_TIMEOUT);
    // The workers on the other two nodes: when the gateway's node dies, the events they publish
    // while the gateway moves are lost for sure, and must be made good.
    let gateways = gateway_node(&cluster).await;
    let _workers: Vec<Service> = (0..2)
        .map(|_| {
            let worker_args = [
                "--metrics-listen",
                &loopback(free_port()).to_string(),
                "--backend",
                "synthetic",
                "--model",
                MODEL,
                "--concurrency",
                "4",
                "--synthetic-ms-per-token",
                "20",
                "--ack-wait",
                "3",
            ]
            .map(String::from)
            .to_vec();
            let seeds = cluster.url_without(gateways);
            spawn(&cluster, seeds, Role::Worker, "gpu-worker", worker_args)
        })
        .collect();
    let wait = WaitReadyArgs::try_parse_from([
        "wait-ready",
        "--url",
        &format!("http://{api}"),
        "--model",
        MODEL,
        "--timeout",
        "30",
    ])
    .unwrap();
    load_tests::wait_ready::wait_ready(&wait)
        .await
        .expect("the gateway serves the model");

    let out = tempfile::tempdir().unwrap();
    let run = RunArgs::try_parse_from([
        "run",
        "--url",
        &format!("http://{api}"),
        "--model",
        MODEL,
        "--metrics-url",
        &format!("http://{metrics}/metrics"),
        "--rate",
        "5",
        "--duration",
        "12",
        "--stream",
        "--max-tokens",
        "64",
        "--arrival-seed",
        "1",
        "--timeout",
        "30",
        "--settle-timeout",
        "30",
        "--check-answers",
        "--no-progress",
        "--quiet",
        "--out",
        out.path().to_str().unwrap(),
    ])
    .unwrap();
    let load = tokio::spawn(load_tests::run(run));

    tokio::time::sleep(Duration::from_secs(3)).await;
    let leader = stream_leader(&cluster).await;
    cluster.kill(leader);
    tokio::time::sleep(Duration::from_secs(4)).await;
    cluster.restart(leader);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let gateways = gateway_node(&cluster).await;
    cluster.kill(gateways);
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.restart(gateways);

    let outcome = load.await.unwrap().expect("the run completes");
    let result = &outcome.result;
    assert_eq!(
        result.accounting_ok,
        Some(true),
        "{:#?}",
        result.accounting.problems
    );
    let answers = result.answers.as_ref().expect("the answers were checked");
    assert!(answers.ok(), "{answers:#?}");
    assert_eq!(answers.answers, result.successes, "every answer compared");
    // A request may be refused while the stream has no leader (503 after the publish retries),
    // but none may fail any other way.
    let others: u64 = result
        .errors_by_status
        .iter()
        .filter(|(code, _)| !["503", "429"].contains(&code.as_str()))
        .map(|(_, n)| n)
        .sum();
    assert_eq!(others, 0, "{:?}", result.errors_by_status);
    assert!(result.successes > 0);
}
