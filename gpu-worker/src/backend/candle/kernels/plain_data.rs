//! Seeing ggml blocks as other types of the same layout: the one place this folder
//! reinterprets memory.
//!
//! candle's block types (`BlockQ4K`, ...) keep their fields private, so each kernel declares a
//! mirror struct with ggml's fields (`RawQ4K`, ...) and views candle's slices through it. Weights
//! are read from a file straight into their blocks' bytes the same way. [`cast_slice`] checks
//! size and alignment at compile time, for every pair it is used with.

use candle_core::quantized::k_quants::{
    BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K, BlockQ5_0, BlockQ5_1, BlockQ6K,
    BlockQ8K, BlockQ8_0,
};

/// A type every bit pattern of its size is a valid value of.
///
/// # Safety
///
/// Implementors are `repr(C)` (or primitive) plain data: integers, floats, half floats and
/// arrays of them, with no padding, no pointers, no invariants on their values.
pub unsafe trait PlainData: Sized + 'static {}

/// Implements [`PlainData`] for types that are ggml blocks or their mirrors.
macro_rules! plain_data {
    ($($block:ty),* $(,)?) => {
        // SAFETY: candle's ggml blocks are `repr(C)` structs of `f16`, `f32`, integers and
        // arrays of them, written to match ggml's C structs byte for byte, with no padding;
        // the mirrors here copy those fields in the same order.
        $(unsafe impl PlainData for $block {})*
    };
}

plain_data!(
    BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K, BlockQ5_0, BlockQ5_1, BlockQ6K,
    BlockQ8K, BlockQ8_0,
);
plain_data!(
    super::q4k_x8::RawQ4K,
    super::q6k::RawQ6K,
    super::block32::RawQ5_0,
    super::x8::RawQ8K,
    super::x8::RawQ8_0,
);

/// `from` seen as a slice of `To`, element for element. Compiles only for types of the same
/// size whose alignment `From` satisfies.
pub fn cast_slice<From: PlainData, To: PlainData>(from: &[From]) -> &[To] {
    const {
        assert!(std::mem::size_of::<From>() == std::mem::size_of::<To>());
        assert!(std::mem::align_of::<To>() <= std::mem::align_of::<From>());
    }
    // SAFETY: `To` has `From`'s size and no stricter alignment (checked above), so the same
    // pointer and length cover exactly `from`'s memory, borrowed for as long as `from`; every
    // bit pattern is a valid `To` (`PlainData`).
    unsafe { std::slice::from_raw_parts(from.as_ptr().cast::<To>(), from.len()) }
}

/// The bytes of `blocks`, to fill them from a reader.
pub fn bytes_mut<T: PlainData>(blocks: &mut [T]) -> &mut [u8] {
    let len = std::mem::size_of_val(blocks);
    // SAFETY: the byte view covers exactly `blocks`' initialised memory, borrowed mutably for
    // as long as `blocks`; `u8` has no alignment requirement, and whatever bytes are written
    // leave a valid `T` (`PlainData`).
    unsafe { std::slice::from_raw_parts_mut(blocks.as_mut_ptr().cast::<u8>(), len) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::candle::kernels::q4k_x8::RawQ4K;
    use candle_core::quantized::k_quants::GgmlType;

    #[test]
    fn a_cast_keeps_length_and_bytes() {
        let blocks = vec![BlockQ4K::zeros(); 3];
        let raw: &[RawQ4K] = cast_slice(&blocks);
        assert_eq!(raw.len(), 3);
        assert_eq!(raw.as_ptr().cast::<u8>(), blocks.as_ptr().cast::<u8>());
        let back: &[BlockQ4K] = cast_slice(raw);
        assert_eq!(back.len(), 3);
    }

    #[test]
    fn bytes_cover_every_block() {
        let mut blocks = vec![BlockQ8_0::zeros(); 5];
        let bytes = bytes_mut(&mut blocks);
        assert_eq!(bytes.len(), 5 * std::mem::size_of::<BlockQ8_0>());
        bytes.fill(0);
    }
}
