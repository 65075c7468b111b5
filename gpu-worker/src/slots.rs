//! Generation slots: the worker pulls a request only when it holds a free slot, so a busy worker
//! never hoards queued work that an idle one could run.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// A permit is taken before pulling (so a pull never asks for more than the free slots); a slot
/// counts as busy only while a request runs in it.
#[derive(Clone)]
pub struct Slots {
    semaphore: Arc<Semaphore>,
    total: u32,
    running: Arc<AtomicU32>,
    /// Woken whenever a request starts or ends (the heartbeat tells others when it fills up).
    changed: Arc<Notify>,
}

/// Marks a slot busy until dropped.
pub struct Running {
    running: Arc<AtomicU32>,
    changed: Arc<Notify>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.running.fetch_sub(1, Ordering::Relaxed);
        self.changed.notify_one();
    }
}

impl Slots {
    pub fn new(total: u32) -> Self {
        Self {
            semaphore: Arc::new(Semaphore::new(total as usize)),
            total,
            running: Arc::default(),
            changed: Arc::default(),
        }
    }

    /// A request starts running in a slot (its permit already held).
    pub fn start(&self) -> Running {
        self.running.fetch_add(1, Ordering::Relaxed);
        self.changed.notify_one();
        Running {
            running: Arc::clone(&self.running),
            changed: Arc::clone(&self.changed),
        }
    }

    /// Resolves at the next start or end of a request (or at once if one came since the last
    /// call: one listener, the heartbeat, is expected).
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// Whether every slot runs a request.
    pub fn full(&self) -> bool {
        self.busy() >= self.total
    }

    /// Permits free for the next pull.
    pub fn free(&self) -> u32 {
        self.semaphore.available_permits() as u32
    }

    pub fn total(&self) -> u32 {
        self.total
    }

    pub fn busy(&self) -> u32 {
        self.running.load(Ordering::Relaxed)
    }

    pub fn idle(&self) -> u32 {
        self.total - self.busy()
    }

    /// Waits for a free slot.
    pub async fn acquire(&self) -> OwnedSemaphorePermit {
        Arc::clone(&self.semaphore)
            .acquire_owned()
            .await
            .expect("the semaphore is never closed")
    }

    /// A free slot if there is one now.
    pub fn try_acquire(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.semaphore).try_acquire_owned().ok()
    }

    /// Waits until every slot is free again (drain).
    pub async fn wait_all_idle(&self) {
        let _all = self
            .semaphore
            .acquire_many(self.total)
            .await
            .expect("never closed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_slot_is_busy_only_while_a_request_runs() {
        let slots = Slots::new(2);
        let first = slots.acquire().await;
        assert_eq!((slots.busy(), slots.idle(), slots.free()), (0, 2, 1));
        let running = slots.start();
        assert_eq!((slots.busy(), slots.idle()), (1, 1));
        let _second = slots.try_acquire().unwrap();
        assert!(slots.try_acquire().is_none());
        drop(running);
        drop(first);
        assert_eq!((slots.busy(), slots.free()), (0, 1));
    }
}
