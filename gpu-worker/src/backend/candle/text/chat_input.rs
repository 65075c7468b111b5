//! A chat as a Hugging Face chat template reads it: `messages` and `tools` in the shapes
//! `transformers.apply_chat_template` passes, built from a plain chat or a [`Conversation`].
//!
//! - a message: `role`, `content` (null for an assistant turn that only called tools), `name`
//!   when given, `tool_calls` when it made some, `tool_call_id` on a tool result;
//! - a call: `{"id", "type": "function", "function": {"name", "arguments"}}`, the arguments
//!   parsed into an object when they are one (templates write them with `tojson`, as vLLM
//!   passes them), else the string as the client sent it;
//! - `tools`: the offered tools as `{"type": "function", "function": {...}}`, or none at all
//!   (`None`, as `transformers` passes it) when there are none.
//!
//! Every string in it, keys included, came from the client: [`ChatInput::try_map_strings`]
//! lets the caller escape them all before the template sees them.

use coder_nats::{ChatMessage, Conversation, ToolCall};
use serde::Serialize;
use serde_json::{Map, Value};

/// The template's `messages` and `tools`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatInput {
    pub messages: Vec<Value>,
    pub tools: Option<Vec<Value>>,
}

impl ChatInput {
    /// A plain chat: messages, no tools.
    pub fn from_messages(messages: &[ChatMessage]) -> Self {
        Self {
            messages: messages.iter().map(message_value).collect(),
            tools: None,
        }
    }

    /// A chat with the tools it offers (none when `tool_choice` is `none`) and the calls and
    /// results in its history.
    pub fn from_conversation(conversation: &Conversation) -> Self {
        let tools = conversation.offered_tools();
        Self {
            messages: conversation.messages.iter().map(message_value).collect(),
            tools: (!tools.is_empty())
                .then(|| tools.iter().map(|t| t.to_template_value()).collect()),
        }
    }

    /// Every string in it, keys included.
    pub fn strings(&self) -> Vec<&str> {
        let mut strings = Vec::new();
        let values = self.messages.iter().chain(self.tools.iter().flatten());
        for value in values {
            collect_strings(value, &mut strings);
        }
        strings
    }

    /// The same input with every string, keys included, passed through `map`.
    pub fn try_map_strings<E>(
        &self,
        map: &mut impl FnMut(&str) -> Result<String, E>,
    ) -> Result<Self, E> {
        let mut values = |values: &[Value]| -> Result<Vec<Value>, E> {
            values.iter().map(|v| map_strings(v, map)).collect()
        };
        Ok(Self {
            messages: values(&self.messages)?,
            tools: self.tools.as_deref().map(&mut values).transpose()?,
        })
    }
}

fn message_value(message: &ChatMessage) -> Value {
    let mut value = Map::new();
    value.insert("role".into(), Value::String(message.role.clone()));
    let content = match message.content.is_empty() && !message.tool_calls.is_empty() {
        true => Value::Null,
        false => Value::String(message.content.clone()),
    };
    value.insert("content".into(), content);
    if let Some(name) = &message.name {
        value.insert("name".into(), Value::String(name.clone()));
    }
    if !message.tool_calls.is_empty() {
        let calls = message.tool_calls.iter().map(call_value).collect();
        value.insert("tool_calls".into(), Value::Array(calls));
    }
    if let Some(id) = &message.tool_call_id {
        value.insert("tool_call_id".into(), Value::String(id.clone()));
    }
    Value::Object(value)
}

fn call_value(call: &ToolCall) -> Value {
    let arguments = match serde_json::from_str::<Value>(&call.arguments) {
        Ok(object @ Value::Object(_)) => object,
        _ => Value::String(call.arguments.clone()),
    };
    serde_json::json!({
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": arguments},
    })
}

fn collect_strings<'a>(value: &'a Value, strings: &mut Vec<&'a str>) {
    match value {
        Value::String(text) => strings.push(text),
        Value::Array(items) => items.iter().for_each(|v| collect_strings(v, strings)),
        Value::Object(map) => {
            for (key, value) in map {
                strings.push(key);
                collect_strings(value, strings);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

fn map_strings<E>(
    value: &Value,
    map: &mut impl FnMut(&str) -> Result<String, E>,
) -> Result<Value, E> {
    Ok(match value {
        Value::String(text) => Value::String(map(text)?),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| map_strings(v, map))
                .collect::<Result<_, E>>()?,
        ),
        Value::Object(object) => {
            let mut mapped = Map::new();
            for (key, value) in object {
                mapped.insert(map(key)?, map_strings(value, map)?);
            }
            Value::Object(mapped)
        }
        other => other.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use coder_nats::{Tool, ToolChoice};

    fn conversation() -> Conversation {
        let assistant = ChatMessage {
            tool_calls: vec![
                ToolCall {
                    id: "call_1".into(),
                    name: "get_weather".into(),
                    arguments: r#"{"city": "Paris"}"#.into(),
                },
                ToolCall {
                    id: "call_2".into(),
                    name: "get_weather".into(),
                    arguments: "not json".into(),
                },
            ],
            ..ChatMessage::new("assistant", "")
        };
        let result = ChatMessage {
            tool_call_id: Some("call_1".into()),
            ..ChatMessage::new("tool", "18 C")
        };
        Conversation {
            tools: vec![Tool {
                name: "get_weather".into(),
                description: None,
                parameters: None,
                strict: false,
            }],
            ..Conversation::plain(vec![ChatMessage::new("user", "Paris?"), assistant, result])
        }
    }

    #[test]
    fn calls_and_results_take_hugging_face_shapes() {
        let input = ChatInput::from_conversation(&conversation());
        assert_eq!(
            input.messages[1],
            serde_json::json!({"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
                {"id": "call_2", "type": "function",
                 "function": {"name": "get_weather", "arguments": "not json"}}]})
        );
        assert_eq!(
            input.messages[2],
            serde_json::json!({"role": "tool", "content": "18 C", "tool_call_id": "call_1"})
        );
        assert_eq!(input.tools.as_ref().map(Vec::len), Some(1));
    }

    #[test]
    fn without_offered_tools_there_is_no_tools_list() {
        let mut conversation = conversation();
        conversation.tool_choice = ToolChoice::None;
        assert_eq!(ChatInput::from_conversation(&conversation).tools, None);
        let plain = ChatInput::from_messages(&conversation.messages);
        assert_eq!(plain.tools, None);
    }

    #[test]
    fn every_string_and_key_is_mapped() {
        let input = ChatInput::from_conversation(&conversation());
        let upper = input
            .try_map_strings(&mut |s| Ok::<_, ()>(s.to_uppercase()))
            .unwrap();
        let strings = upper.strings();
        assert!(strings.contains(&"TOOL_CALL_ID") && strings.contains(&"PARIS"));
        assert!(
            strings.iter().all(|s| *s == s.to_uppercase()),
            "{strings:?}"
        );
        assert_eq!(strings.len(), input.strings().len());
    }
}
