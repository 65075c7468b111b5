//! One tool call's JSON object read as the model writes it, whatever syntax wraps it.
//!
//! The call is announced (its first delta: id and name) once its name is complete and is one of
//! the offered tools; from then on the arguments object streams as written, a character at a
//! time, whitespace included, so the concatenated pieces are exactly the model's text for it
//! (valid JSON when the call is well-formed). Arguments written before the name are held until
//! the name is known. A call is broken when its text stops being a JSON object of that shape:
//! not an object, a name that is not a string or not offered, arguments that are not an
//! object, a key twice; the caller decides what its text becomes.
//!
//! The arguments are read under either key, `arguments` (Hermes) or `parameters` (Llama 3), as
//! vLLM's parsers accept both: small models mix them up.

use coder_nats::structure::tool_call_id;
use uuid::Uuid;

use super::json_scan::ObjectScanner;
use super::parsed::Parsed;

/// What every call of one choice's output is checked against and named by.
#[derive(Debug, Clone)]
pub struct CallContext {
    /// The offered tools' names.
    pub tools: Vec<String>,
    /// The request and choice, for [`tool_call_id`].
    pub request: Uuid,
    pub choice: u32,
}

/// Where a call stands after a character.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallState {
    Reading,
    /// The object closed with a known name and object arguments.
    Complete,
    /// The text is not a call (see the module's doc). `streamed` when the offending character
    /// (the one closing arguments that are not a JSON object) went out as an argument piece.
    Broken {
        streamed: bool,
    },
}

/// One call being read.
#[derive(Debug)]
pub struct CallReader {
    index: u32,
    scanner: ObjectScanner,
    name: Option<String>,
    /// Arguments text read before the name was known.
    held_arguments: String,
    has_arguments: bool,
}

impl CallReader {
    /// A reader for the choice's call `index`.
    pub fn new(index: u32) -> Self {
        Self {
            index,
            scanner: ObjectScanner::new(),
            name: None,
            held_arguments: String::new(),
            has_arguments: false,
        }
    }

    /// Whether the call's first delta went out (its index is then taken).
    pub fn announced(&self) -> bool {
        self.name.is_some()
    }

    /// Reads one character, adding what it makes known to `out`.
    pub fn push(&mut self, c: char, context: &CallContext, out: &mut Parsed) -> CallState {
        let scanned = self.scanner.push(c);
        if scanned.invalid {
            return CallState::Broken { streamed: false };
        }
        let key = self.scanner.key();
        let in_arguments = matches!(key.as_deref(), Some("arguments" | "parameters"));
        if scanned.in_value && in_arguments {
            if self.scanner.value().len() == c.len_utf8() && (c != '{' || self.has_arguments) {
                return CallState::Broken { streamed: false };
            }
            self.has_arguments = true;
            match self.announced() {
                true => out.arguments(self.index, c.encode_utf8(&mut [0; 4])),
                false => self.held_arguments.push(c),
            }
        }
        if scanned.value_ended {
            let ok = match key.as_deref() {
                Some("name") => self.name_ended(context, out),
                _ if in_arguments => self.arguments_ended(),
                _ => true,
            };
            if !ok {
                let streamed = scanned.in_value && in_arguments && self.announced();
                return CallState::Broken { streamed };
            }
        }
        if scanned.object_ended {
            if !self.announced() {
                return CallState::Broken { streamed: false };
            }
            if !self.has_arguments {
                out.arguments(self.index, "{}");
            }
            return CallState::Complete;
        }
        CallState::Reading
    }

    /// Checks the name and announces the call; false when it is not an offered tool's.
    fn name_ended(&mut self, context: &CallContext, out: &mut Parsed) -> bool {
        let name = match serde_json::from_str::<String>(self.scanner.value()) {
            Ok(name) if self.name.is_none() && context.tools.contains(&name) => name,
            _ => return false,
        };
        let id = tool_call_id(context.request, context.choice, self.index);
        out.start_call(self.index, id, name.clone());
        if !self.held_arguments.is_empty() {
            out.arguments(self.index, &std::mem::take(&mut self.held_arguments));
        }
        self.name = Some(name);
        true
    }

    /// Whether the arguments are a well-formed JSON object.
    fn arguments_ended(&self) -> bool {
        serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(self.scanner.value())
            .is_ok()
    }
}
