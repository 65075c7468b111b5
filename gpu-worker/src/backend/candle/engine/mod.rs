//! The engine: one thread per loaded model that owns the model and every running sequence's
//! KV cache, and runs one forward pass per step over all of them (continuous batching).
//!
//! Requests join and leave between steps. Each step feeds one token of every decoding sequence
//! and chunks of prompts within `max_batch_tokens` (`schedule.rs`), in one
//! [`Model::forward_batch`]; then each sequence that got logits samples its next token and
//! sends its text (`sequence.rs`). A request is admitted when its prompt and `max_tokens` fit
//! in the KV budget (`kv_budget.rs`), else it waits, in arrival order; one that could never fit
//! is refused. A cancelled request (its flag is raised by the thread waiting on it: a cancel, a
//! deadline, a client gone) leaves at the next step. A finished sequence's KV goes to the
//! prefix cache (`prefix_cache.rs`), and a new one starts from its longest cached prefix.
//!
//! A sequence's tokens do not depend on what else runs: the models that batch give each row
//! the same bits whatever shares its step (`models/step_rows.rs`), the models that do not run
//! their sequences one after another, and sampling is per sequence with its own seeded RNG.

mod kv_budget;
mod prefix_cache;
mod schedule;
mod sequence;

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use coder_nats::SamplingParams;

use self::kv_budget::KvBudget;
use self::prefix_cache::PrefixCache;
use self::schedule::{Feed, Pending};
pub use self::sequence::Event;
use self::sequence::{Ending, Sequence, Submission};
use super::models::{Session, SessionPool, StepInput};
use super::text::vocab::Vocab;
use crate::backend::constraint::Constraint;
use crate::backend::{BackendError, Finished, StepObserver, StepStats, TokenSink};

/// How often a thread waiting on a request checks its sink's cancel flag and deadline.
const CANCEL_POLL: Duration = Duration::from_millis(10);

/// How an engine runs.
#[derive(Debug, Clone, Copy)]
pub struct EngineConfig {
    /// Tokens per step, every sequence's together (decoding sequences always get theirs).
    pub max_batch_tokens: usize,
    /// KV memory the running sequences may reserve.
    pub kv_cache_bytes: u64,
    /// KV memory finished sequences' prefixes may keep (0: no prefix cache).
    pub prefix_cache_bytes: u64,
}

/// The handle the backend keeps: submits requests to the engine thread.
pub struct Engine {
    submissions: Sender<Submission>,
    shared: Arc<Shared>,
}

/// What the engine thread and its handle share.
#[derive(Default)]
struct Shared {
    /// Requests admitted to the engine but waiting for KV room.
    waiting: AtomicUsize,
    observer: RwLock<Option<Arc<dyn StepObserver>>>,
}

impl Engine {
    /// Starts the engine thread over `sessions`' model.
    pub fn start(
        sessions: SessionPool,
        vocab: Arc<Vocab>,
        config: EngineConfig,
    ) -> anyhow::Result<Self> {
        let (submissions, received) = mpsc::channel();
        let shared = Arc::new(Shared::default());
        let thread_shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("engine".to_owned())
            .spawn(move || run(&sessions, &vocab, config, &received, &thread_shared))
            .context("starting the engine thread")?;
        Ok(Self {
            submissions,
            shared,
        })
    }

    /// Runs `prompt` to its end through the engine, relaying its text to `sink` on the calling
    /// thread, which blocks; the sink's cancel flag and `Flow::Stop` end it at the next step.
    /// `ends` are tokens that end it beyond the model's end tokens; `constraint`, a grammar its
    /// tokens must follow.
    pub fn generate(
        &self,
        prompt: Vec<u32>,
        params: &SamplingParams,
        ends: Vec<u32>,
        constraint: Option<Constraint>,
        sink: &mut dyn TokenSink,
    ) -> Result<Finished, BackendError> {
        let (events, received) = mpsc::channel();
        let cancelled = Arc::new(AtomicBool::new(false));
        let submission = Submission {
            prompt,
            params: params.clone(),
            ends,
            constraint,
            events,
            cancelled: Arc::clone(&cancelled),
        };
        if self.submissions.send(submission).is_err() {
            return Err(BackendError::Internal(anyhow::anyhow!(
                "the engine thread has stopped"
            )));
        }
        let cancel = || {
            cancelled.store(true, Ordering::Relaxed);
            Err(BackendError::Cancelled)
        };
        loop {
            match received.recv_timeout(CANCEL_POLL) {
                Ok(Event::Token(text, logprobs)) => {
                    if sink.generated(&text, logprobs) == crate::backend::Flow::Stop {
                        return cancel();
                    }
                }
                Ok(Event::Done(result)) => return result,
                Err(RecvTimeoutError::Timeout) if sink.is_cancelled() => return cancel(),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(BackendError::Internal(anyhow::anyhow!(
                        "the engine dropped the request"
                    )))
                }
            }
        }
    }

    /// Requests waiting in the engine for KV room.
    pub fn waiting(&self) -> usize {
        self.shared.waiting.load(Ordering::Relaxed)
    }

    /// Where each step's figures go from now on.
    pub fn observe(&self, observer: Arc<dyn StepObserver>) {
        *self
            .shared
            .observer
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(observer);
    }
}

/// The engine thread: admits, steps, samples, until the handle is dropped and nothing runs.
fn run(
    sessions: &SessionPool,
    vocab: &Vocab,
    config: EngineConfig,
    submissions: &Receiver<Submission>,
    shared: &Shared,
) {
    let model = sessions.model();
    let mut budget = KvBudget::new(config.kv_cache_bytes, model.kv_bytes_per_position());
    let prefix_bytes = match model.copies_prefixes() {
        true => config.prefix_cache_bytes,
        false => 0,
    };
    let mut kept = Kept {
        sessions,
        prefixes: PrefixCache::new(prefix_bytes, model.kv_bytes_per_position()),
    };
    let mut queue: VecDeque<Submission> = VecDeque::new();
    let mut running: Vec<Sequence<'_>> = Vec::new();
    loop {
        if running.is_empty() && queue.is_empty() {
            match submissions.recv() {
                Ok(submission) => queue.push_back(submission),
                Err(_) => return,
            }
        }
        queue.extend(submissions.try_iter());
        admit(&mut queue, &mut running, &mut budget, &mut kept, vocab);
        shared.waiting.store(queue.len(), Ordering::Relaxed);
        retire_cancelled(&mut running, &mut budget, &mut kept);
        if running.is_empty() {
            continue;
        }
        let (stats, endings) = step(
            &mut running,
            &mut budget,
            &mut kept,
            config.max_batch_tokens,
        );
        let prefix = kept.prefixes.take_counts();
        let observer = shared.observer.read().unwrap_or_else(|e| e.into_inner());
        if let Some(observer) = observer.as_ref() {
            observer.step(&StepStats {
                kv_usage_ratio: budget.usage_ratio(),
                prefix_queried_tokens: prefix.queried,
                prefix_hit_tokens: prefix.hits,
                prefix_evictions: prefix.evictions,
                prefix_cache_bytes: kept.prefixes.bytes(),
                ..stats
            });
        }
        drop(observer);
        endings.into_iter().for_each(Ending::send);
    }
}

/// Where sessions go between sequences: the pool of empty ones, and the prefix cache.
struct Kept<'s> {
    sessions: &'s SessionPool,
    prefixes: PrefixCache,
}

impl Kept<'_> {
    /// A session for `prompt`, holding its longest cached prefix, and that prefix's length.
    fn session_for(
        &mut self,
        prompt: &[u32],
        positions: usize,
    ) -> anyhow::Result<(Box<dyn Session>, usize)> {
        let mut session = self.sessions.take(positions)?;
        let Some((entry, cached)) = self.prefixes.lookup(prompt) else {
            return Ok((session, 0));
        };
        let copied = match self.prefixes.session(entry) {
            Some(from) => self
                .sessions
                .model()
                .copy_prefix(from, session.as_mut(), cached)
                .context("copying a cached prefix")?,
            None => false,
        };
        if copied {
            return Ok((session, cached));
        }
        self.prefixes.unhit(cached);
        Ok((session, 0))
    }

    /// Keeps a finished sequence's session for its prefix, or for reuse.
    fn keep(&mut self, fed: &[u32], session: Box<dyn Session>) {
        if let Some(session) = self.prefixes.insert(fed, session) {
            self.sessions.put_back(session);
        }
    }
}

/// Moves waiting requests into `running`, oldest first, while their KV fits; refuses those
/// that could never fit and drops those cancelled while waiting.
fn admit<'v>(
    queue: &mut VecDeque<Submission>,
    running: &mut Vec<Sequence<'v>>,
    budget: &mut KvBudget,
    kept: &mut Kept<'_>,
    vocab: &'v Vocab,
) {
    queue.retain(|submission| !submission.is_cancelled());
    while let Some(next) = queue.front() {
        let positions = next.positions();
        if !budget.fits_alone(positions) {
            let refused = queue.pop_front().expect("a front");
            refused.fail(BackendError::InvalidRequest(format!(
                "the prompt and max_tokens need {} bytes of KV cache, more than this worker's \
                 --kv-cache-bytes of {}",
                budget.bytes(positions),
                budget.capacity()
            )));
            continue;
        }
        if !budget.try_reserve(positions) {
            return;
        }
        let submission = queue.pop_front().expect("a front");
        match kept.session_for(&submission.prompt, positions) {
            Ok((session, cached)) => {
                running.push(Sequence::new(submission, session, cached, vocab));
            }
            Err(error) => {
                budget.release(positions);
                submission.fail(BackendError::Internal(error.context("making a session")));
            }
        }
    }
}

/// Ends the running sequences whose requests were cancelled.
fn retire_cancelled(running: &mut Vec<Sequence<'_>>, budget: &mut KvBudget, kept: &mut Kept<'_>) {
    let mut index = 0;
    while index < running.len() {
        match running[index].is_cancelled() {
            true => {
                let sequence = running.remove(index);
                retire(sequence, Err(BackendError::Cancelled), budget, kept).send();
            }
            false => index += 1,
        }
    }
}

/// Frees a sequence's KV reservation and keeps its session (for its prefix, unless a failed
/// step may have left its caches half written); returns its last event, to send.
fn retire(
    sequence: Sequence<'_>,
    result: Result<Finished, BackendError>,
    budget: &mut KvBudget,
    kept: &mut Kept<'_>,
) -> Ending {
    budget.release(sequence.positions());
    let whole = !matches!(result, Err(BackendError::Internal(_)));
    let (fed, session, ending) = sequence.end(result);
    match whole {
        true => kept.keep(&fed, session),
        false => kept.sessions.put_back(session),
    }
    ending
}

/// One forward pass over the planned tokens of `running`, then sampling; finished sequences
/// leave. Returns the step's figures (KV usage left for the caller) and the last events of
/// the sequences that ended, to send once the figures are recorded.
fn step(
    running: &mut Vec<Sequence<'_>>,
    budget: &mut KvBudget,
    kept: &mut Kept<'_>,
    max_batch_tokens: usize,
) -> (StepStats, Vec<Ending>) {
    let pending: Vec<Pending> = running
        .iter()
        .map(|s| Pending {
            tokens: s.pending().len(),
            prompt: s.is_prefilling(),
        })
        .collect();
    let plan = schedule::plan(&pending, max_batch_tokens);
    let mut stats = StepStats {
        sequences: plan.len(),
        ..StepStats::default()
    };
    for feed in &plan {
        match pending[feed.sequence].prompt {
            true => stats.prefill_tokens += feed.tokens,
            false => stats.decode_tokens += feed.tokens,
        }
    }
    let outcome = forward(running, &plan, kept.sessions);
    let mut ended: Vec<(usize, Result<Finished, BackendError>)> = Vec::new();
    match outcome {
        Ok(logits) => {
            for (feed, logits) in plan.iter().zip(logits) {
                let sequence = &mut running[feed.sequence];
                sequence.fed(feed.tokens);
                let Some(logits) = logits else { continue };
                match sequence.advance(&logits) {
                    Ok(None) => {}
                    Ok(Some(finished)) => ended.push((feed.sequence, Ok(finished))),
                    Err(error) => ended.push((feed.sequence, Err(error))),
                }
            }
        }
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "forward step failed");
            for feed in &plan {
                let error = anyhow::anyhow!("{error:#}");
                ended.push((feed.sequence, Err(BackendError::Internal(error))));
            }
        }
    }
    // Highest index first, so the indices left stay valid.
    let endings = ended
        .into_iter()
        .rev()
        .map(|(index, result)| retire(running.remove(index), result, budget, kept))
        .collect();
    (stats, endings)
}

/// The model's forward pass over `plan`; a panic inside it fails the step, not the engine.
fn forward(
    running: &mut [Sequence<'_>],
    plan: &[Feed],
    sessions: &SessionPool,
) -> anyhow::Result<Vec<Option<candle_core::Tensor>>> {
    let mut planned = plan.iter().peekable();
    let mut inputs = Vec::with_capacity(plan.len());
    for (index, sequence) in running.iter_mut().enumerate() {
        let Some(feed) = planned.next_if(|feed| feed.sequence == index) else {
            continue;
        };
        let (session, pending, pos) = sequence.feed_parts();
        inputs.push(StepInput {
            session,
            tokens: &pending[..feed.tokens],
            pos,
            logits: feed.logits,
        });
    }
    match catch_unwind(AssertUnwindSafe(|| {
        sessions.model().forward_batch(&mut inputs)
    })) {
        Ok(result) => result.context("model forward pass"),
        Err(_) => Err(anyhow::anyhow!("the model's forward pass panicked")),
    }
}
