//! Counters updated as requests go and come back, read by the progress bar.

use crate::record::RequestRecord;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Live {
    sent: AtomicU64,
    done: AtomicU64,
    errors: AtomicU64,
    skipped: AtomicU64,
}

/// A consistent-enough reading of [`Live`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveSnapshot {
    pub sent: u64,
    pub done: u64,
    pub errors: u64,
    pub skipped: u64,
}

impl LiveSnapshot {
    pub fn in_flight(&self) -> u64 {
        self.sent.saturating_sub(self.done)
    }
}

impl Live {
    pub fn on_send(&self) {
        self.sent.fetch_add(1, Ordering::Relaxed);
    }

    pub fn on_done(&self, record: &RequestRecord) {
        if !record.is_ok() {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        self.done.fetch_add(1, Ordering::Relaxed);
    }

    pub fn on_skip(&self) {
        self.skipped.fetch_add(1, Ordering::Relaxed);
    }

    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    pub fn snapshot(&self) -> LiveSnapshot {
        LiveSnapshot {
            sent: self.sent.load(Ordering::Relaxed),
            done: self.done.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
        }
    }
}
