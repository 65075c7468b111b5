//! Grammars built from conversations, checked over the byte vocabulary: what each accepts and
//! refuses, byte by byte, and the field a schema the engine refuses is reported by.

use coder_nats::{ChatMessage, Conversation, ResponseFormat, Tool, ToolChoice};
use serde_json::{json, Value};

use super::*;

fn constraints() -> Constraints {
    Constraints::new(&byte_token_env()).unwrap()
}

fn tool(name: &str, parameters: Value) -> Tool {
    Tool {
        name: name.into(),
        description: None,
        parameters: Some(parameters),
        strict: false,
    }
}

fn weather() -> Tool {
    tool(
        "get_weather",
        json!({"type": "object", "properties": {"city": {"type": "string"},
            "unit": {"enum": ["c", "f"]}}, "required": ["city"]}),
    )
}

fn conversation(tools: Vec<Tool>, tool_choice: ToolChoice) -> Conversation {
    Conversation {
        tools,
        tool_choice,
        ..Conversation::plain(vec![ChatMessage::new("user", "hi")])
    }
}

fn answering(response_format: ResponseFormat) -> Conversation {
    Conversation {
        response_format,
        ..Conversation::plain(vec![ChatMessage::new("user", "hi")])
    }
}

fn schema(schema: Value) -> ResponseFormat {
    ResponseFormat::JsonSchema {
        name: "answer".into(),
        schema,
        strict: true,
    }
}

/// Whether the grammar of `conversation` takes `text` as a whole answer: every byte allowed in
/// turn, and then the end of turn.
fn accepts(conversation: &Conversation, text: &str) -> bool {
    let mut constraint = constraints()
        .for_conversation(conversation, Some(ToolFormat::Hermes))
        .unwrap()
        .expect("the conversation has a grammar");
    for &byte in text.as_bytes() {
        if !constraint.allowed().unwrap().contains(u32::from(byte)) {
            return false;
        }
        constraint.advance(u32::from(byte)).unwrap();
    }
    constraint.allowed().unwrap().contains(BYTE_END_OF_TURN)
}

fn call(name: &str, arguments: &str) -> String {
    format!("<tool_call>\n{{\"name\": \"{name}\", \"arguments\": {arguments}}}\n</tool_call>")
}

fn refused_field(conversation: &Conversation) -> String {
    match constraints().for_conversation(conversation, Some(ToolFormat::Hermes)) {
        Err(BackendError::InvalidField { param, .. }) => param.into_owned(),
        Err(other) => panic!("not a field error: {other}"),
        Ok(_) => panic!("accepted"),
    }
}

#[test]
fn required_takes_one_or_more_calls_to_the_offered_tools_with_valid_arguments() {
    let time = tool("get_time", json!({"type": "object", "properties": {}}));
    let required = conversation(vec![weather(), time], ToolChoice::Required);
    let paris = call("get_weather", r#"{"city": "Paris"}"#);
    let now = call("get_time", "{}");

    assert!(accepts(&required, &paris));
    assert!(accepts(&required, &format!("{paris}\n{now}")));
    assert!(accepts(&required, &format!("{paris}\n{now}\n")));
    assert!(accepts(
        &required,
        &call("get_weather", r#"{"city": "Oslo", "unit": "c"}"#)
    ));
    assert!(!accepts(&required, ""), "a call is required");
    assert!(!accepts(&required, "Paris is sunny."));
    assert!(!accepts(&required, &call("get_news", "{}")), "unknown tool");
    assert!(
        !accepts(&required, &call("get_weather", "{}")),
        "city is required"
    );
    assert!(!accepts(
        &required,
        &call("get_weather", r#"{"city": "Oslo", "unit": "k"}"#)
    ));
}

#[test]
fn parallel_tool_calls_false_takes_exactly_one_call() {
    let mut single = conversation(vec![weather()], ToolChoice::Required);
    single.parallel_tool_calls = false;
    let paris = call("get_weather", r#"{"city": "Paris"}"#);

    assert!(accepts(&single, &paris));
    assert!(
        accepts(&single, &format!("{paris}\n")),
        "a newline may end it"
    );
    assert!(!accepts(&single, &format!("{paris}\n{paris}")));
    assert!(!accepts(&single, &format!("{paris}\n\n")));
}

#[test]
fn a_named_function_is_the_only_call_allowed() {
    let time = tool("get_time", json!({"type": "object"}));
    let named = conversation(
        vec![weather(), time],
        ToolChoice::Function("get_time".into()),
    );

    assert!(accepts(&named, &call("get_time", "{}")));
    assert!(!accepts(
        &named,
        &call("get_weather", r#"{"city": "Paris"}"#)
    ));
    let unknown = conversation(vec![weather()], ToolChoice::Function("nope".into()));
    assert_eq!(refused_field(&unknown), "tool_choice");
}

#[test]
fn llama3_calls_are_bare_objects_with_parameters() {
    let required = conversation(vec![weather()], ToolChoice::Required);
    let grammar = grammar::for_conversation(&required, Some(ToolFormat::Llama3Json))
        .unwrap()
        .unwrap();
    let mut constraint = constraints().for_grammar(&grammar).unwrap();
    for &byte in br#"{"name": "get_weather", "parameters": {"city": "Rome"}}"# {
        assert!(constraint.allowed().unwrap().contains(u32::from(byte)));
        constraint.advance(u32::from(byte)).unwrap();
    }
    let end = constraint.allowed().unwrap();
    assert_eq!(end.ids().collect::<Vec<_>>(), [BYTE_END_OF_TURN]);
}

#[test]
fn json_object_takes_any_compact_object_and_nothing_else() {
    let object = answering(ResponseFormat::JsonObject);

    assert!(accepts(&object, r#"{"a": [1, "x", {"b": null}]}"#));
    assert!(accepts(&object, "{}"));
    assert!(!accepts(&object, "[1]"));
    assert!(!accepts(&object, r#""text""#));
    assert!(!accepts(&object, r#"{"a": 1} "#), "no trailing whitespace");
    assert!(!accepts(&object, "{\n  \"a\": 1\n}"), "compact layout");
}

#[test]
fn json_schema_holds_nested_objects_enums_arrays_and_required_properties() {
    let nested = answering(schema(json!({
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "kind": {"enum": ["cat", "dog"]},
            "tags": {"type": "array", "items": {"type": "integer"}},
            "owner": {
                "type": "object",
                "properties": {"age": {"type": "integer"}},
                "required": ["age"],
                "additionalProperties": false
            }
        },
        "required": ["name", "kind", "owner"],
        "additionalProperties": false
    })));

    let valid = r#"{"name": "Rex", "kind": "dog", "tags": [1, 2], "owner": {"age": 40}}"#;
    assert!(accepts(&nested, valid));
    assert!(accepts(
        &nested,
        r#"{"name": "Tom", "kind": "cat", "owner": {"age": 3}}"#
    ));
    assert!(!accepts(
        &nested,
        r#"{"name": "Rex", "kind": "cow", "owner": {"age": 40}}"#
    ));
    assert!(!accepts(&nested, r#"{"name": "Rex", "kind": "dog"}"#));
    assert!(!accepts(
        &nested,
        r#"{"name": "Rex", "kind": "dog", "tags": ["a"], "owner": {"age": 40}}"#
    ));
    assert!(!accepts(
        &nested,
        r#"{"name": "Rex", "kind": "dog", "owner": {"age": 40, "x": 1}}"#
    ));
}

#[test]
fn auto_with_tools_and_a_json_format_takes_either_and_free_text_has_no_grammar() {
    let mut either = conversation(vec![weather()], ToolChoice::Auto);
    either.response_format = ResponseFormat::JsonObject;

    assert!(accepts(
        &either,
        &call("get_weather", r#"{"city": "Paris"}"#)
    ));
    assert!(accepts(&either, r#"{"answer": 1}"#));
    assert!(!accepts(&either, "plain text"));
    let no_grammar = |conversation: &Conversation| {
        constraints()
            .for_conversation(conversation, Some(ToolFormat::Hermes))
            .unwrap()
            .is_none()
    };
    assert!(no_grammar(&conversation(vec![weather()], ToolChoice::Auto)));
    assert!(no_grammar(&conversation(vec![weather()], ToolChoice::None)));
    let mut none_but_json = conversation(vec![weather()], ToolChoice::None);
    none_but_json.response_format = ResponseFormat::JsonObject;
    assert!(accepts(&none_but_json, "{}"));
    assert!(!accepts(&none_but_json, &call("get_weather", "{}")));
}

#[test]
fn a_schema_the_engine_cannot_enforce_is_refused_by_its_field() {
    let unsupported = json!({"type": "object", "if": {"required": ["a"]}});
    let time = tool("get_time", unsupported.clone());
    assert_eq!(
        refused_field(&conversation(vec![weather(), time], ToolChoice::Required)),
        "tools[1].function.parameters"
    );
    assert_eq!(
        refused_field(&answering(schema(unsupported))),
        "response_format"
    );
    assert_eq!(
        refused_field(&answering(schema(
            json!({"type": "integer", "minimum": 5, "maximum": 1})
        ))),
        "response_format"
    );
}

#[test]
fn a_required_call_needs_a_template_that_shows_tools() {
    let required = conversation(vec![weather()], ToolChoice::Required);
    match constraints().for_conversation(&required, None) {
        Err(BackendError::InvalidField { param, .. }) => assert_eq!(param, "tools"),
        other => panic!("{:?}", other.map(|c| c.is_some())),
    }
}

#[test]
fn a_compiled_grammar_is_reused_and_each_constraint_has_its_own_state() {
    let constraints = constraints();
    let object = answering(ResponseFormat::JsonObject);
    let mut first = constraints
        .for_conversation(&object, None)
        .unwrap()
        .unwrap();
    first.advance(u32::from(b'{')).unwrap();
    let mut second = constraints
        .for_conversation(&object, None)
        .unwrap()
        .unwrap();

    assert!(!second.allowed().unwrap().contains(u32::from(b'}')));
    assert!(first.allowed().unwrap().contains(u32::from(b'}')));
    assert_eq!(constraints.compiled.lock().unwrap().len(), 1);
}

#[test]
fn choices_starting_together_share_one_compiled_grammar_and_a_refusal_is_not_cached() {
    let constraints = constraints();
    let object = answering(ResponseFormat::JsonObject);
    std::thread::scope(|scope| {
        let choices: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| constraints.for_conversation(&object, None).unwrap()))
            .collect();
        for choice in choices {
            let mut constraint = choice.join().unwrap().unwrap();
            assert!(constraint.allowed().unwrap().contains(u32::from(b'{')));
        }
    });
    assert_eq!(constraints.compiled.lock().unwrap().len(), 1);

    let refused = answering(schema(json!({"if": {}})));
    for _ in 0..2 {
        let result = constraints.for_conversation(&refused, None);
        assert!(matches!(result, Err(BackendError::InvalidField { .. })));
    }
}
