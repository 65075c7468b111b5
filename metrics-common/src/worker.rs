//! The worker's instruments.

use crate::instrument;
use crate::model_label::ModelLabel;
use crate::names::{self, label, value};
use opentelemetry::metrics::{Counter, Gauge, Histogram, Meter};
use opentelemetry::KeyValue;
use std::time::Duration;

#[derive(Clone)]
pub struct WorkerMetrics {
    model: ModelLabel,
    slots: Gauge<u64>,
    requests: Counter<u64>,
    model_load: Gauge<f64>,
    info: Gauge<u64>,
    batch_size: Histogram<f64>,
    step_tokens: Histogram<f64>,
    prefill_tokens: Counter<u64>,
    decode_tokens: Counter<u64>,
    kv_cache_usage: Gauge<f64>,
    prefix_queried: Counter<u64>,
    prefix_hits: Counter<u64>,
    prefix_bytes: Gauge<u64>,
    prefix_evictions: Counter<u64>,
}

/// One forward step of a worker's engine, as its metrics record it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct EngineStep {
    pub sequences: u64,
    pub prefill_tokens: u64,
    pub decode_tokens: u64,
    /// Share of the KV budget reserved, 0 to 1.
    pub kv_usage_ratio: f64,
    /// Prefix cache: prompt tokens looked up and found since the last step, entries evicted,
    /// and bytes held.
    pub prefix_queried_tokens: u64,
    pub prefix_hit_tokens: u64,
    pub prefix_evictions: u64,
    pub prefix_cache_bytes: u64,
}

/// A prefix cache's figures since its last report, as the worker's metrics record them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrefixCacheReport {
    pub queried_tokens: u64,
    pub hit_tokens: u64,
    pub evictions: u64,
    /// Bytes held now.
    pub bytes: u64,
}

impl WorkerMetrics {
    pub fn new(meter: &Meter, model_name: &str) -> Self {
        Self {
            model: ModelLabel::new(model_name),
            slots: instrument::u64_gauge(meter, &names::WORKER_SLOTS),
            requests: instrument::counter(meter, &names::WORKER_REQUESTS),
            model_load: instrument::f64_gauge(meter, &names::WORKER_MODEL_LOAD),
            info: instrument::u64_gauge(meter, &names::WORKER_INFO),
            batch_size: instrument::histogram(meter, &names::WORKER_BATCH_SIZE),
            step_tokens: instrument::histogram(meter, &names::WORKER_STEP_TOKENS),
            prefill_tokens: instrument::counter(meter, &names::WORKER_PREFILL_TOKENS),
            decode_tokens: instrument::counter(meter, &names::WORKER_DECODE_TOKENS),
            kv_cache_usage: instrument::f64_gauge(meter, &names::WORKER_KV_CACHE_USAGE),
            prefix_queried: instrument::counter(meter, &names::WORKER_PREFIX_QUERIED),
            prefix_hits: instrument::counter(meter, &names::WORKER_PREFIX_HITS),
            prefix_bytes: instrument::u64_gauge(meter, &names::WORKER_PREFIX_BYTES),
            prefix_evictions: instrument::counter(meter, &names::WORKER_PREFIX_EVICTIONS),
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

    /// `coder_worker_info` = 1 with what the loaded backend runs on. Each value is one of a few
    /// the worker itself names (never from a request), so the labels stay bounded.
    pub fn set_info(&self, backend: &'static str, device: &str, cpu_kernels: &'static str) {
        self.info.record(
            1,
            &[
                self.model(),
                KeyValue::new(label::BACKEND, backend),
                KeyValue::new(label::DEVICE, device.to_owned()),
                KeyValue::new(label::CPU_KERNELS, cpu_kernels),
            ],
        );
    }

    pub fn set_model_load(&self, elapsed: Duration) {
        self.model_load
            .record(elapsed.as_secs_f64(), &[self.model()]);
    }

    /// Records one forward step of the engine.
    pub fn record_step(&self, step: &EngineStep) {
        let model = [self.model()];
        self.batch_size.record(step.sequences as f64, &model);
        self.step_tokens
            .record((step.prefill_tokens + step.decode_tokens) as f64, &model);
        self.prefill_tokens.add(step.prefill_tokens, &model);
        self.decode_tokens.add(step.decode_tokens, &model);
        self.kv_cache_usage.record(step.kv_usage_ratio, &model);
        self.record_prefix_cache(&PrefixCacheReport {
            queried_tokens: step.prefix_queried_tokens,
            hit_tokens: step.prefix_hit_tokens,
            evictions: step.prefix_evictions,
            bytes: step.prefix_cache_bytes,
        });
    }

    /// Records a prefix cache's figures (with each engine step, or alone from a backend
    /// without steps).
    pub fn record_prefix_cache(&self, report: &PrefixCacheReport) {
        let model = [self.model()];
        self.prefix_queried.add(report.queried_tokens, &model);
        self.prefix_hits.add(report.hit_tokens, &model);
        self.prefix_evictions.add(report.evictions, &model);
        self.prefix_bytes.record(report.bytes, &model);
    }
}
