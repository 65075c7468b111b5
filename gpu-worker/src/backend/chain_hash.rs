//! The keys of cached prefixes: a hash per whole block of a sequence, each chained over the
//! blocks before it, so equal keys mean equal sequences up to the end of that block (the candle
//! engine's prefix cache hashes token ids, the synthetic backend's prompt bytes).

use std::hash::{DefaultHasher, Hash, Hasher};

/// Each whole block's hash (`block` items each), chained over the blocks before it; a partial
/// last block has none.
pub fn chain_hashes<T: Hash>(items: &[T], block: usize) -> Vec<u64> {
    let mut parent = 0u64;
    items
        .chunks_exact(block)
        .map(|block| {
            let mut hasher = DefaultHasher::new();
            parent.hash(&mut hasher);
            block.hash(&mut hasher);
            parent = hasher.finish();
            parent
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blocks_hash_depends_on_every_block_before_it() {
        let a = chain_hashes(&[1u32, 2, 3, 4, 5], 2);
        assert_eq!(a.len(), 2, "the partial last block has no hash");
        assert_eq!(chain_hashes(&[1u32, 2, 3, 4], 2), a);
        let b = chain_hashes(&[9u32, 2, 3, 4], 2);
        assert_ne!(a[0], b[0]);
        assert_ne!(a[1], b[1], "same block, different parent");
    }
}
