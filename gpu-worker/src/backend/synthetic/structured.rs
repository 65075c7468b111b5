//! The synthetic backend's shaped answers: tool calls in Hermes syntax and JSON valid against a
//! schema, produced by walking the same grammar a real model is held to
//! ([`crate::backend::constraint`]) over the byte vocabulary.
//!
//! The walk is deterministic and closes structures as soon as the grammar lets it: inside a
//! JSON string it takes `"` if allowed; elsewhere the end of turn if allowed, else `}`, `]`,
//! `"`, else a digit unless one was just taken (the first one tried follows the request's
//! hash, the only variation, and any digit keeps the JSON valid); failing those, the lowest
//! allowed byte. So an object gets
//! its required properties only, a string is empty unless its schema needs more, a number is
//! one digit, and an ordinary schema's answer is a few dozen bytes.
//!
//! Which answer a conversation gets, as a model with tools would give it:
//! - `tool_choice: required` or a named function: the calls the grammar requires (one call to
//!   the first allowed tool);
//! - `tool_choice: auto` with tools offered: a call to the first tool when the last message is
//!   the user's, and an answer (JSON when `response_format` asks, else the corpus text) after
//!   a `tool` message, so a client's round trip (call, result, answer) works against it;
//! - otherwise JSON when `response_format` asks for it, else the corpus text.

use coder_nats::{Conversation, ToolChoice};

use crate::backend::constraint::{AllowedTokens, Constraints, BYTE_END_OF_TURN};
use crate::backend::BackendError;
use crate::tool_calls::format::ToolFormat;

/// The syntax the synthetic model writes its calls in (Qwen's).
pub const SYNTHETIC_TOOL_FORMAT: ToolFormat = ToolFormat::Hermes;

/// A shaped answer's text, and whether its grammar was complete within the budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Walked {
    pub text: String,
    pub complete: bool,
}

/// The shaped answer to `conversation` within `max_bytes`, or `None` when it answers in free
/// text. `hash` picks among equally valid answers.
pub fn answer(
    constraints: &Constraints,
    conversation: &Conversation,
    hash: u64,
    max_bytes: usize,
) -> Result<Option<Walked>, BackendError> {
    let shape = as_answered(conversation);
    let Some(mut constraint) = constraints.for_conversation(&shape, Some(SYNTHETIC_TOOL_FORMAT))?
    else {
        return Ok(None);
    };
    let mut walk = Walk::default();
    let mut complete = false;
    while walk.bytes.len() < max_bytes {
        let byte = match walk.pick(&constraint.allowed()?, hash) {
            None => {
                complete = true;
                break;
            }
            Some(byte) => byte,
        };
        constraint.advance(u32::from(byte))?;
        walk.push(byte);
    }
    // The grammars of this module spell UTF-8 only: a lossy conversion changes nothing.
    let text = String::from_utf8_lossy(&walk.bytes).into_owned();
    Ok(Some(Walked { text, complete }))
}

/// `conversation` with the choice the synthetic model makes for `tool_choice: auto`: call the
/// first tool after a user message, answer after anything else.
fn as_answered(conversation: &Conversation) -> Conversation {
    let mut shape = Conversation {
        messages: Vec::new(),
        ..conversation.clone()
    };
    let (ToolChoice::Auto, [first, ..]) = (&conversation.tool_choice, conversation.offered_tools())
    else {
        return shape;
    };
    let after_user = conversation
        .messages
        .last()
        .is_some_and(|message| message.role == "user");
    shape.tool_choice = match after_user {
        true => ToolChoice::Function(first.name.clone()),
        false => ToolChoice::None,
    };
    shape
}

/// The bytes walked so far, and whether they end inside a JSON string (the call syntax's own
/// text holds its quotes in pairs, so counting them tells).
#[derive(Default)]
struct Walk {
    bytes: Vec<u8>,
    in_string: bool,
    escaped: bool,
}

impl Walk {
    /// The byte to take among `allowed`, or `None` for the end of turn.
    fn pick(&self, allowed: &AllowedTokens, hash: u64) -> Option<u8> {
        let lowest = || allowed.ids().find_map(|id| u8::try_from(id).ok());
        let quote = u32::from(b'"');
        if self.in_string {
            return Some(b'"')
                .filter(|_| allowed.contains(quote))
                .or_else(lowest);
        }
        if allowed.contains(BYTE_END_OF_TURN) {
            return None;
        }
        // One digit per number: after one, the lowest byte (`,` before `.` and the digits).
        let after_digit = self.bytes.last().is_some_and(u8::is_ascii_digit);
        let first_digit = (hash % 10) as u8;
        let digits = (0..10)
            .map(|i| b'0' + (first_digit + i) % 10)
            .filter(|_| !after_digit);
        [b'}', b']', b'"']
            .into_iter()
            .chain(digits)
            .find(|&byte| allowed.contains(u32::from(byte)))
            .or_else(lowest)
    }

    fn push(&mut self, byte: u8) {
        match (self.escaped, byte) {
            (true, _) => self.escaped = false,
            (false, b'\\') if self.in_string => self.escaped = true,
            (false, b'"') => self.in_string = !self.in_string,
            _ => {}
        }
        self.bytes.push(byte);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::constraint::byte_token_env;
    use coder_nats::{ChatMessage, ResponseFormat, Tool};
    use serde_json::{json, Value};

    fn constraints() -> Constraints {
        Constraints::new(&byte_token_env()).unwrap()
    }

    fn weather() -> Tool {
        Tool {
            name: "get_weather".into(),
            description: None,
            parameters: Some(json!({"type": "object",
                "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                "required": ["city"]})),
            strict: false,
        }
    }

    fn asking(tool_choice: ToolChoice, last: ChatMessage) -> Conversation {
        Conversation {
            tools: vec![weather()],
            tool_choice,
            ..Conversation::plain(vec![ChatMessage::new("user", "weather?"), last])
        }
    }

    fn walk(conversation: &Conversation, hash: u64) -> Option<Walked> {
        answer(&constraints(), conversation, hash, 4096).unwrap()
    }

    const PARIS_CALL: &str =
        "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"\"}}\n</tool_call>";

    #[test]
    fn a_required_call_is_one_short_hermes_call_to_the_first_tool() {
        let required = asking(ToolChoice::Required, ChatMessage::new("user", "now"));

        let walked = walk(&required, 7).unwrap();

        assert_eq!(walked.text, PARIS_CALL);
        assert!(walked.complete);
    }

    #[test]
    fn auto_calls_after_a_user_message_and_answers_after_a_tool_result() {
        let after_user = asking(ToolChoice::Auto, ChatMessage::new("user", "now"));
        let mut result = ChatMessage::new("tool", "sunny");
        result.tool_call_id = Some("call_1".into());
        let after_tool = asking(ToolChoice::Auto, result);
        let mut json_after_tool = after_tool.clone();
        json_after_tool.response_format = ResponseFormat::JsonObject;

        assert_eq!(walk(&after_user, 1).unwrap().text, PARIS_CALL);
        assert_eq!(walk(&after_tool, 1), None, "free text");
        assert_eq!(walk(&json_after_tool, 1).unwrap().text, "{}");
        let none = asking(ToolChoice::None, ChatMessage::new("user", "now"));
        assert_eq!(walk(&none, 1), None);
    }

    /// The walk of a schema with nested objects, enums, arrays and numbers: JSON that the
    /// schema's own grammar accepts, with every required property.
    #[test]
    fn a_schema_walk_is_valid_json_with_the_required_properties() {
        let schema = json!({
            "type": "object",
            "properties": {
                "kind": {"enum": ["dog", "cat"]},
                "legs": {"type": "integer", "minimum": 0},
                "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
                "owner": {"type": "object", "properties": {"name": {"type": "string",
                    "minLength": 3}}, "required": ["name"]},
                "note": {"type": "string"}
            },
            "required": ["kind", "legs", "tags", "owner"]
        });
        let conversation = Conversation {
            response_format: ResponseFormat::JsonSchema {
                name: "pet".into(),
                schema,
                strict: true,
            },
            ..Conversation::plain(vec![ChatMessage::new("user", "a pet")])
        };
        for hash in [0, 3, 9] {
            let walked = walk(&conversation, hash).unwrap();
            assert!(walked.complete, "{}", &walked.text[..200]);

            let value: Value = serde_json::from_str(&walked.text).expect(&walked.text);
            assert!(["dog", "cat"].contains(&value["kind"].as_str().unwrap()));
            assert!(value["legs"].as_u64().is_some());
            assert_eq!(value["tags"].as_array().unwrap().len(), 2);
            assert!(value["owner"]["name"].as_str().unwrap().chars().count() >= 3);
            assert!(value.get("note").is_none(), "only required properties");
            let mut check = constraints()
                .for_conversation(&conversation, None)
                .unwrap()
                .unwrap();
            for byte in walked.text.bytes() {
                check.advance(u32::from(byte)).unwrap();
            }
            assert!(check.allowed().unwrap().contains(BYTE_END_OF_TURN));
        }
        let digits = |hash| walk(&conversation, hash).unwrap().text;
        assert_ne!(digits(3), digits(4), "the hash picks the digits");
    }

    #[test]
    fn a_small_budget_cuts_the_walk() {
        let required = asking(ToolChoice::Required, ChatMessage::new("user", "now"));

        let walked = answer(&constraints(), &required, 0, 12).unwrap().unwrap();

        assert_eq!(walked.text, &PARIS_CALL[..12]);
        assert!(!walked.complete);
    }
}
