//! The handlers' shared state: cheap handles only.

use crate::config::Config;
use crate::dispatch::Dispatcher;
use crate::routes::health::StreamCheck;
use crate::supervisor::Supervisor;
use crate::workers::WorkerRegistry;
use metrics_common::GatewayMetrics;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub dispatcher: Arc<Dispatcher>,
    pub workers: Arc<WorkerRegistry>,
    pub metrics: GatewayMetrics,
    /// Set once the stream and the `--models` consumers exist: `/readyz` waits for it.
    pub queue_ready: Arc<AtomicBool>,
    /// `/readyz`'s stream look-up, shared by every probe.
    pub stream_check: Arc<StreamCheck>,
    /// The background tasks: `/readyz` is red once one has ended.
    pub supervisor: Supervisor,
}
