//! What a backend checks of a [`Conversation`] before it renders it: offered tools need a model
//! whose chat template shows tools to it (a [`ToolFormat`]), else the request is refused,
//! naming `tools`, rather than answered as if no tools had been offered.
//!
//! Until constrained decoding enforces them, `response_format` other than text and a required
//! or named `tool_choice` are refused too, naming the field (never dropped silently): delete
//! [`refuse_until_constrained`] and its call when constrained decoding is merged.

use coder_nats::Conversation;

use super::BackendError;
use crate::tool_calls::format::ToolFormat;

/// Refuses offered tools on a model writing no tool `format`.
pub fn check_tools(
    format: Option<ToolFormat>,
    conversation: &Conversation,
) -> Result<(), BackendError> {
    if !conversation.offered_tools().is_empty() && format.is_none() {
        return Err(BackendError::InvalidField {
            param: "tools".into(),
            message: "this model's chat template does not show tools to the model: `tools` \
                      cannot be used with it"
                .to_owned(),
        });
    }
    Ok(())
}

/// Refuses what only constrained decoding can honour (see the module's doc).
pub fn refuse_until_constrained(conversation: &Conversation) -> Result<(), BackendError> {
    if !conversation.response_format.is_text() {
        return Err(not_yet("response_format"));
    }
    if conversation.requires_a_call() {
        return Err(not_yet("tool_choice"));
    }
    Ok(())
}

fn not_yet(param: &'static str) -> BackendError {
    BackendError::InvalidField {
        param: param.into(),
        message: format!("`{param}` is not supported by this worker yet"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coder_nats::{ChatMessage, ResponseFormat, Tool, ToolChoice};

    fn with_tool(choice: ToolChoice) -> Conversation {
        Conversation {
            tools: vec![Tool {
                name: "f".into(),
                description: None,
                parameters: None,
                strict: false,
            }],
            tool_choice: choice,
            ..Conversation::plain(vec![ChatMessage::new("user", "hi")])
        }
    }

    fn refused_param(result: Result<(), BackendError>) -> Option<String> {
        match result {
            Err(BackendError::InvalidField { param, .. }) => Some(param.to_string()),
            _ => None,
        }
    }

    #[test]
    fn tools_on_a_model_without_a_tool_format_are_refused_naming_tools() {
        let offered = with_tool(ToolChoice::Auto);
        assert_eq!(
            refused_param(check_tools(None, &offered)).as_deref(),
            Some("tools")
        );
        assert!(check_tools(Some(ToolFormat::Hermes), &offered).is_ok());
        // Tools not shown to the model need no format.
        assert!(check_tools(None, &with_tool(ToolChoice::None)).is_ok());
    }

    #[test]
    fn what_needs_constrained_decoding_is_refused_naming_its_field() {
        let required = with_tool(ToolChoice::Required);
        let refused = refused_param(refuse_until_constrained(&required));
        assert_eq!(refused.as_deref(), Some("tool_choice"));
        let json = Conversation {
            response_format: ResponseFormat::JsonObject,
            ..with_tool(ToolChoice::None)
        };
        let refused = refused_param(refuse_until_constrained(&json));
        assert_eq!(refused.as_deref(), Some("response_format"));
        assert!(refuse_until_constrained(&with_tool(ToolChoice::Auto)).is_ok());
    }
}
