//! Q6_K prompt products with AVX-512 VNNI, AVX-VNNI or AVX2, on the GGUF blocks as they are.
//!
//! candle multiplies a prompt chunk by a Q6_K matrix fastest through tiles it builds from the
//! blocks, which cost either memory (kept: the default model's Q6_K matrices grow by ~0.23
//! GiB) or time (built per chunk: ~30% of a 128-token prompt here). This kernel takes the
//! blocks as stored: it unpacks each 256-weight block of a row once into four registers of
//! unsigned 6-bit values and multiplies them with up to [`x8::ROW_TILE`] input rows
//! (`vpdpbusd`), so the unpacking is paid once per tile of rows. Decode steps (one row) stay
//! on candle's block kernel: this one with one row measured no faster.
//!
//! A weight is `d · scale[g] · (q − 32)` with `q` in `0..64` and a signed 8-bit scale per
//! group `g` of 16 weights: the kernel sums `q · y` and subtracts `32 · Σ y` per group from
//! the input block's group sums.

use candle_core::quantized::k_quants::{BlockQ6K, QK_K};

use super::cpu_kernels::CpuKernels;
use super::plain_data::cast_slice;
use super::x8::{self, RawQ8K};

/// One Q6_K block as stored in GGUF (candle's `BlockQ6K` keeps its fields private).
#[repr(C)]
pub struct RawQ6K {
    /// Low 4 bits: byte `l` of half `h` holds value `128h + l` (low nibble) and `128h + 64 + l`
    /// (high nibble), for `l` in `0..64`.
    ql: [u8; QK_K / 2],
    /// High 2 bits: byte `l` of half `h` holds those of values `128h + l + 32j`, `j` in `0..4`,
    /// in bits `2j..2j + 2`.
    qh: [u8; QK_K / 4],
    scales: [i8; QK_K / 16],
    d: u16,
}

/// `dst[r][i] = x[r] · row i` for `m` input rows of `k` and an `(n, k)` matrix of Q6_K
/// `blocks` in row order (`mkn` as candle's `k_quants::matmul` takes it). Fails where
/// `level` has no kernels or the CPU lacks it.
pub fn matmul(
    level: CpuKernels,
    blocks: &[BlockQ6K],
    mkn: (usize, usize, usize),
    x: &[f32],
    dst: &mut [f32],
) -> candle_core::Result<()> {
    x8::row_matmul::<Q6KKernel>(level, cast_slice(blocks), mkn, x, dst)
}

/// The kernel over one row's Q6_K blocks.
struct Q6KKernel;

// SAFETY: `dot` writes one float per output for each of the group's `ROWS` rows.
unsafe impl x8::Kernel for Q6KKernel {
    const ROWS: usize = 1;
    type Block = RawQ6K;
    type Input = RawQ8K;

    unsafe fn dot<const M: usize>(
        level: CpuKernels,
        blocks: &[RawQ6K],
        inputs: [&[RawQ8K]; M],
        outputs: [*mut f32; M],
    ) {
        // SAFETY: the caller upholds `x8::Kernel::dot`'s contract, which is this one's, with
        // the CPU features of `level`.
        unsafe {
            match level {
                CpuKernels::Avx512Vnni => kernel::dot_rows::<M>(blocks, inputs, outputs),
                CpuKernels::AvxVnni => avxvnni::dot_rows::<M>(blocks, inputs, outputs),
                _ => avx2::dot_rows::<M>(blocks, inputs, outputs),
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod kernel {
    use super::{RawQ6K, RawQ8K};
    use std::arch::x86_64::*;

    /// Lane `j` of register `z` of a block's dot products covers values `64z + 4j..+4`, of
    /// group `4z + j / 4`: the scale lanes each register is multiplied by.
    const SCALE_LANES: [[i32; 16]; 4] = {
        let mut lanes = [[0; 16]; 4];
        let mut z = 0;
        while z < 4 {
            let mut j = 0;
            while j < 16 {
                lanes[z][j] = (4 * z + j / 4) as i32;
                j += 1;
            }
            z += 1;
        }
        lanes
    };

    /// The dot products of one row's blocks with each of `M` quantized input rows.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F/BW/VL/VNNI, F16C and FMA; every input has `blocks.len()` blocks;
    /// every output points at a writable float.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")]
    pub unsafe fn dot_rows<const M: usize>(
        blocks: &[RawQ6K],
        inputs: [&[RawQ8K]; M],
        outputs: [*mut f32; M],
    ) {
        // SAFETY: the caller guarantees AVX-512 F/BW/VL/VNNI, F16C, FMA and the sizes above.
        unsafe {
            let low_nibble = _mm512_set1_epi8(0x0F);
            let high_bits = _mm512_set1_epi8(0x30);
            // `qh` fills both 256-bit halves of a register; per 16-bit lane, the low half moves
            // bits 0-1 (then 4-5) to 4-5, the high half bits 2-3 (then 6-7).
            let first_shift = _mm512_inserti64x4::<1>(_mm512_set1_epi16(4), _mm256_set1_epi16(2));
            let second_shift =
                _mm512_inserti64x4::<1>(_mm512_setzero_si512(), _mm256_set1_epi16(2));
            let scale_lanes: [__m512i; 4] =
                std::array::from_fn(|z| _mm512_loadu_si512(SCALE_LANES[z].as_ptr() as *const _));
            let mut sums = [_mm512_setzero_ps(); M];
            for (b, block) in blocks.iter().enumerate() {
                // The block's 256 values in order, 64 per register, as unsigned 6-bit numbers.
                let mut q = [_mm512_setzero_si512(); 4];
                for half in 0..2 {
                    let ql = _mm512_loadu_si512(block.ql.as_ptr().add(64 * half) as *const _);
                    let qh = _mm512_broadcast_i64x4(_mm256_loadu_si256(
                        block.qh.as_ptr().add(32 * half) as *const _,
                    ));
                    let high = |bits: __m512i| _mm512_and_si512(bits, high_bits);
                    q[2 * half] = _mm512_or_si512(
                        _mm512_and_si512(ql, low_nibble),
                        high(_mm512_sllv_epi16(qh, first_shift)),
                    );
                    q[2 * half + 1] = _mm512_or_si512(
                        _mm512_and_si512(_mm512_srli_epi16::<4>(ql), low_nibble),
                        high(_mm512_srlv_epi16(qh, second_shift)),
                    );
                }
                let group_scales =
                    _mm512_cvtepi8_epi32(_mm_loadu_si128(block.scales.as_ptr() as *const _));
                let scales: [__m512i; 4] =
                    std::array::from_fn(|z| _mm512_permutexvar_epi32(scale_lanes[z], group_scales));
                let d = half::f16::from_bits(block.d).to_f32();
                for i in 0..M {
                    let y = &inputs[i][b];
                    let yq = y.qs.as_ptr();
                    let mut acc = _mm512_setzero_si512();
                    for z in 0..4 {
                        let ys = _mm512_loadu_si512(yq.add(64 * z) as *const _);
                        let dots = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q[z], ys);
                        acc = _mm512_add_epi32(acc, _mm512_mullo_epi32(dots, scales[z]));
                    }
                    // The `− 32` of every value: 32 · scale[g] · (sum of group g's inputs).
                    let group_sums =
                        _mm512_cvtepi16_epi32(_mm256_loadu_si256(y.bsums.as_ptr() as *const _));
                    let offset =
                        _mm512_slli_epi32::<5>(_mm512_mullo_epi32(group_sums, group_scales));
                    acc = _mm512_sub_epi32(acc, offset);
                    sums[i] =
                        _mm512_fmadd_ps(_mm512_set1_ps(d * y.d), _mm512_cvtepi32_ps(acc), sums[i]);
                }
            }
            for i in 0..M {
                *outputs[i] = _mm512_reduce_add_ps(sums[i]);
            }
        }
    }
}

/// The 256-bit kernel, for AVX2 and AVX-VNNI: as the AVX-512 kernel, on registers of 32 values
/// (two groups) each: products with `vpmaddubsw` (at most 2 · 63 · 127 per 16-bit lane),
/// scaled per group and summed into 32 bits by `$madd_add(acc, products, scales)`: `vpmaddwd`
/// and an add, or AVX-VNNI's `vpdpwssd` in one. `$features` are the level's.
#[cfg(target_arch = "x86_64")]
macro_rules! dot_rows_256 {
    ($features:literal, $madd_add:ident) => {
        /// # Safety
        /// The CPU must have the level's features; every input has `blocks.len()` blocks; every
        /// output points at a writable float.
        #[target_feature(enable = $features)]
        pub unsafe fn dot_rows<const M: usize>(
            blocks: &[RawQ6K],
            inputs: [&[RawQ8K]; M],
            outputs: [*mut f32; M],
        ) {
            // SAFETY: the caller guarantees the level's features and the sizes above.
            unsafe {
                let low_nibble = _mm256_set1_epi8(0x0F);
                let high_bits = _mm256_set1_epi8(0x30);
                let mut sums = [_mm256_setzero_ps(); M];
                for (b, block) in blocks.iter().enumerate() {
                    // The block's 256 values in order, 32 per register, as unsigned 6-bit numbers.
                    let mut q = [_mm256_setzero_si256(); 8];
                    for half in 0..2 {
                        let ql0 = _mm256_loadu_si256(block.ql.as_ptr().add(64 * half) as *const _);
                        let ql1 =
                            _mm256_loadu_si256(block.ql.as_ptr().add(64 * half + 32) as *const _);
                        let qh = _mm256_loadu_si256(block.qh.as_ptr().add(32 * half) as *const _);
                        let low = |bits: __m256i| _mm256_and_si256(bits, low_nibble);
                        let high = |bits: __m256i| _mm256_and_si256(bits, high_bits);
                        let upper = |bits: __m256i| low(_mm256_srli_epi16::<4>(bits));
                        q[4 * half] = _mm256_or_si256(low(ql0), high(_mm256_slli_epi16::<4>(qh)));
                        q[4 * half + 1] =
                            _mm256_or_si256(low(ql1), high(_mm256_slli_epi16::<2>(qh)));
                        q[4 * half + 2] = _mm256_or_si256(upper(ql0), high(qh));
                        q[4 * half + 3] =
                            _mm256_or_si256(upper(ql1), high(_mm256_srli_epi16::<2>(qh)));
                    }
                    // Register z's 16-bit lanes 0..8 take group 2z's scale, lanes 8..16 group 2z + 1's.
                    let scales: [__m256i; 8] = std::array::from_fn(|z| {
                        _mm256_setr_m128i(
                            _mm_set1_epi16(i16::from(block.scales[2 * z])),
                            _mm_set1_epi16(i16::from(block.scales[2 * z + 1])),
                        )
                    });
                    let group_scales =
                        _mm256_cvtepi8_epi16(_mm_loadu_si128(block.scales.as_ptr() as *const _));
                    let d = half::f16::from_bits(block.d).to_f32();
                    for i in 0..M {
                        let y = &inputs[i][b];
                        let yq = y.qs.as_ptr();
                        let mut acc = _mm256_setzero_si256();
                        for z in 0..8 {
                            let ys = _mm256_loadu_si256(yq.add(32 * z) as *const _);
                            let products = _mm256_maddubs_epi16(q[z], ys);
                            acc = $madd_add(acc, products, scales[z]);
                        }
                        // The `− 32` of every value: 32 · scale[g] · (sum of group g's inputs).
                        let group_sums = _mm256_loadu_si256(y.bsums.as_ptr() as *const _);
                        let offset =
                            _mm256_slli_epi32::<5>(_mm256_madd_epi16(group_sums, group_scales));
                        acc = _mm256_sub_epi32(acc, offset);
                        sums[i] = _mm256_fmadd_ps(
                            _mm256_set1_ps(d * y.d),
                            _mm256_cvtepi32_ps(acc),
                            sums[i],
                        );
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
mod avx2 {
    use super::{RawQ6K, RawQ8K};
    use std::arch::x86_64::*;

    /// `acc + vpmaddwd(products, scales)`.
    ///
    /// # Safety
    /// The CPU must have AVX2.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn madd_add(acc: __m256i, products: __m256i, scales: __m256i) -> __m256i {
        _mm256_add_epi32(acc, _mm256_madd_epi16(products, scales))
    }

    dot_rows_256!("avx2,f16c,fma", madd_add);
}

#[cfg(target_arch = "x86_64")]
mod avxvnni {
    use super::{RawQ6K, RawQ8K};
    use std::arch::x86_64::*;

    dot_rows_256!("avx2,avxvnni,f16c,fma", _mm256_dpwssd_avx_epi32);
}

#[cfg(not(target_arch = "x86_64"))]
use kernel as avx2;
#[cfg(not(target_arch = "x86_64"))]
use kernel as avxvnni;

#[cfg(not(target_arch = "x86_64"))]
mod kernel {
    use super::{RawQ6K, RawQ8K};

    pub unsafe fn dot_rows<const M: usize>(_: &[RawQ6K], _: [&[RawQ8K]; M], _: [*mut f32; M]) {
        unreachable!("CpuKernels has no x86 level on this architecture")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::backend::candle::test_gguf::matches_candle_products;

    #[test]
    fn products_match_candle_block_kernels_for_any_number_of_rows() {
        // Partial tiles, a full tile and more; a single block and rows of many.
        let shapes = [
            (1, 3, 256),
            (2, 5, 512),
            (4, 8, 1536),
            (7, 6, 2304),
            (9, 4, 256),
        ];
        matches_candle_products::<BlockQ6K>(matmul, &shapes, 1e-4);
    }
}
