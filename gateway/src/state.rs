//! The handlers' shared state: cheap handles only.

use crate::config::Config;
use crate::dispatch::Dispatcher;
use crate::error::ApiError;
use crate::generation::Generation;
use crate::known_models::KnownModels;
use crate::middleware::RequestContext;
use crate::workers::WorkerRegistry;
use coder_nats::{GenerationRequest, Prompt, SamplingParams};
use metrics_common::{GatewayMetrics, ModelLabel};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::SystemTime;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub dispatcher: Arc<Dispatcher>,
    pub models: Arc<KnownModels>,
    pub workers: Arc<WorkerRegistry>,
    pub metrics: GatewayMetrics,
    /// Set once the stream and the `--models` consumers exist: `/readyz` waits for it.
    pub queue_ready: Arc<AtomicBool>,
}

impl AppState {
    /// Checks the model is known, queues the request and returns its [`Generation`].
    pub async fn start_generation(
        &self,
        context: &RequestContext,
        label: &ModelLabel,
        prompt: Prompt,
        params: SamplingParams,
    ) -> Result<Generation, ApiError> {
        let model = label.as_str();
        if !self.models.contains(model).await {
            return Err(ApiError::ModelNotFound(model.to_owned()));
        }
        let (id, received_at) = (context.id, context.received_at);
        let request = GenerationRequest {
            id,
            model: model.to_owned(),
            prompt,
            params,
        };
        let timeout = self.config.request_timeout;
        let deadline = SystemTime::now() + timeout.saturating_sub(received_at.elapsed());
        let traceparent = context.traceparent.clone();
        let submitted = self
            .dispatcher
            .submit(&request, label, deadline, Some(traceparent))
            .await?;
        Ok(Generation::new(
            id,
            submitted,
            received_at,
            timeout,
            self.metrics.clone(),
        ))
    }
}
