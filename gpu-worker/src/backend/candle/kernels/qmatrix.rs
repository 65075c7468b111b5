//! Quantized matrices kept once, in their GGUF block layout or (Q4_K on CPUs with AVX-512
//! VNNI) interleaved eight rows at a time, for the CPU.
//!
//! candle's `QMatMul` repacks Q4_K (and, for prompts, Q6_K) weights on first use into tiles
//! for its AVX512-VNNI kernels and keeps the original blocks as well: for the default model,
//! 1.1 GB of weights grow to ~2.2 GB resident. A [`QMatrix`] holds only the blocks read from
//! the file. A decode step (one row) multiplies them with candle's block kernels
//! (`k_quants::matmul`, ggml's dot products), which read 25% fewer bytes than the tiles and
//! measured ~35% less CPU per token here. At a level with kernels of this crate's
//! (`cpu_kernels.rs`: AVX-512 VNNI or AVX-VNNI where the CPU has it, AVX2 when asked for), Q4_K rows
//! interleaved by 8 (`q4k_x8.rs`) go through this crate's own kernel instead (with AVX-512
//! VNNI ~2x faster again per product), for decode and prompt chunks alike, Q6_K prompt
//! chunks through `q6k.rs`, and Q5_0 and Q8_0 products through `block32.rs` (candle's Q5_0
//! is a scalar loop); no tiles are built for any of them.
//!
//! Every kernel used by default gives an input row the same bits whatever rows share the
//! product (one row alone, a decode batch, a prompt chunk): the engine's batch invariance
//! rests on it. candle's tiles do not (a tiled row sums in another order than a block-kernel
//! row), so they are off by default ([`PromptTiles::Never`]); [`PromptTiles::Kept`] (the
//! benchmark's `--keep-prompt-tiles`) builds them on a matrix's first product of many rows and
//! keeps them, for prompt speed at the generic level where candle has tiles (AVX-512 VNNI,
//! aarch64), at the price of memory and of that invariance.

use std::io::{Read, Seek, SeekFrom};
use std::sync::{Arc, OnceLock};

use super::cpu_kernels::CpuKernels;
use super::huge_pages;
use super::plain_data::{self, PlainData};
use super::q4k_x8::{Q4Kx8, RawQ4K};

use super::{block32, q6k};

use candle_core::quantized::gguf_file::Content;
use candle_core::quantized::k_quants::{
    BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K, BlockQ5_0, BlockQ5_1, BlockQ6K,
    BlockQ8_0,
};
use candle_core::quantized::{GgmlDType, GgmlType, QStorage, QTensor, QuantizedType};
use candle_core::{CpuStorage, CustomOp1, Device, Layout, Shape, Tensor};
use half::f16;

/// Under [`PromptTiles::Kept`], from this many input rows on a product goes through candle's
/// tiled kernels; below, the block kernels are cheaper (one core: ~55 ms per row with blocks,
/// ~12 ms with tiles, once built).
const TILED_MIN_ROWS_KEPT: usize = 16;

/// Whether candle's tiles serve products of many rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PromptTiles {
    /// Never: every product runs on row-invariant kernels, weights stay at their file size.
    #[default]
    Never,
    /// Built on a matrix's first product of many rows and kept: those products run faster at
    /// the generic level, but the matrices then take about twice their file size and a row's
    /// result depends on how many rows share its product (no batch invariance). Matrices with
    /// a kernel of this crate's (Q4_K, Q6_K, Q5_0 and Q8_0 at a level with kernels, see
    /// `cpu_kernels.rs`) build no tiles.
    Kept,
}

/// An `(n, k)` quantized matrix (`n` output rows of `k` inputs), multiplied as `x · Wᵀ`.
pub struct QMatrix {
    n: usize,
    k: usize,
    blocks: Box<dyn Blocks>,
    tiles: PromptTiles,
    /// The tiled tensor, under [`PromptTiles::Kept`] once a prompt needed it.
    kept: OnceLock<QTensor>,
}

/// A matrix's blocks, whatever their quantization.
trait Blocks: Send + Sync {
    fn matmul(
        &self,
        mkn: (usize, usize, usize),
        lhs: &[f32],
        dst: &mut [f32],
    ) -> candle_core::Result<()>;
    fn row_to_f32(&self, row: usize, k: usize, dst: &mut [f32]) -> candle_core::Result<()>;
    /// A copy candle can own, for its tiled kernels.
    fn to_storage(&self) -> Box<dyn QuantizedType>;
    /// Whether candle has tiled kernels for this quantization.
    fn tiles(&self) -> bool;
    /// Appends `other`'s blocks (rows), which must be of the same type.
    fn append(&mut self, other: Box<dyn Blocks>) -> candle_core::Result<()>;
    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any>;
}

/// Q4_K rows interleaved for this crate's kernel (see `x8.rs`), for decode and prompts.
struct Interleaved(Q4Kx8);

impl Blocks for Interleaved {
    fn matmul(
        &self,
        (m, _k, _n): (usize, usize, usize),
        lhs: &[f32],
        dst: &mut [f32],
    ) -> candle_core::Result<()> {
        self.0.matmul(CpuKernels::active(), m, lhs, dst)
    }

    fn row_to_f32(&self, row: usize, _k: usize, dst: &mut [f32]) -> candle_core::Result<()> {
        self.0.row_to_f32(row, dst);
        Ok(())
    }

    fn to_storage(&self) -> Box<dyn QuantizedType> {
        Box::new(Shared(Arc::new(self.0.to_blocks())))
    }

    /// The interleaved kernel takes prompt chunks too: no tiles to build per chunk.
    fn tiles(&self) -> bool {
        false
    }

    fn append(&mut self, other: Box<dyn Blocks>) -> candle_core::Result<()> {
        match other.into_any().downcast::<Self>() {
            Ok(other) => self.0.append(other.0),
            Err(_) => candle_core::bail!("cannot stack matrices of different layouts"),
        }
    }

    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any> {
        self
    }
}

/// Blocks with a kernel of this crate's (`q6k.rs`, `block32.rs`) at a level with kernels (see
/// `cpu_kernels.rs`), for any number of rows; candle's block kernels elsewhere.
struct OwnKernel<T> {
    blocks: Shared<T>,
    kernel: ProductFn<T>,
}

/// `dst = x · Wᵀ` over `W`'s blocks, `mkn` as candle's `k_quants::matmul` takes it.
type ProductFn<T> =
    fn(CpuKernels, &[T], (usize, usize, usize), &[f32], &mut [f32]) -> candle_core::Result<()>;

impl<T> OwnKernel<T> {
    fn new(blocks: Vec<T>, kernel: ProductFn<T>) -> Self {
        Self {
            blocks: Shared(Arc::new(blocks)),
            kernel,
        }
    }
}

impl<T: GgmlType + Send + Sync + 'static> Blocks for OwnKernel<T> {
    fn matmul(
        &self,
        mkn: (usize, usize, usize),
        lhs: &[f32],
        dst: &mut [f32],
    ) -> candle_core::Result<()> {
        let level = CpuKernels::active();
        match level.has_kernels() {
            true => (self.kernel)(level, &self.blocks.0, mkn, lhs, dst),
            false => self.blocks.matmul(mkn, lhs, dst),
        }
    }

    fn row_to_f32(&self, row: usize, k: usize, dst: &mut [f32]) -> candle_core::Result<()> {
        self.blocks.row_to_f32(row, k, dst)
    }

    fn to_storage(&self) -> Box<dyn QuantizedType> {
        self.blocks.to_storage()
    }

    fn tiles(&self) -> bool {
        !CpuKernels::active().has_kernels() && self.blocks.tiles()
    }

    fn append(&mut self, other: Box<dyn Blocks>) -> candle_core::Result<()> {
        match other.into_any().downcast::<Self>() {
            Ok(other) => self.blocks.append(Box::new(other.blocks)),
            Err(_) => candle_core::bail!("cannot stack matrices of different quantizations"),
        }
    }

    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any> {
        self
    }
}

/// Blocks behind an `Arc`: candle's tiled tensor borrows them instead of a copy.
struct Shared<T>(Arc<Vec<T>>);

impl<T: GgmlType + Send + Sync + 'static> Blocks for Shared<T> {
    fn matmul(
        &self,
        mkn: (usize, usize, usize),
        lhs: &[f32],
        dst: &mut [f32],
    ) -> candle_core::Result<()> {
        candle_core::quantized::k_quants::matmul(mkn, lhs, &self.0, dst)
    }

    fn row_to_f32(&self, row: usize, k: usize, dst: &mut [f32]) -> candle_core::Result<()> {
        let per_row = k / T::BLCK_SIZE;
        let blocks = self
            .0
            .get(row * per_row..(row + 1) * per_row)
            .ok_or_else(|| candle_core::Error::Msg(format!("row {row} out of range")))?;
        T::to_float(blocks, dst);
        Ok(())
    }

    fn to_storage(&self) -> Box<dyn QuantizedType> {
        Box::new(Shared(self.0.clone()))
    }

    fn tiles(&self) -> bool {
        matches!(T::DTYPE, GgmlDType::Q4K | GgmlDType::Q6K | GgmlDType::Q8_0)
    }

    fn append(&mut self, other: Box<dyn Blocks>) -> candle_core::Result<()> {
        match other.into_any().downcast::<Shared<T>>() {
            Ok(other) => {
                Arc::make_mut(&mut self.0).extend_from_slice(&other.0);
                Ok(())
            }
            Err(_) => candle_core::bail!("cannot stack matrices of different quantizations"),
        }
    }

    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any> {
        self
    }
}

impl QMatrix {
    /// Reads tensor `name`, or `None` when its quantization is not one this type handles (the
    /// caller then uses candle's `QMatMul`).
    pub fn read<R: Read + Seek>(
        content: &Content,
        reader: &mut R,
        name: &str,
        tiles: PromptTiles,
    ) -> candle_core::Result<Option<Self>> {
        let info = content
            .tensor_infos
            .get(name)
            .ok_or_else(|| missing(name))?;
        let Ok((n, k)) = info.shape.dims2() else {
            return Ok(None);
        };
        let start = content.tensor_data_offset + info.offset;
        reader.seek(SeekFrom::Start(start))?;
        let blocks: Box<dyn Blocks> = match info.ggml_dtype {
            GgmlDType::Q4K => read_q4k(reader, n, k)?,
            // An interleaved Q6_K kernel built like the Q4_K one measured 2.3x slower than
            // candle's on the default model's output projection: Q6_K keeps its blocks. One
            // row goes through the same kernel as many (it measured no slower than candle's),
            // so a row's result does not depend on the rows beside it.
            GgmlDType::Q6K => Box::new(OwnKernel::new(
                read_vec::<BlockQ6K, R>(reader, n, k, true)?,
                q6k::matmul,
            )),
            GgmlDType::Q5K => read_blocks::<BlockQ5K, R>(reader, n, k)?,
            GgmlDType::Q3K => read_blocks::<BlockQ3K, R>(reader, n, k)?,
            GgmlDType::Q2K => read_blocks::<BlockQ2K, R>(reader, n, k)?,
            GgmlDType::Q8_0 => Box::new(OwnKernel::new(
                read_vec::<BlockQ8_0, R>(reader, n, k, true)?,
                block32::matmul_q8_0,
            )),
            GgmlDType::Q4_0 => read_blocks::<BlockQ4_0, R>(reader, n, k)?,
            GgmlDType::Q4_1 => read_blocks::<BlockQ4_1, R>(reader, n, k)?,
            GgmlDType::Q5_0 => Box::new(OwnKernel::new(
                read_vec::<BlockQ5_0, R>(reader, n, k, true)?,
                block32::matmul_q5_0,
            )),
            GgmlDType::Q5_1 => read_blocks::<BlockQ5_1, R>(reader, n, k)?,
            _ => return Ok(None),
        };
        Ok(Some(Self {
            n,
            k,
            blocks,
            tiles,
            kept: OnceLock::new(),
        }))
    }

    /// Tensors `names` stacked into one matrix (their rows one after another), so one pass
    /// computes all their products. `None` when they differ in quantization or row length, or
    /// the quantization is not handled here.
    pub fn read_stacked<R: Read + Seek>(
        content: &Content,
        reader: &mut R,
        names: &[&str],
        tiles: PromptTiles,
    ) -> candle_core::Result<Option<Self>> {
        let infos = names
            .iter()
            .map(|name| content.tensor_infos.get(*name).ok_or_else(|| missing(name)))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let same_dtype = infos.iter().all(|i| i.ggml_dtype == infos[0].ggml_dtype);
        let same_k = infos
            .iter()
            .all(|i| i.shape.dims().last() == infos[0].shape.dims().last());
        if !same_dtype || !same_k {
            return Ok(None);
        }
        let mut stacked: Option<Self> = None;
        for name in names {
            let Some(part) = Self::read(content, reader, name, tiles)? else {
                return Ok(None);
            };
            stacked = Some(match stacked {
                None => part,
                Some(mut acc) => {
                    acc.blocks.append(part.blocks)?;
                    acc.n += part.n;
                    acc
                }
            });
        }
        Ok(stacked)
    }

    /// `x · Wᵀ` for f32 `x` of shape `(.., k)`: `(.., n)`.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let rows = x.elem_count() / self.k.max(1);
        let x = x.contiguous()?;
        let tiled = self.tiles == PromptTiles::Kept && rows >= TILED_MIN_ROWS_KEPT;
        if !tiled || !self.blocks.tiles() {
            return x.apply_op1_no_bwd(self);
        }
        // candle tiles a quantized tensor on its first product and keeps the tiles inside it.
        match self.kept.get() {
            Some(tiled) => x.apply_op1_no_bwd(tiled),
            None => {
                let tiled = self.tiled()?;
                x.apply_op1_no_bwd(self.kept.get_or_init(|| tiled))
            }
        }
    }

    /// A candle tensor over the shared blocks (no copy), for its tiled kernels.
    fn tiled(&self) -> candle_core::Result<QTensor> {
        QTensor::new(QStorage::Cpu(self.blocks.to_storage()), (self.n, self.k))
    }

    /// Rows `ids` as f32, `(1, ids.len(), k)`: an embedding lookup that dequantizes only the
    /// rows it needs.
    pub fn embedding(&self, ids: &[u32]) -> candle_core::Result<Tensor> {
        let mut out = vec![0f32; ids.len() * self.k];
        for (dst, &id) in out.chunks_mut(self.k).zip(ids) {
            if id as usize >= self.n {
                candle_core::bail!("token id {id} is outside the vocabulary of {}", self.n);
            }
            self.blocks.row_to_f32(id as usize, self.k, dst)?;
        }
        Tensor::from_vec(out, (1, ids.len(), self.k), &Device::Cpu)
    }
}

fn missing(name: &str) -> candle_core::Error {
    candle_core::Error::Msg(format!("the GGUF file has no tensor {name}"))
}

/// Q4_K blocks, interleaved where this CPU has the kernel for them.
fn read_q4k<R: Read>(reader: &mut R, n: usize, k: usize) -> candle_core::Result<Box<dyn Blocks>> {
    if !CpuKernels::active().has_kernels() {
        return read_blocks::<BlockQ4K, R>(reader, n, k);
    }
    // Normally only copied into the interleaved layout and freed, so no huge pages are asked
    // for; a matrix that cannot be interleaved keeps it as it is.
    let blocks = read_vec::<BlockQ4K, R>(reader, n, k, false)?;
    match Q4Kx8::new(RawQ4K::from_blocks(&blocks), n, k) {
        Some(interleaved) => Ok(Box::new(Interleaved(interleaved))),
        None => Ok(Box::new(Shared(Arc::new(blocks)))),
    }
}

/// `n * k / block` blocks read straight into their final allocation, on huge pages.
fn read_blocks<T: GgmlType + PlainData + Send + Sync, R: Read>(
    reader: &mut R,
    n: usize,
    k: usize,
) -> candle_core::Result<Box<dyn Blocks>> {
    Ok(Box::new(Shared(Arc::new(read_vec::<T, R>(
        reader, n, k, true,
    )?))))
}

/// `n * k / block` blocks; `on_huge_pages` asks for transparent huge pages for a long-lived buffer.
fn read_vec<T: GgmlType + PlainData, R: Read>(
    reader: &mut R,
    n: usize,
    k: usize,
    on_huge_pages: bool,
) -> candle_core::Result<Vec<T>> {
    if !k.is_multiple_of(T::BLCK_SIZE) {
        candle_core::bail!(
            "row length {k} is not a multiple of the block size {}",
            T::BLCK_SIZE
        );
    }
    let count = n * k / T::BLCK_SIZE;
    let mut blocks: Vec<T> = Vec::with_capacity(count);
    if on_huge_pages {
        huge_pages::advise(
            blocks.as_mut_ptr() as *mut u8,
            count * std::mem::size_of::<T>(),
        );
    }
    blocks.resize(count, T::zeros());
    reader.read_exact(plain_data::bytes_mut(&mut blocks))?;
    Ok(blocks)
}

/// candle's storage interface over shared blocks, for the tiled tensor. Only the
/// read side is used; the write side copies on write, as an `Arc` must.
impl<T: GgmlType + Send + Sync> QuantizedType for Shared<T> {
    fn dtype(&self) -> GgmlDType {
        T::DTYPE
    }
    fn matmul_t(
        &self,
        mkn: (usize, usize, usize),
        lhs: &[f32],
        dst: &mut [f32],
    ) -> candle_core::Result<()> {
        self.0.matmul_t(mkn, lhs, dst)
    }
    fn matmul_t_f16(
        &self,
        mkn: (usize, usize, usize),
        lhs: &[f16],
        dst: &mut [f16],
    ) -> candle_core::Result<()> {
        self.0.matmul_t_f16(mkn, lhs, dst)
    }
    fn embedding(
        &self,
        ids: &[u32],
        rows: usize,
        hidden: usize,
    ) -> candle_core::Result<CpuStorage> {
        self.0.embedding(ids, rows, hidden)
    }
    fn dequantize(&self, elem_count: usize) -> candle_core::Result<CpuStorage> {
        self.0.dequantize(elem_count)
    }
    fn storage_size_in_bytes(&self) -> usize {
        QuantizedType::storage_size_in_bytes(&*self.0)
    }
    fn as_ptr(&self) -> *const u8 {
        self.0.as_ptr() as *const u8
    }
    fn block_size(&self) -> usize {
        T::BLCK_SIZE
    }
    fn from_float(&mut self, xs: &[f32]) {
        QuantizedType::from_float(Arc::make_mut(&mut self.0), xs)
    }
    fn from_float_imatrix(&mut self, xs: &[f32], imatrix_weights: &[f32], n_per_row: usize) {
        Arc::make_mut(&mut self.0).from_float_imatrix(xs, imatrix_weights, n_per_row)
    }
    fn size(&self) -> usize {
        QuantizedType::size(&*self.0)
    }
}

impl CustomOp1 for QMatrix {
    fn name(&self) -> &'static str {
        "qmatrix"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("qmatrix: expected an f32 input");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("qmatrix: input is not contiguous");
        };
        let mut dims = layout.shape().dims().to_vec();
        if dims.last() != Some(&self.k) {
            candle_core::bail!(
                "qmatrix: input {:?} does not end in {}",
                layout.shape(),
                self.k
            );
        }
        let m = (end - start) / self.k;
        *dims.last_mut().expect("checked above") = self.n;
        let mut dst = vec![0f32; m * self.n];
        self.blocks
            .matmul((m, self.k, self.n), &data[start..end], &mut dst)?;
        Ok((CpuStorage::F32(dst), Shape::from(dims)))
    }
}
