//! Q8_0 products with AVX-512 VNNI, on the GGUF blocks as they are.
//!
//! candle's Q8_0 dot product is an AVX2 loop over one row, and its prompt tiles are rebuilt
//! per chunk. Q8_0 holds Gemma 3's tied embedding and output projection (262,144 rows: 22% of
//! a 270M decode step). This kernel meets a 32-weight block with up to [`x8::ROW_TILE`] Q8_0
//! input rows with `vpdpbusd`, decode and prompt alike.
//!
//! `vpdpbusd` multiplies unsigned by signed bytes: the kernel sums `(w + 128) · y` and
//! subtracts `128 · Σ y`.

use candle_core::quantized::k_quants::BlockQ8_0;

use super::x8::{self, RawQ8_0};

// A Q8_0 weight block has an input block's fields: `RawQ8_0` serves both.
const _: () = assert!(std::mem::size_of::<RawQ8_0>() == std::mem::size_of::<BlockQ8_0>());

/// `dst[r][i] = x[r] · row i` for `m` input rows of `k` and an `(n, k)` matrix of Q8_0
/// `blocks` in row order (`mkn` as candle's `k_quants::matmul` takes it). Fails where
/// [`x8::supported`] does not hold.
pub fn matmul(
    blocks: &[BlockQ8_0],
    mkn: (usize, usize, usize),
    x: &[f32],
    dst: &mut [f32],
) -> candle_core::Result<()> {
    // SAFETY: `RawQ8_0` mirrors candle's `repr(C)` `BlockQ8_0` (same size, checked above), plain
    // data that every bit pattern inhabits.
    let raw: &[RawQ8_0] =
        unsafe { std::slice::from_raw_parts(blocks.as_ptr() as *const RawQ8_0, blocks.len()) };
    x8::row_matmul::<Q8_0Kernel>(raw, mkn, x, dst)
}

/// The kernel over one row's Q8_0 blocks.
struct Q8_0Kernel;

// SAFETY: `dot` writes one float per output, the group's one row.
unsafe impl x8::Kernel for Q8_0Kernel {
    const ROWS: usize = 1;
    type Block = RawQ8_0;
    type Input = RawQ8_0;

    unsafe fn dot<const M: usize>(
        blocks: &[RawQ8_0],
        inputs: [&[RawQ8_0]; M],
        outputs: [*mut f32; M],
    ) {
        // SAFETY: the caller upholds `x8::Kernel::dot`'s contract, which is this one's.
        unsafe { kernel::dot_rows::<M>(blocks, inputs, outputs) }
    }
}

#[cfg(target_arch = "x86_64")]
mod kernel {
    use super::RawQ8_0;
    use std::arch::x86_64::*;

    /// The dot products of one row's blocks with each of `M` quantized input rows.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F/BW/VL/VNNI, F16C and FMA; every input has `blocks.len()`
    /// blocks; every output points at a writable float.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")]
    pub unsafe fn dot_rows<const M: usize>(
        blocks: &[RawQ8_0],
        inputs: [&[RawQ8_0]; M],
        outputs: [*mut f32; M],
    ) {
        let flip = _mm256_set1_epi8(-128);
        let ones = _mm256_set1_epi8(1);
        let mut sums = [_mm256_setzero_ps(); M];
        for (b, block) in blocks.iter().enumerate() {
            // The block's weights plus 128, as unsigned bytes.
            let q = _mm256_xor_si256(_mm256_loadu_si256(block.qs.as_ptr() as *const _), flip);
            let d = half::f16::from_bits(block.d).to_f32();
            for i in 0..M {
                let y = &inputs[i][b];
                let ys = _mm256_loadu_si256(y.qs.as_ptr() as *const _);
                let dots = _mm256_dpbusd_epi32(_mm256_setzero_si256(), q, ys);
                let y_sums = _mm256_dpbusd_epi32(_mm256_setzero_si256(), ones, ys);
                let centred = _mm256_sub_epi32(dots, _mm256_slli_epi32::<7>(y_sums));
                let scale = _mm256_set1_ps(d * half::f16::from_bits(y.d).to_f32());
                sums[i] = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(centred), sums[i]);
            }
        }
        for i in 0..M {
            let halves = _mm_add_ps(
                _mm256_castps256_ps128(sums[i]),
                _mm256_extractf128_ps::<1>(sums[i]),
            );
            let pairs = _mm_add_ps(halves, _mm_movehl_ps(halves, halves));
            let total = _mm_add_ss(pairs, _mm_shuffle_ps::<1>(pairs, pairs));
            *outputs[i] = _mm_cvtss_f32(total);
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod kernel {
    use super::RawQ8_0;

    pub unsafe fn dot_rows<const M: usize>(_: &[RawQ8_0], _: [&[RawQ8_0]; M], _: [*mut f32; M]) {
        unreachable!("x8::matmul runs kernels only where x8::supported() holds")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::k_quants::{matmul as candle_matmul, GgmlType};

    use super::super::test_gguf::noise;

    #[test]
    fn products_match_candle_block_kernels_for_any_number_of_rows() {
        if !x8::supported() {
            eprintln!("skipped: this CPU lacks AVX-512 VNNI");
            return;
        }
        // Rows of one block and of 640 (Gemma 3 270M); partial and full tiles of input rows.
        for (m, n, k) in [
            (1, 3, 32),
            (1, 8, 640),
            (3, 5, 640),
            (4, 2, 96),
            (9, 4, 640),
        ] {
            let weights = noise((m * n * k) as u64, n * k, 1.0);
            let mut blocks = vec![BlockQ8_0::zeros(); n * k / 32];
            BlockQ8_0::from_float(&weights, &mut blocks);
            let x: Vec<f32> = noise((m + n + k) as u64, m * k, 2.0);
            let mut expected = vec![0f32; m * n];
            candle_matmul((m, k, n), &x, &blocks, &mut expected).unwrap();

            let mut got = vec![0f32; m * n];
            matmul(&blocks, (m, k, n), &x, &mut got).unwrap();

            for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
                assert!(
                    (g - e).abs() <= 1e-3 * e.abs().max(1.0),
                    "({m}, {n}, {k}) output {i}: {g} vs {e}"
                );
            }
        }
    }
}
