//! Rotary position embeddings for the models written here, in the "rotate half" layout that
//! candle-nn's `rope_thd` applies.
//!
//! The angle tables are computed for the positions of each forward pass (a `(t, 1)` by
//! `(1, head_dim / 2)` product and a sine and cosine of it), not for the whole context up
//! front: gemma3's 131,072 positions would take 64 MiB per table, four tables in all.

use candle_core::{DType, Device, Tensor};

/// The frequencies of one rotary embedding.
#[derive(Debug, Clone)]
pub struct Rotary {
    /// `(1, head_dim / 2)`: `position_scale / base^(2i / head_dim)`.
    inv_freq: Tensor,
}

impl Rotary {
    /// `base` is the model's `rope.freq_base`; `position_scale` is 1 without scaling, and
    /// `1 / factor` under linear scaling (positions divided by the factor).
    pub fn new(
        head_dim: usize,
        base: f32,
        position_scale: f32,
        device: &Device,
    ) -> candle_core::Result<Self> {
        let inv_freq: Vec<f32> = (0..head_dim)
            .step_by(2)
            .map(|i| position_scale / base.powf(i as f32 / head_dim as f32))
            .collect();
        let inv_freq = Tensor::new(inv_freq.as_slice(), device)?.reshape((1, head_dim / 2))?;
        Ok(Self { inv_freq })
    }

    /// `(cos, sin)` of each of `positions`, each `(positions.len(), head_dim / 2)`: a row's
    /// angles depend on its position alone, whatever other rows are asked for with it.
    pub fn tables(&self, positions: &[u32]) -> candle_core::Result<(Tensor, Tensor)> {
        let positions = Tensor::new(positions, self.inv_freq.device())?
            .to_dtype(DType::F32)?
            .reshape((positions.len(), 1))?;
        let angles = positions.matmul(&self.inv_freq)?;
        Ok((angles.cos()?, angles.sin()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn angles_are_position_times_frequency() {
        let rotary = Rotary::new(4, 100.0, 0.5, &Device::Cpu).unwrap();

        let (cos, sin) = rotary.tables(&[3, 4]).unwrap();

        // Frequencies 0.5 / 100^0 and 0.5 / 100^(2/4): 0.5 and 0.05.
        let expected = [[1.5f32, 0.15], [2.0, 0.2]];
        let cos = cos.to_vec2::<f32>().unwrap();
        let sin = sin.to_vec2::<f32>().unwrap();
        for (row, angles) in expected.iter().enumerate() {
            for (col, angle) in angles.iter().enumerate() {
                assert!((cos[row][col] - angle.cos()).abs() < 1e-6);
                assert!((sin[row][col] - angle.sin()).abs() < 1e-6);
            }
        }
    }
}
