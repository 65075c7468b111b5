//! Loading a checkpoint: a GGUF file or a Hugging Face directory becomes a [`Model`], its
//! tokenizer and its chat template.
//!
//! # Layout
//!
//! - [`options`]: [`CandleOptions`](options::CandleOptions), what to load and where.
//! - [`device`]: `cpu` / `cuda:N` strings to candle devices.
//! - [`gguf`]: GGUF files, through the architecture table in `models::registry`.
//! - [`hf`] and [`hf_config`]: Hugging Face directories and which of their configs run.
//! - [`progress`]: loading progress in the log and on a terminal.

pub mod device;
pub mod gguf;
pub mod hf;
pub mod hf_config;
pub mod options;
pub mod progress;

use anyhow::Context;
use candle_core::Device;

use self::options::CandleOptions;
use self::progress::LoadProgress;
use crate::backend::candle::models::Model;
use crate::backend::candle::text::chat::ChatTemplate;
use crate::backend::candle::text::vocab::Vocab;

/// What a checkpoint loader produces.
pub struct Loaded {
    pub model: Box<dyn Model>,
    pub vocab: Vocab,
    pub chat: ChatTemplate,
    /// `general.architecture` or `model_type`, for logs.
    pub architecture: String,
}

/// What a checkpoint loader reads from and reports to.
pub struct Source<'a> {
    pub options: &'a CandleOptions,
    pub device: &'a Device,
    pub progress: &'a mut LoadProgress,
}

/// Loads the checkpoint at `options.model_path`: a directory as Hugging Face files, a file as
/// GGUF.
pub fn checkpoint(
    options: &CandleOptions,
    device: &Device,
    progress: &mut LoadProgress,
) -> anyhow::Result<Loaded> {
    let path = &options.model_path;
    anyhow::ensure!(
        path.exists(),
        "model path {} does not exist",
        path.display()
    );
    let source = Source {
        options,
        device,
        progress,
    };
    match path.is_dir() {
        true => hf::load(source),
        false => gguf::load(source),
    }
    .with_context(|| format!("loading {}", path.display()))
}
