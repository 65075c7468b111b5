"""Drives the gateway with the official `openai` Python client: completions and chat, both modes.

Usage: openai_client.py BASE_URL MODEL   (exit status 0 when every check passes)
"""
import json
import sys
import uuid

import jsonschema
from openai import BadRequestError, OpenAI

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather of a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
CLOCK = {"type": "function", "function": {"name": "now", "parameters": {"type": "object"}}}
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


def check_call(call, tools):
    """A call names one of `tools` and its arguments validate against that tool's schema."""
    by_name = {tool["function"]["name"]: tool["function"] for tool in tools}
    assert call.type == "function" and call.id, call
    assert call.function.name in by_name, call
    arguments = json.loads(call.function.arguments)
    jsonschema.validate(arguments, by_name[call.function.name].get("parameters", {}))


def streamed_calls(stream):
    """The calls and finish reason of a streamed chat answer, assembled as clients assemble them."""
    calls, finish = {}, None
    for chunk in stream:
        for choice in chunk.choices:
            for piece in choice.delta.tool_calls or []:
                call = calls.setdefault(piece.index, {"id": None, "name": None, "arguments": ""})
                call["id"] = call["id"] or piece.id
                call["name"] = call["name"] or piece.function.name
                call["arguments"] += piece.function.arguments or ""
            finish = choice.finish_reason or finish
    return [calls[index] for index in sorted(calls)], finish


def check_tools(client, model):
    """A round trip (tools, a call, its result, an answer), whole and streamed; `required` and a
    named function always yield a call; JSON answers parse and follow their schema."""
    question = [{"role": "user", "content": "What is the weather in Paris, in celsius?"}]
    tools = [WEATHER, CLOCK]
    for choice in ["required", {"type": "function", "function": {"name": "get_weather"}}]:
        answer = client.chat.completions.create(
            model=model, messages=question, tools=tools, tool_choice=choice,
            max_tokens=64, seed=3, temperature=0,
        )
        message = answer.choices[0].message
        assert answer.choices[0].finish_reason == "tool_calls", answer
        assert message.tool_calls, answer
        for call in message.tool_calls:
            check_call(call, tools)
        if isinstance(choice, dict):
            assert {call.function.name for call in message.tool_calls} == {"get_weather"}, answer

    # The call goes back with its result; the answer is text.
    call = message.tool_calls[0]
    history = question + [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": '{"celsius": 18, "sky": "clear"}'},
    ]
    final = client.chat.completions.create(
        model=model, messages=history, tools=tools, tool_choice="none", max_tokens=16, seed=3,
    )
    assert final.choices[0].message.content, final
    assert not final.choices[0].message.tool_calls, final
    stream = client.chat.completions.create(
        model=model, messages=history, tools=tools, tool_choice="none", max_tokens=16, seed=3,
        stream=True,
    )
    chunks = [c for c in stream if c.choices]
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == final.choices[0].message.content, (text, final)
    assert not any(c.choices[0].delta.tool_calls for c in chunks), chunks

    # Streamed: index, id and name first, then argument pieces.
    stream = client.chat.completions.create(
        model=model, messages=question, tools=tools, tool_choice="required",
        max_tokens=64, seed=3, temperature=0, stream=True,
    )
    calls, finish = streamed_calls(stream)
    assert finish == "tool_calls" and calls, (finish, calls)
    # The same seeded request as the whole `required` one above: the same calls (ids are the
    # request's own).
    required = client.chat.completions.create(
        model=model, messages=question, tools=tools, tool_choice="required",
        max_tokens=64, seed=3, temperature=0,
    )
    whole = [(c.function.name, c.function.arguments) for c in required.choices[0].message.tool_calls]
    assert [(c["name"], c["arguments"]) for c in calls] == whole, (calls, whole)
    assert all(c["id"] for c in calls), calls

    person = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Invent a person. Answer in JSON."}],
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}},
        max_tokens=64, seed=3, temperature=0,
    )
    assert person.choices[0].finish_reason == "stop", person
    jsonschema.validate(json.loads(person.choices[0].message.content), PERSON)
    anything = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "List three colours as JSON."}],
        response_format={"type": "json_object"}, max_tokens=64, seed=3, temperature=0,
    )
    assert isinstance(json.loads(anything.choices[0].message.content), dict), anything


def main() -> None:
    base_url, model = sys.argv[1], sys.argv[2]
    client = OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=30)
    checks = 0

    completion = client.completions.create(model=model, prompt="def add(a, b):", max_tokens=6)
    assert completion.choices[0].text, completion
    assert completion.usage.completion_tokens == 6, completion.usage
    checks += 1

    pieces = list(client.completions.create(model=model, prompt="x", max_tokens=5, stream=True))
    assert "".join(p.choices[0].text for p in pieces if p.choices), pieces
    assert pieces[-1].choices[0].finish_reason == "length", pieces[-1]
    checks += 1

    chat = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "write a loop"}], max_tokens=4
    )
    assert chat.choices[0].message.role == "assistant", chat
    assert chat.choices[0].message.content, chat
    checks += 1

    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=4,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text, chunks
    assert chunks[-1].usage.completion_tokens == 4, chunks[-1]
    checks += 1

    chat = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=4,
        frequency_penalty=0.5,
        presence_penalty=-0.5,
        user="ann",
    )
    assert chat.choices[0].message.content, chat
    checks += 1

    middle = client.completions.create(
        model=model,
        prompt="def is_even(n):\n    return n % 2 == 0\n\n\ndef is_odd(n):\n    ",
        suffix="\n\n\nprint(is_odd(3))\n",
        max_tokens=24,
        temperature=0,
    )
    assert middle.choices[0].text.strip(), middle
    assert middle.choices[0].finish_reason == "stop", middle
    checks += 1

    chat = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "write a loop"}],
        max_tokens=4,
        temperature=0,
        logprobs=True,
        top_logprobs=3,
    )
    content = chat.choices[0].logprobs.content
    assert content, chat
    for entry in content:
        assert entry.logprob <= 0 and len(entry.top_logprobs) == 3, entry
        ranked = [alternative.logprob for alternative in entry.top_logprobs]
        assert ranked == sorted(ranked, reverse=True), entry
        assert entry.top_logprobs[0].token == entry.token, entry
    completion = client.completions.create(
        model=model, prompt="def add(a, b):", max_tokens=4, temperature=0, logprobs=2
    )
    logprobs = completion.choices[0].logprobs
    assert len(logprobs.tokens) == len(logprobs.token_logprobs) == len(logprobs.text_offset), logprobs
    assert all(token in top for token, top in zip(logprobs.tokens, logprobs.top_logprobs)), logprobs
    checks += 1

    chat = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=3, n=3, seed=1
    )
    assert sorted(choice.index for choice in chat.choices) == [0, 1, 2], chat
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=3,
        n=2,
        stream=True,
    )
    indexes = {choice.index for chunk in stream for choice in chunk.choices}
    assert indexes == {0, 1}, indexes
    checks += 1

    check_tools(client, model)
    checks += 1

    tool = CLOCK
    refusals = [
        ("tool_choice", {"tool_choice": "required"}),
        ("tools[0].function.name", {"tools": [{**tool, "function": {"name": "a b"}}]}),
        ("response_format.type", {"response_format": {"type": "yaml"}}),
        ("frequency_penalty", {"frequency_penalty": 2.5}),
        ("n", {"n": 9}),
        ("top_logprobs", {"logprobs": True, "top_logprobs": 21}),
    ]
    for field, extra in refusals:
        try:
            client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=4, **extra
            )
        except BadRequestError as error:
            assert error.param == field, (field, error)
        else:
            raise AssertionError(f"{field} was accepted")
    checks += 1

    # The same long conversation twice: the second finds its prefix in the worker's cache and
    # says so in usage.prompt_tokens_details.cached_tokens, whole and streamed; the first
    # (a prompt no one sent before) reports 0.
    system = f"Session {uuid.uuid4()}. You review Python code for bugs and explain each fix. " * 6
    messages = [{"role": "system", "content": system}, {"role": "user", "content": "def f(): pass"}]
    first = client.chat.completions.create(model=model, messages=messages, max_tokens=2)
    assert first.usage.prompt_tokens_details.cached_tokens == 0, first.usage
    again = client.chat.completions.create(model=model, messages=messages, max_tokens=2)
    cached = again.usage.prompt_tokens_details.cached_tokens
    assert 0 < cached < again.usage.prompt_tokens, again.usage
    stream = client.chat.completions.create(
        model=model,
        messages=messages,
        max_tokens=2,
        stream=True,
        stream_options={"include_usage": True},
    )
    usage = list(stream)[-1].usage
    assert usage.prompt_tokens_details.cached_tokens > 0, usage
    checks += 1

    print(f"openai client: {checks} checks passed")


if __name__ == "__main__":
    main()
