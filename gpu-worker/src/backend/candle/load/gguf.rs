//! GGUF files: the model its architecture's row in [`registry`] builds, the tokenizer and chat
//! template from the metadata.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use anyhow::Context;
use candle_core::quantized::gguf_file::Content;

use super::progress::ProgressReader;
use super::{Loaded, Source};
use crate::backend::candle::gguf_meta::{string, u32_meta};
use crate::backend::candle::models::registry::{self, GgufInput};
use crate::backend::candle::text::chat::ChatTemplate;
use crate::backend::candle::text::fim::DeclaredFim;
use crate::backend::candle::text::gguf_tokens;
use crate::backend::candle::text::spm;
use crate::backend::candle::text::vocab::Vocab;

pub fn load(source: Source<'_>) -> anyhow::Result<Loaded> {
    let Source {
        options,
        device,
        progress,
    } = source;
    let path = &options.model_path;
    progress.stage("reading GGUF metadata");
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let content = Content::read(&mut file)
        .with_context(|| format!("{} is not a readable GGUF file", path.display()))?;
    let arch = string(&content, "general.architecture")
        .context("GGUF metadata has no general.architecture")?;
    let loader = registry::gguf_loader(&arch)?;

    progress.stage("building the tokenizer");
    let vocab = vocab(&content, path, options.tokenizer_path.as_deref())?;
    let chat = chat_template(&content, &vocab)?;
    let context_length = u32_meta(&content, &format!("{arch}.context_length"))
        .with_context(|| format!("GGUF metadata has no {arch}.context_length"))?
        as usize;

    progress.start_weights(weight_bytes(&content));
    let mut reader = ProgressReader::new(BufReader::new(file), progress);
    let model = loader(GgufInput {
        content,
        weights: &mut reader,
        device,
        tiles: options.prompt_tiles,
        context_length,
    })?;
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
                false => gguf_tokens::from_gguf(content),
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
    let fim = |key: &str| u32_meta(content, &format!("tokenizer.ggml.fim_{key}_token_id"));
    let declared = DeclaredFim {
        prefix: fim("pre"),
        suffix: fim("suf"),
        middle: fim("mid"),
        pad: fim("pad"),
        repo: fim("rep"),
        file_sep: fim("sep"),
    };
    Ok(Vocab::new(tokenizer, eos, bos).with_declared_fim(&declared))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::candle::test_gguf::{gguf_bytes, read};

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
