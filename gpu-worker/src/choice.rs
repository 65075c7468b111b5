//! One choice of a request, run on its blocking thread: the backend writes into the choice's
//! sink; when it ran to its end, what the sink's tool-call parser held back is sent and the
//! finish reason says `tool_calls` if the choice made calls; a failure raises the request's
//! cancel flag so the sibling choices stop too (the request fails as a whole).

use std::sync::atomic::{AtomicBool, Ordering};

use coder_nats::GenerationRequest;

use crate::backend::{Backend, BackendError, Finished};
use crate::sink::ChannelSink;
use crate::tool_calls::choice::finish_reason;

/// Runs one choice to its end (blocking).
pub fn run_choice(
    backend: &dyn Backend,
    request: &GenerationRequest,
    sink: &mut ChannelSink,
    cancelled: &AtomicBool,
) -> Result<Finished, BackendError> {
    match backend.generate(request, sink) {
        Ok(mut finished) => {
            let calls = sink.finish();
            finished.finish_reason = finish_reason(finished.finish_reason, calls);
            Ok(finished)
        }
        Err(error) => {
            if !matches!(error, BackendError::Cancelled) {
                cancelled.store(true, Ordering::Relaxed);
            }
            Err(error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{BackendInfo, TokenSink};
    use crate::sink::Generated;
    use crate::tool_calls::choice::parser_for;
    use crate::tool_calls::format::ToolFormat;
    use coder_nats::structure::tool_call_id;
    use coder_nats::{
        ChatMessage, Conversation, FinishReason, Prompt, SamplingParams, Tool, ToolCallDelta, Usage,
    };
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};
    use tokio::sync::mpsc;

    /// Writes fixed pieces of Hermes text, then ends with `reason`.
    struct Scripted {
        info: BackendInfo,
        pieces: Vec<&'static str>,
        reason: FinishReason,
    }

    impl Backend for Scripted {
        fn info(&self) -> &BackendInfo {
            &self.info
        }
        fn tool_format(&self) -> Option<ToolFormat> {
            Some(ToolFormat::Hermes)
        }
        fn generate(
            &self,
            _request: &GenerationRequest,
            sink: &mut dyn TokenSink,
        ) -> Result<Finished, BackendError> {
            for piece in &self.pieces {
                sink.token(piece);
            }
            let usage = Usage {
                prompt_tokens: 3,
                completion_tokens: self.pieces.len() as u32,
                cached_tokens: 0,
            };
            Ok(Finished {
                finish_reason: self.reason,
                usage,
            })
        }
    }

    fn scripted(pieces: Vec<&'static str>, reason: FinishReason) -> Scripted {
        let info = BackendInfo {
            kind: "scripted",
            device: "cpu".into(),
            context_length: 100,
            cpu_kernels: "none",
        };
        Scripted {
            info,
            pieces,
            reason,
        }
    }

    fn request() -> GenerationRequest {
        let tool = Tool {
            name: "get_weather".into(),
            description: None,
            parameters: None,
            strict: false,
        };
        let conversation = Conversation {
            tools: vec![tool],
            ..Conversation::plain(vec![ChatMessage::new("user", "Paris?")])
        };
        GenerationRequest {
            id: uuid::Uuid::from_u128(5),
            model: "m".into(),
            prompt: Prompt::Conversation(conversation),
            params: SamplingParams::default(),
        }
    }

    /// Runs choice 2 of [`request`] on `backend`: its result and what it sent.
    fn run(backend: &Scripted) -> (Result<Finished, BackendError>, Vec<Generated>) {
        let request = request();
        let (tokens, mut received) = mpsc::unbounded_channel();
        let cancelled = Arc::new(AtomicBool::new(false));
        let deadline = SystemTime::now() + Duration::from_secs(60);
        let parser = parser_for(&request, 2, backend.tool_format());
        let mut sink =
            ChannelSink::new(tokens, 2, Arc::clone(&cancelled), deadline).with_tool_calls(parser);
        let result = run_choice(backend, &request, &mut sink, &cancelled);
        drop(sink);
        let mut sent = Vec::new();
        while let Ok(generated) = received.try_recv() {
            sent.push(generated);
        }
        (result, sent)
    }

    #[test]
    fn hermes_text_becomes_deltas_and_the_choice_finishes_with_tool_calls() {
        let backend = scripted(
            vec![
                "Checking.",
                "<tool_",
                "call>\n{\"name\": \"get_weather\", ",
                "\"arguments\": {\"city\": ",
                "\"Paris\"}}\n</tool_call>",
            ],
            FinishReason::Stop,
        );

        let (result, sent) = run(&backend);

        assert_eq!(result.unwrap().finish_reason, FinishReason::ToolCalls);
        let texts: Vec<&str> = sent.iter().map(|g| g.text.as_str()).collect();
        assert_eq!(texts, ["Checking.", "", "", "", "", ""]);
        let deltas: Vec<&ToolCallDelta> = sent.iter().flat_map(|g| &g.tool_calls).collect();
        let id = tool_call_id(uuid::Uuid::from_u128(5), 2, 0);
        assert_eq!(
            deltas,
            [
                &ToolCallDelta {
                    index: 0,
                    id: Some(id),
                    name: Some("get_weather".into()),
                    arguments: String::new(),
                },
                &ToolCallDelta {
                    index: 0,
                    arguments: "{\"city\": ".into(),
                    ..ToolCallDelta::default()
                },
                &ToolCallDelta {
                    index: 0,
                    arguments: "\"Paris\"}".into(),
                    ..ToolCallDelta::default()
                },
            ]
        );
        assert!(sent.iter().all(|g| g.choice == 2));
        // The last message is the parser's end, with nothing held back.
        assert!(!sent.last().unwrap().has_output());
    }

    #[test]
    fn a_cut_call_stays_length_and_held_text_comes_at_the_end() {
        let backend = scripted(vec!["<tool_call>\n{\"na"], FinishReason::Length);
        let (result, sent) = run(&backend);
        assert_eq!(result.unwrap().finish_reason, FinishReason::Length);
        let text: String = sent.iter().map(|g| g.text.as_str()).collect();
        assert_eq!(text, "<tool_call>\n{\"na");
        assert_eq!(sent.last().unwrap().text, text, "held until the end");

        let plain = scripted(vec!["It is sunny."], FinishReason::Stop);
        assert_eq!(run(&plain).0.unwrap().finish_reason, FinishReason::Stop);
    }

    #[test]
    fn a_redelivered_choice_sends_the_same_events_and_ids() {
        let backend = scripted(
            vec!["<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {}}\n</tool_call>"],
            FinishReason::Stop,
        );
        let (first, first_sent) = run(&backend);
        let (again, again_sent) = run(&backend);
        assert_eq!(first.unwrap(), again.unwrap());
        assert_eq!(first_sent, again_sent);
        assert!(first_sent.iter().any(|g| !g.tool_calls.is_empty()));
    }
}
