//! GPU figures from NVML, only where an NVIDIA driver answers.
//!
//! Where NVML cannot be initialised (no driver, no GPU, or the `nvml` feature off) the sampler logs
//! one line and exports nothing: a dashboard shows "no data", never a made-up value.

use crate::instrument;
use crate::names::{self, label};
use opentelemetry::metrics::{Gauge, Meter};
use opentelemetry::KeyValue;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The five NVML gauges of the catalogue.
#[derive(Clone)]
struct GpuGauges {
    memory_used: Gauge<u64>,
    memory_total: Gauge<u64>,
    utilization: Gauge<f64>,
    temperature: Gauge<f64>,
    power: Gauge<f64>,
}

impl GpuGauges {
    fn new(meter: &Meter) -> Self {
        Self {
            memory_used: instrument::u64_gauge(meter, &names::GPU_MEMORY_USED),
            memory_total: instrument::u64_gauge(meter, &names::GPU_MEMORY_TOTAL),
            utilization: instrument::f64_gauge(meter, &names::GPU_UTILIZATION),
            temperature: instrument::f64_gauge(meter, &names::GPU_TEMPERATURE),
            power: instrument::f64_gauge(meter, &names::GPU_POWER),
        }
    }

    /// One GPU's reading, labelled `gpu_id` and `model_name`.
    fn record(&self, model_name: &str, reading: &GpuReading) {
        let labels = [
            KeyValue::new(label::GPU_ID, reading.index.to_string()),
            KeyValue::new(label::MODEL_NAME, model_name.to_owned()),
        ];
        self.memory_used.record(reading.memory_used_bytes, &labels);
        self.memory_total
            .record(reading.memory_total_bytes, &labels);
        self.utilization.record(reading.utilization_ratio, &labels);
        self.temperature
            .record(reading.temperature_celsius, &labels);
        self.power.record(reading.power_watts, &labels);
    }
}

/// One GPU's reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GpuReading {
    pub index: u32,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    pub utilization_ratio: f64,
    pub temperature_celsius: f64,
    pub power_watts: f64,
}

/// Starts sampling every `interval` until `shutdown`; returns false (and logs why) where no GPU
/// can be read.
pub fn start_sampler(
    meter: &Meter,
    model_name: &str,
    interval: Duration,
    shutdown: CancellationToken,
) -> bool {
    let Some(source) = nvml::Source::open() else {
        return false;
    };
    let gauges = GpuGauges::new(meter);
    let model_name = model_name.to_owned();
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = ticker.tick() => {}
            }
            for reading in source.read_all() {
                gauges.record(&model_name, &reading);
            }
        }
    });
    true
}

/// Records `readings` once through the sampler's own gauges, labelled as the worker labels them.
///
/// For fixtures and tests only: the `gpu_fixture` example serves fixed readings so the monitoring
/// (dashboards, GPU rules) can be checked on a machine without a GPU. Nothing in the product path
/// calls it; the services export only what NVML reads ([`start_sampler`]).
pub fn record_fixture(meter: &Meter, model_name: &str, readings: &[GpuReading]) {
    let gauges = GpuGauges::new(meter);
    for reading in readings {
        gauges.record(model_name, reading);
    }
}

#[cfg(feature = "nvml")]
mod nvml {
    use super::GpuReading;
    use nvml_wrapper::enum_wrappers::device::TemperatureSensor;
    use nvml_wrapper::Nvml;

    pub struct Source(Nvml);

    impl Source {
        pub fn open() -> Option<Self> {
            match Nvml::init() {
                Ok(nvml) => {
                    let count = nvml.device_count().unwrap_or(0);
                    tracing::info!(gpus = count, "NVML initialised: exporting GPU metrics");
                    Some(Self(nvml))
                }
                Err(error) => {
                    tracing::info!(%error, "no NVIDIA GPU readable: no GPU metrics are exported");
                    None
                }
            }
        }

        /// Readings of every GPU that answers; a GPU that fails a query is skipped this round.
        pub fn read_all(&self) -> Vec<GpuReading> {
            let count = self.0.device_count().unwrap_or(0);
            (0..count)
                .filter_map(|index| self.read(index).ok())
                .collect()
        }

        fn read(&self, index: u32) -> Result<GpuReading, nvml_wrapper::error::NvmlError> {
            let device = self.0.device_by_index(index)?;
            let memory = device.memory_info()?;
            Ok(GpuReading {
                index,
                memory_used_bytes: memory.used,
                memory_total_bytes: memory.total,
                utilization_ratio: f64::from(device.utilization_rates()?.gpu) / 100.0,
                temperature_celsius: f64::from(device.temperature(TemperatureSensor::Gpu)?),
                power_watts: f64::from(device.power_usage()?) / 1000.0,
            })
        }
    }
}

#[cfg(not(feature = "nvml"))]
mod nvml {
    use super::GpuReading;

    pub struct Source;

    impl Source {
        pub fn open() -> Option<Self> {
            tracing::info!("built without the nvml feature: no GPU metrics are exported");
            None
        }

        pub fn read_all(&self) -> Vec<GpuReading> {
            Vec::new()
        }
    }
}
