//! What the load generator sends: the endpoint, the prompts and the JSON bodies.
//!
//! Bodies are serialised once, before the run, and cycled through: building JSON on the hot path
//! would make the generator, not the gateway, the thing measured.

use anyhow::{bail, Context};
use bytes::Bytes;
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
    pub max_tokens: u32,
    pub stream: bool,
    pub temperature: f32,
    pub seed: Option<u64>,
}

/// Pre-serialised request bodies, one per prompt.
#[derive(Debug, Clone)]
pub struct Workload {
    bodies: Vec<Bytes>,
}

impl Workload {
    pub fn new(shape: &RequestShape, prompts: &[String]) -> anyhow::Result<Self> {
        if prompts.is_empty() {
            bail!("no prompts to send");
        }
        let bodies = prompts
            .iter()
            .map(|prompt| serde_json::to_vec(&body(shape, prompt)).map(Bytes::from))
            .collect::<Result<_, _>>()
            .context("serialising request bodies")?;
        Ok(Self { bodies })
    }

    /// The body of the `seq`-th request (prompts are used in turn).
    pub fn body(&self, seq: u64) -> Bytes {
        self.bodies[(seq % self.bodies.len() as u64) as usize].clone()
    }
}

/// The JSON body of one request.
pub fn body(shape: &RequestShape, prompt: &str) -> serde_json::Value {
    let mut body = json!({
        "model": shape.model,
        "max_tokens": shape.max_tokens,
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
            max_tokens: 4,
            stream,
            temperature: 0.0,
            seed: Some(7),
        }
    }

    #[test]
    fn completions_bodies_carry_the_prompt_and_ask_for_usage_when_streaming() {
        let body = body(&shape(Endpoint::Completions, true), "def f():");
        assert_eq!(body["prompt"], "def f():");
        assert_eq!(body["stream"], true);
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert_eq!(body["seed"], 7);
        assert!(body.get("messages").is_none());
    }

    #[test]
    fn chat_bodies_carry_one_user_message() {
        let body = body(&shape(Endpoint::ChatCompletions, false), "hi");
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
}
