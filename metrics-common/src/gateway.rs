//! The gateway's instruments, with typed recording methods so label keys and values stay those
//! of the catalogue.
//!
//! A request records about ten measurements, so their labels are built to be cheap: the model
//! label once per request ([`ModelLabel`], shared by reference count), routes and status codes
//! as static strings. `benches/recording.rs` measures what is left.

use crate::instrument;
use crate::model_label::ModelLabel;
use crate::names::{self, label, value::RejectReason};
use axum::http::StatusCode;
use opentelemetry::metrics::{Counter, Gauge, Histogram, Meter, UpDownCounter};
use opentelemetry::{KeyValue, StringValue};
use std::sync::Arc;
use std::time::Duration;

/// The `code` label: the status as text, without allocating for the codes the gateway answers.
fn code_label(code: StatusCode) -> StringValue {
    let text = match code.as_u16() {
        200 => "200",
        400 => "400",
        401 => "401",
        404 => "404",
        405 => "405",
        413 => "413",
        429 => "429",
        500 => "500",
        503 => "503",
        504 => "504",
        other => return StringValue::from(other.to_string()),
    };
    StringValue::from(text)
}

/// The gateway's instruments; clones share them.
#[derive(Clone)]
pub struct GatewayMetrics(Arc<Instruments>);

struct Instruments {
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

impl GatewayMetrics {
    pub fn new(meter: &Meter) -> Self {
        Self(Arc::new(Instruments {
            requests: instrument::counter(meter, &names::MODEL_REQUESTS),
            request_duration: instrument::histogram(meter, &names::MODEL_REQUEST_DURATION),
            active_requests: instrument::up_down_counter(meter, &names::MODEL_ACTIVE_REQUESTS),
            time_to_first_token: instrument::histogram(meter, &names::MODEL_TTFT),
            time_per_output_token: instrument::histogram(meter, &names::MODEL_TPOT),
            prompt_tokens: instrument::counter(meter, &names::MODEL_PROMPT_TOKENS),
            generation_tokens: instrument::counter(meter, &names::MODEL_GENERATION_TOKENS),
            queue_pending: instrument::u64_gauge(meter, &names::QUEUE_PENDING),
            queue_inflight: instrument::u64_gauge(meter, &names::QUEUE_INFLIGHT),
            queue_oldest_age: instrument::f64_gauge(meter, &names::QUEUE_OLDEST_AGE),
            queue_wait: instrument::histogram(meter, &names::QUEUE_WAIT),
            queue_rejected: instrument::counter(meter, &names::QUEUE_REJECTED),
            queue_redeliveries: instrument::counter(meter, &names::QUEUE_REDELIVERIES),
            workers_connected: instrument::u64_gauge(meter, &names::WORKERS_CONNECTED),
        }))
    }

    /// One answered HTTP request; `endpoint` is a route template (a bounded set).
    pub fn record_request(
        &self,
        model: &ModelLabel,
        endpoint: &'static str,
        code: StatusCode,
        elapsed: Duration,
    ) {
        let route = KeyValue::new(label::ENDPOINT, endpoint);
        self.0.requests.add(
            1,
            &[
                model.attribute(),
                route.clone(),
                KeyValue::new(label::STATUS, names::status_label(code.as_u16())),
                KeyValue::new(label::CODE, code_label(code)),
            ],
        );
        self.0
            .request_duration
            .record(elapsed.as_secs_f64(), &[model.attribute(), route]);
    }

    pub fn active_requests_add(&self, model: &ModelLabel, delta: i64) {
        self.0.active_requests.add(delta, &[model.attribute()]);
    }

    pub fn record_time_to_first_token(&self, model: &ModelLabel, elapsed: Duration) {
        self.0
            .time_to_first_token
            .record(elapsed.as_secs_f64(), &[model.attribute()]);
    }

    pub fn record_time_per_output_token(&self, model: &ModelLabel, per_token: Duration) {
        self.0
            .time_per_output_token
            .record(per_token.as_secs_f64(), &[model.attribute()]);
    }

    pub fn record_usage(&self, model: &ModelLabel, prompt_tokens: u64, generation_tokens: u64) {
        self.0
            .prompt_tokens
            .add(prompt_tokens, &[model.attribute()]);
        self.0
            .generation_tokens
            .add(generation_tokens, &[model.attribute()]);
    }

    /// The consumer's backlog as last read from JetStream.
    pub fn set_queue_state(
        &self,
        model: &ModelLabel,
        pending: u64,
        inflight: u64,
        oldest: Duration,
    ) {
        self.0.queue_pending.record(pending, &[model.attribute()]);
        self.0.queue_inflight.record(inflight, &[model.attribute()]);
        self.0
            .queue_oldest_age
            .record(oldest.as_secs_f64(), &[model.attribute()]);
    }

    pub fn record_queue_wait(&self, model: &ModelLabel, wait: Duration) {
        self.0
            .queue_wait
            .record(wait.as_secs_f64(), &[model.attribute()]);
    }

    pub fn record_rejection(&self, model: &ModelLabel, reason: RejectReason) {
        self.0.queue_rejected.add(
            1,
            &[
                model.attribute(),
                KeyValue::new(label::REASON, reason.as_str()),
            ],
        );
    }

    pub fn record_redelivery(&self, model: &ModelLabel) {
        self.0.queue_redeliveries.add(1, &[model.attribute()]);
    }

    pub fn set_workers_connected(&self, model: &ModelLabel, workers: u64) {
        self.0
            .workers_connected
            .record(workers, &[model.attribute()]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_labels_are_the_status_as_text_listed_or_not() {
        for code in [200, 400, 404, 418, 429, 502, 504] {
            let status = StatusCode::from_u16(code).expect("a valid status");
            assert_eq!(code_label(status).as_str(), code.to_string());
        }
    }
}
