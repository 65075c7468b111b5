//! Which Hugging Face `config.json`s the candle llama model runs, and clear refusals for the
//! rest.
//!
//! IQuest-Coder-V1 (`"model_type": "iquestcoder"`, `IQuestCoderForCausalLM`) is a Llama
//! decoder: RMSNorm, GQA, SwiGLU, RoPE, untied `lm_head`. Its config is Llama's plus switches
//! that are off in every published checkpoint (`clip_qkv`, a sliding window); a checkpoint that
//! turns one on would decode wrongly on a plain Llama, so it is refused rather than run. The
//! Loop variant (`iquestloopcoder`, `IQuestLoopCoderForCausalLM`) runs its layer stack twice
//! with gated attention and is a different architecture altogether.

use anyhow::bail;
use candle_core::DType;
use candle_transformers::models::llama::LlamaConfig;
use serde_json::Value;

/// `model_type`s (and matching `architectures`) run as Llama.
const LLAMA_TYPES: &[(&str, &str)] = &[
    ("llama", "LlamaForCausalLM"),
    ("iquestcoder", "IQuestCoderForCausalLM"),
];

const LOOP_TYPE: &str = "iquestloopcoder";
const LOOP_ARCHITECTURE: &str = "IQuestLoopCoderForCausalLM";

/// A config this backend can run.
#[derive(Debug, Clone)]
pub struct CheckedConfig {
    pub llama: LlamaConfig,
    /// `model_type` as written (`llama`, `iquestcoder`).
    pub model_type: String,
    pub dtype: DType,
}

/// Checks `config` (a parsed `config.json`) and reads it as a Llama config.
pub fn check(config: &Value) -> anyhow::Result<CheckedConfig> {
    let model_type = config
        .get("model_type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let architectures: Vec<&str> = config
        .get("architectures")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();

    if model_type == LOOP_TYPE || architectures.contains(&LOOP_ARCHITECTURE) {
        bail!(
            "unsupported checkpoint: IQuest-Coder-V1 Loop (model_type `{LOOP_TYPE}`, \
             {LOOP_ARCHITECTURE}) runs its decoder layers twice with per-head gated attention \
             (`gate_projections`), which the candle backend does not implement; use a non-Loop \
             IQuest-Coder-V1 checkpoint (model_type `iquestcoder`)"
        );
    }
    let known = LLAMA_TYPES
        .iter()
        .any(|(t, a)| model_type == *t || architectures.contains(a));
    if !known {
        bail!(
            "unsupported checkpoint: model_type `{model_type}` (architectures {architectures:?}); \
             Hugging Face directories must hold a llama-shaped model (model_type `llama` or \
             `iquestcoder`); other architectures run from a GGUF file"
        );
    }
    refuse_active_switches(config)?;
    let llama: LlamaConfig = serde_json::from_value(config.clone())
        .map_err(|e| anyhow::anyhow!("config.json is not a llama config: {e}"))?;
    Ok(CheckedConfig {
        llama,
        model_type: model_type.to_owned(),
        dtype: dtype(config)?,
    })
}

/// Fields that would change the computation if set, which candle's llama ignores.
fn refuse_active_switches(config: &Value) -> anyhow::Result<()> {
    let on = |key: &str| {
        config
            .get(key)
            .is_some_and(|v| !matches!(v, Value::Null | Value::Bool(false)))
    };
    if let Some(clip) = config.get("clip_qkv").filter(|v| !v.is_null()) {
        bail!("unsupported checkpoint: clip_qkv = {clip} clamps Q/K/V, which the candle llama does not do (only null is supported)");
    }
    let layers = config
        .get("num_hidden_layers")
        .and_then(Value::as_u64)
        .unwrap_or(u64::MAX);
    let first_windowed = config
        .get("max_window_layers")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let window = config.get("sliding_window").filter(|v| !v.is_null());
    if let (true, Some(window)) = (on("use_sliding_window"), window) {
        if first_windowed < layers {
            bail!("unsupported checkpoint: sliding-window attention (sliding_window = {window}) is enabled; the candle llama attends over the whole prefix");
        }
    }
    for key in ["attention_bias", "mlp_bias"] {
        if on(key) {
            bail!("unsupported checkpoint: {key} is set, and the candle llama has no such biases");
        }
    }
    if let Some(scaling) = config.get("rope_scaling").filter(|v| !v.is_null()) {
        let kind = scaling
            .get("rope_type")
            .or_else(|| scaling.get("type"))
            .and_then(Value::as_str);
        if !matches!(kind, Some("llama3") | Some("default")) {
            bail!("unsupported checkpoint: rope_scaling {scaling} (only none and `llama3` are supported)");
        }
    }
    let hidden = config.get("hidden_size").and_then(Value::as_u64);
    let heads = config.get("num_attention_heads").and_then(Value::as_u64);
    if let (Some(head_dim), Some(hidden), Some(heads)) = (
        config.get("head_dim").and_then(Value::as_u64),
        hidden,
        heads,
    ) {
        if heads == 0 || head_dim * heads != hidden {
            bail!("unsupported checkpoint: head_dim {head_dim} is not hidden_size {hidden} / num_attention_heads {heads}, which the candle llama assumes");
        }
    }
    Ok(())
}

/// The weights' dtype from `torch_dtype` (or the newer `dtype`); f32 when unsaid.
fn dtype(config: &Value) -> anyhow::Result<DType> {
    let name = config
        .get("torch_dtype")
        .or_else(|| config.get("dtype"))
        .and_then(Value::as_str);
    Ok(match name {
        None | Some("float32") => DType::F32,
        Some("bfloat16") => DType::BF16,
        Some("float16") => DType::F16,
        Some(other) => {
            bail!("unsupported checkpoint: torch_dtype `{other}` (bfloat16, float16 or float32)")
        }
    })
}

/// The `eos_token_id` of a config (a number or a list of numbers).
pub fn eos_ids(config: &Value) -> Vec<u32> {
    match config.get("eos_token_id") {
        Some(Value::Array(ids)) => ids.iter().filter_map(as_u32).collect(),
        Some(id) => as_u32(id).into_iter().collect(),
        None => Vec::new(),
    }
}

fn as_u32(v: &Value) -> Option<u32> {
    v.as_u64().and_then(|n| u32::try_from(n).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn iquest() -> Value {
        json!({
            "architectures": ["IQuestCoderForCausalLM"], "model_type": "iquestcoder",
            "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
            "vocab_size": 100, "max_position_embeddings": 64, "rms_norm_eps": 1e-5,
            "rope_theta": 500000.0, "eos_token_id": [2, 7], "torch_dtype": "bfloat16",
            "clip_qkv": null, "use_sliding_window": false, "sliding_window": null,
            "max_window_layers": 0, "attention_bias": false, "rope_scaling": null
        })
    }

    #[test]
    fn iquestcoder_reads_as_llama() {
        let checked = check(&iquest()).unwrap();
        assert_eq!(checked.model_type, "iquestcoder");
        assert_eq!(checked.dtype, DType::BF16);
        assert_eq!(checked.llama.num_key_value_heads(), 2);
        assert_eq!(eos_ids(&iquest()), vec![2, 7]);
    }

    #[test]
    fn loop_variant_is_refused_by_type_or_architecture() {
        let mut by_type = iquest();
        by_type["model_type"] = json!("iquestloopcoder");
        let mut by_arch = iquest();
        by_arch["architectures"] = json!(["IQuestLoopCoderForCausalLM"]);
        for config in [by_type, by_arch] {
            let err = check(&config).unwrap_err().to_string();
            assert!(
                err.contains("iquestloopcoder") && err.contains("Loop"),
                "{err}"
            );
        }
    }

    #[test]
    fn active_switches_are_refused() {
        for (key, value) in [
            ("clip_qkv", json!(8.0)),
            ("attention_bias", json!(true)),
            ("head_dim", json!(32)),
            ("rope_scaling", json!({"type": "yarn", "factor": 4.0})),
        ] {
            let mut config = iquest();
            config[key] = value;
            let err = check(&config).unwrap_err().to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
        let mut windowed = iquest();
        windowed["use_sliding_window"] = json!(true);
        windowed["sliding_window"] = json!(4096);
        assert!(check(&windowed)
            .unwrap_err()
            .to_string()
            .contains("sliding"));
    }

    #[test]
    fn other_architectures_are_refused() {
        let mut config = iquest();
        config["model_type"] = json!("mixtral");
        config["architectures"] = json!(["MixtralForCausalLM"]);
        assert!(check(&config).unwrap_err().to_string().contains("mixtral"));
    }
}
