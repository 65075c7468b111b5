//! Answers with a shape: the tools a model may call, the call a client requires, the JSON an
//! answer must be, and the tool calls a worker sends back.
//!
//! The gateway has checked every name and schema for shape (OpenAI's limits); whether a schema
//! is one the worker's grammar engine can enforce is the worker's to say, with an `error` event
//! naming the field (`response_format`, `tools[2].function.parameters`), which the gateway
//! answers with a 400.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::request::ChatMessage;
use crate::stable_hash::Fnv1a;

/// A chat that asks for more than free text: tools, a required call, a JSON answer, or a
/// history holding tool calls and their results.
///
/// Queued as [`Prompt::Conversation`](crate::Prompt::Conversation), a variant a worker older
/// than it refuses as poison, so such a chat is never answered as if its tools or format had
/// not been asked for. A plain chat stays [`Prompt::Chat`](crate::Prompt::Chat).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    pub messages: Vec<ChatMessage>,
    /// The functions the model may call, in the client's order (`tools[i]` names `i`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<Tool>,
    #[serde(default, skip_serializing_if = "ToolChoice::is_auto")]
    pub tool_choice: ToolChoice,
    /// Whether one answer may hold several calls (OpenAI's default: yes).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub parallel_tool_calls: bool,
    #[serde(default, skip_serializing_if = "ResponseFormat::is_text")]
    pub response_format: ResponseFormat,
}

impl Conversation {
    /// A plain chat with no tools and free text.
    pub fn plain(messages: Vec<ChatMessage>) -> Self {
        Self {
            messages,
            tools: Vec::new(),
            tool_choice: ToolChoice::Auto,
            parallel_tool_calls: true,
            response_format: ResponseFormat::Text,
        }
    }

    /// The tools the model is shown: none when `tool_choice` is `none`.
    pub fn offered_tools(&self) -> &[Tool] {
        match self.tool_choice {
            ToolChoice::None => &[],
            _ => &self.tools,
        }
    }

    /// Whether the answer must be tool calls (`required`, or a named function).
    pub fn requires_a_call(&self) -> bool {
        matches!(
            self.tool_choice,
            ToolChoice::Required | ToolChoice::Function(_)
        ) && !self.tools.is_empty()
    }
}

fn yes() -> bool {
    true
}

fn is_true(value: &bool) -> bool {
    *value
}

/// One function the model may call (OpenAI's `{"type": "function", "function": {...}}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A JSON Schema for the arguments object; absent means an object with no parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    /// OpenAI's `strict`: the arguments must follow `parameters` exactly. Constrained calls
    /// always do; unconstrained ones (`tool_choice: "auto"`) are parsed from free text.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub strict: bool,
}

impl Tool {
    /// The arguments' schema, with OpenAI's default for a function that declares none.
    pub fn parameters_schema(&self) -> Value {
        self.parameters
            .clone()
            .unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}}))
    }

    /// The tool as chat templates expect it (OpenAI's request shape, which is what Hugging Face
    /// templates are written against).
    pub fn to_template_value(&self) -> Value {
        let mut function = serde_json::Map::new();
        function.insert("name".into(), Value::String(self.name.clone()));
        if let Some(description) = &self.description {
            function.insert("description".into(), Value::String(description.clone()));
        }
        function.insert("parameters".into(), self.parameters_schema());
        serde_json::json!({"type": "function", "function": function})
    }
}

/// Which calls the answer may or must make.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", content = "name", rename_all = "snake_case")]
pub enum ToolChoice {
    /// Text, calls, or both, as the model chooses (parsed from its output).
    #[default]
    Auto,
    /// No calls: the tools are not shown to the model.
    None,
    /// One or more calls, enforced by constrained decoding.
    Required,
    /// Exactly this function (by name), enforced by constrained decoding.
    Function(String),
}

impl ToolChoice {
    pub fn is_auto(&self) -> bool {
        matches!(self, ToolChoice::Auto)
    }
}

/// The form of the answer's text.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    #[default]
    Text,
    /// Any JSON object (OpenAI's "JSON mode").
    JsonObject,
    /// JSON that validates against `schema`, enforced token by token.
    JsonSchema {
        name: String,
        schema: Value,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        strict: bool,
    },
}

impl ResponseFormat {
    pub fn is_text(&self) -> bool {
        matches!(self, ResponseFormat::Text)
    }
}

/// A call an assistant message made, as the client sends it back in the history.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The arguments as the model wrote them: JSON text (OpenAI's shape).
    pub arguments: String,
}

/// A piece of a tool call in a `token` event, in OpenAI's streaming shape: the first piece of
/// call `index` carries its `id` and `name`, later ones only more `arguments` text. The
/// arguments of one call are the concatenation of its pieces' in event order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCallDelta {
    /// The call's position among this choice's calls, from 0.
    pub index: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub arguments: String,
}

/// Adds one delta to the calls assembled so far: a delta for the next call starts it (it must
/// carry the call's id and name), one for an earlier call appends to its arguments. A delta that
/// skips ahead, or starts a call without its name, is dropped: only a confused or forged event
/// holds one. Returns whether the delta was taken.
pub fn assemble_tool_call(calls: &mut Vec<ToolCall>, delta: ToolCallDelta) -> bool {
    let index = delta.index as usize;
    let next = calls.len();
    match calls.get_mut(index) {
        Some(call) => {
            call.arguments.push_str(&delta.arguments);
            true
        }
        None if index == next => match (delta.id, delta.name) {
            (Some(id), Some(name)) => {
                calls.push(ToolCall {
                    id,
                    name,
                    arguments: delta.arguments,
                });
                true
            }
            _ => false,
        },
        None => false,
    }
}

/// The id of a choice's `index`th call: derived from the request, the choice and the index, so
/// a redelivered request names its calls as the first delivery did (the gateway resumes a
/// stream without repeating what its client saw).
pub fn tool_call_id(request: uuid::Uuid, choice: u32, index: u32) -> String {
    let mut hash = Fnv1a::new();
    hash.write(request.as_bytes());
    hash.write(&choice.to_le_bytes());
    hash.write(&index.to_le_bytes());
    format!("call_{:016x}", hash.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conversation_round_trips_and_a_plain_one_is_short() {
        let conversation = Conversation {
            tools: vec![Tool {
                name: "get_weather".into(),
                description: Some("Weather of a city".into()),
                parameters: Some(serde_json::json!({"type": "object"})),
                strict: true,
            }],
            tool_choice: ToolChoice::Function("get_weather".into()),
            parallel_tool_calls: false,
            response_format: ResponseFormat::JsonSchema {
                name: "w".into(),
                schema: serde_json::json!({"type": "object"}),
                strict: false,
            },
            ..Conversation::plain(Vec::new())
        };
        let json = serde_json::to_string(&conversation).unwrap();
        assert!(
            json.contains(r#""tool_choice":{"mode":"function","name":"get_weather"}"#),
            "{json}"
        );
        assert_eq!(
            serde_json::from_str::<Conversation>(&json).unwrap(),
            conversation
        );
        let plain = serde_json::to_string(&Conversation::plain(Vec::new())).unwrap();
        assert_eq!(plain, r#"{"messages":[]}"#);
        let back: Conversation = serde_json::from_str(&plain).unwrap();
        assert!(back.parallel_tool_calls);
    }

    #[test]
    fn tool_choice_none_shows_no_tools_and_required_needs_some() {
        let tool = Tool {
            name: "f".into(),
            description: None,
            parameters: None,
            strict: false,
        };
        let mut conversation = Conversation {
            tools: vec![tool],
            tool_choice: ToolChoice::None,
            ..Conversation::plain(Vec::new())
        };
        assert!(conversation.offered_tools().is_empty());
        assert!(!conversation.requires_a_call());
        conversation.tool_choice = ToolChoice::Required;
        assert_eq!(conversation.offered_tools().len(), 1);
        assert!(conversation.requires_a_call());
        assert_eq!(
            conversation.tools[0].to_template_value(),
            serde_json::json!({"type": "function", "function": {"name": "f",
                "parameters": {"type": "object", "properties": {}}}})
        );
    }

    #[test]
    fn deltas_assemble_into_calls_and_strays_are_dropped() {
        let delta = |index, head: Option<(&str, &str)>, arguments: &str| ToolCallDelta {
            index,
            id: head.map(|(id, _)| id.to_owned()),
            name: head.map(|(_, name)| name.to_owned()),
            arguments: arguments.to_owned(),
        };
        let mut calls = Vec::new();
        assert!(assemble_tool_call(
            &mut calls,
            delta(0, Some(("c0", "f")), "")
        ));
        assert!(assemble_tool_call(&mut calls, delta(0, None, "{\"a\":")));
        assert!(assemble_tool_call(&mut calls, delta(0, None, "1}")));
        assert!(!assemble_tool_call(
            &mut calls,
            delta(2, Some(("c2", "g")), "{}")
        ));
        assert!(!assemble_tool_call(&mut calls, delta(1, None, "{}")));
        assert!(assemble_tool_call(
            &mut calls,
            delta(1, Some(("c1", "g")), "{}")
        ));
        assert_eq!(
            calls,
            vec![
                ToolCall {
                    id: "c0".into(),
                    name: "f".into(),
                    arguments: r#"{"a":1}"#.into(),
                },
                ToolCall {
                    id: "c1".into(),
                    name: "g".into(),
                    arguments: "{}".into(),
                },
            ]
        );
    }

    #[test]
    fn call_ids_are_stable_and_distinct() {
        let request = uuid::Uuid::from_u128(7);
        assert_eq!(tool_call_id(request, 0, 0), tool_call_id(request, 0, 0));
        assert_ne!(tool_call_id(request, 0, 0), tool_call_id(request, 0, 1));
        assert_ne!(tool_call_id(request, 0, 0), tool_call_id(request, 1, 0));
        assert_eq!(tool_call_id(request, 0, 0).len(), "call_".len() + 16);
        // Pinned: a redelivered request, on a worker of another build, names its calls alike.
        assert_eq!(tool_call_id(request, 0, 0), "call_79e9ea47efff6880");
        assert_eq!(tool_call_id(request, 1, 2), "call_d8da0961a75a2bc3");
    }
}
