//! The GGUF architectures this backend runs: one row per `general.architecture` value, with the
//! function that builds its [`Model`]. Adding an architecture is its own file under `models/`
//! plus one row here.

use std::io::{Read, Seek};

use candle_core::quantized::gguf_file::Content;
use candle_core::Device;

use super::{candle_models, gemma3, qwen2, Model};
use crate::backend::candle::kernels::qmatrix::PromptTiles;

/// Where a loader reads tensor data from: the GGUF file after its metadata.
pub trait WeightSource: Read + Seek {}

impl<T: Read + Seek> WeightSource for T {}

/// What a loader gets: the file's metadata and tensor directory, and its weights to read.
pub struct GgufInput<'a> {
    /// Owned: candle-transformers' loaders take it by value.
    pub content: Content,
    pub weights: &'a mut dyn WeightSource,
    pub device: &'a Device,
    pub tiles: PromptTiles,
    /// `{arch}.context_length` from the metadata.
    pub context_length: usize,
}

/// Builds a model from a GGUF file of its architecture.
pub type GgufLoader = fn(GgufInput<'_>) -> anyhow::Result<Box<dyn Model>>;

/// Every GGUF architecture this backend runs.
pub const GGUF_ARCHITECTURES: &[(&str, GgufLoader)] = &[
    ("qwen2", qwen2::load_gguf),
    ("llama", candle_models::load_quantized_llama),
    ("qwen3", candle_models::load_quantized_qwen3),
    ("gemma3", gemma3::load_gguf),
];

/// The loader for `architecture`, or an error listing the ones there are.
pub fn gguf_loader(architecture: &str) -> anyhow::Result<GgufLoader> {
    GGUF_ARCHITECTURES
        .iter()
        .find(|(name, _)| *name == architecture)
        .map(|&(_, loader)| loader)
        .ok_or_else(|| {
            let names: Vec<&str> = GGUF_ARCHITECTURES.iter().map(|(name, _)| *name).collect();
            anyhow::anyhow!(
                "GGUF architecture `{architecture}` is not supported by the candle backend \
                 (supported: {})",
                names.join(", ")
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_architecture_has_one_row() {
        let mut names: Vec<&str> = GGUF_ARCHITECTURES.iter().map(|(name, _)| *name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), GGUF_ARCHITECTURES.len());
        assert!(gguf_loader("qwen2").is_ok());
    }

    #[test]
    fn an_unknown_architecture_is_refused_with_the_supported_list() {
        let error = gguf_loader("mamba").expect_err("mamba is not supported");
        let message = format!("{error:#}");
        assert!(message.contains("`mamba`"), "{message}");
        assert!(message.contains("qwen2, llama, qwen3, gemma3"), "{message}");
    }
}
