//! The gateway's request counts by HTTP code against the codes the client received.

use super::tally::ClientTally;
use crate::scrape::Counts;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// One HTTP code, as each side counted it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CodeRow {
    pub code: String,
    pub client: u64,
    pub gateway: f64,
}

impl CodeRow {
    /// How many more the gateway counted than the client received (0 when not more).
    pub fn surplus(&self) -> u64 {
        let diff = self.gateway - self.client as f64;
        if diff > 0.5 {
            diff.round() as u64
        } else {
            0
        }
    }
}

pub fn code_rows(client: &ClientTally, gateway: &Counts) -> Vec<CodeRow> {
    let codes: BTreeSet<&String> = client.by_code.keys().chain(gateway.keys()).collect();
    codes
        .into_iter()
        .map(|code| CodeRow {
            code: code.clone(),
            client: client.by_code.get(code).copied().unwrap_or(0),
            gateway: gateway.get(code).copied().unwrap_or(0.0),
        })
        .collect()
}

/// Every code the client received must be counted by the gateway; the gateway may count more
/// only for requests that got no response (the client gave up; the gateway counts a request
/// when its response body is dropped, under the code it had chosen, or not at all when the
/// handler itself was dropped).
pub fn code_problems(client: &ClientTally, rows: &[CodeRow]) -> Vec<String> {
    let mut problems = Vec::new();
    for row in rows {
        if row.gateway - (row.client as f64) < -0.5 {
            problems.push(format!(
                "code {}: the client received {} but the gateway counted {}",
                row.code, row.client, row.gateway
            ));
        }
    }
    let surplus: u64 = rows.iter().map(CodeRow::surplus).sum();
    if surplus > client.no_response {
        let extra: Vec<String> = rows
            .iter()
            .filter(|r| r.surplus() > 0)
            .map(|r| format!("{} ({} vs {})", r.code, r.gateway, r.client))
            .collect();
        problems.push(format!(
            "the gateway counted {surplus} requests more than the client received ({}), and only {} \
             requests went without a response",
            extra.join(", "),
            client.no_response
        ));
    }
    problems
}
