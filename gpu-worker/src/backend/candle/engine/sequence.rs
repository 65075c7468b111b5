//! One request inside the engine: what it has fed, how it samples, what text it has released.
//!
//! The decoding rules are the ones a generation has always had: every sampled token counts
//! towards `max_tokens` and the usage, an end-of-turn token included; each one is reported
//! exactly once, with the text it releases (text held back for an incomplete character or a
//! possible stop string goes out with a later token, at the latest with the last one).
//!
//! A sequence with a [`Constraint`] samples only among the tokens its grammar allows (the mask
//! goes on the logits before anything else, so log probabilities describe the masked
//! distribution) and advances the grammar by each token; a complete grammar allows only an
//! end-of-turn token, which ends it with `stop`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;

use candle_core::Tensor;
use coder_nats::{FinishReason, Logprob, SamplingParams, TokenLogprobs, Usage};

use crate::backend::candle::models::Session;
use crate::backend::candle::sampler::logprobs::IdLogprobs;
use crate::backend::candle::sampler::Sampler;
use crate::backend::candle::text::detokenize::IncrementalDecoder;
use crate::backend::candle::text::vocab::Vocab;
use crate::backend::constraint::Constraint;
use crate::backend::stop::{StopCheck, StopMatcher};
use crate::backend::{BackendError, Finished};

/// What the engine sends the thread waiting on a request.
#[derive(Debug)]
pub enum Event {
    /// One generated token's text (possibly empty), with its log probabilities when asked for.
    Token(String, Option<TokenLogprobs>),
    /// The end: how it finished, or why it failed.
    Done(Result<Finished, BackendError>),
}

/// A request as submitted: its prompt, its parameters, where its events go and the flag that
/// cancels it.
pub struct Submission {
    pub prompt: Vec<u32>,
    pub params: SamplingParams,
    /// Tokens that end this request beyond the model's end tokens (a FIM middle's ends).
    pub ends: Vec<u32>,
    /// The grammar its answer must follow, if any.
    pub constraint: Option<Constraint>,
    pub events: Sender<Event>,
    pub cancelled: Arc<AtomicBool>,
}

impl Submission {
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// Positions its session needs: the prompt and every token it may generate.
    pub fn positions(&self) -> usize {
        self.prompt.len() + self.params.max_tokens as usize
    }

    /// Ends it without running it.
    pub fn fail(self, error: BackendError) {
        let _ = self.events.send(Event::Done(Err(error)));
    }
}

/// A request's last event, held back until the step that ended it has been recorded (a waiting
/// caller that hears of its end sees that step in the metrics).
pub struct Ending {
    events: Sender<Event>,
    result: Result<Finished, BackendError>,
}

impl Ending {
    pub fn send(self) {
        let _ = self.events.send(Event::Done(self.result));
    }
}

/// A running request.
pub struct Sequence<'v> {
    submission: Submission,
    session: Box<dyn Session>,
    /// The prompt, then every sampled token.
    history: Vec<u32>,
    /// Tokens of `history` the session has been fed.
    fed: usize,
    prompt_len: usize,
    /// Prompt tokens the session held from the prefix cache when it started.
    cached: usize,
    sampler: Sampler,
    constraint: Option<Constraint>,
    decoder: IncrementalDecoder<'v>,
    stops: StopMatcher,
    vocab: &'v Vocab,
    generated: usize,
}

impl<'v> Sequence<'v> {
    /// A sequence whose `session` already holds the first `cached` prompt tokens (a prefix
    /// cache's hit; 0 for none).
    pub fn new(
        mut submission: Submission,
        session: Box<dyn Session>,
        cached: usize,
        vocab: &'v Vocab,
    ) -> Self {
        let constraint = submission.constraint.take();
        let stops = StopMatcher::new(&submission.params.stop);
        let sampler = Sampler::new(&submission.params);
        Self {
            history: submission.prompt.clone(),
            prompt_len: submission.prompt.len(),
            fed: cached,
            cached,
            session,
            sampler,
            constraint,
            decoder: IncrementalDecoder::new(vocab.tokenizer()),
            stops,
            vocab,
            generated: 0,
            submission,
        }
    }

    pub fn is_cancelled(&self) -> bool {
        self.submission.is_cancelled()
    }

    /// Positions reserved for it.
    pub fn positions(&self) -> usize {
        self.submission.positions()
    }

    /// Tokens waiting to be fed: the rest of the prompt, or the last sampled token.
    pub fn pending(&self) -> &[u32] {
        &self.history[self.fed..]
    }

    /// What a forward pass needs of it: its session, its pending tokens and the position the
    /// first of them takes.
    pub fn feed_parts(&mut self) -> (&mut dyn Session, &[u32], usize) {
        (self.session.as_mut(), &self.history[self.fed..], self.fed)
    }

    /// Whether it is still feeding its prompt.
    pub fn is_prefilling(&self) -> bool {
        self.fed < self.prompt_len
    }

    /// Records that `count` pending tokens were fed.
    pub fn fed(&mut self, count: usize) {
        self.fed += count;
    }

    /// Samples the next token from the logits after the last fed one and sends its text.
    /// Returns how the request finished, or `None` while it goes on.
    pub fn advance(&mut self, logits: &Tensor) -> Result<Option<Finished>, BackendError> {
        let allowed = match &mut self.constraint {
            Some(constraint) => Some(constraint.allowed()?),
            None => None,
        };
        let sampled = self
            .sampler
            .sample_with_logprobs(logits, &self.history, allowed.as_ref())
            .map_err(|e| BackendError::Internal(anyhow::Error::new(e).context("sampling")))?;
        let token = sampled.token;
        self.history.push(token);
        self.generated += 1;
        let ends = self.vocab.is_eos(token) || self.submission.ends.contains(&token);
        if let (Some(constraint), false) = (&mut self.constraint, ends) {
            constraint.advance(token)?;
        }
        if ends {
            // An end token is not part of the text: no log probabilities for it.
            let (text, _) = self.release(None)?;
            self.send(Event::Token(text, None));
            return Ok(Some(self.finished(FinishReason::Stop)));
        }
        let logprobs = sampled.logprobs.map(|ids| self.logprobs(ids));
        let last = self.generated == self.submission.params.max_tokens as usize;
        let (mut text, mut stopped) = self.release(Some(token))?;
        if !stopped && last {
            let (tail, tail_stopped) = self.release(None)?;
            text += &tail;
            stopped = tail_stopped;
        }
        self.send(Event::Token(text, logprobs));
        Ok(match (stopped, last) {
            (true, _) => Some(self.finished(FinishReason::Stop)),
            (false, true) => Some(self.finished(FinishReason::Length)),
            (false, false) => None,
        })
    }

    /// Ends it with `result`: gives back its session and the tokens it was fed, and the last
    /// event to send once the step that ended it is recorded.
    pub fn end(
        self,
        result: Result<Finished, BackendError>,
    ) -> (Vec<u32>, Box<dyn Session>, Ending) {
        let ending = Ending {
            events: self.submission.events,
            result,
        };
        let mut fed = self.history;
        fed.truncate(self.fed);
        (fed, self.session, ending)
    }

    fn finished(&self, finish_reason: FinishReason) -> Finished {
        Finished {
            finish_reason,
            usage: Usage {
                prompt_tokens: self.prompt_len as u32,
                completion_tokens: self.generated as u32,
                cached_tokens: self.cached as u32,
            },
        }
    }

    /// Ids' log probabilities with each token's bytes and text.
    fn logprobs(&self, ids: IdLogprobs) -> TokenLogprobs {
        let entry = |(id, logprob): (u32, f32)| Logprob::new(self.vocab.token_bytes(id), logprob);
        TokenLogprobs {
            chosen: entry(ids.chosen),
            top: ids.top.into_iter().map(entry).collect(),
        }
    }

    fn send(&self, event: Event) {
        // A receiver gone means the request was given up; its cancel flag ends it next step.
        let _ = self.submission.events.send(event);
    }

    /// The text to send for this step: `token`'s decoded text through the stop matcher, or
    /// with `None` everything still held back. Returns whether a stop string completed.
    fn release(&mut self, token: Option<u32>) -> Result<(String, bool), BackendError> {
        let piece = match token {
            Some(token) => self.decoder.push(token),
            None => self.decoder.flush(),
        }
        .map_err(BackendError::Internal)?;
        Ok(match self.stops.push(&piece) {
            StopCheck::Stopped(text) => (text, true),
            StopCheck::Emit(text) if token.is_none() => (text + &self.stops.flush(), false),
            StopCheck::Emit(text) => (text, false),
        })
    }
}
