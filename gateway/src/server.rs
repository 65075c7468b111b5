//! Wiring: connect to NATS, start the background tasks, serve the API and `/metrics`, and shut
//! down gracefully.

use crate::access::keys::ApiKeys;
use crate::access::limits::KeyLimits;
use crate::access::{self, Access};
use crate::admission::Admission;
use crate::config::Config;
use crate::dispatch::Dispatcher;
use crate::http;
use crate::known_models::KnownModels;
use crate::queue_monitor::QueueMonitor;
use crate::routes;
use crate::state::AppState;
use crate::supervisor::Supervisor;
use crate::workers::WorkerRegistry;
use anyhow::Context;
use async_nats::jetstream;
use coder_nats::subjects;
use metrics_common::{GatewayMetrics, Telemetry};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How long the last flush at shutdown may wait for NATS.
const FINAL_FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Binds both listeners from the config and serves until `shutdown` completes.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let api = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding the API listener {}", config.listen))?;
    let metrics = TcpListener::bind(config.metrics_listen)
        .await
        .with_context(|| format!("binding the metrics listener {}", config.metrics_listen))?;
    serve(config, api, metrics, shutdown).await
}

/// Serves on listeners bound by the caller (tests bind port 0).
pub async fn serve(
    config: Config,
    api: TcpListener,
    metrics_listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let config = Arc::new(config);
    let telemetry = telemetry(&config)?;
    let api_keys = config
        .api_keys_file
        .as_deref()
        .map(ApiKeys::from_file)
        .transpose()?;
    check_open_api(&config, api_keys.as_ref(), api.local_addr()?)?;
    let stopping = CancellationToken::new();
    if let Some(keys) = &api_keys {
        access::reload_on_sighup(keys.clone(), stopping.clone()).context("listening for SIGHUP")?;
    }
    let access = Access::new(
        api_keys,
        KeyLimits::new(config.max_concurrent_per_key, config.rate_limit_per_key),
    );
    let signal = stopping.clone();
    tokio::spawn(async move {
        shutdown.await;
        signal.cancel();
    });
    let gateway_id = subjects::new_instance_id();
    let client = coder_nats::connection::connect(
        &config.nats,
        &format!("gateway-{gateway_id}"),
        subjects::GATEWAY_INBOX_PREFIX,
    )
    .await
    .context("connecting to NATS")?;
    let metrics = GatewayMetrics::new(&telemetry.meter());
    let state = start_queue_side(&config, &client, &gateway_id, metrics, &stopping).await?;

    tracing::info!(%gateway_id, api = %api.local_addr()?, metrics = %metrics_listener.local_addr()?, "gateway listening");
    let metrics_server = tokio::spawn(metrics_common::server::serve(
        metrics_listener,
        telemetry.clone(),
        stopping.clone().cancelled_owned(),
    ));
    http::serve(
        api,
        routes::app(state, access),
        config.client_timeouts(),
        stopping,
        config.shutdown_grace,
    )
    .await;
    let _ = metrics_server.await;
    // A flush waits for the server: with NATS gone, for a reconnect that may never come.
    match tokio::time::timeout(FINAL_FLUSH_TIMEOUT, client.flush()).await {
        Ok(Err(error)) => tracing::debug!(%error, "final NATS flush"),
        Err(_) => tracing::warn!("NATS unreachable at shutdown: cancels not yet sent are lost"),
        Ok(Ok(())) => {}
    }
    telemetry.shutdown();
    tracing::info!("gateway stopped");
    Ok(())
}

/// The Prometheus exporter, or none with `--metrics-enabled false` (to measure what
/// instrumentation costs).
fn telemetry(config: &Config) -> anyhow::Result<Telemetry> {
    Ok(if config.metrics_enabled {
        Telemetry::prometheus()?
    } else {
        Telemetry::disabled()
    })
}

/// Starts everything that follows the queue (worker heartbeats, provisioning and the queue
/// monitor, the reply subscription), each supervised, and returns the handlers' state.
async fn start_queue_side(
    config: &Arc<Config>,
    client: &async_nats::Client,
    gateway_id: &str,
    metrics: GatewayMetrics,
    stopping: &CancellationToken,
) -> anyhow::Result<AppState> {
    let jetstream = jetstream::new(client.clone());
    let supervisor = Supervisor::new(stopping.clone());
    let workers = WorkerRegistry::subscribe(client, &supervisor).await?;
    let models = Arc::new(KnownModels::new(Arc::clone(&workers), jetstream.clone()));
    // Known from the first request on; their consumers are created before /readyz says ready.
    models.set_provisioned(config.models.iter().cloned().collect());
    let admission = Admission::new(config.max_pending_per_model);
    let monitor = QueueMonitor::new(
        config,
        jetstream,
        metrics.clone(),
        Arc::clone(&admission),
        Arc::clone(&models),
        Arc::clone(&workers),
    );
    let queue_ready = Arc::new(AtomicBool::new(false));
    let provisioning = monitor.provision_then_run(
        config.stream_settings(),
        Arc::clone(&queue_ready),
        stopping.clone(),
    );
    supervisor.spawn("queue monitor", provisioning);
    let dispatcher = Dispatcher::start(
        config,
        client.clone(),
        subjects::gateway_replies_root(&config.replies_scope, gateway_id),
        admission,
        models,
        metrics.clone(),
        &supervisor,
    )
    .await?;
    Ok(AppState {
        config: Arc::clone(config),
        dispatcher: Arc::new(dispatcher),
        workers,
        metrics,
        queue_ready,
        stream_check: Arc::default(),
        supervisor,
    })
}

/// An API without keys is served on loopback only, unless `--allow-unauthenticated` says to:
/// a gateway exposed by mistake would give anyone (and any web page its visitors open) the
/// compute behind it.
fn check_open_api(config: &Config, keys: Option<&ApiKeys>, api: SocketAddr) -> anyhow::Result<()> {
    if keys.is_some() || api.ip().is_loopback() {
        return Ok(());
    }
    anyhow::ensure!(
        config.allow_unauthenticated,
        "refusing to serve the API on {api} without API keys: give --api-keys-file, listen on \
         a loopback address, or pass --allow-unauthenticated to serve it open"
    );
    tracing::warn!(%api, "serving the API WITHOUT API keys (--allow-unauthenticated): anyone who reaches this address can use it");
    Ok(())
}
