//! Around this crate's kernels (`q4k_x8.rs`, Q4_K interleaved eight rows at a time; `q6k.rs`,
//! Q6_K prompt chunks; `block32.rs`, Q5_0 and Q8_0 blocks one row at a time), each written for
//! AVX-512 VNNI, AVX-VNNI and AVX2 (the [`CpuKernels`] level picks one): the quantized input (Q8_K
//! blocks of 256 values, or Q8_0 blocks of 32), and the product driver on candle's thread pool.
//!
//! candle's K-quant dot products (ggml's AVX2 kernels) take one weight row against the
//! quantized input at a time and spend most of their instructions unpacking that row's scales
//! and widening its products. On two cores they match llama.cpp with one thread but gain only
//! ~1.3x from the second, where llama.cpp's repacked kernels gain ~1.75x. Stored eight rows
//! together, one `vpdpbusd` multiplies 8 weights of each of 8 rows by the same 8 broadcast
//! inputs, and scales and float conversion are paid once per 8 rows. Prompt chunks reuse each
//! unpacked weight for [`ROW_TILE`] input rows, which beats building candle's prompt tiles for
//! every chunk (a 128-token prompt: 41 → 76 tokens/s here).

use candle_core::quantized::k_quants::QK_K;

use super::cpu_kernels::CpuKernels;

/// One quantized input block: candle's `BlockQ8K`, whose fields are private.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct RawQ8K {
    pub d: f32,
    pub qs: [i8; QK_K],
    /// Sums of each 16 consecutive `qs`.
    pub bsums: [i16; QK_K / 16],
}

impl RawQ8K {
    const ZERO: Self = Self {
        d: 0.0,
        qs: [0; QK_K],
        bsums: [0; QK_K / 16],
    };

    /// Quantizes `x` (a multiple of 256 values) into `blocks` as ggml's `quantize_row_q8_K`
    /// does (`d = max |x| / 127`, values rounded to nearest), but with AVX-512 or AVX2:
    /// candle's scalar loop took ~8% of a prompt and ~2% of a decode step here. Ties round to
    /// even, as ggml's `nearest_int` does (candle's loop rounds them away from zero). Both
    /// levels give the same bits. `level` must have kernels and be available.
    pub fn quantize(level: CpuKernels, x: &[f32], blocks: &mut [Self]) {
        assert_eq!(x.len(), blocks.len() * QK_K, "one block per 256 values");
        assert!(
            level.has_kernels() && level.available(),
            "quantizing at {} on a CPU without it",
            level.name()
        );
        for (values, block) in x.chunks_exact(QK_K).zip(blocks) {
            // SAFETY: the CPU has the level's features (checked above); `values` holds 256
            // floats.
            unsafe {
                match level {
                    CpuKernels::Avx512Vnni => quantize_block(values, block),
                    _ => quantize_block_avx2(values, block),
                }
            }
        }
    }
}

/// How a kernel's input rows are quantized: blocks of [`Input::VALUES`] values.
pub trait Input: Copy + Send + Sync {
    const VALUES: usize;
    const ZERO: Self;
    /// Quantizes `x` (a multiple of `VALUES` values) into `blocks` with `level`'s
    /// instructions (available, with kernels).
    fn quantize(level: CpuKernels, x: &[f32], blocks: &mut [Self]);
}

impl Input for RawQ8K {
    const VALUES: usize = QK_K;
    const ZERO: Self = RawQ8K::ZERO;
    fn quantize(level: CpuKernels, x: &[f32], blocks: &mut [Self]) {
        RawQ8K::quantize(level, x, blocks)
    }
}

/// One input block of 32 values (ggml's `block_q8_0`), for kernels over 32-value weight
/// blocks: `d` (f16) times each of `qs`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct RawQ8_0 {
    pub d: u16,
    pub qs: [i8; 32],
}

impl Input for RawQ8_0 {
    const VALUES: usize = 32;
    const ZERO: Self = Self { d: 0, qs: [0; 32] };

    /// As ggml's `quantize_row_q8_0` on x86 (its AVX path): `d = max |x| / 127`, values
    /// times `127 / max |x|` rounded to nearest, ties to even.
    fn quantize(_: CpuKernels, x: &[f32], blocks: &mut [Self]) {
        assert_eq!(x.len(), blocks.len() * 32, "one block per 32 values");
        for (values, block) in x.chunks_exact(32).zip(blocks) {
            let amax = values.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            let inverse = if amax == 0.0 { 0.0 } else { 127.0 / amax };
            for (q, v) in block.qs.iter_mut().zip(values) {
                *q = (v * inverse).round_ties_even() as i8;
            }
            block.d = half::f16::from_f32(d).to_bits();
        }
    }
}

/// # Safety
/// The CPU must have AVX-512 F/BW; `values` holds at least 256 floats.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn quantize_block(values: &[f32], block: &mut RawQ8K) {
    // SAFETY: the caller guarantees AVX-512 F/BW and the sizes above.
    unsafe {
        use std::arch::x86_64::*;
        let x = values.as_ptr();
        let mut amax = _mm512_setzero_ps();
        for group in 0..QK_K / 16 {
            amax = _mm512_max_ps(amax, _mm512_abs_ps(_mm512_loadu_ps(x.add(16 * group))));
        }
        let amax = _mm512_reduce_max_ps(amax);
        if amax == 0.0 {
            *block = RawQ8K::ZERO;
            return;
        }
        let iscale = 127.0 / amax;
        let scale = _mm512_set1_ps(iscale);
        for group in 0..QK_K / 16 {
            let v = _mm512_mul_ps(_mm512_loadu_ps(x.add(16 * group)), scale);
            let q = _mm512_cvtps_epi32(v);
            _mm_storeu_si128(
                block.qs.as_mut_ptr().add(16 * group) as *mut _,
                _mm512_cvtepi32_epi8(q),
            );
            block.bsums[group] = _mm512_reduce_add_epi32(q) as i16;
        }
        block.d = 1.0 / iscale;
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn quantize_block(_: &[f32], _: &mut RawQ8K) {
    unreachable!("CpuKernels has no x86 level on this architecture")
}

/// As the AVX-512 `quantize_block`, on 256-bit registers.
///
/// # Safety
/// The CPU must have AVX2; `values` holds at least 256 floats.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn quantize_block_avx2(values: &[f32], block: &mut RawQ8K) {
    // SAFETY: the caller guarantees AVX2 and the sizes above.
    unsafe {
        use std::arch::x86_64::*;
        let x = values.as_ptr();
        let sign = _mm256_set1_ps(-0.0);
        let mut amax = _mm256_setzero_ps();
        for group in 0..QK_K / 8 {
            amax = _mm256_max_ps(
                amax,
                _mm256_andnot_ps(sign, _mm256_loadu_ps(x.add(8 * group))),
            );
        }
        let halves = _mm_max_ps(
            _mm256_castps256_ps128(amax),
            _mm256_extractf128_ps::<1>(amax),
        );
        let pairs = _mm_max_ps(halves, _mm_movehl_ps(halves, halves));
        let amax = _mm_cvtss_f32(_mm_max_ss(pairs, _mm_shuffle_ps::<1>(pairs, pairs)));
        if amax == 0.0 {
            *block = RawQ8K::ZERO;
            return;
        }
        let iscale = 127.0 / amax;
        let scale = _mm256_set1_ps(iscale);
        // Packing 32-bit lanes to bytes interleaves the 128-bit lanes: this puts them back.
        let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        for group in 0..QK_K / 32 {
            let q: [__m256i; 4] = std::array::from_fn(|j| {
                _mm256_cvtps_epi32(_mm256_mul_ps(
                    _mm256_loadu_ps(x.add(32 * group + 8 * j)),
                    scale,
                ))
            });
            for half in 0..2 {
                let sum = _mm256_add_epi32(q[2 * half], q[2 * half + 1]);
                let sum = _mm_add_epi32(
                    _mm256_castsi256_si128(sum),
                    _mm256_extracti128_si256::<1>(sum),
                );
                let sum = _mm_hadd_epi32(sum, sum);
                block.bsums[2 * group + half] = _mm_cvtsi128_si32(_mm_hadd_epi32(sum, sum)) as i16;
            }
            let words = [
                _mm256_packs_epi32(q[0], q[1]),
                _mm256_packs_epi32(q[2], q[3]),
            ];
            let bytes = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(words[0], words[1]), order);
            _mm256_storeu_si256(block.qs.as_mut_ptr().add(32 * group) as *mut _, bytes);
        }
        block.d = 1.0 / iscale;
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn quantize_block_avx2(_: &[f32], _: &mut RawQ8K) {
    unreachable!("CpuKernels has no x86 level on this architecture")
}

/// Input rows a kernel call takes at once: each weight it unpacks serves this many rows.
pub const ROW_TILE: usize = 4;

/// One of this crate's kernels: the [`Kernel::ROWS`] outputs of one group of weight rows
/// for each of `M` quantized input rows (1 to [`ROW_TILE`]), every weight unpacked once for
/// all `M`.
///
/// # Safety
/// [`matmul`], a safe function, hands `dot` pointers into its output for `ROWS` floats each:
/// an implementation must write no more than that through them.
pub unsafe trait Kernel {
    /// Weight rows per group.
    const ROWS: usize;
    /// One group's blocks over `Input::VALUES` columns.
    type Block: Sync;
    /// How input rows are quantized.
    type Input: Input;

    /// With `level`'s instructions.
    ///
    /// # Safety
    /// `level` has kernels and the CPU has it; every input has `blocks.len()` blocks; every
    /// output points at `ROWS` writable floats.
    unsafe fn dot<const M: usize>(
        level: CpuKernels,
        blocks: &[Self::Block],
        inputs: [&[Self::Input]; M],
        outputs: [*mut f32; M],
    );
}

/// `dst = x · Wᵀ` for `m` input rows and an `(n, k)` matrix of `n / K::ROWS` groups of rows,
/// whose blocks `group_blocks(group)` gives (`k / K::Input::VALUES` of them): quantizes each
/// row of `x` once, then runs `K` on each group for up to [`ROW_TILE`] rows at a time, on
/// candle's CPU thread pool. A group's weights stay in cache while every row goes by. `level`
/// picks the instructions; a level without kernels, or one the CPU lacks, is an error.
pub fn matmul<'a, K: Kernel>(
    level: CpuKernels,
    m: usize,
    (n, k): (usize, usize),
    x: &[f32],
    dst: &mut [f32],
    group_blocks: impl Fn(usize) -> &'a [K::Block] + Sync,
) -> candle_core::Result<()>
where
    K::Block: 'a,
{
    let group_rows = K::ROWS;
    if x.len() != m * k
        || dst.len() != m * n
        || group_rows == 0
        || !n.is_multiple_of(group_rows)
        || !k.is_multiple_of(K::Input::VALUES)
    {
        candle_core::bail!(
            "row-tiled product: ({}) x ({n}, {k}) in groups of {group_rows} into ({}) for {m} rows",
            x.len(),
            dst.len()
        );
    }
    if !level.has_kernels() || !level.available() {
        candle_core::bail!(
            "row-tiled product: no kernels at level {} on this CPU",
            level.name()
        );
    }
    let per_row = k / K::Input::VALUES;
    let mut quantized = vec![K::Input::ZERO; m * per_row];
    if m == 1 {
        K::Input::quantize(level, x, &mut quantized);
    } else {
        // A prompt chunk's rows, quantized on every thread (one thread: ~10% of a prompt).
        let quantized_addr = quantized.as_mut_ptr() as usize;
        candle_core::utils::barrier_pool().execute_chunked(m, |rows| {
            for row in rows {
                // SAFETY: each row owns its `per_row` blocks of `quantized` (m * per_row).
                let blocks = unsafe {
                    std::slice::from_raw_parts_mut(
                        (quantized_addr as *mut K::Input).add(row * per_row),
                        per_row,
                    )
                };
                K::Input::quantize(level, &x[row * k..(row + 1) * k], blocks);
            }
        });
    }
    let rows: Vec<&[K::Input]> = quantized.chunks(per_row).collect();
    let dst_addr = dst.as_mut_ptr() as usize;
    candle_core::utils::barrier_pool().execute_chunked(n / group_rows, |groups| {
        for group in groups {
            for (tile, inputs) in rows.chunks(ROW_TILE).enumerate() {
                let first = tile * ROW_TILE;
                // Each (row, group) pair owns `group_rows` outputs inside `dst` (m rows of n).
                let outputs: [*mut f32; ROW_TILE] = std::array::from_fn(|i| {
                    (dst_addr as *mut f32).wrapping_add((first + i) * n + group * group_rows)
                });
                let blocks = group_blocks(group);
                assert_eq!(blocks.len(), per_row, "a group's blocks span the row");
                let outputs = &outputs[..inputs.len()];
                // SAFETY: the CPU was checked above; every input row has `per_row` blocks, as
                // the group has; each (row, group) output points at `group_rows` floats of
                // `dst` that no other call writes.
                unsafe {
                    match inputs.len() {
                        1 => run::<K, 1>(level, blocks, inputs, outputs),
                        2 => run::<K, 2>(level, blocks, inputs, outputs),
                        3 => run::<K, 3>(level, blocks, inputs, outputs),
                        4 => run::<K, 4>(level, blocks, inputs, outputs),
                        _ => unreachable!("tiles of 1 to ROW_TILE rows"),
                    }
                }
            }
        }
    });
    Ok(())
}

/// [`matmul`] for a kernel over one weight row at a time, whose blocks (`k /
/// K::Input::VALUES` per row) are `blocks` in row order.
pub fn row_matmul<K: Kernel>(
    level: CpuKernels,
    blocks: &[K::Block],
    (m, k, n): (usize, usize, usize),
    x: &[f32],
    dst: &mut [f32],
) -> candle_core::Result<()> {
    let per_row = k / K::Input::VALUES;
    if K::ROWS != 1 || blocks.len() != n * per_row {
        candle_core::bail!(
            "row kernel: {} blocks for a ({n}, {k}) matrix",
            blocks.len()
        );
    }
    matmul::<K>(level, m, (n, k), x, dst, |row| {
        &blocks[row * per_row..(row + 1) * per_row]
    })
}

/// `K` for `M` rows.
///
/// # Safety
/// As [`Kernel::dot`]; `inputs` and `outputs` have `M` entries.
unsafe fn run<K: Kernel, const M: usize>(
    level: CpuKernels,
    blocks: &[K::Block],
    inputs: &[&[K::Input]],
    outputs: &[*mut f32],
) {
    let inputs = inputs.try_into().expect("M inputs");
    let outputs = outputs.try_into().expect("M outputs");
    // SAFETY: this function's contract is `K::dot`'s.
    unsafe { K::dot::<M>(level, blocks, inputs, outputs) }
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

/// The sum of `sums`' 8 lanes.
///
/// # Safety
/// The CPU must have AVX.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
pub unsafe fn horizontal_sum(sums: std::arch::x86_64::__m256) -> f32 {
    use std::arch::x86_64::*;
    let halves = _mm_add_ps(
        _mm256_castps256_ps128(sums),
        _mm256_extractf128_ps::<1>(sums),
    );
    let pairs = _mm_add_ps(halves, _mm_movehl_ps(halves, halves));
    _mm_cvtss_f32(_mm_add_ss(pairs, _mm_shuffle_ps::<1>(pairs, pairs)))
}

#[cfg(test)]
mod tests {
    use candle_core::quantized::k_quants::{BlockQ8K, GgmlType};

    use super::super::cpu_kernels::for_each_testable_level;
    use super::super::plain_data::cast_slice;
    use super::*;
    use crate::backend::candle::test_gguf::noise;

    /// Block `b`'s values as its `d · q`.
    fn dequantized(blocks: &[RawQ8K]) -> Vec<f32> {
        blocks
            .iter()
            .flat_map(|b| b.qs.iter().map(move |&q| b.d * q as f32))
            .collect()
    }

    #[test]
    fn quantizes_each_block_by_its_largest_magnitude_rounding_ties_to_even() {
        for_each_testable_level(quantizes_by_largest_magnitude_at);
    }

    fn quantizes_by_largest_magnitude_at(level: CpuKernels) {
        let mut x = noise(7, 4 * QK_K, 3.0);
        x[QK_K..2 * QK_K].fill(0.0); // an all-zero block
        x[2 * QK_K + 5] = -40.0; // a block whose largest magnitude is negative
        x[3 * QK_K] = 127.0; // with `d = 1`, exact ties:
        x[3 * QK_K + 1] = 2.5; // rounds to 2
        x[3 * QK_K + 2] = -3.5; // rounds to -4
        let mut ours = vec![RawQ8K::ZERO; 4];

        RawQ8K::quantize(level, &x, &mut ours);

        for (b, (values, block)) in x.chunks(QK_K).zip(&ours).enumerate() {
            let amax = values.iter().fold(0f32, |m, v| m.max(v.abs()));
            let iscale = if amax == 0.0 { 0.0 } else { 127.0 / amax };
            let expected: Vec<i8> = values
                .iter()
                .map(|v| (v * iscale).round_ties_even() as i8)
                .collect();
            assert_eq!(
                block.qs.as_slice(),
                expected.as_slice(),
                "{level:?} block {b}: values"
            );
            let d = if amax == 0.0 { 0.0 } else { 1.0 / iscale };
            assert_eq!(block.d, d, "block {b}: scale");
            for (g, group) in expected.chunks(16).enumerate() {
                let sum: i32 = group.iter().map(|&q| q as i32).sum();
                assert_eq!(block.bsums[g] as i32, sum, "block {b}: sum of group {g}");
            }
        }
        assert_eq!(&ours[3].qs[..3], &[127, 2, -4]);
    }

    #[test]
    fn dequantizes_as_candle_does() {
        for_each_testable_level(dequantizes_as_candle_at);
    }

    fn dequantizes_as_candle_at(level: CpuKernels) {
        let x = noise(11, 2 * QK_K, 3.0);
        let mut ours = vec![RawQ8K::ZERO; 2];
        let mut candle = vec![BlockQ8K::zeros(); 2];

        RawQ8K::quantize(level, &x, &mut ours);
        BlockQ8K::from_float(&x, &mut candle);

        let candle: &[RawQ8K] = cast_slice(&candle);
        // ggml scales by the signed largest value, so candle's values may be negated; the
        // dequantized values agree (random values hit no tie).
        for (i, (o, c)) in dequantized(&ours)
            .iter()
            .zip(dequantized(candle))
            .enumerate()
        {
            assert!(
                (o - c).abs() <= 1e-6 * c.abs().max(1.0),
                "{level:?} value {i}: {o} vs {c}"
            );
        }
    }

    /// A quantized block's scale bits, values and group sums.
    type Bits = (u32, Vec<i8>, Vec<i16>);

    #[test]
    fn every_level_quantizes_to_the_same_bits() {
        let x = noise(17, 8 * QK_K, 5.0);
        let quantized: Vec<Vec<Bits>> = CpuKernels::testable()
            .map(|level| {
                let mut blocks = vec![RawQ8K::ZERO; 8];
                RawQ8K::quantize(level, &x, &mut blocks);
                blocks
                    .iter()
                    .map(|b| (b.d.to_bits(), b.qs.to_vec(), b.bsums.to_vec()))
                    .collect()
            })
            .collect();
        for pair in quantized.windows(2) {
            assert!(pair[0] == pair[1], "levels disagree");
        }
    }

    #[test]
    fn q8_0_inputs_dequantize_as_candle_does() {
        let x = noise(13, 4 * 32, 3.0);
        let mut ours = vec![RawQ8_0::ZERO; 4];
        let mut candle = vec![candle_core::quantized::k_quants::BlockQ8_0::zeros(); 4];

        RawQ8_0::quantize(CpuKernels::Generic, &x, &mut ours);
        candle_core::quantized::k_quants::BlockQ8_0::from_float(&x, &mut candle);

        let mut expected = vec![0f32; 4 * 32];
        candle_core::quantized::k_quants::BlockQ8_0::to_float(&candle, &mut expected);
        let got: Vec<f32> = ours
            .iter()
            .flat_map(|b| {
                let d = half::f16::from_bits(b.d).to_f32();
                b.qs.iter().map(move |&q| d * q as f32)
            })
            .collect();
        for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
            assert!(
                (g - e).abs() <= 1e-6 * e.abs().max(1.0),
                "value {i}: {g} vs {e}"
            );
        }
        // Ties go to even: 63.5 / 127 of the largest value.
        let mut tie = [0f32; 32];
        tie[0] = 127.0;
        tie[1] = 63.5;
        let mut block = [RawQ8_0::ZERO];
        RawQ8_0::quantize(CpuKernels::Generic, &tie, &mut block);
        assert_eq!(&block[0].qs[..2], &[127, 64]);
    }
}
