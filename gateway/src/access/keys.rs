//! The API keys file: `name:key` lines (the name is what logs, limits and metrics use; the key is
//! never shown), or the older one key per line, named `key-<line>`. Blank lines and lines
//! starting with `#` are skipped. The file is read again on SIGHUP ([`ApiKeys::reload`]).

use anyhow::{ensure, Context};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use subtle::ConstantTimeEq;

/// A key's name, as the keys file gives it: safe to log and to use as a label value.
pub type KeyName = Arc<str>;

/// Longest key name accepted.
const MAX_NAME_LEN: usize = 64;

/// The keys of one reading of the file.
struct KeySet {
    keys: Vec<(KeyName, Vec<u8>)>,
}

/// The keys in force, replaced whole by a reload.
#[derive(Clone)]
pub struct ApiKeys {
    path: Arc<PathBuf>,
    current: Arc<RwLock<Arc<KeySet>>>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKeys({} keys, redacted)", self.set().keys.len())
    }
}

impl ApiKeys {
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        Ok(Self {
            path: Arc::new(path.to_owned()),
            current: Arc::new(RwLock::new(Arc::new(read(path)?))),
        })
    }

    /// Reads the file again; on any error the keys in force stay. The number of keys now.
    pub fn reload(&self) -> anyhow::Result<usize> {
        let set = read(&self.path)?;
        let count = set.keys.len();
        *self.current.write().expect("keys lock") = Arc::new(set);
        Ok(count)
    }

    /// The name of the key `candidate` is. Every key is compared, in constant time, so the time
    /// taken does not depend on which (if any) matched.
    pub fn identify(&self, candidate: &[u8]) -> Option<KeyName> {
        let set = self.set();
        let mut found = None;
        for (name, key) in &set.keys {
            if bool::from(key.as_slice().ct_eq(candidate)) {
                found = Some(Arc::clone(name));
            }
        }
        found
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn set(&self) -> Arc<KeySet> {
        Arc::clone(&self.current.read().expect("keys lock"))
    }
}

fn read(path: &Path) -> anyhow::Result<KeySet> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading API keys from {}", path.display()))?;
    let set = parse(&text).with_context(|| format!("API keys file {}", path.display()))?;
    ensure!(!set.keys.is_empty(), "{} holds no API key", path.display());
    Ok(set)
}

fn parse(text: &str) -> anyhow::Result<KeySet> {
    let mut keys = Vec::new();
    let mut names = HashSet::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let number = index + 1;
        let (name, key) = match line.split_once(':') {
            Some((name, key)) => (name.trim().to_owned(), key.trim()),
            None => (format!("key-{number}"), line),
        };
        ensure!(
            valid_name(&name),
            "line {number}: a key name is 1 to {MAX_NAME_LEN} of A-Z a-z 0-9 . _ -"
        );
        ensure!(!key.is_empty(), "line {number}: the key `{name}` is empty");
        ensure!(
            names.insert(name.clone()),
            "line {number}: the name `{name}` is used twice"
        );
        keys.push((KeyName::from(name), key.as_bytes().to_vec()));
    }
    Ok(KeySet { keys })
}

fn valid_name(name: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys_file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn named_and_bare_keys_skipping_comments_and_debug_is_redacted() {
        let (_dir, path) = keys_file("# team a\nteam-a:sk-one\n\n  sk-two  \n");
        let keys = ApiKeys::from_file(&path).unwrap();
        assert_eq!(keys.identify(b"sk-one").as_deref(), Some("team-a"));
        assert_eq!(keys.identify(b"sk-two").as_deref(), Some("key-4"));
        assert_eq!(keys.identify(b"sk-on"), None);
        assert_eq!(keys.identify(b""), None);
        assert!(!format!("{keys:?}").contains("sk-"));
    }

    #[test]
    fn an_empty_keys_file_is_refused() {
        let (_dir, path) = keys_file("# nothing\n");
        assert!(ApiKeys::from_file(&path).is_err());
    }

    #[test]
    fn bad_names_empty_keys_and_repeated_names_are_refused() {
        for text in ["a b:sk-1\n", ":sk-1\n", "a:\n", "a:sk-1\na:sk-2\n"] {
            let (_dir, path) = keys_file(text);
            assert!(ApiKeys::from_file(&path).is_err(), "{text:?}");
        }
    }

    #[test]
    fn a_reload_replaces_the_keys_and_a_failed_one_keeps_them() {
        let (_dir, path) = keys_file("a:sk-old\n");
        let keys = ApiKeys::from_file(&path).unwrap();
        std::fs::write(&path, "b:sk-new\n").unwrap();
        assert_eq!(keys.reload().unwrap(), 1);
        assert_eq!(keys.identify(b"sk-new").as_deref(), Some("b"));
        assert_eq!(keys.identify(b"sk-old"), None);
        std::fs::write(&path, "").unwrap();
        assert!(keys.reload().is_err());
        assert_eq!(keys.identify(b"sk-new").as_deref(), Some("b"));
    }
}
