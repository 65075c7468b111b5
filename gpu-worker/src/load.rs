//! Building the configured backend (on a blocking thread: loading a model is heavy I/O and math).

use crate::backend::candle::{CandleBackend, CandleOptions};
use crate::backend::synthetic::SyntheticBackend;
use crate::backend::Backend;
use crate::config::{BackendKind, WorkerConfig};
use anyhow::Context;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The backend and how long loading and warm-up took.
pub async fn load_backend(config: &WorkerConfig) -> anyhow::Result<(Arc<dyn Backend>, Duration)> {
    let started = Instant::now();
    match config.backend {
        BackendKind::Synthetic => {
            anyhow::ensure!(
                config.synthetic_ms_per_token.is_finite() && config.synthetic_ms_per_token >= 0.0,
                "--synthetic-ms-per-token must be a non-negative number"
            );
            let per_token = Duration::from_secs_f64(config.synthetic_ms_per_token / 1000.0);
            Ok((
                Arc::new(SyntheticBackend::new(per_token, config.prefix_cache_bytes)),
                started.elapsed(),
            ))
        }
        BackendKind::Candle => {
            let mut options =
                CandleOptions::new(&config.model_path, &config.model).with_device(&config.device);
            if let Some(tokenizer) = &config.tokenizer_path {
                options = options.with_tokenizer(tokenizer);
            }
            options.max_batch_tokens = config.max_batch_tokens as usize;
            options.max_sequences = config.concurrency as usize;
            options.kv_cache_bytes = config.kv_cache_bytes;
            options.prefix_cache_bytes = config.prefix_cache_bytes;
            let backend = tokio::task::spawn_blocking(move || CandleBackend::load(&options))
                .await
                .context("the model loading thread panicked")?
                .with_context(|| format!("loading {}", config.model_path.display()))?;
            let load_time = backend.load_duration();
            Ok((Arc::new(backend), load_time))
        }
    }
}
