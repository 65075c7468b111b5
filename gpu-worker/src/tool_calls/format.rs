//! The call syntax of each model family the worker runs.
//!
//! - **Hermes** (Qwen2.5, Qwen3, IQuest-Coder): each call is
//!   `<tool_call>\n{"name": "f", "arguments": {...}}\n</tool_call>`, several one after another.
//! - **Llama 3** (3.1 and later, JSON form): one JSON object `{"name": "f", "parameters": {...}}`
//!   as the whole answer, optionally after `<|python_tag|>`.

/// How a model family writes its tool calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolFormat {
    Hermes,
    Llama3Json,
}

impl ToolFormat {
    /// The format a chat template renders tools for, or `None` when the template shows no tools
    /// to the model (a request with tools is then refused, naming `tools`).
    pub fn detect(template_source: &str) -> Option<Self> {
        if !template_source.contains("tools") {
            return None;
        }
        if template_source.contains("<tool_call>") {
            Some(ToolFormat::Hermes)
        } else if template_source.contains("<|python_tag|>")
            || template_source.contains("\"parameters\"")
        {
            Some(ToolFormat::Llama3Json)
        } else {
            None
        }
    }

    /// The text before one call's JSON object.
    pub fn call_open(self) -> &'static str {
        match self {
            ToolFormat::Hermes => "<tool_call>\n",
            ToolFormat::Llama3Json => "",
        }
    }

    /// The text after one call's JSON object.
    pub fn call_close(self) -> &'static str {
        match self {
            ToolFormat::Hermes => "\n</tool_call>",
            ToolFormat::Llama3Json => "",
        }
    }

    /// The key of the arguments object in a call's JSON.
    pub fn arguments_key(self) -> &'static str {
        match self {
            ToolFormat::Hermes => "arguments",
            ToolFormat::Llama3Json => "parameters",
        }
    }

    /// Whether one answer can hold several calls in this syntax.
    pub fn allows_several_calls(self) -> bool {
        matches!(self, ToolFormat::Hermes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qwen_and_llama_templates_are_told_apart() {
        let qwen = "{%- if tools %}<tools>{{ tool | tojson }}</tools> <tool_call>{% endif %}";
        let llama = "{%- if tools %}{\"name\": ..., \"parameters\": ...}<|python_tag|>{% endif %}";
        assert_eq!(ToolFormat::detect(qwen), Some(ToolFormat::Hermes));
        assert_eq!(ToolFormat::detect(llama), Some(ToolFormat::Llama3Json));
        assert_eq!(ToolFormat::detect("{{ messages }}"), None);
    }
}
