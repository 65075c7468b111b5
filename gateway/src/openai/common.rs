//! Fields shared by completions and chat, and their validation into [`SamplingParams`].

use super::fields::{self, Field};
use super::json::{parse, parse_value};
use super::shape;
use crate::error::ApiError;
use coder_nats::SamplingParams;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// At most this many stop sequences (OpenAI's limit).
const MAX_STOP_SEQUENCES: usize = 4;
/// The longest stop sequence accepted, in bytes. The worker holds back generated text that could
/// still become a stop sequence and checks every held suffix against each one per token: a
/// megabyte-long stop would cost it quadratic time and keep the whole answer from streaming.
pub const MAX_STOP_BYTES: usize = 256;
/// The longest model name accepted, in bytes. A name becomes a NATS subject token (each byte
/// outside `[A-Za-z0-9_-]` as three) and part of a consumer name; past nats-server's 4,096-byte
/// control line the server would drop the gateway's connection.
pub const MAX_MODEL_NAME_BYTES: usize = 256;
/// The longest `prompt_cache_key` accepted, in bytes (only its hash is kept).
pub const MAX_PROMPT_CACHE_KEY_BYTES: usize = 1024;
/// `max_tokens` when the client gives none (OpenAI's completions default).
const DEFAULT_MAX_TOKENS: u32 = 16;

/// A string or a list of strings (`prompt`, `stop`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

/// Sampling and streaming fields common to both endpoints (the fields they refuse are in
/// [`fields`]).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SamplingFields {
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    /// Extension (vLLM, TGI): keep only the k most likely tokens; 0 or absent = off.
    pub top_k: Option<u32>,
    pub seed: Option<u64>,
    pub stop: Option<OneOrMany>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    /// Extension (vLLM, TGI): > 1 discourages repeating tokens.
    pub repetition_penalty: Option<f32>,
    /// Choices to generate, 1 to [`SamplingParams::MAX_CHOICES`].
    pub n: Option<u32>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    /// OpenAI's hint for prompt caching: requests with the same key go to the same partition of
    /// the queue, so to the worker that holds their prefix (instead of a hash of the prompt's
    /// leading content).
    pub prompt_cache_key: Option<String>,
}

impl SamplingFields {
    /// Validates every field against its range and fills defaults; `max_tokens_field` is the name
    /// the client used (`max_tokens` or `max_completion_tokens`).
    pub fn to_params(
        &self,
        max_tokens: Option<u32>,
        max_tokens_field: &str,
        max_tokens_limit: u32,
    ) -> Result<SamplingParams, ApiError> {
        let max_tokens = max_tokens.unwrap_or(DEFAULT_MAX_TOKENS);
        if max_tokens == 0 || max_tokens > max_tokens_limit {
            return Err(ApiError::bad_request(
                max_tokens_field,
                format!("`{max_tokens_field}` must be between 1 and {max_tokens_limit}, got {max_tokens}"),
            ));
        }
        let temperature = self.temperature.unwrap_or(1.0);
        check_range("temperature", temperature, 0.0, 2.0)?;
        // Too cold to divide logits by (1e-38 overflows them): greedy, and the queue says so.
        let temperature = if temperature < SamplingParams::GREEDY_BELOW_TEMPERATURE {
            0.0
        } else {
            temperature
        };
        let top_p = self.top_p.unwrap_or(1.0);
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(ApiError::bad_request(
                "top_p",
                format!("`top_p` must be > 0 and <= 1, got {top_p}"),
            ));
        }
        let penalty = |field, value: Option<f32>| {
            let value = value.unwrap_or(0.0);
            let range = SamplingParams::PENALTY_RANGE;
            check_range(field, value, *range.start(), *range.end()).map(|()| value)
        };
        let frequency_penalty = penalty("frequency_penalty", self.frequency_penalty)?;
        let presence_penalty = penalty("presence_penalty", self.presence_penalty)?;
        let repetition_penalty = self.repetition_penalty.unwrap_or(1.0);
        check_range("repetition_penalty", repetition_penalty, 0.01, 10.0)?;
        let n = self.n.unwrap_or(1);
        if !(1..=SamplingParams::MAX_CHOICES).contains(&n) {
            return Err(ApiError::bad_request(
                "n",
                format!(
                    "`n` must be between 1 and {}, got {n}",
                    SamplingParams::MAX_CHOICES
                ),
            ));
        }
        Ok(SamplingParams {
            max_tokens,
            temperature,
            top_p,
            top_k: self.top_k.unwrap_or(0),
            seed: self.seed.unwrap_or_else(rand::random),
            stop: self.stop_sequences()?,
            repetition_penalty,
            frequency_penalty,
            presence_penalty,
            n,
            logprobs: None,
        })
    }

    fn stop_sequences(&self) -> Result<Vec<String>, ApiError> {
        let stops = match &self.stop {
            None => Vec::new(),
            Some(OneOrMany::One(stop)) => vec![stop.clone()],
            Some(OneOrMany::Many(stops)) => stops.clone(),
        };
        if stops.len() > MAX_STOP_SEQUENCES {
            return Err(ApiError::bad_request(
                "stop",
                format!(
                    "`stop` takes at most {MAX_STOP_SEQUENCES} sequences, got {}",
                    stops.len()
                ),
            ));
        }
        if let Some(long) = stops.iter().find(|s| s.len() > MAX_STOP_BYTES) {
            return Err(ApiError::bad_request(
                "stop",
                format!(
                    "`stop` sequences must be at most {MAX_STOP_BYTES} bytes, got one of {}",
                    long.len()
                ),
            ));
        }
        if stops.iter().any(String::is_empty) {
            return Err(ApiError::bad_request(
                "stop",
                "`stop` sequences must not be empty",
            ));
        }
        Ok(stops)
    }

    /// `prompt_cache_key`, checked: non-empty and at most [`MAX_PROMPT_CACHE_KEY_BYTES`] long.
    pub fn prompt_cache_key(&self) -> Result<Option<&str>, ApiError> {
        match self.prompt_cache_key.as_deref() {
            Some(key) if key.is_empty() || key.len() > MAX_PROMPT_CACHE_KEY_BYTES => {
                Err(ApiError::bad_request(
                    "prompt_cache_key",
                    format!(
                        "`prompt_cache_key` must be 1 to {MAX_PROMPT_CACHE_KEY_BYTES} bytes, got {}",
                        key.len()
                    ),
                ))
            }
            key => Ok(key),
        }
    }

    pub fn include_usage(&self) -> bool {
        self.stream_options.is_some_and(|o| o.include_usage)
    }
}

fn check_range(field: &str, value: f32, min: f32, max: f32) -> Result<(), ApiError> {
    if value.is_finite() && (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            field,
            format!("`{field}` must be between {min} and {max}, got {value}"),
        ))
    }
}

/// Parses a generation body: every field checked against the endpoint's `known` fields, then
/// the endpoint's own as `T` and the sampling fields both endpoints share, each from the same
/// JSON value (see [`super::json::ApiBody`]).
pub fn parse_generation_body<T: DeserializeOwned>(
    bytes: &[u8],
    known: &[&[Field]],
) -> Result<(T, SamplingFields), ApiError> {
    shape::check_shape(bytes, known)?;
    let value: serde_json::Value = parse(bytes)?;
    fields::check_body(&value, known)?;
    Ok((parse_value(&value)?, parse_value(&value)?))
}

/// The required `model` field, present, non-empty and at most [`MAX_MODEL_NAME_BYTES`] long.
pub fn required_model(model: &Option<String>) -> Result<&str, ApiError> {
    match model.as_deref() {
        Some(model) if model.len() > MAX_MODEL_NAME_BYTES => Err(ApiError::bad_request(
            "model",
            format!(
                "`model` must be at most {MAX_MODEL_NAME_BYTES} bytes, got {}",
                model.len()
            ),
        )),
        Some(model) if !model.trim().is_empty() => Ok(model),
        _ => Err(ApiError::bad_request("model", "`model` is required")),
    }
}

/// OpenAI's `usage` object.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct UsageBody {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub total_tokens: u32,
    pub prompt_tokens_details: PromptTokensDetails,
}

/// OpenAI's `usage.prompt_tokens_details`: of the prompt, the tokens the worker's prefix cache
/// already held (always present, 0 on a miss, as OpenAI sends it).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct PromptTokensDetails {
    pub cached_tokens: u32,
}

impl From<coder_nats::Usage> for UsageBody {
    fn from(usage: coder_nats::Usage) -> Self {
        Self {
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            // The counts come from the network: a forged `final` must not overflow.
            total_tokens: usage.prompt_tokens.saturating_add(usage.completion_tokens),
            prompt_tokens_details: PromptTokensDetails {
                // Nor claim more cached tokens than the prompt has.
                cached_tokens: usage.cached_tokens.min(usage.prompt_tokens),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_totals_saturate_on_forged_counts() {
        let usage = coder_nats::Usage {
            prompt_tokens: u32::MAX,
            completion_tokens: 2,
            cached_tokens: 0,
        };
        assert_eq!(UsageBody::from(usage).total_tokens, u32::MAX);
    }

    #[test]
    fn cached_tokens_are_reported_in_openais_shape_and_never_above_the_prompt() {
        let usage = |cached_tokens| coder_nats::Usage {
            prompt_tokens: 40,
            completion_tokens: 2,
            cached_tokens,
        };
        let body = serde_json::to_value(UsageBody::from(usage(32))).unwrap();
        assert_eq!(body["prompt_tokens_details"]["cached_tokens"], 32);
        let body = serde_json::to_value(UsageBody::from(usage(0))).unwrap();
        assert_eq!(body["prompt_tokens_details"]["cached_tokens"], 0);
        let forged = UsageBody::from(usage(u32::MAX));
        assert_eq!(forged.prompt_tokens_details.cached_tokens, 40);
    }

    fn params(json: &str) -> Result<SamplingParams, ApiError> {
        let fields: SamplingFields = serde_json::from_str(json).unwrap();
        fields.to_params(fields.max_tokens, "max_tokens", 4096)
    }

    fn param_of(json: &str) -> String {
        match params(json) {
            Err(ApiError::BadRequest {
                param: Some(param), ..
            }) => param,
            other => panic!("expected a 400 naming a field, got {other:?}"),
        }
    }

    #[test]
    fn a_prompt_cache_key_is_one_to_1024_bytes() {
        let key = |json: &str| {
            let fields: SamplingFields = serde_json::from_str(json).unwrap();
            match fields.prompt_cache_key() {
                Ok(key) => Ok(key.map(str::to_owned)),
                Err(ApiError::BadRequest { param, .. }) => Err(param),
                Err(other) => panic!("expected a 400, got {other:?}"),
            }
        };
        assert_eq!(key("{}"), Ok(None));
        assert_eq!(
            key(r#"{"prompt_cache_key": "repo-a"}"#),
            Ok(Some("repo-a".into()))
        );
        let long = format!(r#"{{"prompt_cache_key": "{}"}}"#, "k".repeat(1025));
        for bad in [r#"{"prompt_cache_key": ""}"#, long.as_str()] {
            assert_eq!(key(bad), Err(Some("prompt_cache_key".into())), "{bad}");
        }
    }

    #[test]
    fn defaults_are_openais() {
        let p = params("{}").unwrap();
        assert_eq!(
            (p.max_tokens, p.temperature, p.top_p, p.top_k),
            (16, 1.0, 1.0, 0)
        );
        assert!(p.stop.is_empty());
    }

    #[test]
    fn out_of_range_values_name_their_field() {
        assert_eq!(param_of(r#"{"temperature": 2.5}"#), "temperature");
        assert_eq!(param_of(r#"{"top_p": 0}"#), "top_p");
        assert_eq!(param_of(r#"{"max_tokens": 0}"#), "max_tokens");
        assert_eq!(param_of(r#"{"max_tokens": 5000}"#), "max_tokens");
        assert_eq!(param_of(r#"{"stop": ["a","b","c","d","e"]}"#), "stop");
        let long = "x".repeat(MAX_STOP_BYTES + 1);
        assert_eq!(param_of(&format!(r#"{{"stop": "{long}"}}"#)), "stop");
        assert_eq!(
            param_of(&format!(r#"{{"stop": ["\n", "{long}"]}}"#)),
            "stop"
        );
        let longest = "x".repeat(MAX_STOP_BYTES);
        assert!(params(&format!(r#"{{"stop": "{longest}"}}"#)).is_ok());
        assert_eq!(param_of(r#"{"presence_penalty": 2.5}"#), "presence_penalty");
        assert_eq!(
            param_of(r#"{"frequency_penalty": -2.01}"#),
            "frequency_penalty"
        );
        assert_eq!(
            param_of(r#"{"repetition_penalty": 0}"#),
            "repetition_penalty"
        );
        assert_eq!(param_of(r#"{"n": 0}"#), "n");
        assert_eq!(param_of(r#"{"n": 9}"#), "n");
        assert_eq!(params(r#"{"n": 8}"#).unwrap().n, 8);
    }

    #[test]
    fn penalties_within_openais_range_travel_to_the_worker() {
        let p = params(r#"{"frequency_penalty": 2, "presence_penalty": -2}"#).unwrap();
        assert_eq!((p.frequency_penalty, p.presence_penalty), (2.0, -2.0));
        let p = params("{}").unwrap();
        assert_eq!((p.frequency_penalty, p.presence_penalty), (0.0, 0.0));
    }

    #[test]
    fn a_temperature_too_small_to_divide_by_is_sent_as_greedy() {
        for tiny in ["1e-38", "1e-45", "0.000009"] {
            let p = params(&format!(r#"{{"temperature": {tiny}}}"#)).unwrap();
            assert_eq!(p.temperature, 0.0, "temperature {tiny}");
        }
        assert_eq!(
            params(r#"{"temperature": 0.00001}"#).unwrap().temperature,
            0.00001
        );
        assert_eq!(params(r#"{"temperature": 0.7}"#).unwrap().temperature, 0.7);
    }

    #[test]
    fn a_given_seed_is_kept_and_a_missing_one_is_drawn() {
        assert_eq!(params(r#"{"seed": 42}"#).unwrap().seed, 42);
        let (a, b) = (params("{}").unwrap().seed, params("{}").unwrap().seed);
        assert_ne!(a, b, "two drawn seeds collided");
    }
}
