//! Chat's `response_format`: free text, any JSON object, or JSON that follows a schema.
//!
//! The gateway checks the field's shape (OpenAI's); the worker compiles the schema into the
//! grammar that constrains every token, and refuses, naming `response_format`, a schema feature
//! its grammar engine cannot enforce.

use super::fields::bounded;
use super::tools::optional_bool;
use crate::error::ApiError;
use coder_nats::ResponseFormat;
use serde_json::Value;

/// The longest schema name (OpenAI's limit), `[A-Za-z0-9_-]` only.
const MAX_SCHEMA_NAME_BYTES: usize = 64;

/// The request's `response_format`, checked. Absent: free text.
pub fn parse_response_format(value: Option<&Value>) -> Result<ResponseFormat, ApiError> {
    const FIELD: &str = "response_format";
    let format = match value {
        None | Some(Value::Null) => return Ok(ResponseFormat::Text),
        Some(Value::Object(format)) => format,
        Some(_) => {
            return Err(ApiError::bad_request(
                FIELD,
                "`response_format` must be an object with a `type`",
            ))
        }
    };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(ResponseFormat::Text),
        Some("json_object") => Ok(ResponseFormat::JsonObject),
        Some("json_schema") => json_schema(format.get("json_schema")),
        Some(other) => Err(ApiError::bad_request(
            "response_format.type",
            format!(
                "`response_format.type` must be `text`, `json_object` or `json_schema`, got `{}`",
                bounded(other)
            ),
        )),
        None => Err(ApiError::bad_request(
            "response_format.type",
            "`response_format.type` must be a string",
        )),
    }
}

fn json_schema(value: Option<&Value>) -> Result<ResponseFormat, ApiError> {
    const AT: &str = "response_format.json_schema";
    let Some(Value::Object(spec)) = value else {
        return Err(ApiError::bad_request(
            AT,
            "`response_format.json_schema` must be an object with a `name` and a `schema`",
        ));
    };
    let name = match spec.get("name") {
        Some(Value::String(name))
            if (1..=MAX_SCHEMA_NAME_BYTES).contains(&name.len())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') =>
        {
            name.clone()
        }
        _ => {
            return Err(ApiError::bad_request(
                "response_format.json_schema.name",
                format!(
                    "`response_format.json_schema.name` must be 1 to {MAX_SCHEMA_NAME_BYTES} of \
                     a-z, A-Z, 0-9, `_` and `-`"
                ),
            ))
        }
    };
    let schema = match spec.get("schema") {
        Some(schema @ Value::Object(_)) => schema.clone(),
        _ => {
            return Err(ApiError::bad_request(
                "response_format.json_schema.schema",
                "`response_format.json_schema.schema` must be a JSON Schema object",
            ))
        }
    };
    if let Some(description) = spec.get("description") {
        if !description.is_string() && !description.is_null() {
            return Err(ApiError::bad_request(
                "response_format.json_schema.description",
                "`response_format.json_schema.description` must be a string",
            ));
        }
    }
    let strict = optional_bool(spec.get("strict"), "response_format.json_schema.strict")?;
    Ok(ResponseFormat::JsonSchema {
        name,
        schema,
        strict: strict.unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn param(value: Value) -> String {
        match parse_response_format(Some(&value)).unwrap_err() {
            ApiError::BadRequest { param, .. } => param.unwrap_or_default(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_three_formats_are_read() {
        assert_eq!(parse_response_format(None).unwrap(), ResponseFormat::Text);
        let text = json!({"type": "text"});
        assert_eq!(
            parse_response_format(Some(&text)).unwrap(),
            ResponseFormat::Text
        );
        let object = json!({"type": "json_object"});
        assert_eq!(
            parse_response_format(Some(&object)).unwrap(),
            ResponseFormat::JsonObject
        );
        let schema = json!({"type": "json_schema", "json_schema": {"name": "point",
            "schema": {"type": "object"}, "strict": true}});
        assert_eq!(
            parse_response_format(Some(&schema)).unwrap(),
            ResponseFormat::JsonSchema {
                name: "point".into(),
                schema: json!({"type": "object"}),
                strict: true,
            }
        );
    }

    #[test]
    fn each_bad_format_names_its_place() {
        assert_eq!(param(json!("json")), "response_format");
        assert_eq!(param(json!({"type": "yaml"})), "response_format.type");
        assert_eq!(param(json!({})), "response_format.type");
        assert_eq!(
            param(json!({"type": "json_schema"})),
            "response_format.json_schema"
        );
        assert_eq!(
            param(json!({"type": "json_schema", "json_schema": {"schema": {}}})),
            "response_format.json_schema.name"
        );
        assert_eq!(
            param(json!({"type": "json_schema", "json_schema": {"name": "p", "schema": true}})),
            "response_format.json_schema.schema"
        );
        assert_eq!(
            param(json!({"type": "json_schema",
                         "json_schema": {"name": "p", "schema": {}, "strict": "yes"}})),
            "response_format.json_schema.strict"
        );
    }
}
