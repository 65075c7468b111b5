//! The gateway process on free ports, started as a deployment would start it.

use super::client::spawn_completion;
use super::exposition::{value, wait_for, FOLLOW};
use coder_nats::testing::{free_port, http_get_status, NatsServer, Role, Service, READY_TIMEOUT};
use reqwest::StatusCode;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// The harness's `--queue-poll-interval`: how often the queue gauges are refreshed.
pub const QUEUE_POLL_INTERVAL: Duration = Duration::from_millis(250);

pub struct Gateway {
    pub process: Service,
    pub api: SocketAddr,
    pub metrics: SocketAddr,
}

impl Gateway {
    /// A gateway on `nats`, ready (`/readyz` answered 200); `extra` adds flags.
    pub fn start(nats: &NatsServer, extra: &[&str]) -> Self {
        Self::start_with_env(nats, extra, &[])
    }

    /// As [`Gateway::start`], with `CODER_*` settings in the environment instead of flags.
    pub fn start_with_env(nats: &NatsServer, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let mut gateway = Self::spawn(nats, extra, env);
        gateway
            .process
            .wait_http_ok(gateway.api, "/readyz", READY_TIMEOUT);
        gateway
    }

    /// The gateway started, without waiting for it.
    pub fn spawn(nats: &NatsServer, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let api: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let metrics: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let poll_interval = QUEUE_POLL_INTERVAL.as_secs_f64().to_string();
        let mut args = vec![
            "--listen".to_owned(),
            api.to_string(),
            "--metrics-listen".into(),
            metrics.to_string(),
            "--nats-url".into(),
            nats.url(),
            "--queue-poll-interval".into(),
            poll_interval,
        ];
        args.extend(nats.client_flags(Role::Gateway));
        args.extend(extra.iter().map(|s| s.to_string()));
        let binary = Path::new(env!("CARGO_BIN_EXE_gateway"));
        Self {
            process: Service::spawn_path(binary, &args, env),
            api,
            metrics,
        }
    }

    /// Polls `/readyz` every millisecond until it answers 200.
    pub fn wait_ready_closely(&self) {
        let start = Instant::now();
        while http_get_status(self.api, "/readyz") != Some(200) {
            assert!(start.elapsed() < READY_TIMEOUT, "gateway never ready");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.api)
    }

    pub fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.metrics)
    }
}

/// A gateway with a consumer for `model` (`--models`) and no worker at all, ready to queue its
/// requests; they wait up to two minutes unless `extra` sets `--request-timeout`.
pub async fn idle_gateway(nats: &NatsServer, model: &str, extra: &[&str]) -> Gateway {
    let mut flags = vec!["--models", model];
    if !extra.contains(&"--request-timeout") {
        flags.extend(["--request-timeout", "120"]);
    }
    flags.extend_from_slice(extra);
    let gateway = Gateway::start(nats, &flags);
    wait_until_configured_model_is_known(&gateway, model).await;
    gateway
}

/// Waits until the queue monitor reports `model`, which it does only once the `--models`
/// consumers exist. `/readyz` answers earlier (see `metrics_queue.rs`,
/// `a_configured_model_queues_from_the_moment_the_gateway_is_ready`), and a request sent in that
/// window is refused 404 instead of queued.
pub async fn wait_until_configured_model_is_known(gateway: &Gateway, model: &str) {
    wait_for(
        &gateway.metrics_url(),
        FOLLOW,
        "the configured model known",
        |s| value(s, "coder_workers_connected", &[("model_name", model)]).is_some(),
    )
    .await;
}

/// Sends one request for `model` (which has no worker) and waits until the gauge shows it
/// queued.
pub async fn queue_one_and_wait(gateway: &Gateway, model: &str) -> JoinHandle<StatusCode> {
    let queued = spawn_completion(gateway, model, 2);
    wait_for(&gateway.metrics_url(), FOLLOW, "one request queued", |s| {
        value(s, "coder_queue_pending_requests", &[("model_name", model)]) == Some(1.0)
    })
    .await;
    queued
}
