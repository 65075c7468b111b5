//! The metric catalogue: every instrument's name, kind, unit, help and buckets, each declared once.
//!
//! Convention: `coder_<area>_<what>` (`nvidia_gpu_<what>` for the NVML figures). An
//! [`InstrumentSpec`]'s `name` is the OpenTelemetry instrument name and carries neither `_total`
//! nor a unit suffix: the exporter appends both (see the crate docs). Its `exposed` field is the
//! name Prometheus shows, written out so it can be searched for and read without an exporter; a
//! unit test checks it against `name`, `kind` and `unit`, and `tests/exposition.rs` against the
//! real exporter. Label keys and their bounded values are in [`label`] and [`value`].
//!
//! This module and [`crate::spec`] need no dependency: they are all `metrics-common` compiles with
//! the `names` feature alone, which is how `load-tests` reads the catalogue.

use crate::spec::{count_histogram, counter, gauge, seconds_histogram, up_down_counter};
pub use crate::spec::{InstrumentSpec, Kind, Unit};

/// Histogram boundaries for request duration, in seconds (the seed's buckets, extended for LLMs).
pub const REQUEST_DURATION_BUCKETS: &[f64] =
    &[0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0];
/// Time to first token, in seconds.
pub const TTFT_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Time per output token, in seconds.
pub const TPOT_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5,
];
/// Queue wait (publish → worker start), in seconds.
pub const QUEUE_WAIT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// Histogram boundaries for sequences per forward step.
pub const BATCH_SIZE_BUCKETS: &[f64] =
    &[1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0, 64.0];
/// Histogram boundaries for tokens per forward step.
pub const STEP_TOKENS_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0,
];

// Gateway.
pub const MODEL_REQUESTS: InstrumentSpec = counter(
    "coder_model_requests",
    "coder_model_requests_total",
    "HTTP requests answered, by model, route, status class and code",
);
pub const MODEL_REQUEST_DURATION: InstrumentSpec = seconds_histogram(
    "coder_model_request_duration",
    "coder_model_request_duration_seconds",
    "HTTP request duration, from receipt to the last byte",
    REQUEST_DURATION_BUCKETS,
);
pub const MODEL_ACTIVE_REQUESTS: InstrumentSpec = up_down_counter(
    "coder_model_active_requests",
    "coder_model_active_requests",
    "Generation requests in progress at this gateway",
);
pub const MODEL_TTFT: InstrumentSpec = seconds_histogram(
    "coder_model_time_to_first_token",
    "coder_model_time_to_first_token_seconds",
    "Time from receipt to the first generated token",
    TTFT_BUCKETS,
);
pub const MODEL_TPOT: InstrumentSpec = seconds_histogram(
    "coder_model_time_per_output_token",
    "coder_model_time_per_output_token_seconds",
    "Mean time between output tokens after the first, per request",
    TPOT_BUCKETS,
);
pub const MODEL_PROMPT_TOKENS: InstrumentSpec = counter(
    "coder_model_prompt_tokens",
    "coder_model_prompt_tokens_total",
    "Prompt tokens processed, from the workers' usage",
);
pub const MODEL_GENERATION_TOKENS: InstrumentSpec = counter(
    "coder_model_generation_tokens",
    "coder_model_generation_tokens_total",
    "Tokens generated, from the workers' usage",
);
pub const QUEUE_PENDING: InstrumentSpec = gauge(
    "coder_queue_pending_requests",
    "coder_queue_pending_requests",
    None,
    "Requests queued and not yet delivered to a worker",
);
pub const QUEUE_INFLIGHT: InstrumentSpec = gauge(
    "coder_queue_inflight_requests",
    "coder_queue_inflight_requests",
    None,
    "Requests delivered to a worker and not yet acknowledged",
);
pub const QUEUE_OLDEST_AGE: InstrumentSpec = gauge(
    "coder_queue_oldest_request_age",
    "coder_queue_oldest_request_age_seconds",
    Some(Unit::Seconds),
    "Age of the oldest request not yet delivered (0 when none)",
);
pub const QUEUE_WAIT: InstrumentSpec = seconds_histogram(
    "coder_queue_wait",
    "coder_queue_wait_seconds",
    "Time from publish to a worker starting the request",
    QUEUE_WAIT_BUCKETS,
);
pub const QUEUE_REJECTED: InstrumentSpec = counter(
    "coder_queue_rejected",
    "coder_queue_rejected_total",
    "Requests refused before or at publish, by reason",
);
pub const QUEUE_REDELIVERIES: InstrumentSpec = counter(
    "coder_queue_redeliveries",
    "coder_queue_redeliveries_total",
    "Requests started again by a worker after a failed delivery",
);
pub const WORKERS_CONNECTED: InstrumentSpec = gauge(
    "coder_workers_connected",
    "coder_workers_connected",
    None,
    "Workers with a live heartbeat",
);

// Worker.
pub const WORKER_SLOTS: InstrumentSpec = gauge(
    "coder_worker_slots",
    "coder_worker_slots",
    None,
    "Generation slots of this worker, by state",
);
pub const WORKER_REQUESTS: InstrumentSpec = counter(
    "coder_worker_requests",
    "coder_worker_requests_total",
    "Requests this worker finished, by outcome",
);
pub const WORKER_INFO: InstrumentSpec = gauge(
    "coder_worker_info",
    "coder_worker_info",
    None,
    "This worker's model, backend, device and CPU kernel level (value 1)",
);
pub const WORKER_MODEL_LOAD: InstrumentSpec = gauge(
    "coder_worker_model_load",
    "coder_worker_model_load_seconds",
    Some(Unit::Seconds),
    "Time the model took to load and warm up",
);
pub const WORKER_BATCH_SIZE: InstrumentSpec = count_histogram(
    "coder_worker_batch_size",
    "coder_worker_batch_size",
    "Sequences fed in each forward step",
    BATCH_SIZE_BUCKETS,
);
pub const WORKER_STEP_TOKENS: InstrumentSpec = count_histogram(
    "coder_worker_step_tokens",
    "coder_worker_step_tokens",
    "Tokens fed in each forward step, prompt and decode together",
    STEP_TOKENS_BUCKETS,
);
pub const WORKER_PREFILL_TOKENS: InstrumentSpec = counter(
    "coder_worker_prefill_tokens",
    "coder_worker_prefill_tokens_total",
    "Prompt tokens fed to the model",
);
pub const WORKER_DECODE_TOKENS: InstrumentSpec = counter(
    "coder_worker_decode_tokens",
    "coder_worker_decode_tokens_total",
    "Sampled tokens fed back to the model, one per decoding sequence and step",
);
pub const WORKER_KV_CACHE_USAGE: InstrumentSpec = gauge(
    "coder_worker_kv_cache_usage",
    "coder_worker_kv_cache_usage_ratio",
    Some(Unit::Ratio),
    "Share of the KV cache budget reserved by running sequences (0..1)",
);
pub const WORKER_PREFIX_QUERIED: InstrumentSpec = counter(
    "coder_worker_prefix_cache_queried_tokens",
    "coder_worker_prefix_cache_queried_tokens_total",
    "Prompt tokens looked up in the prefix cache",
);
pub const WORKER_PREFIX_HITS: InstrumentSpec = counter(
    "coder_worker_prefix_cache_hit_tokens",
    "coder_worker_prefix_cache_hit_tokens_total",
    "Prompt tokens found in the prefix cache (not computed again)",
);
pub const WORKER_PREFIX_BYTES: InstrumentSpec = gauge(
    "coder_worker_prefix_cache",
    "coder_worker_prefix_cache_bytes",
    Some(Unit::Bytes),
    "KV memory the prefix cache holds",
);
pub const WORKER_PREFIX_EVICTIONS: InstrumentSpec = counter(
    "coder_worker_prefix_cache_evictions",
    "coder_worker_prefix_cache_evictions_total",
    "Prefix cache entries evicted to make room",
);

// GPU (NVML), only where a GPU is present.
pub const GPU_MEMORY_USED: InstrumentSpec = gauge(
    "nvidia_gpu_memory_used",
    "nvidia_gpu_memory_used_bytes",
    Some(Unit::Bytes),
    "GPU memory in use",
);
pub const GPU_MEMORY_TOTAL: InstrumentSpec = gauge(
    "nvidia_gpu_memory_total",
    "nvidia_gpu_memory_total_bytes",
    Some(Unit::Bytes),
    "GPU memory installed",
);
pub const GPU_UTILIZATION: InstrumentSpec = gauge(
    "nvidia_gpu_utilization",
    "nvidia_gpu_utilization_ratio",
    Some(Unit::Ratio),
    "Share of the last sample period a kernel was running (0..1)",
);
pub const GPU_TEMPERATURE: InstrumentSpec = gauge(
    "nvidia_gpu_temperature",
    "nvidia_gpu_temperature_celsius",
    Some(Unit::Celsius),
    "GPU die temperature",
);
pub const GPU_POWER: InstrumentSpec = gauge(
    "nvidia_gpu_power",
    "nvidia_gpu_power_watts",
    Some(Unit::Watts),
    "GPU power draw",
);

/// The whole catalogue, gateway first, then worker, then GPU.
pub const ALL: &[InstrumentSpec] = &[
    MODEL_REQUESTS,
    MODEL_REQUEST_DURATION,
    MODEL_ACTIVE_REQUESTS,
    MODEL_TTFT,
    MODEL_TPOT,
    MODEL_PROMPT_TOKENS,
    MODEL_GENERATION_TOKENS,
    QUEUE_PENDING,
    QUEUE_INFLIGHT,
    QUEUE_OLDEST_AGE,
    QUEUE_WAIT,
    QUEUE_REJECTED,
    QUEUE_REDELIVERIES,
    WORKERS_CONNECTED,
    WORKER_SLOTS,
    WORKER_REQUESTS,
    WORKER_INFO,
    WORKER_MODEL_LOAD,
    WORKER_BATCH_SIZE,
    WORKER_STEP_TOKENS,
    WORKER_PREFILL_TOKENS,
    WORKER_DECODE_TOKENS,
    WORKER_KV_CACHE_USAGE,
    WORKER_PREFIX_QUERIED,
    WORKER_PREFIX_HITS,
    WORKER_PREFIX_BYTES,
    WORKER_PREFIX_EVICTIONS,
    GPU_MEMORY_USED,
    GPU_MEMORY_TOTAL,
    GPU_UTILIZATION,
    GPU_TEMPERATURE,
    GPU_POWER,
];

/// Label keys.
pub mod label {
    pub const MODEL_NAME: &str = "model_name";
    /// The matched route template, or [`super::value::UNMATCHED_ENDPOINT`].
    pub const ENDPOINT: &str = "endpoint";
    /// [`super::value::SUCCESS`] when the HTTP code is below 400, else [`super::value::ERROR`].
    pub const STATUS: &str = "status";
    /// The HTTP status code.
    pub const CODE: &str = "code";
    /// Why the queue refused a request (see [`super::value::RejectReason`]).
    pub const REASON: &str = "reason";
    /// `busy` or `idle`.
    pub const STATE: &str = "state";
    /// How a worker finished a request (see [`super::value::Outcome`]).
    pub const OUTCOME: &str = "outcome";
    pub const GPU_ID: &str = "gpu_id";
    /// `coder_worker_info`: the backend (`candle`, `synthetic`).
    pub const BACKEND: &str = "backend";
    /// `coder_worker_info`: the device (`cpu`, `cuda:0`, ...).
    pub const DEVICE: &str = "device";
    /// `coder_worker_info`: the CPU kernels' instruction-set level (`avx512vnni`, `avxvnni`,
    /// `avx2`, `generic`), `none` where no CPU kernel runs.
    pub const CPU_KERNELS: &str = "cpu_kernels";
}

/// Bounded label values.
pub mod value {
    pub const SUCCESS: &str = "success";
    pub const ERROR: &str = "error";
    /// `endpoint` of every request that matched no route.
    pub const UNMATCHED_ENDPOINT: &str = "unmatched";
    /// `model_name` of a request whose model was not (or not yet) validated.
    pub const UNKNOWN_MODEL: &str = "unknown";
    pub const BUSY: &str = "busy";
    pub const IDLE: &str = "idle";

    /// `reason` of `coder_queue_rejected_total`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum RejectReason {
        /// The model's backlog reached `--max-pending-per-model`.
        BacklogFull,
        /// The JetStream stream refused the publish (its limits, discard-new).
        StreamFull,
        /// The request is larger than one NATS message.
        TooLarge,
        /// NATS did not acknowledge the publish.
        NatsUnavailable,
    }

    impl RejectReason {
        pub fn as_str(self) -> &'static str {
            match self {
                RejectReason::BacklogFull => "backlog_full",
                RejectReason::StreamFull => "stream_full",
                RejectReason::TooLarge => "too_large",
                RejectReason::NatsUnavailable => "nats_unavailable",
            }
        }
    }

    /// `outcome` of `coder_worker_requests_total`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Outcome {
        Completed,
        Cancelled,
        /// Deadline passed while queued: dropped before any compute.
        Expired,
        Failed,
    }

    impl Outcome {
        pub fn as_str(self) -> &'static str {
            match self {
                Outcome::Completed => "completed",
                Outcome::Cancelled => "cancelled",
                Outcome::Expired => "expired",
                Outcome::Failed => "failed",
            }
        }
    }
}

/// The HTTP status class label for a code.
pub fn status_label(code: u16) -> &'static str {
    if code < 400 {
        value::SUCCESS
    } else {
        value::ERROR
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposed_names_are_what_the_exporter_writes() {
        for spec in ALL {
            let mut exposed = spec.name.to_owned();
            if let Some(unit) = spec.unit {
                exposed = format!("{exposed}_{}", unit.suffix());
            }
            if spec.kind == Kind::Counter {
                exposed.push_str("_total");
            }
            assert_eq!(spec.exposed, exposed, "{}", spec.name);
        }
    }

    #[test]
    fn exactly_the_histograms_have_buckets_in_rising_order() {
        for spec in ALL {
            assert_eq!(
                spec.kind == Kind::Histogram,
                spec.buckets.is_some(),
                "{}",
                spec.name
            );
            if let Some(buckets) = spec.buckets {
                assert!(buckets.windows(2).all(|w| w[0] < w[1]), "{}", spec.name);
            }
        }
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = ALL.iter().map(|spec| spec.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
    }
}
