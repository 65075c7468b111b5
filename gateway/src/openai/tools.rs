//! Chat's tool fields: `tools`, `tool_choice`, `parallel_tool_calls`, and the calls and results
//! a conversation's history holds (`messages[i].tool_calls`, `messages[i].tool_call_id`).
//!
//! Everything is checked here for shape, with OpenAI's limits, and a 400 names the exact place
//! (`tools[1].function.name`). Whether a tool's `parameters` schema is one the worker's grammar
//! engine can enforce is the worker's to say (its error names the field too).

use super::fields::bounded;
use crate::error::ApiError;
use coder_nats::{Tool, ToolCall, ToolChoice};
use serde_json::{Map, Value};

/// The most tools one request may offer (OpenAI's limit).
pub const MAX_TOOLS: usize = 128;
/// The longest function name (OpenAI's limit), `[A-Za-z0-9_-]` only.
pub const MAX_NAME_BYTES: usize = 64;
/// The longest call id accepted in a history.
pub const MAX_CALL_ID_BYTES: usize = 256;

/// The request's `tools`, checked.
pub fn parse_tools(tools: Option<&Value>) -> Result<Vec<Tool>, ApiError> {
    let tools = match tools {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(tools)) => tools,
        Some(_) => return Err(ApiError::bad_request("tools", "`tools` must be a list")),
    };
    if tools.len() > MAX_TOOLS {
        return Err(ApiError::bad_request(
            "tools",
            format!("at most {MAX_TOOLS} tools, got {}", tools.len()),
        ));
    }
    let mut parsed: Vec<Tool> = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        let at = format!("tools[{i}]");
        let tool = object(tool, &at)?;
        expect_function_type(tool, &at)?;
        let at = format!("{at}.function");
        let function = object(required(tool, "function", &at)?, &at)?;
        let name = function_name(function.get("name"), &format!("{at}.name"))?;
        if parsed.iter().any(|other| other.name == name) {
            return Err(ApiError::bad_request(
                format!("{at}.name"),
                format!("two tools are named `{name}`"),
            ));
        }
        let description =
            optional_string(function.get("description"), &format!("{at}.description"))?;
        let parameters = match function.get("parameters") {
            None | Some(Value::Null) => None,
            Some(schema @ Value::Object(_)) => Some(schema.clone()),
            Some(_) => {
                return Err(ApiError::bad_request(
                    format!("{at}.parameters"),
                    format!("`{at}.parameters` must be a JSON Schema object"),
                ))
            }
        };
        let strict = optional_bool(function.get("strict"), &format!("{at}.strict"))?;
        parsed.push(Tool {
            name,
            description,
            parameters,
            strict: strict.unwrap_or(false),
        });
    }
    Ok(parsed)
}

/// The request's `tool_choice`, checked against its `tools`: `required` and a named function
/// need tools, and the name must be one of them. Absent: `auto` (OpenAI's default with tools).
pub fn parse_tool_choice(choice: Option<&Value>, tools: &[Tool]) -> Result<ToolChoice, ApiError> {
    const FIELD: &str = "tool_choice";
    let choice = match choice {
        None | Some(Value::Null) => return Ok(ToolChoice::Auto),
        Some(Value::String(mode)) => match mode.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            other => {
                return Err(ApiError::bad_request(
                    FIELD,
                    format!(
                        "`tool_choice` must be `none`, `auto`, `required` or a function, got `{}`",
                        bounded(other)
                    ),
                ))
            }
        },
        Some(Value::Object(named)) => {
            expect_function_type(named, FIELD)?;
            let at = "tool_choice.function";
            let function = object(required(named, "function", at)?, at)?;
            ToolChoice::Function(function_name(
                function.get("name"),
                "tool_choice.function.name",
            )?)
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                FIELD,
                "`tool_choice` must be a string or a function object",
            ))
        }
    };
    match &choice {
        ToolChoice::Required | ToolChoice::Function(_) if tools.is_empty() => {
            Err(ApiError::bad_request(
                FIELD,
                "`tool_choice` asks for a call, but the request offers no `tools`",
            ))
        }
        ToolChoice::Function(name) if !tools.iter().any(|tool| &tool.name == name) => {
            Err(ApiError::bad_request(
                "tool_choice.function.name",
                format!("`{name}` is not one of the request's `tools`"),
            ))
        }
        _ => Ok(choice),
    }
}

/// `parallel_tool_calls`: a boolean, `true` when absent.
pub fn parse_parallel_tool_calls(value: Option<&Value>) -> Result<bool, ApiError> {
    Ok(optional_bool(value, "parallel_tool_calls")?.unwrap_or(true))
}

/// `messages[index].tool_calls` of an assistant turn.
pub fn parse_history_calls(
    calls: Option<&Value>,
    role: &str,
    index: usize,
) -> Result<Vec<ToolCall>, ApiError> {
    let at = format!("messages[{index}].tool_calls");
    let calls = match calls {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(calls)) if role == "assistant" => calls,
        Some(Value::Array(_)) => {
            return Err(ApiError::bad_request(
                &at,
                format!("only assistant messages hold `tool_calls`, not `{role}` ones"),
            ))
        }
        Some(_) => return Err(ApiError::bad_request(&at, format!("`{at}` must be a list"))),
    };
    calls
        .iter()
        .enumerate()
        .map(|(i, call)| {
            let at = format!("{at}[{i}]");
            let call = object(call, &at)?;
            expect_function_type(call, &at)?;
            let id = call_id(call.get("id"), &format!("{at}.id"))?;
            let at = format!("{at}.function");
            let function = object(required(call, "function", &at)?, &at)?;
            let name = function_name(function.get("name"), &format!("{at}.name"))?;
            let arguments = match function.get("arguments") {
                Some(Value::String(arguments)) => arguments.clone(),
                _ => {
                    return Err(ApiError::bad_request(
                        format!("{at}.arguments"),
                        format!("`{at}.arguments` must be a string of JSON"),
                    ))
                }
            };
            Ok(ToolCall {
                id,
                name,
                arguments,
            })
        })
        .collect()
}

/// `messages[index].tool_call_id`: required on a `tool` turn, refused on any other.
pub fn parse_tool_call_id(
    id: Option<&Value>,
    role: &str,
    index: usize,
) -> Result<Option<String>, ApiError> {
    let at = format!("messages[{index}].tool_call_id");
    match (role, id) {
        ("tool", None | Some(Value::Null)) => Err(ApiError::bad_request(
            &at,
            "a `tool` message needs the `tool_call_id` of the call it answers",
        )),
        ("tool", id) => call_id(id, &at).map(Some),
        (_, None | Some(Value::Null)) => Ok(None),
        (role, Some(_)) => Err(ApiError::bad_request(
            &at,
            format!("only `tool` messages have a `tool_call_id`, not `{role}` ones"),
        )),
    }
}

fn object<'a>(value: &'a Value, at: &str) -> Result<&'a Map<String, Value>, ApiError> {
    value
        .as_object()
        .ok_or_else(|| ApiError::bad_request(at, format!("`{at}` must be an object")))
}

fn required<'a>(
    object: &'a Map<String, Value>,
    key: &str,
    at: &str,
) -> Result<&'a Value, ApiError> {
    object
        .get(key)
        .ok_or_else(|| ApiError::bad_request(at, format!("`{at}` is required")))
}

/// `type` must be `function` (the only kind of tool there is here; OpenAI's `custom` tools are
/// refused by name).
fn expect_function_type(object: &Map<String, Value>, at: &str) -> Result<(), ApiError> {
    match object.get("type") {
        Some(Value::String(kind)) if kind == "function" => Ok(()),
        Some(Value::String(kind)) => Err(ApiError::bad_request(
            format!("{at}.type"),
            format!(
                "only `function` tools are supported, got `{}`",
                bounded(kind)
            ),
        )),
        _ => Err(ApiError::bad_request(
            format!("{at}.type"),
            format!("`{at}.type` must be `function`"),
        )),
    }
}

/// A function name: 1 to 64 of `[A-Za-z0-9_-]`, as OpenAI requires.
fn function_name(value: Option<&Value>, at: &str) -> Result<String, ApiError> {
    let name = match value {
        Some(Value::String(name)) => name,
        _ => {
            return Err(ApiError::bad_request(
                at,
                format!("`{at}` must be a string"),
            ))
        }
    };
    let valid = (1..=MAX_NAME_BYTES).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !valid {
        return Err(ApiError::bad_request(
            at,
            format!("`{at}` must be 1 to {MAX_NAME_BYTES} of a-z, A-Z, 0-9, `_` and `-`"),
        ));
    }
    Ok(name.clone())
}

fn call_id(value: Option<&Value>, at: &str) -> Result<String, ApiError> {
    match value {
        Some(Value::String(id)) if (1..=MAX_CALL_ID_BYTES).contains(&id.len()) => Ok(id.clone()),
        _ => Err(ApiError::bad_request(
            at,
            format!("`{at}` must be a string of 1 to {MAX_CALL_ID_BYTES} bytes"),
        )),
    }
}

fn optional_string(value: Option<&Value>, at: &str) -> Result<Option<String>, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(ApiError::bad_request(
            at,
            format!("`{at}` must be a string"),
        )),
    }
}

pub(super) fn optional_bool(value: Option<&Value>, at: &str) -> Result<Option<bool>, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(flag)) => Ok(Some(*flag)),
        Some(_) => Err(ApiError::bad_request(
            at,
            format!("`{at}` must be a boolean"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn param(error: ApiError) -> String {
        match error {
            ApiError::BadRequest { param, .. } => param.unwrap_or_default(),
            other => panic!("{other:?}"),
        }
    }

    fn weather() -> Value {
        json!([{"type": "function", "function": {"name": "get_weather", "description": "d",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                "strict": true}}])
    }

    #[test]
    fn tools_are_read_in_openais_shape() {
        let tools = parse_tools(Some(&weather())).unwrap();
        assert_eq!(tools.len(), 1);
        assert_eq!(tools[0].name, "get_weather");
        assert_eq!(tools[0].description.as_deref(), Some("d"));
        assert!(tools[0].strict);
        assert!(parse_tools(None).unwrap().is_empty());
    }

    #[test]
    fn each_bad_tool_names_its_place() {
        let cases = [
            (json!({}), "tools"),
            (json!([1]), "tools[0]"),
            (json!([{"type": "custom", "function": {}}]), "tools[0].type"),
            (json!([{"type": "function"}]), "tools[0].function"),
            (
                json!([{"type": "function", "function": {"name": "a b"}}]),
                "tools[0].function.name",
            ),
            (
                json!([{"type": "function", "function": {"name": "x".repeat(65)}}]),
                "tools[0].function.name",
            ),
            (
                json!([{"type": "function", "function": {"name": "f", "parameters": "{}"}}]),
                "tools[0].function.parameters",
            ),
            (
                json!([{"type": "function", "function": {"name": "f", "description": 3}}]),
                "tools[0].function.description",
            ),
            (
                json!([{"type": "function", "function": {"name": "f"}},
                       {"type": "function", "function": {"name": "f"}}]),
                "tools[1].function.name",
            ),
        ];
        for (tools, place) in cases {
            assert_eq!(
                param(parse_tools(Some(&tools)).unwrap_err()),
                place,
                "{tools}"
            );
        }
        let many = Value::Array(vec![weather()[0].clone(); MAX_TOOLS + 1]);
        assert_eq!(param(parse_tools(Some(&many)).unwrap_err()), "tools");
    }

    #[test]
    fn tool_choice_is_checked_against_the_tools() {
        let tools = parse_tools(Some(&weather())).unwrap();
        let choice = |value: Value, tools: &[Tool]| parse_tool_choice(Some(&value), tools);
        assert_eq!(choice(json!("auto"), &tools).unwrap(), ToolChoice::Auto);
        assert_eq!(choice(json!("none"), &[]).unwrap(), ToolChoice::None);
        assert_eq!(
            choice(json!("required"), &tools).unwrap(),
            ToolChoice::Required
        );
        let named = json!({"type": "function", "function": {"name": "get_weather"}});
        assert_eq!(
            choice(named, &tools).unwrap(),
            ToolChoice::Function("get_weather".into())
        );
        assert_eq!(parse_tool_choice(None, &tools).unwrap(), ToolChoice::Auto);

        assert_eq!(
            param(choice(json!("required"), &[]).unwrap_err()),
            "tool_choice"
        );
        assert_eq!(
            param(choice(json!("always"), &tools).unwrap_err()),
            "tool_choice"
        );
        let unknown = json!({"type": "function", "function": {"name": "other"}});
        assert_eq!(
            param(choice(unknown, &tools).unwrap_err()),
            "tool_choice.function.name"
        );
        let allowed = json!({"type": "allowed_tools", "allowed_tools": {}});
        assert_eq!(
            param(choice(allowed, &tools).unwrap_err()),
            "tool_choice.type"
        );
    }

    #[test]
    fn history_calls_belong_to_assistants_and_results_to_tools() {
        let calls = json!([{"id": "call_1", "type": "function",
                            "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]);
        let parsed = parse_history_calls(Some(&calls), "assistant", 1).unwrap();
        assert_eq!(parsed[0].id, "call_1");
        assert_eq!(parsed[0].arguments, r#"{"city":"Paris"}"#);
        assert_eq!(
            param(parse_history_calls(Some(&calls), "user", 1).unwrap_err()),
            "messages[1].tool_calls"
        );
        let object_arguments = json!([{"id": "c", "type": "function",
                                       "function": {"name": "f", "arguments": {}}}]);
        assert_eq!(
            param(parse_history_calls(Some(&object_arguments), "assistant", 0).unwrap_err()),
            "messages[0].tool_calls[0].function.arguments"
        );

        assert_eq!(
            parse_tool_call_id(Some(&json!("call_1")), "tool", 2).unwrap(),
            Some("call_1".into())
        );
        assert_eq!(
            param(parse_tool_call_id(None, "tool", 2).unwrap_err()),
            "messages[2].tool_call_id"
        );
        assert_eq!(
            param(parse_tool_call_id(Some(&json!("c")), "user", 2).unwrap_err()),
            "messages[2].tool_call_id"
        );
        assert_eq!(parse_tool_call_id(None, "user", 2).unwrap(), None);
    }
}
