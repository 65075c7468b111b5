//! Drives the load: who sends when, and for how long.
//!
//! # Layout
//! - [`tickets`]: the bound of a run (a request count or a duration) as a ticket dispenser.
//! - [`arrivals`]: Poisson arrival times for the open loop, from a seeded RNG.
//! - [`closed_loop`]: N connections, each sending its next request when the last one ends.
//! - [`open_loop`]: requests at a rate, whatever the answers' speed.
//! - [`conversations`]: the multi-turn workload's conversations, turn after turn.
//! - [`live`]: counters the progress bar reads while the run goes on.

pub mod arrivals;
pub mod closed_loop;
pub mod conversations;
pub mod live;
pub mod open_loop;
pub mod tickets;

use crate::client::LoadClient;
use crate::record::RequestRecord;
use crate::shared_prefix::Conversation;
use crate::workload::RequestShape;
pub use live::Live;
use std::sync::Arc;
use std::time::Duration;
pub use tickets::Bound;
use tokio::time::Instant;

/// How requests are issued.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    /// `concurrency` connections, back to back.
    Closed { concurrency: usize },
    /// Poisson arrivals at `rate` per second; beyond `max_in_flight` an arrival is skipped.
    Open {
        rate: f64,
        seed: u64,
        max_in_flight: usize,
    },
}

/// A run's shape and bound.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadPlan {
    pub shape: Shape,
    pub bound: Bound,
    /// Seed of the per-request `max_tokens` draws.
    pub length_seed: u64,
}

/// Everything the client measured.
#[derive(Debug)]
pub struct LoadRun {
    pub records: Vec<RequestRecord>,
    /// Requests handed to the HTTP client (each must end in exactly one record).
    pub sent: u64,
    /// Open loop: arrivals not sent because `max_in_flight` requests were outstanding.
    pub skipped: u64,
    /// From the first send to the last terminal outcome.
    pub wall: Duration,
}

/// Runs the plan to its end, including the requests still in flight when the bound is reached.
pub async fn run_load(
    plan: &LoadPlan,
    client: Arc<LoadClient>,
    live: Arc<Live>,
) -> anyhow::Result<LoadRun> {
    let origin = Instant::now();
    let tickets = Arc::new(tickets::Tickets::new(&plan.bound, origin));
    let (records, skipped) = match &plan.shape {
        Shape::Closed { concurrency } => {
            let records =
                closed_loop::run(*concurrency, tickets, client, live.clone(), origin).await?;
            (records, 0)
        }
        Shape::Open {
            rate,
            seed,
            max_in_flight,
        } => {
            let arrivals = arrivals::PoissonArrivals::new(*rate, *seed)?;
            open_loop::run(
                arrivals,
                *max_in_flight,
                tickets,
                client,
                live.clone(),
                origin,
            )
            .await
        }
    };
    Ok(LoadRun::new(records, &live, skipped))
}

/// Plays `conversations` on `concurrency` connections (the multi-turn workload).
pub async fn run_conversations(
    conversations: Vec<Conversation>,
    concurrency: usize,
    shape: RequestShape,
    client: Arc<LoadClient>,
    live: Arc<Live>,
) -> anyhow::Result<LoadRun> {
    let (conversations, shape) = (Arc::new(conversations), Arc::new(shape));
    let origin = Instant::now();
    let records = conversations::run(
        conversations,
        concurrency,
        shape,
        client,
        live.clone(),
        origin,
    )
    .await?;
    Ok(LoadRun::new(records, &live, 0))
}

impl LoadRun {
    fn new(records: Vec<RequestRecord>, live: &Live, skipped: u64) -> Self {
        let wall = records
            .iter()
            .map(RequestRecord::end)
            .max()
            .unwrap_or_default();
        Self {
            records,
            sent: live.sent(),
            skipped,
            wall,
        }
    }
}
