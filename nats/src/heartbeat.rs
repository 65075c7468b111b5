//! The worker's periodic announcement on `coder.heartbeat.<model-token>.<worker-id>`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub worker_id: String,
    pub model: String,
    /// `cpu`, `cuda:0`, ...
    pub device: String,
    /// `candle` or `synthetic`.
    pub backend: String,
    pub slots_total: u32,
    pub slots_busy: u32,
    /// Longest prompt + completion the model takes, in tokens.
    pub context_length: u32,
    /// How long after this heartbeat the worker counts as gone if no other arrives.
    pub ttl_ms: u64,
    /// False on the last heartbeat of a draining worker: it takes no new work.
    pub accepting: bool,
}

impl Heartbeat {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("Heartbeat always serialises")
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}
