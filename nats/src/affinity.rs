//! Cache affinity on the work queue: which partition a request goes to, and which live worker
//! owns a partition.
//!
//! Each model's requests are spread over [`PARTITIONS`] subjects
//! (`coder.requests.<model>.<partition>`), each with its own durable consumer. The gateway, which
//! has no tokenizer, picks the partition from a hash of the request's leading content
//! ([`prompt_key`]: the system prompt and the first user message of a chat, the first bytes of a
//! completion prompt or of a fill-in-the-middle context), or of the client's `prompt_cache_key`
//! when it sends one. So every turn of a conversation, and every request about the same file, goes
//! to the same partition.
//!
//! A worker owns the partitions for which it wins the rendezvous ([`owner`]) among the live
//! workers of its model that it sees in heartbeats: every worker computes the same owners from
//! the same membership, a worker joining or leaving moves only the partitions it wins or won,
//! and nobody coordinates. The owner takes its partitions' requests first, so it holds their
//! prefixes in its cache; the others take them when the owner is busy, gone or slow (the
//! worker's `affinity` module). Nothing here decides whether a request is answered: every
//! partition is an ordinary durable work-queue consumer, and any worker may pull from any of them.

use crate::request::{ChatMessage, Prompt};
use crate::stable_hash::{mix, Fnv1a};

/// Partitions per model. Part of the contract between gateways and workers (a request is
/// published to one of them, workers pull from all of them): changing it needs both redeployed.
pub const PARTITIONS: u16 = 16;

/// Bytes of each part of a prompt that enter its partition key: enough to tell conversations
/// and files apart, little enough that a growing prompt (a conversation's later turns, more code
/// typed before the cursor) keeps its key.
pub const KEY_PART_BYTES: usize = 1024;

/// The partition of a request for `model` whose affinity key is `key`.
pub fn partition_of(model: &str, key: &[u8]) -> u16 {
    let mut hash = Fnv1a::new();
    hash.write(model.as_bytes());
    hash.write(&[0xff]);
    hash.write(key);
    (mix(hash.finish()) % u64::from(PARTITIONS)) as u16
}

/// The affinity key of a prompt: the parts of it that stay the same across a conversation's
/// turns and across requests about the same code, each cut to [`KEY_PART_BYTES`].
/// - chat: every system (or developer) message, and the first user message;
/// - completion: the start of the prompt;
/// - fill-in-the-middle: the context files' names and starts, and the start of the prefix.
pub fn prompt_key(prompt: &Prompt) -> Vec<u8> {
    let mut key = Vec::new();
    let mut part = |text: &str| {
        key.extend_from_slice(head(text.as_bytes()));
        key.push(0);
    };
    match prompt {
        Prompt::Text(text) => part(text),
        Prompt::Chat(messages) => chat_key(messages, &mut part),
        Prompt::Conversation(conversation) => {
            // Templates render the tools into the system turn: the same tools, the same prefix.
            for tool in conversation.offered_tools() {
                part(&tool.name);
            }
            chat_key(&conversation.messages, &mut part);
        }
        Prompt::Infill(infill) => {
            for file in &infill.files {
                part(&file.name);
                part(&file.text);
            }
            part(&infill.prefix);
        }
    }
    key
}

/// A chat's part of [`prompt_key`]: its system and developer messages and its first user one.
fn chat_key(messages: &[ChatMessage], part: &mut impl FnMut(&str)) {
    let mut first_user = true;
    for message in messages {
        match message.role.as_str() {
            "system" | "developer" => part(&message.content),
            "user" if first_user => {
                first_user = false;
                part(&message.content);
            }
            _ => {}
        }
    }
}

/// The partition of a request: of the client's `prompt_cache_key` when it gave one, else of its
/// prompt's [`prompt_key`]. The gateway's choice, which test clients that queue requests by
/// hand make the same way.
pub fn request_partition(model: &str, prompt: &Prompt, cache_key: Option<&str>) -> u16 {
    match cache_key {
        Some(key) => partition_of(model, key.as_bytes()),
        None => partition_of(model, &prompt_key(prompt)),
    }
}

/// A doorbell's payload: the partition that holds a new request, in decimal.
pub fn doorbell_payload(partition: u16) -> bytes::Bytes {
    partition.to_string().into()
}

/// The partition a doorbell's payload names, if it names one.
pub fn doorbell_partition(payload: &[u8]) -> Option<u16> {
    std::str::from_utf8(payload).ok()?.parse().ok()
}

/// The first [`KEY_PART_BYTES`] of `bytes`.
fn head(bytes: &[u8]) -> &[u8] {
    &bytes[..bytes.len().min(KEY_PART_BYTES)]
}

/// The worker that owns `partition` of `model` among `workers` (their ids): the one with the
/// highest rendezvous score. `None` when there are no workers.
pub fn owner<'a>(
    model: &str,
    partition: u16,
    workers: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    workers
        .into_iter()
        .max_by_key(|worker| (score(model, partition, worker), *worker))
}

/// A worker's rendezvous score for one partition.
fn score(model: &str, partition: u16, worker: &str) -> u64 {
    let mut hash = Fnv1a::new();
    hash.write(worker.as_bytes());
    hash.write(&[0xff]);
    hash.write(model.as_bytes());
    hash.write(&[0xff]);
    hash.write(&partition.to_le_bytes());
    mix(hash.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{ChatMessage, Infill, InfillFile};
    use std::collections::BTreeMap;

    fn message(role: &str, content: &str) -> ChatMessage {
        ChatMessage::new(role, content)
    }

    fn chat(messages: &[(&str, &str)]) -> Prompt {
        Prompt::Chat(messages.iter().map(|(r, c)| message(r, c)).collect())
    }

    #[test]
    fn the_hashes_are_pinned_so_every_build_agrees() {
        // Gateways and workers of different builds must put and look for a request in the same
        // place: these values are part of the contract.
        assert_eq!(partition_of("m", b""), partition_of("m", b""));
        assert_eq!(partition_of("qwen", b"hello\0"), 3);
        assert_eq!(score("qwen", 3, "worker-a"), 0x8f98_6560_9f77_a54b);
    }

    #[test]
    fn every_turn_of_a_conversation_has_the_first_turns_key() {
        let first = chat(&[("system", "You are terse."), ("user", "Fix parse()")]);
        let third = chat(&[
            ("system", "You are terse."),
            ("user", "Fix parse()"),
            ("assistant", "Done."),
            ("user", "Now add a test"),
            ("assistant", "Added."),
            ("user", "And docs"),
        ]);
        assert_eq!(prompt_key(&first), prompt_key(&third));
        let other = chat(&[("system", "You are terse."), ("user", "Fix lex()")]);
        assert_ne!(prompt_key(&first), prompt_key(&other));
    }

    #[test]
    fn requests_about_the_same_long_file_share_a_key() {
        let file = "fn main() {}\n".repeat(200);
        let ask = |question: &str| Prompt::Text(format!("{file}\n// {question}\n"));
        assert_eq!(prompt_key(&ask("explain")), prompt_key(&ask("optimise")));
        let chat_about = |question: &str| chat(&[("user", &format!("{file}\n{question}"))]);
        assert_eq!(
            prompt_key(&chat_about("explain")),
            prompt_key(&chat_about("optimise"))
        );
        let infill = |prefix: &str| {
            Prompt::Infill(Infill {
                prefix: format!("{file}{prefix}"),
                suffix: "}".into(),
                files: vec![InfillFile {
                    name: "lib.rs".into(),
                    text: "pub mod a;".into(),
                }],
            })
        };
        assert_eq!(prompt_key(&infill("let x")), prompt_key(&infill("let xy")));
    }

    #[test]
    fn keys_spread_over_every_partition() {
        let mut counts = BTreeMap::new();
        for i in 0..1600 {
            let key = prompt_key(&chat(&[("user", &format!("conversation {i}"))]));
            *counts.entry(partition_of("m", &key)).or_insert(0) += 1;
        }
        assert_eq!(counts.len(), usize::from(PARTITIONS));
        assert!(
            counts.values().all(|&n| (50..=150).contains(&n)),
            "{counts:?}"
        );
    }

    #[test]
    fn a_doorbell_carries_its_partition_and_nothing_else_reads_as_one() {
        for partition in [0, 7, PARTITIONS - 1] {
            assert_eq!(
                doorbell_partition(&doorbell_payload(partition)),
                Some(partition)
            );
        }
        for garbage in [&b""[..], b"x", b"-1", b"70000", b"\xff"] {
            assert_eq!(doorbell_partition(garbage), None, "{garbage:?}");
        }
    }

    #[test]
    fn a_cache_key_picks_the_partition_in_place_of_the_prompt() {
        let prompt = Prompt::Text("fn main() {}".into());
        assert_eq!(
            request_partition("m", &prompt, None),
            partition_of("m", &prompt_key(&prompt))
        );
        assert_eq!(
            request_partition("m", &prompt, Some("repo-a")),
            partition_of("m", b"repo-a")
        );
    }

    #[test]
    fn a_worker_leaving_moves_only_its_own_partitions() {
        let all = ["w1", "w2", "w3"];
        let before: Vec<_> = (0..PARTITIONS)
            .map(|p| owner("m", p, all).unwrap())
            .collect();
        for worker in all {
            assert!(
                before.contains(&worker),
                "{worker} owns nothing: {before:?}"
            );
        }
        let after: Vec<_> = (0..PARTITIONS)
            .map(|p| owner("m", p, ["w1", "w3"]).unwrap())
            .collect();
        for (b, a) in before.iter().zip(&after) {
            if *b != "w2" {
                assert_eq!(b, a, "a partition moved that w2 did not own");
            }
        }
        assert_eq!(owner("m", 0, []), None);
    }
}
