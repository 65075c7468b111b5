//! One sequence's constraint: the tokens its grammar allows next, and its progress through it.
//!
//! Each sequence (each choice of a request) has its own, cloned from the request's compiled
//! grammar: sequences sharing a step never share a parser's state.

use anyhow::Context;
use llguidance::toktrie::SimpleVob;
use llguidance::Matcher;

/// The grammar state of one sequence.
pub struct Constraint {
    matcher: Matcher,
}

impl Constraint {
    pub(super) fn new(matcher: Matcher) -> Self {
        Self { matcher }
    }

    /// The tokens allowed next. Once the grammar is complete, only the end-of-turn tokens.
    pub fn allowed(&mut self) -> anyhow::Result<AllowedTokens> {
        self.matcher
            .compute_mask_or_eos()
            .map(AllowedTokens)
            .context("computing the grammar's token mask")
    }

    /// Moves past `token`, which [`Self::allowed`] allowed.
    pub fn advance(&mut self, token: u32) -> anyhow::Result<()> {
        self.matcher
            .consume_token(token)
            .with_context(|| format!("advancing the grammar by token {token}"))
    }
}

/// The set of token ids a grammar allows at one step.
pub struct AllowedTokens(SimpleVob);

impl AllowedTokens {
    /// The set of `ids` among `size` tokens.
    #[cfg(test)]
    pub fn of(size: usize, ids: &[u32]) -> Self {
        let mut set = SimpleVob::alloc(size);
        for &id in ids {
            set.allow_token(id);
        }
        Self(set)
    }

    pub fn contains(&self, token: u32) -> bool {
        (token as usize) < self.0.len() && self.0.is_allowed(token)
    }

    /// Sets every disallowed token's logit to `-inf` (ids past the vocabulary included: a model's
    /// output layer is often padded beyond its tokenizer).
    pub fn mask_logits(&self, logits: &mut [f32]) {
        for (id, logit) in logits.iter_mut().enumerate() {
            if !self.contains(id as u32) {
                *logit = f32::NEG_INFINITY;
            }
        }
    }

    /// The allowed ids, lowest first.
    pub fn ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter()
    }
}
