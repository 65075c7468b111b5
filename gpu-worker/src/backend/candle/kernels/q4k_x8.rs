//! Q4_K matrices interleaved eight rows at a time, for decode and prompt kernels with AVX-512
//! VNNI, AVX-VNNI and AVX2 (why: see `x8.rs`).
//!
//! Layout of one [`BlockQ4Kx8`] (8 rows × 256 columns): `qs[pair][chunk][row][8]`, where byte
//! `b` of chunk `c` in pair `p` holds value `8c + b` of sub-block `2p` (low nibble) and of
//! sub-block `2p + 1` (high nibble), exactly the bytes `qs[32p + 8c + b]` of the row's Q4_K
//! block; `scales[sub][row]` and `mins[sub][row]` are the 6-bit values; `d`, `dmin` are f16.
//! The transformation is lossless: [`Q4Kx8::to_blocks`] gives back the GGUF blocks.

use candle_core::quantized::k_quants::{BlockQ4K, GgmlType, QK_K};

use super::cpu_kernels::CpuKernels;
use super::plain_data::cast_slice;
use super::x8::{self, RawQ8K};

/// One Q4_K block as stored in GGUF (candle's `BlockQ4K` keeps its fields private).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct RawQ4K {
    d: u16,
    dmin: u16,
    scales: [u8; 12],
    qs: [u8; QK_K / 2],
}

impl RawQ4K {
    /// candle's blocks, seen as the GGUF blocks they are.
    pub fn from_blocks(blocks: &[BlockQ4K]) -> &[Self] {
        cast_slice(blocks)
    }

    /// The other way: GGUF blocks as candle's.
    pub fn as_blocks(raw: &[Self]) -> &[BlockQ4K] {
        cast_slice(raw)
    }
}

/// Eight rows' blocks over the same 256 columns.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct BlockQ4Kx8 {
    qs: [u8; 8 * QK_K / 2],
    scales: [u8; 64],
    mins: [u8; 64],
    d: [u16; 8],
    dmin: [u16; 8],
}

/// An `(n, k)` Q4_K matrix, `n` a multiple of 8, in [`BlockQ4Kx8`] groups: for each group of 8
/// rows, its `k / 256` blocks in column order.
pub struct Q4Kx8 {
    n: usize,
    k: usize,
    groups: Vec<BlockQ4Kx8>,
}

/// Sub-block `j`'s 6-bit scale and minimum (ggml's `get_scale_min_k4`).
fn scale_min(j: usize, q: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Packs sub-block scales and minimums back into ggml's 12 bytes.
fn pack_scale_min(scales: [u8; 8], mins: [u8; 8]) -> [u8; 12] {
    let mut q = [0u8; 12];
    for j in 0..4 {
        q[j] = (scales[j] & 63) | ((scales[j + 4] >> 4) << 6);
        q[j + 4] = (mins[j] & 63) | ((mins[j + 4] >> 4) << 6);
        q[j + 8] = (scales[j + 4] & 0xF) | ((mins[j + 4] & 0xF) << 4);
    }
    q
}

impl Q4Kx8 {
    /// Interleaves `rows` (`n` rows of `k / 256` blocks each); `None` unless `n` is a multiple
    /// of 8 and `k` of 256.
    pub fn new(rows: &[RawQ4K], n: usize, k: usize) -> Option<Self> {
        if !n.is_multiple_of(8) || !k.is_multiple_of(QK_K) || rows.len() != n * k / QK_K {
            return None;
        }
        let per_row = k / QK_K;
        let mut groups = Vec::with_capacity(n / 8 * per_row);
        crate::backend::candle::kernels::huge_pages::advise(
            groups.as_mut_ptr() as *mut u8,
            groups.capacity() * std::mem::size_of::<BlockQ4Kx8>(),
        );
        for group in 0..n / 8 {
            for column in 0..per_row {
                let block = |r: usize| &rows[(group * 8 + r) * per_row + column];
                let mut out = BlockQ4Kx8 {
                    qs: [0; 8 * QK_K / 2],
                    scales: [0; 64],
                    mins: [0; 64],
                    d: [0; 8],
                    dmin: [0; 8],
                };
                for r in 0..8 {
                    let b = block(r);
                    out.d[r] = b.d;
                    out.dmin[r] = b.dmin;
                    for s in 0..8 {
                        let (scale, min) = scale_min(s, &b.scales);
                        out.scales[s * 8 + r] = scale;
                        out.mins[s * 8 + r] = min;
                    }
                    for pair in 0..4 {
                        for chunk in 0..4 {
                            let dst = ((pair * 4 + chunk) * 8 + r) * 8;
                            let src = 32 * pair + 8 * chunk;
                            out.qs[dst..dst + 8].copy_from_slice(&b.qs[src..src + 8]);
                        }
                    }
                }
                groups.push(out);
            }
        }
        Some(Self { n, k, groups })
    }

    /// Row `row`'s GGUF blocks.
    pub fn row_blocks(&self, row: usize) -> Vec<RawQ4K> {
        let per_row = self.k / QK_K;
        let (group, r) = (row / 8, row % 8);
        (0..per_row)
            .map(|column| {
                let g = &self.groups[group * per_row + column];
                let mut qs = [0u8; QK_K / 2];
                for pair in 0..4 {
                    for chunk in 0..4 {
                        let src = ((pair * 4 + chunk) * 8 + r) * 8;
                        let dst = 32 * pair + 8 * chunk;
                        qs[dst..dst + 8].copy_from_slice(&g.qs[src..src + 8]);
                    }
                }
                let scales = std::array::from_fn(|s| g.scales[s * 8 + r]);
                let mins = std::array::from_fn(|s| g.mins[s * 8 + r]);
                RawQ4K {
                    d: g.d[r],
                    dmin: g.dmin[r],
                    scales: pack_scale_min(scales, mins),
                    qs,
                }
            })
            .collect()
    }

    /// `dst[r][i] = x[r] · row i` for `m` input rows of `k` (row-major `x` and `dst`), with
    /// `level`'s kernel.
    pub fn matmul(
        &self,
        level: CpuKernels,
        m: usize,
        x: &[f32],
        dst: &mut [f32],
    ) -> candle_core::Result<()> {
        let per_row = self.k / QK_K;
        x8::matmul::<Q4KKernel>(level, m, (self.n, self.k), x, dst, |group| {
            &self.groups[group * per_row..(group + 1) * per_row]
        })
    }

    /// Every row's GGUF blocks, in row order.
    pub fn to_blocks(&self) -> Vec<BlockQ4K> {
        let raw: Vec<RawQ4K> = (0..self.n).flat_map(|row| self.row_blocks(row)).collect();
        RawQ4K::as_blocks(&raw).to_vec()
    }

    /// Row `row` dequantized into `dst`.
    pub fn row_to_f32(&self, row: usize, dst: &mut [f32]) {
        BlockQ4K::to_float(RawQ4K::as_blocks(&self.row_blocks(row)), dst);
    }

    /// Appends `other`'s rows (same row length).
    pub fn append(&mut self, other: Self) -> candle_core::Result<()> {
        if other.k != self.k {
            candle_core::bail!("cannot stack rows of {} and {} columns", self.k, other.k);
        }
        self.groups.extend_from_slice(&other.groups);
        self.n += other.n;
        Ok(())
    }
}

/// The kernel over [`BlockQ4Kx8`] groups.
struct Q4KKernel;

// SAFETY: `dot` writes one float per output for each of the group's `ROWS` rows.
unsafe impl x8::Kernel for Q4KKernel {
    const ROWS: usize = 8;
    type Block = BlockQ4Kx8;
    type Input = RawQ8K;

    unsafe fn dot<const M: usize>(
        level: CpuKernels,
        blocks: &[BlockQ4Kx8],
        inputs: [&[RawQ8K]; M],
        outputs: [*mut f32; M],
    ) {
        // SAFETY: the caller upholds `x8::Kernel::dot`'s contract, which is this one's, with
        // the CPU features of `level`.
        unsafe {
            match level {
                CpuKernels::Avx512Vnni => kernel::dot_8_rows::<M>(blocks, inputs, outputs),
                CpuKernels::AvxVnni => avxvnni::dot_8_rows::<M>(blocks, inputs, outputs),
                _ => avx2::dot_8_rows::<M>(blocks, inputs, outputs),
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod kernel {
    use super::{BlockQ4Kx8, RawQ8K};
    use crate::backend::candle::kernels::x8::{pair_sums, SPREAD};
    use std::arch::x86_64::*;

    /// The 8 dot products of one group's rows with each of `M` quantized input rows: every
    /// weight is unpacked once for all `M`.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F/BW/VL/VNNI, F16C and FMA; every input has `blocks.len()` blocks;
    /// every output points at 8 writable floats.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")]
    pub unsafe fn dot_8_rows<const M: usize>(
        blocks: &[BlockQ4Kx8],
        inputs: [&[RawQ8K]; M],
        outputs: [*mut f32; M],
    ) {
        // SAFETY: the caller guarantees AVX-512 F/BW/VL/VNNI, F16C, FMA and the sizes above.
        unsafe {
            let low = _mm512_set1_epi8(0x0F);
            // Lane 2r and 2r + 1 hold row r: spread 8 per-row values over 16 lanes.
            let spread = _mm512_loadu_si512(SPREAD.as_ptr() as *const _);
            let mut sums = [_mm512_setzero_ps(); M];
            let mut min_sums = [_mm256_setzero_ps(); M];
            for (b, block) in blocks.iter().enumerate() {
                let ys: [&RawQ8K; M] = std::array::from_fn(|i| &inputs[i][b]);
                let qs = block.qs.as_ptr();
                let mut dots = [_mm512_setzero_si512(); M];
                for pair in 0..4 {
                    let mut even = [_mm512_setzero_si512(); M];
                    let mut odd = [_mm512_setzero_si512(); M];
                    for chunk in 0..4 {
                        let bits = _mm512_loadu_si512(qs.add((pair * 4 + chunk) * 64) as *const _);
                        let lo = _mm512_and_si512(bits, low);
                        let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(bits), low);
                        for i in 0..M {
                            let yq = ys[i].qs.as_ptr();
                            let y_lo =
                                (yq.add(64 * pair + 8 * chunk) as *const i64).read_unaligned();
                            let y_hi =
                                (yq.add(64 * pair + 32 + 8 * chunk) as *const i64).read_unaligned();
                            even[i] = _mm512_dpbusd_epi32(even[i], lo, _mm512_set1_epi64(y_lo));
                            odd[i] = _mm512_dpbusd_epi32(odd[i], hi, _mm512_set1_epi64(y_hi));
                        }
                    }
                    let scale = |sub: usize| {
                        let bytes = _mm_loadl_epi64(block.scales.as_ptr().add(sub * 8) as *const _);
                        _mm512_permutexvar_epi32(spread, _mm512_cvtepu8_epi32(bytes))
                    };
                    let (even_scale, odd_scale) = (scale(2 * pair), scale(2 * pair + 1));
                    for i in 0..M {
                        let scaled = _mm512_add_epi32(
                            _mm512_mullo_epi32(even[i], even_scale),
                            _mm512_mullo_epi32(odd[i], odd_scale),
                        );
                        dots[i] = _mm512_add_epi32(dots[i], scaled);
                    }
                }
                let d = _mm256_cvtph_ps(_mm_loadu_si128(block.d.as_ptr() as *const _));
                let d = _mm512_permutexvar_ps(spread, _mm512_castps256_ps512(d));
                let dmin = _mm256_cvtph_ps(_mm_loadu_si128(block.dmin.as_ptr() as *const _));
                let mins: [__m256i; 8] = std::array::from_fn(|sub| {
                    _mm256_cvtepu8_epi32(_mm_loadl_epi64(
                        block.mins.as_ptr().add(sub * 8) as *const _
                    ))
                });
                for i in 0..M {
                    let y = ys[i];
                    let yd = _mm512_set1_ps(y.d);
                    sums[i] =
                        _mm512_fmadd_ps(_mm512_mul_ps(d, yd), _mm512_cvtepi32_ps(dots[i]), sums[i]);
                    // dmin_r * sum over sub-blocks of min[s][r] * (sum of sub-block s's inputs).
                    let mut min_dot = _mm256_setzero_si256();
                    for (sub, m) in mins.iter().enumerate() {
                        let ysum = i32::from(y.bsums[2 * sub]) + i32::from(y.bsums[2 * sub + 1]);
                        min_dot = _mm256_add_epi32(
                            min_dot,
                            _mm256_mullo_epi32(*m, _mm256_set1_epi32(ysum)),
                        );
                    }
                    min_sums[i] = _mm256_fmadd_ps(
                        _mm256_mul_ps(dmin, _mm256_set1_ps(y.d)),
                        _mm256_cvtepi32_ps(min_dot),
                        min_sums[i],
                    );
                }
            }
            for i in 0..M {
                _mm256_storeu_ps(outputs[i], _mm256_sub_ps(pair_sums(sums[i]), min_sums[i]));
            }
        }
    }
}

/// The 256-bit kernels, for AVX2 and AVX-VNNI: as the AVX-512 kernel, each register holding
/// four rows' eight bytes of a chunk, rows `4h..4h + 4` in half `h`. The module that invokes
/// this gives the level's `$features` and three operations:
/// - `chunk(acc, weights, inputs)`: adds the products of unsigned weight bytes and signed input
///   bytes into the accumulator, per row;
/// - `sub_scale(block, sub, h)`: sub-block `sub`'s scales of half `h`'s rows, laid out to
///   multiply the accumulator;
/// - `scaled(even, even_scale, odd, odd_scale)`: a pair of sub-blocks' accumulators times their
///   scales, summed into 32-bit lanes, two a row.
///
/// An accumulator starts at zero for each pair of sub-blocks.
#[cfg(target_arch = "x86_64")]
macro_rules! dot_8_rows_256 {
    ($features:literal) => {
        /// The 8 dot products of one group's rows with each of `M` quantized input rows.
        ///
        /// # Safety
        /// The CPU must have the level's features; every input has `blocks.len()` blocks;
        /// every output points at 8 writable floats.
        #[target_feature(enable = $features)]
        pub unsafe fn dot_8_rows<const M: usize>(
            blocks: &[BlockQ4Kx8],
            inputs: [&[RawQ8K]; M],
            outputs: [*mut f32; M],
        ) {
            // SAFETY: the caller guarantees the level's features and the sizes above.
            unsafe {
                let low = _mm256_set1_epi8(0x0F);
                let mut sums = [_mm256_setzero_ps(); M];
                for (b, block) in blocks.iter().enumerate() {
                    let ys: [&RawQ8K; M] = std::array::from_fn(|i| &inputs[i][b]);
                    let qs = block.qs.as_ptr();
                    // Per input, per half of the rows: the integer dot products, two lanes a row.
                    let mut dots = [[_mm256_setzero_si256(); 2]; M];
                    for pair in 0..4 {
                        // Per input, per half of the rows: even and odd sub-blocks' sums.
                        let mut even = [[_mm256_setzero_si256(); 2]; M];
                        let mut odd = [[_mm256_setzero_si256(); 2]; M];
                        for chunk_index in 0..4 {
                            let bits: [__m256i; 2] = std::array::from_fn(|h| {
                                _mm256_loadu_si256(
                                    qs.add((pair * 4 + chunk_index) * 64 + 32 * h) as *const _
                                )
                            });
                            let lo = bits.map(|b| _mm256_and_si256(b, low));
                            let hi = bits.map(|b| _mm256_and_si256(_mm256_srli_epi16::<4>(b), low));
                            for i in 0..M {
                                // Each input's 8 bytes, broadcast once for both halves.
                                let yq = ys[i].qs.as_ptr().add(64 * pair + 8 * chunk_index);
                                let y_lo = _mm256_set1_epi64x((yq as *const i64).read_unaligned());
                                let y_hi =
                                    _mm256_set1_epi64x((yq.add(32) as *const i64).read_unaligned());
                                for h in 0..2 {
                                    even[i][h] = chunk(even[i][h], lo[h], y_lo);
                                    odd[i][h] = chunk(odd[i][h], hi[h], y_hi);
                                }
                            }
                        }
                        for h in 0..2 {
                            let even_scale = sub_scale(block, 2 * pair, h);
                            let odd_scale = sub_scale(block, 2 * pair + 1, h);
                            for i in 0..M {
                                let pair_dots =
                                    scaled(even[i][h], even_scale, odd[i][h], odd_scale);
                                dots[i][h] = _mm256_add_epi32(dots[i][h], pair_dots);
                            }
                        }
                    }
                    let scales = BlockScales::new(block);
                    for i in 0..M {
                        sums[i] = scales.accumulate(ys[i], dots[i], sums[i]);
                    }
                }
                for i in 0..M {
                    _mm256_storeu_ps(outputs[i], sums[i]);
                }
            }
        }
    };
}

/// A block's per-row float scales and sub-block minimums, read once for every input row, and
/// how the 256-bit kernels finish a block with them.
#[cfg(target_arch = "x86_64")]
struct BlockScales {
    d: std::arch::x86_64::__m256,
    dmin: std::arch::x86_64::__m256,
    mins: [std::arch::x86_64::__m256i; 8],
}

#[cfg(target_arch = "x86_64")]
impl BlockScales {
    /// # Safety
    /// The CPU must have AVX2 and F16C.
    #[target_feature(enable = "avx2,f16c")]
    #[inline]
    unsafe fn new(block: &BlockQ4Kx8) -> Self {
        use std::arch::x86_64::*;
        // SAFETY: the caller guarantees AVX2 and F16C; the loads read the block's fields.
        unsafe {
            Self {
                d: _mm256_cvtph_ps(_mm_loadu_si128(block.d.as_ptr() as *const _)),
                dmin: _mm256_cvtph_ps(_mm_loadu_si128(block.dmin.as_ptr() as *const _)),
                mins: std::array::from_fn(|sub| {
                    _mm256_cvtepu8_epi32(_mm_loadl_epi64(
                        block.mins.as_ptr().add(sub * 8) as *const _
                    ))
                }),
            }
        }
    }

    /// `sum` plus the block's contribution for input `y`, from its integer dot products:
    /// `halves[h]` holds rows `4h..4h + 4`, two lanes a row.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn accumulate(
        &self,
        y: &RawQ8K,
        halves: [std::arch::x86_64::__m256i; 2],
        sum: std::arch::x86_64::__m256,
    ) -> std::arch::x86_64::__m256 {
        use std::arch::x86_64::*;
        // hadd of the two halves leaves rows in the order 0 1 4 5 2 3 6 7.
        let unshuffle = _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7);
        let dot = _mm256_permutevar8x32_epi32(_mm256_hadd_epi32(halves[0], halves[1]), unshuffle);
        let mut min_dot = _mm256_setzero_si256();
        for (sub, m) in self.mins.iter().enumerate() {
            let ysum = i32::from(y.bsums[2 * sub]) + i32::from(y.bsums[2 * sub + 1]);
            min_dot = _mm256_add_epi32(min_dot, _mm256_mullo_epi32(*m, _mm256_set1_epi32(ysum)));
        }
        // d_r · dot_r − dmin_r · min_dot_r, times the input's scale.
        let row = _mm256_fmsub_ps(
            self.d,
            _mm256_cvtepi32_ps(dot),
            _mm256_mul_ps(self.dmin, _mm256_cvtepi32_ps(min_dot)),
        );
        _mm256_fmadd_ps(_mm256_set1_ps(y.d), row, sum)
    }
}

/// AVX2: products with `vpmaddubsw` into 16-bit lanes (no sum overflows them: 4 chunks of
/// 2 · 15 · 127), scaled with `vpmaddwd`.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{BlockQ4Kx8, BlockScales, RawQ8K};
    use std::arch::x86_64::*;

    /// `pshufb` patterns that widen byte `r` of a register (its 8 low bytes repeated in both
    /// 128-bit lanes) into the four 16-bit lanes of row `r` of half `h`: rows `4h..4h + 4`,
    /// two per 128-bit lane.
    const WIDEN: [[i8; 32]; 2] = {
        let mut patterns = [[-1i8; 32]; 2];
        let mut h = 0;
        while h < 2 {
            let mut lane = 0;
            while lane < 16 {
                // 16-bit lane `lane` belongs to row `4h + lane / 4`; its low byte takes it.
                patterns[h][2 * lane] = (4 * h + lane / 4) as i8;
                lane += 1;
            }
            h += 1;
        }
        patterns
    };

    /// # Safety
    /// The CPU must have AVX2.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn chunk(acc: __m256i, weights: __m256i, inputs: __m256i) -> __m256i {
        _mm256_add_epi16(acc, _mm256_maddubs_epi16(weights, inputs))
    }

    /// # Safety
    /// The CPU must have AVX2.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn sub_scale(block: &BlockQ4Kx8, sub: usize, h: usize) -> __m256i {
        // SAFETY: the caller guarantees AVX2; the loads read the block's and WIDEN's bytes.
        unsafe {
            let bytes = _mm_loadl_epi64(block.scales.as_ptr().add(sub * 8) as *const _);
            let pattern = _mm256_loadu_si256(WIDEN[h].as_ptr() as *const _);
            _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(bytes), pattern)
        }
    }

    /// # Safety
    /// The CPU must have AVX2.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn scaled(
        even: __m256i,
        even_scale: __m256i,
        odd: __m256i,
        odd_scale: __m256i,
    ) -> __m256i {
        _mm256_add_epi32(
            _mm256_madd_epi16(even, even_scale),
            _mm256_madd_epi16(odd, odd_scale),
        )
    }

    dot_8_rows_256!("avx2,f16c,fma");
}

/// AVX-VNNI: `vpdpbusd` sums each four products straight into 32 bits, and the sub-block
/// scales are applied with `vpmulld` once per pair of sub-blocks, as the AVX-512 kernel does.
#[cfg(target_arch = "x86_64")]
mod avxvnni {
    use super::{BlockQ4Kx8, BlockScales, RawQ8K};
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must have AVX-VNNI.
    #[target_feature(enable = "avx2,avxvnni")]
    #[inline]
    unsafe fn chunk(acc: __m256i, weights: __m256i, inputs: __m256i) -> __m256i {
        _mm256_dpbusd_avx_epi32(acc, weights, inputs)
    }

    /// # Safety
    /// The CPU must have AVX2.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn sub_scale(block: &BlockQ4Kx8, sub: usize, h: usize) -> __m256i {
        // SAFETY: the caller guarantees AVX2; the load reads the block's bytes.
        unsafe {
            let bytes = _mm_loadl_epi64(block.scales.as_ptr().add(sub * 8) as *const _);
            // Lanes 2k and 2k + 1 of half h take row 4h + k's scale.
            let first = 4 * h as i32;
            let spread = _mm256_setr_epi32(
                first,
                first,
                first + 1,
                first + 1,
                first + 2,
                first + 2,
                first + 3,
                first + 3,
            );
            _mm256_permutevar8x32_epi32(_mm256_cvtepu8_epi32(bytes), spread)
        }
    }

    /// # Safety
    /// The CPU must have AVX2.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn scaled(
        even: __m256i,
        even_scale: __m256i,
        odd: __m256i,
        odd_scale: __m256i,
    ) -> __m256i {
        _mm256_add_epi32(
            _mm256_mullo_epi32(even, even_scale),
            _mm256_mullo_epi32(odd, odd_scale),
        )
    }

    dot_8_rows_256!("avx2,avxvnni,f16c,fma");
}

#[cfg(not(target_arch = "x86_64"))]
use kernel as avx2;
#[cfg(not(target_arch = "x86_64"))]
use kernel as avxvnni;

#[cfg(not(target_arch = "x86_64"))]
mod kernel {
    use super::{BlockQ4Kx8, RawQ8K};

    pub unsafe fn dot_8_rows<const M: usize>(
        _: &[BlockQ4Kx8],
        _: [&[RawQ8K]; M],
        _: [*mut f32; M],
    ) {
        unreachable!("CpuKernels has no x86 level on this architecture")
    }
}

#[cfg(test)]
mod tests {
    use super::super::cpu_kernels::for_each_testable_level;
    use super::*;
    use candle_core::quantized::k_quants::matmul;
    use candle_core::{Device, Tensor};

    /// A random `(n, k)` Q4_K matrix, as raw GGUF blocks and as candle blocks.
    fn random_q4k(n: usize, k: usize, seed: u64) -> (Vec<RawQ4K>, Vec<BlockQ4K>) {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let values: Vec<f32> = (0..n * k)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
            })
            .collect();
        let mut blocks = vec![BlockQ4K::zeros(); n * k / QK_K];
        BlockQ4K::from_float(&values, &mut blocks);
        let raw = RawQ4K::from_blocks(&blocks).to_vec();
        (raw, blocks)
    }

    fn input(k: usize) -> Vec<f32> {
        (0..k)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
            .collect()
    }

    #[test]
    fn interleaving_round_trips_to_the_same_blocks() {
        let (raw, blocks) = random_q4k(16, 512, 1);
        let x8 = Q4Kx8::new(&raw, 16, 512).expect("a multiple of 8 rows");
        let back = x8.to_blocks();
        assert!(back == blocks, "blocks changed by interleaving");
    }

    #[test]
    fn refuses_shapes_it_cannot_interleave() {
        let (raw, _) = random_q4k(12, 256, 2);
        assert!(Q4Kx8::new(&raw, 12, 256).is_none());
    }

    #[test]
    fn products_match_candle_block_kernels_for_any_number_of_rows() {
        for_each_testable_level(products_match_candle_at);
    }

    fn products_match_candle_at(level: CpuKernels) {
        // 1 row (decode), a partial tile, a full tile and a tile and a bit (prompts).
        for (m, n, k) in [
            (1, 8, 256),
            (1, 64, 1536),
            (3, 40, 2304),
            (4, 16, 512),
            (9, 24, 768),
        ] {
            let (raw, blocks) = random_q4k(n, k, (m * n) as u64);
            let x: Vec<f32> = (0..m)
                .flat_map(|row| input(k).into_iter().map(move |v| v * (row + 1) as f32))
                .collect();
            let mut expected = vec![0f32; m * n];
            matmul((m, k, n), &x, &blocks, &mut expected).unwrap();
            let x8 = Q4Kx8::new(&raw, n, k).unwrap();
            let mut got = vec![0f32; m * n];
            x8.matmul(level, m, &x, &mut got).unwrap();
            for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
                assert!(
                    (g - e).abs() <= 1e-3 * e.abs().max(1.0),
                    "{level:?} ({m}, {n}, {k}) output {i}: {g} vs {e}"
                );
            }
        }
        // The reference is candle's; make sure it is the product it should be.
        let (_, blocks) = random_q4k(8, 256, 9);
        let mut weights = vec![0f32; 8 * 256];
        BlockQ4K::to_float(&blocks, &mut weights);
        let w = Tensor::from_vec(weights, (8, 256), &Device::Cpu).unwrap();
        let x = Tensor::from_vec(input(256), (1, 256), &Device::Cpu).unwrap();
        let exact: Vec<f32> = x
            .matmul(&w.t().unwrap())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let mut fast = vec![0f32; 8];
        matmul((1, 256, 8), &input(256), &blocks, &mut fast).unwrap();
        for (f, e) in fast.iter().zip(&exact) {
            assert!((f - e).abs() <= 0.05 * e.abs().max(1.0), "{f} vs {e}");
        }
    }
}
