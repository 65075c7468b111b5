//! The `model_name` label value, shared instead of copied.

use crate::names::label;
use opentelemetry::{KeyValue, StringValue, Value};
use std::sync::Arc;

/// A model's `model_name` label, built once per request and shared by all of its recordings:
/// a clone counts a reference instead of copying the name.
#[derive(Clone, Debug)]
pub struct ModelLabel {
    name: Arc<str>,
    attribute: KeyValue,
}

impl ModelLabel {
    pub fn new(model_name: &str) -> Self {
        let name = Arc::<str>::from(model_name);
        let value = Value::String(StringValue::from(Arc::clone(&name)));
        Self {
            name,
            attribute: KeyValue::new(label::MODEL_NAME, value),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.name
    }

    pub(crate) fn attribute(&self) -> KeyValue {
        self.attribute.clone()
    }
}
