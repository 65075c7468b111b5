//! A model's vocabulary as the grammar engine sees it: every token's exact bytes, control tokens
//! set apart so a grammar never spells text with them, and the tokens that end a turn.
//!
//! llguidance marks a control token by a leading `0xFF` byte (a byte no UTF-8 text holds): its
//! text then never matches a grammar's literal or a JSON string, yet the token stays known, by
//! id, as an end of turn.

use anyhow::Context;
use llguidance::toktrie::{ApproximateTokEnv, TokEnv, TokRxInfo, TokTrie};

/// The prefix llguidance gives a control token's bytes.
const CONTROL_MARKER: u8 = TokTrie::SPECIAL_TOKEN_MARKER;

/// One token of a vocabulary: its bytes, and whether it is a control token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSpelling {
    pub bytes: Vec<u8>,
    pub control: bool,
}

/// The grammar engine's view of a vocabulary whose token `i` is `tokens[i]` and which ends a
/// turn with any of `end_of_turn` (at least one, each a token of it).
///
/// A token without bytes (a hole in the ids) is never allowed. Tokenizing a grammar's forced
/// text is greedy over the trie (llguidance's "approximate" tokenizer): it only decides which
/// tokens a forced stretch is offered as, never what text is valid.
pub fn token_env(tokens: Vec<TokenSpelling>, end_of_turn: &[u32]) -> anyhow::Result<TokEnv> {
    let words: Vec<Vec<u8>> = tokens
        .into_iter()
        .map(|token| match token.control {
            true => [&[CONTROL_MARKER], token.bytes.as_slice()].concat(),
            false => token.bytes,
        })
        .collect();
    let size = u32::try_from(words.len()).context("the vocabulary is too large")?;
    let first_end = *end_of_turn
        .first()
        .context("the model has no end-of-turn token")?;
    anyhow::ensure!(
        end_of_turn.iter().all(|&id| id < size),
        "an end-of-turn token is outside the vocabulary"
    );
    let trie = TokTrie::from(&TokRxInfo::new(size, first_end), &words).with_eos_tokens(end_of_turn);
    Ok(std::sync::Arc::new(ApproximateTokEnv::new(trie)))
}

/// The byte vocabulary: token `b` is the byte `b` (0 to 255), token 256 the end of turn. The
/// synthetic backend walks grammars over it, and unit tests check grammars with it.
pub fn byte_token_env() -> TokEnv {
    let mut tokens: Vec<TokenSpelling> = (0..=u8::MAX)
        .map(|byte| TokenSpelling {
            bytes: vec![byte],
            control: false,
        })
        .collect();
    tokens.push(TokenSpelling {
        bytes: b"<|end|>".to_vec(),
        control: true,
    });
    token_env(tokens, &[BYTE_END_OF_TURN]).expect("the byte vocabulary is well-formed")
}

/// The end-of-turn token of [`byte_token_env`].
pub const BYTE_END_OF_TURN: u32 = 256;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_tokens_are_marked_and_ends_are_known() {
        let env = byte_token_env();
        let trie = env.tok_trie();
        assert_eq!(trie.vocab_size(), 257);
        assert!(trie.is_special_token(BYTE_END_OF_TURN));
        assert!(!trie.is_special_token(u32::from(b'{')));
        assert_eq!(trie.token(u32::from(b'{')), b"{");
        assert!(trie.eos_token_set().is_allowed(BYTE_END_OF_TURN));
    }

    #[test]
    fn a_vocabulary_without_an_end_is_refused() {
        let tokens = vec![TokenSpelling {
            bytes: b"a".to_vec(),
            control: false,
        }];
        assert!(token_env(tokens.clone(), &[]).is_err());
        assert!(token_env(tokens, &[3]).is_err());
    }
}
