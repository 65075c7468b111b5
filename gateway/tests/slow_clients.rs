//! Slow and idle clients: a connection that sends half a request, or stops reading its answer,
//! holds nothing for long; a client that cannot keep up with its stream is cut off and its
//! generation cancelled.

mod support;

use coder_nats::testing::NatsServer;
use serde_json::json;
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const MODEL: &str = "slow-client-model";
/// How long a test waits for the gateway to close a connection whose timeout (1 or 2 s here)
/// passed: a functional bound, not a timing target.
const CLOSED_WITHIN: Duration = Duration::from_secs(20);

/// Reads until the gateway closes the connection (or resets it); `None` if it stays open.
async fn read_until_closed(tcp: &mut TcpStream) -> Option<String> {
    let mut seen = Vec::new();
    let reading = async {
        let mut chunk = [0u8; 8192];
        loop {
            match tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(CLOSED_WITHIN, reading).await.ok()?;
    Some(String::from_utf8_lossy(&seen).into_owned())
}

#[tokio::test]
async fn a_connection_that_sends_half_a_header_is_closed_at_the_header_timeout() {
    let nats = NatsServer::start();
    let gateway = Gateway::start(&nats, &["--header-read-timeout", "1"]);
    let mut tcp = TcpStream::connect(gateway.api).await.expect("connects");

    let half = b"POST /v1/completions HTTP/1.1\r\nHost: gateway\r\nContent-Type: appl";
    tcp.write_all(half).await.expect("sent");

    let closed = read_until_closed(&mut tcp).await;
    assert!(closed.is_some(), "still open after {CLOSED_WITHIN:?}");
}

#[tokio::test]
async fn a_body_that_never_finishes_is_refused_at_the_body_timeout_and_closed() {
    let nats = NatsServer::start();
    let gateway = Gateway::start(&nats, &["--body-read-timeout", "1"]);
    let mut tcp = TcpStream::connect(gateway.api).await.expect("connects");

    let head = "POST /v1/completions HTTP/1.1\r\nHost: gateway\r\n\
                Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"model\":";
    tcp.write_all(head.as_bytes()).await.expect("sent");

    let answer = read_until_closed(&mut tcp).await;
    let answer = answer.unwrap_or_else(|| panic!("still open after {CLOSED_WITHIN:?}"));
    assert!(!answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn a_client_that_stops_reading_its_stream_is_cut_off_and_the_worker_sees_the_cancel() {
    let gateway_flags = ["--stream-event-buffer", "64", "--idle-write-timeout", "2"];
    // 30,000 tokens a millisecond apart: far longer than the test, unless cancelled.
    let worker_flags = ["--synthetic-ms-per-token", "1"];
    let (_nats, gateway, worker) = stack(MODEL, &gateway_flags, &worker_flags).await;
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .set_recv_buffer_size(4096)
        .expect("a small receive buffer");
    let mut tcp = socket.connect(gateway.api).await.expect("connects");
    let body = json!({"model": MODEL, "prompt": "x", "max_tokens": 30_000, "stream": true});
    let body = body.to_string();
    let request = format!(
        "POST /v1/completions HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );

    tcp.write_all(request.as_bytes()).await.expect("sent");
    // ... and read nothing.

    let cancelled = [("model_name", MODEL), ("outcome", "cancelled")];
    let (scrape, _) = wait_for(&worker.metrics_url(), CLOSED_WITHIN, "the cancel", |s| {
        value(s, "coder_worker_requests_total", &cancelled) == Some(1.0)
    })
    .await;
    let completed = [("model_name", MODEL), ("outcome", "completed")];
    assert_eq!(
        value(&scrape, "coder_worker_requests_total", &completed),
        None
    );
    let answer = read_until_closed(&mut tcp).await;
    let answer = answer.unwrap_or_else(|| panic!("still open after {CLOSED_WITHIN:?}"));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:.200}");
    assert!(
        !answer.contains("\"finish_reason\":\"length\""),
        "a whole answer"
    );
}
