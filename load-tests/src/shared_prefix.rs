//! Workloads whose requests share long prefixes, for a server's prefix cache: what the text is,
//! seeded, so two runs with one seed send the same requests.
//!
//! - **repo-context**: one long source file (the "open file" of a coding tool) followed by one
//!   of many short, different questions about it: every request shares the file.
//! - **multiturn**: conversations sharing one long system prompt (the project's file); each
//!   opens with a question of its own, and every later turn resends the whole history (the
//!   earlier questions and the answers the server gave) plus a new question
//!   ([`crate::runner::conversations`] plays them).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

/// How many different questions a repo-context run cycles through.
pub const REPO_CONTEXT_QUESTIONS: usize = 64;

/// A Python module of about `bytes` bytes (at least one function), the same for the same seed.
pub fn source_file(seed: u64, bytes: usize) -> String {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut text = String::from("\"\"\"Inventory helpers for the warehouse service.\"\"\"\n\n");
    let mut index = 0;
    while text.len() < bytes || index == 0 {
        let (scale, offset, limit) = (
            rng.random_range(2..50),
            rng.random_range(1..1000),
            rng.random_range(10..500),
        );
        text.push_str(&format!(
            "def helper_{index}(items, threshold={limit}):\n    \
             \"\"\"Scales the stock of every item above the threshold.\"\"\"\n    \
             total = 0\n    for item in items:\n        if item.stock > threshold:\n            \
             total += item.stock * {scale} + {offset}\n    return total\n\n"
        ));
        index += 1;
    }
    text
}

/// Functions [`source_file`] defines, for questions that name one.
fn functions_in(file: &str) -> usize {
    file.matches("\ndef helper_").count().max(1)
}

/// The repo-context prompts: the file, then each of [`REPO_CONTEXT_QUESTIONS`] questions.
pub fn repo_context_prompts(seed: u64, bytes: usize) -> Vec<String> {
    let file = source_file(seed, bytes);
    let functions = functions_in(&file);
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    (0..REPO_CONTEXT_QUESTIONS)
        .map(|n| {
            let target = rng.random_range(0..functions);
            let ask = QUESTIONS[n % QUESTIONS.len()];
            format!("{file}# Question {n}: {ask} `helper_{target}`?\n")
        })
        .collect()
}

const QUESTIONS: &[&str] = &[
    "What does this return for an empty list in",
    "Which inputs make the threshold matter in",
    "How would you write a unit test for",
    "Is there an off-by-one risk in",
    "How would you type-annotate",
    "Can you rewrite with a generator expression",
];

/// One conversation: the shared system prompt and its users' questions, one per turn.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversation {
    /// Which conversation (from 0).
    pub index: usize,
    pub system: String,
    pub questions: Vec<String>,
}

impl Conversation {
    /// The chat messages of turn `turn` (from 0): the system prompt, then for every earlier
    /// turn its question and `answers[t]`, then this turn's question.
    pub fn messages(&self, turn: usize, answers: &[String]) -> Value {
        let mut messages = vec![json!({"role": "system", "content": self.system})];
        for (question, answer) in self.questions[..turn].iter().zip(answers) {
            messages.push(json!({"role": "user", "content": question}));
            messages.push(json!({"role": "assistant", "content": answer}));
        }
        messages.push(json!({"role": "user", "content": self.questions[turn]}));
        Value::Array(messages)
    }
}

/// `count` conversations of `turns` turns sharing a system prompt of about `bytes` bytes.
pub fn conversations(seed: u64, bytes: usize, count: usize, turns: usize) -> Vec<Conversation> {
    let file = source_file(seed, bytes);
    let functions = functions_in(&file);
    let system = format!(
        "You are a careful Python reviewer. Answer briefly, with code. The module under \
         review:\n\n{file}"
    );
    let mut rng = StdRng::seed_from_u64(seed ^ 0xc0417e);
    (0..count)
        .map(|index| Conversation {
            index,
            system: system.clone(),
            questions: (0..turns)
                .map(|turn| {
                    let target = rng.random_range(0..functions);
                    let ask = QUESTIONS[rng.random_range(0..QUESTIONS.len())];
                    match turn {
                        0 => format!("[conversation {index}] {ask} `helper_{target}`?"),
                        _ => format!("Follow-up {turn}: {ask} `helper_{target}`?"),
                    }
                })
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_text_and_another_seed_another() {
        assert_eq!(source_file(3, 4000), source_file(3, 4000));
        assert_ne!(source_file(3, 4000), source_file(4, 4000));
        let file = source_file(3, 4000);
        assert!((4000..4400).contains(&file.len()), "{}", file.len());
        assert!(source_file(3, 0).contains("def helper_0"));
    }

    #[test]
    fn repo_context_prompts_share_the_file_and_differ_after_it() {
        let prompts = repo_context_prompts(1, 2000);
        let file = source_file(1, 2000);
        assert_eq!(prompts.len(), REPO_CONTEXT_QUESTIONS);
        assert!(prompts.iter().all(|p| p.starts_with(&file)));
        let distinct: std::collections::HashSet<_> = prompts.iter().collect();
        assert_eq!(distinct.len(), prompts.len());
    }

    #[test]
    fn each_turn_resends_the_history_with_the_answers_given() {
        let all = conversations(9, 1000, 2, 3);
        assert_eq!(all[0].system, all[1].system, "one shared system prompt");
        assert_ne!(all[0].questions[0], all[1].questions[0]);
        let answers = vec!["first answer".to_owned(), "second answer".to_owned()];
        let third = all[0].messages(2, &answers);
        let roles: Vec<&str> = third
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["role"].as_str().unwrap())
            .collect();
        assert_eq!(
            roles,
            ["system", "user", "assistant", "user", "assistant", "user"]
        );
        assert_eq!(third[2]["content"], "first answer");
        assert_eq!(third[4]["content"], "second answer");
        assert_eq!(third[5]["content"], all[0].questions[2].as_str());
        assert_eq!(all[0].messages(0, &[]).as_array().unwrap().len(), 2);
    }
}
