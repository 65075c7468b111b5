//! The real stack for the tests that drive it: a nats-server, the gateway and a synthetic
//! gpu-worker, each its own process, all stopped on drop.
//!
//! The gateway and gpu-worker binaries come from `target/debug`: run `cargo build --workspace`
//! before `cargo test -p load-tests`.
#![allow(dead_code)] // each test binary uses a different part of it

use clap::Parser;
use coder_nats::testing::{free_port, NatsServer, Service};
use load_tests::{RunArgs, WaitReadyArgs};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

pub const MODEL: &str = "synthetic";
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// One nats-server, one gateway and one synthetic worker; all stopped on drop.
pub struct Stack {
    pub api: SocketAddr,
    pub gateway_metrics: SocketAddr,
    pub worker_metrics: SocketAddr,
    pub worker: Service,
    pub gateway: Service,
    _nats: NatsServer,
}

impl Stack {
    pub fn start(worker_slots: u32, ms_per_token: u32) -> Self {
        Self::start_with(worker_slots, ms_per_token, &[])
    }

    /// As [`Stack::start`], the gateway with `gateway_extra` flags too.
    pub fn start_with(worker_slots: u32, ms_per_token: u32, gateway_extra: &[&str]) -> Self {
        let nats = NatsServer::start();
        let loopback = |port| SocketAddr::from(([127, 0, 0, 1], port));
        let (api, gateway_metrics, worker_metrics) = (
            loopback(free_port()),
            loopback(free_port()),
            loopback(free_port()),
        );
        let mut gateway_args = vec![
            "--listen".to_owned(),
            api.to_string(),
            "--metrics-listen".to_owned(),
            gateway_metrics.to_string(),
            "--nats-url".to_owned(),
            nats.url(),
        ];
        gateway_args.extend(gateway_extra.iter().map(|s| (*s).to_owned()));
        let mut gateway = Service::spawn("gateway", &gateway_args, &[]);
        let worker_args = [
            "--nats-url".to_owned(),
            nats.url(),
            "--metrics-listen".to_owned(),
            worker_metrics.to_string(),
            "--backend".to_owned(),
            "synthetic".to_owned(),
            "--model".to_owned(),
            MODEL.to_owned(),
            "--concurrency".to_owned(),
            worker_slots.to_string(),
            "--synthetic-ms-per-token".to_owned(),
            ms_per_token.to_string(),
        ];
        let mut worker = Service::spawn("gpu-worker", &worker_args, &[]);
        gateway.wait_http_ok(api, "/readyz", READY_TIMEOUT);
        worker.wait_http_ok(worker_metrics, "/metrics", READY_TIMEOUT);
        Self {
            api,
            gateway_metrics,
            worker_metrics,
            worker,
            gateway,
            _nats: nats,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.api)
    }

    /// `coder-load run` arguments against this stack, with the accounting on both sides.
    pub fn run_args(&self, out: &Path, load: &[&str]) -> RunArgs {
        let base = [
            "run".to_owned(),
            "--url".to_owned(),
            self.url(),
            "--metrics-url".to_owned(),
            format!("http://{}/metrics", self.gateway_metrics),
            "--worker-metrics-url".to_owned(),
            format!("http://{}/metrics", self.worker_metrics),
            "--model".to_owned(),
            MODEL.to_owned(),
            "--out".to_owned(),
            out.display().to_string(),
            "--no-progress".to_owned(),
        ];
        let load = load.iter().map(|s| (*s).to_owned());
        RunArgs::try_parse_from(base.into_iter().chain(load)).expect("valid arguments")
    }

    /// Waits until the gateway lists the model (the worker's heartbeat has arrived).
    pub async fn wait_for_model(&self) {
        let args = WaitReadyArgs {
            url: self.url(),
            model: Some(MODEL.to_owned()),
            timeout: READY_TIMEOUT,
            api_key: None,
        };
        load_tests::wait_ready::wait_ready(&args)
            .await
            .expect("the gateway serves the model");
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}
