//! Instruments built from their [`InstrumentSpec`]: the one place the catalogue's name, help,
//! unit and buckets are handed to OpenTelemetry.
//!
//! Each function panics when the spec is of another [`Kind`], or a histogram has no buckets:
//! instruments are built once at startup, and every set of them is built by the tests.

use crate::names::{InstrumentSpec, Kind};
use opentelemetry::metrics::{
    Counter, Gauge, Histogram, HistogramBuilder, InstrumentBuilder, Meter, UpDownCounter,
};

/// A `u64` counter.
pub fn counter(meter: &Meter, spec: &InstrumentSpec) -> Counter<u64> {
    described(meter.u64_counter(name(spec, Kind::Counter)), spec).build()
}

/// An `i64` up/down counter (exposed as a gauge).
pub fn up_down_counter(meter: &Meter, spec: &InstrumentSpec) -> UpDownCounter<i64> {
    described(
        meter.i64_up_down_counter(name(spec, Kind::UpDownCounter)),
        spec,
    )
    .build()
}

/// A `u64` gauge.
pub fn u64_gauge(meter: &Meter, spec: &InstrumentSpec) -> Gauge<u64> {
    described(meter.u64_gauge(name(spec, Kind::Gauge)), spec).build()
}

/// An `f64` gauge.
pub fn f64_gauge(meter: &Meter, spec: &InstrumentSpec) -> Gauge<f64> {
    described(meter.f64_gauge(name(spec, Kind::Gauge)), spec).build()
}

/// An `f64` histogram with the spec's buckets, never the SDK's defaults.
pub fn histogram(meter: &Meter, spec: &InstrumentSpec) -> Histogram<f64> {
    let buckets = spec
        .buckets
        .unwrap_or_else(|| panic!("histogram `{}` declares no buckets", spec.name));
    let builder: HistogramBuilder<'_, Histogram<f64>> = meter
        .f64_histogram(name(spec, Kind::Histogram))
        .with_description(spec.help)
        .with_boundaries(buckets.to_vec());
    match spec.unit {
        Some(unit) => builder.with_unit(unit.ucum()).build(),
        None => builder.build(),
    }
}

/// The instrument name, once the caller's kind is the spec's.
fn name(spec: &InstrumentSpec, kind: Kind) -> &'static str {
    assert_eq!(
        spec.kind, kind,
        "`{}` is declared a {:?}",
        spec.name, spec.kind
    );
    spec.name
}

/// Help and unit on a builder of any synchronous kind but histograms.
fn described<'a, T>(
    builder: InstrumentBuilder<'a, T>,
    spec: &InstrumentSpec,
) -> InstrumentBuilder<'a, T> {
    let builder = builder.with_description(spec.help);
    match spec.unit {
        Some(unit) => builder.with_unit(unit.ucum()),
        None => builder,
    }
}
