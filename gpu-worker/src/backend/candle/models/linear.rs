//! The linear layers of the GGUF models written here: [`QMatrix`] blocks on the CPU, candle's
//! `QMatMul` elsewhere (or for quantizations `QMatrix` does not handle), and [`Projection`]s
//! that run several matrices sharing an input as one.

use std::io::{Read, Seek};
use std::sync::Arc;

use candle_core::quantized::gguf_file::Content;
use candle_core::quantized::QMatMul;
use candle_core::{Device, Module, Tensor, D};

use crate::backend::candle::kernels::qmatrix::{PromptTiles, QMatrix};

/// Reads weight matrices from a GGUF file in the layout suited to the device.
pub struct WeightReader<'a, R> {
    pub content: &'a Content,
    pub reader: &'a mut R,
    pub device: &'a Device,
    pub tiles: PromptTiles,
}

impl<R: Read + Seek> WeightReader<'_, R> {
    /// Blocks on the CPU; candle's `QMatMul` on other devices.
    fn blocks(&self) -> bool {
        self.device.is_cpu()
    }

    pub fn linear(&mut self, name: &str) -> candle_core::Result<Linear> {
        if self.blocks() {
            if let Some(matrix) = QMatrix::read(self.content, self.reader, name, self.tiles)? {
                return Ok(Linear::Blocks(Arc::new(matrix)));
            }
        }
        let tensor = self.content.tensor(self.reader, name, self.device)?;
        Ok(Linear::Candle(QMatMul::from_qtensor(tensor)?))
    }

    /// `output.weight`, or where the file ties it to the embedding (no such tensor) `embed`
    /// itself: the same quantized matrix, not a second copy.
    pub fn output_or_tied(&mut self, embed: &Linear) -> candle_core::Result<Linear> {
        match self.content.tensor_infos.contains_key("output.weight") {
            true => self.linear("output.weight"),
            false => Ok(embed.clone()),
        }
    }

    /// Matrices `names`, which take the same input, as one [`Projection`].
    pub fn projection(&mut self, names: &[&str]) -> candle_core::Result<Projection> {
        let widths = names
            .iter()
            .map(|n| rows(self.content, n))
            .collect::<candle_core::Result<Vec<_>>>()?;
        if self.blocks() {
            if let Some(stacked) =
                QMatrix::read_stacked(self.content, self.reader, names, self.tiles)?
            {
                return Ok(Projection {
                    parts: vec![(Linear::Blocks(Arc::new(stacked)), widths)],
                });
            }
        }
        let parts = names
            .iter()
            .zip(widths)
            .map(|(name, width)| Ok((self.linear(name)?, vec![width])))
            .collect::<candle_core::Result<_>>()?;
        Ok(Projection { parts })
    }
}

/// One weight matrix, multiplied as `x · Wᵀ`.
#[derive(Clone)]
pub enum Linear {
    Blocks(Arc<QMatrix>),
    Candle(QMatMul),
}

impl Linear {
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Linear::Blocks(m) => m.forward(x),
            Linear::Candle(m) => m.forward(x),
        }
    }

    /// The embedding lookup for a `(vocab, hidden)` matrix: `(1, ids.len(), hidden)`.
    pub fn embedding(&self, ids: &[u32], device: &Device) -> candle_core::Result<Tensor> {
        match self {
            Linear::Blocks(m) => m.embedding(ids),
            Linear::Candle(m) => m.embedding(&Tensor::new(ids, device)?.unsqueeze(0)?),
        }
    }
}

/// Matrices applied to one input, e.g. Q/K/V or gate/up. On the CPU, matrices of one
/// quantization are stacked into a single matrix at load, so one pass computes their outputs.
pub struct Projection {
    /// Each part and the output widths it stacks.
    parts: Vec<(Linear, Vec<usize>)>,
}

impl Projection {
    /// One output per matrix, in the order they were named.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Vec<Tensor>> {
        let mut outs = Vec::new();
        for (linear, widths) in &self.parts {
            let y = linear.forward(x)?;
            let mut offset = 0;
            for &width in widths {
                outs.push(match widths.len() {
                    1 => y.clone(),
                    _ => y.narrow(D::Minus1, offset, width)?,
                });
                offset += width;
            }
        }
        Ok(outs)
    }

    /// [`Projection::forward`] for a projection of `N` matrices.
    pub fn forward_array<const N: usize>(&self, x: &Tensor) -> candle_core::Result<[Tensor; N]> {
        <[Tensor; N]>::try_from(self.forward(x)?).map_err(|outs| {
            candle_core::Error::Msg(format!("{} projection outputs, not {N}", outs.len()))
        })
    }
}

fn rows(content: &Content, name: &str) -> candle_core::Result<usize> {
    let info = content
        .tensor_infos
        .get(name)
        .ok_or_else(|| candle_core::Error::Msg(format!("the GGUF file has no tensor {name}")))?;
    Ok(info.shape.dims2()?.0)
}
