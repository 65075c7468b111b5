//! Tool calls as chat answers write them: whole in `message.tool_calls`, in pieces in a stream's
//! `delta.tool_calls` (the first piece of a call with its `id`, `type` and name, later ones with
//! more of its `arguments`), as OpenAI writes them.

use coder_nats::{ToolCall, ToolCallDelta};
use serde::Serialize;

const FUNCTION: &str = "function";

/// One call of a whole answer's message.
#[derive(Debug, Serialize)]
pub struct ToolCallBody {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: FunctionBody,
}

#[derive(Debug, Serialize)]
pub struct FunctionBody {
    pub name: String,
    /// JSON text, as the model wrote it.
    pub arguments: String,
}

impl From<ToolCall> for ToolCallBody {
    fn from(call: ToolCall) -> Self {
        Self {
            id: call.id,
            kind: FUNCTION,
            function: FunctionBody {
                name: call.name,
                arguments: call.arguments,
            },
        }
    }
}

/// One piece of a call in a stream chunk.
#[derive(Debug, Serialize)]
pub struct ToolCallDeltaBody {
    pub index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    pub function: FunctionDeltaBody,
}

#[derive(Debug, Serialize)]
pub struct FunctionDeltaBody {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Present on every piece (empty on a call's first when its arguments have not started),
    /// as OpenAI sends it: clients concatenate it.
    pub arguments: String,
}

impl From<ToolCallDelta> for ToolCallDeltaBody {
    fn from(delta: ToolCallDelta) -> Self {
        let starts_a_call = delta.id.is_some();
        Self {
            index: delta.index,
            id: delta.id,
            kind: starts_a_call.then_some(FUNCTION),
            function: FunctionDeltaBody {
                name: delta.name,
                arguments: delta.arguments,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn whole_and_streamed_calls_have_openais_shape() {
        let call = ToolCall {
            id: "call_1".into(),
            name: "f".into(),
            arguments: "{}".into(),
        };
        assert_eq!(
            serde_json::to_value(ToolCallBody::from(call)).unwrap(),
            json!({"id": "call_1", "type": "function",
                   "function": {"name": "f", "arguments": "{}"}})
        );
        let first = ToolCallDelta {
            index: 0,
            id: Some("call_1".into()),
            name: Some("f".into()),
            arguments: String::new(),
        };
        assert_eq!(
            serde_json::to_value(ToolCallDeltaBody::from(first)).unwrap(),
            json!({"index": 0, "id": "call_1", "type": "function",
                   "function": {"name": "f", "arguments": ""}})
        );
        let more = ToolCallDelta {
            index: 0,
            arguments: "{\"a\"".into(),
            ..ToolCallDelta::default()
        };
        assert_eq!(
            serde_json::to_value(ToolCallDeltaBody::from(more)).unwrap(),
            json!({"index": 0, "function": {"arguments": "{\"a\""}})
        );
    }
}
