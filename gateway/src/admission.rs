//! Admission control: a model's backlog at `--max-pending-per-model` means 429, before publishing.
//!
//! The backlog is the larger of this gateway's own count of requests queued and not yet started
//! (exact, updated on every request) and the consumer's `num_pending` as last read from JetStream
//! (shared by every gateway, refreshed each poll). The stream's own per-model limit backs this up
//! across gateways.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Debug)]
pub struct Admission {
    limit: u64,
    counts: Mutex<HashMap<String, ModelBacklog>>,
}

#[derive(Debug, Default, Clone, Copy)]
struct ModelBacklog {
    /// Published by this gateway and not yet started by a worker.
    local_queued: u64,
    /// The consumer's `num_pending` at the last poll.
    observed_pending: u64,
}

impl Admission {
    pub fn new(limit: u64) -> Arc<Self> {
        Arc::new(Self {
            limit,
            counts: Mutex::default(),
        })
    }

    /// A ticket while the model's backlog is under the limit, `None` at the limit.
    pub fn try_admit(self: &Arc<Self>, model: &str) -> Option<QueueTicket> {
        let mut counts = self.counts.lock().expect("admission lock");
        let backlog = counts.entry(model.to_owned()).or_default();
        if backlog.local_queued.max(backlog.observed_pending) >= self.limit {
            return None;
        }
        backlog.local_queued += 1;
        Some(QueueTicket {
            admission: Arc::clone(self),
            model: model.to_owned(),
            queued: true,
        })
    }

    pub fn observe_pending(&self, model: &str, pending: u64) {
        let mut counts = self.counts.lock().expect("admission lock");
        counts.entry(model.to_owned()).or_default().observed_pending = pending;
    }

    fn release(&self, model: &str) {
        let mut counts = self.counts.lock().expect("admission lock");
        if let Some(backlog) = counts.get_mut(model) {
            backlog.local_queued = backlog.local_queued.saturating_sub(1);
        }
    }
}

/// Counts one request as queued until a worker starts it (or it ends without starting).
#[derive(Debug)]
pub struct QueueTicket {
    admission: Arc<Admission>,
    model: String,
    queued: bool,
}

impl QueueTicket {
    /// The request left the queue.
    pub fn started(&mut self) {
        if std::mem::take(&mut self.queued) {
            self.admission.release(&self.model);
        }
    }
}

impl Drop for QueueTicket {
    fn drop(&mut self) {
        self.started();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_counts_queued_requests_until_they_start() {
        let admission = Admission::new(2);
        let mut first = admission.try_admit("m").unwrap();
        let _second = admission.try_admit("m").unwrap();
        assert!(admission.try_admit("m").is_none());
        assert!(
            admission.try_admit("other").is_some(),
            "limits are per model"
        );
        first.started();
        assert!(admission.try_admit("m").is_some());
    }

    #[test]
    fn the_observed_backlog_of_other_gateways_counts_too() {
        let admission = Admission::new(3);
        admission.observe_pending("m", 3);
        assert!(admission.try_admit("m").is_none());
        admission.observe_pending("m", 0);
        assert!(admission.try_admit("m").is_some());
    }

    #[test]
    fn a_dropped_ticket_frees_its_place() {
        let admission = Admission::new(1);
        drop(admission.try_admit("m").unwrap());
        assert!(admission.try_admit("m").is_some());
    }
}
