//! Which tokens each running sequence feeds in the next step (pure, unit-tested).
//!
//! Every decoding sequence feeds its one token each step: none waits behind a prompt. What is
//! left of the step's token budget goes to prompts, oldest first, each cut to what fits, so a
//! long prompt is fed over several steps and never holds the others' decoding up for more than
//! one step. A step always feeds at least one prompt token while a prompt waits, however many
//! sequences decode, so no prompt starves.

/// One running sequence as the planner sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    /// Tokens waiting to be fed.
    pub tokens: usize,
    /// Whether they are prompt tokens (else the one token it last sampled).
    pub prompt: bool,
}

/// What one sequence feeds in a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Feed {
    /// Its index among the running sequences.
    pub sequence: usize,
    /// How many of its pending tokens.
    pub tokens: usize,
    /// Whether the step's logits for it are wanted: it feeds the last of its pending tokens.
    pub logits: bool,
}

/// The next step for `sequences` (in arrival order) under a budget of `budget` tokens, in
/// sequence order.
pub fn plan(sequences: &[Pending], budget: usize) -> Vec<Feed> {
    let decoding = sequences.iter().filter(|s| !s.prompt).count();
    let mut left = match sequences.iter().any(|s| s.prompt) {
        true => budget.saturating_sub(decoding).max(1),
        false => 0,
    };
    sequences
        .iter()
        .enumerate()
        .filter_map(|(sequence, pending)| {
            let tokens = match pending.prompt {
                false => pending.tokens,
                true => {
                    let take = pending.tokens.min(left);
                    left -= take;
                    take
                }
            };
            (tokens > 0).then_some(Feed {
                sequence,
                tokens,
                logits: tokens == pending.tokens,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prompt(tokens: usize) -> Pending {
        Pending {
            tokens,
            prompt: true,
        }
    }

    const DECODE: Pending = Pending {
        tokens: 1,
        prompt: false,
    };

    fn feed(sequence: usize, tokens: usize, logits: bool) -> Feed {
        Feed {
            sequence,
            tokens,
            logits,
        }
    }

    #[test]
    fn decoders_always_go_and_prompts_share_what_is_left_oldest_first() {
        let plan = plan(&[DECODE, prompt(10), DECODE, prompt(7)], 8);
        assert_eq!(
            plan,
            [feed(0, 1, true), feed(1, 6, false), feed(2, 1, true)]
        );
    }

    #[test]
    fn a_prompt_that_fits_wants_its_logits() {
        let plan = plan(&[prompt(3), prompt(4), prompt(5)], 8);
        assert_eq!(
            plan,
            [feed(0, 3, true), feed(1, 4, true), feed(2, 1, false)]
        );
    }

    #[test]
    fn a_prompt_gets_a_token_even_when_decoders_fill_the_budget() {
        let plan = plan(&[DECODE, DECODE, DECODE, prompt(9)], 2);
        assert_eq!(plan.len(), 4);
        assert_eq!(plan[3], feed(3, 1, false));
    }

    #[test]
    fn only_decoders_feed_one_token_each() {
        let plan = plan(&[DECODE, DECODE], 1);
        assert_eq!(plan, [feed(0, 1, true), feed(1, 1, true)]);
    }
}
