//! Constrained decoding on the default model (Qwen2.5-Coder-1.5B-Instruct Q4_K_M): a JSON
//! schema answer that validates, a required tool call in the model's Hermes syntax, and the
//! same tokens for a seeded constrained request alone and in a batch. Without the model file
//! these tests print a notice and pass (`scripts/fetch-model.sh` fetches it).
//!
//! The prompts are plain chats (the chat template's own rendering of tools is tested where it
//! is built); the answer's shape comes from the conversation given to
//! [`CandleBackend::generate_tokens_shaped`], as it would from a request's.

mod candle_support;

use std::sync::OnceLock;

use candle_support::{load_default_model, Recorder};

use coder_nats::GenerationRequest;
use coder_nats::{
    ChatMessage, Conversation, FinishReason, Prompt, ResponseFormat, SamplingParams, Tool,
    ToolChoice,
};
use gpu_worker::backend::candle::CandleBackend;
use gpu_worker::backend::{Backend, BackendError, Finished};
use serde_json::{json, Value};

/// The shared backend, or `None` (with a notice) when the model was not fetched.
fn backend() -> Option<&'static CandleBackend> {
    static BACKEND: OnceLock<Option<CandleBackend>> = OnceLock::new();
    BACKEND.get_or_init(|| load_default_model(Some(4))).as_ref()
}

fn chat(system: &str, user: &str) -> Vec<ChatMessage> {
    vec![
        ChatMessage::new("system", system),
        ChatMessage::new("user", user),
    ]
}

fn params(max_tokens: u32, temperature: f32, seed: u64) -> SamplingParams {
    SamplingParams {
        max_tokens,
        temperature,
        seed,
        ..Default::default()
    }
}

/// Generates for `messages` with the answer shaped as `shape` asks; returns how it finished
/// and each token's text.
fn shaped(
    backend: &CandleBackend,
    messages: Vec<ChatMessage>,
    shape: &Conversation,
    params: &SamplingParams,
) -> (Finished, Vec<String>) {
    let prompt = backend
        .encode_prompt(&Prompt::Chat(messages))
        .expect("the chat encodes");
    let mut sink = Recorder::default();
    let finished = backend
        .generate_tokens_shaped(&prompt, params, shape, &mut sink)
        .expect("generation succeeds");
    (finished, sink.pieces)
}

fn person_schema() -> Conversation {
    Conversation {
        response_format: ResponseFormat::JsonSchema {
            name: "person".into(),
            schema: json!({
                "type": "object",
                "properties": {
                    "name": {"type": "string", "maxLength": 12},
                    "age": {"type": "integer"},
                    "role": {"enum": ["admin", "user"]}
                },
                "required": ["name", "age", "role"],
                "additionalProperties": false
            }),
            strict: true,
        },
        ..Conversation::plain(Vec::new())
    }
}

fn weather_required() -> Conversation {
    Conversation {
        tools: vec![Tool {
            name: "get_weather".into(),
            description: Some("The current weather in a city".into()),
            parameters: Some(json!({
                "type": "object",
                "properties": {"city": {"type": "string", "maxLength": 20}},
                "required": ["city"],
                "additionalProperties": false
            })),
            strict: true,
        }],
        tool_choice: ToolChoice::Required,
        parallel_tool_calls: false,
        ..Conversation::plain(Vec::new())
    }
}

#[test]
fn a_json_schema_answer_parses_and_validates_and_stops() {
    let Some(backend) = backend() else { return };

    let (finished, pieces) = shaped(
        backend,
        chat(
            "You answer in JSON.",
            "Describe Ann, 31 years old, an administrator.",
        ),
        &person_schema(),
        &params(40, 0.0, 1),
    );

    let text = pieces.concat();
    let value: Value = serde_json::from_str(&text).expect(&text);
    let object = value.as_object().expect("an object");
    assert!(object["name"].is_string(), "{text}");
    assert!(object["age"].is_i64(), "{text}");
    assert!(["admin", "user"].contains(&object["role"].as_str().unwrap()));
    assert_eq!(object.len(), 3, "{text}");
    assert_eq!(finished.finish_reason, FinishReason::Stop, "{text}");
}

#[test]
fn a_required_call_is_hermes_syntax_with_the_tool_name_and_its_arguments() {
    let Some(backend) = backend() else { return };

    let (finished, pieces) = shaped(
        backend,
        chat(
            "You can call get_weather(city) to learn the weather of a city.",
            "What is the weather in Paris?",
        ),
        &weather_required(),
        &params(40, 0.0, 1),
    );

    let text = pieces.concat();
    let json = text
        .strip_prefix("<tool_call>\n")
        .and_then(|rest| rest.strip_suffix("\n</tool_call>"))
        .unwrap_or_else(|| panic!("not a Hermes call: {text:?}"));
    let call: Value = serde_json::from_str(json).expect(json);
    assert_eq!(call["name"], "get_weather");
    let city = call["arguments"]["city"].as_str().expect(json);
    assert!(city.contains("Paris"), "{json}");
    assert_eq!(call["arguments"].as_object().unwrap().len(), 1);
    assert_eq!(finished.finish_reason, FinishReason::Stop);
}

#[test]
fn a_seeded_constrained_request_gives_the_same_tokens_alone_and_in_a_batch() {
    let Some(backend) = backend() else { return };
    let target = || {
        (
            chat("You answer in JSON.", "Describe Bob, a user aged 40."),
            person_schema(),
            params(24, 0.9, 7),
        )
    };
    let (messages, shape, sampling) = target();
    let alone = shaped(backend, messages, &shape, &sampling);

    let together = std::thread::scope(|scope| {
        let target = scope.spawn(|| {
            let (messages, shape, sampling) = target();
            shaped(backend, messages, &shape, &sampling)
        });
        let plain = scope.spawn(|| {
            let messages = chat("Be brief.", "Say hi.");
            let conversation = Conversation::plain(Vec::new());
            shaped(backend, messages, &conversation, &params(16, 0.7, 3))
        });
        let other_call = scope.spawn(|| {
            let messages = chat("Use tools.", "Weather in Oslo?");
            shaped(backend, messages, &weather_required(), &params(20, 1.0, 5))
        });
        let _ = (plain.join().unwrap(), other_call.join().unwrap());
        target.join().unwrap()
    });

    assert_eq!(together.1, alone.1);
    assert_eq!(together.0.finish_reason, alone.0.finish_reason);
    let text = alone.1.concat();
    if alone.0.finish_reason == FinishReason::Stop {
        serde_json::from_str::<Value>(&text).expect(&text);
    }
}

#[test]
fn a_schema_the_engine_cannot_enforce_is_refused_naming_its_field() {
    let Some(backend) = backend() else { return };
    let mut conversation = weather_required();
    conversation.messages = chat("Use tools.", "Weather in Oslo?");
    conversation.tools[0].parameters = Some(json!({"type": "object", "if": {"required": ["a"]}}));
    let request = GenerationRequest {
        id: uuid::Uuid::now_v7(),
        model: "qwen2.5-coder-1.5b-instruct".into(),
        prompt: Prompt::Conversation(conversation),
        params: params(8, 0.0, 1),
    };

    match backend.generate(&request, &mut Recorder::default()) {
        Err(BackendError::InvalidField { param, message }) => {
            assert_eq!(param, "tools[0].function.parameters");
            assert!(message.contains("cannot be enforced"), "{message}");
        }
        other => panic!("{:?}", other.map(|f| f.finish_reason)),
    }
}
