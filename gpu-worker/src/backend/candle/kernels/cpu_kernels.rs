//! Which of this folder's kernels a CPU runs: one instruction-set level per process, detected
//! at start or set with `CODER_CPU_KERNELS` (for tests and benchmarks), and refused when the
//! CPU lacks it.
//!
//! Levels, from the fastest:
//! - `avx512vnni`: AVX-512 F/BW/VL with VNNI, F16C and FMA (AMD Zen 4 and 5, Intel Ice Lake
//!   and later servers): every kernel here.
//! - `avxvnni`: AVX2, F16C and FMA with AVX-VNNI, the 256-bit `vpdpbusd` (Intel Alder Lake
//!   and later clients, Sapphire Rapids and Sierra Forest servers, AMD Zen 5): every kernel
//!   here, on 256-bit registers, multiplying bytes as the AVX-512 VNNI ones do.
//! - `avx2`: AVX2, F16C and FMA (nearly every x86-64 server of the last ten years): every
//!   kernel here, on 256-bit registers. Chosen only by `CODER_CPU_KERNELS=avx2`: on an AVX2-only
//!   Zen 3 it measured 5–10% slower than candle's kernels (ggml's AVX2 dot products), so
//!   detection does not pick it (see the README's figures).
//! - `generic`: candle's kernels only (any CPU, aarch64 included), and the detected level on
//!   CPUs with neither VNNI.

use std::sync::OnceLock;

/// The environment variable that picks a level instead of the detected one.
pub const ENV: &str = "CODER_CPU_KERNELS";

/// An instruction-set level this folder has kernels for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CpuKernels {
    Generic,
    Avx2,
    AvxVnni,
    Avx512Vnni,
}

impl CpuKernels {
    /// Every level, slowest first.
    pub const ALL: [Self; 4] = [Self::Generic, Self::Avx2, Self::AvxVnni, Self::Avx512Vnni];

    /// The name `CODER_CPU_KERNELS`, logs and metrics use.
    pub fn name(self) -> &'static str {
        match self {
            Self::Generic => "generic",
            Self::Avx2 => "avx2",
            Self::AvxVnni => "avxvnni",
            Self::Avx512Vnni => "avx512vnni",
        }
    }

    /// Whether this CPU has every instruction the level's kernels use.
    pub fn available(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            let avx2 = has!("avx2") && has!("f16c") && has!("fma");
            match self {
                Self::Generic => true,
                Self::Avx2 => avx2,
                Self::AvxVnni => avx2 && has!("avxvnni"),
                Self::Avx512Vnni => {
                    avx2 && has!("avx512f")
                        && has!("avx512bw")
                        && has!("avx512vl")
                        && has!("avx512vnni")
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            self == Self::Generic
        }
    }

    /// The level measured fastest on this CPU: `avx512vnni` where it is available, then
    /// `avxvnni`, else candle's kernels (`avx2` measured slower than them; it is there to be
    /// chosen and tested).
    pub fn detect() -> Self {
        [Self::Avx512Vnni, Self::AvxVnni]
            .into_iter()
            .find(|level| level.available())
            .unwrap_or(Self::Generic)
    }

    /// The level a `CODER_CPU_KERNELS` value names, if this CPU has it.
    pub fn parse(value: &str) -> Result<Self, String> {
        let level = Self::ALL
            .into_iter()
            .find(|level| level.name() == value)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|level| level.name()).collect();
                format!(
                    "{ENV}={value} is not a level (one of: {})",
                    names.join(", ")
                )
            })?;
        match level.available() {
            true => Ok(level),
            false => Err(format!(
                "{ENV}={value}: this CPU lacks the instructions of that level (it has: {})",
                Self::available_names()
            )),
        }
    }

    /// The names of the levels this CPU has, for errors.
    fn available_names() -> String {
        let names: Vec<&str> = Self::ALL
            .iter()
            .filter(|level| level.available())
            .map(|level| level.name())
            .collect();
        names.join(", ")
    }

    /// The level of this process: `CODER_CPU_KERNELS` if set, else the detected one. Fails,
    /// once and for all, when the variable names a level this CPU lacks.
    pub fn configured() -> Result<Self, String> {
        static LEVEL: OnceLock<Result<CpuKernels, String>> = OnceLock::new();
        LEVEL
            .get_or_init(|| match std::env::var(ENV) {
                Ok(value) if !value.is_empty() => Self::parse(&value),
                _ => Ok(Self::detect()),
            })
            .clone()
    }

    /// [`CpuKernels::configured`], for the kernels' hot paths: a refused override was
    /// reported at start ([`CpuKernels::configured`] is called while loading), so here it
    /// falls back to candle's kernels.
    pub fn active() -> Self {
        Self::configured().unwrap_or(Self::Generic)
    }

    /// Whether this folder has kernels at this level (every level but `generic`).
    pub fn has_kernels(self) -> bool {
        self != Self::Generic
    }

    /// The levels with kernels of their own that this CPU can run, for tests.
    #[cfg(test)]
    pub fn testable() -> impl Iterator<Item = Self> {
        Self::ALL
            .into_iter()
            .filter(|level| level.has_kernels() && level.available())
    }
}

/// Runs `check` at every level this CPU has kernels for, saying which it ran and which it
/// could not (a CPU without AVX2 runs none: the test then checks nothing, and says so).
#[cfg(test)]
pub fn for_each_testable_level(check: impl Fn(CpuKernels)) {
    for level in CpuKernels::ALL.into_iter().filter(|l| l.has_kernels()) {
        match level.available() {
            true => check(level),
            false => eprintln!("skipped at {}: this CPU lacks it", level.name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generic_is_always_available_and_detection_picks_an_available_level() {
        assert!(CpuKernels::Generic.available());
        assert!(CpuKernels::detect().available());
        assert_eq!(CpuKernels::parse("generic"), Ok(CpuKernels::Generic));
    }

    #[test]
    fn an_unknown_level_is_refused_with_the_names() {
        let error = CpuKernels::parse("sse2").unwrap_err();
        assert!(
            error.contains("generic, avx2, avxvnni, avx512vnni"),
            "{error}"
        );
    }

    #[test]
    fn a_level_the_cpu_lacks_is_refused() {
        for level in CpuKernels::ALL {
            assert_eq!(CpuKernels::parse(level.name()).is_ok(), level.available());
        }
    }
}
