//! The grammar a conversation's answer must follow, in llguidance's Lark dialect.
//!
//! - `response_format: json_object`: any JSON object; `json_schema`: JSON valid against the
//!   schema.
//! - `tool_choice: required`: one or more calls to the offered tools in the model's own call
//!   syntax ([`ToolFormat`]); exactly one when `parallel_tool_calls` is false or the syntax holds
//!   only one. A call is `call_open {"name": <a tool's name>, "<arguments_key>": <arguments valid
//!   against that tool's parameters>} call_close`; Hermes calls follow one another on new lines,
//!   and may end with one.
//! - `tool_choice: {"function": ...}`: exactly one call, to that function.
//! - `tool_choice: auto` with tools offered and a JSON `response_format`: either the JSON answer
//!   or calls, the model chooses; with free text the answer is not constrained (calls are
//!   parsed from it).
//! - `required` or a named function with a JSON `response_format`: calls only (the format
//!   shapes a text answer, and there is none).
//! - `tool_choice: none`, or no tools, with free text: no grammar.
//!
//! Every JSON value is written compactly, with `", "` and `": "` as separators (Python's
//! `json.dumps`, which is what chat templates show models): no free whitespace, so a walk of
//! the grammar always closes. Each schema keeps its own `$ref` root, as each becomes its own
//! `%json` rule.

use std::borrow::Cow;

use coder_nats::{Conversation, ResponseFormat, Tool, ToolChoice};
use serde_json::{json, Value};

use crate::backend::BackendError;
use crate::tool_calls::format::ToolFormat;

/// A grammar in Lark text, with the client's schemas it embeds and the request field each came
/// from, so a schema the engine refuses is reported by its field.
#[derive(Debug, Clone, PartialEq)]
pub struct Grammar {
    pub lark: String,
    pub schemas: Vec<FieldSchema>,
}

/// A JSON schema of the request, as embedded in a grammar, and the field it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldSchema {
    /// `response_format`, or `tools[i].function.parameters`.
    pub field: Cow<'static, str>,
    pub schema: Value,
}

impl FieldSchema {
    /// The one-rule grammar of this schema alone: compiling it tells whether the schema is one
    /// the engine can enforce.
    pub fn alone(&self) -> String {
        format!("start: %json {}\n", self.schema)
    }
}

/// The grammar `conversation`'s answer must follow in the `format` call syntax (`None`: the
/// model's template shows no tools), or `None` when the answer is free text.
pub fn for_conversation(
    conversation: &Conversation,
    format: Option<ToolFormat>,
) -> Result<Option<Grammar>, BackendError> {
    let answer = answer_schema(&conversation.response_format);
    let calls = match (&conversation.tool_choice, conversation.offered_tools()) {
        (_, []) | (ToolChoice::None, _) => None,
        (ToolChoice::Auto, _) if answer.is_none() => None,
        (choice, tools) => Some(CallSpec::new(choice, tools, conversation, format)?),
    };
    let mut builder = LarkBuilder::default();
    let start = match (calls, answer) {
        (None, None) => return Ok(None),
        (None, Some(answer)) => builder.json_rule("answer", answer),
        (Some(calls), answer) => {
            let calls_rule = builder.calls(&calls);
            match answer.filter(|_| !calls.required) {
                Some(answer) => format!("{calls_rule} | {}", builder.json_rule("answer", answer)),
                None => calls_rule,
            }
        }
    };
    Ok(Some(builder.finish(&start)))
}

/// The schema of a JSON answer, or `None` for free text.
fn answer_schema(format: &ResponseFormat) -> Option<FieldSchema> {
    let schema = match format {
        ResponseFormat::Text => return None,
        ResponseFormat::JsonObject => json!({"type": "object"}),
        ResponseFormat::JsonSchema { schema, .. } => schema.clone(),
    };
    Some(FieldSchema {
        field: Cow::Borrowed("response_format"),
        schema,
    })
}

/// Which calls an answer may hold.
struct CallSpec<'a> {
    format: ToolFormat,
    /// The tools it may call, with their index in the request's `tools`.
    tools: Vec<(usize, &'a Tool)>,
    /// Several calls in a row, or exactly one.
    several: bool,
    /// Whether calls are the only answer (`required`, a named function).
    required: bool,
}

impl<'a> CallSpec<'a> {
    fn new(
        choice: &ToolChoice,
        tools: &'a [Tool],
        conversation: &Conversation,
        format: Option<ToolFormat>,
    ) -> Result<Self, BackendError> {
        let format = format.ok_or_else(|| BackendError::InvalidField {
            param: Cow::Borrowed("tools"),
            message: "this model's chat template shows no tools to the model: `tools` cannot be \
                      used with it"
                .to_owned(),
        })?;
        let several = conversation.parallel_tool_calls && format.allows_several_calls();
        let indexed = tools.iter().enumerate();
        let (tools, several): (Vec<_>, bool) = match choice {
            ToolChoice::Function(name) => {
                let named: Vec<_> = indexed.filter(|(_, tool)| &tool.name == name).collect();
                if named.is_empty() {
                    return Err(BackendError::InvalidField {
                        param: Cow::Borrowed("tool_choice"),
                        message: format!("`tool_choice` names `{name}`, which is not in `tools`"),
                    });
                }
                (named, false)
            }
            _ => (indexed.collect(), several),
        };
        Ok(Self {
            format,
            tools,
            several,
            required: !matches!(choice, ToolChoice::Auto),
        })
    }
}

/// Collects a grammar's rules and the schemas they embed.
#[derive(Default)]
struct LarkBuilder {
    rules: Vec<String>,
    schemas: Vec<FieldSchema>,
}

impl LarkBuilder {
    /// Adds rule `name` for JSON valid against `schema`; returns its name.
    fn json_rule(&mut self, name: &str, schema: FieldSchema) -> String {
        let compact = compact(schema.schema.clone());
        self.rules.push(format!("{name}: %json {compact}"));
        self.schemas.push(FieldSchema {
            schema: compact,
            ..schema
        });
        name.to_owned()
    }

    /// Adds the rules of `spec`'s calls; returns the name of the rule for all of them.
    fn calls(&mut self, spec: &CallSpec<'_>) -> String {
        let mut alternatives = Vec::with_capacity(spec.tools.len());
        for &(index, tool) in &spec.tools {
            let arguments = self.json_rule(
                &format!("arguments_{index}"),
                FieldSchema {
                    field: Cow::Owned(format!("tools[{index}].function.parameters")),
                    schema: tool.parameters_schema(),
                },
            );
            let name = serde_json::to_string(&tool.name).expect("a string serializes");
            let open = format!(
                "{}{{\"name\": {name}, \"{}\": ",
                spec.format.call_open(),
                spec.format.arguments_key()
            );
            let close = format!("}}{}", spec.format.call_close());
            let rule = format!("call_{index}");
            self.rules.push(format!(
                "{rule}: {} {arguments} {}",
                literal(&open),
                literal(&close)
            ));
            alternatives.push(rule);
        }
        self.rules
            .push(format!("call: {}", alternatives.join(" | ")));
        let several = match spec.several {
            true => " (\"\\n\" call)*",
            false => "",
        };
        // After a closing tag a model writes a newline before its end of turn (Qwen's
        // `</tool_call>\n` is one token): allowed, without committing to another call.
        let trailing = match spec.format.call_close().is_empty() {
            true => "",
            false => " \"\\n\"?",
        };
        self.rules.push(format!("calls: call{several}{trailing}"));
        "calls".to_owned()
    }

    fn finish(mut self, start: &str) -> Grammar {
        self.rules.insert(0, format!("start: {start}"));
        let mut lark = self.rules.join("\n");
        lark.push('\n');
        Grammar {
            lark,
            schemas: self.schemas,
        }
    }
}

/// A Lark string literal for `text` (Lark's literals are JSON strings).
fn literal(text: &str) -> String {
    serde_json::to_string(text).expect("a string serializes")
}

/// `schema` with the compact JSON layout of the module's docs (a client's own `x-guidance`, an
/// llguidance extension, is replaced); `true` becomes `{}`, which llguidance reads the same.
fn compact(schema: Value) -> Value {
    let mut schema = match schema {
        Value::Bool(true) => json!({}),
        other => other,
    };
    if let Value::Object(object) = &mut schema {
        object.insert(
            "x-guidance".to_owned(),
            json!({
                "whitespace_flexible": false,
                "item_separator": ", ",
                "key_separator": ": ",
            }),
        );
    }
    schema
}
