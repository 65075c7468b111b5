//! The parsers on recorded and hand-broken model outputs, each fed whole, a character at a
//! time, and cut at every one and every two split points: every feeding must give the same
//! content and calls, in OpenAI's delta shape.

use coder_nats::structure::tool_call_id;
use coder_nats::ToolCallDelta;
use uuid::Uuid;

use super::call::CallContext;
use super::format::ToolFormat;
use super::parser::ToolCallParser;

/// A choice's output assembled from its deltas: content, and each call's id, name, arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Assembled {
    content: String,
    calls: Vec<(String, String, String)>,
}

fn context() -> CallContext {
    CallContext {
        tools: vec!["get_weather".into(), "get_time".into()],
        request: Uuid::from_u128(42),
        choice: 1,
    }
}

fn id(index: u32) -> String {
    tool_call_id(Uuid::from_u128(42), 1, index)
}

/// Feeds `pieces` and assembles the result, checking the delta shape on the way: call `i`'s
/// first delta comes before any other of it and names it; later ones carry only arguments;
/// indexes count up from 0.
fn assemble(format: ToolFormat, several: bool, pieces: &[&str]) -> Assembled {
    let mut parser = ToolCallParser::new(format, context(), several);
    let mut assembled = Assembled {
        content: String::new(),
        calls: Vec::new(),
    };
    let mut outputs: Vec<_> = pieces.iter().map(|piece| parser.push(piece)).collect();
    outputs.push(parser.finish());
    for out in outputs {
        assembled.content.push_str(&out.content);
        for delta in out.tool_calls {
            add_delta(&mut assembled.calls, delta);
        }
    }
    assert_eq!(parser.calls() as usize, assembled.calls.len());
    assembled
}

fn add_delta(calls: &mut Vec<(String, String, String)>, delta: ToolCallDelta) {
    let index = delta.index as usize;
    match (delta.id.clone(), delta.name.clone()) {
        (Some(id), Some(name)) => {
            assert_eq!(index, calls.len(), "a new call takes the next index");
            calls.push((id, name, delta.arguments));
        }
        (None, None) => {
            assert!(index < calls.len(), "arguments of a call not announced");
            calls[index].2.push_str(&delta.arguments);
        }
        _ => panic!("id and name come together: {delta:?}"),
    }
}

/// Every char boundary of `text`.
fn boundaries(text: &str) -> Vec<usize> {
    text.char_indices().map(|(at, _)| at).skip(1).collect()
}

/// Checks that every feeding of `text` assembles to `expected`.
fn check(format: ToolFormat, several: bool, text: &str, expected: &Assembled) {
    let whole = assemble(format, several, &[text]);
    assert_eq!(&whole, expected, "fed whole: {text:?}");
    let chars: Vec<String> = text.chars().map(String::from).collect();
    let chars: Vec<&str> = chars.iter().map(String::as_str).collect();
    assert_eq!(&assemble(format, several, &chars), expected, "by character");
    let cuts = boundaries(text);
    for &a in &cuts {
        let got = assemble(format, several, &[&text[..a], &text[a..]]);
        assert_eq!(&got, expected, "cut at {a}: {text:?}");
        for &b in cuts.iter().filter(|&&b| b > a) {
            let got = assemble(format, several, &[&text[..a], &text[a..b], &text[b..]]);
            assert_eq!(&got, expected, "cut at {a} and {b}: {text:?}");
        }
    }
}

fn call(index: u32, name: &str, arguments: &str) -> (String, String, String) {
    (id(index), name.into(), arguments.into())
}

fn expect(content: &str, calls: Vec<(String, String, String)>) -> Assembled {
    Assembled {
        content: content.into(),
        calls,
    }
}

fn hermes(text: &str, expected: Assembled) {
    check(ToolFormat::Hermes, true, text, &expected);
}

fn llama(text: &str, expected: Assembled) {
    check(ToolFormat::Llama3Json, true, text, &expected);
}

/// A call to `get_weather` for "What is the weather in Paris?" in the form Qwen's template asks
/// for (and the Hermes grammar of constrained decoding writes).
const QWEN_PARIS: &str = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \
    \"Paris\"}}\n</tool_call>";

#[test]
fn a_tagged_qwen_call_is_one_call_and_no_content() {
    hermes(
        QWEN_PARIS,
        expect("", vec![call(0, "get_weather", r#"{"city": "Paris"}"#)]),
    );
}

/// Qwen2.5-Coder-1.5B-Instruct Q4_K_M's answer (greedy, CPU) to that question: the call in a
/// Markdown fence, without the tags (see [`super::hermes`]).
const QWEN_PARIS_FENCED: &str =
    "```json\n{\n  \"name\": \"get_weather\",\n  \"arguments\": {\n    \
    \"city\": \"Paris\"\n  }\n}\n```";

#[test]
fn a_recorded_fenced_call_at_the_start_is_a_call() {
    hermes(
        QWEN_PARIS_FENCED,
        expect(
            "",
            vec![call(0, "get_weather", "{\n    \"city\": \"Paris\"\n  }")],
        ),
    );
    let bare = "\n{\"name\": \"get_time\", \"arguments\": {}} Done.";
    hermes(bare, expect("Done.", vec![call(0, "get_time", "{}")]));
}

/// The same model's greedy answer once the history holds the call and its result: the call
/// again, with the doubled braces of the template's example. Not a JSON object: content.
const QWEN_AFTER_RESULT: &str =
    "{{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}";

#[test]
fn the_recorded_doubled_brace_call_is_content() {
    hermes(QWEN_AFTER_RESULT, expect(QWEN_AFTER_RESULT, vec![]));
}

#[test]
fn objects_and_fences_that_are_not_calls_or_not_at_the_start_are_content() {
    for text in [
        "{\"answer\": 42}",
        "```json\n{\"name\": \"rm_rf\", \"arguments\": {}}\n```",
        "```python\nprint(1)\n```",
        "Here: ```json\n{\"name\": \"get_time\", \"arguments\": {}}\n```",
        "```json\n[1]```",
    ] {
        hermes(text, expect(text, vec![]));
    }
}

#[test]
fn text_before_calls_is_content_and_the_newlines_between_them_are_dropped() {
    let text = "Let me check both.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": \
        {\"city\": \"Zürich\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_time\", \
        \"arguments\": {\"zone\": \"Europe/Paris\", \"fmt\": [\"%H\", \"}\"]}}\n</tool_call>\n";
    hermes(
        text,
        expect(
            "Let me check both.\n",
            vec![
                call(0, "get_weather", r#"{"city": "Zürich"}"#),
                call(
                    1,
                    "get_time",
                    r#"{"zone": "Europe/Paris", "fmt": ["%H", "}"]}"#,
                ),
            ],
        ),
    );
}

#[test]
fn arguments_keep_the_whitespace_the_model_wrote() {
    let text = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\n  \"city\": \
        \"Paris\\n\\\"x\\\"\"\n}}\n</tool_call>";
    let arguments = "{\n  \"city\": \"Paris\\n\\\"x\\\"\"\n}";
    hermes(text, expect("", vec![call(0, "get_weather", arguments)]));
    let parsed: serde_json::Value = serde_json::from_str(arguments).unwrap();
    assert_eq!(parsed["city"], "Paris\n\"x\"");
}

#[test]
fn arguments_before_the_name_are_held_until_the_name_is_known() {
    let text = "<tool_call>{\"arguments\": {\"city\": \"Paris\"}, \"name\": \"get_weather\"}\
        </tool_call>";
    hermes(
        text,
        expect("", vec![call(0, "get_weather", r#"{"city": "Paris"}"#)]),
    );
}

#[test]
fn a_call_without_arguments_gets_an_empty_object() {
    let text = "<tool_call>\n{\"name\": \"get_time\"}\n</tool_call>";
    hermes(text, expect("", vec![call(0, "get_time", "{}")]));
}

#[test]
fn plain_text_with_angle_brackets_is_content() {
    let text = "Use a < b, <tool> and <tool_cal tags; x <tool_call";
    hermes(text, expect(text, vec![]));
}

#[test]
fn a_call_to_a_tool_not_offered_is_content() {
    let text = "<tool_call>\n{\"name\": \"rm_rf\", \"arguments\": {}}\n</tool_call>";
    hermes(text, expect(text, vec![]));
}

#[test]
fn a_call_that_is_not_json_is_content_and_a_later_one_still_counts() {
    let text = "<tool_call>\nget_weather(city='Paris')\n</tool_call>\n<tool_call>\n{\"name\": \
        \"get_time\", \"arguments\": {}}\n</tool_call>";
    hermes(
        text,
        expect(
            "<tool_call>\nget_weather(city='Paris')\n</tool_call>\n",
            vec![call(0, "get_time", "{}")],
        ),
    );
}

#[test]
fn a_call_cut_before_its_name_is_complete_is_content() {
    let text = "Sure.<tool_call>\n{\"name\": \"get_wea";
    hermes(text, expect(text, vec![]));
}

#[test]
fn a_call_cut_in_its_arguments_stays_cut() {
    let text = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Par";
    hermes(
        text,
        expect("", vec![call(0, "get_weather", r#"{"city": "Par"#)]),
    );
}

#[test]
fn a_complete_object_without_its_closer_is_a_call() {
    let text = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {}}\n</tool_";
    hermes(text, expect("", vec![call(0, "get_weather", "{}")]));
}

#[test]
fn arguments_that_break_after_streaming_end_the_call_and_the_rest_is_content() {
    // Not JSON inside the arguments: the scanner follows the brackets, the check at their end
    // fails; the call ends with what streamed, the rest is content.
    let text = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": Paris}}\n\
        </tool_call>";
    hermes(
        text,
        expect(
            "}\n</tool_call>",
            vec![call(0, "get_weather", r#"{"city": Paris}"#)],
        ),
    );
    // Arguments that are not an object break the call before anything about them streamed.
    let text = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": \"Paris\"}</tool_call>";
    hermes(
        text,
        expect("\"Paris\"}</tool_call>", vec![call(0, "get_weather", "")]),
    );
}

#[test]
fn text_after_a_call_is_content_and_a_wrong_closer_too() {
    let text = "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_cell> Done.";
    hermes(
        text,
        expect("</tool_cell> Done.", vec![call(0, "get_time", "{}")]),
    );
}

#[test]
fn without_parallel_calls_a_second_call_is_content() {
    let second = "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>";
    let text = format!("{QWEN_PARIS}\n{second}");
    check(
        ToolFormat::Hermes,
        false,
        &text,
        &expect(second, vec![call(0, "get_weather", r#"{"city": "Paris"}"#)]),
    );
}

#[test]
fn a_llama_call_after_the_python_tag_or_bare() {
    let arguments = r#"{"city": "Paris"}"#;
    let bare = format!(" {{\"name\": \"get_weather\", \"parameters\": {arguments}}}\n");
    llama(&bare, expect("", vec![call(0, "get_weather", arguments)]));
    let tagged = format!("<|python_tag|>{}", bare.trim());
    llama(&tagged, expect("", vec![call(0, "get_weather", arguments)]));
}

#[test]
fn a_llama_answer_that_is_not_a_call_is_content() {
    for text in [
        "The weather in Paris is mild.",
        "  {\"foo\": 1}",
        "{\"name\": \"rm_rf\", \"parameters\": {}}",
        "<|python_tag|>print(1)",
        "<|python_ta",
        " ",
        "",
    ] {
        llama(text, expect(text, vec![]));
    }
}

#[test]
fn either_arguments_key_is_read_but_only_once() {
    let text =
        "<tool_call>{\"name\": \"get_time\", \"parameters\": {\"zone\": \"UTC\"}}</tool_call>";
    hermes(
        text,
        expect("", vec![call(0, "get_time", r#"{"zone": "UTC"}"#)]),
    );
    let text = "{\"name\": \"get_time\", \"arguments\": {}}";
    llama(text, expect("", vec![call(0, "get_time", "{}")]));
    let twice = "{\"name\": \"get_time\", \"arguments\": {}, \"parameters\": {}}";
    // The second breaks the announced call at its `{`: the rest is content from there.
    llama(twice, expect("{}}", vec![call(0, "get_time", "{}")]));
}

#[test]
fn text_after_a_llama_call_is_content() {
    let text = "{\"name\": \"get_time\", \"parameters\": {}} and more";
    llama(text, expect("and more", vec![call(0, "get_time", "{}")]));
}

#[test]
fn the_first_delta_names_the_call_as_soon_as_its_name_is_complete() {
    let mut parser = ToolCallParser::new(ToolFormat::Hermes, context(), true);
    let out = parser.push("<tool_call>\n{\"name\": \"get_weather\"");
    assert_eq!(
        out.tool_calls,
        [ToolCallDelta {
            index: 0,
            id: Some(id(0)),
            name: Some("get_weather".into()),
            arguments: String::new(),
        }]
    );
    let out = parser.push(", \"arguments\": {\"ci");
    assert_eq!(out.tool_calls[0].arguments, "{\"ci");
    assert_eq!(out.tool_calls[0].id, None);
    assert!(out.content.is_empty());
}

/// Outputs stitched from call-syntax fragments by a fixed pseudo-random sequence: whatever the
/// text, no panic, and the same result whole, by character and cut in two anywhere.
#[test]
fn stitched_fragments_parse_the_same_however_they_are_fed() {
    const FRAGMENTS: [&str; 24] = [
        "<tool_call>",
        "</tool_call>",
        "<tool_",
        "{",
        "}",
        "[",
        "]",
        "\"name\"",
        "\"arguments\"",
        "\"parameters\"",
        ": ",
        ", ",
        "\"get_weather\"",
        "\"get_time\"",
        "\"x\\\"",
        "1.5",
        "\n",
        " ",
        "<|python_tag|>",
        "é",
        "\\",
        "tru",
        "```json\n",
        "```",
    ];
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..300 {
        let mut text = String::new();
        for _ in 0..24 {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            text.push_str(FRAGMENTS[(seed >> 33) as usize % FRAGMENTS.len()]);
        }
        for format in [ToolFormat::Hermes, ToolFormat::Llama3Json] {
            let whole = assemble(format, true, &[&text]);
            let chars: Vec<String> = text.chars().map(String::from).collect();
            let chars: Vec<&str> = chars.iter().map(String::as_str).collect();
            assert_eq!(assemble(format, true, &chars), whole, "{text:?}");
            for at in boundaries(&text) {
                let cut = assemble(format, true, &[&text[..at], &text[at..]]);
                assert_eq!(cut, whole, "cut at {at}: {text:?}");
            }
        }
    }
}

/// A well-formed call always comes back as one, its arguments valid JSON, among stitched text.
#[test]
fn well_formed_calls_among_text_are_found_with_valid_arguments() {
    let calls = [
        (
            "get_weather",
            r#"{"city": "Paris", "units": ["c", {"deep": [1, 2.5e1, null]}]}"#,
        ),
        ("get_time", "{ }"),
    ];
    for (name, arguments) in calls {
        let text = format!(
            "Checking <b>.\n<tool_call>\n{{\"name\": \"{name}\", \"arguments\": {arguments}}}\n\
             </tool_call>"
        );
        let got = assemble(ToolFormat::Hermes, true, &[&text]);
        assert_eq!(got.content, "Checking <b>.\n");
        assert_eq!(got.calls, [call(0, name, arguments)]);
        serde_json::from_str::<serde_json::Value>(&got.calls[0].2).unwrap();
    }
}
