//! Wiring: connect to NATS, start the background tasks, serve the API and `/metrics`, and shut
//! down gracefully.

use crate::admission::Admission;
use crate::auth::ApiKeys;
use crate::config::Config;
use crate::dispatch::Dispatcher;
use crate::known_models::KnownModels;
use crate::queue_monitor::QueueMonitor;
use crate::replies::ReplyRouter;
use crate::routes;
use crate::state::AppState;
use crate::workers::WorkerRegistry;
use anyhow::Context;
use async_nats::jetstream;
use axum::serve::ListenerExt;
use axum::Router;
use coder_nats::provision::{self, ConsumerSettings, StreamSettings};
use coder_nats::subjects;
use metrics_common::{GatewayMetrics, Telemetry};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

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
    let telemetry = if config.metrics_enabled {
        Telemetry::prometheus()?
    } else {
        Telemetry::disabled()
    };
    let metrics = GatewayMetrics::new(&telemetry.meter());
    let api_keys = config
        .api_keys_file
        .as_deref()
        .map(ApiKeys::from_file)
        .transpose()?;
    let gateway_id = subjects::new_instance_id();
    let client =
        coder_nats::connection::connect(&config.nats_url, &format!("gateway-{gateway_id}"))
            .await
            .context("connecting to NATS")?;
    let jetstream = jetstream::new(client.clone());
    let stopping = CancellationToken::new();

    let router = Arc::new(ReplyRouter::default());
    let replies = client
        .subscribe(subjects::replies_wildcard(&gateway_id))
        .await?;
    tokio::spawn(Arc::clone(&router).run(replies));
    let workers = Arc::new(WorkerRegistry::default());
    tokio::spawn(Arc::clone(&workers).run(client.subscribe(subjects::HEARTBEAT_WILDCARD).await?));

    let admission = Admission::new(config.max_pending_per_model);
    let models = Arc::new(KnownModels::new(Arc::clone(&workers), jetstream.clone()));
    // Known from the first request on; their consumers are created before /readyz says ready.
    models.set_provisioned(config.models.iter().cloned().collect());
    let queue_ready = Arc::new(AtomicBool::new(false));
    let monitor = QueueMonitor {
        jetstream: jetstream.clone(),
        metrics: metrics.clone(),
        admission: Arc::clone(&admission),
        models: Arc::clone(&models),
        workers: Arc::clone(&workers),
        configured: config.models.iter().cloned().collect(),
    };
    let stream_settings = config.stream_settings();
    tokio::spawn(provision_then_monitor(
        monitor,
        stream_settings,
        Arc::clone(&queue_ready),
        config.queue_poll_interval,
        stopping.clone(),
    ));

    let dispatcher = Dispatcher {
        client: client.clone(),
        jetstream,
        router,
        admission,
        models,
        metrics: metrics.clone(),
        gateway_id: gateway_id.clone(),
        request_timeout: config.request_timeout,
    };
    let state = AppState {
        config: Arc::clone(&config),
        dispatcher: Arc::new(dispatcher),
        workers,
        metrics,
        queue_ready,
    };
    tracing::info!(%gateway_id, api = %api.local_addr()?, metrics = %metrics_listener.local_addr()?, "gateway listening");
    let metrics_server = tokio::spawn(metrics_common::server::serve(
        metrics_listener,
        telemetry.clone(),
        stopping.clone().cancelled_owned(),
    ));
    let signal = stopping.clone();
    tokio::spawn(async move {
        shutdown.await;
        signal.cancel();
    });
    serve_with_grace(
        api,
        routes::app(state, api_keys),
        stopping,
        config.shutdown_grace,
    )
    .await?;
    let _ = metrics_server.await;
    if let Err(error) = client.flush().await {
        tracing::debug!(%error, "final NATS flush");
    }
    telemetry.shutdown();
    tracing::info!("gateway stopped");
    Ok(())
}

/// Stops accepting when `stopping` fires and gives in-flight requests `grace` to finish.
async fn serve_with_grace(
    listener: TcpListener,
    app: Router,
    stopping: CancellationToken,
    grace: Duration,
) -> anyhow::Result<()> {
    // Small SSE frames must leave at once: without TCP_NODELAY, Nagle's algorithm and delayed
    // ACKs hold tokens back ~40 ms.
    let listener = listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "TCP_NODELAY not set");
        }
    });
    let server =
        axum::serve(listener, app).with_graceful_shutdown(stopping.clone().cancelled_owned());
    let deadline = async {
        stopping.cancelled().await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        result = server => result.context("serving the API"),
        _ = deadline => {
            tracing::warn!(?grace, "shutdown grace period over: dropping the requests still open");
            Ok(())
        }
    }
}

/// Creates the stream (retrying while NATS is unreachable) and the `--models` consumers, then
/// polls the queue state until shutdown.
async fn provision_then_monitor(
    monitor: QueueMonitor,
    stream_settings: StreamSettings,
    queue_ready: Arc<AtomicBool>,
    interval: Duration,
    stopping: CancellationToken,
) {
    let mut delay = Duration::from_millis(100);
    // Only for consumers no worker has created yet: theirs belong to the workers.
    let defaults = ConsumerSettings::default();
    loop {
        let provisioned = async {
            provision::ensure_stream(&monitor.jetstream, &stream_settings).await?;
            for model in &monitor.configured {
                provision::ensure_consumer_exists(&monitor.jetstream, model, &defaults).await?;
            }
            Ok::<_, provision::ProvisionError>(())
        };
        match provisioned.await {
            Ok(()) => {
                queue_ready.store(true, Ordering::Relaxed);
                break;
            }
            Err(error) => tracing::warn!(%error, "provisioning the stream failed; retrying"),
        }
        tokio::select! {
            _ = stopping.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
    monitor.run(interval, stopping).await;
}
