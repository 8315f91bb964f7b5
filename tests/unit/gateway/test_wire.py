"""Request translation and response rendering of both client protocols (no servers)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agentry_gateway.wire import WireError
from agentry_gateway.wire import anthropic as aw
from agentry_gateway.wire import openai as ow
from agentry_llm import (
    ChatResponse,
    Message,
    TextBlock,
    TokenUsage,
    ToolChoice,
    ToolResultBlock,
    ToolUseBlock,
)
from agentry_llm.types import CacheMark

pytestmark = pytest.mark.unit

RESPONSE = ChatResponse(
    message=Message(
        role="assistant",
        content=[TextBlock(text="Let me look."), ToolUseBlock(id="t1", name="shell", input={"cmd": "ls"})],
    ),
    stop_reason="tool_use",
    # 1,012 input tokens of which 800 read from the cache and 200 written (50 of them for an hour).
    usage=TokenUsage(
        input_tokens=1012,
        output_tokens=4,
        cache_read_tokens=800,
        cache_write_tokens=200,
        cache_write_1h_tokens=50,
    ),
    provider="anthropic",
    model="claude-sonnet-4-5",
)


# The Messages API's usage: input_tokens is the uncached part only.
ANTHROPIC_USAGE = {
    "input_tokens": 12,
    "output_tokens": 4,
    "cache_creation_input_tokens": 200,
    "cache_read_input_tokens": 800,
    "cache_creation": {"ephemeral_5m_input_tokens": 150, "ephemeral_1h_input_tokens": 50},
}


def anthropic_body(**extra: Any) -> dict[str, Any]:
    return {
        "model": "claude-sonnet-4-5",
        "max_tokens": 512,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": "list files"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "...", "signature": "x"},
                    {"type": "text", "text": "ok"},
                    {"type": "tool_use", "id": "t1", "name": "shell", "input": {"cmd": "ls"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "a b"}]}
                ],
            },
            {"role": "user", "content": "and now?"},
        ],
        "tools": [{"name": "shell", "description": "run", "input_schema": {"type": "object"}}],
        **extra,
    }


def test_anthropic_request_translation() -> None:
    parsed = aw.parse(
        anthropic_body(
            temperature=0.2,
            stop_sequences=["END"],
            tool_choice={"type": "tool", "name": "shell"},
            metadata={"user_id": "x"},
            stream=True,
        )
    )
    chat = parsed.chat
    assert parsed.model == "claude-sonnet-4-5" and parsed.stream
    # A marked system block stays a block, with its breakpoint.
    assert chat.system == [TextBlock(text="Be brief.", cache=CacheMark())] and chat.max_tokens == 512
    assert chat.temperature == 0.2 and chat.stop_sequences == ["END"]
    assert chat.tool_choice == ToolChoice(type="tool", name="shell")
    assert [m.role for m in chat.messages] == ["user", "assistant", "user"]  # consecutive user turns joined
    assert (
        isinstance(chat.messages[2].content[0], ToolResultBlock)
        and chat.messages[2].content[0].content == "a b"
    )
    assert chat.messages[2].content[1] == TextBlock(text="and now?")
    assert parsed.dropped == ["metadata", "thinking"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}, "model: required"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
        ({"model": "m", "max_tokens": 5, "messages": []}, "messages"),
        (
            {
                "model": "m",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}],
            },
            "'image' is not relayed",
        ),
        (
            {
                "model": "m",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "x"}],
                "tools": [{"type": "web_search_20250305", "name": "web_search"}],
            },
            "only custom tools",
        ),
        ({"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}, "role"),
    ],
)
def test_anthropic_bad_requests(body: dict[str, Any], message: str) -> None:
    with pytest.raises(WireError) as err:
        aw.parse(body)
    assert err.value.status == 400 and message in err.value.message


def test_anthropic_response_and_error_bodies() -> None:
    out = aw.message(RESPONSE, "msg_1", "claude-haiku-4-5")
    assert out["model"] == "claude-haiku-4-5" and out["stop_reason"] == "tool_use"
    assert out["content"][1] == {"type": "tool_use", "id": "t1", "name": "shell", "input": {"cmd": "ls"}}
    assert out["usage"] == ANTHROPIC_USAGE
    err = aw.error(402, "no budget", "budget_exceeded", decision={"zone": "exhausted"})
    assert err == {
        "type": "error",
        "error": {"type": "budget_exceeded", "message": "no budget"},
        "agentry": {"decision": {"zone": "exhausted"}},
    }


def sse_events(raw: bytes) -> list[tuple[str | None, Any]]:
    events: list[tuple[str | None, Any]] = []
    for chunk in raw.decode().split("\n\n"):
        if not chunk.strip():
            continue
        name = None
        data: Any = None
        for line in chunk.splitlines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                text = line[6:]
                data = text if text == "[DONE]" else json.loads(text)
        events.append((name, data))
    return events


def test_anthropic_stream_events() -> None:
    stream = aw.Stream("msg_1")
    raw = (
        stream.open("claude-sonnet-4-5")
        + stream.text("Let me ")
        + stream.text("look.")
        + stream.close(RESPONSE)
    )
    events = sse_events(raw)
    assert [name for name, _ in events] == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[6][1]["index"] == 1 and events[6][1]["content_block"]["type"] == "tool_use"
    assert json.loads(events[7][1]["delta"]["partial_json"]) == {"cmd": "ls"}
    assert events[9][1]["usage"] == ANTHROPIC_USAGE
    assert events[9][1]["delta"]["stop_reason"] == "tool_use"
    assert sse_events(stream.fail("boom"))[0] == (
        "error",
        {"type": "error", "error": {"type": "overloaded_error", "message": "boom"}},
    )


def openai_body(**extra: Any) -> dict[str, Any]:
    return {
        "model": "gpt-4.1-mini",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "list files"}]},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "shell", "arguments": '{"cmd":"ls"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "a b"},
            {"role": "user", "content": "and now?"},
        ],
        "tools": [{"type": "function", "function": {"name": "shell", "parameters": {"type": "object"}}}],
        **extra,
    }


def test_openai_request_translation() -> None:
    parsed = ow.parse(
        openai_body(
            max_completion_tokens=64,
            stop="END",
            tool_choice="required",
            seed=7,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    chat = parsed.chat
    assert chat.system == "Be brief." and chat.max_tokens == 64 and chat.stop_sequences == ["END"]
    assert chat.tool_choice == ToolChoice(type="any")
    assert [m.role for m in chat.messages] == ["user", "assistant", "user"]
    assert chat.messages[1].content == [ToolUseBlock(id="c1", name="shell", input={"cmd": "ls"})]
    assert chat.messages[2].content == [
        ToolResultBlock(tool_use_id="c1", content="a b"),
        TextBlock(text="and now?"),
    ]
    assert parsed.include_usage and parsed.dropped == ["seed"]
    assert ow.parse(openai_body(), default_max_tokens=999).chat.max_tokens == 999


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"n": 2}, "n = 1"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}, "only text"),
        ({"tools": [{"type": "code_interpreter"}]}, "only function tools"),
        ({"tool_choice": "sometimes"}, "tool_choice"),
    ],
)
def test_openai_bad_requests(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(WireError) as err:
        ow.parse(openai_body(**extra))
    assert message in err.value.message


def test_openai_response_and_stream() -> None:
    out = ow.completion(RESPONSE, "chatcmpl-1", "gpt-4.1-mini")
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] == "Let me look."
    assert json.loads(choice["message"]["tool_calls"][0]["function"]["arguments"]) == {"cmd": "ls"}
    assert out["usage"] == {
        "prompt_tokens": 1012,  # all input, the cached part named in it
        "completion_tokens": 4,
        "total_tokens": 1016,
        "prompt_tokens_details": {"cached_tokens": 800},
    }
    stream = ow.Stream("chatcmpl-1", include_usage=True)
    events = [
        data
        for _, data in sse_events(
            stream.open("gpt-4.1-mini") + stream.text("Let me look.") + stream.close(RESPONSE)
        )
    ]
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert events[1]["choices"][0]["delta"] == {"content": "Let me look."}
    assert events[2]["choices"][0]["delta"]["tool_calls"][0]["function"]["name"] == "shell"
    assert events[3]["choices"][0]["finish_reason"] == "tool_calls"
    assert events[4]["usage"]["total_tokens"] == 1016 and events[4]["choices"] == []
    assert events[4]["usage"]["prompt_tokens_details"] == {"cached_tokens": 800}
    assert events[5] == "[DONE]"
    assert ow.error(402, "no", "budget_exceeded")["error"]["type"] == "budget_exceeded"
