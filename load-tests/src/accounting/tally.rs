//! The client's side of the accounting: its records, counted in the terms the checks compare.

use super::fate::{Fates, QueueFate};
use crate::record::RequestRecord;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};

/// What the client saw, in the terms the accounting compares.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientTally {
    /// Requests handed to the HTTP client.
    pub sent: u64,
    /// Terminal outcomes recorded (must equal `sent`).
    pub terminal: u64,
    /// Responses by HTTP code.
    pub by_code: BTreeMap<String, u64>,
    /// Requests that ended without any response status.
    pub no_response: u64,
    /// Complete 2xx responses.
    pub successes: u64,
    /// Requests by what their answer says about reaching the queue (see [`QueueFate`]).
    pub fates: Fates,
    pub missing_request_ids: u64,
    pub duplicate_request_ids: u64,
}

impl ClientTally {
    pub fn from_records(sent: u64, records: &[RequestRecord]) -> Self {
        let mut tally = Self {
            sent,
            terminal: records.len() as u64,
            ..Self::default()
        };
        let mut ids = HashSet::with_capacity(records.len());
        for record in records {
            if record.is_ok() {
                tally.successes += 1;
            }
            tally.fates.add(QueueFate::of_record(record), 1);
            let Some(code) = record.status else {
                tally.no_response += 1;
                continue;
            };
            *tally.by_code.entry(code.to_string()).or_default() += 1;
            match &record.request_id {
                None => tally.missing_request_ids += 1,
                Some(id) if !ids.insert(id.as_str()) => tally.duplicate_request_ids += 1,
                Some(_) => {}
            }
        }
        tally
    }
}
