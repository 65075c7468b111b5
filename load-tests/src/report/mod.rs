//! What a run leaves behind: `result.json`, `report.html`, `requests.tsv` (one line per
//! request: when it was sent, how long it took, its status and outcome), and the table on
//! stdout.
//!
//! # Layout
//! - [`table`]: the plain-text table printed at the end of a run.
//! - [`plots`]: SVG charts drawn with `plotters`.
//! - [`html`]: the self-contained HTML report embedding those charts.

pub mod html;
pub mod plots;
pub mod table;

use crate::record::RequestRecord;
use crate::result::RunResult;
use anyhow::Context;
use std::path::{Path, PathBuf};

pub const RESULT_FILE: &str = "result.json";
pub const REPORT_FILE: &str = "report.html";
pub const REQUESTS_FILE: &str = "requests.tsv";
/// The header line of [`REQUESTS_FILE`].
pub const REQUESTS_HEADER: &str = "start_s\tlatency_ms\tstatus\toutcome";

/// Writes `result.json`, `report.html` and `requests.tsv` into `dir`; returns the first two's
/// paths.
pub fn write_all(
    dir: &Path,
    result: &RunResult,
    records: &[RequestRecord],
) -> anyhow::Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let json_path = dir.join(RESULT_FILE);
    let json = serde_json::to_string_pretty(result).context("serialising the result")?;
    std::fs::write(&json_path, json + "\n")
        .with_context(|| format!("writing {}", json_path.display()))?;
    let html_path = dir.join(REPORT_FILE);
    let html = html::render(result, records).context("rendering the HTML report")?;
    std::fs::write(&html_path, html).with_context(|| format!("writing {}", html_path.display()))?;
    let requests_path = dir.join(REQUESTS_FILE);
    std::fs::write(&requests_path, requests_tsv(records))
        .with_context(|| format!("writing {}", requests_path.display()))?;
    Ok((json_path, html_path))
}

/// One line per request, in the order they ended: `start_s`, `latency_ms`, `status` (`-`
/// without a response), `outcome`.
pub fn requests_tsv(records: &[RequestRecord]) -> String {
    let mut out = String::from(REQUESTS_HEADER);
    out.push('\n');
    for record in records {
        let status = record
            .status
            .map_or_else(|| "-".to_owned(), |code| code.to_string());
        out.push_str(&format!(
            "{:.6}\t{:.3}\t{status}\t{}\n",
            record.start.as_secs_f64(),
            record.latency.as_secs_f64() * 1e3,
            record.outcome.as_str()
        ));
    }
    out
}
