//! GGUF files: the architectures candle-transformers ships as quantized models, the tokenizer
//! and chat template from the metadata.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use anyhow::{bail, Context};
use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::tokenizer::TokenizerFromGguf;
use candle_core::Device;
use candle_transformers::models::{quantized_llama, quantized_qwen3};
use tokenizers::Tokenizer;

use super::chat::ChatTemplate;
use super::gemma3::Gemma3;
use super::model::{Model, QuantizedModel};
use super::network::CachedModel;
use super::options::CandleOptions;
use super::progress::{LoadProgress, ProgressReader};
use super::qwen2::Qwen2;
use super::spm;
use super::vocab::Vocab;
use super::Loaded;

/// `general.architecture` values this backend runs.
pub const ARCHITECTURES: &[&str] = &["qwen2", "llama", "qwen3", "gemma3"];

pub fn load(
    options: &CandleOptions,
    device: &Device,
    progress: &mut LoadProgress,
) -> anyhow::Result<Loaded> {
    let path = &options.model_path;
    progress.stage("reading GGUF metadata");
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let content = Content::read(&mut file)
        .with_context(|| format!("{} is not a readable GGUF file", path.display()))?;
    let arch = string(&content, "general.architecture")
        .context("GGUF metadata has no general.architecture")?;
    if !ARCHITECTURES.contains(&arch.as_str()) {
        bail!(
            "GGUF architecture `{arch}` is not supported by the candle backend (supported: {})",
            ARCHITECTURES.join(", ")
        );
    }

    progress.stage("building the tokenizer");
    let vocab = vocab(&content, path, options.tokenizer_path.as_deref())?;
    let chat = chat_template(&content, &vocab)?;
    let context_length = u32_meta(&content, &format!("{arch}.context_length"))
        .with_context(|| format!("GGUF metadata has no {arch}.context_length"))?
        as usize;

    progress.start_weights(weight_bytes(&content));
    let mut reader = ProgressReader::new(BufReader::new(file), progress);
    let model: Box<dyn Model> = match arch.as_str() {
        "qwen2" => Box::new(CachedModel::new(Qwen2::from_gguf(
            &content,
            &mut reader,
            device,
            options.prompt_tiles,
        )?)),
        "llama" => {
            let weights = quantized_llama::ModelWeights::from_gguf(content, &mut reader, device)?;
            let ctx = context_length.min(quantized_llama::MAX_SEQ_LEN);
            Box::new(QuantizedModel::new(weights, device.clone(), ctx))
        }
        "qwen3" => {
            let weights = quantized_qwen3::ModelWeights::from_gguf(content, &mut reader, device)?;
            Box::new(
                QuantizedModel::new(weights, device.clone(), context_length).reusing_sessions(),
            )
        }
        "gemma3" => Box::new(CachedModel::new(Gemma3::from_gguf(
            &content,
            &mut reader,
            device,
            options.prompt_tiles,
        )?)),
        _ => unreachable!("checked against ARCHITECTURES"),
    };
    drop(reader);
    progress.finish_weights();
    Ok(Loaded {
        model,
        vocab,
        chat,
        architecture: arch,
    })
}

/// The tokenizer: an explicit `tokenizer.json`, else one beside the file, else the one the
/// GGUF metadata describes.
fn vocab(content: &Content, path: &Path, explicit: Option<&Path>) -> anyhow::Result<Vocab> {
    let beside = path
        .parent()
        .map(|dir| dir.join("tokenizer.json"))
        .filter(|p| p.is_file());
    let tokenizer = match explicit.map(Path::to_path_buf).or(beside) {
        Some(json) => {
            tracing::info!(tokenizer = %json.display(), "using tokenizer.json");
            Vocab::from_file(&json)?
        }
        None => {
            let built = match spm::describes(content) {
                true => spm::from_gguf(content),
                false => Tokenizer::from_gguf(content).map_err(anyhow::Error::new),
            };
            built.map_err(|e| {
                anyhow::anyhow!(
                    "cannot build a tokenizer from the GGUF metadata ({e:#}); put the model's \
                     tokenizer.json beside the file or pass its path"
                )
            })?
        }
    };
    let declared = ["eos_token_id", "eot_token_id", "eom_token_id"]
        .iter()
        .filter_map(|key| u32_meta(content, &format!("tokenizer.ggml.{key}")));
    let eos: Vec<u32> = declared.collect();
    let bos = u32_meta(content, "tokenizer.ggml.bos_token_id");
    Ok(Vocab::new(tokenizer, eos, bos))
}

fn chat_template(content: &Content, vocab: &Vocab) -> anyhow::Result<ChatTemplate> {
    let source = string(content, "tokenizer.chat_template");
    let text = |key: &str| {
        u32_meta(content, key)
            .and_then(|id| vocab.token_text(id))
            .unwrap_or_default()
    };
    ChatTemplate::new(
        source,
        text("tokenizer.ggml.bos_token_id"),
        text("tokenizer.ggml.eos_token_id"),
    )
}

/// Bytes of tensor data, for the progress bar.
fn weight_bytes(content: &Content) -> u64 {
    content
        .tensor_infos
        .values()
        .map(|info| {
            let blocks = info.shape.elem_count() / info.ggml_dtype.block_size();
            (blocks * info.ggml_dtype.type_size()) as u64
        })
        .sum()
}

/// The `{arch}.*` hyperparameters of a GGUF file, for the models written here.
pub struct ArchMeta<'a> {
    content: &'a Content,
    arch: &'static str,
}

impl<'a> ArchMeta<'a> {
    pub fn new(content: &'a Content, arch: &'static str) -> Self {
        Self { content, arch }
    }

    /// `{arch}.{key}` converted by `convert`: `None` when the file does not have it, an error
    /// naming it when the file has it as something else.
    fn optional<T>(
        &self,
        key: &str,
        kind: &str,
        convert: impl Fn(&Value) -> Option<T>,
    ) -> anyhow::Result<Option<T>> {
        let name = format!("{}.{key}", self.arch);
        match self.content.metadata.get(&name) {
            None => Ok(None),
            Some(value) => match convert(value) {
                Some(converted) => Ok(Some(converted)),
                None => anyhow::bail!("GGUF {name} is not {kind}: {value:?}"),
            },
        }
    }

    pub fn optional_usize(&self, key: &str) -> anyhow::Result<Option<usize>> {
        self.optional(key, "an unsigned 32-bit integer", |v| {
            u32_value(v).map(|v| v as usize)
        })
    }

    pub fn optional_f32(&self, key: &str) -> anyhow::Result<Option<f32>> {
        self.optional(key, "a number", |v| match v {
            Value::F32(v) => Some(*v),
            Value::F64(v) => Some(*v as f32),
            _ => None,
        })
    }

    pub fn usize(&self, key: &str) -> anyhow::Result<usize> {
        self.optional_usize(key)?
            .with_context(|| format!("GGUF has no {}.{key}", self.arch))
    }

    pub fn f32(&self, key: &str) -> anyhow::Result<f32> {
        self.optional_f32(key)?
            .with_context(|| format!("GGUF has no {}.{key}", self.arch))
    }
}

fn string(content: &Content, key: &str) -> Option<String> {
    content
        .metadata
        .get(key)
        .and_then(|v| v.to_string().ok())
        .cloned()
}

/// A metadata integer that fits 32 unsigned bits, whatever its stored width.
pub fn u32_meta(content: &Content, key: &str) -> Option<u32> {
    u32_value(content.metadata.get(key)?)
}

fn u32_value(value: &Value) -> Option<u32> {
    match value {
        Value::U8(v) => Some(*v as u32),
        Value::U16(v) => Some(*v as u32),
        Value::U32(v) => Some(*v),
        Value::U64(v) => u32::try_from(*v).ok(),
        Value::I8(v) => u32::try_from(*v).ok(),
        Value::I16(v) => u32::try_from(*v).ok(),
        Value::I32(v) => u32::try_from(*v).ok(),
        Value::I64(v) => u32::try_from(*v).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_gguf::{gguf_bytes, read};
    use super::*;

    #[test]
    fn a_sentencepiece_file_without_tokenizer_json_gets_its_own_tokenizer() {
        let bytes = gguf_bytes(&spm::tests::metadata(false, true), &[]);
        let (content, _) = read(&bytes);

        let vocab = vocab(&content, Path::new("/nonexistent/model.gguf"), None).unwrap();

        let bos = vocab.bos().unwrap();
        let ids = vocab.encode("abc", true).unwrap();
        assert_eq!(ids.len(), 3, "BOS, a, bc: {ids:?}");
        assert_eq!(ids[0], bos);
        assert_eq!(vocab.tokenizer().decode(&ids[1..], true).unwrap(), "abc");
    }
}
