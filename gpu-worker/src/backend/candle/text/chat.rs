//! Chat prompts rendered with the model's own Jinja template.
//!
//! Templates are written for Hugging Face `transformers`, which renders them with Jinja2 in a
//! sandbox with `trim_blocks` and `lstrip_blocks` on, Python string methods available
//! (`.strip()`, `.startswith()`, ...), loop controls, and the helpers `raise_exception` and
//! `strftime_now`, and its own `tojson` (Python's `json.dumps`: `", "` and `": "` between items,
//! keys in their order, nothing HTML-escaped, `indent` honoured). minijinja with
//! `minijinja-contrib`'s Python compatibility and the [`python_json`] filter cover that.

use minijinja::{context, Environment, Error, ErrorKind};

use super::chat_input::ChatInput;
use super::python_json;

/// Used when a model ships no template: plain `role: content` lines.
const FALLBACK_TEMPLATE: &str = "{% for message in messages %}{{ message.role }}: \
    {{ message.content }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}";

/// A compiled chat template and the special-token strings it may refer to.
pub struct ChatTemplate {
    env: Environment<'static>,
    /// The template's source, as compiled.
    source: String,
    bos_token: String,
    eos_token: String,
}

impl ChatTemplate {
    /// Compiles `source`, or the plain fallback when the model has none.
    pub fn new(
        source: Option<String>,
        bos_token: String,
        eos_token: String,
    ) -> anyhow::Result<Self> {
        let source = source.unwrap_or_else(|| {
            tracing::warn!(
                "the model has no chat template; chat prompts use plain `role: content` lines"
            );
            FALLBACK_TEMPLATE.to_owned()
        });
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        minijinja_contrib::add_to_environment(&mut env);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", python_json::tojson);
        env.add_template_owned("chat", source.clone())
            .map_err(|e| anyhow::anyhow!("the model's chat template does not compile: {e:#}"))?;
        Ok(Self {
            env,
            source,
            bos_token,
            eos_token,
        })
    }

    /// Every text the template itself can put into a prompt: its source and the BOS and EOS
    /// strings it is given.
    pub fn own_text(&self) -> [&str; 3] {
        [&self.source, &self.bos_token, &self.eos_token]
    }

    /// The template's source, as compiled (the fallback when the model has none).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The prompt text for `input`, ending where the assistant's answer starts (see
    /// [`super::chat_tokens`] for its token ids).
    pub fn render(&self, input: &ChatInput) -> Result<String, Error> {
        let template = self.env.get_template("chat")?;
        template.render(context! {
            messages => &input.messages,
            tools => &input.tools,
            add_generation_prompt => true,
            bos_token => &self.bos_token,
            eos_token => &self.eos_token,
        })
    }
}

/// Templates call this to reject a conversation (e.g. roles that do not alternate).
fn raise_exception(message: String) -> Result<minijinja::Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

/// Python's `strftime` for the few specifiers templates use for "today's date".
fn strftime_now(format: String) -> String {
    let now = time::OffsetDateTime::now_utc();
    let month = now.month();
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(&format!("{:02}", now.day())),
            Some('m') => out.push_str(&format!("{:02}", u8::from(month))),
            Some('Y') => out.push_str(&now.year().to_string()),
            Some('B') => out.push_str(&month.to_string()),
            Some('b') => out.push_str(&month.to_string()[..3]),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use coder_nats::ChatMessage;

    fn messages() -> ChatInput {
        ChatInput::from_messages(&[
            ChatMessage {
                role: "system".into(),
                content: "  Be brief.  ".into(),
                name: None,
                ..Default::default()
            },
            ChatMessage {
                role: "user".into(),
                content: "hi".into(),
                name: None,
                ..Default::default()
            },
        ])
    }

    #[test]
    fn renders_chatml_with_generation_prompt() {
        let source = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content | trim }}\
            <|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
        let chat = ChatTemplate::new(Some(source.into()), String::new(), String::new()).unwrap();
        assert_eq!(
            chat.render(&messages()).unwrap(),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n\
             <|im_start|>assistant\n"
        );
    }

    #[test]
    fn python_string_methods_and_bos_work() {
        let source =
            "{{ bos_token }}{% for m in messages %}{% if m.content.strip().startswith('Be') %}\
            [{{ m.content.strip() }}]{% endif %}{% endfor %}";
        let chat = ChatTemplate::new(Some(source.into()), "<s>".into(), "</s>".into()).unwrap();
        assert_eq!(chat.render(&messages()).unwrap(), "<s>[Be brief.]");
    }

    #[test]
    fn raise_exception_is_an_error_with_its_message() {
        let source = "{{ raise_exception('roles must alternate') }}";
        let chat = ChatTemplate::new(Some(source.into()), String::new(), String::new()).unwrap();
        let err = chat.render(&messages()).unwrap_err();
        assert!(
            format!("{err:#}").contains("roles must alternate"),
            "{err:#}"
        );
    }

    #[test]
    fn without_a_template_falls_back_to_plain_lines() {
        let chat = ChatTemplate::new(None, String::new(), String::new()).unwrap();
        assert_eq!(
            chat.render(&messages()).unwrap(),
            "system:   Be brief.  \nuser: hi\nassistant:"
        );
    }
}
