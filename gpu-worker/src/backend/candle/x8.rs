//! Around the eight-row interleaved kernel (`q4k_x8.rs`): the CPU check, the quantized input,
//! and the product driver on candle's thread pool.
//!
//! candle's K-quant dot products (ggml's AVX2 kernels) take one weight row against the
//! quantized input at a time and spend most of their instructions unpacking that row's scales
//! and widening its products. On two cores they match llama.cpp with one thread but gain only
//! ~1.3x from the second, where llama.cpp's repacked kernels gain ~1.75x. Stored eight rows
//! together, one `vpdpbusd` multiplies 8 weights of each of 8 rows by the same 8 broadcast
//! inputs, and scales and float conversion are paid once per 8 rows. Prompt chunks reuse each
//! unpacked weight for [`ROW_TILE`] input rows, which beats building candle's prompt tiles for
//! every chunk (a 128-token prompt: 41 → 76 tokens/s here).

use candle_core::quantized::k_quants::{BlockQ8K, GgmlType, QK_K};

/// One quantized input block: candle's `BlockQ8K`, whose fields are private.
#[repr(C)]
pub struct RawQ8K {
    pub d: f32,
    pub qs: [i8; QK_K],
    /// Sums of each 16 consecutive `qs`.
    pub bsums: [i16; QK_K / 16],
}
const _: () = assert!(std::mem::size_of::<RawQ8K>() == std::mem::size_of::<BlockQ8K>());

/// Whether this CPU runs the interleaved kernels (AVX-512 F/BW/VL with VNNI, and F16C).
pub fn supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("avx512vnni")
            && std::arch::is_x86_feature_detected!("f16c")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Input rows a kernel call takes at once: each weight it unpacks serves this many rows.
pub const ROW_TILE: usize = 4;

/// `dst = x · Wᵀ` for `m` input rows and an `(n, k)` matrix of `n / 8` groups: quantizes each
/// row of `x` once, then `dot(group, inputs, outputs)` fills one group's 8 outputs for up to
/// [`ROW_TILE`] rows at a time (`outputs[i]` points at 8 floats of row `inputs[i]`), on
/// candle's CPU thread pool. A group's weights stay in cache while every row goes by.
pub fn matmul<F>(
    m: usize,
    n: usize,
    k: usize,
    x: &[f32],
    dst: &mut [f32],
    dot: F,
) -> candle_core::Result<()>
where
    F: Fn(usize, &[&[RawQ8K]], &[*mut f32]) + Sync,
{
    if x.len() != m * k || dst.len() != m * n || !n.is_multiple_of(8) || !k.is_multiple_of(QK_K) {
        candle_core::bail!(
            "interleaved product: ({}) x ({n}, {k}) into ({}) for {m} rows",
            x.len(),
            dst.len()
        );
    }
    if !supported() {
        candle_core::bail!("interleaved product: this CPU lacks AVX-512 VNNI");
    }
    let per_row = k / QK_K;
    let mut quantized = vec![BlockQ8K::zeros(); m * per_row];
    if m == 1 {
        BlockQ8K::from_float(x, &mut quantized);
    } else {
        // A prompt chunk's rows, quantized on every thread (one thread: ~10% of a prompt).
        let quantized_addr = quantized.as_mut_ptr() as usize;
        candle_core::utils::barrier_pool().execute_chunked(m, |rows| {
            for row in rows {
                // SAFETY: each row owns its `per_row` blocks of `quantized` (m * per_row).
                let blocks = unsafe {
                    std::slice::from_raw_parts_mut(
                        (quantized_addr as *mut BlockQ8K).add(row * per_row),
                        per_row,
                    )
                };
                BlockQ8K::from_float(&x[row * k..(row + 1) * k], blocks);
            }
        });
    }
    // SAFETY: `RawQ8K` mirrors candle's `repr(C)` `BlockQ8K` (ggml's `block_q8_K`).
    let input: &[RawQ8K] =
        unsafe { std::slice::from_raw_parts(quantized.as_ptr() as *const RawQ8K, quantized.len()) };
    let rows: Vec<&[RawQ8K]> = input.chunks(per_row).collect();
    let dst_addr = dst.as_mut_ptr() as usize;
    candle_core::utils::barrier_pool().execute_chunked(n / 8, |groups| {
        for group in groups {
            for (tile, inputs) in rows.chunks(ROW_TILE).enumerate() {
                let first = tile * ROW_TILE;
                // Each (row, group) pair owns 8 outputs inside `dst` (m rows of n = 8 * groups).
                let outputs: [*mut f32; ROW_TILE] = std::array::from_fn(|i| {
                    (dst_addr as *mut f32).wrapping_add((first + i) * n + group * 8)
                });
                dot(group, inputs, &outputs[..inputs.len()]);
            }
        }
    });
    Ok(())
}

/// Row `r`'s values of a per-row vector (8 lanes) spread over 16 lanes: lanes `2r` and
/// `2r + 1`, where the kernels keep row `r`'s partial sums.
#[cfg(target_arch = "x86_64")]
pub const SPREAD: [i32; 16] = [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7];

/// Sums lanes `2r` and `2r + 1` of `sums` into lane `r` of the result.
///
/// # Safety
/// The CPU must have AVX-512 F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl")]
pub unsafe fn pair_sums(sums: std::arch::x86_64::__m512) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    let even = _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 14, 12, 10, 8, 6, 4, 2, 0);
    let odd = _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 15, 13, 11, 9, 7, 5, 3, 1);
    _mm256_add_ps(
        _mm512_castps512_ps256(_mm512_permutexvar_ps(even, sums)),
        _mm512_castps512_ps256(_mm512_permutexvar_ps(odd, sums)),
    )
}
