//! The synthetic backend: deterministic, code-like text at a chosen pace, no model.
//!
//! It exists for load tests and for testing the queue without a model: the same request always
//! produces the same text, `max_tokens` and stop strings are honoured, and tokens are counted the
//! way a tokenizer would report them (here one prompt token per 4 bytes, rounded up).
//!
//! Sampling fields that change a real model's choice change the text the same way: the seed
//! when sampling (not when greedy), and the penalties against repetition always. Penalties
//! outside the range the gateway enforces are refused, as the candle sampler refuses them.
//!
//! A prompt whose leading text it has seen reports those tokens as cached, in the usage and in
//! the prefix cache's metrics (`prefix_cache.rs`), within `--prefix-cache-bytes` of text; it
//! costs no time either way.
//!
//! Beyond plain text, it answers as a model with every feature would, in well-formed and
//! documented shapes the gateway's tests check exactly:
//! - fill-in-the-middle: the middle is [`infill_middle`] (one line naming the sizes of the
//!   prefix and the suffix), then the FIM end token (counted, as a model's end token is), so
//!   `finish_reason` is `stop` unless `max_tokens` cuts it;
//! - log probabilities: the chosen token has probability 1/2 and the `k`-th alternative
//!   (other corpus tokens, distinct) 2^-(k+1), so they are sorted, at most 0 and sum below 1;
//! - tools and `response_format`: tool calls in Hermes syntax and schema-valid JSON
//!   (`structured.rs`), as text in pieces of up to 4 bytes (one token each), then an end token
//!   (counted), so `finish_reason` is `stop` unless `max_tokens` cuts it.
//!
//! # Layout
//! - `mod.rs`: the backend and its text.
//! - `prefix_cache.rs`: the prompt text it has seen.
//! - `structured.rs`: its tool calls and JSON answers.

mod prefix_cache;
mod structured;

use super::constraint::{byte_token_env, Constraints};
use super::stop::{StopCheck, StopMatcher};
use super::{Backend, BackendError, BackendInfo, Finished, Flow, StepObserver, TokenSink};
use crate::tool_calls::format::ToolFormat;
use coder_nats::{
    FinishReason, GenerationRequest, Infill, Logprob, Prompt, SamplingParams, TokenLogprobs, Usage,
};
use prefix_cache::{TextPrefixCache, BYTES_PER_TOKEN};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// The text the synthetic backend cycles through, one "token" per word or whitespace run.
const CORPUS: &str = "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n\n\
def is_prime(n):\n    if n < 2:\n        return False\n    for d in range(2, int(n ** 0.5) + 1):\n        if n % d == 0:\n            return False\n    return True\n\n\
fn main() {\n    let total: u64 = (1..=10).sum();\n    println!(\"{total}\");\n}\n\n";

/// Context length the synthetic model claims.
const CONTEXT_LENGTH: u32 = 32_768;

pub struct SyntheticBackend {
    info: BackendInfo,
    per_token: Duration,
    tokens: Vec<&'static str>,
    prefixes: Mutex<TextPrefixCache>,
    observer: RwLock<Option<Arc<dyn StepObserver>>>,
    /// The grammar engine over the byte vocabulary, for shaped answers.
    constraints: Constraints,
}

impl SyntheticBackend {
    /// `per_token` of sleep per generated token; a prefix cache of `prefix_cache_bytes` of
    /// prompt text (0: off).
    pub fn new(per_token: Duration, prefix_cache_bytes: u64) -> Self {
        Self {
            info: BackendInfo {
                kind: "synthetic",
                device: "cpu".into(),
                context_length: CONTEXT_LENGTH,
                cpu_kernels: "none",
            },
            per_token,
            tokens: split_tokens(CORPUS),
            prefixes: Mutex::new(TextPrefixCache::new(prefix_cache_bytes)),
            observer: RwLock::new(None),
            constraints: Constraints::new(&byte_token_env()).expect("the byte vocabulary indexes"),
        }
    }

    /// How many of the prompt's tokens its prefix cache held; reports the cache's figures.
    fn cached_tokens(&self, prompt: &Prompt, prompt_tokens: u32) -> u32 {
        let mut prefixes = self.prefixes.lock().unwrap_or_else(|e| e.into_inner());
        let cached = prefixes.admit(prompt.hash_key().as_bytes(), prompt_tokens);
        let counts = prefixes.take_counts();
        drop(prefixes);
        let observer = self.observer.read().unwrap_or_else(|e| e.into_inner());
        if let Some(observer) = observer.as_ref() {
            observer.prefix_cache(&counts);
        }
        cached
    }
}

/// The middle the synthetic backend fills in: a line of code naming how many lines the prefix
/// and the suffix have, so a test can tell both reached the worker.
pub fn infill_middle(infill: &Infill) -> String {
    format!(
        "return fill({}, {})\n",
        infill.prefix.lines().count(),
        infill.suffix.lines().count()
    )
}

/// An answer fixed before generation starts (a FIM middle, a shaped answer): its tokens, and
/// whether an end token follows them.
struct Script {
    pieces: Vec<String>,
    ends: bool,
}

impl Script {
    /// `text` as tokens of up to [`BYTES_PER_TOKEN`] bytes, cut between characters.
    fn in_pieces(text: &str, ends: bool) -> Self {
        let mut pieces = Vec::new();
        let mut piece = String::new();
        for c in text.chars() {
            if !piece.is_empty() && piece.len() + c.len_utf8() > BYTES_PER_TOKEN {
                pieces.push(std::mem::take(&mut piece));
            }
            piece.push(c);
        }
        if !piece.is_empty() {
            pieces.push(piece);
        }
        Self { pieces, ends }
    }
}

/// Words and the whitespace between them, in order.
fn split_tokens(text: &str) -> Vec<&str> {
    let mut tokens = Vec::new();
    let mut start = 0;
    let mut in_space = text.starts_with(char::is_whitespace);
    for (i, c) in text.char_indices() {
        if c.is_whitespace() != in_space {
            tokens.push(&text[start..i]);
            start = i;
            in_space = c.is_whitespace();
        }
    }
    tokens.push(&text[start..]);
    tokens
}

/// What picks the text: the prompt, and the sampling fields that change a real model's choice.
fn text_hash(request: &GenerationRequest) -> u64 {
    let params = &request.params;
    let mut hasher = DefaultHasher::new();
    request.prompt.hash_key().hash(&mut hasher);
    if params.temperature > 0.0 {
        params.seed.hash(&mut hasher);
    }
    let penalties = [
        (params.repetition_penalty, 1.0),
        (params.frequency_penalty, 0.0),
        (params.presence_penalty, 0.0),
    ];
    for (value, none) in penalties {
        if value != none {
            value.to_bits().hash(&mut hasher);
        }
    }
    hasher.finish()
}

pub fn prompt_tokens(prompt: &Prompt) -> u32 {
    (prompt.char_len() as u32)
        .div_ceil(BYTES_PER_TOKEN as u32)
        .max(1)
}

impl SyntheticBackend {
    /// The fixed answer to `prompt`, if it has one: a FIM middle, or a shaped answer within
    /// `max_tokens`.
    fn script(
        &self,
        prompt: &Prompt,
        hash: u64,
        max_tokens: u32,
    ) -> Result<Option<Script>, BackendError> {
        Ok(match prompt {
            Prompt::Infill(infill) => Some(Script {
                pieces: split_tokens(&infill_middle(infill))
                    .into_iter()
                    .map(str::to_owned)
                    .collect(),
                ends: true,
            }),
            Prompt::Conversation(conversation) => {
                let budget = max_tokens as usize * BYTES_PER_TOKEN;
                structured::answer(&self.constraints, conversation, hash, budget)?
                    .map(|walked| Script::in_pieces(&walked.text, walked.complete))
            }
            Prompt::Text(_) | Prompt::Chat(_) => None,
        })
    }

    /// The documented made-up log probabilities of `chosen` (see the module's docs), with `top`
    /// alternatives: the chosen token first, then distinct corpus tokens after `position`.
    fn logprobs(&self, chosen: &str, position: usize, top: u32) -> TokenLogprobs {
        let half = std::f32::consts::LN_2;
        let entry = |token: &str, rank: usize| {
            Logprob::new(token.as_bytes().to_vec(), -half * (rank + 1) as f32)
        };
        let mut alternatives: Vec<&str> = vec![chosen];
        for step in 1..self.tokens.len() {
            if alternatives.len() >= top as usize {
                break;
            }
            let token = self.tokens[(position + step) % self.tokens.len()];
            if !alternatives.contains(&token) {
                alternatives.push(token);
            }
        }
        alternatives.truncate(top as usize);
        TokenLogprobs {
            chosen: entry(chosen, 0),
            top: alternatives
                .iter()
                .enumerate()
                .map(|(rank, token)| entry(token, rank))
                .collect(),
        }
    }
}

impl Backend for SyntheticBackend {
    fn info(&self) -> &BackendInfo {
        &self.info
    }

    /// Its calls are written in the Hermes syntax.
    fn tool_format(&self) -> Option<ToolFormat> {
        Some(ToolFormat::Hermes)
    }

    fn generate(
        &self,
        request: &GenerationRequest,
        sink: &mut dyn TokenSink,
    ) -> Result<Finished, BackendError> {
        let params = &request.params;
        let prompt_tokens = prompt_tokens(&request.prompt);
        super::check_context(prompt_tokens as usize, params.max_tokens, CONTEXT_LENGTH)?;
        if let Some((field, value)) = params.penalty_out_of_range() {
            let range = SamplingParams::PENALTY_RANGE;
            return Err(BackendError::InvalidRequest(format!(
                "`{field}` must be between {} and {}, got {value}",
                range.start(),
                range.end()
            )));
        }
        let cached_tokens = self.cached_tokens(&request.prompt, prompt_tokens);
        let hash = text_hash(request);
        let offset = (hash % self.tokens.len() as u64) as usize;
        let script = self.script(&request.prompt, hash, params.max_tokens)?;
        let mut stops = StopMatcher::new(&params.stop);
        let mut completion_tokens = 0;
        let mut finish_reason = FinishReason::Length;
        while completion_tokens < params.max_tokens {
            if sink.is_cancelled() {
                return Err(BackendError::Cancelled);
            }
            if !self.per_token.is_zero() {
                std::thread::sleep(self.per_token);
            }
            let position = completion_tokens as usize;
            completion_tokens += 1;
            let token = match &script {
                Some(script) => match script.pieces.get(position) {
                    Some(token) => token.as_str(),
                    None => {
                        // The end token: no text, and the answer is complete.
                        finish_reason = match script.ends {
                            true => FinishReason::Stop,
                            false => FinishReason::Length,
                        };
                        break;
                    }
                },
                None => self.tokens[(offset + position) % self.tokens.len()],
            };
            let (text, stopped) = match stops.push(token) {
                StopCheck::Emit(text) => (text, false),
                StopCheck::Stopped(text) => (text, true),
            };
            let logprobs = params
                .logprobs
                .map(|top| self.logprobs(token, offset + position, top));
            if sink.generated(&text, logprobs) == Flow::Stop {
                return Err(BackendError::Cancelled);
            }
            if stopped {
                finish_reason = FinishReason::Stop;
                break;
            }
        }
        let rest = stops.flush();
        if !rest.is_empty() {
            sink.token(&rest);
        }
        Ok(Finished {
            finish_reason,
            usage: Usage {
                prompt_tokens,
                completion_tokens,
                cached_tokens,
            },
        })
    }

    fn observe_steps(&self, observer: Arc<dyn StepObserver>) {
        *self.observer.write().unwrap_or_else(|e| e.into_inner()) = Some(observer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Collect {
        text: String,
        calls: u32,
        stop_after: Option<u32>,
    }

    impl TokenSink for Collect {
        fn token(&mut self, text: &str) -> Flow {
            self.text.push_str(text);
            self.calls += 1;
            if self.stop_after == Some(self.calls) {
                Flow::Stop
            } else {
                Flow::Continue
            }
        }
        fn is_cancelled(&self) -> bool {
            false
        }
    }

    fn request(prompt: &str, params: SamplingParams) -> GenerationRequest {
        GenerationRequest {
            id: uuid::Uuid::now_v7(),
            model: "synthetic".into(),
            prompt: Prompt::Text(prompt.into()),
            params,
        }
    }

    fn run(request: &GenerationRequest, sink: &mut Collect) -> Result<Finished, BackendError> {
        SyntheticBackend::new(Duration::ZERO, 1 << 20).generate(request, sink)
    }

    #[test]
    fn same_request_same_text_and_max_tokens_honoured() {
        let params = SamplingParams {
            max_tokens: 12,
            seed: 5,
            ..Default::default()
        };
        let (mut a, mut b) = (Collect::default(), Collect::default());
        let done = run(&request("def f():", params.clone()), &mut a).unwrap();
        run(&request("def f():", params), &mut b).unwrap();
        assert_eq!(a.text, b.text);
        assert!(!a.text.is_empty());
        assert_eq!(done.usage.completion_tokens, 12);
        assert_eq!(done.finish_reason, FinishReason::Length);
        assert_eq!(done.usage.prompt_tokens, 2);
    }

    #[test]
    fn a_repeated_prompt_reports_its_leading_blocks_as_cached() {
        let backend = SyntheticBackend::new(Duration::ZERO, 1 << 20);
        let params = SamplingParams {
            max_tokens: 2,
            ..Default::default()
        };
        let prompt = "def f():\n    return 1\n".repeat(20);
        let usage = || {
            let request = request(&prompt, params.clone());
            backend
                .generate(&request, &mut Collect::default())
                .unwrap()
                .usage
        };
        assert_eq!(usage().cached_tokens, 0);
        let again = usage();
        assert!(again.cached_tokens > 0, "{again:?}");
        assert!(again.cached_tokens < again.prompt_tokens, "{again:?}");

        let off = SyntheticBackend::new(Duration::ZERO, 0);
        for _ in 0..2 {
            let request = request(&prompt, params.clone());
            let done = off.generate(&request, &mut Collect::default()).unwrap();
            assert_eq!(done.usage.cached_tokens, 0);
        }
    }

    #[test]
    fn penalties_change_the_text_and_out_of_range_ones_are_refused() {
        let text = |frequency_penalty, presence_penalty| {
            let params = SamplingParams {
                max_tokens: 8,
                temperature: 0.0,
                frequency_penalty,
                presence_penalty,
                ..Default::default()
            };
            let mut sink = Collect::default();
            run(&request("def f():", params), &mut sink).map(|_| sink.text)
        };
        let plain = text(0.0, 0.0).unwrap();
        assert_eq!(text(0.0, 0.0).unwrap(), plain);
        assert_ne!(text(1.5, 0.0).unwrap(), plain);
        assert_ne!(text(0.0, -0.5).unwrap(), plain);
        match text(0.0, 2.5) {
            Err(BackendError::InvalidRequest(message)) => {
                assert!(message.contains("presence_penalty"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            text(f32::NAN, 0.0),
            Err(BackendError::InvalidRequest(_))
        ));
    }

    #[derive(Default)]
    struct Pieces(Vec<String>);

    impl TokenSink for Pieces {
        fn token(&mut self, text: &str) -> Flow {
            self.0.push(text.to_owned());
            Flow::Continue
        }
        fn is_cancelled(&self) -> bool {
            false
        }
    }

    fn required_call(max_tokens: u32) -> GenerationRequest {
        let tool = coder_nats::Tool {
            name: "get_weather".into(),
            description: None,
            parameters: Some(serde_json::json!({"type": "object",
                "properties": {"city": {"type": "string"}}, "required": ["city"]})),
            strict: false,
        };
        let conversation = coder_nats::Conversation {
            tools: vec![tool],
            tool_choice: coder_nats::ToolChoice::Required,
            ..coder_nats::Conversation::plain(vec![coder_nats::ChatMessage::new("user", "hi")])
        };
        let mut request = request("", SamplingParams::default());
        request.prompt = Prompt::Conversation(conversation);
        request.params.max_tokens = max_tokens;
        request
    }

    #[test]
    fn a_required_call_comes_as_hermes_text_in_token_sized_pieces_then_stops() {
        let backend = SyntheticBackend::new(Duration::ZERO, 0);
        let mut sink = Pieces::default();

        let done = backend.generate(&required_call(64), &mut sink).unwrap();

        assert_eq!(
            sink.0.concat(),
            "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"\"}}\n</tool_call>"
        );
        assert!(sink.0.iter().all(|piece| (1..=4).contains(&piece.len())));
        assert_eq!(sink.0[..3], ["<too", "l_ca", "ll>\n"]);
        assert_eq!(done.finish_reason, FinishReason::Stop);
        // The pieces, then the end token.
        assert_eq!(done.usage.completion_tokens, sink.0.len() as u32 + 1);

        let mut sink = Pieces::default();
        let cut = backend.generate(&required_call(5), &mut sink).unwrap();
        assert_eq!(
            (sink.0.concat().as_str(), cut.finish_reason),
            ("<tool_call>\n{\"name\":", FinishReason::Length)
        );
    }

    #[test]
    fn an_infill_request_gets_the_documented_middle_and_stops_at_the_fim_end() {
        let infill = Infill {
            prefix: "def f(a, b):\n    ".into(),
            suffix: "\n\nprint(f(1, 2))\n".into(),
            files: Vec::new(),
        };
        let mut request = request("", SamplingParams::default());
        request.prompt = Prompt::Infill(infill.clone());
        request.params.max_tokens = 50;
        let mut sink = Collect::default();
        let done = run(&request, &mut sink).unwrap();
        assert_eq!(sink.text, "return fill(2, 3)\n");
        assert_eq!(sink.text, infill_middle(&infill));
        assert_eq!(done.finish_reason, FinishReason::Stop);
        // return, " ", fill(2,, " ", 3), "\n", and the end token.
        assert_eq!(done.usage.completion_tokens, 7);

        request.params.max_tokens = 2;
        let mut sink = Collect::default();
        let done = run(&request, &mut sink).unwrap();
        assert_eq!(
            (sink.text.as_str(), done.finish_reason),
            ("return ", FinishReason::Length)
        );
    }

    #[test]
    fn logprobs_are_sorted_and_start_with_the_chosen_token() {
        let backend = SyntheticBackend::new(Duration::ZERO, 1 << 20);
        for top in [0, 1, 5, 20] {
            let logprobs = backend.logprobs("def", 0, top);
            assert_eq!(logprobs.top.len(), top as usize);
            assert_eq!(logprobs.chosen.token, "def");
            assert!(logprobs.chosen.logprob < 0.0);
            if let Some(first) = logprobs.top.first() {
                assert_eq!(first, &logprobs.chosen);
            }
            assert!(logprobs.top.windows(2).all(|w| w[0].logprob > w[1].logprob));
            let total: f32 = logprobs.top.iter().map(|l| l.logprob.exp()).sum();
            assert!(total < 1.0, "{total}");
        }
    }

    #[test]
    fn a_stop_string_ends_generation_before_it() {
        let params = SamplingParams {
            max_tokens: 500,
            stop: vec!["return".into()],
            ..Default::default()
        };
        let mut sink = Collect::default();
        let done = run(&request("x", params), &mut sink).unwrap();
        assert_eq!(done.finish_reason, FinishReason::Stop);
        assert!(!sink.text.contains("return"), "{}", sink.text);
    }

    #[test]
    fn the_sink_can_stop_generation() {
        let params = SamplingParams {
            max_tokens: 100,
            ..Default::default()
        };
        let mut sink = Collect {
            stop_after: Some(3),
            ..Default::default()
        };
        assert!(matches!(
            run(&request("x", params), &mut sink),
            Err(BackendError::Cancelled)
        ));
        assert_eq!(sink.calls, 3);
    }

    #[test]
    fn too_long_for_the_context_names_both_numbers() {
        let params = SamplingParams {
            max_tokens: 32_000,
            ..Default::default()
        };
        let prompt = "x".repeat(4 * 1000);
        match run(&request(&prompt, params), &mut Collect::default()) {
            Err(BackendError::InvalidRequest(message)) => {
                assert!(
                    message.contains("1000") && message.contains("32000"),
                    "{message}"
                )
            }
            other => panic!("{other:?}"),
        }
    }
}
