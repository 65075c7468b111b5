//! The shape of one catalogue entry: [`InstrumentSpec`], its [`Kind`] and [`Unit`], and the
//! constructors [`crate::names`] declares its entries with. Like the catalogue, it needs no
//! dependency.

/// How an instrument is recorded and the type Prometheus shows it as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up; exposed as `counter` with `_total` appended.
    Counter,
    /// Goes up and down by deltas; exposed as `gauge`.
    UpDownCounter,
    /// Set to the last reading; exposed as `gauge`.
    Gauge,
    /// Counts observations into [`InstrumentSpec::buckets`]; exposed as `histogram`.
    Histogram,
}

impl Kind {
    /// The type in the exposition's `# TYPE` line.
    pub const fn exposed_type(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::UpDownCounter | Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A unit the exporter knows: it appends [`Unit::suffix`] to the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Seconds,
    Bytes,
    /// Dimensionless, 0..1.
    Ratio,
    Celsius,
    Watts,
}

impl Unit {
    /// The UCUM code given to OpenTelemetry.
    pub const fn ucum(self) -> &'static str {
        match self {
            Unit::Seconds => "s",
            Unit::Bytes => "By",
            Unit::Ratio => "1",
            Unit::Celsius => "Cel",
            Unit::Watts => "W",
        }
    }

    /// What the exporter appends for it, after an underscore.
    pub const fn suffix(self) -> &'static str {
        match self {
            Unit::Seconds => "seconds",
            Unit::Bytes => "bytes",
            Unit::Ratio => "ratio",
            Unit::Celsius => "celsius",
            Unit::Watts => "watts",
        }
    }
}

/// One instrument of the catalogue.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InstrumentSpec {
    /// The OpenTelemetry instrument name: no `_total`, no unit suffix.
    pub name: &'static str,
    /// The name in the exposition: `name`, the unit's suffix, `_total` for a counter.
    pub exposed: &'static str,
    pub kind: Kind,
    /// `None` for counts (requests, tokens, workers).
    pub unit: Option<Unit>,
    /// The `# HELP` text.
    pub help: &'static str,
    /// Histogram boundaries (`Some` exactly for histograms: never the SDK's defaults).
    pub buckets: Option<&'static [f64]>,
}

/// A counter of things (no unit).
pub(crate) const fn counter(
    name: &'static str,
    exposed: &'static str,
    help: &'static str,
) -> InstrumentSpec {
    InstrumentSpec {
        name,
        exposed,
        kind: Kind::Counter,
        unit: None,
        help,
        buckets: None,
    }
}

/// An up/down counter of things (no unit).
pub(crate) const fn up_down_counter(
    name: &'static str,
    exposed: &'static str,
    help: &'static str,
) -> InstrumentSpec {
    InstrumentSpec {
        kind: Kind::UpDownCounter,
        ..counter(name, exposed, help)
    }
}

/// A gauge, in `unit` where it has one.
pub(crate) const fn gauge(
    name: &'static str,
    exposed: &'static str,
    unit: Option<Unit>,
    help: &'static str,
) -> InstrumentSpec {
    InstrumentSpec {
        name,
        exposed,
        kind: Kind::Gauge,
        unit,
        help,
        buckets: None,
    }
}

/// A histogram of counts (no unit).
pub(crate) const fn count_histogram(
    name: &'static str,
    exposed: &'static str,
    help: &'static str,
    buckets: &'static [f64],
) -> InstrumentSpec {
    InstrumentSpec {
        name,
        exposed,
        kind: Kind::Histogram,
        unit: None,
        help,
        buckets: Some(buckets),
    }
}

/// A histogram of seconds.
pub(crate) const fn seconds_histogram(
    name: &'static str,
    exposed: &'static str,
    help: &'static str,
    buckets: &'static [f64],
) -> InstrumentSpec {
    InstrumentSpec {
        name,
        exposed,
        kind: Kind::Histogram,
        unit: Some(Unit::Seconds),
        help,
        buckets: Some(buckets),
    }
}
