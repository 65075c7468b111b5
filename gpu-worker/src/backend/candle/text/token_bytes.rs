//! A token's exact bytes, for log probabilities (OpenAI's `bytes`): a token can hold part of a
//! UTF-8 character, which its decoded text alone cannot show.
//!
//! Byte-level BPE vocabularies (GPT-2, Qwen, Llama 3) spell each byte as one printable
//! character (GPT-2's `bytes_to_unicode`), which is inverted here; SentencePiece vocabularies
//! spell raw bytes as `<0xNN>` and spaces as `▁`.

/// The bytes GPT-2's table keeps as the character of the same code; every other byte `b` is
/// spelled `256 + (its rank among the others)`.
fn kept_as_itself(byte: u8) -> bool {
    matches!(byte, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF)
}

/// The byte a byte-level BPE character stands for, if it is one.
fn byte_level_char(c: char) -> Option<u8> {
    let code = c as u32;
    if let Ok(byte) = u8::try_from(code) {
        if kept_as_itself(byte) {
            return Some(byte);
        }
    }
    let rank = code.checked_sub(256)?;
    (0..=u8::MAX)
        .filter(|&b| !kept_as_itself(b))
        .nth(rank as usize)
}

/// The bytes `token` (as the vocabulary spells it) stands for. `byte_level` says the vocabulary
/// is byte-level BPE; a character outside its table (an added token's) is taken as its UTF-8.
pub fn token_bytes(token: &str, byte_level: bool) -> Vec<u8> {
    if byte_level {
        let mut bytes = Vec::with_capacity(token.len());
        for c in token.chars() {
            match byte_level_char(c) {
                Some(byte) => bytes.push(byte),
                None => bytes.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
            }
        }
        return bytes;
    }
    let hex = token
        .strip_prefix("<0x")
        .and_then(|rest| rest.strip_suffix('>'))
        .filter(|hex| hex.len() == 2);
    match hex.and_then(|hex| u8::from_str_radix(hex, 16).ok()) {
        Some(byte) => vec![byte],
        None => token.replace('\u{2581}', " ").into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_level_spellings_invert_to_their_bytes() {
        assert_eq!(token_bytes("Ġhello", true), b" hello");
        assert_eq!(token_bytes("Ċ", true), b"\n");
        assert_eq!(token_bytes("<|im_end|>", true), b"<|im_end|>");
        // "é" is 0xC3 0xA9, spelled "Ã©"; half of it is one byte, not a character.
        assert_eq!(token_bytes("Ã©", true), "é".as_bytes());
        assert_eq!(token_bytes("Ã", true), [0xC3]);
        let all: Vec<u8> = (0..=255).collect();
        let spelled: String = (0..=255u8)
            .map(|b| match kept_as_itself(b) {
                true => char::from(b),
                false => {
                    let rank = (0..b).filter(|&x| !kept_as_itself(x)).count() as u32;
                    char::from_u32(256 + rank).unwrap()
                }
            })
            .collect();
        assert_eq!(token_bytes(&spelled, true), all);
    }

    #[test]
    fn sentencepiece_spellings_give_their_bytes() {
        assert_eq!(token_bytes("▁def", false), b" def");
        assert_eq!(token_bytes("<0x0A>", false), b"\n");
        assert_eq!(token_bytes("<0xE2>", false), [0xE2]);
        assert_eq!(token_bytes("<s>", false), b"<s>");
    }
}
