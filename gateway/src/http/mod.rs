//! The API's HTTP/1 server: the axum router on hyper, with the timeouts `axum::serve` lacks, so
//! a client that sends slowly or stops reading holds nothing for long.
//!
//! - A request's head must arrive within `--header-read-timeout` (hyper's timer; it also closes a
//!   connection idle that long between requests).
//! - Its body must arrive within `--body-read-timeout` of its head ([`body_deadline`]).
//! - A response write that makes no progress for `--idle-write-timeout` fails the connection
//!   ([`write_stall`]): the response is dropped, and with it its generation, which is cancelled.
//!
//! # Layout
//! - [`body_deadline`]: a request body that fails once its deadline passes.
//! - [`write_stall`]: a connection whose writes fail after a stall.

pub mod body_deadline;
pub mod write_stall;

use axum::body::Body;
use axum::extract::Request;
use axum::Router;
use body_deadline::DeadlineBody;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use write_stall::StallLimited;

/// How long a failed `accept` (out of file descriptors, say) waits before the next.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// The limits on a client's pace.
#[derive(Debug, Clone, Copy)]
pub struct ClientTimeouts {
    pub header_read: Duration,
    pub body_read: Duration,
    pub idle_write: Duration,
}

/// Serves `app` on `listener` until `stopping`; then open connections finish their requests
/// (keep-alive ends) for up to `grace`, and whatever is still open is dropped.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    timeouts: ClientTimeouts,
    stopping: CancellationToken,
    grace: Duration,
) {
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            _ = stopping.cancelled() => break,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(error) => {
                tracing::warn!(%error, "accepting a connection failed");
                tokio::time::sleep(ACCEPT_RETRY).await;
                continue;
            }
        };
        // Small SSE frames must leave at once: without TCP_NODELAY, Nagle's algorithm and delayed
        // ACKs hold tokens back ~40 ms.
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "TCP_NODELAY not set");
        }
        let io = TokioIo::new(StallLimited::new(tcp, timeouts.idle_write));
        connections.spawn(serve_connection(
            io,
            app.clone(),
            timeouts,
            stopping.clone(),
        ));
    }
    // New connections are refused at once; the open ones finish.
    drop(listener);
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, drained).await.is_err() {
        tracing::warn!(
            ?grace,
            "shutdown grace period over: dropping the requests still open"
        );
    }
}

async fn serve_connection(
    io: TokioIo<StallLimited<tokio::net::TcpStream>>,
    app: Router,
    timeouts: ClientTimeouts,
    stopping: CancellationToken,
) {
    let body_read = timeouts.body_read;
    let service = app.map_request(move |request: Request<Incoming>| {
        request.map(|body| Body::new(DeadlineBody::new(body, body_read)))
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header_read);
    let connection = builder.serve_connection(io, TowerToHyperService::new(service));
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = stopping.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, "connection ended with an error");
    }
}
