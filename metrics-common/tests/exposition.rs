//! The catalogue against the real exporter: every instrument of the gateway, the worker and the
//! GPU sampler recorded once, the `/metrics` text rendered, and each [`names::ALL`] entry found
//! there under its `exposed` name with its help, type and buckets, and nothing else.

use axum::http::StatusCode;
use metrics_common::gpu::{self, GpuReading};
use metrics_common::names::value::{Outcome, RejectReason};
use metrics_common::names::{self, InstrumentSpec};
use metrics_common::{EngineStep, GatewayMetrics, ModelLabel, Telemetry, WorkerMetrics};
use std::collections::BTreeSet;
use std::time::Duration;

/// The exposition after one recording on every instrument.
fn everything_recorded_once() -> String {
    let telemetry = Telemetry::prometheus().expect("the Prometheus exporter builds");
    let meter = telemetry.meter();
    let model = ModelLabel::new("m");
    let gateway = GatewayMetrics::new(&meter);
    gateway.record_request(
        &model,
        "/v1/completions",
        StatusCode::OK,
        Duration::from_millis(7),
    );
    gateway.active_requests_add(&model, 1);
    gateway.record_time_to_first_token(&model, Duration::from_millis(30));
    gateway.record_time_per_output_token(&model, Duration::from_millis(3));
    gateway.record_usage(&model, 10, 5);
    gateway.set_queue_state(&model, 3, 2, Duration::from_secs(4));
    gateway.record_queue_wait(&model, Duration::from_millis(2));
    gateway.record_rejection(&model, RejectReason::BacklogFull);
    gateway.record_redelivery(&model);
    gateway.set_workers_connected(&model, 2);
    let worker = WorkerMetrics::new(&meter, "m");
    worker.set_slots(1, 3);
    worker.record_outcome(Outcome::Completed);
    worker.set_model_load(Duration::from_secs(2));
    worker.set_info("candle", "cpu", "avx2");
    worker.record_step(&EngineStep {
        sequences: 2,
        prefill_tokens: 7,
        decode_tokens: 1,
        kv_usage_ratio: 0.25,
        prefix_queried_tokens: 40,
        prefix_hit_tokens: 32,
        prefix_evictions: 1,
        prefix_cache_bytes: 4096,
    });
    let reading = GpuReading {
        index: 0,
        memory_used_bytes: 1,
        memory_total_bytes: 2,
        utilization_ratio: 0.5,
        temperature_celsius: 40.0,
        power_watts: 100.0,
    };
    gpu::record_fixture(&meter, "m", &[reading]);
    telemetry.render()
}

/// The `le` values of a histogram's bucket lines, in order.
fn bucket_bounds(exposition: &str, spec: &InstrumentSpec) -> Vec<String> {
    let prefix = format!("{}_bucket{{", spec.exposed);
    exposition
        .lines()
        .filter(|line| line.starts_with(&prefix))
        .filter_map(|line| line.split("le=\"").nth(1)?.split('"').next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_instrument_is_exposed_as_the_catalogue_declares() {
    let exposition = everything_recorded_once();
    for spec in names::ALL {
        let help = format!("# HELP {} {}", spec.exposed, spec.help);
        let kind = format!("# TYPE {} {}", spec.exposed, spec.kind.exposed_type());
        assert!(
            exposition.lines().any(|l| l == help),
            "{help}\n{exposition}"
        );
        assert!(
            exposition.lines().any(|l| l == kind),
            "{kind}\n{exposition}"
        );
        if let Some(buckets) = spec.buckets {
            let mut expected: Vec<String> = buckets.iter().map(f64::to_string).collect();
            expected.push("+Inf".to_owned());
            assert_eq!(
                bucket_bounds(&exposition, spec),
                expected,
                "{}",
                spec.exposed
            );
        }
    }
}

#[test]
fn nothing_is_exposed_beyond_the_catalogue() {
    let exposition = everything_recorded_once();
    let exposed: BTreeSet<&str> = exposition
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|line| line.split(' ').next())
        .collect();
    let declared: BTreeSet<&str> = names::ALL.iter().map(|spec| spec.exposed).collect();
    assert_eq!(exposed, declared);
}
