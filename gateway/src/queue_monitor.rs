//! Reads the queue's state from JetStream on an interval and makes it a signal: backlog gauges for
//! Prometheus (and so for alerts and autoscaling), the observed backlog for admission, and the set
//! of known models. It starts by provisioning the stream and the `--models` consumers.
//!
//! A model's queue is spread over its partitions' consumers ([`coder_nats::affinity`]): its
//! gauges are their sums (pending, in flight) and their maximum (oldest age), so they stay exact
//! per model.

use crate::admission::Admission;
use crate::config::Config;
use crate::known_models::KnownModels;
use crate::workers::WorkerRegistry;
use async_nats::jetstream::{self, consumer};
use coder_nats::provision::{self, ConsumerSettings, StreamSettings};
use coder_nats::{retry, subjects};
use futures::TryStreamExt;
use metrics_common::{GatewayMetrics, ModelLabel};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// One model's queue as read from its consumers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueState {
    pub model: String,
    pub pending: u64,
    pub inflight: u64,
    pub oldest_age: Duration,
}

pub struct QueueMonitor {
    jetstream: jetstream::Context,
    metrics: GatewayMetrics,
    admission: Arc<Admission>,
    models: Arc<KnownModels>,
    workers: Arc<WorkerRegistry>,
    /// Models named with `--models`: always known, always reported.
    configured: BTreeSet<String>,
    /// `--queue-poll-interval`.
    interval: Duration,
}

impl QueueMonitor {
    pub fn new(
        config: &Config,
        jetstream: jetstream::Context,
        metrics: GatewayMetrics,
        admission: Arc<Admission>,
        models: Arc<KnownModels>,
        workers: Arc<WorkerRegistry>,
    ) -> Self {
        Self {
            jetstream,
            metrics,
            admission,
            models,
            workers,
            configured: config.models.iter().cloned().collect(),
            interval: config.queue_poll_interval,
        }
    }

    /// Creates the stream with the gateway's limits and the `--models` consumers (retrying while
    /// NATS is unreachable), raises `ready`, then polls the queue state until `stopping`.
    pub async fn provision_then_run(
        self,
        stream: StreamSettings,
        ready: Arc<AtomicBool>,
        stopping: CancellationToken,
    ) {
        // Only for consumers no worker has created yet: theirs belong to the workers.
        let defaults = ConsumerSettings::default();
        let provisioned =
            retry::until_ok("provisioning the stream", stopping.cancelled(), || async {
                provision::ensure_stream(&self.jetstream, &stream).await?;
                for model in &self.configured {
                    provision::ensure_consumers_exist(&self.jetstream, model, &defaults).await?;
                }
                Ok::<_, provision::ProvisionError>(())
            });
        if provisioned.await.is_some() {
            ready.store(true, Ordering::Relaxed);
            self.run(stopping).await;
        }
    }

    async fn run(self, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            match self.poll().await {
                Ok(()) if failing => {
                    tracing::info!("queue state readable again");
                    failing = false;
                }
                Ok(()) => {}
                Err(error) if !failing => {
                    tracing::warn!(%error, "cannot read the queue state; gauges keep their last value");
                    failing = true;
                }
                Err(_) => {}
            }
            self.report_workers();
        }
    }

    async fn poll(&self) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let stream = self
            .jetstream
            .get_stream_no_info(subjects::STREAM_NAME)
            .await?;
        let consumers: Vec<consumer::Info> = stream.consumers().try_collect().await?;
        let mut models: BTreeMap<String, QueueState> = BTreeMap::new();
        for info in &consumers {
            let Some(state) = read_state(&stream, info).await else {
                continue;
            };
            models
                .entry(state.model.clone())
                .or_insert_with(|| QueueState {
                    model: state.model.clone(),
                    ..QueueState::default()
                })
                .add(&state);
        }
        let mut provisioned = self.configured.clone();
        for (model, state) in models {
            self.metrics.set_queue_state(
                &ModelLabel::new(&model),
                state.pending,
                state.inflight,
                state.oldest_age,
            );
            self.admission.observe_pending(&model, state.pending);
            provisioned.insert(model);
        }
        self.models.set_provisioned(provisioned);
        Ok(())
    }

    /// `coder_workers_connected` for every known model, zero included (an alert needs the zero).
    fn report_workers(&self) {
        let live = self.workers.by_model();
        let mut models = self.models.provisioned();
        models.extend(live.keys().cloned());
        for model in models {
            let workers = live.get(&model).map_or(0, |w| w.workers);
            self.metrics
                .set_workers_connected(&ModelLabel::new(&model), workers);
        }
    }
}

impl QueueState {
    /// Adds one of the model's partitions.
    fn add(&mut self, partition: &QueueState) {
        self.pending += partition.pending;
        self.inflight += partition.inflight;
        self.oldest_age = self.oldest_age.max(partition.oldest_age);
    }
}

/// One consumer's state: a partition of its model's queue.
async fn read_state(
    stream: &jetstream::stream::Stream<()>,
    info: &consumer::Info,
) -> Option<QueueState> {
    let model = provision::model_of_consumer(info)?;
    let oldest_age = if info.num_pending > 0 {
        oldest_pending_age(
            stream,
            &info.config.filter_subject,
            info.delivered.stream_sequence.saturating_add(1),
        )
        .await
        .unwrap_or_default()
    } else {
        Duration::ZERO
    };
    Some(QueueState {
        model,
        pending: info.num_pending,
        inflight: info.num_ack_pending as u64,
        oldest_age,
    })
}

/// Age of the first message on `subject` at or after `sequence`: the oldest undelivered request.
async fn oldest_pending_age(
    stream: &jetstream::stream::Stream<()>,
    subject: &str,
    sequence: u64,
) -> Option<Duration> {
    let message = stream
        .get_first_raw_message_by_subject(subject, sequence)
        .await
        .ok()?;
    let age = time::OffsetDateTime::now_utc() - message.time;
    Some(age.try_into().unwrap_or_default())
}
