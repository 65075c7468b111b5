//! One target's line in a summary: `- PASS: text` or `- MISS: text`.
//!
//! A miss is reported, never fatal: bench.sh's exit status answers "did everything run and
//! account", the summaries answer "were the targets met".

use std::fmt;

/// A target and whether the figures met it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was measured against what, as the summary shows it.
    pub text: String,
    pub pass: bool,
}

impl Check {
    pub fn new(text: impl Into<String>, pass: bool) -> Self {
        Self {
            text: text.into(),
            pass,
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = if self.pass { "PASS" } else { "MISS" };
        write!(f, "- {word}: {}", self.text)
    }
}

/// What a benchmark's verdict adds under its table: notes, then a blank line, then the checks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Lines of prose with the figures in them (may be empty).
    pub notes: Vec<String>,
    pub checks: Vec<Check>,
}

impl Verdict {
    /// The Markdown appended to the summary; the blank line only follows notes.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for line in &self.notes {
            out.push_str(line);
            out.push('\n');
        }
        if !self.notes.is_empty() {
            out.push('\n');
        }
        for check in &self.checks {
            out.push_str(&check.to_string());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_reads_pass_or_miss() {
        assert_eq!(Check::new("x", true).to_string(), "- PASS: x");
        assert_eq!(Check::new("y", false).to_string(), "- MISS: y");
    }

    #[test]
    fn notes_are_set_off_from_the_checks_by_a_blank_line() {
        let verdict = Verdict {
            notes: vec!["a".into(), "b".into()],
            checks: vec![Check::new("c", true)],
        };
        assert_eq!(verdict.render(), "a\nb\n\n- PASS: c\n");
        let checks_only = Verdict {
            notes: vec![],
            checks: vec![Check::new("c", false)],
        };
        assert_eq!(checks_only.render(), "- MISS: c\n");
    }
}
