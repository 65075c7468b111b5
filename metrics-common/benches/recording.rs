//! What recording one request's metrics costs the gateway, in nanoseconds of one core.
//!
//! `cargo bench -p metrics-common --bench recording` replays the recordings a streamed
//! completion makes (active requests up and down, queue wait, time to first token, time per
//! output token, usage, the request counter and duration) against the real exporter and against
//! a provider with no reader (`--metrics-enabled false`), over 3 models and 2 routes, and prints
//! both per request with their difference. `load-tests/bench.sh instrumentation` turns the
//! difference into a share of the gateway's CPU at its measured throughput.

use axum::http::StatusCode;
use metrics_common::{GatewayMetrics, ModelLabel, Telemetry};
use std::hint::black_box;
use std::time::{Duration, Instant};

const MODELS: [&str; 3] = [
    "qwen2.5-coder-1.5b-instruct",
    "iquest-coder-v1-7b",
    "synthetic",
];
const ENDPOINTS: [&str; 2] = ["/v1/completions", "/v1/chat/completions"];
const REQUESTS: u32 = 300_000;
const ROUNDS: usize = 5;

fn one_request(metrics: &GatewayMetrics, i: u32) {
    let model = &ModelLabel::new(MODELS[i as usize % MODELS.len()]);
    let endpoint = ENDPOINTS[i as usize % ENDPOINTS.len()];
    let elapsed = Duration::from_micros(u64::from(i % 5_000));
    metrics.active_requests_add(model, 1);
    metrics.record_queue_wait(model, elapsed / 4);
    metrics.record_time_to_first_token(model, elapsed / 2);
    metrics.record_time_per_output_token(model, elapsed / 16);
    metrics.record_usage(model, 128, 16);
    metrics.active_requests_add(model, -1);
    metrics.record_request(model, endpoint, StatusCode::OK, elapsed);
}

/// The best of [`ROUNDS`] rounds, in ns per request.
fn per_request(telemetry: &Telemetry) -> f64 {
    let metrics = GatewayMetrics::new(&telemetry.meter());
    (0..ROUNDS)
        .map(|_| {
            let started = Instant::now();
            for i in 0..REQUESTS {
                one_request(black_box(&metrics), i);
            }
            started.elapsed().as_nanos() as f64 / f64::from(REQUESTS)
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let exporting = Telemetry::prometheus().expect("the Prometheus exporter builds");
    let enabled = per_request(&exporting);
    let disabled = per_request(&Telemetry::disabled());
    let started = Instant::now();
    let exposition = exporting.render();
    let render = started.elapsed();
    println!("recording on:  {enabled:.0} ns per request");
    println!("recording off: {disabled:.0} ns per request");
    println!("cost:          {:.0} ns per request", enabled - disabled);
    println!(
        "scrape:        {:.2} ms for {} bytes of exposition",
        render.as_secs_f64() * 1e3,
        exposition.len()
    );
}
