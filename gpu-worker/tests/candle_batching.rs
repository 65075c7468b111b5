//! The engine's batch invariance on the default model (Qwen2.5-Coder-1.5B-Instruct Q4_K_M,
//! fetched by `scripts/fetch-model.sh`; without it these tests print a notice and pass): a
//! seeded request gives the same tokens alone and beside 1, 3 and 7 other requests with other
//! prompts, lengths, parameters and arrival times, greedy and sampled, and under a step budget
//! that cuts its prompt into small chunks; and the same tokens with a cold, a warm and a partly
//! evicted prefix cache. Redelivery after a worker crash regenerates a request's tokens and
//! relies on exactly this.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use coder_nats::{ChatMessage, GenerationRequest, Prompt, SamplingParams};
use gpu_worker::backend::candle::{CandleBackend, CandleOptions};
use gpu_worker::backend::{Backend, Finished, Flow, StepObserver, StepStats, TokenSink};

const MODEL_FILE: &str = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf";
const MODEL: &str = "qwen2.5-coder-1.5b-instruct";

/// The default model with room for 8 sequences and `max_batch_tokens` per step, or `None`
/// (with a notice) when the model was not fetched.
fn load(max_batch_tokens: usize) -> Option<CandleBackend> {
    load_with(max_batch_tokens, CandleOptions::DEFAULT_PREFIX_CACHE_BYTES)
}

fn load_with(max_batch_tokens: usize, prefix_cache_bytes: u64) -> Option<CandleBackend> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../models")
        .join(MODEL_FILE);
    if !path.is_file() {
        eprintln!(
            "NOTICE: {} is absent; skipping the batching tests (run scripts/fetch-model.sh)",
            path.display()
        );
        return None;
    }
    let mut options = CandleOptions::new(path, MODEL);
    options.max_sequences = 8;
    options.max_batch_tokens = max_batch_tokens;
    options.prefix_cache_bytes = prefix_cache_bytes;
    Some(CandleBackend::load(&options).expect("the default model loads"))
}

/// Every piece of text streamed, one per generated token.
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

/// A request and how long after the others' start it arrives.
struct Arrival {
    request: GenerationRequest,
    after: Duration,
}

fn request(content: &str, params: SamplingParams) -> GenerationRequest {
    GenerationRequest {
        id: uuid::Uuid::now_v7(),
        model: MODEL.into(),
        prompt: Prompt::Chat(vec![ChatMessage {
            role: "user".into(),
            content: content.into(),
            name: None,
            ..Default::default()
        }]),
        params,
    }
}

fn params(max_tokens: u32, temperature: f32, seed: u64) -> SamplingParams {
    SamplingParams {
        max_tokens,
        temperature,
        top_p: 0.95,
        seed,
        ..Default::default()
    }
}

/// Runs every arrival on its own thread, as a worker's slots do, and returns what each got.
fn run_together(backend: &CandleBackend, arrivals: &[Arrival]) -> Vec<(Finished, Vec<String>)> {
    std::thread::scope(|scope| {
        let running: Vec<_> = arrivals
            .iter()
            .map(|arrival| {
                scope.spawn(move || {
                    std::thread::sleep(arrival.after);
                    let mut pieces = Pieces::default();
                    let finished = backend
                        .generate(&arrival.request, &mut pieces)
                        .expect("generation succeeds");
                    (finished, pieces.0)
                })
            })
            .collect();
        running.into_iter().map(|r| r.join().unwrap()).collect()
    })
}

/// `count` companions: other prompts of other lengths, greedy and sampled, other lengths of
/// answer, arriving at other times.
fn companions(count: usize) -> Vec<Arrival> {
    const PROMPTS: [&str; 7] = [
        "Say hi.",
        "Write a Rust function that adds two numbers.",
        "What does `git rebase -i HEAD~3` do? Answer in one sentence.",
        "Complete: def fibonacci(n):",
        "List three sorting algorithms with their complexity, one line each, no prose.",
        "Explain Python's GIL to a beginner who knows threads from Java, briefly.",
        "Translate to Go: for i in range(10): print(i * i)",
    ];
    (0..count)
        .map(|i| Arrival {
            request: request(
                PROMPTS[i % PROMPTS.len()],
                params(4 + 3 * i as u32, [0.0, 0.7, 1.2][i % 3], 100 + i as u64),
            ),
            after: Duration::from_millis(150 * (i as u64 % 4)),
        })
        .collect()
}

fn target(params: SamplingParams) -> GenerationRequest {
    request(
        "Write a Python function that returns the reverse of a string.",
        params,
    )
}

#[test]
fn a_seeded_request_gives_the_same_tokens_alone_and_in_any_batch() {
    let Some(backend) = load(256) else { return };
    for target_params in [params(12, 0.0, 7), params(12, 0.8, 7)] {
        let alone = run_together(
            &backend,
            &[Arrival {
                request: target(target_params.clone()),
                after: Duration::ZERO,
            }],
        )
        .remove(0);
        assert_eq!(alone.1.len(), alone.0.usage.completion_tokens as usize);

        for (count, delay) in [(1, 300), (3, 0), (7, 450)] {
            let mut arrivals = vec![Arrival {
                request: target(target_params.clone()),
                after: Duration::from_millis(delay),
            }];
            arrivals.extend(companions(count));
            let outputs = run_together(&backend, &arrivals);

            assert_eq!(
                outputs[0].1, alone.1,
                "temperature {}: beside {count} others the tokens differ",
                target_params.temperature
            );
            // The same ending and counts; how much of the prompt the prefix cache held (the
            // target ran before) is no part of the answer.
            let (beside, first) = (&outputs[0].0, &alone.0);
            assert_eq!(beside.finish_reason, first.finish_reason);
            assert_eq!(
                (beside.usage.prompt_tokens, beside.usage.completion_tokens),
                (first.usage.prompt_tokens, first.usage.completion_tokens)
            );
            for (arrival, (finished, pieces)) in arrivals.iter().zip(&outputs).skip(1) {
                assert_eq!(pieces.len(), finished.usage.completion_tokens as usize);
                assert!(finished.usage.completion_tokens <= arrival.request.params.max_tokens);
            }
        }
    }
}

#[test]
fn a_small_step_budget_cuts_prompts_into_chunks_without_changing_tokens() {
    let Some(whole) = load(256) else { return };
    let Some(chunked) = load(5) else { return };
    let arrivals = |count| {
        let mut arrivals = vec![Arrival {
            request: target(params(8, 0.8, 11)),
            after: Duration::ZERO,
        }];
        arrivals.extend(companions(count));
        arrivals
    };

    let reference = run_together(&whole, &arrivals(0)).remove(0);
    let cut = run_together(&chunked, &arrivals(2)).remove(0);

    assert_eq!(cut.1, reference.1);
}

/// Counts the prompt tokens the prefix cache served.
#[derive(Default)]
struct Hits(AtomicU64);

impl StepObserver for Hits {
    fn step(&self, stats: &StepStats) {
        self.0.fetch_add(stats.prefix_hit_tokens, Ordering::Relaxed);
    }
}

/// A conversation's second turn: the first turn's prompt, its answer and a new question.
fn second_turn(params: SamplingParams) -> GenerationRequest {
    let turn = |role: &str, content: &str| ChatMessage {
        role: role.into(),
        content: content.into(),
        name: None,
        ..Default::default()
    };
    GenerationRequest {
        id: uuid::Uuid::now_v7(),
        model: MODEL.into(),
        prompt: Prompt::Chat(vec![
            turn(
                "system",
                "You are a careful Python reviewer. Answer briefly, with code.",
            ),
            turn(
                "user",
                "Write a Python function that returns the reverse of a string.",
            ),
            turn(
                "assistant",
                "def reverse(s: str) -> str:\n    return s[::-1]",
            ),
            turn(
                "user",
                "Now make it reverse the words instead of the characters.",
            ),
        ]),
        params,
    }
}

fn alone(backend: &CandleBackend, request: GenerationRequest) -> Vec<String> {
    alone_finished(backend, request).1
}

fn alone_finished(backend: &CandleBackend, request: GenerationRequest) -> (Finished, Vec<String>) {
    let arrival = Arrival {
        request,
        after: Duration::ZERO,
    };
    run_together(backend, &[arrival]).remove(0)
}

#[test]
fn a_seeded_request_gives_the_same_tokens_with_a_cold_warm_or_evicted_prefix_cache() {
    let Some(backend) = load(256) else { return };
    // Room for about one conversation's prefix (57,344 bytes a position): the other one's
    // entry evicts it.
    let Some(small) = load_with(256, 100 * 57_344) else {
        return;
    };
    let hits = Arc::new(Hits::default());
    backend.observe_steps(hits.clone());
    for (turn, params) in [params(10, 0.0, 3), params(10, 0.9, 3)]
        .into_iter()
        .enumerate()
    {
        let (cold_done, cold) = alone_finished(&backend, second_turn(params.clone()));
        let hits_before = hits.0.load(Ordering::Relaxed);
        let (warm_done, warm) = alone_finished(&backend, second_turn(params.clone()));
        assert_eq!(warm, cold, "temperature {}", params.temperature);
        // The usage reports the hit the metrics count (the first run of all found nothing).
        if turn == 0 {
            assert_eq!(cold_done.usage.cached_tokens, 0);
        }
        let warm_hits = hits.0.load(Ordering::Relaxed) - hits_before;
        assert!(warm_done.usage.cached_tokens > 0);
        assert_eq!(u64::from(warm_done.usage.cached_tokens), warm_hits);

        // The first turn shares the system prompt and the question, not the answer.
        alone(&small, second_turn(params.clone()));
        alone(&small, target(params.clone()));
        let evicted = alone(&small, second_turn(params.clone()));
        assert_eq!(evicted, cold, "temperature {}", params.temperature);
    }
    assert!(hits.0.load(Ordering::Relaxed) >= 32, "the warm runs hit");
}
