//! Metrics for the gateway and the workers: OpenTelemetry instruments exported to Prometheus.
//!
//! Every metric name, kind, unit, help text, label key, bounded label value and bucket boundary
//! is declared in [`names`] and nowhere else; the exposition names there are a contract (the
//! README's "Metrics" section; `infra/` rules and dashboards are written against them).
//! Instruments are named *without* the `_total` and unit suffixes: the OpenTelemetry Prometheus
//! exporter appends them (`requests` + counter → `requests_total`, unit `s` → `_seconds`, `By` →
//! `_bytes`, `1` → `_ratio`). The exposition carries no `otel_scope_*` labels and no
//! `target_info` series: the names and labels in the catalogue are what dashboards and rules
//! see, and Prometheus adds `job` and `instance` itself.
//!
//! # Features
//! - `names`: the catalogue alone ([`names`], [`spec`]), with no dependency: for crates that
//!   read an exposition, such as `load-tests`.
//! - `exporter`: the modules listed under it below (OpenTelemetry, the Prometheus exporter,
//!   axum): what the gateway and the worker enable.
//! - `nvml`: GPU figures from NVML (implies `exporter`).
//!
//! The workspace declares the crate with `default-features = false`; each member names what it
//! needs.
//!
//! # Layout
//! - [`names`]: the catalogue: one [`names::InstrumentSpec`] per instrument, label keys and
//!   values, buckets.
//! - [`spec`]: the shape of a catalogue entry (kind, unit, help, buckets).
//!
//! With `exporter`:
//! - [`instrument`]: builds an OpenTelemetry instrument from its spec.
//! - [`telemetry`]: the `SdkMeterProvider` wired to a Prometheus registry, and text rendering.
//! - [`server`]: the `/metrics` HTTP listener, separate from any API port.
//! - [`gateway`]: the gateway's instruments.
//! - [`model_label`]: the `model_name` label, built once per request and shared.
//! - [`worker`]: the worker's instruments.
//! - [`gpu`]: the NVML sampler (feature `nvml`): real GPU figures or no GPU series at all.
//!   `gpu::record_fixture` serves fixed readings for `examples/gpu_fixture.rs` only (the infra
//!   checks on machines without a GPU); the binaries never call it.

pub mod names;
pub mod spec;

#[cfg(feature = "exporter")]
pub mod gateway;
#[cfg(feature = "exporter")]
pub mod gpu;
#[cfg(feature = "exporter")]
pub mod instrument;
#[cfg(feature = "exporter")]
pub mod model_label;
#[cfg(feature = "exporter")]
pub mod server;
#[cfg(feature = "exporter")]
pub mod telemetry;
#[cfg(feature = "exporter")]
pub mod worker;

#[cfg(feature = "exporter")]
pub use gateway::GatewayMetrics;
#[cfg(feature = "exporter")]
pub use model_label::ModelLabel;
#[cfg(feature = "exporter")]
pub use telemetry::Telemetry;
#[cfg(feature = "exporter")]
pub use worker::{EngineStep, PrefixCacheReport, WorkerMetrics};
