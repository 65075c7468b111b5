//! The metric catalogue.
//!
//! Convention: `coder_<area>_<what>`; OpenTelemetry instrument names here carry neither `_total`
//! nor a unit suffix, the exporter appends both (see the crate docs). The exposition name each
//! constant produces is written beside it.

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

/// Unit of seconds: the exporter appends `_seconds`.
pub const UNIT_SECONDS: &str = "s";
/// Unit of bytes: the exporter appends `_bytes`.
pub const UNIT_BYTES: &str = "By";
/// Dimensionless ratio 0..1: the exporter appends `_ratio`.
pub const UNIT_RATIO: &str = "1";
/// Degrees Celsius: the exporter appends `_celsius`.
pub const UNIT_CELSIUS: &str = "Cel";
/// Watts: the exporter appends `_watts`.
pub const UNIT_WATTS: &str = "W";

// Gateway.
/// `coder_model_requests_total`
pub const MODEL_REQUESTS: &str = "coder_model_requests";
/// `coder_model_request_duration_seconds`
pub const MODEL_REQUEST_DURATION: &str = "coder_model_request_duration";
/// `coder_model_active_requests`
pub const MODEL_ACTIVE_REQUESTS: &str = "coder_model_active_requests";
/// `coder_model_time_to_first_token_seconds`
pub const MODEL_TTFT: &str = "coder_model_time_to_first_token";
/// `coder_model_time_per_output_token_seconds`
pub const MODEL_TPOT: &str = "coder_model_time_per_output_token";
/// `coder_model_prompt_tokens_total`
pub const MODEL_PROMPT_TOKENS: &str = "coder_model_prompt_tokens";
/// `coder_model_generation_tokens_total`
pub const MODEL_GENERATION_TOKENS: &str = "coder_model_generation_tokens";
/// `coder_queue_pending_requests`
pub const QUEUE_PENDING: &str = "coder_queue_pending_requests";
/// `coder_queue_inflight_requests`
pub const QUEUE_INFLIGHT: &str = "coder_queue_inflight_requests";
/// `coder_queue_oldest_request_age_seconds`
pub const QUEUE_OLDEST_AGE: &str = "coder_queue_oldest_request_age";
/// `coder_queue_wait_seconds`
pub const QUEUE_WAIT: &str = "coder_queue_wait";
/// `coder_queue_rejected_total`
pub const QUEUE_REJECTED: &str = "coder_queue_rejected";
/// `coder_queue_redeliveries_total`
pub const QUEUE_REDELIVERIES: &str = "coder_queue_redeliveries";
/// `coder_workers_connected`
pub const WORKERS_CONNECTED: &str = "coder_workers_connected";

// Worker.
/// `coder_worker_slots`
pub const WORKER_SLOTS: &str = "coder_worker_slots";
/// `coder_worker_requests_total`
pub const WORKER_REQUESTS: &str = "coder_worker_requests";
/// `coder_worker_model_load_seconds`
pub const WORKER_MODEL_LOAD: &str = "coder_worker_model_load";

// GPU (NVML), only where a GPU is present.
/// `nvidia_gpu_memory_used_bytes`
pub const GPU_MEMORY_USED: &str = "nvidia_gpu_memory_used";
/// `nvidia_gpu_memory_total_bytes`
pub const GPU_MEMORY_TOTAL: &str = "nvidia_gpu_memory_total";
/// `nvidia_gpu_utilization_ratio`
pub const GPU_UTILIZATION: &str = "nvidia_gpu_utilization";
/// `nvidia_gpu_temperature_celsius`
pub const GPU_TEMPERATURE: &str = "nvidia_gpu_temperature";
/// `nvidia_gpu_power_watts`
pub const GPU_POWER: &str = "nvidia_gpu_power";

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
