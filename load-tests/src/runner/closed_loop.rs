//! Closed loop: `concurrency` connections, each sending its next request when its last one ends.

use super::live::Live;
use super::tickets::Tickets;
use crate::client::LoadClient;
use crate::record::RequestRecord;
use anyhow::Context;
use std::sync::Arc;
use tokio::task::JoinSet;
use tokio::time::Instant;

pub async fn run(
    concurrency: usize,
    tickets: Arc<Tickets>,
    client: Arc<LoadClient>,
    live: Arc<Live>,
    origin: Instant,
) -> anyhow::Result<Vec<RequestRecord>> {
    let mut connections = JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (tickets, client, live) = (tickets.clone(), client.clone(), live.clone());
        connections.spawn(async move {
            let mut records = Vec::new();
            while let Some(seq) = tickets.take(Instant::now()) {
                live.on_send();
                let record = client.send(seq, origin).await;
                live.on_done(&record);
                records.push(record);
            }
            records
        });
    }
    let mut records = Vec::new();
    while let Some(done) = connections.join_next().await {
        records.extend(done.context("a load connection task failed")?);
    }
    records.sort_by_key(|r| r.start);
    Ok(records)
}
