//! Properties of the request parsers over generated bodies: whatever the bytes or the values of
//! the fields, parsing and validating a completion or chat body never panics, never gives a 5xx,
//! and a sampling setup it accepts is within the API's bounds.

use gateway::error::ApiError;
use gateway::openai::chat::ChatRequest;
use gateway::openai::completions::CompletionRequest;
use gateway::openai::endpoint::GenerationEndpoint;
use gateway::openai::fields::{Field, CHAT, COMPLETIONS};
use proptest::prelude::*;
use serde_json::{Map, Value};

const MAX_TOKENS_LIMIT: u32 = 32_768;

/// Any JSON value, weighted to extremes and to strings a tokenizer treats specially.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from), // NaN and infinities become null
        prop_oneof![
            Just(0.0),
            Just(-0.0),
            Just(1e-38),
            Just(1e308),
            Just(-1e-45),
            Just(2.0000001)
        ]
        .prop_map(Value::from),
        "\\PC{0,24}".prop_map(Value::from),
        prop_oneof![
            Just("<|im_end|>\n<|im_start|>system"),
            Just("<|endoftext|>"),
            Just("<|fim_middle|>"),
            Just("user"),
            Just("system"),
            Just("assistant"),
            Just("tool"),
            Just("json_object"),
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Mostly the API's own field and role names, sometimes anything.
fn key() -> impl Strategy<Value = String> {
    let known: Vec<&'static str> = [CHAT, COMPLETIONS]
        .iter()
        .flat_map(|groups| {
            groups
                .iter()
                .flat_map(|group| group.iter().map(|(name, _)| *name))
        })
        .chain([
            "role",
            "content",
            "type",
            "text",
            "name",
            "function",
            "json_schema",
        ])
        .collect();
    prop_oneof![
        4 => prop::sample::select(known).prop_map(str::to_owned),
        1 => "[a-z_]{0,12}",
    ]
}

/// A value of the kind a field usually holds: small numbers, short strings, booleans.
fn plausible_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        (0.0..2.0f64).prop_map(Value::from),
        (0u64..10).prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        "[a-z]{1,8}".prop_map(Value::from),
        Just(Value::Null),
    ]
}

/// A valid body of an endpoint (`base`), with a few of its fields given plausible or wild values.
fn body(
    fields: &'static [&'static [Field]],
    base: fn() -> Map<String, Value>,
) -> impl Strategy<Value = Vec<u8>> {
    let names: Vec<&'static str> = fields
        .iter()
        .flat_map(|group| group.iter().map(|(name, _)| *name))
        .collect();
    let value = prop_oneof![plausible_value(), json_value()];
    prop::collection::vec((prop::sample::select(names), value), 0..4).prop_map(move |fields| {
        let mut body = base();
        for (name, value) in fields {
            body.insert(name.to_owned(), value);
        }
        serde_json::to_vec(&Value::Object(body)).expect("a map serializes")
    })
}

fn completion_base() -> Map<String, Value> {
    let body = serde_json::json!({"model": "m", "prompt": "def f():"});
    body.as_object().expect("an object").clone()
}

fn chat_base() -> Map<String, Value> {
    let body = serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    body.as_object().expect("an object").clone()
}

/// Parses and validates as the handler does: the body, then the model, prompt and sampling.
fn validate<E: GenerationEndpoint>(bytes: &[u8]) -> Result<(), ApiError> {
    let request = E::from_json(bytes)?;
    request.model()?;
    request.prompt()?;
    let params = request.params(MAX_TOKENS_LIMIT)?;
    assert!(params.temperature.is_finite() && (0.0..=2.0).contains(&params.temperature));
    assert!(
        params.top_p > 0.0 && params.top_p <= 1.0,
        "{}",
        params.top_p
    );
    assert!((1..=MAX_TOKENS_LIMIT).contains(&params.max_tokens));
    assert!(params.repetition_penalty.is_finite());
    assert!(params.frequency_penalty.is_finite() && params.presence_penalty.is_finite());
    assert!((1..=8).contains(&params.n));
    Ok(())
}

/// A refusal is the client's fault, said as a 4xx.
fn assert_client_error(result: Result<(), ApiError>) {
    if let Err(error) = result {
        let status = error.status().as_u16();
        assert!((400..500).contains(&status), "{status}: {error}");
        assert!(!error.to_string().is_empty());
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn completion_bodies_are_accepted_in_bounds_or_refused_as_4xx(bytes in body(COMPLETIONS, completion_base)) {
        assert_client_error(validate::<CompletionRequest>(&bytes));
    }

    #[test]
    fn chat_bodies_are_accepted_in_bounds_or_refused_as_4xx(bytes in body(CHAT, chat_base)) {
        assert_client_error(validate::<ChatRequest>(&bytes));
    }

    #[test]
    fn arbitrary_bytes_are_refused_as_4xx(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        assert_client_error(validate::<CompletionRequest>(&bytes));
        assert_client_error(validate::<ChatRequest>(&bytes));
    }
}
