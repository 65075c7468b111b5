//! Server-sent events as the OpenAI API streams them.
//!
//! [`SseDecoder`] turns body bytes, split anywhere, into the `data` payloads of complete events
//! (`data:` lines joined by `\n`, dispatched at a blank line, comments and other fields ignored,
//! `\n` or `\r\n` line ends). [`parse_event`] reads one payload: `[DONE]`, a completion or chat
//! chunk, or an OpenAI error object sent mid-stream.

use serde::Deserialize;

/// Incremental SSE decoder.
#[derive(Debug, Default)]
pub struct SseDecoder {
    /// Bytes of a line not yet terminated.
    pending: Vec<u8>,
    /// `data` of the event being assembled.
    data: String,
    has_data: bool,
}

impl SseDecoder {
    /// Feeds body bytes; appends the data of every event they complete to `events`.
    pub fn push(&mut self, bytes: &[u8], events: &mut Vec<String>) {
        let mut rest = bytes;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            let (head, tail) = rest.split_at(end);
            rest = &tail[1..];
            if self.pending.is_empty() {
                self.line(head, events);
            } else {
                let mut line = std::mem::take(&mut self.pending);
                line.extend_from_slice(head);
                self.line(&line, events);
            }
        }
        self.pending.extend_from_slice(rest);
    }

    fn line(&mut self, line: &[u8], events: &mut Vec<String>) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            if self.has_data {
                events.push(std::mem::take(&mut self.data));
                self.has_data = false;
            }
            return;
        }
        let Some(value) = line.strip_prefix(b"data:") else {
            return; // a comment (`:`), or a field this client does not use (`event:`, `id:`)
        };
        let value = value.strip_prefix(b" ").unwrap_or(value);
        if self.has_data {
            self.data.push('\n');
        }
        self.data.push_str(&String::from_utf8_lossy(value));
        self.has_data = true;
    }
}

/// What one event's data means.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// `[DONE]`: the stream ended normally.
    Done,
    /// A chunk; `has_content` when it carries generated text.
    Chunk {
        has_content: bool,
        usage: Option<Usage>,
    },
    /// An error object in place of a chunk.
    Error { error_type: Option<String> },
}

/// Token counts the server reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    /// OpenAI's `prompt_tokens_details`, absent from servers that do not send it.
    #[serde(default)]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
}

/// Of the prompt's tokens, those the server had cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct PromptTokensDetails {
    #[serde(default)]
    pub cached_tokens: Option<u32>,
}

impl Usage {
    /// `prompt_tokens_details.cached_tokens`, when the server reports it.
    pub fn cached_tokens(&self) -> Option<u32> {
        self.prompt_tokens_details.and_then(|d| d.cached_tokens)
    }
}

#[derive(Deserialize)]
struct ChunkBody<'a> {
    #[serde(default, borrow)]
    choices: Vec<Choice<'a>>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    error: Option<ErrorObject>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(default, borrow)]
    text: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    delta: Option<Delta<'a>>,
}

#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(default, borrow)]
    content: Option<std::borrow::Cow<'a, str>>,
}

/// The `error` object of an OpenAI error body.
#[derive(Debug, Deserialize)]
pub struct ErrorObject {
    #[serde(default, rename = "type")]
    pub error_type: Option<String>,
}

/// The text a chunk carries (a completion's `text` or a chat `delta.content`), for clients that
/// keep the answer; empty for chunks without text, `None` for data that is not a chunk.
pub fn chunk_text(data: &str) -> Option<String> {
    let chunk: ChunkBody = serde_json::from_str(data).ok()?;
    let text = chunk.choices.iter().filter_map(|choice| {
        choice
            .text
            .as_deref()
            .or(choice.delta.as_ref().and_then(|d| d.content.as_deref()))
    });
    Some(text.collect())
}

/// Reads one event's data.
pub fn parse_event(data: &str) -> Result<StreamEvent, serde_json::Error> {
    if data.trim() == "[DONE]" {
        return Ok(StreamEvent::Done);
    }
    let chunk: ChunkBody = serde_json::from_str(data)?;
    if let Some(error) = chunk.error {
        return Ok(StreamEvent::Error {
            error_type: error.error_type,
        });
    }
    let has_content = chunk.choices.iter().any(|choice| {
        let text = choice
            .text
            .as_deref()
            .or(choice.delta.as_ref().and_then(|d| d.content.as_deref()));
        text.is_some_and(|t| !t.is_empty())
    });
    Ok(StreamEvent::Chunk {
        has_content,
        usage: chunk.usage,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn decode_in_pieces(body: &[u8], piece: usize) -> Vec<String> {
        let mut decoder = SseDecoder::default();
        let mut events = Vec::new();
        for part in body.chunks(piece) {
            decoder.push(part, &mut events);
        }
        events
    }

    #[test]
    fn events_survive_any_split_of_the_body() {
        let body = b"data: {\"a\":1}\n\n: keep-alive\n\ndata: {\"b\":2}\r\n\r\ndata: [DONE]\n\n";
        for piece in 1..body.len() {
            assert_eq!(
                decode_in_pieces(body, piece),
                vec!["{\"a\":1}", "{\"b\":2}", "[DONE]"],
                "split every {piece} bytes"
            );
        }
    }

    #[test]
    fn multi_line_data_is_joined_and_other_fields_ignored() {
        let events = decode_in_pieces(b"event: x\nid: 3\ndata: one\ndata:two\n\n", 64);
        assert_eq!(events, vec!["one\ntwo"]);
    }

    #[test]
    fn an_unterminated_event_is_not_dispatched() {
        assert!(decode_in_pieces(b"data: {\"a\":1}\n", 64).is_empty());
    }

    #[test]
    fn completion_and_chat_chunks_are_told_apart_from_empty_ones() {
        let text = r#"{"choices":[{"index":0,"text":"fn"}]}"#;
        let delta = r#"{"choices":[{"index":0,"delta":{"content":"x\n"}}]}"#;
        let role_only = r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#;
        let usage =
            r#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":9,"total_tokens":14}}"#;
        let content = |data| match parse_event(data).unwrap() {
            StreamEvent::Chunk { has_content, .. } => has_content,
            other => panic!("{other:?}"),
        };
        assert!(content(text));
        assert!(content(delta));
        assert!(!content(role_only));
        assert_eq!(
            parse_event(usage).unwrap(),
            StreamEvent::Chunk {
                has_content: false,
                usage: Some(Usage {
                    prompt_tokens: 5,
                    completion_tokens: 9,
                    prompt_tokens_details: None,
                })
            }
        );
    }

    #[test]
    fn cached_tokens_and_chunk_text_are_read_where_sent() {
        let usage = r#"{"choices":[],"usage":{"prompt_tokens":50,"completion_tokens":2,"total_tokens":52,"prompt_tokens_details":{"cached_tokens":32}}}"#;
        match parse_event(usage).unwrap() {
            StreamEvent::Chunk { usage, .. } => {
                assert_eq!(usage.unwrap().cached_tokens(), Some(32))
            }
            other => panic!("{other:?}"),
        }
        let delta = r#"{"choices":[{"index":0,"delta":{"content":"x\n"}}]}"#;
        assert_eq!(chunk_text(delta).as_deref(), Some("x\n"));
        let text = r#"{"choices":[{"index":0,"text":"fn"}]}"#;
        assert_eq!(chunk_text(text).as_deref(), Some("fn"));
        assert_eq!(chunk_text("[DONE]"), None);
    }

    #[test]
    fn done_and_errors_are_recognised() {
        assert_eq!(parse_event("[DONE]").unwrap(), StreamEvent::Done);
        let error = r#"{"error":{"message":"m","type":"server_error","param":null,"code":null}}"#;
        assert_eq!(
            parse_event(error).unwrap(),
            StreamEvent::Error {
                error_type: Some("server_error".into())
            }
        );
        assert!(parse_event("{not json").is_err());
    }

    /// A streamed chat answer of llama.cpp's llama-server (built by scripts/build-llama-cpp.sh
    /// native llama-server; the body of `curl --raw`, unchunked): a role chunk with
    /// `content: null` and the first token in one write, a token per chunk, then the
    /// `finish_reason` chunk and the usage chunk (with `timings`) in one write, then `[DONE]`.
    pub const LLAMA_SERVER_CHAT_STREAM: &str =
        include_str!("../tests/fixtures/llama-server-chat-stream.sse");

    #[test]
    fn a_llama_server_chat_stream_reads_as_four_tokens_and_its_usage() {
        let body = LLAMA_SERVER_CHAT_STREAM.as_bytes();
        for piece in [1, 7, 64, body.len()] {
            let kinds: Vec<StreamEvent> = decode_in_pieces(body, piece)
                .iter()
                .map(|data| parse_event(data).unwrap())
                .collect();
            let chunk = |has_content| StreamEvent::Chunk {
                has_content,
                usage: None,
            };
            let usage = StreamEvent::Chunk {
                has_content: false,
                usage: Some(Usage {
                    prompt_tokens: 35,
                    completion_tokens: 4,
                    prompt_tokens_details: Some(PromptTokensDetails {
                        cached_tokens: Some(0),
                    }),
                }),
            };
            assert_eq!(
                kinds,
                vec![
                    chunk(false),
                    chunk(true),
                    chunk(true),
                    chunk(true),
                    chunk(true),
                    chunk(false),
                    usage,
                    StreamEvent::Done
                ],
                "split every {piece} bytes"
            );
        }
    }
}
