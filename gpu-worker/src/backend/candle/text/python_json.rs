//! The `tojson` filter as Hugging Face `transformers` defines it for chat templates: Python's
//! `json.dumps(x, ensure_ascii=False, indent=indent, sort_keys=False)`, the three settable by the
//! template (`separators`, rarely used, is refused as an unknown argument).
//!
//! minijinja's own `tojson` writes compact JSON and HTML-escapes `<`, `>`, `&` and `'`; a
//! template that shows the model its tools with `tool | tojson` would then show it a text the
//! model never saw in training. Python writes `", "` between items and `": "` after keys (with
//! `indent`: a newline and the indent between items, `": "` after keys), keys in their order,
//! non-ASCII characters as they are.

use minijinja::value::Kwargs;
use minijinja::{Error, ErrorKind, Value};
use serde::Serialize;
use serde_json::ser::{Formatter, PrettyFormatter, Serializer};

/// `value | tojson`, with `indent=N`, `ensure_ascii=true`, `sort_keys=true` as Python takes them.
pub fn tojson(value: &Value, kwargs: Kwargs) -> Result<Value, Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    kwargs.assert_all_used()?;
    let mut json = serde_json::to_value(value).map_err(failed)?;
    if sort_keys == Some(true) {
        sort(&mut json);
    }
    let text = match indent {
        Some(width) => {
            let indent = " ".repeat(width);
            write(&json, PrettyFormatter::with_indent(indent.as_bytes()))
        }
        None => write(&json, PythonSeparators),
    }?;
    let text = match ensure_ascii {
        Some(true) => escape_non_ascii(&text),
        _ => text,
    };
    Ok(Value::from_safe_string(text))
}

fn failed(error: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::new(ErrorKind::InvalidOperation, "tojson failed").with_source(error)
}

fn write(value: &serde_json::Value, formatter: impl Formatter) -> Result<String, Error> {
    let mut out = Vec::new();
    value
        .serialize(&mut Serializer::with_formatter(&mut out, formatter))
        .map_err(failed)?;
    String::from_utf8(out).map_err(failed)
}

/// Every object's keys in order, at every depth.
fn sort(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            map.sort_keys();
            map.values_mut().for_each(sort);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(sort),
        _ => {}
    }
}

/// Non-ASCII characters as `\uXXXX` (UTF-16 surrogate pairs beyond the BMP), as Python's
/// `ensure_ascii` writes them; in JSON text they only occur inside strings.
fn escape_non_ascii(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
            continue;
        }
        for unit in c.encode_utf16(&mut [0; 2]) {
            out.push_str(&format!("\\u{unit:04x}"));
        }
    }
    out
}

/// `json.dumps`'s default separators: `", "` and `": "`.
struct PythonSeparators;

impl Formatter for PythonSeparators {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.begin_array_value(writer, first)
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
    ) -> std::io::Result<()> {
        writer.write_all(b": ")
    }
}

#[cfg(test)]
mod tests {
    use minijinja::Environment;

    fn render(source: &str, value: serde_json::Value) -> String {
        let mut env = Environment::new();
        env.add_filter("tojson", super::tojson);
        env.render_str(source, minijinja::context! { x => value })
            .unwrap()
    }

    #[test]
    fn writes_what_python_json_dumps_writes() {
        // json.dumps({"type": "function", "b": [1, 2.5, None, True], "é": "<a & 'b'>\n"},
        //            ensure_ascii=False)
        let value = serde_json::json!({"type": "function", "b": [1, 2.5, null, true],
            "é": "<a & 'b'>\n"});
        assert_eq!(
            render("{{ x | tojson }}", value.clone()),
            r#"{"type": "function", "b": [1, 2.5, null, true], "é": "<a & 'b'>\n"}"#
        );
        // json.dumps(..., indent=2)
        assert_eq!(
            render(
                "{{ x | tojson(indent=2) }}",
                serde_json::json!({"a": [1], "b": {}})
            ),
            "{\n  \"a\": [\n    1\n  ],\n  \"b\": {}\n}"
        );
    }
}
