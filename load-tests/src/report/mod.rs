//! What a run leaves behind: `result.json`, `report.html`, and the table on stdout.
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

/// Writes `result.json` and `report.html` into `dir`; returns their paths.
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
    Ok((json_path, html_path))
}
