//! The gateway's instruments, with typed recording methods so label keys and values stay those
//! of the catalogue.

use crate::names::{self, label, value::RejectReason};
use opentelemetry::metrics::{Counter, Gauge, Histogram, Meter, UpDownCounter};
use opentelemetry::KeyValue;
use std::time::Duration;

#[derive(Clone)]
pub struct GatewayMetrics {
    requests: Counter<u64>,
    request_duration: Histogram<f64>,
    active_requests: UpDownCounter<i64>,
    time_to_first_token: Histogram<f64>,
    time_per_output_token: Histogram<f64>,
    prompt_tokens: Counter<u64>,
    generation_tokens: Counter<u64>,
    queue_pending: Gauge<u64>,
    queue_inflight: Gauge<u64>,
    queue_oldest_age: Gauge<f64>,
    queue_wait: Histogram<f64>,
    queue_rejected: Counter<u64>,
    queue_redeliveries: Counter<u64>,
    workers_connected: Gauge<u64>,
}

fn model(model_name: &str) -> KeyValue {
    KeyValue::new(label::MODEL_NAME, model_name.to_owned())
}

impl GatewayMetrics {
    pub fn new(meter: &Meter) -> Self {
        Self {
            requests: meter
                .u64_counter(names::MODEL_REQUESTS)
                .with_description("HTTP requests answered, by model, route, status class and code")
                .build(),
            request_duration: meter
                .f64_histogram(names::MODEL_REQUEST_DURATION)
                .with_description("HTTP request duration, from receipt to the last byte")
                .with_unit(names::UNIT_SECONDS)
                .with_boundaries(names::REQUEST_DURATION_BUCKETS.to_vec())
                .build(),
            active_requests: meter
                .i64_up_down_counter(names::MODEL_ACTIVE_REQUESTS)
                .with_description("Generation requests in progress at this gateway")
                .build(),
            time_to_first_token: meter
                .f64_histogram(names::MODEL_TTFT)
                .with_description("Time from receipt to the first generated token")
                .with_unit(names::UNIT_SECONDS)
                .with_boundaries(names::TTFT_BUCKETS.to_vec())
                .build(),
            time_per_output_token: meter
                .f64_histogram(names::MODEL_TPOT)
                .with_description("Mean time between output tokens after the first, per request")
                .with_unit(names::UNIT_SECONDS)
                .with_boundaries(names::TPOT_BUCKETS.to_vec())
                .build(),
            prompt_tokens: meter
                .u64_counter(names::MODEL_PROMPT_TOKENS)
                .with_description("Prompt tokens processed, from the workers' usage")
                .build(),
            generation_tokens: meter
                .u64_counter(names::MODEL_GENERATION_TOKENS)
                .with_description("Tokens generated, from the workers' usage")
                .build(),
            queue_pending: meter
                .u64_gauge(names::QUEUE_PENDING)
                .with_description("Requests queued and not yet delivered to a worker")
                .build(),
            queue_inflight: meter
                .u64_gauge(names::QUEUE_INFLIGHT)
                .with_description("Requests delivered to a worker and not yet acknowledged")
                .build(),
            queue_oldest_age: meter
                .f64_gauge(names::QUEUE_OLDEST_AGE)
                .with_description("Age of the oldest request not yet delivered (0 when none)")
                .with_unit(names::UNIT_SECONDS)
                .build(),
            queue_wait: meter
                .f64_histogram(names::QUEUE_WAIT)
                .with_description("Time from publish to a worker starting the request")
                .with_unit(names::UNIT_SECONDS)
                .with_boundaries(names::QUEUE_WAIT_BUCKETS.to_vec())
                .build(),
            queue_rejected: meter
                .u64_counter(names::QUEUE_REJECTED)
                .with_description("Requests refused before or at publish, by reason")
                .build(),
            queue_redeliveries: meter
                .u64_counter(names::QUEUE_REDELIVERIES)
                .with_description("Requests started again by a worker after a failed delivery")
                .build(),
            workers_connected: meter
                .u64_gauge(names::WORKERS_CONNECTED)
                .with_description("Workers with a live heartbeat")
                .build(),
        }
    }

    /// One answered HTTP request.
    pub fn record_request(&self, model_name: &str, endpoint: &str, code: u16, elapsed: Duration) {
        let route = KeyValue::new(label::ENDPOINT, endpoint.to_owned());
        self.requests.add(
            1,
            &[
                model(model_name),
                route.clone(),
                KeyValue::new(label::STATUS, names::status_label(code)),
                KeyValue::new(label::CODE, code.to_string()),
            ],
        );
        self.request_duration
            .record(elapsed.as_secs_f64(), &[model(model_name), route]);
    }

    pub fn active_requests_add(&self, model_name: &str, delta: i64) {
        self.active_requests.add(delta, &[model(model_name)]);
    }

    pub fn record_time_to_first_token(&self, model_name: &str, elapsed: Duration) {
        self.time_to_first_token
            .record(elapsed.as_secs_f64(), &[model(model_name)]);
    }

    pub fn record_time_per_output_token(&self, model_name: &str, per_token: Duration) {
        self.time_per_output_token
            .record(per_token.as_secs_f64(), &[model(model_name)]);
    }

    pub fn record_usage(&self, model_name: &str, prompt_tokens: u64, generation_tokens: u64) {
        self.prompt_tokens.add(prompt_tokens, &[model(model_name)]);
        self.generation_tokens
            .add(generation_tokens, &[model(model_name)]);
    }

    /// The consumer's backlog as last read from JetStream.
    pub fn set_queue_state(&self, model_name: &str, pending: u64, inflight: u64, oldest: Duration) {
        self.queue_pending.record(pending, &[model(model_name)]);
        self.queue_inflight.record(inflight, &[model(model_name)]);
        self.queue_oldest_age
            .record(oldest.as_secs_f64(), &[model(model_name)]);
    }

    pub fn record_queue_wait(&self, model_name: &str, wait: Duration) {
        self.queue_wait
            .record(wait.as_secs_f64(), &[model(model_name)]);
    }

    pub fn record_rejection(&self, model_name: &str, reason: RejectReason) {
        self.queue_rejected.add(
            1,
            &[
                model(model_name),
                KeyValue::new(label::REASON, reason.as_str()),
            ],
        );
    }

    pub fn record_redelivery(&self, model_name: &str) {
        self.queue_redeliveries.add(1, &[model(model_name)]);
    }

    pub fn set_workers_connected(&self, model_name: &str, workers: u64) {
        self.workers_connected.record(workers, &[model(model_name)]);
    }
}
