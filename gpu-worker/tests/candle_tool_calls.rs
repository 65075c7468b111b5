//! Tool calls on the default model, Qwen2.5-Coder-1.5B-Instruct Q4_K_M (`models/`, fetched by
//! `scripts/fetch-model.sh`; without it these tests print a notice and pass): the prompt of a
//! tools conversation holds the template's `<tool_call>` markup as the model's own tokens, and
//! the model's greedy answer to a weather question is a call the worker's parser reads.
//!
//! What the model writes (greedy, CPU): the call without the tags, in a Markdown fence —
//! ```` ```json\n{\n  "name": "get_weather",\n  "arguments": {\n    "city": "Paris"\n  }\n}\n``` ````
//! — which the Hermes parser reads as a call because the answer starts with it. The test
//! asserts the call, not the exact text, so the tagged form passes too.

mod candle_support;

use std::sync::OnceLock;

use candle_support::{load_default_model, Recorder};

use coder_nats::{
    ChatMessage, Conversation, FinishReason, GenerationRequest, Prompt, SamplingParams, Tool,
    ToolCall,
};
use gpu_worker::backend::candle::CandleBackend;
use gpu_worker::backend::Backend;
use gpu_worker::tool_calls::format::ToolFormat;
use gpu_worker::tool_calls::{CallContext, ToolCallParser};

/// Qwen2.5's `<tool_call>` and `</tool_call>`.
const TOOL_CALL_OPEN: u32 = 151657;
const TOOL_CALL_CLOSE: u32 = 151658;

fn backend() -> Option<&'static CandleBackend> {
    static BACKEND: OnceLock<Option<CandleBackend>> = OnceLock::new();
    BACKEND.get_or_init(|| load_default_model(None)).as_ref()
}

fn get_weather() -> Tool {
    Tool {
        name: "get_weather".into(),
        description: Some("Get the current weather in a given city".into()),
        parameters: Some(serde_json::json!({
            "type": "object",
            "properties": {"city": {"type": "string", "description": "The city, e.g. Berlin"}},
            "required": ["city"]
        })),
        strict: false,
    }
}

fn weather_question(history: Vec<ChatMessage>) -> Conversation {
    let mut messages = vec![ChatMessage::new("user", "What is the weather in Paris?")];
    messages.extend(history);
    Conversation {
        tools: vec![get_weather()],
        ..Conversation::plain(messages)
    }
}

fn count(ids: &[u32], id: u32) -> usize {
    ids.iter().filter(|&&i| i == id).count()
}

#[test]
fn the_qwen_template_shows_tools_and_calls_with_its_tool_call_tokens() {
    let Some(backend) = backend() else { return };
    assert_eq!(backend.tool_format(), Some(ToolFormat::Hermes));

    let asked = backend
        .encode_prompt(&Prompt::Conversation(weather_question(Vec::new())))
        .unwrap();
    // The instructions name the tags, then show an example call.
    assert_eq!(
        (
            count(&asked, TOOL_CALL_OPEN),
            count(&asked, TOOL_CALL_CLOSE)
        ),
        (2, 2)
    );

    let call = ToolCall {
        id: "call_1".into(),
        name: "get_weather".into(),
        arguments: r#"{"city": "Paris"}"#.into(),
    };
    let history = vec![
        ChatMessage {
            tool_calls: vec![call],
            ..ChatMessage::new("assistant", "")
        },
        ChatMessage {
            tool_call_id: Some("call_1".into()),
            ..ChatMessage::new("tool", "18 C, sunny")
        },
    ];
    let answered = backend
        .encode_prompt(&Prompt::Conversation(weather_question(history)))
        .unwrap();
    assert_eq!(
        count(&answered, TOOL_CALL_OPEN),
        3,
        "the instructions' two and the call"
    );
    assert_eq!(count(&answered, TOOL_CALL_CLOSE), 3);
    assert!(
        answered.starts_with(&asked[..asked.len() - 3]),
        "the history follows the question"
    );

    let plain = backend
        .encode_prompt(&Prompt::Chat(vec![ChatMessage::new(
            "user",
            "What is the weather in Paris?",
        )]))
        .unwrap();
    assert_eq!(
        count(&plain, TOOL_CALL_OPEN),
        0,
        "no tools, no tool instructions"
    );
}

#[test]
fn asked_for_the_weather_in_paris_the_model_calls_get_weather() {
    let Some(backend) = backend() else { return };
    let request = GenerationRequest {
        id: uuid::Uuid::from_u128(1),
        model: "qwen2.5-coder-1.5b-instruct".into(),
        prompt: Prompt::Conversation(weather_question(Vec::new())),
        params: SamplingParams {
            max_tokens: 40,
            temperature: 0.0,
            ..Default::default()
        },
    };
    let mut pieces = Recorder::default();

    let finished = backend.generate(&request, &mut pieces).unwrap();

    let text = pieces.text();
    eprintln!("the model wrote ({:?}): {text:?}", finished.finish_reason);
    let context = CallContext {
        tools: vec!["get_weather".into()],
        request: request.id,
        choice: 0,
    };
    let mut parser = ToolCallParser::new(ToolFormat::Hermes, context, true);
    let mut parsed: Vec<_> = pieces
        .pieces
        .iter()
        .map(|piece| parser.push(piece))
        .collect();
    parsed.push(parser.finish());
    let content: String = parsed.iter().map(|p| p.content.as_str()).collect();
    let arguments: String = parsed
        .iter()
        .flat_map(|p| &p.tool_calls)
        .map(|d| d.arguments.as_str())
        .collect();
    eprintln!(
        "content {content:?}, {} call(s), arguments {arguments:?}",
        parser.calls()
    );

    assert_eq!(finished.finish_reason, FinishReason::Stop);
    assert_eq!(parser.calls(), 1, "{text:?}");
    assert_eq!(content, "");
    let arguments: serde_json::Value = serde_json::from_str(&arguments).unwrap();
    assert_eq!(arguments, serde_json::json!({"city": "Paris"}));
}
