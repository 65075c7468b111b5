//! Wiring: load the model, connect, provision, announce, pull until told to stop, then drain.

use crate::affinity::Signals;
use crate::backend::Backend;
use crate::cancel::CancelRegistry;
use crate::config::WorkerConfig;
use crate::consumer::PullLoop;
use crate::execute::Executor;
use crate::heartbeat::Announcer;
use crate::load::load_backend;
use crate::slots::Slots;
use crate::step_metrics::StepMetrics;
use anyhow::Context;
use async_nats::jetstream::{self, consumer::PullConsumer};
use coder_nats::{provision, retry, subjects};
use metrics_common::{Telemetry, WorkerMetrics};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long the last heartbeat and the last flush at shutdown may each wait for NATS.
const FINAL_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// GPU figures are read this often.
const GPU_SAMPLE_INTERVAL: Duration = Duration::from_secs(5);

pub async fn run(
    config: WorkerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let stopping = CancellationToken::new();
    let signal = stopping.clone();
    tokio::spawn(async move {
        shutdown.await;
        signal.cancel();
    });
    let telemetry = Telemetry::prometheus()?;
    let metrics = WorkerMetrics::new(&telemetry.meter(), &config.model);
    let metrics_server = serve_metrics(&config, &telemetry, &stopping).await?;
    let slots = Slots::new(config.concurrency);
    metrics.set_slots(0, u64::from(slots.total()));
    metrics_common::gpu::start_sampler(
        &telemetry.meter(),
        &config.model,
        GPU_SAMPLE_INTERVAL,
        stopping.clone(),
    );
    let backend = load(&config, &metrics).await?;

    let worker_id = subjects::new_instance_id();
    let client = coder_nats::connection::connect(
        &config.nats,
        &format!("gpu-worker-{worker_id}"),
        subjects::WORKER_INBOX_PREFIX,
    )
    .await
    .context("connecting to NATS")?;
    let Some(partitions) = provision(&client, &config, &stopping).await else {
        return Ok(());
    };
    let signals = Signals::subscribe(&client, &config.model, &worker_id, config.affinity())
        .await
        .context("subscribing to the doorbell and the heartbeats")?;
    let cancels = CancelRegistry::subscribe(&client).await?;
    let announcer = Announcer::new(
        client.clone(),
        worker_id.clone(),
        config.model.clone(),
        backend.info(),
        slots.clone(),
        config.heartbeat_interval,
    );
    let heartbeat = tokio::spawn(announcer.run(stopping.clone()));
    let executor = Executor::new(
        client.clone(),
        backend,
        cancels,
        metrics,
        slots.clone(),
        worker_id.clone(),
        config.ack_wait,
    );

    tracing::info!(%worker_id, model = %config.model, slots = slots.total(), "worker ready: pulling requests");
    let tasks = TaskTracker::new();
    let pulling = PullLoop {
        partitions,
        signals,
        slots: slots.clone(),
        executor: Arc::new(executor),
    };
    pulling.run(stopping.clone(), tasks.clone()).await;
    drain(tasks, &slots, config.shutdown_grace, heartbeat, &client).await;
    let _ = metrics_server.await;
    telemetry.shutdown();
    tracing::info!("worker stopped");
    Ok(())
}

/// `/metrics` on `--metrics-listen`, until `stopping`.
async fn serve_metrics(
    config: &WorkerConfig,
    telemetry: &Telemetry,
    stopping: &CancellationToken,
) -> anyhow::Result<JoinHandle<std::io::Result<()>>> {
    let listener = TcpListener::bind(config.metrics_listen)
        .await
        .with_context(|| format!("binding the metrics listener {}", config.metrics_listen))?;
    Ok(tokio::spawn(metrics_common::server::serve(
        listener,
        telemetry.clone(),
        stopping.clone().cancelled_owned(),
    )))
}

/// The configured backend, its load time recorded.
async fn load(config: &WorkerConfig, metrics: &WorkerMetrics) -> anyhow::Result<Arc<dyn Backend>> {
    tracing::info!(model = %config.model, backend = ?config.backend, "loading the backend");
    let (backend, load_time) = load_backend(config).await?;
    metrics.set_model_load(load_time);
    let info = backend.info();
    metrics.set_info(info.kind, &info.device, info.cpu_kernels);
    backend.observe_steps(Arc::new(StepMetrics(metrics.clone())));
    tracing::info!(?load_time, device = %backend.info().device, "backend ready");
    Ok(backend)
}

/// Creates the stream if missing (its limits are the gateway's) and this model's consumers (one
/// per partition) with this worker's delivery settings, retrying while NATS is unreachable;
/// `None` if stopped first.
async fn provision(
    client: &async_nats::Client,
    config: &WorkerConfig,
    stopping: &CancellationToken,
) -> Option<Vec<PullConsumer>> {
    let jetstream = jetstream::new(client.clone());
    let (stream, consumer) = (config.stream_settings(), config.consumer_settings());
    retry::until_ok("provisioning the queue", stopping.cancelled(), || async {
        provision::ensure_stream_exists(&jetstream, &stream).await?;
        provision::ensure_consumers(&jetstream, &config.model, &consumer).await
    })
    .await
}

/// Once the pull loop has stopped: in-flight requests get `grace` to finish, the last heartbeat
/// ("not accepting") and the last flush a bounded wait each.
async fn drain(
    tasks: TaskTracker,
    slots: &Slots,
    grace: Duration,
    heartbeat: JoinHandle<()>,
    client: &async_nats::Client,
) {
    tracing::info!(
        in_flight = slots.busy(),
        "draining: no new pulls, finishing in-flight requests"
    );
    tasks.close();
    if tokio::time::timeout(grace, tasks.wait()).await.is_err() {
        tracing::warn!("shutdown grace over: unfinished requests will be redelivered");
    }
    // Its last beat says "not accepting"; a client stuck reconnecting may never take it.
    let _ = tokio::time::timeout(FINAL_FLUSH_TIMEOUT, heartbeat).await;
    // A flush waits for the server; with NATS gone that is a reconnect that may never come.
    if tokio::time::timeout(FINAL_FLUSH_TIMEOUT, client.flush())
        .await
        .is_err()
    {
        tracing::warn!("NATS unreachable at shutdown: unacked requests return after ack_wait");
    }
}
