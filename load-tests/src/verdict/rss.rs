//! The gateway's resident memory as bench.sh samples it during the overload run: a TSV with a
//! `unix_time  vm_rss_kib` header and one sample per line (the RSS field empty when `/proc` had
//! none to give).

use anyhow::Context;
use std::path::Path;

/// The first, highest and last samples, in KiB; 0 where there was none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RssSamples {
    pub first_kib: u64,
    pub peak_kib: u64,
    pub last_kib: u64,
}

impl RssSamples {
    /// Reads the TSV; a missing file holds no samples.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(Self::parse(&text)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(error) => Err(error).with_context(|| format!("reading {}", path.display())),
        }
    }

    pub fn parse(text: &str) -> Self {
        let mut lines = text.lines().skip(1);
        let kib = |line: &str| line.split('\t').nth(1)?.trim().parse::<u64>().ok();
        let first_kib = lines.next().and_then(kib);
        let rest: Vec<u64> = first_kib.into_iter().chain(lines.filter_map(kib)).collect();
        Self {
            first_kib: first_kib.unwrap_or(0),
            peak_kib: rest.iter().copied().max().unwrap_or(0),
            last_kib: rest.last().copied().unwrap_or(0),
        }
    }
}

/// Whole MiB, rounded down.
pub fn mib(kib: u64) -> u64 {
    kib / 1024
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_peak_and_last_samples() {
        let text = "unix_time\tvm_rss_kib\n1.0\t10240\n1.5\t20480\n2.0\t\n2.5\t15000\n";
        let samples = RssSamples::parse(text);
        assert_eq!(
            samples,
            RssSamples {
                first_kib: 10240,
                peak_kib: 20480,
                last_kib: 15000
            }
        );
        assert_eq!(mib(samples.last_kib), 14);
    }

    #[test]
    fn an_empty_first_sample_counts_as_zero_but_not_for_the_peak() {
        let samples = RssSamples::parse("unix_time\tvm_rss_kib\n1.0\t\n1.5\t4096\n");
        assert_eq!(samples.first_kib, 0);
        assert_eq!(samples.peak_kib, 4096);
        assert_eq!(samples.last_kib, 4096);
    }

    #[test]
    fn no_samples_and_no_file_are_all_zero() {
        assert_eq!(
            RssSamples::parse("unix_time\tvm_rss_kib\n"),
            RssSamples::default()
        );
        let dir = tempfile::tempdir().unwrap();
        let missing = RssSamples::load(&dir.path().join("gateway-rss.tsv")).unwrap();
        assert_eq!(missing, RssSamples::default());
    }
}
