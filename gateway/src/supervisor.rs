//! The background tasks a gateway cannot serve without (the reply subscription, the heartbeat
//! subscription, the queue monitor), watched: one that ends or panics before shutdown is logged
//! with why, and `/readyz` turns red so the orchestrator takes the gateway out of rotation and
//! restarts it, instead of it answering every request with a hang.

use std::future::Future;
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
pub struct Supervisor {
    /// Names of the tasks that ended before shutdown.
    ended: Arc<Mutex<Vec<&'static str>>>,
    /// Tasks ending after this fires are stopping, not failing.
    stopping: CancellationToken,
}

impl Supervisor {
    pub fn new(stopping: CancellationToken) -> Self {
        Self {
            ended: Arc::default(),
            stopping,
        }
    }

    /// Runs `task` on its own; if it returns or panics before shutdown, `name` is marked ended.
    pub fn spawn(&self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        let running = tokio::spawn(task);
        let supervisor = self.clone();
        tokio::spawn(async move {
            let outcome = running.await;
            if supervisor.stopping.is_cancelled() {
                return;
            }
            match outcome {
                Ok(()) => tracing::error!(task = name, "background task ended: not ready"),
                Err(error) => {
                    tracing::error!(task = name, %error, "background task failed: not ready")
                }
            }
            supervisor.ended.lock().expect("supervisor lock").push(name);
        });
    }

    /// The tasks that ended before shutdown; empty while all run.
    pub fn ended(&self) -> Vec<&'static str> {
        self.ended.lock().expect("supervisor lock").clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn settle() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    #[tokio::test]
    async fn a_task_that_returns_or_panics_is_reported_and_a_running_one_is_not() {
        let supervisor = Supervisor::new(CancellationToken::new());
        supervisor.spawn("returns", async {});
        supervisor.spawn("panics", async { panic!("boom") });
        supervisor.spawn("runs", std::future::pending());
        settle().await;
        let mut ended = supervisor.ended();
        ended.sort();
        assert_eq!(ended, ["panics", "returns"]);
    }

    #[tokio::test]
    async fn tasks_ending_at_shutdown_are_not_failures() {
        let stopping = CancellationToken::new();
        let supervisor = Supervisor::new(stopping.clone());
        let stopped = stopping.clone();
        supervisor.spawn("stops", async move { stopped.cancelled().await });
        stopping.cancel();
        settle().await;
        assert!(supervisor.ended().is_empty());
    }
}
