"""Drives the gateway with the official `openai` Python client: completions and chat, both modes.

Usage: openai_client.py BASE_URL MODEL   (exit status 0 when every check passes)
"""
import sys
import uuid

from openai import BadRequestError, OpenAI


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

    tool = {"type": "function", "function": {"name": "now", "parameters": {"type": "object"}}}
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
