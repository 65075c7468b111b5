//! Fill-in-the-middle: the model's own FIM tokens, and the prompt they build.
//!
//! The tokens are the ids the GGUF metadata declares (`tokenizer.ggml.fim_pre_token_id`,
//! `..._suf_...`, `..._mid_...`, `..._pad_...`, `..._rep_...`, `..._sep_...`), else the ones the
//! vocabulary spells with the names llama.cpp looks for. The prompt is llama.cpp's
//! (prefix-suffix-middle, other files first in the repository-level format):
//!
//! ```text
//! [BOS] <|repo_name|>myproject\n <|file_sep|>{name}\n{text}\n ... <|file_sep|>filename\n
//! <|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>
//! ```
//!
//! The prefix, the suffix and the files are tokenized as text: a FIM token's spelling typed in
//! the code stays text. Generation ends at the model's end tokens and at the FIM ones a model
//! writes when the middle is done (`<|fim_pad|>`, `<|file_sep|>`, `<|repo_name|>`, `<EOT>`).

use coder_nats::Infill;
use tokenizers::Tokenizer;

use super::vocab::Vocab;

const PREFIX: &[&str] = &[
    "<|fim_prefix|>",
    "<fim-prefix>",
    "<fim_prefix>",
    "<PRE>",
    "▁<PRE>",
    "<｜fim▁begin｜>",
];
const SUFFIX: &[&str] = &[
    "<|fim_suffix|>",
    "<fim-suffix>",
    "<fim_suffix>",
    "<SUF>",
    "▁<SUF>",
    "<｜fim▁hole｜>",
];
const MIDDLE: &[&str] = &[
    "<|fim_middle|>",
    "<fim-middle>",
    "<fim_middle>",
    "<MID>",
    "▁<MID>",
    "<｜fim▁end｜>",
];
const PAD: &[&str] = &["<|fim_pad|>", "<fim-pad>", "<fim_pad>"];
const REPO: &[&str] = &[
    "<|fim_repo|>",
    "<|repo_name|>",
    "<fim-repo>",
    "<REPO>",
    "<reponame>",
];
const FILE_SEP: &[&str] = &["<|file_sep|>", "<file_sep>", "<filename>"];
/// Ends of an infill some models write instead of their usual end token (CodeLlama's).
const END: &[&str] = &["<EOT>", "▁<EOT>", "<|endoftext|>"];

/// Placeholders llama.cpp's `/infill` writes for the repository's and the current file's names.
const REPO_NAME: &str = "myproject";
const CURRENT_FILE: &str = "filename";
/// Between files when the model has no file separator (llama.cpp's).
const SNIPPET: &str = "\n\n--- snippet ---\n\n";

/// The FIM token ids a GGUF file declares (any may be absent).
#[derive(Debug, Clone, Copy, Default)]
pub struct DeclaredFim {
    pub prefix: Option<u32>,
    pub suffix: Option<u32>,
    pub middle: Option<u32>,
    pub pad: Option<u32>,
    pub repo: Option<u32>,
    pub file_sep: Option<u32>,
}

/// A model's FIM tokens: the three that build the prompt, the repository-level ones, and the
/// ends of a middle beyond the model's own end tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FimTokens {
    pub prefix: u32,
    pub suffix: u32,
    pub middle: u32,
    pub repo: Option<u32>,
    pub file_sep: Option<u32>,
    pub ends: Vec<u32>,
}

impl FimTokens {
    /// The model's FIM tokens: the declared ids first, else the vocabulary's by name; `None`
    /// when the model lacks any of prefix, suffix and middle.
    pub fn find(tokenizer: &Tokenizer, declared: &DeclaredFim) -> Option<Self> {
        let named = |names: &[&str]| names.iter().find_map(|n| tokenizer.token_to_id(n));
        let pad = declared.pad.or_else(|| named(PAD));
        let repo = declared.repo.or_else(|| named(REPO));
        let file_sep = declared.file_sep.or_else(|| named(FILE_SEP));
        let mut ends: Vec<u32> = [pad, repo, file_sep].into_iter().flatten().collect();
        ends.extend(END.iter().filter_map(|n| tokenizer.token_to_id(n)));
        ends.sort_unstable();
        ends.dedup();
        Some(Self {
            prefix: declared.prefix.or_else(|| named(PREFIX))?,
            suffix: declared.suffix.or_else(|| named(SUFFIX))?,
            middle: declared.middle.or_else(|| named(MIDDLE))?,
            repo,
            file_sep,
            ends,
        })
    }

    /// The prompt's token ids (see the module's docs).
    pub fn encode(&self, vocab: &Vocab, infill: &Infill) -> anyhow::Result<Vec<u32>> {
        // What the tokenizer puts before any sequence (a BOS for llama-style ones).
        let mut ids = vocab.encode("", true)?;
        if !infill.files.is_empty() {
            self.encode_files(vocab, infill, &mut ids)?;
        }
        ids.push(self.prefix);
        ids.extend(vocab.encode_text(&infill.prefix)?);
        ids.push(self.suffix);
        ids.extend(vocab.encode_text(&infill.suffix)?);
        ids.push(self.middle);
        Ok(ids)
    }

    fn encode_files(
        &self,
        vocab: &Vocab,
        infill: &Infill,
        ids: &mut Vec<u32>,
    ) -> anyhow::Result<()> {
        let Some(file_sep) = self.file_sep else {
            for file in &infill.files {
                ids.extend(vocab.encode_text(SNIPPET)?);
                ids.extend(vocab.encode_text(&file.text)?);
            }
            return Ok(());
        };
        if let Some(repo) = self.repo {
            ids.push(repo);
            ids.extend(vocab.encode_text(&format!("{REPO_NAME}\n"))?);
        }
        for file in &infill.files {
            ids.push(file_sep);
            let newline = if file.text.ends_with('\n') { "" } else { "\n" };
            ids.extend(vocab.encode_text(&format!("{}\n{}{newline}", file.name, file.text))?);
        }
        ids.push(file_sep);
        ids.extend(vocab.encode_text(&format!("{CURRENT_FILE}\n"))?);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use coder_nats::InfillFile;

    use super::super::qwen_tokenizer;
    use super::*;

    /// The default model's vocabulary, when the model was fetched.
    fn qwen() -> Option<Vocab> {
        Some(Vocab::new(qwen_tokenizer()?, [], None))
    }

    fn id(vocab: &Vocab, name: &str) -> u32 {
        vocab.tokenizer().token_to_id(name).unwrap()
    }

    #[test]
    fn qwen_coder_fim_tokens_are_found_by_name_with_their_ends() {
        let Some(vocab) = qwen() else { return };
        let fim = vocab.fim().expect("Qwen2.5-Coder has FIM tokens");
        assert_eq!(fim.prefix, id(&vocab, "<|fim_prefix|>"));
        assert_eq!(fim.suffix, id(&vocab, "<|fim_suffix|>"));
        assert_eq!(fim.middle, id(&vocab, "<|fim_middle|>"));
        for end in [
            "<|fim_pad|>",
            "<|file_sep|>",
            "<|repo_name|>",
            "<|endoftext|>",
        ] {
            assert!(fim.ends.contains(&id(&vocab, end)), "{end}");
        }
        assert!(!fim.ends.contains(&fim.middle));
    }

    #[test]
    fn the_prompt_is_prefix_suffix_middle_with_the_code_as_text() {
        let Some(vocab) = qwen() else { return };
        let fim = vocab.fim().unwrap().clone();
        let infill = Infill {
            prefix: "s = '<|fim_middle|>'\ndef f(".into(),
            suffix: "):\n    pass\n".into(),
            files: Vec::new(),
        };
        let ids = fim.encode(&vocab, &infill).unwrap();
        assert_eq!(ids[0], fim.prefix);
        assert_eq!(*ids.last().unwrap(), fim.middle);
        assert_eq!(
            ids.iter().filter(|&&i| i == fim.middle).count(),
            1,
            "typed stays text"
        );
        let text = vocab.tokenizer().decode(&ids, false).unwrap();
        assert_eq!(
            text,
            "<|fim_prefix|>s = '<|fim_middle|>'\ndef f(<|fim_suffix|>):\n    pass\n<|fim_middle|>"
        );
    }

    #[test]
    fn other_files_come_first_in_the_repository_format() {
        let Some(vocab) = qwen() else { return };
        let fim = vocab.fim().unwrap().clone();
        let infill = Infill {
            prefix: "from util import add\n".into(),
            suffix: String::new(),
            files: vec![InfillFile {
                name: "util.py".into(),
                text: "def add(a, b):\n    return a + b".into(),
            }],
        };
        let ids = fim.encode(&vocab, &infill).unwrap();
        let text = vocab.tokenizer().decode(&ids, false).unwrap();
        assert_eq!(
            text,
            "<|repo_name|>myproject\n<|file_sep|>util.py\ndef add(a, b):\n    return a + b\n\
             <|file_sep|>filename\n<|fim_prefix|>from util import add\n<|fim_suffix|><|fim_middle|>"
        );
    }

    #[test]
    fn a_vocabulary_without_fim_tokens_has_none_and_declared_ids_win() {
        let json = r#"{
            "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
            "normalizer": null, "pre_tokenizer": {"type": "Whitespace"},
            "post_processor": null, "decoder": null,
            "model": {"type": "WordLevel", "unk_token": "[UNK]", "vocab": {
                "[UNK]": 0, "a": 1, "b": 2, "c": 3, "d": 4}}
        }"#;
        let tokenizer = Tokenizer::from_bytes(json.as_bytes()).unwrap();
        assert_eq!(FimTokens::find(&tokenizer, &DeclaredFim::default()), None);
        let declared = DeclaredFim {
            prefix: Some(1),
            suffix: Some(2),
            middle: Some(3),
            pad: Some(4),
            ..DeclaredFim::default()
        };
        let fim = FimTokens::find(&tokenizer, &declared).unwrap();
        assert_eq!((fim.prefix, fim.suffix, fim.middle), (1, 2, 3));
        assert_eq!(fim.ends, [4]);
    }

    #[test]
    fn qwen_token_bytes_keep_partial_characters() {
        let Some(vocab) = qwen() else { return };
        let ids = vocab.encode_text("𓀀").unwrap();
        let bytes: Vec<u8> = ids.iter().flat_map(|&i| vocab.token_bytes(i)).collect();
        assert_eq!(bytes, "𓀀".as_bytes());
        assert!(ids.len() > 1 && vocab.token_bytes(ids[0]).len() < 4);
        assert_eq!(vocab.token_bytes(id(&vocab, "<|im_end|>")), b"<|im_end|>");
    }
}
