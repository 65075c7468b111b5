//! A character-at-a-time scanner of one JSON object's top level, for reading a tool call while
//! the model writes it.
//!
//! It tells which characters belong to the value of which top-level key, when that value ends
//! and when the object closes, without waiting for the whole text. It checks structure only
//! (strings, nesting, the key/colon/value/comma order at the top level); a value's own
//! well-formedness is for the caller to check on the value's text once it ended (with
//! `serde_json`), which is where a bracket mismatch deep inside is caught.

/// What one character was, seen from the object's top level.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scanned {
    /// The character is part of the current key's value (its [`ObjectScanner::value`]).
    pub in_value: bool,
    /// The current key's value is complete (with this character, or just before it when a
    /// number or literal ended at a delimiter).
    pub value_ended: bool,
    /// The character closed the object.
    pub object_ended: bool,
    /// The text is not a JSON object (or the object already closed).
    pub invalid: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// Before the object's `{`.
    Open,
    /// Where a key (or, on the first one, `}`) comes.
    Key {
        after_comma: bool,
    },
    KeyString {
        escaped: bool,
    },
    Colon,
    /// Where a value starts.
    Value,
    /// Inside a top-level string value.
    StringValue {
        escaped: bool,
    },
    /// Inside a top-level number or literal.
    Scalar,
    /// Inside a nested object or array, `depth` brackets deep.
    Nested {
        depth: u32,
        in_string: bool,
        escaped: bool,
    },
    /// After a value: `,` or `}`.
    Comma,
    Closed,
    Invalid,
}

/// Reads one JSON object's top level, a character at a time.
#[derive(Debug, Clone)]
pub struct ObjectScanner {
    slot: Slot,
    key: String,
    value: String,
}

impl Default for ObjectScanner {
    fn default() -> Self {
        Self::new()
    }
}

impl ObjectScanner {
    pub fn new() -> Self {
        Self {
            slot: Slot::Open,
            key: String::new(),
            value: String::new(),
        }
    }

    /// The current top-level key, decoded, or `None` before the first one.
    pub fn key(&self) -> Option<String> {
        serde_json::from_str(&self.key).ok()
    }

    /// The text of the current key's value as written, so far.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// Reads one more character.
    pub fn push(&mut self, c: char) -> Scanned {
        let mut scanned = Scanned::default();
        self.slot = match self.slot {
            Slot::Open if c.is_whitespace() => Slot::Open,
            Slot::Open if c == '{' => Slot::Key { after_comma: false },
            Slot::Key { .. } | Slot::Colon | Slot::Value | Slot::Comma if is_json_space(c) => {
                self.slot
            }
            Slot::Key { .. } if c == '"' => {
                self.key.clear();
                self.key.push(c);
                Slot::KeyString { escaped: false }
            }
            Slot::Key { after_comma: false } if c == '}' => {
                scanned.object_ended = true;
                Slot::Closed
            }
            Slot::KeyString { escaped } => {
                self.key.push(c);
                match string_char(c, escaped) {
                    StringChar::Invalid => Slot::Invalid,
                    StringChar::End => Slot::Colon,
                    StringChar::Inside { escaped } => Slot::KeyString { escaped },
                }
            }
            Slot::Colon if c == ':' => Slot::Value,
            Slot::Value => self.start_value(c, &mut scanned),
            Slot::StringValue { escaped } => {
                self.take(c, &mut scanned);
                match string_char(c, escaped) {
                    StringChar::Invalid => Slot::Invalid,
                    StringChar::End => {
                        scanned.value_ended = true;
                        Slot::Comma
                    }
                    StringChar::Inside { escaped } => Slot::StringValue { escaped },
                }
            }
            Slot::Scalar if c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-') => {
                self.take(c, &mut scanned);
                Slot::Scalar
            }
            Slot::Scalar => {
                scanned.value_ended = true;
                if serde_json::from_str::<serde_json::Value>(&self.value).is_err() {
                    Slot::Invalid
                } else {
                    self.after_value(c, &mut scanned)
                }
            }
            Slot::Nested {
                depth,
                in_string,
                escaped,
            } => {
                self.take(c, &mut scanned);
                self.nested(c, depth, in_string, escaped, &mut scanned)
            }
            Slot::Comma => self.after_value(c, &mut scanned),
            _ => Slot::Invalid,
        };
        scanned.invalid = self.slot == Slot::Invalid;
        scanned
    }

    fn take(&mut self, c: char, scanned: &mut Scanned) {
        self.value.push(c);
        scanned.in_value = true;
    }

    fn start_value(&mut self, c: char, scanned: &mut Scanned) -> Slot {
        self.value.clear();
        let slot = match c {
            '"' => Slot::StringValue { escaped: false },
            '{' | '[' => Slot::Nested {
                depth: 1,
                in_string: false,
                escaped: false,
            },
            '-' | '0'..='9' | 't' | 'f' | 'n' => Slot::Scalar,
            _ => return Slot::Invalid,
        };
        self.take(c, scanned);
        slot
    }

    fn nested(
        &mut self,
        c: char,
        depth: u32,
        in_string: bool,
        escaped: bool,
        scanned: &mut Scanned,
    ) -> Slot {
        if in_string {
            return match string_char(c, escaped) {
                StringChar::Invalid => Slot::Invalid,
                StringChar::End => Slot::Nested {
                    depth,
                    in_string: false,
                    escaped: false,
                },
                StringChar::Inside { escaped } => Slot::Nested {
                    depth,
                    in_string: true,
                    escaped,
                },
            };
        }
        let depth = match c {
            '"' => {
                return Slot::Nested {
                    depth,
                    in_string: true,
                    escaped: false,
                }
            }
            '{' | '[' => depth + 1,
            '}' | ']' => depth - 1,
            _ => depth,
        };
        if depth == 0 {
            scanned.value_ended = true;
            return Slot::Comma;
        }
        Slot::Nested {
            depth,
            in_string: false,
            escaped: false,
        }
    }

    /// `c` where `,` or `}` may come.
    fn after_value(&mut self, c: char, scanned: &mut Scanned) -> Slot {
        match c {
            ',' => Slot::Key { after_comma: true },
            '}' => {
                scanned.object_ended = true;
                Slot::Closed
            }
            c if is_json_space(c) => Slot::Comma,
            _ => Slot::Invalid,
        }
    }
}

/// JSON's whitespace (narrower than Unicode's).
fn is_json_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

enum StringChar {
    Inside { escaped: bool },
    End,
    Invalid,
}

/// One character inside a string (after its opening quote).
fn string_char(c: char, escaped: bool) -> StringChar {
    match c {
        _ if escaped => StringChar::Inside { escaped: false },
        '\\' => StringChar::Inside { escaped: true },
        '"' => StringChar::End,
        c if u32::from(c) < 0x20 => StringChar::Invalid,
        _ => StringChar::Inside { escaped: false },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each top-level key with its value's text, and whether the object closed, or the byte
    /// offset of the first invalid character.
    fn scan(text: &str) -> Result<(Vec<(String, String)>, bool), usize> {
        let mut scanner = ObjectScanner::new();
        let mut values = Vec::new();
        let mut closed = false;
        for (at, c) in text.char_indices() {
            let scanned = scanner.push(c);
            if scanned.invalid {
                return Err(at);
            }
            if scanned.value_ended {
                values.push((scanner.key().unwrap(), scanner.value().to_owned()));
            }
            closed |= scanned.object_ended;
        }
        Ok((values, closed))
    }

    fn pairs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn top_level_values_come_out_as_written() {
        let text = r#" {"name": "get_weather", "arguments": {"city": "Paris", "days": [1, {"a": "}"}]},
            "n": -1.5e3, "ok": true, "none": null, "k\"ey": "v\\"}"#;
        let (values, closed) = scan(text).unwrap();
        assert!(closed);
        assert_eq!(
            values,
            pairs(&[
                ("name", r#""get_weather""#),
                ("arguments", r#"{"city": "Paris", "days": [1, {"a": "}"}]}"#),
                ("n", "-1.5e3"),
                ("ok", "true"),
                ("none", "null"),
                ("k\"ey", r#""v\\""#),
            ])
        );
    }

    #[test]
    fn an_empty_object_closes_and_an_unclosed_one_does_not() {
        assert_eq!(scan("{ }"), Ok((Vec::new(), true)));
        assert_eq!(
            scan(r#"{"name": "f", "arguments": {"a": 1"#),
            Ok((pairs(&[("name", r#""f""#)]), false))
        );
    }

    #[test]
    fn what_is_not_an_object_is_invalid_where_it_goes_wrong() {
        assert_eq!(scan("[1]"), Err(0));
        assert_eq!(scan("{name: 1}"), Err(1));
        assert_eq!(scan(r#"{"a" 1}"#), Err(5));
        assert_eq!(scan(r#"{"a": 1,}"#), Err(8));
        assert_eq!(scan(r#"{"a": tru}"#), Err(9));
        assert_eq!(scan("{\"a\": \"x\ny\"}"), Err(8));
        assert_eq!(scan(r#"{"a": 1} x"#), Err(8));
    }
}
