//! Open loop: requests leave at Poisson arrival times, whatever the answers' speed.
//!
//! Each arrival is its own task. Arrivals are scheduled against the run's start, not the previous
//! send, so a late timer is caught up rather than lowering the rate. `tokio`'s timer has a
//! millisecond resolution: at high rates several arrivals leave in the same millisecond.
//!
//! An arrival that finds `max_in_flight` requests outstanding is skipped and counted; it takes no
//! ticket, so a `--requests N` run sends exactly N requests (and lasts as many more arrivals as
//! were skipped).

use super::arrivals::PoissonArrivals;
use super::live::Live;
use super::tickets::Tickets;
use crate::client::LoadClient;
use crate::record::RequestRecord;
use std::sync::Arc;
use tokio::sync::{mpsc, Semaphore};
use tokio::time::{sleep_until, Instant};

/// Returns the records and the number of arrivals skipped because `max_in_flight` requests were
/// outstanding.
pub async fn run(
    mut arrivals: PoissonArrivals,
    max_in_flight: usize,
    tickets: Arc<Tickets>,
    client: Arc<LoadClient>,
    live: Arc<Live>,
    origin: Instant,
) -> (Vec<RequestRecord>, u64) {
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let slots = Arc::new(Semaphore::new(max_in_flight.max(1)));
    let mut skipped = 0;
    loop {
        let at = origin + arrivals.next_offset();
        if tickets.exhausted(at) {
            break;
        }
        sleep_until(at).await;
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            skipped += 1;
            live.on_skip();
            continue;
        };
        // This loop is the only taker: a ticket it saw left is still there.
        let Some(seq) = tickets.take(at) else { break };
        live.on_send();
        let (client, live, done_tx) = (client.clone(), live.clone(), done_tx.clone());
        tokio::spawn(async move {
            let record = client.send(seq, origin).await;
            live.on_done(&record);
            drop(slot);
            // The receiver outlives every sender; a send can only fail if the run was dropped.
            let _ = done_tx.send(record);
        });
    }
    drop(done_tx);
    let mut records = Vec::new();
    while let Some(record) = done_rx.recv().await {
        records.push(record);
    }
    records.sort_by_key(|r| r.start);
    (records, skipped)
}
