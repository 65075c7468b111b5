//! The gateway's part on the queue, for tests of the worker alone: it provisions a model's
//! consumer as a gateway's `--models` does, publishes requests with the product's headers,
//! follows each request's events on its reply subject and cancels requests.

use async_nats::jetstream;
use coder_nats::headers::RequestHeaders;
use coder_nats::provision::{self, ConsumerSettings, StreamSettings};
use coder_nats::testing::NatsServer;
use coder_nats::{
    affinity, subjects, Cancel, CancelReason, EndReceipt, ErrorKind, GenerationRequest, Prompt,
    SamplingParams, WorkerEvent,
};
use futures::StreamExt;
use std::time::{Duration, SystemTime};
use uuid::Uuid;

/// How long a test waits for a request's next event.
const EVENT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a request may take, unless a test says otherwise.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

pub struct QueueClient {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    /// Forms the reply subjects, as a gateway's id does.
    gateway_id: String,
}

impl QueueClient {
    pub async fn connect(nats: &NatsServer) -> Self {
        let client = async_nats::connect(nats.url()).await.expect("NATS");
        Self {
            jetstream: jetstream::new(client.clone()),
            client,
            gateway_id: subjects::new_instance_id(),
        }
    }

    /// The stream and `model`'s consumer, as a gateway with `--models` creates them: requests
    /// queue before any worker runs.
    pub async fn provision(&self, model: &str) {
        provision::ensure_stream(&self.jetstream, &StreamSettings::default())
            .await
            .expect("the request stream");
        provision::ensure_consumers_exist(&self.jetstream, model, &ConsumerSettings::default())
            .await
            .expect("the model's consumers");
    }

    /// Queues a completion of `max_tokens` tokens for `model`, wanted until `deadline`.
    pub async fn submit(&self, model: &str, max_tokens: u32, deadline: SystemTime) -> Queued {
        let request = GenerationRequest {
            id: Uuid::now_v7(),
            model: model.to_owned(),
            prompt: Prompt::Text("def fibonacci(n):".to_owned()),
            params: SamplingParams {
                max_tokens,
                ..SamplingParams::default()
            },
        };
        self.submit_request(request, deadline).await
    }

    /// Queues `request` (for its `model`), wanted until `deadline`.
    pub async fn submit_request(&self, request: GenerationRequest, deadline: SystemTime) -> Queued {
        let model = request.model.as_str();
        let reply_to = subjects::reply_subject(&self.gateway_id, request.id);
        let events = self
            .client
            .subscribe(reply_to.clone())
            .await
            .expect("replies");
        self.client
            .flush()
            .await
            .expect("the subscription reached NATS");
        let headers = RequestHeaders {
            msg_id: request.id.to_string(),
            reply_to,
            deadline,
            traceparent: None,
        };
        // As the gateway does: the prompt's partition, then its doorbell.
        let partition = affinity::request_partition(model, &request.prompt, None);
        let subject = subjects::request_subject(model, partition);
        self.jetstream
            .publish_with_headers(subject, headers.to_header_map(), request.to_json().into())
            .await
            .expect("published")
            .await
            .expect("acknowledged by JetStream");
        self.client
            .publish(
                subjects::doorbell_subject(model),
                affinity::doorbell_payload(partition),
            )
            .await
            .expect("the doorbell rung");
        Queued {
            id: request.id,
            events,
            client: self.client.clone(),
        }
    }

    /// Queues a completion with a deadline far off.
    pub async fn submit_in_time(&self, model: &str, max_tokens: u32) -> Queued {
        self.submit(model, max_tokens, SystemTime::now() + REQUEST_TIMEOUT)
            .await
    }

    /// A completion that must end with `final`.
    pub async fn complete(&self, model: &str, max_tokens: u32) {
        self.submit_in_time(model, max_tokens)
            .await
            .assert_completed()
            .await;
    }

    /// Asks the workers to stop request `id`, as a gateway does when its client goes away.
    pub async fn cancel(&self, id: Uuid) {
        let cancel = Cancel {
            reason: CancelReason::ClientDisconnected,
            deadline_ms: None,
        };
        let subject = subjects::cancel_subject(id);
        let published = self.client.publish(subject, cancel.to_json().into()).await;
        published.expect("cancel published");
        self.client.flush().await.expect("the cancel reached NATS");
    }
}

/// A queued request, and the events the worker sends for it.
pub struct Queued {
    pub id: Uuid,
    events: async_nats::Subscriber,
    /// Answers the terminal event's receipt request, as a gateway does.
    client: async_nats::Client,
}

impl Queued {
    pub async fn next_event(&mut self) -> WorkerEvent {
        let message = tokio::time::timeout(EVENT_TIMEOUT, self.events.next())
            .await
            .expect("the worker sends the next event in time")
            .expect("the reply subscription is open");
        let event = WorkerEvent::from_json(&message.payload).expect("a worker event");
        if let Some(reply) = message.reply {
            // Every event arrived here: the worker may ack.
            let receipt = EndReceipt::Complete.to_json().into();
            self.client
                .publish(reply, receipt)
                .await
                .expect("the receipt published");
        }
        event
    }

    /// Waits for the first token.
    pub async fn first_token(&mut self) {
        loop {
            match self.next_event().await {
                WorkerEvent::Token { .. } => return,
                event if event.is_terminal() => panic!("ended before a token: {event:?}"),
                _ => {}
            }
        }
    }

    /// Follows the request to its last event, which must be `error: cancelled` with nothing
    /// computed before it: no `started`, no token.
    pub async fn assert_cancelled_uncomputed(mut self) {
        let event = self.next_event().await;
        let cancelled = matches!(
            event,
            WorkerEvent::Error {
                kind: ErrorKind::Cancelled,
                ..
            }
        );
        assert!(
            cancelled,
            "the first event is not `error: cancelled`: {event:?}"
        );
    }

    /// Follows the request to its last event, which must be `final`.
    pub async fn assert_completed(mut self) {
        loop {
            let event = self.next_event().await;
            if event.is_terminal() {
                assert!(matches!(event, WorkerEvent::Final { .. }), "{event:?}");
                return;
            }
        }
    }
}
