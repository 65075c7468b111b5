//! Idempotent provisioning of the request stream (with the cancel stream beside it) and of each
//! model's consumer.
//!
//! Each object has one owner whose flags define it; the owner creates what is missing and updates
//! what differs, everyone else only creates what is missing. So gateways and workers can start in
//! any order, and a restart of one never resets settings the other chose:
//! - the stream's limits belong to the gateway, the producer ([`ensure_stream`]); a worker that
//!   starts first creates the stream with the same defaults ([`ensure_stream_exists`]);
//! - a model's consumers (one per partition, [`crate::affinity`]) belong to its workers, whose
//!   `--ack-wait` drives their in-progress acks ([`ensure_consumers`]); a gateway with `--models`
//!   only creates missing consumers ([`ensure_consumers_exist`]), so requests queue before any
//!   worker has run.

use crate::affinity::PARTITIONS;
use crate::subjects;
use async_nats::jetstream::{self, consumer, stream};
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

/// Consumer metadata key holding the model name exactly as clients write it.
pub const MODEL_METADATA_KEY: &str = "coder.model";
/// Consumer metadata key holding the partition the consumer serves.
pub const PARTITION_METADATA_KEY: &str = "coder.partition";

/// Limits of the request stream. A full stream rejects new publishes (discard-new): the gateway
/// turns that into 429, never into an unbounded queue.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    pub max_messages: i64,
    pub max_bytes: i64,
    /// Per partition of a model (per subject): a second, server-side bound on one model's
    /// backlog, behind the gateway's per-model admission. A partition may hold all of a
    /// model's backlog (every request with the same key), so it is not divided by the
    /// partitions.
    pub max_messages_per_model: i64,
    /// Window in which a re-published request id is dropped as a duplicate.
    pub duplicate_window: Duration,
    /// Requests older than this are removed even if never consumed (e.g. a model nobody serves);
    /// cancels are kept as long, since no request they could name is older.
    pub max_age: Duration,
    /// Cancels the cancel stream keeps (the oldest go first).
    pub max_cancels: i64,
    pub replicas: usize,
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            max_messages: 100_000,
            max_bytes: 1 << 30,
            max_messages_per_model: 10_000,
            duplicate_window: Duration::from_secs(120),
            max_age: Duration::from_secs(3600),
            max_cancels: 100_000,
            replicas: 1,
        }
    }
}

/// Delivery settings of a model's durable pull consumer.
#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    /// Time a worker has to ack (or send in-progress) before the request is redelivered.
    pub ack_wait: Duration,
    /// Deliveries before the request is given up on.
    pub max_deliver: i64,
    /// Requests handed out and not yet acked, across all workers of the model, per partition.
    pub max_ack_pending: i64,
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        Self {
            ack_wait: Duration::from_secs(30),
            max_deliver: 3,
            max_ack_pending: 10_000,
        }
    }
}

pub type ProvisionError = Box<dyn std::error::Error + Send + Sync>;

/// Creates the request and cancel streams or updates their limits (the gateway's call).
pub async fn ensure_stream(
    js: &jetstream::Context,
    settings: &StreamSettings,
) -> Result<stream::Stream, ProvisionError> {
    js.create_or_update_stream(cancel_stream_config(settings))
        .await?;
    js.create_or_update_stream(stream_config(settings)).await?;
    Ok(js.get_stream(subjects::STREAM_NAME).await?)
}

/// Creates the request and cancel streams if they are missing, leaving existing ones as they are
/// (the workers' call).
pub async fn ensure_stream_exists(
    js: &jetstream::Context,
    settings: &StreamSettings,
) -> Result<stream::Stream, ProvisionError> {
    js.get_or_create_stream(cancel_stream_config(settings))
        .await?;
    Ok(js.get_or_create_stream(stream_config(settings)).await?)
}

/// Recent cancels, for workers that start after a request was given up on: bounded in count and
/// age, the oldest dropped first.
fn cancel_stream_config(settings: &StreamSettings) -> stream::Config {
    stream::Config {
        name: subjects::CANCEL_STREAM_NAME.to_owned(),
        description: Some("Recent cancels of queued or running requests".to_owned()),
        subjects: vec![subjects::CANCEL_WILDCARD.to_owned()],
        retention: stream::RetentionPolicy::Limits,
        storage: stream::StorageType::File,
        discard: stream::DiscardPolicy::Old,
        max_messages: settings.max_cancels,
        max_age: settings.max_age,
        num_replicas: settings.replicas,
        ..Default::default()
    }
}

fn stream_config(settings: &StreamSettings) -> stream::Config {
    stream::Config {
        name: subjects::STREAM_NAME.to_owned(),
        description: Some("Queued code-model generation requests".to_owned()),
        subjects: vec![subjects::REQUESTS_WILDCARD.to_owned()],
        retention: stream::RetentionPolicy::WorkQueue,
        storage: stream::StorageType::File,
        discard: stream::DiscardPolicy::New,
        discard_new_per_subject: true,
        max_messages: settings.max_messages,
        max_bytes: settings.max_bytes,
        max_messages_per_subject: settings.max_messages_per_model,
        max_age: settings.max_age,
        duplicate_window: settings.duplicate_window,
        num_replicas: settings.replicas,
        ..Default::default()
    }
}

/// Creates the model's durable pull consumers, one per partition, or updates their settings
/// (the workers' call). Element `p` of the result is partition `p`'s.
pub async fn ensure_consumers(
    js: &jetstream::Context,
    model: &str,
    settings: &ConsumerSettings,
) -> Result<Vec<consumer::PullConsumer>, ProvisionError> {
    let stream = js.get_stream(subjects::STREAM_NAME).await?;
    let mut consumers = Vec::with_capacity(usize::from(PARTITIONS));
    for partition in 0..PARTITIONS {
        consumers.push(
            stream
                .create_consumer(consumer_config(model, partition, settings))
                .await?,
        );
    }
    Ok(consumers)
}

/// Creates the model's consumers that are missing, leaving existing ones' settings to its
/// workers (the gateway's call for `--models`). A strict create, never an update: a worker that
/// creates a consumer at the same moment keeps its settings.
pub async fn ensure_consumers_exist(
    js: &jetstream::Context,
    model: &str,
    settings: &ConsumerSettings,
) -> Result<(), ProvisionError> {
    use async_nats::jetstream::stream::ConsumerCreateStrictErrorKind;
    let stream = js.get_stream(subjects::STREAM_NAME).await?;
    for partition in 0..PARTITIONS {
        match stream
            .create_consumer_strict(consumer_config(model, partition, settings))
            .await
        {
            Ok(_) => {}
            Err(error) if error.kind() == ConsumerCreateStrictErrorKind::AlreadyExists => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(())
}

fn consumer_config(
    model: &str,
    partition: u16,
    settings: &ConsumerSettings,
) -> consumer::pull::Config {
    consumer::pull::Config {
        durable_name: Some(subjects::consumer_name(model, partition)),
        description: Some(format!(
            "Generation requests for model {model}, partition {partition}"
        )),
        filter_subject: subjects::request_subject(model, partition),
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: settings.ack_wait,
        max_deliver: settings.max_deliver,
        max_ack_pending: settings.max_ack_pending,
        metadata: HashMap::from([
            (MODEL_METADATA_KEY.to_owned(), model.to_owned()),
            (PARTITION_METADATA_KEY.to_owned(), partition.to_string()),
        ]),
        ..Default::default()
    }
}

/// Models that have a consumer on the stream: the models this deployment knows, whether or not a
/// worker is up right now.
pub async fn provisioned_models(
    js: &jetstream::Context,
) -> Result<BTreeSet<String>, ProvisionError> {
    use futures::TryStreamExt;
    let stream = js.get_stream(subjects::STREAM_NAME).await?;
    let infos: Vec<consumer::Info> = stream.consumers().try_collect().await?;
    Ok(infos.iter().filter_map(model_of_consumer).collect())
}

/// The model a consumer serves, from its metadata or, failing that, its filter subject.
pub fn model_of_consumer(info: &consumer::Info) -> Option<String> {
    info.config
        .metadata
        .get(MODEL_METADATA_KEY)
        .cloned()
        .or_else(|| subjects::model_from_request_subject(&info.config.filter_subject))
}
