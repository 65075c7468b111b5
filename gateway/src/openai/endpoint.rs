//! What each generation endpoint defines for the one handler (`routes::generate`): how its body
//! gives the model, the prompt and the sampling fields, and how it writes a whole answer and a
//! stream's chunks. `/v1/completions` implements it in [`super::completions`],
//! `/v1/chat/completions` in [`super::chat`].

use super::common::{SamplingFields, UsageBody};
use super::json::ApiBody;
use crate::error::ApiError;
use crate::generation::{ChoiceOutput, ChoiceToken};
use coder_nats::{FinishReason, Prompt, SamplingParams};
use serde::Serialize;
use uuid::Uuid;

/// A generation request body, and the answers it is given.
pub trait GenerationEndpoint: ApiBody + Send + 'static {
    /// The whole, non-streamed answer.
    type Answer: Serialize;
    /// How the streamed answer writes its chunks.
    type Chunks: ChunkFormat + Default;

    fn model(&self) -> Result<&str, ApiError>;
    fn prompt(&self) -> Result<Prompt, ApiError>;
    fn sampling(&self) -> &SamplingFields;

    /// The requested completion length, and the field it was read from (a 400 names it).
    fn max_tokens(&self) -> (Option<u32>, &'static str) {
        (self.sampling().max_tokens, "max_tokens")
    }

    /// The log probabilities asked for, validated: `None`, or `Some(k)` for the chosen
    /// tokens' and `k` alternatives' (each endpoint spells and bounds it its own way).
    fn logprobs(&self) -> Result<Option<u32>, ApiError>;

    /// The sampling fields, validated; `max_tokens_limit` is the most a request may ask for.
    fn params(&self, max_tokens_limit: u32) -> Result<SamplingParams, ApiError> {
        let (max_tokens, field) = self.max_tokens();
        let params = self
            .sampling()
            .to_params(max_tokens, field, max_tokens_limit)?;
        Ok(SamplingParams {
            logprobs: self.logprobs()?,
            ..params
        })
    }

    /// The whole answer: every choice, in choice order.
    fn answer(id: Uuid, model: &str, choices: Vec<ChoiceOutput>, usage: UsageBody) -> Self::Answer;
}

/// How an endpoint writes the chunks of a streamed answer, each the `data` of one event.
pub trait ChunkFormat: Send + 'static {
    /// Chunks sent before the first token (chat: the assistant role, once per choice).
    fn opening(&self, id: Uuid, model: &str, choices: u32) -> Vec<String>;
    /// One token's chunk (`&mut`: completions count each choice's text offsets).
    fn token(&mut self, id: Uuid, model: &str, token: ChoiceToken) -> String;
    /// The chunks that end a stream, after the last token: `usage` when the client asked for
    /// it.
    fn closing(
        &self,
        id: Uuid,
        model: &str,
        finish_reasons: Vec<FinishReason>,
        usage: Option<UsageBody>,
    ) -> Vec<String>;
    /// The chunks that end a stream cut short by an error after its headers were sent.
    fn failure(&self, error_body: String) -> Vec<String>;
}

/// OpenAI's streams: every chunk names its choice's `index`; the stream ends with each choice's
/// finish chunk, the usage chunk when asked for, and `[DONE]`, and an error is sent in-band
/// before `[DONE]`.
pub trait OpenAiChunks: Send + 'static {
    fn opening(&self, id: Uuid, model: &str, choices: u32) -> Vec<String>;
    fn token(&mut self, id: Uuid, model: &str, token: ChoiceToken) -> String;
    fn finish(&self, id: Uuid, model: &str, choice: u32, finish_reason: FinishReason) -> String;
    fn usage(&self, id: Uuid, model: &str, usage: UsageBody) -> String;
}

impl<T: OpenAiChunks> ChunkFormat for T {
    fn opening(&self, id: Uuid, model: &str, choices: u32) -> Vec<String> {
        OpenAiChunks::opening(self, id, model, choices)
    }

    fn token(&mut self, id: Uuid, model: &str, token: ChoiceToken) -> String {
        OpenAiChunks::token(self, id, model, token)
    }

    fn closing(
        &self,
        id: Uuid,
        model: &str,
        finish_reasons: Vec<FinishReason>,
        usage: Option<UsageBody>,
    ) -> Vec<String> {
        let mut chunks: Vec<String> = (0..)
            .zip(finish_reasons)
            .map(|(choice, reason)| self.finish(id, model, choice, reason))
            .collect();
        chunks.extend(usage.map(|usage| self.usage(id, model, usage)));
        chunks.push(DONE.to_owned());
        chunks
    }

    fn failure(&self, error_body: String) -> Vec<String> {
        vec![error_body, DONE.to_owned()]
    }
}

/// The last `data` of an OpenAI stream.
const DONE: &str = "[DONE]";

/// A chunk (or an in-band error body) as one line of JSON.
pub fn to_json(chunk: &impl Serialize) -> String {
    serde_json::to_string(chunk).expect("chunks always serialise")
}
