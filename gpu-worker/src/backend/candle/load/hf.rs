//! Hugging Face checkpoint directories: `config.json`, `*.safetensors`, `tokenizer.json`, and
//! optionally `tokenizer_config.json` / `generation_config.json` for the chat template and
//! end-of-turn ids.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use candle_core::Device;
use candle_nn::VarBuilder;
use candle_transformers::models::llama::{Cache, Config, Llama};
use serde_json::Value;

use super::hf_config::{self, CheckedConfig};
use super::{Loaded, Source};
use crate::backend::candle::models::candle_models::LlamaModel;
use crate::backend::candle::text::chat::ChatTemplate;
use crate::backend::candle::text::vocab::Vocab;

pub fn load(source: Source<'_>) -> anyhow::Result<Loaded> {
    let dir = &source.options.model_path;
    let progress = source.progress;
    progress.stage("reading config.json");
    let config = read_json(&dir.join("config.json"))?
        .with_context(|| format!("{} has no config.json", dir.display()))?;
    let checked = hf_config::check(&config)?;

    progress.stage("building the tokenizer");
    let tokenizer_path = source
        .options
        .tokenizer_path
        .clone()
        .unwrap_or_else(|| dir.join("tokenizer.json"));
    let tokenizer = Vocab::from_file(&tokenizer_path)?;
    let tokenizer_config = read_json(&dir.join("tokenizer_config.json"))?.unwrap_or(Value::Null);
    let generation_config = read_json(&dir.join("generation_config.json"))?.unwrap_or(Value::Null);
    let mut eos = hf_config::eos_ids(&config);
    eos.extend(hf_config::eos_ids(&generation_config));
    let special = |key: &str| special_token(&tokenizer_config, key);
    eos.extend(special("eos_token").and_then(|t| tokenizer.token_to_id(&t)));
    let bos = config
        .get("bos_token_id")
        .and_then(Value::as_u64)
        .and_then(|id| u32::try_from(id).ok())
        .or_else(|| special("bos_token").and_then(|t| tokenizer.token_to_id(&t)));
    let vocab = Vocab::new(tokenizer, eos, bos);
    let chat = ChatTemplate::new(
        chat_template(dir, &tokenizer_config)?,
        special("bos_token").unwrap_or_default(),
        special("eos_token").unwrap_or_default(),
    )?;

    let files = safetensors_files(dir)?;
    progress.stage(&format!(
        "loading weights from {} safetensors file(s)",
        files.len()
    ));
    let model = llama(&checked, &files, source.device)?;
    Ok(Loaded {
        model: Box::new(model),
        vocab,
        chat,
        architecture: checked.model_type,
    })
}

fn llama(
    checked: &CheckedConfig,
    files: &[PathBuf],
    device: &Device,
) -> anyhow::Result<LlamaModel> {
    let config: Config = checked.llama.clone().into_config(false);
    // SAFETY: the files are memory-mapped read-only; they must not change while loading, as
    // with every safetensors loader.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(files, checked.dtype, device)? };
    require_tensors(&vb, &config)?;
    // candle's `Llama::load` unwraps per-layer errors; a checkpoint whose tensors have the
    // wrong shapes must still be an error, not a crashed worker.
    let llama = catch_unwind(AssertUnwindSafe(|| Llama::load(vb, &config)))
        .map_err(|_| anyhow::anyhow!("the checkpoint's tensors do not match config.json"))??;
    let cache = Cache::new(true, checked.dtype, &config, device)?;
    Ok(LlamaModel::new(
        llama,
        cache,
        device.clone(),
        &config,
        checked.dtype,
    ))
}

/// Fails with the first missing tensor's name rather than letting `Llama::load` panic on it.
fn require_tensors(vb: &VarBuilder, config: &Config) -> anyhow::Result<()> {
    let mut names = vec![
        "model.embed_tokens.weight".to_owned(),
        "model.norm.weight".to_owned(),
    ];
    if !config.tie_word_embeddings {
        names.push("lm_head.weight".to_owned());
    }
    for i in 0..config.num_hidden_layers {
        for part in [
            "self_attn.q_proj",
            "self_attn.k_proj",
            "self_attn.v_proj",
            "self_attn.o_proj",
            "mlp.gate_proj",
            "mlp.up_proj",
            "mlp.down_proj",
            "input_layernorm",
            "post_attention_layernorm",
        ] {
            names.push(format!("model.layers.{i}.{part}.weight"));
        }
    }
    match names.iter().find(|name| !vb.contains_tensor(name)) {
        Some(missing) => bail!("the checkpoint has no tensor `{missing}`"),
        None => Ok(()),
    }
}

/// The weight files: those the index names, else every `*.safetensors` in the directory.
fn safetensors_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if let Some(index) = read_json(&dir.join("model.safetensors.index.json"))? {
        let map = index
            .get("weight_map")
            .and_then(Value::as_object)
            .context("index has no weight_map")?;
        let mut files: Vec<PathBuf> = map
            .values()
            .filter_map(Value::as_str)
            .map(|f| dir.join(f))
            .collect();
        files.sort();
        files.dedup();
        return Ok(files);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("{} has no *.safetensors files", dir.display());
    }
    Ok(files)
}

/// The chat template: `chat_template.jinja`, else `tokenizer_config.json`'s `chat_template`
/// (a string, or a list of named templates of which `default` is used).
fn chat_template(dir: &Path, tokenizer_config: &Value) -> anyhow::Result<Option<String>> {
    let jinja = dir.join("chat_template.jinja");
    if jinja.is_file() {
        return Ok(Some(
            std::fs::read_to_string(&jinja)
                .with_context(|| format!("reading {}", jinja.display()))?,
        ));
    }
    Ok(match tokenizer_config.get("chat_template") {
        Some(Value::String(source)) => Some(source.clone()),
        Some(Value::Array(named)) => named
            .iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
            .or_else(|| named.first())
            .and_then(|t| t.get("template"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        _ => None,
    })
}

/// A special token from `tokenizer_config.json`: a string or `{"content": ...}`.
fn special_token(tokenizer_config: &Value, key: &str) -> Option<String> {
    match tokenizer_config.get(key)? {
        Value::String(s) => Some(s.clone()),
        other => other
            .get("content")
            .and_then(Value::as_str)
            .map(str::to_owned),
    }
}

/// A JSON file's contents, `None` when it does not exist.
fn read_json(path: &Path) -> anyhow::Result<Option<Value>> {
    if !path.is_file() {
        return Ok(None);
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    Ok(Some(value))
}
