//! The engine's step figures into the worker's metrics (`coder_worker_batch_size`,
//! `coder_worker_step_tokens`, the prefill and decode token counters, the KV usage gauge, and
//! the prefix cache's counters and size, from each step or, without steps, from each request).

use metrics_common::{EngineStep, PrefixCacheReport, WorkerMetrics};

use crate::backend::{PrefixCacheStats, StepObserver, StepStats};

/// Records every forward step of a backend's engine.
pub struct StepMetrics(pub WorkerMetrics);

impl StepObserver for StepMetrics {
    fn step(&self, stats: &StepStats) {
        self.0.record_step(&EngineStep {
            sequences: stats.sequences as u64,
            prefill_tokens: stats.prefill_tokens as u64,
            decode_tokens: stats.decode_tokens as u64,
            kv_usage_ratio: stats.kv_usage_ratio,
            prefix_queried_tokens: stats.prefix_queried_tokens,
            prefix_hit_tokens: stats.prefix_hit_tokens,
            prefix_evictions: stats.prefix_evictions,
            prefix_cache_bytes: stats.prefix_cache_bytes,
        });
    }

    fn prefix_cache(&self, stats: &PrefixCacheStats) {
        self.0.record_prefix_cache(&PrefixCacheReport {
            queried_tokens: stats.queried_tokens,
            hit_tokens: stats.hit_tokens,
            evictions: stats.evictions,
            bytes: stats.bytes,
        });
    }
}
