//! One generation: feed the prompt in chunks, then sample, decode and stream token by token.

use coder_nats::{FinishReason, SamplingParams, Usage};

use crate::backend::candle::models::Session;
use crate::backend::candle::sampler::Sampler;
use crate::backend::candle::text::detokenize::IncrementalDecoder;
use crate::backend::candle::text::vocab::Vocab;
use crate::backend::stop::{StopCheck, StopMatcher};
use crate::backend::{BackendError, Finished, Flow, TokenSink};

/// Everything a generation needs besides the session it runs in.
pub struct Job<'a> {
    pub vocab: &'a Vocab,
    pub prompt: &'a [u32],
    pub params: &'a SamplingParams,
    /// Prompt tokens per forward pass.
    pub chunk: usize,
}

/// Runs `job` to its end in `session`, which must hold nothing yet.
///
/// Every sampled token counts towards `max_tokens` and the usage, an end-of-turn token
/// included; each one is reported to the sink exactly once, with the text it releases (text
/// held back for an incomplete character or a possible stop string goes out with a later
/// token, at the latest with the last one).
pub fn run(
    job: &Job<'_>,
    session: &mut dyn Session,
    sink: &mut dyn TokenSink,
) -> Result<Finished, BackendError> {
    let max_tokens = job.params.max_tokens as usize;
    let mut logits = prefill(job, session, sink)?;
    let mut sampler = Sampler::new(job.params);
    let mut history = job.prompt.to_vec();
    let mut decoder = IncrementalDecoder::new(job.vocab.tokenizer());
    let mut stops = StopMatcher::new(&job.params.stop);
    let usage = |completion: usize| Usage {
        prompt_tokens: job.prompt.len() as u32,
        completion_tokens: completion as u32,
    };

    for index in 0..max_tokens {
        let token = sampler.sample(&logits, &history).map_err(internal)?;
        history.push(token);
        let generated = index + 1;
        if job.vocab.is_eos(token) {
            let (text, _) = release(&mut decoder, &mut stops, None)?;
            emit(sink, &text)?;
            return Ok(Finished {
                finish_reason: FinishReason::Stop,
                usage: usage(generated),
            });
        }
        let last = generated == max_tokens;
        let (text, stopped) = release(&mut decoder, &mut stops, Some(token))?;
        let (text, stopped) = match (stopped, last) {
            (false, true) => {
                let (tail, stopped) = release(&mut decoder, &mut stops, None)?;
                (text + &tail, stopped)
            }
            _ => (text, stopped),
        };
        emit(sink, &text)?;
        if stopped {
            return Ok(Finished {
                finish_reason: FinishReason::Stop,
                usage: usage(generated),
            });
        }
        if last {
            break;
        }
        logits = session
            .forward(&[token], history.len() - 1)
            .map_err(internal)?;
    }
    Ok(Finished {
        finish_reason: FinishReason::Length,
        usage: usage(max_tokens),
    })
}

/// Feeds the prompt and returns the logits after its last token.
fn prefill(
    job: &Job<'_>,
    session: &mut dyn Session,
    sink: &mut dyn TokenSink,
) -> Result<candle_core::Tensor, BackendError> {
    let chunk = job.chunk.max(1);
    let mut logits = None;
    for (i, piece) in job.prompt.chunks(chunk).enumerate() {
        if sink.is_cancelled() {
            return Err(BackendError::Cancelled);
        }
        logits = Some(session.forward(piece, i * chunk).map_err(internal)?);
    }
    logits.ok_or_else(|| BackendError::Internal(anyhow::anyhow!("empty prompt reached the model")))
}

/// The text to send for this step: `token`'s decoded text through the stop matcher, or with
/// `None` everything still held back. Returns whether a stop string completed.
fn release(
    decoder: &mut IncrementalDecoder<'_>,
    stops: &mut StopMatcher,
    token: Option<u32>,
) -> Result<(String, bool), BackendError> {
    let piece = match token {
        Some(token) => decoder.push(token),
        None => decoder.flush(),
    }
    .map_err(BackendError::Internal)?;
    Ok(match stops.push(&piece) {
        StopCheck::Stopped(text) => (text, true),
        StopCheck::Emit(text) if token.is_none() => (text + &stops.flush(), false),
        StopCheck::Emit(text) => (text, false),
    })
}

fn emit(sink: &mut dyn TokenSink, text: &str) -> Result<(), BackendError> {
    match sink.token(text) {
        Flow::Continue => Ok(()),
        Flow::Stop => Err(BackendError::Cancelled),
    }
}

fn internal(e: candle_core::Error) -> BackendError {
    BackendError::Internal(anyhow::Error::new(e).context("model forward pass"))
}
