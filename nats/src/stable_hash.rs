//! Hashes that every build agrees on: what the gateway and workers of different versions derive
//! from a request (its partition, a worker's rendezvous score, a choice's seed, a call's id) must
//! come out the same, which the standard library's hasher does not promise.

/// 64-bit FNV-1a.
pub(crate) struct Fnv1a(u64);

impl Fnv1a {
    pub(crate) fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    pub(crate) fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 ^= u64::from(byte);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    pub(crate) fn finish(&self) -> u64 {
        self.0
    }
}

/// SplitMix64's finaliser: every output bit depends on every input bit (FNV's low bits are weak
/// for short inputs; a seed one step from another must not look like it).
pub(crate) fn mix(mut value: u64) -> u64 {
    value = (value ^ (value >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    value = (value ^ (value >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    value ^ (value >> 31)
}
