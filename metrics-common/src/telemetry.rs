//! The OpenTelemetry meter provider, exporting to a Prometheus registry.

use opentelemetry::metrics::{Meter, MeterProvider};
use opentelemetry_sdk::metrics::SdkMeterProvider;
use prometheus::{Encoder, Registry, TextEncoder};

/// Instrumentation scope of every instrument (not exposed as a label).
const SCOPE: &str = "coder";

/// A meter provider and the registry its Prometheus exporter writes to.
#[derive(Clone)]
pub struct Telemetry {
    provider: SdkMeterProvider,
    registry: Registry,
}

impl Telemetry {
    /// Instruments recorded and exposed in Prometheus text format.
    pub fn prometheus() -> anyhow::Result<Self> {
        let registry = Registry::new();
        let exporter = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .without_target_info()
            .scope_info_enabled(false)
            .build()?;
        let provider = SdkMeterProvider::builder().with_reader(exporter).build();
        Ok(Self { provider, registry })
    }

    /// Instruments that record nothing (for measuring what instrumentation costs).
    pub fn disabled() -> Self {
        Self {
            provider: SdkMeterProvider::builder().build(),
            registry: Registry::new(),
        }
    }

    pub fn meter(&self) -> Meter {
        self.provider.meter(SCOPE)
    }

    /// The current exposition in Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding into a Vec cannot fail");
        String::from_utf8(out).expect("Prometheus text format is UTF-8")
    }

    /// Flushes and stops the provider (at shutdown).
    pub fn shutdown(&self) {
        if let Err(error) = self.provider.shutdown() {
            tracing::debug!(%error, "meter provider shutdown");
        }
    }
}
