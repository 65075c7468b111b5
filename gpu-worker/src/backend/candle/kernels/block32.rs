//! Q5_0 and Q8_0 products with AVX-512 VNNI, AVX-VNNI or AVX2, on the GGUF blocks as they are.
//!
//! Both hold 32 weights per block with one f16 scale. llama.cpp quantizes to Q5_0 the matrices
//! whose rows are not a multiple of 256 (Gemma 3 270M's Q/K/V and feed-forward, rows of 640),
//! and candle's Q5_0 dot product is a scalar loop (`vec_dot_unopt`, 57% of a decode step
//! there); Q8_0 holds Gemma 3's tied embedding and output projection, where candle's AVX2 loop
//! takes one row at a time and rebuilds prompt tiles per chunk. Here one block's weights are
//! unpacked into one register of unsigned bytes `w + offset` and meet up to [`x8::ROW_TILE`]
//! Q8_0 input rows with `vpdpbusd`, decode and prompt alike; `offset · Σ y` is then subtracted
//! (16 for Q5_0's 5-bit values, 128 for Q8_0's signed bytes).

use candle_core::quantized::k_quants::{BlockQ5_0, BlockQ8_0};

use super::cpu_kernels::CpuKernels;
use super::plain_data::cast_slice;
use super::x8::{self, RawQ8_0};

/// One Q5_0 block as stored in GGUF (candle's `BlockQ5_0` keeps its fields private).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct RawQ5_0 {
    d: u16,
    /// Bit `j` (little-endian) is the fifth bit of weight `j`.
    qh: [u8; 4],
    /// Low 4 bits: weight `j` in the low nibble of byte `j`, weight `16 + j` in its high one.
    qs: [u8; 16],
}
// A Q8_0 weight block has an input block's fields: `RawQ8_0` serves both.

/// `dst[r][i] = x[r] · row i` for `m` input rows of `k` and an `(n, k)` matrix of Q5_0
/// `blocks` in row order (`mkn` as candle's `k_quants::matmul` takes it). Fails where
/// `level` has no kernels or the CPU lacks it.
pub fn matmul_q5_0(
    level: CpuKernels,
    blocks: &[BlockQ5_0],
    mkn: (usize, usize, usize),
    x: &[f32],
    dst: &mut [f32],
) -> candle_core::Result<()> {
    x8::row_matmul::<Row<RawQ5_0>>(level, cast_slice(blocks), mkn, x, dst)
}

/// As [`matmul_q5_0`] for Q8_0 blocks.
pub fn matmul_q8_0(
    level: CpuKernels,
    blocks: &[BlockQ8_0],
    mkn: (usize, usize, usize),
    x: &[f32],
    dst: &mut [f32],
) -> candle_core::Result<()> {
    x8::row_matmul::<Row<RawQ8_0>>(level, cast_slice(blocks), mkn, x, dst)
}

/// A 32-weight block the kernel unpacks.
pub trait Block32: Sync {
    /// What is added to each weight to make it an unsigned byte.
    const OFFSET: i32;
    /// The block's f16 scale.
    fn d(&self) -> u16;
    /// The block's weights plus [`Block32::OFFSET`], in order.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F/BW/VL.
    #[cfg(target_arch = "x86_64")]
    unsafe fn unpack(&self) -> std::arch::x86_64::__m256i;
    /// As [`Block32::unpack`], with AVX2 alone.
    ///
    /// # Safety
    /// The CPU must have AVX2.
    #[cfg(target_arch = "x86_64")]
    unsafe fn unpack_avx2(&self) -> std::arch::x86_64::__m256i;
    /// The block's weights as signed bytes, in order.
    ///
    /// # Safety
    /// The CPU must have AVX2.
    #[cfg(target_arch = "x86_64")]
    unsafe fn signed_avx2(&self) -> std::arch::x86_64::__m256i;
}

impl Block32 for RawQ5_0 {
    const OFFSET: i32 = 16;

    fn d(&self) -> u16 {
        self.d
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    #[inline]
    unsafe fn unpack(&self) -> std::arch::x86_64::__m256i {
        // SAFETY: the caller has the CPU features; the loads read the block's own 16 bytes.
        unsafe { kernel::unpack_q5_0(self) }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn unpack_avx2(&self) -> std::arch::x86_64::__m256i {
        // SAFETY: the caller has AVX2; the loads read the block's own 16 bytes.
        unsafe { avx2::unpack_q5_0(self) }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn signed_avx2(&self) -> std::arch::x86_64::__m256i {
        use std::arch::x86_64::*;
        // SAFETY: as for `unpack_avx2`.
        unsafe { _mm256_sub_epi8(self.unpack_avx2(), _mm256_set1_epi8(Self::OFFSET as i8)) }
    }
}

impl Block32 for RawQ8_0 {
    const OFFSET: i32 = 128;

    fn d(&self) -> u16 {
        self.d
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    #[inline]
    unsafe fn unpack(&self) -> std::arch::x86_64::__m256i {
        // SAFETY: as for Q5_0; the load reads the block's own 32 bytes.
        unsafe { kernel::unpack_q8_0(self) }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn unpack_avx2(&self) -> std::arch::x86_64::__m256i {
        // SAFETY: the caller has AVX2; the load reads the block's own 32 bytes.
        unsafe { kernel::unpack_q8_0(self) }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn signed_avx2(&self) -> std::arch::x86_64::__m256i {
        // SAFETY: the caller has AVX2; the load reads the block's own 32 bytes.
        unsafe { avx2::signed_q8_0(self) }
    }
}

/// The kernel over one row's blocks of `B`.
struct Row<B>(std::marker::PhantomData<B>);

// SAFETY: `dot` writes one float per output, the group's one row.
unsafe impl<B: Block32> x8::Kernel for Row<B> {
    const ROWS: usize = 1;
    type Block = B;
    type Input = RawQ8_0;

    unsafe fn dot<const M: usize>(
        level: CpuKernels,
        blocks: &[B],
        inputs: [&[RawQ8_0]; M],
        outputs: [*mut f32; M],
    ) {
        // SAFETY: the caller upholds `x8::Kernel::dot`'s contract, which is this one's, with
        // the CPU features of `level`.
        unsafe {
            match level {
                CpuKernels::Avx512Vnni => kernel::dot_rows::<B, M>(blocks, inputs, outputs),
                CpuKernels::AvxVnni => avxvnni::dot_rows::<B, M>(blocks, inputs, outputs),
                _ => avx2::dot_rows::<B, M>(blocks, inputs, outputs),
            }
        }
    }
}

/// The VNNI kernel, for each level that has `vpdpbusd` on 256-bit registers: the dot products
/// of one row's blocks with each of `M` quantized input rows. `$features` are the level's,
/// `$dpbusd` its 256-bit `vpdpbusd` and `$unpack` the [`Block32`] method that unpacks a block
/// with those features.
#[cfg(target_arch = "x86_64")]
macro_rules! vnni_dot_rows {
    ($features:literal, $dpbusd:ident, $unpack:ident) => {
        /// # Safety
        /// The CPU must have the level's features; every input has `blocks.len()` blocks;
        /// every output points at a writable float.
        #[target_feature(enable = $features)]
        pub unsafe fn dot_rows<B: Block32, const M: usize>(
            blocks: &[B],
            inputs: [&[RawQ8_0]; M],
            outputs: [*mut f32; M],
        ) {
            // SAFETY: the caller guarantees the level's features and the sizes above.
            unsafe {
                let ones = _mm256_set1_epi8(1);
                let mut sums = [_mm256_setzero_ps(); M];
                for (b, block) in blocks.iter().enumerate() {
                    let q = block.$unpack();
                    let d = half::f16::from_bits(block.d()).to_f32();
                    for i in 0..M {
                        let y = &inputs[i][b];
                        let ys = _mm256_loadu_si256(y.qs.as_ptr() as *const _);
                        let dots = $dpbusd(_mm256_setzero_si256(), q, ys);
                        let y_sums = $dpbusd(_mm256_setzero_si256(), ones, ys);
                        let centred = _mm256_sub_epi32(
                            dots,
                            _mm256_mullo_epi32(y_sums, _mm256_set1_epi32(B::OFFSET)),
                        );
                        let scale = _mm256_set1_ps(d * half::f16::from_bits(y.d).to_f32());
                        sums[i] = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(centred), sums[i]);
                    }
                }
                for i in 0..M {
                    *outputs[i] = super::super::x8::horizontal_sum(sums[i]);
                }
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
mod kernel {
    use super::{Block32, RawQ5_0, RawQ8_0};
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must have AVX-512 F/BW/VL.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    #[inline]
    pub unsafe fn unpack_q5_0(block: &RawQ5_0) -> __m256i {
        // SAFETY: the caller guarantees AVX-512 F/BW/VL and the sizes above.
        unsafe {
            let low_nibble = _mm_set1_epi8(0x0F);
            let qs = _mm_loadu_si128(block.qs.as_ptr() as *const _);
            let low = _mm_and_si128(qs, low_nibble);
            let high = _mm_and_si128(_mm_srli_epi16::<4>(qs), low_nibble);
            let fifth = _mm256_maskz_mov_epi8(u32::from_le_bytes(block.qh), _mm256_set1_epi8(0x10));
            _mm256_or_si256(_mm256_set_m128i(high, low), fifth)
        }
    }

    /// # Safety
    /// The CPU must have AVX2.
    #[target_feature(enable = "avx2")]
    #[inline]
    pub unsafe fn unpack_q8_0(block: &RawQ8_0) -> __m256i {
        // SAFETY: the caller guarantees AVX2 and the sizes above.
        unsafe {
            let weights = _mm256_loadu_si256(block.qs.as_ptr() as *const _);
            _mm256_xor_si256(weights, _mm256_set1_epi8(-128))
        }
    }

    vnni_dot_rows!(
        "avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma",
        _mm256_dpbusd_epi32,
        unpack
    );
}

/// The kernel with AVX-VNNI: as [`kernel`]'s, with the VEX-encoded `vpdpbusd`.
#[cfg(target_arch = "x86_64")]
mod avxvnni {
    use super::{Block32, RawQ8_0};
    use std::arch::x86_64::*;

    vnni_dot_rows!(
        "avx2,avxvnni,f16c,fma",
        _mm256_dpbusd_avx_epi32,
        unpack_avx2
    );
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{Block32, RawQ5_0, RawQ8_0};
    use std::arch::x86_64::*;

    /// Q5_0's weights as unsigned bytes `w + 16`, as the AVX-512 `unpack_q5_0` gives them.
    ///
    /// # Safety
    /// The CPU must have AVX2.
    #[target_feature(enable = "avx2")]
    #[inline]
    pub unsafe fn unpack_q5_0(block: &RawQ5_0) -> __m256i {
        // SAFETY: the caller guarantees AVX2 and the sizes above.
        unsafe {
            let low_nibble = _mm_set1_epi8(0x0F);
            let qs = _mm_loadu_si128(block.qs.as_ptr() as *const _);
            let low = _mm_and_si128(qs, low_nibble);
            let high = _mm_and_si128(_mm_srli_epi16::<4>(qs), low_nibble);
            // Byte j takes byte j / 8 of `qh`, then keeps bit j % 8 of it: 0xFF where it is set.
            let spread = _mm256_shuffle_epi8(
                _mm256_set1_epi32(i32::from_le_bytes(block.qh)),
                _mm256_setr_epi64x(
                    0,
                    0x0101_0101_0101_0101,
                    0x0202_0202_0202_0202,
                    0x0303_0303_0303_0303,
                ),
            );
            let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201_u64 as i64);
            let set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
            let fifth = _mm256_and_si256(set, _mm256_set1_epi8(0x10));
            _mm256_or_si256(_mm256_set_m128i(high, low), fifth)
        }
    }

    /// Q8_0's weights, signed bytes as stored.
    ///
    /// # Safety
    /// The CPU must have AVX2.
    #[target_feature(enable = "avx2")]
    #[inline]
    pub unsafe fn signed_q8_0(block: &RawQ8_0) -> __m256i {
        // SAFETY: the caller guarantees AVX2 and the sizes above.
        unsafe { _mm256_loadu_si256(block.qs.as_ptr() as *const _) }
    }

    /// The dot products of one row's blocks with each of `M` quantized input rows: signed
    /// weights times signed inputs as `|w| · (y with w's sign)` with `vpmaddubsw` (at most
    /// 2 · 128 · 127 per 16-bit lane), summed to 32 bits with `vpmaddwd`.
    ///
    /// # Safety
    /// The CPU must have AVX2, F16C and FMA; every input has `blocks.len()` blocks; every
    /// output points at a writable float.
    #[target_feature(enable = "avx2,f16c,fma")]
    pub unsafe fn dot_rows<B: Block32, const M: usize>(
        blocks: &[B],
        inputs: [&[RawQ8_0]; M],
        outputs: [*mut f32; M],
    ) {
        // SAFETY: the caller guarantees AVX2, F16C, FMA and the sizes above.
        unsafe {
            let ones = _mm256_set1_epi16(1);
            let mut sums = [_mm256_setzero_ps(); M];
            for (b, block) in blocks.iter().enumerate() {
                let w = block.signed_avx2();
                let magnitude = _mm256_sign_epi8(w, w);
                let d = half::f16::from_bits(block.d()).to_f32();
                for i in 0..M {
                    let y = &inputs[i][b];
                    let ys = _mm256_loadu_si256(y.qs.as_ptr() as *const _);
                    let products = _mm256_maddubs_epi16(magnitude, _mm256_sign_epi8(ys, w));
                    let dots = _mm256_madd_epi16(products, ones);
                    let scale = _mm256_set1_ps(d * half::f16::from_bits(y.d).to_f32());
                    sums[i] = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(dots), sums[i]);
                }
            }
            for i in 0..M {
                *outputs[i] = super::super::x8::horizontal_sum(sums[i]);
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
use kernel as avx2;
#[cfg(not(target_arch = "x86_64"))]
use kernel as avxvnni;

#[cfg(not(target_arch = "x86_64"))]
mod kernel {
    use super::{Block32, RawQ8_0};

    pub unsafe fn dot_rows<B: Block32, const M: usize>(
        _: &[B],
        _: [&[RawQ8_0]; M],
        _: [*mut f32; M],
    ) {
        unreachable!("CpuKernels has no x86 level on this architecture")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::backend::candle::test_gguf::matches_candle_products;

    /// Rows of one block and of 640 (Gemma 3 270M), partial and full tiles of input rows.
    const SHAPES: [(usize, usize, usize); 5] = [
        (1, 3, 32),
        (1, 8, 640),
        (3, 5, 640),
        (4, 2, 96),
        (9, 4, 640),
    ];

    #[test]
    fn q5_0_products_match_candle_for_any_number_of_rows() {
        matches_candle_products::<BlockQ5_0>(matmul_q5_0, &SHAPES, 1e-3);
    }

    #[test]
    fn q8_0_products_match_candle_for_any_number_of_rows() {
        matches_candle_products::<BlockQ8_0>(matmul_q8_0, &SHAPES, 1e-3);
    }
}
