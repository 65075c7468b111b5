//! Provisioning against a real nats-server: the settings land as written, repeating a call
//! changes nothing, and each object keeps the settings of its owner whoever starts last.

use async_nats::jetstream::{self, consumer, stream};
use coder_nats::affinity::PARTITIONS;
use coder_nats::provision::{self, ConsumerSettings, StreamSettings};
use coder_nats::subjects;
use coder_nats::testing::NatsServer;
use std::time::Duration;

const MODEL: &str = "qwen2.5-coder:1.5b";

async fn jetstream_of(nats: &NatsServer) -> jetstream::Context {
    let client = async_nats::connect(nats.url()).await.expect("connect");
    jetstream::new(client)
}

fn small_stream() -> StreamSettings {
    StreamSettings {
        max_messages: 50,
        max_bytes: 1 << 20,
        max_messages_per_model: 20,
        duplicate_window: Duration::from_secs(30),
        ..StreamSettings::default()
    }
}

/// [`MODEL`]'s consumers, partition 0 first.
async fn partition_consumers(js: &jetstream::Context) -> Vec<consumer::Info> {
    let stream = js.get_stream(subjects::STREAM_NAME).await.unwrap();
    let mut infos = Vec::new();
    for partition in 0..PARTITIONS {
        let name = subjects::consumer_name(MODEL, partition);
        infos.push(stream.consumer_info(name).await.unwrap());
    }
    infos
}

#[tokio::test]
async fn the_stream_is_a_bounded_file_backed_work_queue() {
    let nats = NatsServer::start();
    let js = jetstream_of(&nats).await;
    let mut stream = provision::ensure_stream(&js, &small_stream())
        .await
        .unwrap();
    let config = stream.info().await.unwrap().config.clone();
    assert_eq!(config.name, subjects::STREAM_NAME);
    assert_eq!(config.subjects, [subjects::REQUESTS_WILDCARD]);
    assert_eq!(config.retention, stream::RetentionPolicy::WorkQueue);
    assert_eq!(config.storage, stream::StorageType::File);
    assert_eq!(config.discard, stream::DiscardPolicy::New);
    assert!(config.discard_new_per_subject);
    assert_eq!(config.max_messages, 50);
    assert_eq!(config.max_bytes, 1 << 20);
    assert_eq!(config.max_messages_per_subject, 20);
    assert_eq!(config.duplicate_window, Duration::from_secs(30));

    // Again, and from a worker that would have chosen the defaults: nothing changes.
    provision::ensure_stream(&js, &small_stream())
        .await
        .unwrap();
    provision::ensure_stream_exists(&js, &StreamSettings::default())
        .await
        .unwrap();
    let again = stream.info().await.unwrap().config.clone();
    assert_eq!(
        again.max_messages, 50,
        "a worker reset the gateway's limits"
    );

    // The gateway's new limits do apply.
    let wider = StreamSettings {
        max_messages: 80,
        ..small_stream()
    };
    provision::ensure_stream(&js, &wider).await.unwrap();
    assert_eq!(stream.info().await.unwrap().config.max_messages, 80);
}

#[tokio::test]
async fn a_consumer_keeps_its_workers_settings_when_a_gateway_starts_later() {
    let nats = NatsServer::start();
    let js = jetstream_of(&nats).await;
    provision::ensure_stream_exists(&js, &StreamSettings::default())
        .await
        .unwrap();
    let workers = ConsumerSettings {
        ack_wait: Duration::from_secs(90),
        max_deliver: 5,
        max_ack_pending: 64,
    };
    let created = provision::ensure_consumers(&js, MODEL, &workers)
        .await
        .unwrap();
    assert_eq!(created.len(), usize::from(PARTITIONS));
    // A gateway with `--models` starts after the worker: it must not reset ack_wait.
    provision::ensure_consumers_exist(&js, MODEL, &ConsumerSettings::default())
        .await
        .unwrap();
    for (partition, info) in (0..).zip(partition_consumers(&js).await) {
        let config = &info.config;
        assert_eq!(
            config.filter_subject,
            subjects::request_subject(MODEL, partition)
        );
        assert_eq!(config.ack_policy, consumer::AckPolicy::Explicit);
        assert_eq!(config.ack_wait, Duration::from_secs(90));
        assert_eq!(config.max_deliver, 5);
        assert_eq!(config.max_ack_pending, 64);
        assert_eq!(
            config.metadata.get(provision::PARTITION_METADATA_KEY),
            Some(&partition.to_string())
        );
    }
    assert_eq!(
        provision::provisioned_models(&js).await.unwrap(),
        [MODEL.to_owned()].into()
    );

    // A worker restarted with other flags does update them.
    let restarted = ConsumerSettings {
        ack_wait: Duration::from_secs(45),
        ..workers
    };
    let mut updated = provision::ensure_consumers(&js, MODEL, &restarted)
        .await
        .unwrap();
    for consumer in &mut updated {
        assert_eq!(
            consumer.info().await.unwrap().config.ack_wait,
            Duration::from_secs(45)
        );
    }
}

#[tokio::test]
async fn a_gateway_alone_creates_the_consumers_so_requests_can_queue() {
    let nats = NatsServer::start();
    let js = jetstream_of(&nats).await;
    provision::ensure_stream(&js, &StreamSettings::default())
        .await
        .unwrap();
    provision::ensure_consumers_exist(&js, MODEL, &ConsumerSettings::default())
        .await
        .unwrap();
    for info in partition_consumers(&js).await {
        assert_eq!(info.config.ack_wait, ConsumerSettings::default().ack_wait);
        assert_eq!(info.num_pending, 0);
    }
}
