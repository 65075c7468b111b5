//! The multi-turn workload: conversations played turn after turn, at most `concurrency` at once.
//!
//! Each turn resends the conversation's whole history, the answers the server gave included,
//! so a turn can only be sent once the one before it has ended; a turn that fails ends its
//! conversation (the turns after it are not sent). Each record carries its turn (from 1).

use super::live::Live;
use crate::client::LoadClient;
use crate::record::RequestRecord;
use crate::shared_prefix::Conversation;
use crate::workload::{self, RequestShape};
use anyhow::Context;
use bytes::Bytes;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Plays every conversation to its end; the records sorted by start.
pub async fn run(
    conversations: Arc<Vec<Conversation>>,
    concurrency: usize,
    shape: Arc<RequestShape>,
    client: Arc<LoadClient>,
    live: Arc<Live>,
    origin: Instant,
) -> anyhow::Result<Vec<RequestRecord>> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut users = JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (conversations, next) = (conversations.clone(), next.clone());
        let (shape, client, live) = (shape.clone(), client.clone(), live.clone());
        users.spawn(async move {
            let mut records = Vec::new();
            while let Some(conversation) = conversations.get(next.fetch_add(1, Ordering::Relaxed)) {
                play(conversation, &shape, &client, &live, origin, &mut records).await;
            }
            records
        });
    }
    let mut records = Vec::new();
    while let Some(done) = users.join_next().await {
        records.extend(done.context("a conversation task failed")?);
    }
    records.sort_by_key(|r| r.start);
    Ok(records)
}

/// One conversation's turns, each after the last has ended, until one fails.
async fn play(
    conversation: &Conversation,
    shape: &RequestShape,
    client: &LoadClient,
    live: &Live,
    origin: Instant,
    records: &mut Vec<RequestRecord>,
) {
    let turns = conversation.questions.len();
    let mut answers: Vec<String> = Vec::with_capacity(turns);
    for turn in 0..turns {
        let seq = (conversation.index * turns + turn) as u64;
        let max_tokens = shape.max_tokens.draw(shape.length_seed, seq);
        let mut body = workload::body(shape, "", max_tokens);
        body["messages"] = conversation.messages(turn, &answers);
        // A body of strings, numbers and maps serialises; nothing here can fail.
        let body = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
        live.on_send();
        let mut record = client.send_body(body, max_tokens, origin).await;
        live.on_done(&record);
        record.turn = Some(turn as u32 + 1);
        let answer = record.answer.take();
        let ok = record.is_ok();
        records.push(record);
        match (ok, answer) {
            (true, Some(answer)) => answers.push(answer),
            _ => return,
        }
    }
}
