//! What the load generator sends: the endpoint, the prompts and the JSON bodies.
//!
//! Bodies are serialised once, before the run, and cycled through: building JSON on the hot path
//! would make the generator, not the gateway, the thing measured. With one `--max-tokens` value
//! a request's body is a shared buffer; with a range, each body is kept split around its
//! `max_tokens` value, so a request's own draw is only written between the two halves.

use crate::max_tokens::MaxTokens;
use anyhow::{bail, Context};
use bytes::{BufMut, Bytes, BytesMut};
use serde_json::json;
use std::path::Path;

/// The two generation routes of the OpenAI API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Completions,
    ChatCompletions,
}

impl Endpoint {
    pub fn from_chat_flag(chat: bool) -> Self {
        if chat {
            Self::ChatCompletions
        } else {
            Self::Completions
        }
    }

    /// The route, which is also the gateway's `endpoint` label value (the route template).
    pub fn path(self) -> &'static str {
        match self {
            Self::Completions => "/v1/completions",
            Self::ChatCompletions => "/v1/chat/completions",
        }
    }
}

/// Request fields that are the same for every request of a run.
#[derive(Debug, Clone)]
pub struct RequestShape {
    pub endpoint: Endpoint,
    pub model: String,
    pub max_tokens: MaxTokens,
    /// Seed of the per-request draws from a `max_tokens` range.
    pub length_seed: u64,
    pub stream: bool,
    pub temperature: f32,
    pub seed: Option<u64>,
}

/// Pre-serialised request bodies, one per prompt.
#[derive(Debug, Clone)]
pub struct Workload {
    bodies: Bodies,
    max_tokens: MaxTokens,
    length_seed: u64,
}

#[derive(Debug, Clone)]
enum Bodies {
    /// One `max_tokens` for every request: whole bodies.
    Fixed(Vec<Bytes>),
    /// A `max_tokens` range: bodies to write each request's draw into.
    Drawn(Vec<BodyTemplate>),
}

impl Workload {
    pub fn new(shape: &RequestShape, prompts: &[String]) -> anyhow::Result<Self> {
        if prompts.is_empty() {
            bail!("no prompts to send");
        }
        let bodies = if shape.max_tokens.is_fixed() {
            let whole = |prompt: &String| {
                serde_json::to_vec(&body(shape, prompt, shape.max_tokens.min)).map(Bytes::from)
            };
            let bodies = prompts.iter().map(whole).collect::<Result<_, _>>();
            Bodies::Fixed(bodies.context("serialising request bodies")?)
        } else {
            let templates = prompts
                .iter()
                .map(|prompt| BodyTemplate::new(shape, prompt));
            Bodies::Drawn(templates.collect::<anyhow::Result<_>>()?)
        };
        Ok(Self {
            bodies,
            max_tokens: shape.max_tokens,
            length_seed: shape.length_seed,
        })
    }

    /// The body of the `seq`-th request (prompts are used in turn) and the `max_tokens` it asks
    /// for.
    pub fn body(&self, seq: u64) -> (Bytes, u32) {
        let max_tokens = self.max_tokens.draw(self.length_seed, seq);
        let turn = |count: usize| (seq % count as u64) as usize;
        let body = match &self.bodies {
            Bodies::Fixed(bodies) => bodies[turn(bodies.len())].clone(),
            Bodies::Drawn(templates) => templates[turn(templates.len())].render(max_tokens),
        };
        (body, max_tokens)
    }
}

/// A serialised body split around its `max_tokens` value.
#[derive(Debug, Clone)]
struct BodyTemplate {
    head: Bytes,
    tail: Bytes,
}

impl BodyTemplate {
    /// Serialises the body with a placeholder `max_tokens` and splits it there. The key and
    /// number cannot occur unescaped inside a JSON string, so the one match is the field.
    fn new(shape: &RequestShape, prompt: &str) -> anyhow::Result<Self> {
        const PLACEHOLDER: u32 = u32::MAX;
        let json = serde_json::to_vec(&body(shape, prompt, PLACEHOLDER))
            .context("serialising a request body")?;
        const KEY: &str = "\"max_tokens\":";
        let field = format!("{KEY}{PLACEHOLDER}");
        let at = json
            .windows(field.len())
            .position(|window| window == field.as_bytes())
            .context("no max_tokens field in a serialised request body")?;
        let value_at = at + KEY.len();
        Ok(Self {
            head: Bytes::copy_from_slice(&json[..value_at]),
            tail: Bytes::copy_from_slice(&json[at + field.len()..]),
        })
    }

    fn render(&self, max_tokens: u32) -> Bytes {
        let mut body = BytesMut::with_capacity(self.head.len() + 10 + self.tail.len());
        body.put_slice(&self.head);
        body.put_slice(max_tokens.to_string().as_bytes());
        body.put_slice(&self.tail);
        body.freeze()
    }
}

/// The JSON body of one request.
pub fn body(shape: &RequestShape, prompt: &str, max_tokens: u32) -> serde_json::Value {
    let mut body = json!({
        "model": shape.model,
        "max_tokens": max_tokens,
        "temperature": shape.temperature,
        "stream": shape.stream,
    });
    match shape.endpoint {
        Endpoint::Completions => body["prompt"] = json!(prompt),
        Endpoint::ChatCompletions => {
            body["messages"] = json!([{ "role": "user", "content": prompt }]);
        }
    }
    if shape.stream {
        body["stream_options"] = json!({ "include_usage": true });
    }
    if let Some(seed) = shape.seed {
        body["seed"] = json!(seed);
    }
    body
}

/// Prompts from a file, or the built-in set.
pub fn load_prompts(file: Option<&Path>) -> anyhow::Result<Vec<String>> {
    let Some(file) = file else {
        return Ok(BUILTIN_PROMPTS.iter().map(|p| (*p).to_owned()).collect());
    };
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("reading prompts from {}", file.display()))?;
    let prompts =
        parse_prompts(&text).with_context(|| format!("parsing prompts in {}", file.display()))?;
    if prompts.is_empty() {
        bail!("{} holds no prompts", file.display());
    }
    Ok(prompts)
}

/// One prompt per non-empty line; a line starting with `"` is a JSON string.
pub fn parse_prompts(text: &str) -> anyhow::Result<Vec<String>> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(number, line)| {
            if line.starts_with('"') {
                serde_json::from_str(line).with_context(|| format!("line {}", number + 1))
            } else {
                Ok(line.to_owned())
            }
        })
        .collect()
}

/// Code prompts of varied length, so prompt-length distributions are not a single point.
const BUILTIN_PROMPTS: &[&str] = &[
    "def fibonacci(n):",
    "Write a Python function that checks whether a string is a palindrome.",
    "// Rust: parse a comma-separated list of integers into a Vec<i64>, skipping blanks\nfn parse_list(s: &str) -> Vec<i64> {",
    "Explain what this SQL does and suggest an index:\nSELECT user_id, COUNT(*) FROM orders WHERE created_at > NOW() - INTERVAL '7 days' GROUP BY user_id ORDER BY 2 DESC LIMIT 10;",
    "function debounce(fn, ms) {",
    "Write a Go HTTP handler that returns the current time as JSON, with a test using httptest.",
    "class LRUCache:\n    \"\"\"A least-recently-used cache with O(1) get and put.\"\"\"\n    def __init__(self, capacity: int):",
    "Refactor this to avoid the nested loops:\nfor i in range(len(a)):\n    for j in range(len(b)):\n        if a[i] == b[j]:\n            out.append(a[i])",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(endpoint: Endpoint, stream: bool) -> RequestShape {
        RequestShape {
            endpoint,
            model: "m".into(),
            max_tokens: MaxTokens::fixed(4),
            length_seed: 1,
            stream,
            temperature: 0.0,
            seed: Some(7),
        }
    }

    #[test]
    fn completions_bodies_carry_the_prompt_and_ask_for_usage_when_streaming() {
        let body = body(&shape(Endpoint::Completions, true), "def f():", 4);
        assert_eq!(body["prompt"], "def f():");
        assert_eq!(body["stream"], true);
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert_eq!(body["seed"], 7);
        assert!(body.get("messages").is_none());
    }

    #[test]
    fn chat_bodies_carry_one_user_message() {
        let body = body(&shape(Endpoint::ChatCompletions, false), "hi", 4);
        assert_eq!(body["messages"][0]["role"], "user");
        assert_eq!(body["messages"][0]["content"], "hi");
        assert!(body.get("prompt").is_none());
        assert!(body.get("stream_options").is_none());
    }

    #[test]
    fn prompt_files_take_plain_and_json_lines() {
        let prompts = parse_prompts("plain one\n\n\"two\\nlines\"\n").unwrap();
        assert_eq!(
            prompts,
            vec!["plain one".to_owned(), "two\nlines".to_owned()]
        );
        assert!(parse_prompts("\"unterminated\n").is_err());
    }

    #[test]
    fn bodies_cycle_through_the_prompts() {
        let prompts = vec!["a".to_owned(), "b".to_owned()];
        let workload = Workload::new(&shape(Endpoint::Completions, false), &prompts).unwrap();
        assert_eq!(workload.body(0), workload.body(2));
        assert_ne!(workload.body(0), workload.body(1));
    }

    #[test]
    fn each_body_carries_its_own_draw_from_a_range() {
        let mut shape = shape(Endpoint::ChatCompletions, true);
        shape.max_tokens = MaxTokens { min: 16, max: 256 };
        // A prompt that quotes the field the bodies are split at.
        let prompts = vec![r#"say "max_tokens":4294967295 twice"#.to_owned()];
        let workload = Workload::new(&shape, &prompts).unwrap();
        let mut asked = std::collections::BTreeSet::new();
        for seq in 0..50 {
            let (bytes, max_tokens) = workload.body(seq);
            let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(json["max_tokens"], max_tokens);
            assert_eq!(json["messages"][0]["content"], prompts[0]);
            assert_eq!(json["stream_options"]["include_usage"], true);
            assert!((16..=256).contains(&max_tokens));
            asked.insert(max_tokens);
        }
        assert!(asked.len() > 10, "draws vary: {asked:?}");
    }
}
