//! What a backend checks of a [`Conversation`] before it renders it: offered tools need a model
//! whose chat template shows tools to it (a [`ToolFormat`]), else the request is refused,
//! naming `tools`, rather than answered as if no tools had been offered.
//! (`response_format` and a required call are constrained decoding's: `super::constraint`.)

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

#[cfg(test)]
mod tests {
    use super::*;
    use coder_nats::{ChatMessage, Tool, ToolChoice};

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
}
