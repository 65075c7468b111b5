//! The shape of a request body, checked in one pass over its bytes before any of it is built.
//!
//! A body the gateway accepts by size can still hold hundreds of thousands of small values: 4 MiB
//! of `[{},{},...]` is about a million objects, hundreds of MB once parsed into
//! `serde_json::Value`s. This pass builds nothing (each value is visited and dropped; keys are
//! borrowed from the body where they can be) and refuses with a 400 that names the place:
//! - a top-level field the endpoint does not know, before its value is read;
//! - nesting deeper than [`MAX_DEPTH`];
//! - a list longer than [`MAX_LIST_LEN`];
//! - more than [`MAX_VALUES`] values in all.
//!
//! Only a body within these bounds is parsed into values for the field rules (`fields.rs`) and
//! the endpoint's typed body, so what one body can cost is bounded by them, whatever it holds.

use super::fields::{self, Field};
use crate::error::ApiError;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::cell::{Cell, RefCell};
use std::fmt;

/// The deepest nesting of lists and objects a body may have (a chat request with tool schemas
/// needs about ten).
pub const MAX_DEPTH: usize = 32;
/// The most elements of one list (messages, content parts, stop strings, ...).
pub const MAX_LIST_LEN: usize = 4096;
/// The most values of a whole body: every string, number, list and object counts one.
pub const MAX_VALUES: usize = 65_536;

/// Checks `bytes` against the bounds above, and its top-level fields against `known`.
pub fn check_shape(bytes: &[u8], known: &[&[Field]]) -> Result<(), ApiError> {
    let walk = Walk {
        values_left: Cell::new(MAX_VALUES),
        refusal: RefCell::new(None),
    };
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let result = deserializer
        .deserialize_any(Body { walk: &walk, known })
        .and_then(|()| deserializer.end());
    match (walk.refusal.into_inner(), result) {
        (Some(refusal), _) => Err(refusal),
        (None, Ok(())) => Ok(()),
        (None, Err(error)) if error.is_data() => Err(ApiError::BadRequest {
            message: "the request body must be a JSON object".into(),
            param: None,
        }),
        (None, Err(error)) => Err(ApiError::BadRequest {
            message: format!("request body is not valid JSON: {error}"),
            param: None,
        }),
    }
}

/// What one pass keeps: the values it may still visit, and why it stopped, if it refused.
struct Walk {
    values_left: Cell<usize>,
    refusal: RefCell<Option<ApiError>>,
}

impl Walk {
    /// Stops the pass with `refusal` (the serde error only unwinds it).
    fn refuse<E: de::Error>(&self, refusal: ApiError) -> E {
        self.refusal.replace(Some(refusal));
        E::custom("refused")
    }

    /// Counts one value against [`MAX_VALUES`].
    fn count<E: de::Error>(&self) -> Result<(), E> {
        match self.values_left.get().checked_sub(1) {
            Some(left) => {
                self.values_left.set(left);
                Ok(())
            }
            None => Err(self.refuse(ApiError::BadRequest {
                message: format!("the request body holds more than {MAX_VALUES} JSON values"),
                param: None,
            })),
        }
    }
}

/// Where a value sits, for the names errors give: `messages[3].content`.
#[derive(Clone, Copy)]
enum Place<'a> {
    Field(Option<&'a Place<'a>>, &'a str),
    Element(&'a Place<'a>, usize),
}

impl fmt::Display for Place<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Field(None, name) => write!(f, "{}", fields::bounded(name)),
            Place::Field(Some(parent), name) => write!(f, "{parent}.{}", fields::bounded(name)),
            Place::Element(parent, index) => write!(f, "{parent}[{index}]"),
        }
    }
}

/// The body: an object whose fields must be known to the endpoint.
struct Body<'a> {
    walk: &'a Walk,
    known: &'a [&'a [Field]],
}

impl<'de> Visitor<'de> for Body<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.walk.count()?;
        while let Some(Key(name)) = map.next_key()? {
            let known = self.known.iter().flat_map(|list| list.iter());
            if !known.into_iter().any(|(known, _)| *known == name.as_ref()) {
                return Err(self.walk.refuse(fields::refusal(
                    "",
                    &name,
                    "it is not a field of this API",
                )));
            }
            map.next_value_seed(Value {
                walk: self.walk,
                place: Place::Field(None, name.as_ref()),
                depth: 1,
            })?;
        }
        Ok(())
    }
}

/// A key, borrowed from the body unless it holds escapes.
struct Key<'de>(std::borrow::Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E>(self, name: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(name.into()))
            }
            fn visit_str<E>(self, name: &str) -> Result<Key<'de>, E> {
                Ok(Key(name.to_owned().into()))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// Any value at `place`, `depth` lists and objects down.
struct Value<'a> {
    walk: &'a Walk,
    place: Place<'a>,
    depth: usize,
}

impl<'a> Value<'a> {
    /// Refuses a list or an object that would nest past [`MAX_DEPTH`].
    fn enter<E: de::Error>(&self) -> Result<(), E> {
        self.walk.count()?;
        if self.depth >= MAX_DEPTH {
            let place = self.place.to_string();
            return Err(self.walk.refuse(ApiError::bad_request(
                &place,
                format!("`{place}` nests lists and objects deeper than {MAX_DEPTH} levels"),
            )));
        }
        Ok(())
    }

    fn below(&'a self, place: Place<'a>) -> Value<'a> {
        Value {
            walk: self.walk,
            place,
            depth: self.depth + 1,
        }
    }
}

impl<'de> DeserializeSeed<'de> for Value<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Value<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.walk.count()
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.walk.count()
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.walk.count()
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.walk.count()
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.walk.count()
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.walk.count()
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut list: A) -> Result<(), A::Error> {
        self.enter()?;
        let mut index = 0;
        while list
            .next_element_seed(self.below(Place::Element(&self.place, index)))?
            .is_some()
        {
            index += 1;
            if index > MAX_LIST_LEN {
                let place = self.place.to_string();
                return Err(self.walk.refuse(ApiError::bad_request(
                    &place,
                    format!("`{place}` has more than {MAX_LIST_LEN} elements"),
                )));
            }
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.enter()?;
        while let Some(Key(name)) = map.next_key()? {
            map.next_value_seed(self.below(Place::Field(Some(&self.place), name.as_ref())))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openai::fields::CHAT;

    /// The refused field's name and the message, or `None` if the body passes.
    fn refusal(body: &str) -> Option<(Option<String>, String)> {
        match check_shape(body.as_bytes(), CHAT) {
            Ok(()) => None,
            Err(ApiError::BadRequest { param, message }) => Some((param, message)),
            Err(other) => panic!("{other:?}"),
        }
    }

    fn nested(depth: usize) -> String {
        format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn an_ordinary_chat_body_passes() {
        let body = r#"{"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "hi \u00e9"}]}],
                       "stop": ["a", "b"], "max_tokens": 8, "temperature": 0.5, "stream": true,
                       "stream_options": {"include_usage": true}, "seed": null}"#;
        assert_eq!(refusal(body), None);
    }

    #[test]
    fn an_unknown_field_is_refused_by_name_before_its_value_is_read() {
        // The value is not even JSON: the name is refused before it is reached.
        let (param, message) = refusal(r#"{"model": "m", "temprature": [[[[oops"#).unwrap();
        assert_eq!(param.as_deref(), Some("temprature"));
        assert!(message.contains("not a field of this API"), "{message}");
        let long = format!(r#"{{"{}": 1}}"#, "k".repeat(100_000));
        let (param, _) = refusal(&long).unwrap();
        assert!(param.unwrap().len() < 100, "the echoed name is bounded");
    }

    #[test]
    fn nesting_past_the_limit_is_refused_naming_the_place() {
        let within = format!(
            r#"{{"messages": [{{"content": {}}}]}}"#,
            nested(MAX_DEPTH - 3)
        );
        assert_eq!(refusal(&within), None);
        let past = format!(
            r#"{{"messages": [{{"content": {}}}]}}"#,
            nested(MAX_DEPTH - 2)
        );
        let (param, message) = refusal(&past).unwrap();
        let expected = format!("messages[0].content{}", "[0]".repeat(MAX_DEPTH - 3));
        assert_eq!(param.as_deref(), Some(expected.as_str()), "{message}");
        assert!(message.contains("deeper than 32 levels"), "{message}");
        // Far deeper than serde_json's own recursion limit: still our refusal, not a crash.
        let (_, message) = refusal(&format!(r#"{{"stop": {}}}"#, nested(100_000))).unwrap();
        assert!(message.contains("deeper than"), "{message}");
    }

    #[test]
    fn a_list_past_the_limit_is_refused_naming_it() {
        let list = |n: usize| vec!["{}"; n].join(",");
        let within = format!(r#"{{"messages": [{}]}}"#, list(MAX_LIST_LEN));
        assert_eq!(refusal(&within), None);
        let past = format!(r#"{{"messages": [{}]}}"#, list(MAX_LIST_LEN + 1));
        let (param, message) = refusal(&past).unwrap();
        assert_eq!(param.as_deref(), Some("messages"));
        assert!(message.contains("more than 4096 elements"), "{message}");
    }

    #[test]
    fn too_many_values_in_all_are_refused() {
        // Lists within their own limit, but too many of them.
        let part = format!("[{}]", vec!["1"; 1000].join(","));
        let many = format!(r#"{{"messages": [{}]}}"#, vec![part; 70].join(","));
        let (param, message) = refusal(&many).unwrap();
        assert_eq!(param, None);
        assert!(message.contains("more than 65536 JSON values"), "{message}");
    }

    #[test]
    fn broken_json_is_named_as_such() {
        for body in [r#"{"model": "m""#, r#"{"model": "m"} trailing"#, "{"] {
            let (param, message) = refusal(body).unwrap();
            assert_eq!(param, None, "{body}");
            assert!(message.contains("not valid JSON"), "{body}: {message}");
        }
        let (_, message) = refusal("[1, 2]").unwrap();
        assert!(message.contains("must be a JSON object"), "{message}");
    }
}
