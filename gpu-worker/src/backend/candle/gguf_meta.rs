//! Reading GGUF metadata: typed look-ups of the key-value pairs a GGUF file opens with.
//!
//! A leaf module: the loader, the models written here and the SentencePiece tokenizer builder
//! all read metadata through it, and it depends on none of them.

use anyhow::Context;
use candle_core::quantized::gguf_file::{Content, Value};

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

/// A metadata string, `None` when absent or of another type.
pub fn string(content: &Content, key: &str) -> Option<String> {
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
