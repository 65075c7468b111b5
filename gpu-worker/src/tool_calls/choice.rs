//! Where a request meets the parser: which choices' output is read for calls, and how the
//! calls change a choice's finish reason.

use coder_nats::{FinishReason, GenerationRequest, Prompt};

use super::call::CallContext;
use super::format::ToolFormat;
use super::parser::ToolCallParser;

/// The parser for choice `choice` of `request`, when its output may hold calls: a conversation
/// offering tools, on a model with a tool format (one without refuses such a request).
pub fn parser_for(
    request: &GenerationRequest,
    choice: u32,
    format: Option<ToolFormat>,
) -> Option<ToolCallParser> {
    let Prompt::Conversation(conversation) = &request.prompt else {
        return None;
    };
    let tools = conversation.offered_tools();
    if tools.is_empty() {
        return None;
    }
    let context = CallContext {
        tools: tools.iter().map(|tool| tool.name.clone()).collect(),
        request: request.id,
        choice,
    };
    Some(ToolCallParser::new(
        format?,
        context,
        conversation.parallel_tool_calls,
    ))
}

/// A choice's finish reason once its calls are known: `tool_calls` when it made any and the
/// model ended its turn; `length` stays (a call may be cut short).
pub fn finish_reason(reason: FinishReason, calls: u32) -> FinishReason {
    match reason {
        FinishReason::Stop if calls > 0 => FinishReason::ToolCalls,
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coder_nats::{ChatMessage, Conversation, SamplingParams, Tool, ToolChoice};

    fn request(prompt: Prompt) -> GenerationRequest {
        GenerationRequest {
            id: uuid::Uuid::from_u128(9),
            model: "m".into(),
            prompt,
            params: SamplingParams::default(),
        }
    }

    fn conversation(choice: ToolChoice) -> Prompt {
        Prompt::Conversation(Conversation {
            tools: vec![Tool {
                name: "f".into(),
                description: None,
                parameters: None,
                strict: false,
            }],
            tool_choice: choice,
            ..Conversation::plain(vec![ChatMessage::new("user", "hi")])
        })
    }

    #[test]
    fn only_conversations_offering_tools_on_a_tool_model_are_parsed() {
        let hermes = Some(ToolFormat::Hermes);
        let offered = request(conversation(ToolChoice::Auto));
        assert!(parser_for(&offered, 0, hermes).is_some());
        assert!(parser_for(&offered, 0, None).is_none());
        assert!(parser_for(&request(conversation(ToolChoice::None)), 0, hermes).is_none());
        let chat = request(Prompt::Chat(vec![ChatMessage::new("user", "hi")]));
        assert!(parser_for(&chat, 0, hermes).is_none());
    }

    #[test]
    fn calls_turn_stop_into_tool_calls_and_length_stays() {
        assert_eq!(
            finish_reason(FinishReason::Stop, 1),
            FinishReason::ToolCalls
        );
        assert_eq!(finish_reason(FinishReason::Stop, 0), FinishReason::Stop);
        assert_eq!(finish_reason(FinishReason::Length, 2), FinishReason::Length);
    }
}
