//! `POST /infill`: fill-in-the-middle in llama.cpp's server shape, for the editor plugins that
//! speak it (llama.vim, llama.vscode).
//!
//! The request names the code before and after the cursor (`input_prefix`, `input_suffix`),
//! other files of the project (`input_extra`: `{"filename", "text"}`, rendered in the model's
//! repository-level format) and `prompt`, the text before the cursor on its line, which
//! llama.cpp puts after the FIM middle token and this gateway appends to the prefix: both ask the
//! model to continue from the cursor. The answer is llama.cpp's: `content`, `stop`, `stop_type`,
//! token counts; streamed, one `{"content", "stop": false}` event per token and a last event with
//! `stop: true` and the counts (no `[DONE]`, as llama.cpp ends its streams).
//!
//! Unlike llama.cpp's one-model server, the gateway serves several models: `model` is required.
//! Sampling defaults are llama.cpp's (`temperature` 0.8, `top_k` 40, `top_p` 0.95); `n_predict`
//! absent or negative is [`DEFAULT_N_PREDICT`]. Fields this gateway does not do (`n_indent`,
//! `samplers`, `min_p`, `n_probs`, time limits, ...) are refused with a 400 naming them.

use super::common::{required_model, OneOrMany, SamplingFields, StreamOptions, UsageBody};
use super::endpoint::{to_json, ChunkFormat, GenerationEndpoint};
use super::fields::{self, Field, Rule};
use super::json::{parse, parse_value, ApiBody};
use super::shape;
use crate::error::ApiError;
use crate::generation::{ChoiceOutput, ChoiceToken};
use coder_nats::{FinishReason, Infill, InfillFile, Prompt};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Tokens to generate when `n_predict` is absent or negative (llama.cpp's "until the context
/// ends" would hold a slot for minutes on a runaway completion).
pub const DEFAULT_N_PREDICT: u32 = 128;
/// The most `input_extra` files one request may carry.
pub const MAX_EXTRA_FILES: usize = 256;

/// Every field of the body.
pub const INFILL: &[&[Field]] = &[&[
    ("model", Rule::Honoured),
    ("input_prefix", Rule::Honoured),
    ("input_suffix", Rule::Honoured),
    ("input_extra", Rule::Nested(EXTRA_FILE)),
    ("prompt", Rule::Honoured),
    ("n_predict", Rule::Honoured),
    ("temperature", Rule::Honoured),
    ("top_k", Rule::Honoured),
    ("top_p", Rule::Honoured),
    ("seed", Rule::Honoured),
    ("stop", Rule::Honoured),
    ("stream", Rule::Honoured),
    ("repeat_penalty", Rule::Honoured),
    ("presence_penalty", Rule::Honoured),
    ("frequency_penalty", Rule::Honoured),
    // The worker's prefix cache is always on, and slots are the queue's to choose.
    ("cache_prompt", Rule::Ignored),
    ("id_slot", Rule::Ignored),
]];

/// One of `input_extra`.
const EXTRA_FILE: &[&[Field]] = &[&[("filename", Rule::Honoured), ("text", Rule::Honoured)]];

#[derive(Debug, Deserialize)]
pub struct InfillRequest {
    pub model: Option<String>,
    #[serde(default)]
    pub input_prefix: String,
    #[serde(default)]
    pub input_suffix: String,
    #[serde(default)]
    pub input_extra: Vec<ExtraFile>,
    #[serde(default)]
    pub prompt: String,
    pub n_predict: Option<i64>,
    pub temperature: Option<f32>,
    pub top_k: Option<u32>,
    pub top_p: Option<f32>,
    /// llama.cpp's `-1` (or any negative) is a random seed.
    pub seed: Option<i64>,
    pub stop: Option<OneOrMany>,
    #[serde(default)]
    pub stream: bool,
    pub repeat_penalty: Option<f32>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    /// The same fields in the shape both OpenAI endpoints validate.
    #[serde(skip)]
    sampling: SamplingFields,
}

#[derive(Debug, Deserialize)]
pub struct ExtraFile {
    #[serde(default)]
    pub filename: String,
    #[serde(default)]
    pub text: String,
}

impl ApiBody for InfillRequest {
    fn from_json(bytes: &[u8]) -> Result<Self, ApiError> {
        shape::check_shape(bytes, INFILL)?;
        let value: serde_json::Value = parse(bytes)?;
        fields::check_body(&value, INFILL)?;
        let request: Self = parse_value(&value)?;
        if request.input_extra.len() > MAX_EXTRA_FILES {
            return Err(ApiError::bad_request(
                "input_extra",
                format!(
                    "at most {MAX_EXTRA_FILES} files, got {}",
                    request.input_extra.len()
                ),
            ));
        }
        let n_predict = match request.n_predict {
            None => DEFAULT_N_PREDICT,
            Some(n) if n < 0 => DEFAULT_N_PREDICT,
            Some(n) => u32::try_from(n).unwrap_or(u32::MAX),
        };
        let sampling = SamplingFields {
            max_tokens: Some(n_predict),
            temperature: Some(request.temperature.unwrap_or(0.8)),
            top_p: Some(request.top_p.unwrap_or(0.95)),
            top_k: Some(request.top_k.unwrap_or(40)),
            seed: request.seed.and_then(|seed| u64::try_from(seed).ok()),
            stop: request.stop.clone(),
            presence_penalty: request.presence_penalty,
            frequency_penalty: request.frequency_penalty,
            repetition_penalty: request.repeat_penalty,
            stream: request.stream,
            // The last event of a stream always carries the counts.
            stream_options: Some(StreamOptions {
                include_usage: true,
            }),
            ..SamplingFields::default()
        };
        Ok(Self {
            sampling,
            ..request
        })
    }
}

impl GenerationEndpoint for InfillRequest {
    type Answer = InfillAnswer;
    type Chunks = InfillChunks;

    fn model(&self) -> Result<&str, ApiError> {
        required_model(&self.model)
    }

    fn prompt(&self) -> Result<Prompt, ApiError> {
        Ok(Prompt::Infill(Infill {
            prefix: format!("{}{}", self.input_prefix, self.prompt),
            suffix: self.input_suffix.clone(),
            files: self
                .input_extra
                .iter()
                .map(|file| InfillFile {
                    name: file.filename.clone(),
                    text: file.text.clone(),
                })
                .collect(),
        }))
    }

    fn sampling(&self) -> &SamplingFields {
        &self.sampling
    }

    fn max_tokens(&self) -> (Option<u32>, &'static str) {
        (self.sampling.max_tokens, "n_predict")
    }

    fn logprobs(&self) -> Result<Option<u32>, ApiError> {
        Ok(None)
    }

    fn answer(_: Uuid, model: &str, choices: Vec<ChoiceOutput>, usage: UsageBody) -> InfillAnswer {
        let choice = choices.into_iter().next();
        let (content, finish_reason) = choice.map_or((String::new(), FinishReason::Stop), |c| {
            (c.text, c.finish_reason)
        });
        InfillAnswer::last(content, model, finish_reason, usage)
    }
}

/// llama.cpp's answer, whole, or the last event of a stream.
#[derive(Debug, Serialize)]
pub struct InfillAnswer {
    pub content: String,
    pub stop: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_predicted: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_evaluated: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_cached: Option<u32>,
}

impl InfillAnswer {
    fn piece(content: String) -> Self {
        Self {
            content,
            stop: false,
            stop_type: None,
            model: None,
            tokens_predicted: None,
            tokens_evaluated: None,
            tokens_cached: None,
        }
    }

    fn last(content: String, model: &str, finish_reason: FinishReason, usage: UsageBody) -> Self {
        Self {
            stop: true,
            // llama.cpp tells an end-of-generation token (`eos`) from a stop string (`word`);
            // the queue's `stop` covers both, and editors read only whether it was `limit`.
            stop_type: Some(match finish_reason {
                FinishReason::Length => "limit",
                FinishReason::Stop | FinishReason::ToolCalls => "eos",
            }),
            model: Some(model.to_owned()),
            tokens_predicted: Some(usage.completion_tokens),
            tokens_evaluated: Some(usage.prompt_tokens),
            tokens_cached: Some(usage.prompt_tokens_details.cached_tokens),
            ..Self::piece(content)
        }
    }
}

/// llama.cpp's stream: a piece per token, then one last event with the counts.
#[derive(Default)]
pub struct InfillChunks;

impl ChunkFormat for InfillChunks {
    fn opening(&self, _: Uuid, _: &str, _: u32) -> Vec<String> {
        Vec::new()
    }

    fn token(&mut self, _: Uuid, _: &str, token: ChoiceToken) -> String {
        to_json(&InfillAnswer::piece(token.text))
    }

    /// One last event with the finish and the counts (the counts are always sent, as llama.cpp
    /// sends them), and no `[DONE]`.
    fn closing(
        &self,
        _: Uuid,
        model: &str,
        finish_reasons: Vec<FinishReason>,
        usage: Option<UsageBody>,
    ) -> Vec<String> {
        let finish_reason = finish_reasons
            .first()
            .copied()
            .unwrap_or(FinishReason::Stop);
        let usage = usage.unwrap_or_else(|| coder_nats::Usage::default().into());
        vec![to_json(&InfillAnswer::last(
            String::new(),
            model,
            finish_reason,
            usage,
        ))]
    }

    /// The error's body, and nothing after it.
    fn failure(&self, error_body: String) -> Vec<String> {
        vec![error_body]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<InfillRequest, ApiError> {
        InfillRequest::from_json(json.as_bytes())
    }

    fn param(json: &str) -> Option<String> {
        match parse(json) {
            Err(ApiError::BadRequest { param, .. }) => param,
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn the_line_before_the_cursor_joins_the_prefix_and_extra_files_come_along() {
        let request = parse(
            r#"{"model":"m","input_prefix":"def f(x):\n","prompt":"    return ",
                "input_suffix":"\n\nf(1)\n","input_extra":[{"filename":"a.py","text":"X = 1"}],
                "cache_prompt":true}"#,
        )
        .unwrap();
        assert_eq!(
            request.prompt().unwrap(),
            Prompt::Infill(Infill {
                prefix: "def f(x):\n    return ".into(),
                suffix: "\n\nf(1)\n".into(),
                files: vec![InfillFile {
                    name: "a.py".into(),
                    text: "X = 1".into(),
                }],
            })
        );
    }

    #[test]
    fn llama_cpp_defaults_and_names_map_onto_the_sampling_fields() {
        let request =
            parse(r#"{"model":"m","seed":-1,"n_predict":-1,"repeat_penalty":1.1}"#).unwrap();
        let params = request.params(1000).unwrap();
        assert_eq!(params.max_tokens, DEFAULT_N_PREDICT);
        assert_eq!(
            (params.temperature, params.top_p, params.top_k),
            (0.8, 0.95, 40)
        );
        assert_eq!(params.repetition_penalty, 1.1);
        let request = parse(r#"{"model":"m","n_predict":5000}"#).unwrap();
        match request.params(1000) {
            Err(ApiError::BadRequest { param, .. }) => {
                assert_eq!(param.as_deref(), Some("n_predict"))
            }
            other => panic!("{other:?}"),
        }
        let seeded = parse(r#"{"model":"m","seed":7}"#).unwrap();
        assert_eq!(seeded.params(1000).unwrap().seed, 7);
    }

    #[test]
    fn what_it_does_not_do_is_refused_by_name() {
        for field in [
            "n_indent",
            "samplers",
            "min_p",
            "n_probs",
            "t_max_predict_ms",
            "grammar",
        ] {
            let body = format!(r#"{{"model":"m","{field}":1}}"#);
            assert_eq!(param(&body).as_deref(), Some(field));
        }
        assert_eq!(
            param(r#"{"model":"m","input_extra":[{"filename":"a","txt":"x"}]}"#).as_deref(),
            Some("input_extra[0].txt")
        );
        assert_eq!(
            param(r#"{"model":"m","input_prefix":3}"#).as_deref(),
            Some("input_prefix")
        );
    }

    #[test]
    fn answers_have_llama_cpps_shape() {
        let usage = UsageBody::from(coder_nats::Usage {
            prompt_tokens: 10,
            completion_tokens: 3,
            cached_tokens: 4,
        });
        let choice = ChoiceOutput {
            text: "x + 1".into(),
            logprobs: None,
            tool_calls: Vec::new(),
            finish_reason: FinishReason::Length,
        };
        let answer =
            serde_json::to_value(InfillRequest::answer(Uuid::nil(), "m", vec![choice], usage))
                .unwrap();
        assert_eq!(
            answer,
            serde_json::json!({"content": "x + 1", "stop": true, "stop_type": "limit",
                "model": "m", "tokens_predicted": 3, "tokens_evaluated": 10, "tokens_cached": 4})
        );
        let mut chunks = InfillChunks;
        let token = ChoiceToken {
            choice: 0,
            text: "x".into(),
            logprobs: None,
            tool_calls: Vec::new(),
        };
        assert_eq!(
            chunks.token(Uuid::nil(), "m", token),
            r#"{"content":"x","stop":false}"#
        );
        let closing = chunks.closing(Uuid::nil(), "m", vec![FinishReason::Stop], Some(usage));
        assert_eq!(closing.len(), 1, "no [DONE]: {closing:?}");
        assert!(closing[0].contains(r#""stop":true"#), "{closing:?}");
    }
}
