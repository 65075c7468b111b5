//! What the load generator sends: the endpoint, the prompts and the JSON bodies.
//!
//! Bodies are serialised once, before the run, and cycled through: building JSON on the hot path
//! would make the generator, not the gateway, the thing measured. With one `--max-tokens` value
//! a request's body is a shared buffer; with a range, each body is kept split around its
//! `max_tokens` value, so a request's own draw is only written between the two halves.
//!
//! With distinct prompts ([`RequestShape::distinct_prompts`]) every request's prompt starts with
//! a tag of its own ([`PromptTag`]), so no two requests of a run, warm-ups included, share a
//! prefix a server could take from its prompt cache; those bodies are serialised per request,
//! which costs microseconds, fine for the model benchmarks it is meant for.

use crate::max_tokens::MaxTokens;
use anyhow::{bail, Context};
use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{json, Map, Value};
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
    /// Fields added to every body after the ones above (replacing one of the same name): a
    /// server's own options, such as llama-server's `cache_prompt`.
    pub extra_fields: Map<String, Value>,
    /// Start every request's prompt with a tag of its own ([`PromptTag`]).
    pub distinct_prompts: bool,
}

/// Which request a body is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// The `n`-th warm-up request (from 0).
    WarmUp(u64),
    /// The measured run's request with this sequence number.
    Run(u64),
}

impl Turn {
    /// The number that picks the prompt and the `max_tokens` draw.
    fn seq(self) -> u64 {
        match self {
            Self::WarmUp(n) | Self::Run(n) => n,
        }
    }
}

/// The tag that opens every prompt of a run with distinct prompts: the run's random nonce and
/// the request's turn, `[request 1a2b3c4d-17]` or `[request 1a2b3c4d-w0]` for a warm-up, on a
/// line of its own. Placed first, it makes prompts differ from their first user token on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PromptTag {
    pub nonce: u32,
}

impl PromptTag {
    pub fn random() -> Self {
        Self {
            nonce: rand::random(),
        }
    }

    /// `prompt` with the tag of `turn` in front.
    pub fn apply(self, turn: Turn, prompt: &str) -> String {
        let nonce = self.nonce;
        match turn {
            Turn::WarmUp(n) => format!("[request {nonce:08x}-w{n}]\n{prompt}"),
            Turn::Run(n) => format!("[request {nonce:08x}-{n}]\n{prompt}"),
        }
    }
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
    /// Distinct prompts: each body serialised when its request is sent.
    Tagged {
        shape: Box<RequestShape>,
        prompts: Vec<String>,
        tag: PromptTag,
    },
}

impl Workload {
    pub fn new(shape: &RequestShape, prompts: &[String]) -> anyhow::Result<Self> {
        if prompts.is_empty() {
            bail!("no prompts to send");
        }
        let bodies = if shape.distinct_prompts {
            Bodies::Tagged {
                shape: Box::new(shape.clone()),
                prompts: prompts.to_vec(),
                tag: PromptTag::random(),
            }
        } else if shape.max_tokens.is_fixed() {
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

    /// The body of the measured run's `seq`-th request (prompts are used in turn) and the
    /// `max_tokens` it asks for.
    pub fn body(&self, seq: u64) -> (Bytes, u32) {
        self.body_for(Turn::Run(seq))
    }

    /// The body of `turn`'s request and the `max_tokens` it asks for; a warm-up request takes
    /// the prompt and draw of the run's request with its number, but a tag of its own.
    pub fn body_for(&self, turn: Turn) -> (Bytes, u32) {
        let seq = turn.seq();
        let max_tokens = self.max_tokens.draw(self.length_seed, seq);
        let pick = |count: usize| (seq % count as u64) as usize;
        let body = match &self.bodies {
            Bodies::Fixed(bodies) => bodies[pick(bodies.len())].clone(),
            Bodies::Drawn(templates) => templates[pick(templates.len())].render(max_tokens),
            Bodies::Tagged {
                shape,
                prompts,
                tag,
            } => {
                let prompt = tag.apply(turn, &prompts[pick(prompts.len())]);
                // A body of strings, numbers and maps serialises; nothing here can fail.
                let json = serde_json::to_vec(&body(shape, &prompt, max_tokens));
                Bytes::from(json.unwrap_or_default())
            }
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
    for (name, value) in &shape.extra_fields {
        body[name] = value.clone();
    }
    body
}

/// `--extra-fields`: a JSON object, its fields added to every body.
pub fn parse_extra_fields(text: &str) -> anyhow::Result<Map<String, Value>> {
    match serde_json::from_str(text).context("--extra-fields is not JSON")? {
        Value::Object(fields) => Ok(fields),
        other => bail!("--extra-fields must be a JSON object, not {other}"),
    }
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
            extra_fields: Map::new(),
            distinct_prompts: false,
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

    #[test]
    fn extra_fields_join_every_body_and_win_over_the_shape() {
        let mut shape = shape(Endpoint::ChatCompletions, true);
        shape.extra_fields =
            parse_extra_fields(r#"{"cache_prompt": false, "temperature": 0.5}"#).unwrap();
        let body = body(&shape, "hi", 4);
        assert_eq!(body["cache_prompt"], false);
        assert_eq!(body["temperature"], 0.5);
        assert_eq!(body["messages"][0]["content"], "hi");
        assert!(parse_extra_fields("[1]").is_err());
        assert!(parse_extra_fields("{nope").is_err());
    }

    #[test]
    fn distinct_prompts_differ_per_request_and_from_the_warm_ups() {
        let mut shape = shape(Endpoint::ChatCompletions, true);
        shape.distinct_prompts = true;
        shape.extra_fields = parse_extra_fields(r#"{"cache_prompt": false}"#).unwrap();
        let prompts = vec!["a".to_owned(), "b".to_owned()];
        let workload = Workload::new(&shape, &prompts).unwrap();
        let content = |turn| {
            let (bytes, max_tokens) = workload.body_for(turn);
            assert_eq!(max_tokens, 4);
            let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(json["cache_prompt"], false);
            json["messages"][0]["content"].as_str().unwrap().to_owned()
        };
        let mut seen = std::collections::BTreeSet::new();
        for turn in (0..4).map(Turn::Run).chain((0..2).map(Turn::WarmUp)) {
            assert!(seen.insert(content(turn)), "{turn:?} repeats a prompt");
        }
        // The same request gets the same prompt; prompts still take turns after the tag.
        assert_eq!(content(Turn::Run(2)), content(Turn::Run(2)));
        assert!(content(Turn::Run(2)).ends_with("]\na"));
        assert!(content(Turn::Run(3)).ends_with("]\nb"));
        assert_eq!(workload.body(3), workload.body_for(Turn::Run(3)));
    }

    #[test]
    fn a_prompt_tag_names_the_run_and_the_request() {
        let tag = PromptTag { nonce: 0x1a2b };
        assert_eq!(tag.apply(Turn::Run(17), "p"), "[request 00001a2b-17]\np");
        assert_eq!(tag.apply(Turn::WarmUp(0), "p"), "[request 00001a2b-w0]\np");
    }
}
