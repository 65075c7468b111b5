//! Finished sessions kept for reuse, so their buffers are allocated once per slot rather than
//! once per request.

use std::sync::Mutex;

use super::{Model, Session};

/// Finished sessions kept for the next generation (at most one per concurrent generation seen
/// so far), for models whose sessions are costly to make.
pub struct SessionPool {
    model: Box<dyn Model>,
    idle: Mutex<Vec<Box<dyn Session>>>,
}

impl SessionPool {
    pub fn new(model: Box<dyn Model>) -> Self {
        Self {
            model,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// The model the sessions run.
    pub fn model(&self) -> &dyn Model {
        self.model.as_ref()
    }

    /// A session with nothing fed yet.
    pub fn take(&self, capacity: usize) -> anyhow::Result<Box<dyn Session>> {
        let reused = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match reused {
            Some(session) => Ok(session),
            None => self.model.new_session(capacity),
        }
    }

    /// Returns a session after its generation, whatever its outcome.
    pub fn put_back(&self, mut session: Box<dyn Session>) {
        if !self.model.reuse_sessions() {
            return;
        }
        session.reset();
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(session);
    }
}
