//! Tiny random GGUF files and logit comparisons for the tests of the models written here.

use std::io::Cursor;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};

use crate::backend::candle::kernels::cpu_kernels::{for_each_testable_level, CpuKernels};
use crate::backend::candle::models::Session;

#[path = "../../../tests/candle_support/noise.rs"]
mod noise;

pub use noise::noise;

/// Random tensors from a fixed sequence of seeds: the same calls give the same file.
#[derive(Default)]
pub struct RandomTensors {
    seed: u64,
}

impl RandomTensors {
    /// Values uniform in `[-scale, scale)`, quantized to `dtype`.
    pub fn next(&mut self, shape: &[usize], dtype: GgmlDType, scale: f32) -> QTensor {
        let values = self.values(shape.iter().product(), scale);
        let t = Tensor::from_vec(values, shape, &Device::Cpu).unwrap();
        QTensor::quantize(&t, dtype).unwrap()
    }

    /// `1 + ` values uniform in `[-scale, scale)`, in f32: a norm's weight.
    pub fn norm(&mut self, len: usize, scale: f32) -> QTensor {
        let values = self.values(len, scale).into_iter().map(|v| 1.0 + v);
        let t = Tensor::from_iter(values, &Device::Cpu).unwrap();
        QTensor::quantize(&t, GgmlDType::F32).unwrap()
    }

    fn values(&mut self, len: usize, scale: f32) -> Vec<f32> {
        self.seed += 1;
        noise(self.seed, len, scale)
    }
}

/// A GGUF file's bytes.
pub fn gguf_bytes(metadata: &[(&str, Value)], tensors: &[(String, QTensor)]) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    let metadata: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    gguf_file::write(&mut out, &metadata, &tensors).unwrap();
    out.into_inner()
}

/// The file's metadata, and a reader positioned for its tensors.
pub fn read(bytes: &[u8]) -> (gguf_file::Content, Cursor<&[u8]>) {
    let mut reader = Cursor::new(bytes);
    let content = gguf_file::Content::read(&mut reader).unwrap();
    (content, reader)
}

/// Token ids as a `(1, n)` tensor.
pub fn ids(tokens: &[u32]) -> Tensor {
    Tensor::new(tokens, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap()
}

/// The logits after feeding `tokens` to `session` in chunks of `chunk`.
pub fn fed_in_chunks(session: &mut dyn Session, tokens: &[u32], chunk: usize) -> Tensor {
    let mut logits = None;
    for (i, piece) in tokens.chunks(chunk).enumerate() {
        logits = Some(session.forward(piece, i * chunk).unwrap());
    }
    logits.expect("at least one token")
}

/// Largest absolute difference between two logit vectors of any shape.
pub fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    let (a, b) = (a.flatten_all().unwrap(), b.flatten_all().unwrap());
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// Largest difference relative to the largest of `b`: activations are quantized to 8 bits
/// before each product, differently in the tiled and block kernels.
pub fn relative_diff(a: &Tensor, b: &Tensor) -> f32 {
    let scale = b
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    max_diff(a, b) / scale.max(1e-6)
}

/// A product over a matrix's blocks at a kernel level, `mkn` as candle's `k_quants::matmul`
/// takes it.
pub type Product<T> =
    fn(CpuKernels, &[T], (usize, usize, usize), &[f32], &mut [f32]) -> candle_core::Result<()>;

/// `ours` against candle's block kernel on random `T` matrices of each `(m, n, k)` shape, at
/// every kernel level this CPU has: every output within `tolerance` relative (at least 1
/// absolute), and each input row's outputs bitwise the same as when that row is multiplied
/// alone (a row's result never depends on the rows beside it).
pub fn matches_candle_products<T: candle_core::quantized::k_quants::GgmlType>(
    ours: Product<T>,
    shapes: &[(usize, usize, usize)],
    tolerance: f32,
) {
    for_each_testable_level(|level| {
        for &(m, n, k) in shapes {
            let weights = noise((m * n * k) as u64, n * k, 1.0);
            let mut blocks = vec![T::zeros(); n * k / T::BLCK_SIZE];
            T::from_float(&weights, &mut blocks);
            let x: Vec<f32> = noise((m + n + k) as u64, m * k, 2.0);
            let mut expected = vec![0f32; m * n];
            candle_core::quantized::k_quants::matmul((m, k, n), &x, &blocks, &mut expected)
                .unwrap();

            let mut got = vec![0f32; m * n];
            ours(level, &blocks, (m, k, n), &x, &mut got).unwrap();

            for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
                assert!(
                    (g - e).abs() <= tolerance * e.abs().max(1.0),
                    "{level:?} ({m}, {n}, {k}) output {i}: {g} vs {e}"
                );
            }
            for row in 0..m {
                let mut alone = vec![0f32; n];
                ours(
                    level,
                    &blocks,
                    (1, k, n),
                    &x[row * k..(row + 1) * k],
                    &mut alone,
                )
                .unwrap();
                let batched = &got[row * n..(row + 1) * n];
                assert!(
                    alone
                        .iter()
                        .map(|v| v.to_bits())
                        .eq(batched.iter().map(|v| v.to_bits())),
                    "{level:?} ({m}, {n}, {k}) row {row}: alone {alone:?}, batched {batched:?}"
                );
            }
        }
    });
}
