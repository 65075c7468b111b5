//! What the gateway does with every field a request may carry: nothing is silently ignored.
//!
//! Each endpoint lists every field OpenAI defines for it (plus the extensions the gateway
//! honours), with one [`Rule`]: honoured (read and range-checked by the endpoint's typed body),
//! ignored on purpose (`user`, `metadata`, `store`, ...: hints that change no answer, as other
//! OpenAI-compatible servers treat them), or accepted only with the value that asks for what the
//! gateway does anyway (`best_of: 1`, `function_call: "none"`).
//! Any other value, and any field not listed (a typo such as `temprature` included), is a 400
//! naming the field. The official `openai` client sends only the fields its caller passed, so
//! refusing unknown ones costs it nothing.
//!
//! The same check descends into the objects nested in a body ([`Rule::Nested`]): each chat
//! message and content part (named as `messages[2].tool_calls`), and `stream_options`.

use crate::error::ApiError;
use serde_json::{Map, Value};

/// What the gateway does with one field.
#[derive(Debug, Clone, Copy)]
pub enum Rule {
    /// Read by the endpoint's typed body, which checks its type and range.
    Honoured,
    /// Honoured, and an object or a list (whose object elements are checked against these
    /// fields; other values are left to the typed body).
    Nested(&'static [&'static [Field]]),
    /// Accepted and ignored: a hint that changes no answer (the README lists these).
    Ignored,
    /// Accepted only with a value `accepts` allows, the value that asks for nothing the gateway
    /// does not do; any other value is refused with `because` (why it is not supported).
    Only {
        accepts: fn(&Value) -> bool,
        because: &'static str,
    },
}

/// A field's name and what the gateway does with it.
pub type Field = (&'static str, Rule);

use Rule::{Honoured, Ignored};

const FUNCTIONS: &str = "the deprecated `functions` API is not supported; use `tools`";

/// Fields both generation endpoints define.
const SHARED: &[Field] = &[
    ("model", Honoured),
    ("max_tokens", Honoured),
    ("temperature", Honoured),
    ("top_p", Honoured),
    ("seed", Honoured),
    ("stop", Honoured),
    ("stream", Honoured),
    ("stream_options", Rule::Nested(STREAM_OPTIONS)),
    ("frequency_penalty", Honoured),
    ("presence_penalty", Honoured),
    // Extensions (vLLM, TGI).
    ("top_k", Honoured),
    ("repetition_penalty", Honoured),
    ("user", Ignored),
    // Requests with the same key go to the same worker's prefix cache when it has room (the
    // queue's cache affinity); OpenAI's chat field, accepted on completions too.
    ("prompt_cache_key", Honoured),
    // Choices, each its own sequence with its own seed (1 to 8).
    ("n", Honoured),
    (
        "logit_bias",
        only(is_empty_object, "`logit_bias` is not supported"),
    ),
];

/// `POST /v1/chat/completions`, beyond [`SHARED`].
pub const CHAT: &[&[Field]] = &[
    SHARED,
    &[
        ("messages", Rule::Nested(MESSAGE)),
        ("max_completion_tokens", Honoured),
        ("metadata", Ignored),
        ("store", Ignored),
        ("safety_identifier", Ignored),
        // Offered to the model through its chat template; its calls come back parsed from its
        // own syntax, and `required` or a named function is enforced by constrained decoding.
        ("tools", Rule::Nested(TOOL)),
        ("tool_choice", Rule::Nested(TOOL_CHOICE)),
        ("parallel_tool_calls", Honoured),
        ("functions", only(is_null, FUNCTIONS)),
        ("function_call", only(is_none_choice, FUNCTIONS)),
        // `json_object` and `json_schema` are enforced token by token by the worker's grammar.
        ("response_format", Rule::Nested(RESPONSE_FORMAT)),
        // `true` for the chosen tokens' log probabilities; `top_logprobs` (0 to 20) more.
        ("logprobs", Honoured),
        ("top_logprobs", Honoured),
        (
            "modalities",
            only(is_text_modality, "only text output is supported"),
        ),
        ("audio", only(is_null, "audio output is not supported")),
        (
            "prediction",
            only(is_null, "predicted outputs are not supported"),
        ),
        (
            "reasoning_effort",
            only(is_null, "reasoning options are not supported"),
        ),
        ("verbosity", only(is_null, "`verbosity` is not supported")),
        (
            "web_search_options",
            only(is_null, "web search is not supported"),
        ),
        (
            "service_tier",
            only(
                is_default_tier,
                "only the `default` service tier exists here",
            ),
        ),
    ],
];

/// `POST /v1/completions`, beyond [`SHARED`].
pub const COMPLETIONS: &[&[Field]] = &[
    SHARED,
    &[
        ("prompt", Honoured),
        // Fill-in-the-middle with the model's own FIM tokens (the worker refuses a model
        // without them, naming `suffix`).
        ("suffix", Honoured),
        ("echo", only(is_false, "`echo` is not supported")),
        ("best_of", only(is_one, "only `best_of` = 1 is supported")),
        // A count (0 to 5): the chosen tokens' log probabilities and that many alternatives'.
        ("logprobs", Honoured),
    ],
];

/// One chat message.
pub const MESSAGE: &[&[Field]] = &[&[
    ("role", Honoured),
    ("content", Rule::Nested(CONTENT_PART)),
    // Given to the chat template, as Hugging Face and vLLM do; most templates do not use it.
    ("name", Honoured),
    // An assistant turn's calls, and the call a `tool` turn answers.
    ("tool_calls", Rule::Nested(TOOL_CALL)),
    ("tool_call_id", Honoured),
    ("function_call", only(is_null, FUNCTIONS)),
    (
        "refusal",
        only(is_null, "assistant refusals are not supported"),
    ),
    ("audio", only(is_null, "audio is not supported")),
]];

/// One of `tools`.
pub const TOOL: &[&[Field]] = &[&[("type", Honoured), ("function", Rule::Nested(FUNCTION))]];

/// A tool's `function`.
pub const FUNCTION: &[&[Field]] = &[&[
    ("name", Honoured),
    ("description", Honoured),
    // A JSON Schema: its own keywords are the grammar engine's to check, not field names.
    ("parameters", Honoured),
    ("strict", Honoured),
]];

/// `tool_choice` when it names a function.
pub const TOOL_CHOICE: &[&[Field]] = &[&[
    ("type", Honoured),
    ("function", Rule::Nested(NAMED_FUNCTION)),
]];

/// The function a `tool_choice` names.
pub const NAMED_FUNCTION: &[&[Field]] = &[&[("name", Honoured)]];

/// One of an assistant message's `tool_calls`.
pub const TOOL_CALL: &[&[Field]] = &[&[
    ("id", Honoured),
    ("type", Honoured),
    ("function", Rule::Nested(CALLED_FUNCTION)),
]];

/// The function of a call in the history.
pub const CALLED_FUNCTION: &[&[Field]] = &[&[("name", Honoured), ("arguments", Honoured)]];

/// `response_format`.
pub const RESPONSE_FORMAT: &[&[Field]] = &[&[
    ("type", Honoured),
    ("json_schema", Rule::Nested(JSON_SCHEMA)),
]];

/// `response_format.json_schema`.
pub const JSON_SCHEMA: &[&[Field]] = &[&[
    ("name", Honoured),
    ("description", Honoured),
    ("schema", Honoured),
    ("strict", Honoured),
]];

/// One part of a message's `content` list (its `type` is checked where it is read).
pub const CONTENT_PART: &[&[Field]] = &[&[("type", Honoured), ("text", Honoured)]];

/// `stream_options`.
pub const STREAM_OPTIONS: &[&[Field]] = &[&[
    ("include_usage", Honoured),
    (
        "include_obfuscation",
        only(is_false, "stream obfuscation is not supported"),
    ),
]];

const fn only(accepts: fn(&Value) -> bool, because: &'static str) -> Rule {
    Rule::Only { accepts, because }
}

/// Checks every field of `object` against `fields`; `path` prefixes the names a 400 gives
/// (`""` for a body, `"messages[2]."` for a message). Known fields are checked in the list's
/// order (so `tools` is named before `tool_choice`), then unknown ones.
pub fn check(object: &Map<String, Value>, fields: &[&[Field]], path: &str) -> Result<(), ApiError> {
    let known = || fields.iter().flat_map(|list| list.iter());
    for (name, rule) in known() {
        let Some(value) = object.get(*name) else {
            continue;
        };
        match rule {
            Rule::Nested(inner) => check_nested(value, inner, &format!("{path}{name}"))?,
            Rule::Only { accepts, because } if !accepts(value) => {
                return Err(refusal(path, name, because))
            }
            Rule::Honoured | Rule::Ignored | Rule::Only { .. } => {}
        }
    }
    match object
        .keys()
        .find(|name| !known().any(|(known, _)| known == name))
    {
        Some(unknown) => Err(refusal(path, unknown, "it is not a field of this API")),
        None => Ok(()),
    }
}

pub fn refusal(path: &str, name: &str, because: &str) -> ApiError {
    let param = format!("{path}{}", bounded(name));
    ApiError::BadRequest {
        message: format!("`{param}` is not supported: {because}"),
        param: Some(param),
    }
}

fn check_nested(value: &Value, fields: &[&[Field]], path: &str) -> Result<(), ApiError> {
    match value {
        Value::Object(object) => check(object, fields, &format!("{path}.")),
        Value::Array(elements) => {
            elements
                .iter()
                .enumerate()
                .try_for_each(|(i, element)| match element {
                    Value::Object(object) => check(object, fields, &format!("{path}[{i}].")),
                    _ => Ok(()),
                })
        }
        _ => Ok(()),
    }
}

/// A field name as echoed in an error: a client may send a megabyte-long key (and a worker's
/// event is untrusted too).
pub fn bounded(name: &str) -> String {
    const LONGEST: usize = 64;
    match name.char_indices().nth(LONGEST) {
        Some((end, _)) => format!("{}...", &name[..end]),
        None => name.to_owned(),
    }
}

/// Checks a body that must be a JSON object, before its fields are read.
pub fn check_body(body: &Value, fields: &[&[Field]]) -> Result<(), ApiError> {
    match body {
        Value::Object(object) => check(object, fields, ""),
        _ => Err(ApiError::BadRequest {
            message: "the request body must be a JSON object".into(),
            param: None,
        }),
    }
}

fn is_null(value: &Value) -> bool {
    value.is_null()
}

fn is_false(value: &Value) -> bool {
    matches!(value, Value::Null | Value::Bool(false))
}

fn is_one(value: &Value) -> bool {
    value.is_null() || value.as_u64() == Some(1)
}

fn is_empty_object(value: &Value) -> bool {
    value.is_null() || value.as_object().is_some_and(Map::is_empty)
}

/// `"none"`: no function is called.
fn is_none_choice(value: &Value) -> bool {
    value.is_null() || value.as_str() == Some("none")
}

fn is_text_modality(value: &Value) -> bool {
    value.is_null()
        || value
            .as_array()
            .is_some_and(|m| m == &[Value::from("text")])
}

fn is_default_tier(value: &Value) -> bool {
    value.is_null() || matches!(value.as_str(), Some("auto" | "default"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refused(fields: &[&[Field]], body: Value) -> Option<String> {
        match check_body(&body, fields) {
            Ok(()) => None,
            Err(ApiError::BadRequest { param, .. }) => Some(param.expect("a field is named")),
            Err(other) => panic!("{other:?}"),
        }
    }

    #[test]
    fn unsupported_chat_features_are_refused_by_name() {
        let cases = [
            json!({"functions": [{"name": "f"}]}),
            json!({"function_call": "auto"}),
            json!({"logit_bias": {"50256": -100}}),
            json!({"modalities": ["text", "audio"]}),
            json!({"service_tier": "flex"}),
            json!({"reasoning_effort": "low"}),
        ];
        for body in cases {
            let field = body.as_object().unwrap().keys().next().unwrap().clone();
            assert_eq!(refused(CHAT, body), Some(field));
        }
    }

    #[test]
    fn tools_and_formats_are_checked_field_by_field() {
        let tool = json!({"type": "function", "function": {"name": "f", "description": "d",
            "parameters": {"type": "object", "anyKeyword": 1}, "strict": true}});
        let body = json!({"tools": [tool], "parallel_tool_calls": false,
            "tool_choice": {"type": "function", "function": {"name": "f"}},
            "response_format": {"type": "json_schema", "json_schema": {"name": "n",
                "description": "d", "schema": {"x-anything": 1}, "strict": true}}});
        assert_eq!(refused(CHAT, body), None);
        let typo = json!({"type": "function", "function": {"name": "f", "paramters": {}}});
        assert_eq!(
            refused(CHAT, json!({"tools": [typo]})).as_deref(),
            Some("tools[0].function.paramters")
        );
        let body = json!({"response_format": {"type": "json_schema", "schema": {}}});
        assert_eq!(
            refused(CHAT, body).as_deref(),
            Some("response_format.schema")
        );
        let body = json!({"tool_choice": {"type": "function", "function": {"name": "f", "x": 1}}});
        assert_eq!(
            refused(CHAT, body).as_deref(),
            Some("tool_choice.function.x")
        );
    }

    #[test]
    fn neutral_values_and_hints_are_accepted() {
        let body = json!({
            "model": "m", "messages": [], "tool_choice": "none", "tools": null,
            "response_format": {"type": "text"}, "logit_bias": {}, "logprobs": true, "n": 2,
            "top_logprobs": 3,
            "modalities": ["text"], "service_tier": "auto", "user": "u", "metadata": {"k": "v"},
            "store": true, "frequency_penalty": 0.5, "presence_penalty": -0.5,
        });
        assert_eq!(refused(CHAT, body), None);
        let body = json!({"model": "m", "prompt": "p", "suffix": "}", "echo": false,
                          "best_of": 1, "logprobs": 2, "n": 3, "user": "u"});
        assert_eq!(refused(COMPLETIONS, body), None);
    }

    #[test]
    fn fields_of_the_other_endpoint_and_unknown_ones_are_refused() {
        assert_eq!(
            refused(COMPLETIONS, json!({"messages": []})).as_deref(),
            Some("messages")
        );
        assert_eq!(
            refused(CHAT, json!({"suffix": "x"})).as_deref(),
            Some("suffix")
        );
        assert_eq!(
            refused(CHAT, json!({"temprature": 0.2})).as_deref(),
            Some("temprature")
        );
        assert_eq!(
            refused(COMPLETIONS, json!({"top_logprobs": 2})).as_deref(),
            Some("top_logprobs")
        );
    }

    #[test]
    fn nested_fields_are_named_with_their_path() {
        let user = json!({"role": "user", "content": "hi", "name": "ann"});
        let call = json!({"role": "assistant", "content": null,
            "tool_calls": [{"id": "c", "type": "function",
                            "function": {"name": "f", "arguments": "{}", "extra": 1}}]});
        let body = json!({"messages": [user, call]});
        assert_eq!(
            refused(CHAT, body).as_deref(),
            Some("messages[1].tool_calls[0].function.extra")
        );
        let part = json!({"type": "text", "text": "a", "cache_control": {}});
        let body = json!({"messages": [{"role": "user", "content": ["x", part]}]});
        assert_eq!(
            refused(CHAT, body).as_deref(),
            Some("messages[0].content[1].cache_control")
        );
        let body = json!({"stream_options": {"include_usage": true, "include_obfuscation": true}});
        assert_eq!(
            refused(COMPLETIONS, body).as_deref(),
            Some("stream_options.include_obfuscation")
        );
        let body = json!({"stream_options": {"include_usage": true, "include_obfuscation": false}});
        assert_eq!(refused(COMPLETIONS, body), None);
    }

    #[test]
    fn the_first_field_of_the_list_is_named_whatever_the_bodys_order() {
        let body = json!({"function_call": "auto", "functions": [{}], "zzz": 1});
        assert_eq!(refused(CHAT, body).as_deref(), Some("functions"));
    }

    #[test]
    fn a_long_unknown_name_is_echoed_bounded() {
        let name = "x".repeat(10_000);
        let param = refused(CHAT, json!({ name: 1 })).unwrap();
        assert!(param.len() < 100, "{}", param.len());
    }

    #[test]
    fn a_body_that_is_not_an_object_is_refused() {
        assert!(check_body(&json!([1]), CHAT).is_err());
    }
}
