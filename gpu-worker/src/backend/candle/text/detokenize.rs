//! Token ids to text, one token at a time, never splitting a character.
//!
//! A byte-level BPE token can hold part of a multi-byte UTF-8 character; decoding it alone
//! gives U+FFFD. Text is released only once the tokens seen so far decode cleanly, and each
//! step decodes a short window (from the last released token) rather than the whole output.
//! Decoding a window, not single tokens, also keeps tokenizer-specific joins (SentencePiece
//! spaces) right.

use tokenizers::Tokenizer;

pub struct IncrementalDecoder<'t> {
    tokenizer: &'t Tokenizer,
    ids: Vec<u32>,
    /// Start of the window whose text has been released up to `read`.
    prefix: usize,
    /// Tokens before this index have been released.
    read: usize,
}

impl<'t> IncrementalDecoder<'t> {
    pub fn new(tokenizer: &'t Tokenizer) -> Self {
        Self {
            tokenizer,
            ids: Vec::new(),
            prefix: 0,
            read: 0,
        }
    }

    /// Adds a token; returns the text it completes (empty while a character is incomplete).
    pub fn push(&mut self, id: u32) -> anyhow::Result<String> {
        self.ids.push(id);
        let released = self.decode(self.prefix, self.read)?;
        let all = self.decode(self.prefix, self.ids.len())?;
        if all.len() <= released.len() || all.ends_with('\u{FFFD}') {
            return Ok(String::new());
        }
        let new = match all.get(released.len()..) {
            Some(new) if all.starts_with(&released) => new.to_owned(),
            // The window decodes differently with the new token (a normalizer joined them):
            // release what is new by character count rather than risk a broken slice.
            _ => all.chars().skip(released.chars().count()).collect(),
        };
        self.prefix = self.read;
        self.read = self.ids.len();
        Ok(new)
    }

    /// Whatever is held back when generation ends, incomplete characters as U+FFFD.
    pub fn flush(&mut self) -> anyhow::Result<String> {
        let released = self.decode(self.prefix, self.read)?;
        let all = self.decode(self.prefix, self.ids.len())?;
        self.prefix = self.ids.len();
        self.read = self.ids.len();
        Ok(all.get(released.len()..).unwrap_or_default().to_owned())
    }

    fn decode(&self, from: usize, to: usize) -> anyhow::Result<String> {
        if from >= to {
            return Ok(String::new());
        }
        self.tokenizer
            .decode(&self.ids[from..to], true)
            .map_err(anyhow::Error::msg)
    }
}

#[cfg(test)]
mod tests {
    use super::super::qwen_tokenizer;
    use super::*;

    #[test]
    fn multibyte_characters_are_never_split() {
        let Some(tokenizer) = qwen_tokenizer() else {
            return;
        };
        let text = "naïve café — 日本語のテキスト 🎉🦀 done\n\tfn main() {}";
        let ids = tokenizer
            .encode_fast(text, false)
            .unwrap()
            .get_ids()
            .to_vec();
        let split = ids
            .iter()
            .any(|&id| tokenizer.decode(&[id], false).unwrap().contains('\u{FFFD}'));
        assert!(
            split,
            "the sample should contain a character spread over several tokens"
        );

        let mut decoder = IncrementalDecoder::new(&tokenizer);
        let mut out = String::new();
        for id in ids {
            let piece = decoder.push(id).unwrap();
            assert!(
                !piece.contains('\u{FFFD}'),
                "released a partial character: {piece:?}"
            );
            out.push_str(&piece);
        }
        out.push_str(&decoder.flush().unwrap());

        assert_eq!(out, text);
    }

    #[test]
    fn an_incomplete_character_at_the_end_is_flushed() {
        let Some(tokenizer) = qwen_tokenizer() else {
            return;
        };
        let ids = tokenizer
            .encode_fast("𓀀", false)
            .unwrap()
            .get_ids()
            .to_vec();
        assert!(ids.len() > 1, "𓀀 is several byte-level tokens");

        let mut decoder = IncrementalDecoder::new(&tokenizer);
        assert_eq!(decoder.push(ids[0]).unwrap(), "");

        assert_eq!(decoder.flush().unwrap(), "\u{FFFD}");
    }
}
