//! Finished sequences' KV, kept so a new sequence whose prompt starts with the same tokens
//! feeds only the rest (a system prompt, an open file, earlier turns of a conversation).
//!
//! Entries are whole sessions, indexed by blocks of [`BLOCK_TOKENS`] tokens: the key of a
//! block is a hash chained over every block before it, so one look-up per block of the new
//! prompt finds the longest cached prefix in whole blocks. A hit copies those positions' K and
//! V into the new sequence's own session, so a cached entry is never written and stays for
//! the next. Entries are evicted least recently used within `--prefix-cache-bytes`.
//!
//! A hit changes no token: a position's K and V depend only on the tokens up to it, and the
//! models that copy prefixes compute every row the same way whatever else shares its step
//! (`models/step_rows.rs`), so the copied values are the bits feeding the prefix would give.

use std::collections::HashMap;

use crate::backend::candle::models::Session;
use crate::backend::chain_hash;

/// Tokens per block: prefixes are cached and found in whole blocks.
pub const BLOCK_TOKENS: usize = 16;

/// What the cache did since it was last asked ([`PrefixCache::take_counts`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrefixCounts {
    /// Prompt tokens looked up.
    pub queried: u64,
    /// Prompt tokens found cached.
    pub hits: u64,
    pub evictions: u64,
}

struct Entry {
    /// The cached tokens, a whole number of blocks.
    tokens: Vec<u32>,
    /// Each block's chained hash.
    chain: Vec<u64>,
    session: Box<dyn Session>,
    last_used: u64,
}

/// Cached prefixes within a byte budget.
pub struct PrefixCache {
    capacity: u64,
    bytes_per_position: u64,
    entries: HashMap<u64, Entry>,
    /// A block's chained hash → the entry that last cached it.
    index: HashMap<u64, u64>,
    bytes: u64,
    clock: u64,
    next_id: u64,
    counts: PrefixCounts,
}

impl PrefixCache {
    /// A cache of at most `capacity` bytes of KV (0: off).
    pub fn new(capacity: u64, bytes_per_position: usize) -> Self {
        Self {
            capacity,
            bytes_per_position: bytes_per_position as u64,
            entries: HashMap::new(),
            index: HashMap::new(),
            bytes: 0,
            clock: 0,
            next_id: 0,
            counts: PrefixCounts::default(),
        }
    }

    fn enabled(&self) -> bool {
        self.capacity > 0 && self.bytes_per_position > 0
    }

    /// The longest cached prefix of `prompt` in whole blocks, short of its last token (whose
    /// logits the sequence needs): the entry holding it and its length. Counted as queried,
    /// and as a hit unless [`PrefixCache::unhit`] says it could not be used.
    pub fn lookup(&mut self, prompt: &[u32]) -> Option<(u64, usize)> {
        if !self.enabled() {
            return None;
        }
        self.counts.queried += prompt.len() as u64;
        let usable = prompt.len().saturating_sub(1) / BLOCK_TOKENS * BLOCK_TOKENS;
        let chain = chain_hash::chain_hashes(&prompt[..usable], BLOCK_TOKENS);
        self.clock += 1;
        for (block, hash) in chain.iter().enumerate().rev() {
            let Some(&id) = self.index.get(hash) else {
                continue;
            };
            let positions = (block + 1) * BLOCK_TOKENS;
            let entry = self.entries.get_mut(&id)?;
            if entry.tokens.get(..positions) == Some(&prompt[..positions]) {
                entry.last_used = self.clock;
                self.counts.hits += positions as u64;
                return Some((id, positions));
            }
        }
        None
    }

    /// Takes back the hit of a look-up whose prefix could not be copied.
    pub fn unhit(&mut self, positions: usize) {
        self.counts.hits = self.counts.hits.saturating_sub(positions as u64);
    }

    /// The session of entry `id`.
    pub fn session(&self, id: u64) -> Option<&dyn Session> {
        self.entries.get(&id).map(|entry| entry.session.as_ref())
    }

    /// Keeps `session`, which was fed `tokens`, for their whole blocks; hands it back where it
    /// is not worth keeping (no whole block, more than the budget, already cached).
    pub fn insert(
        &mut self,
        tokens: &[u32],
        session: Box<dyn Session>,
    ) -> Option<Box<dyn Session>> {
        let positions = tokens.len() / BLOCK_TOKENS * BLOCK_TOKENS;
        let bytes = positions as u64 * self.bytes_per_position;
        if !self.enabled() || positions == 0 || bytes > self.capacity {
            return Some(session);
        }
        let chain = chain_hash::chain_hashes(&tokens[..positions], BLOCK_TOKENS);
        let known = chain.last().and_then(|hash| self.index.get(hash));
        if known.is_some_and(|id| {
            self.entries
                .get(id)
                .is_some_and(|e| e.tokens.starts_with(&tokens[..positions]))
        }) {
            return Some(session);
        }
        while self.bytes + bytes > self.capacity && self.evict_oldest() {}
        self.clock += 1;
        let id = self.next_id;
        self.next_id += 1;
        for hash in &chain {
            self.index.insert(*hash, id);
        }
        self.entries.insert(
            id,
            Entry {
                tokens: tokens[..positions].to_vec(),
                chain,
                session,
                last_used: self.clock,
            },
        );
        self.bytes += bytes;
        None
    }

    /// Drops the least recently used entry; false when there is none.
    fn evict_oldest(&mut self) -> bool {
        let Some(id) = self
            .entries
            .iter()
            .min_by_key(|(_, entry)| entry.last_used)
            .map(|(&id, _)| id)
        else {
            return false;
        };
        let entry = self.entries.remove(&id).expect("an entry just found");
        for hash in &entry.chain {
            if self.index.get(hash) == Some(&id) {
                self.index.remove(hash);
            }
        }
        self.bytes -= entry.tokens.len() as u64 * self.bytes_per_position;
        self.counts.evictions += 1;
        true
    }

    /// Bytes of KV held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The counts since the last call.
    pub fn take_counts(&mut self) -> PrefixCounts {
        std::mem::take(&mut self.counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A session that is only ever stored.
    struct Stored;

    impl Session for Stored {
        fn forward(&mut self, _: &[u32], _: usize) -> candle_core::Result<candle_core::Tensor> {
            candle_core::bail!("not fed in these tests")
        }
        fn reset(&mut self) {}
        fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
            self
        }
        fn as_any(&self) -> &dyn std::any::Any {
            self
        }
    }

    fn tokens(range: std::ops::Range<u32>) -> Vec<u32> {
        range.collect()
    }

    #[test]
    fn the_longest_cached_prefix_is_found_in_whole_blocks_short_of_the_last_token() {
        let mut cache = PrefixCache::new(1 << 20, 1);
        assert!(cache.insert(&tokens(0..40), Box::new(Stored)).is_none());

        // 40 fed tokens keep two blocks; a prompt of exactly those 32 may reuse 16.
        assert_eq!(cache.lookup(&tokens(0..100)).map(|h| h.1), Some(32));
        assert_eq!(cache.lookup(&tokens(0..32)).map(|h| h.1), Some(16));
        assert_eq!(cache.lookup(&tokens(0..16)), None);
        let mut other = tokens(0..100);
        other[20] = 999;
        assert_eq!(cache.lookup(&other).map(|h| h.1), Some(16));
        assert_eq!(cache.lookup(&tokens(1..100)), None);

        let counts = cache.take_counts();
        assert_eq!(counts.queried, 100 + 32 + 16 + 100 + 99);
        assert_eq!(counts.hits, 32 + 16 + 16);
        assert_eq!(cache.take_counts(), PrefixCounts::default());
    }

    #[test]
    fn the_least_recently_used_entry_goes_first() {
        let mut cache = PrefixCache::new(64, 1);
        assert!(cache.insert(&tokens(0..32), Box::new(Stored)).is_none());
        assert!(cache.insert(&tokens(100..132), Box::new(Stored)).is_none());
        cache.lookup(&tokens(0..40));
        assert!(cache.insert(&tokens(200..232), Box::new(Stored)).is_none());

        assert!(cache.lookup(&tokens(0..40)).is_some(), "used last, kept");
        assert!(cache.lookup(&tokens(100..140)).is_none(), "evicted");
        assert!(cache.lookup(&tokens(200..240)).is_some());
        assert_eq!(cache.bytes(), 64);
        assert_eq!(cache.take_counts().evictions, 1);
    }

    #[test]
    fn nothing_is_kept_when_off_too_short_too_big_or_already_there() {
        let mut off = PrefixCache::new(0, 1);
        assert!(off.insert(&tokens(0..32), Box::new(Stored)).is_some());
        assert_eq!(off.lookup(&tokens(0..40)), None);
        assert_eq!(off.take_counts().queried, 0);

        let mut cache = PrefixCache::new(32, 1);
        assert!(cache.insert(&tokens(0..15), Box::new(Stored)).is_some());
        assert!(cache.insert(&tokens(0..48), Box::new(Stored)).is_some());
        assert!(cache.insert(&tokens(0..32), Box::new(Stored)).is_none());
        assert!(cache.insert(&tokens(0..20), Box::new(Stored)).is_some());
        assert_eq!(cache.bytes(), 32);
    }
}
