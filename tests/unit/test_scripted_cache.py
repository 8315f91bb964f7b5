"""The scripted provider's prompt caches follow the providers' documented rules: prefix order, the
20-block look-back, minimum lengths, TTLs and their refresh, the 4-breakpoint limit, and the usage
fields of both wires (streamed too)."""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import pytest

from agentry_llm.anthropic_provider import usage_of
from agentry_localcluster import localhttp
from agentry_testing.scripted_cache import (
    ManualClock,
    anthropic_input_tokens,
    openai_prompt,
    prefill_seconds,
    tokens_of,
)
from agentry_testing.scripted_llm import ScriptedLLM
from agentry_testing.scripted_wire import InputUsage

pytestmark = pytest.mark.unit

MODEL = "claude-sonnet-4-6"  # caches prefixes of 1024 tokens or more
MARK: dict[str, Any] = {"cache_control": {"type": "ephemeral"}}
SYSTEM = "You are a careful agent. " * 250  # ~1,600 tokens


def text(value: str, mark: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"type": "text", "text": value, **(mark or {})}


def request(
    system: Any = None, messages: Any = None, tools: Any = None, model: str = MODEL
) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "max_tokens": 10}
    body["system"] = system if system is not None else [text(SYSTEM, MARK)]
    body["messages"] = messages if messages is not None else [{"role": "user", "content": "hello"}]
    if tools is not None:
        body["tools"] = tools
    return body


def upto(body: dict[str, Any], blocks: int) -> int:
    """Tokens of the request's user message cut after `blocks` of its blocks (the system before it)."""
    (message,) = body["messages"]
    return anthropic_input_tokens({**body, "messages": [{**message, "content": message["content"][:blocks]}]})


def ask(llm: ScriptedLLM, body: dict[str, Any], key: str = "key-1") -> dict[str, Any]:
    llm.script([{"text": "ok", "usage": {"output_tokens": 1}}])
    answer = localhttp.post(f"{llm.url}/v1/messages", json=body, headers={"x-api-key": key}, timeout=10)
    return dict(answer.json()["usage"]) if answer.status_code == 200 else {"status": answer.status_code}


def parts(usage: dict[str, Any]) -> tuple[int, int, int]:
    """(uncached input, cache write, cache read) as the Messages API reports them."""
    return usage["input_tokens"], usage["cache_creation_input_tokens"], usage["cache_read_input_tokens"]


def test_a_breakpoint_writes_its_prefix_once_and_later_requests_read_it() -> None:
    first, second = request(), request(messages=[{"role": "user", "content": "another question"}])
    prefix = anthropic_input_tokens(request(messages=[]))  # tools + system: up to the breakpoint
    with ScriptedLLM() as llm:
        assert parts(ask(llm, first)) == (anthropic_input_tokens(first) - prefix, prefix, 0)
        assert parts(ask(llm, second)) == (anthropic_input_tokens(second) - prefix, 0, prefix)
        changed = request(system=[text(SYSTEM + ".", MARK)])  # one character more: another prefix
        assert parts(ask(llm, changed))[1:] == (anthropic_input_tokens(request([text(SYSTEM + ".")], [])), 0)
        assert parts(ask(llm, first, key="another-org"))[2] == 0  # caches are per API key
        assert parts(ask(llm, {**first, "model": "claude-opus-4-1"}))[2] == 0  # and per model


def test_the_prefix_runs_tools_then_system_then_messages() -> None:
    tools = [{"name": "t", "description": "d " * 2500, "input_schema": {"type": "object"}, **MARK}]
    with ScriptedLLM() as llm:
        ask(llm, request(system=[text("one system")], tools=tools))
        # A new system prompt comes after the tools: their prefix is still read.
        read = parts(ask(llm, request(system=[text("another system")], tools=tools)))[2]
        assert read == anthropic_input_tokens(request(system=[], messages=[], tools=tools)) > 0
        # A system breakpoint covers the tools before it; changing a tool invalidates it.
        ask(llm, request(tools=tools))
        changed = [{**tools[0], "description": "changed"}]
        assert parts(ask(llm, request(tools=changed)))[2] == 0


def test_a_hit_is_found_at_most_20_blocks_before_a_breakpoint() -> None:
    blocks = [text(f"block {i} " + "x" * 40) for i in range(30)]

    def marked(at: int) -> dict[str, Any]:
        content = [dict(b, **MARK) if i == at else b for i, b in enumerate(blocks)]
        return request(system=[text(SYSTEM)], messages=[{"role": "user", "content": content}])

    with ScriptedLLM() as llm:
        assert parts(ask(llm, marked(5)))[1] == upto(marked(5), 6)  # written up to block 5
        reach = marked(25)  # block 5 is 20 blocks before 25: found, the rest written
        assert parts(ask(llm, reach))[1:] == (upto(reach, 26) - upto(reach, 6), upto(reach, 6))
    with ScriptedLLM() as llm:
        ask(llm, marked(5))
        beyond = marked(26)  # 21 blocks before: not looked up, all written again
        assert parts(ask(llm, beyond))[1:] == (upto(beyond, 27), 0)


def test_a_prefix_shorter_than_the_models_minimum_is_neither_written_nor_read() -> None:
    short = request(system=[text("A short system prompt.", MARK)])
    haiku = request(model="claude-haiku-4-5")  # its minimum is 4096 tokens; SYSTEM has ~1,600
    with ScriptedLLM() as llm:
        for body in (short, short, haiku, haiku):
            assert parts(ask(llm, body)) == (anthropic_input_tokens(body), 0, 0)
        assert parts(ask(llm, request()))[1] > 0  # the same system prompt caches on Sonnet


def test_an_entry_lives_its_ttl_and_each_read_refreshes_it() -> None:
    clock = ManualClock()
    with ScriptedLLM(clock=clock) as llm:
        ask(llm, request())
        clock.advance(299)
        assert parts(ask(llm, request()))[2] > 0
        clock.advance(299)  # 598 s after the write, 299 s after the read that refreshed it
        assert parts(ask(llm, request()))[2] > 0
        clock.advance(300)
        assert parts(ask(llm, request()))[1:] == (anthropic_input_tokens(request(messages=[])), 0)


def test_a_one_hour_breakpoint_is_reported_apart_and_outlives_five_minutes() -> None:
    long_mark = {"cache_control": {"type": "ephemeral", "ttl": "1h"}}
    body = request(
        system=[text(SYSTEM, long_mark)],
        messages=[{"role": "user", "content": [text("a question " * 200, MARK)]}],
    )
    system_end, whole = anthropic_input_tokens(request(messages=[])), upto(body, 1)
    clock = ManualClock()
    with ScriptedLLM(clock=clock) as llm:
        usage = ask(llm, body)
        assert usage["cache_creation"] == {
            "ephemeral_1h_input_tokens": system_end,
            "ephemeral_5m_input_tokens": whole - system_end,
        }
        clock.advance(1800)  # the 5-minute entry is gone, the 1-hour one is read
        assert parts(ask(llm, body))[1:] == (whole - system_end, system_end)


def test_more_than_four_breakpoints_or_a_1h_after_a_5m_one_are_refused_like_the_api() -> None:
    five = [text(f"part {i}", MARK) for i in range(5)]
    late_hour = [text("a", MARK), text("b", {"cache_control": {"type": "ephemeral", "ttl": "1h"}})]
    with ScriptedLLM() as llm:
        llm.script([{"text": "never served"}])
        for content in (five, late_hour):
            body = request(system=[text("s")], messages=[{"role": "user", "content": content}])
            answer = localhttp.post(f"{llm.url}/v1/messages", json=body, timeout=10)
            assert answer.status_code == 400
            assert answer.json()["error"]["type"] == "invalid_request_error"
        assert (
            "A maximum of 4 blocks with cache_control"
            in localhttp.post(
                f"{llm.url}/v1/messages",
                json=request(messages=[{"role": "user", "content": five}]),
                timeout=10,
            ).json()["error"]["message"]
        )
        assert llm.pending == 1  # refused before any script item was taken


def test_the_sdk_reads_the_same_usage_streamed_and_not() -> None:
    body = request()
    prefix = anthropic_input_tokens(request(messages=[]))
    with ScriptedLLM() as llm, anthropic.Anthropic(base_url=llm.url, api_key="k", max_retries=0) as client:
        llm.script([{"text": "streamed answer"}, {"text": "plain answer"}])
        with client.messages.stream(**body) as stream:
            streamed = stream.get_final_message().usage
        plain = client.messages.create(**body).usage
        recorded = [r.usage for r in llm.requests]
    assert (streamed.input_tokens, streamed.cache_creation_input_tokens) == (
        anthropic_input_tokens(body) - prefix,
        prefix,
    )
    assert streamed.cache_creation is not None and streamed.cache_creation.ephemeral_5m_input_tokens == prefix
    assert (plain.cache_read_input_tokens, plain.cache_creation_input_tokens) == (prefix, 0)
    total = usage_of(plain.model_dump())  # the provider layer's view: all input, the read part named
    assert (total.input_tokens, total.cache_read_tokens) == (anthropic_input_tokens(body), prefix)
    assert recorded[1] is not None and recorded[1]["cache_read_input_tokens"] == prefix


def test_scripted_usage_is_reported_as_given() -> None:
    usage = {"input_tokens": 10, "cache_read_input_tokens": 900, "output_tokens": 5}
    with ScriptedLLM() as llm, anthropic.Anthropic(base_url=llm.url, api_key="k", max_retries=0) as client:
        llm.script([{"text": "x", "usage": usage}])
        got = client.messages.create(**request()).usage
    assert (got.input_tokens, got.cache_read_input_tokens, got.cache_creation_input_tokens) == (10, 900, 0)


def chat(
    llm: ScriptedLLM, client: openai.OpenAI, content: str, model: str = "gpt-4.1-mini"
) -> tuple[int, int]:
    """(prompt_tokens, cached_tokens) of a streamed completion."""
    llm.script([{"text": "ok"}])
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": content}],
        stream=True,
        stream_options={"include_usage": True},
    )
    usage = [c.usage for c in stream if c.usage is not None][-1]
    details = usage.prompt_tokens_details
    return usage.prompt_tokens, (details.cached_tokens or 0) if details is not None else 0


def test_openai_caches_long_prompts_by_itself_in_steps_of_128_tokens() -> None:
    base = "context " * 700  # ~1,400 tokens
    longer = base + "and a new question"
    clock = ManualClock()
    with ScriptedLLM(clock=clock) as llm, openai.OpenAI(base_url=llm.openai_url, api_key="k") as client:
        assert chat(llm, client, "short")[1] == 0
        assert chat(llm, client, "short")[1] == 0  # under 1024 tokens: never cached
        first, second = (
            openai_prompt({"messages": [{"role": "user", "content": c}]}) for c in (base, longer)
        )
        assert chat(llm, client, base) == (tokens_of(len(first)), 0)
        prompt, cached = chat(llm, client, longer)
        common = tokens_of(next(i for i, (a, b) in enumerate(zip(first, second, strict=False)) if a != b))
        assert cached % 128 == 0 and 1024 <= cached <= common < cached + 128
        assert prompt == tokens_of(len(second)) > cached  # prompt_tokens counts the cached ones too
        clock.advance(301)  # retention: 5 minutes without use
        assert chat(llm, client, longer)[1] == 0


def test_prefill_time_charges_only_what_no_cache_read() -> None:
    usage = InputUsage(input_tokens=20_000, cache_read_tokens=19_000, cache_write_tokens=500)
    assert prefill_seconds(usage, 50) == pytest.approx(0.05)  # 1,000 tokens computed at 50 ms per 1k
    assert prefill_seconds(InputUsage(20_000), 50) == pytest.approx(1.0)
