//! Wiring: load the model, connect, provision, announce, pull until told to stop, then drain.

use crate::cancel::CancelRegistry;
use crate::config::WorkerConfig;
use crate::consumer::pull_loop;
use crate::execute::Executor;
use crate::heartbeat::Announcer;
use crate::load::load_backend;
use crate::slots::Slots;
use anyhow::Context;
use async_nats::jetstream;
use coder_nats::provision::{self, ConsumerSettings, StreamSettings};
use coder_nats::{subjects, Heartbeat};
use metrics_common::{Telemetry, WorkerMetrics};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
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
    let meter = telemetry.meter();
    let metrics = WorkerMetrics::new(&meter, &config.model);
    let metrics_listener = TcpListener::bind(config.metrics_listen)
        .await
        .with_context(|| format!("binding the metrics listener {}", config.metrics_listen))?;
    let metrics_server = tokio::spawn(metrics_common::server::serve(
        metrics_listener,
        telemetry.clone(),
        stopping.clone().cancelled_owned(),
    ));
    let slots = Slots::new(config.concurrency);
    metrics.set_slots(0, u64::from(slots.total()));
    metrics_common::gpu::start_sampler(
        &meter,
        &config.model,
        GPU_SAMPLE_INTERVAL,
        stopping.clone(),
    );

    tracing::info!(model = %config.model, backend = ?config.backend, "loading the backend");
    let (backend, load_time) = load_backend(&config).await?;
    metrics.set_model_load(load_time);
    tracing::info!(?load_time, device = %backend.info().device, "backend ready");

    let worker_id = subjects::new_instance_id();
    let client =
        coder_nats::connection::connect(&config.nats_url, &format!("gpu-worker-{worker_id}"))
            .await
            .context("connecting to NATS")?;
    let jetstream = jetstream::new(client.clone());
    let stream_settings = StreamSettings {
        replicas: usize::from(config.stream_replicas),
        ..StreamSettings::default()
    };
    let consumer_settings = ConsumerSettings {
        ack_wait: config.ack_wait,
        max_deliver: config.max_deliver,
        ..ConsumerSettings::default()
    };
    let Some(consumer) = provision_with_retry(
        &jetstream,
        &config.model,
        &stream_settings,
        &consumer_settings,
        &stopping,
    )
    .await
    else {
        return Ok(());
    };

    let cancels = Arc::new(CancelRegistry::default());
    tokio::spawn(Arc::clone(&cancels).run(client.subscribe(subjects::CANCEL_WILDCARD).await?));
    let info = backend.info().clone();
    let executor = Arc::new(Executor {
        client: client.clone(),
        backend,
        cancels,
        metrics,
        slots: slots.clone(),
        worker_id: worker_id.clone(),
        slot_report: std::sync::Mutex::default(),
        progress_every: config.ack_wait / 3,
    });
    let template = Heartbeat {
        worker_id: worker_id.clone(),
        model: config.model.clone(),
        device: info.device,
        backend: info.kind.to_owned(),
        slots_total: slots.total(),
        slots_busy: 0,
        context_length: info.context_length,
        ttl_ms: 0,
        accepting: true,
    };
    let announcer = Announcer::new(
        client.clone(),
        template,
        slots.clone(),
        config.heartbeat_interval,
    );
    let heartbeat = tokio::spawn(announcer.run(stopping.clone()));

    tracing::info!(%worker_id, model = %config.model, slots = slots.total(), "worker ready: pulling requests");
    let tasks = TaskTracker::new();
    pull_loop(
        consumer,
        slots.clone(),
        executor,
        stopping.clone(),
        tasks.clone(),
    )
    .await;

    tracing::info!(
        in_flight = slots.busy(),
        "draining: no new pulls, finishing in-flight requests"
    );
    tasks.close();
    if tokio::time::timeout(config.shutdown_grace, tasks.wait())
        .await
        .is_err()
    {
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
    let _ = metrics_server.await;
    telemetry.shutdown();
    tracing::info!("worker stopped");
    Ok(())
}

/// Creates the stream if missing (its limits are the gateway's) and this model's consumer with
/// this worker's delivery settings, retrying while NATS is unreachable.
async fn provision_with_retry(
    jetstream: &jetstream::Context,
    model: &str,
    stream: &StreamSettings,
    settings: &ConsumerSettings,
    stopping: &CancellationToken,
) -> Option<jetstream::consumer::PullConsumer> {
    let mut delay = Duration::from_millis(100);
    loop {
        let attempt = async {
            provision::ensure_stream_exists(jetstream, stream).await?;
            provision::ensure_consumer(jetstream, model, settings).await
        };
        // A JetStream request to an unreachable server waits out its timeout (10 s): a SIGTERM
        // meanwhile must not.
        let outcome = tokio::select! {
            _ = stopping.cancelled() => return None,
            outcome = attempt => outcome,
        };
        match outcome {
            Ok(consumer) => return Some(consumer),
            Err(error) => tracing::warn!(%error, "provisioning the queue failed; retrying"),
        }
        tokio::select! {
            _ = stopping.cancelled() => return None,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}
