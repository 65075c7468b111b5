//! The worker's instruments.

use crate::instrument;
use crate::model_label::ModelLabel;
use crate::names::{self, label, value};
use opentelemetry::metrics::{Counter, Gauge, Meter};
use opentelemetry::KeyValue;
use std::time::Duration;

#[derive(Clone)]
pub struct WorkerMetrics {
    model: ModelLabel,
    slots: Gauge<u64>,
    requests: Counter<u64>,
    model_load: Gauge<f64>,
}

impl WorkerMetrics {
    pub fn new(meter: &Meter, model_name: &str) -> Self {
        Self {
            model: ModelLabel::new(model_name),
            slots: instrument::u64_gauge(meter, &names::WORKER_SLOTS),
            requests: instrument::counter(meter, &names::WORKER_REQUESTS),
            model_load: instrument::f64_gauge(meter, &names::WORKER_MODEL_LOAD),
        }
    }

    fn model(&self) -> KeyValue {
        self.model.attribute()
    }

    pub fn set_slots(&self, busy: u64, idle: u64) {
        self.slots.record(
            busy,
            &[self.model(), KeyValue::new(label::STATE, value::BUSY)],
        );
        self.slots.record(
            idle,
            &[self.model(), KeyValue::new(label::STATE, value::IDLE)],
        );
    }

    pub fn record_outcome(&self, outcome: value::Outcome) {
        self.requests.add(
            1,
            &[
                self.model(),
                KeyValue::new(label::OUTCOME, outcome.as_str()),
            ],
        );
    }

    pub fn set_model_load(&self, elapsed: Duration) {
        self.model_load
            .record(elapsed.as_secs_f64(), &[self.model()]);
    }
}
