//! The synthetic backend's prefix cache: which prompt text it has seen, so that load tests and
//! the monitoring see hits, `cached_tokens` and the cache's metrics without a model.
//!
//! It keeps no KV, only the chained hashes of the prompt's blocks of [`BLOCK_BYTES`] bytes (16
//! synthetic tokens of 4 bytes, the candle cache's block size). A prompt's cached tokens are its
//! leading blocks already seen, short of its last byte as the candle cache stops short of its last
//! token. Its budget counts each kept block as its bytes of text; blocks are evicted least
//! recently used, a prompt's later blocks before its earlier ones (a later block is useless
//! without the ones before it).

use std::collections::{BTreeMap, HashMap};

use crate::backend::chain_hash::chain_hashes;
use crate::backend::PrefixCacheStats;

/// Synthetic tokens per block, as in the candle engine's cache.
const BLOCK_TOKENS: usize = 16;
/// Bytes of prompt text per synthetic token.
pub const BYTES_PER_TOKEN: usize = 4;
/// Bytes of prompt text per block.
const BLOCK_BYTES: usize = BLOCK_TOKENS * BYTES_PER_TOKEN;

/// Seen blocks within a byte budget, and what was looked up since the last report.
pub struct TextPrefixCache {
    capacity_blocks: usize,
    /// A block's chained hash → when it was last used.
    last_used: HashMap<u64, u64>,
    /// When → the block used then (each tick is one block's).
    by_age: BTreeMap<u64, u64>,
    clock: u64,
    counts: PrefixCacheStats,
}

impl TextPrefixCache {
    /// A cache of at most `capacity_bytes` bytes of prompt text (0: off).
    pub fn new(capacity_bytes: u64) -> Self {
        let capacity_blocks =
            usize::try_from(capacity_bytes / BLOCK_BYTES as u64).unwrap_or(usize::MAX);
        Self {
            capacity_blocks,
            last_used: HashMap::new(),
            by_age: BTreeMap::new(),
            clock: 0,
            counts: PrefixCacheStats::default(),
        }
    }

    /// Looks `text` (a prompt of `prompt_tokens` tokens) up and keeps its whole blocks; returns
    /// how many of its tokens were cached.
    pub fn admit(&mut self, text: &[u8], prompt_tokens: u32) -> u32 {
        if self.capacity_blocks == 0 {
            return 0;
        }
        let chain = chain_hashes(text, BLOCK_BYTES);
        let usable = text.len().saturating_sub(1) / BLOCK_BYTES;
        let hit_blocks = chain[..usable.min(chain.len())]
            .iter()
            .take_while(|hash| self.last_used.contains_key(hash))
            .count();
        let cached = ((hit_blocks * BLOCK_TOKENS) as u32).min(prompt_tokens);
        self.counts.queried_tokens += u64::from(prompt_tokens);
        self.counts.hit_tokens += u64::from(cached);
        // Later blocks get older ticks, so they go first.
        for hash in chain.iter().rev() {
            self.touch(*hash);
        }
        while self.last_used.len() > self.capacity_blocks {
            self.evict_oldest();
        }
        self.counts.bytes = (self.last_used.len() * BLOCK_BYTES) as u64;
        cached
    }

    fn touch(&mut self, hash: u64) {
        self.clock += 1;
        if let Some(old) = self.last_used.insert(hash, self.clock) {
            self.by_age.remove(&old);
        }
        self.by_age.insert(self.clock, hash);
    }

    fn evict_oldest(&mut self) {
        if let Some((_, hash)) = self.by_age.pop_first() {
            self.last_used.remove(&hash);
            self.counts.evictions += 1;
        }
    }

    /// The counts since the last call, and the bytes held now.
    pub fn take_counts(&mut self) -> PrefixCacheStats {
        let bytes = self.counts.bytes;
        std::mem::replace(
            &mut self.counts,
            PrefixCacheStats {
                bytes,
                ..PrefixCacheStats::default()
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(text: &[u8]) -> u32 {
        text.len().div_ceil(BYTES_PER_TOKEN) as u32
    }

    fn admit(cache: &mut TextPrefixCache, text: &[u8]) -> u32 {
        cache.admit(text, tokens(text))
    }

    #[test]
    fn a_repeated_prompt_hits_its_whole_blocks_short_of_its_last_byte() {
        let mut cache = TextPrefixCache::new(1 << 20);
        let prompt = vec![b'a'; 3 * BLOCK_BYTES];
        assert_eq!(admit(&mut cache, &prompt), 0);
        assert_eq!(admit(&mut cache, &prompt), 2 * BLOCK_TOKENS as u32);
        let mut longer = prompt.clone();
        longer.extend_from_slice(b"and a follow-up");
        assert_eq!(admit(&mut cache, &longer), 3 * BLOCK_TOKENS as u32);
        let mut changed = prompt.clone();
        changed[BLOCK_BYTES + 1] = b'b';
        assert_eq!(admit(&mut cache, &changed), BLOCK_TOKENS as u32);

        let counts = cache.take_counts();
        assert_eq!(counts.queried_tokens, 3 * 48 + tokens(&longer) as u64);
        assert_eq!(counts.hit_tokens, 16 * (2 + 3 + 1));
        assert_eq!(counts.bytes, 5 * BLOCK_BYTES as u64);
        let idle = cache.take_counts();
        assert_eq!(
            (idle.queried_tokens, idle.bytes),
            (0, 5 * BLOCK_BYTES as u64)
        );
    }

    #[test]
    fn the_least_recently_used_blocks_go_first_and_off_keeps_nothing() {
        let mut cache = TextPrefixCache::new(2 * BLOCK_BYTES as u64);
        let (first, second) = (vec![b'a'; 2 * BLOCK_BYTES + 1], vec![b'b'; BLOCK_BYTES + 1]);
        admit(&mut cache, &first);
        admit(&mut cache, &second);
        assert_eq!(
            cache.take_counts().evictions,
            1,
            "the first prompt's later block"
        );
        assert_eq!(admit(&mut cache, &first), BLOCK_TOKENS as u32);
        assert_eq!(
            admit(&mut cache, &second),
            0,
            "evicted by the first's return"
        );

        let mut off = TextPrefixCache::new(0);
        admit(&mut off, &first);
        assert_eq!(admit(&mut off, &first), 0);
        assert_eq!(off.take_counts(), PrefixCacheStats::default());
    }
}
