//! A synthetic `gpu-worker` process on a free metrics port.
//!
//! Shared by path with `gpu-worker/tests`, so it names nothing else of the harness. There, Cargo
//! builds the binary for the tests (`CARGO_BIN_EXE_gpu-worker`); the gateway's tests start the one
//! in the target directory, which must have been built first (see `binary_path`).

use coder_nats::testing::{binary_path, free_port, NatsServer, Role, Service, READY_TIMEOUT};
use std::net::SocketAddr;
use std::path::PathBuf;

pub struct Worker {
    pub process: Service,
    pub metrics: SocketAddr,
}

impl Worker {
    /// A synthetic worker for `model`; `extra` adds or overrides flags.
    pub fn start(nats: &NatsServer, model: &str, extra: &[&str]) -> Self {
        Self::start_with_env(nats, model, extra, &[])
    }

    /// As [`Worker::start`], with `CODER_*` settings in the environment instead of flags.
    pub fn start_with_env(
        nats: &NatsServer,
        model: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let metrics: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let mut args = vec![
            "--nats-url".to_owned(),
            nats.url(),
            "--metrics-listen".into(),
            metrics.to_string(),
            "--backend".into(),
            "synthetic".into(),
            "--model".into(),
            model.into(),
            "--heartbeat-interval".into(),
            "0.5".into(),
        ];
        args.extend(nats.client_flags(Role::Worker));
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut process = Service::spawn_path(&worker_binary(), &args, env);
        process.wait_http_ok(metrics, "/metrics", READY_TIMEOUT);
        Self { process, metrics }
    }

    pub fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.metrics)
    }
}

/// The binary Cargo built for `gpu-worker`'s own tests, else the workspace's built one.
fn worker_binary() -> PathBuf {
    match option_env!("CARGO_BIN_EXE_gpu-worker") {
        Some(path) => PathBuf::from(path),
        None => binary_path("gpu-worker"),
    }
}
