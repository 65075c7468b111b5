//! A `/metrics` endpoint with fixed GPU readings, for checking the monitoring where no GPU exists.
//!
//! It runs the crate's real exporter and `/metrics` server and records through the NVML sampler's
//! own gauges ([`gpu::record_fixture`]), so names, units and labels (`gpu_id`, `model_name`) are
//! exactly what a worker on a GPU exposes. The readings are constants, not measurements: GPU 0 is
//! above the 95% memory threshold of `GpuMemoryHigh`, GPU 1 well below it. Never scrape it in
//! production. `scripts/infra-live-check.sh` runs it as one more `coder-worker` target so every
//! GPU panel and rule is evaluated on data.
//!
//! ```sh
//! cargo run -p metrics-common --example gpu_fixture -- \
//!     --metrics-listen 127.0.0.1:9400 --model qwen2.5-coder-1.5b-instruct
//! ```

use anyhow::Context;
use metrics_common::{gpu, gpu::GpuReading, server, Telemetry};
use std::net::SocketAddr;
use tokio::net::TcpListener;

const GIB: u64 = 1 << 30;

/// Two 80 GiB GPUs: one nearly full (alerts), one at 40% (stays quiet).
const READINGS: [GpuReading; 2] = [
    GpuReading {
        index: 0,
        memory_used_bytes: 78 * GIB,
        memory_total_bytes: 80 * GIB,
        utilization_ratio: 0.9,
        temperature_celsius: 71.0,
        power_watts: 310.0,
    },
    GpuReading {
        index: 1,
        memory_used_bytes: 32 * GIB,
        memory_total_bytes: 80 * GIB,
        utilization_ratio: 0.35,
        temperature_celsius: 48.0,
        power_watts: 120.0,
    },
];

/// The worker's flag names for the same two settings.
#[derive(clap::Parser)]
#[command(about = "Serves fixed GPU readings on /metrics, for checks on machines without a GPU")]
struct Args {
    #[arg(long)]
    metrics_listen: SocketAddr,
    #[arg(long)]
    model: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    coder_service::init_logging(false);
    let args = <Args as clap::Parser>::parse();
    let telemetry = Telemetry::prometheus()?;
    gpu::record_fixture(&telemetry.meter(), &args.model, &READINGS);
    let listener = TcpListener::bind(args.metrics_listen)
        .await
        .with_context(|| format!("binding {}", args.metrics_listen))?;
    tracing::info!(listen = %args.metrics_listen, model = %args.model, "serving fixed GPU readings");
    server::serve(listener, telemetry, coder_service::shutdown_signal()).await?;
    Ok(())
}
