//! Tool calls through the real worker: a conversation offering a tool, queued as a gateway
//! queues it, answered by the `gpu-worker` binary on the default model (Qwen2.5-Coder-1.5B-
//! Instruct; without `models/` the test prints a notice and passes), arrives as OpenAI
//! tool-call deltas in token events with consecutive indexes and a `tool_calls` finish.

mod worker_support;

use std::time::{Duration, SystemTime};

use coder_nats::structure::tool_call_id;
use coder_nats::{
    ChatMessage, Conversation, FinishReason, GenerationRequest, Prompt, SamplingParams, Tool,
    WorkerEvent,
};
use worker_support::*;

const MODEL: &str = "qwen2.5-coder-1.5b-instruct";

fn weather_request() -> GenerationRequest {
    let tool = Tool {
        name: "get_weather".into(),
        description: Some("Get the current weather in a given city".into()),
        parameters: Some(serde_json::json!({"type": "object",
            "properties": {"city": {"type": "string"}}, "required": ["city"]})),
        strict: false,
    };
    let conversation = Conversation {
        tools: vec![tool],
        ..Conversation::plain(vec![ChatMessage::new(
            "user",
            "What is the weather in Paris?",
        )])
    };
    GenerationRequest {
        id: uuid::Uuid::now_v7(),
        model: MODEL.into(),
        prompt: Prompt::Conversation(conversation),
        params: SamplingParams {
            max_tokens: 40,
            temperature: 0.0,
            ..SamplingParams::default()
        },
    }
}

#[tokio::test]
async fn a_models_call_arrives_as_deltas_with_finish_reason_tool_calls() {
    let Some(model_path) = default_model() else {
        return;
    };
    let flags = ["--backend", "candle", "--model-path", &model_path];
    let (_nats, queue, _worker) = worker_on_queue(MODEL, &flags).await;
    let request = weather_request();
    let id = request.id;
    let deadline = SystemTime::now() + Duration::from_secs(300);

    let mut queued = queue.submit_request(request, deadline).await;

    let mut content = String::new();
    let mut deltas = Vec::new();
    let mut indexes = Vec::new();
    let end = loop {
        match queued.next_event().await {
            WorkerEvent::Token {
                index,
                text,
                tool_calls,
                ..
            } => {
                indexes.push(index);
                content.push_str(&text);
                deltas.extend(tool_calls);
            }
            event if event.is_terminal() => break event,
            _ => {}
        }
    };
    let WorkerEvent::Final {
        finish_reason,
        token_events,
        ..
    } = end
    else {
        panic!("the request failed: {end:?}");
    };
    assert_eq!(
        finish_reason,
        FinishReason::ToolCalls,
        "content {content:?}"
    );
    assert_eq!(content, "");
    assert_eq!(indexes, (0..indexes.len() as u32).collect::<Vec<_>>());
    assert_eq!(token_events, [indexes.len() as u32]);
    assert_eq!(deltas[0].id, Some(tool_call_id(id, 0, 0)));
    assert_eq!(deltas[0].name.as_deref(), Some("get_weather"));
    assert!(deltas.iter().all(|d| d.index == 0));
    assert!(deltas[1..]
        .iter()
        .all(|d| d.id.is_none() && d.name.is_none()));
    let arguments: String = deltas.iter().map(|d| d.arguments.as_str()).collect();
    let arguments: serde_json::Value = serde_json::from_str(&arguments).unwrap();
    assert_eq!(arguments, serde_json::json!({"city": "Paris"}));
}
