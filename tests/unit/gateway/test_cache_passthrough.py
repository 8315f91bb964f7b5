"""Prompt caching through the gateway without servers: `cache_control` kept and checked on the
Anthropic wire, cached tokens read from OpenAI usage, breakpoints dropped for a hop whose channel
caches by itself, and what the call record says."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

import pytest

from agentry_common.governance import Action, Zone
from agentry_common.models import Provider as Flavour
from agentry_common.tokens import Claims
from agentry_gateway.budgets import Amount, Decision
from agentry_gateway.calls import Call, Guarded, subjects_of
from agentry_gateway.channels import ChannelPool, Redactor
from agentry_gateway.charging import usage_amount
from agentry_gateway.config import ChannelConfig
from agentry_gateway.metering import Meter, _actual
from agentry_gateway.metrics import Metrics
from agentry_gateway.prompt_cache import CacheMemory, prefixes
from agentry_gateway.routing import Hop, Router
from agentry_gateway.service import WIRES
from agentry_gateway.wire import WireError
from agentry_gateway.wire import anthropic as aw
from agentry_llm import ChatRequest, ChatResponse, Message, TextBlock, TokenUsage, ToolResultBlock
from agentry_llm.anthropic_provider import to_wire_messages, to_wire_system, to_wire_tools
from agentry_llm.base import TextCallback
from agentry_llm.openai_provider import _Stream, usage_of
from agentry_llm.types import CacheMark

pytestmark = pytest.mark.unit

EPHEMERAL = {"type": "ephemeral"}
HOUR = {"type": "ephemeral", "ttl": "1h"}


def marked_body(**extra: Any) -> dict[str, Any]:
    """A loop's request as a client marks it: tools and system for an hour, the conversation for 5 min."""
    return {
        "model": "claude-sonnet-4-6",
        "max_tokens": 64,
        "tools": [
            {"name": "read", "description": "read", "input_schema": {"type": "object"}},
            {
                "name": "shell",
                "description": "run",
                "input_schema": {"type": "object"},
                "cache_control": HOUR,
            },
        ],
        "system": [{"type": "text", "text": "You are careful.", "cache_control": HOUR}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "look", "cache_control": EPHEMERAL}]},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t1", "name": "shell", "input": {}}],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "t1",
                        "content": [{"type": "text", "text": "a b", "cache_control": EPHEMERAL}],
                    }
                ],
            },
        ],
        **extra,
    }


def test_cache_control_is_kept_on_tools_system_and_blocks() -> None:
    parsed = aw.parse(marked_body())
    chat = parsed.chat
    assert "cache_control" not in parsed.dropped
    assert [t.cache for t in chat.tools] == [None, CacheMark(ttl="1h")]
    assert chat.system == [TextBlock(text="You are careful.", cache=CacheMark(ttl="1h"))]
    assert chat.messages[0].content[0].cache == CacheMark(ttl="5m")
    result = chat.messages[2].content[0]
    assert isinstance(result, ToolResultBlock) and result.cache == CacheMark() and result.content == "a b"
    # Forwarded to an Anthropic channel as the client spelled it.
    assert to_wire_tools(chat.tools)[1]["cache_control"] == HOUR
    assert to_wire_system(chat.system) == [
        {"type": "text", "text": "You are careful.", "cache_control": HOUR}
    ]
    wire = to_wire_messages(chat.messages)
    assert wire[0]["content"][0]["cache_control"] == EPHEMERAL
    assert wire[2]["content"][0]["cache_control"] == EPHEMERAL
    assert "cache_control" not in wire[1]["content"][0]


def test_an_unmarked_system_stays_text() -> None:
    body = marked_body(system=[{"type": "text", "text": "a"}, {"type": "text", "text": "b"}])
    assert aw.parse(body).chat.system == "a\n\nb"


def _with(path: list[Any], value: Any) -> dict[str, Any]:
    body = marked_body()
    target: Any = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return body


def _five_marks() -> dict[str, Any]:
    body = marked_body()
    body["tools"][0]["cache_control"] = HOUR
    return body


@pytest.mark.parametrize(
    ("body", "names"),
    [
        (_with(["system", 0, "cache_control"], {"type": "persistent"}), "system.0.cache_control.type"),
        (
            _with(["messages", 0, "content", 0, "cache_control"], {"type": "ephemeral", "ttl": "10m"}),
            "messages.0.content.0.cache_control.ttl",
        ),
        (_with(["tools", 1, "cache_control"], "yes"), "tools.1.cache_control"),
        (
            _with(["system", 0, "cache_control"], {"type": "ephemeral", "scope": "x"}),
            "system.0.cache_control.scope",
        ),
        (_five_marks(), "at most 4 blocks may carry a breakpoint, got 5"),
        # A 1-hour breakpoint after a 5-minute one (the system's, after the tools').
        (_with(["tools", 1, "cache_control"], EPHEMERAL), "ttl '1h' may not come after one with ttl '5m'"),
    ],
)
def test_invalid_breakpoints_are_refused_naming_the_field(body: dict[str, Any], names: str) -> None:
    with pytest.raises(WireError) as err:
        aw.parse(body)
    assert err.value.status == 400 and err.value.kind == "invalid_request_error"
    assert names in err.value.message


def test_openai_usage_names_the_cached_part_of_the_prompt() -> None:
    usage: dict[str, Any] = {
        "prompt_tokens": 2_000,
        "completion_tokens": 7,
        "prompt_tokens_details": {"cached_tokens": 1_536},
    }
    assert usage_of(usage) == TokenUsage(input_tokens=2_000, output_tokens=7, cache_read_tokens=1_536)
    # A server without a cache reports no details.
    plain = {"prompt_tokens": 10, "completion_tokens": 1, "prompt_tokens_details": None}
    assert usage_of(plain) == TokenUsage(input_tokens=10, output_tokens=1)
    # Streamed: the last chunk (stream_options.include_usage) carries it.
    stream = _Stream(None)
    stream.add({"model": "gpt-4.1", "usage": usage, "choices": []})
    assert stream.usage.cache_read_tokens == 1_536 and stream.usage.uncached_input_tokens == 464


ANTHROPIC = ChannelConfig(name="anthropic", protocol=Flavour.ANTHROPIC)
OPENAI = ChannelConfig(name="local", protocol=Flavour.OPENAI)
ANSWER = ChatResponse(
    message=Message(role="assistant", content=[TextBlock(text="ok")]),
    stop_reason="end_turn",
    usage=TokenUsage(input_tokens=5_000, output_tokens=10, cache_read_tokens=4_000, cache_write_tokens=900),
    provider="anthropic",
    model="claude-sonnet-4-6",
)


class Upstream:
    """An inner provider that keeps what it was sent."""

    name, model, endpoint = "p", "m", "e"

    def __init__(self) -> None:
        self.sent: list[ChatRequest] = []

    async def complete(self, request: ChatRequest, on_text: TextCallback | None = None) -> ChatResponse:
        self.sent.append(request)
        return ANSWER

    async def aclose(self) -> None:
        return None


class Pool:
    def record(self, *args: Any) -> None:
        return None

    def hop_of(self, name: str) -> str:
        return name


def marked_call() -> Call:
    parsed = aw.parse(marked_body())
    claims = Claims(typ="run", exp=0, namespace="team", execution="ex-1", agent="bot")
    return Call(
        id="c1",
        wire=WIRES[Flavour.ANTHROPIC],
        claims=claims,
        subjects=subjects_of(claims),
        parsed=parsed,
        requested_model="claude-sonnet-4-6",
        model="claude-sonnet-4-6",
        estimate=Amount(10_000, 1, 1_000),
        rid="r1",
        decision=Decision(Action.ALLOW, Zone.NORMAL, "ok"),
        started=0.0,
        prefixes=prefixes("claude-sonnet-4-6", parsed.chat),
    )


def _through(channel: ChannelConfig) -> tuple[Call, ChatRequest]:
    call, upstream = marked_call(), Upstream()
    pool = cast(ChannelPool, Pool())
    guarded = Guarded(upstream, Hop(channel, "claude-sonnet-4-6"), call, pool)
    asyncio.run(guarded.complete(call.parsed.chat))
    return call, upstream.sent[0]


def _meter() -> Meter:
    router = cast(Router, SimpleNamespace(config=SimpleNamespace(default_price=None)))
    return Meter(
        Metrics(),
        cast(Any, None),
        cast(ChannelPool, Pool()),
        router,
        Redactor([]),
        cast(Any, None),
        CacheMemory(),
    )


def test_a_hop_to_an_openai_channel_is_sent_no_breakpoints_and_the_record_says_so() -> None:
    call, sent = _through(OPENAI)
    assert call.cache_markers == 4
    assert all(t.cache is None for t in sent.tools) and sent.system == "You are careful."
    assert all(b.cache is None for m in sent.messages for b in m.content)
    assert call.markers_dropped and call.headers()["x-agentry-dropped"] == "cache_control"
    record = _meter().record(call, "ok", ANSWER, Amount(), "usage").to_doc()
    assert record["cacheMarkers"] == 4 and record["cacheMarkersDropped"] is True
    assert "channel local speaks the openai protocol" in record["cacheMarkersNote"]


def test_a_hop_to_an_anthropic_channel_keeps_them_and_the_record_splits_input() -> None:
    call, sent = _through(ANTHROPIC)
    assert sent == call.parsed.chat  # breakpoints and all
    assert not call.markers_dropped and "x-agentry-dropped" not in call.headers()
    record = _meter().record(call, "ok", ANSWER, Amount(), "usage").to_doc()
    assert record["cacheMarkersDropped"] is False and record["cacheMarkersNote"] == ""
    assert (record["inputTokens"], record["uncachedInputTokens"]) == (5_000, 100)
    assert (record["cacheReadTokens"], record["cacheWriteTokens"], record["cacheWrite1hTokens"]) == (
        4_000,
        900,
        0,
    )


def test_metering_charges_each_ending_by_the_rule() -> None:
    """The meter's inputs for each ending: an answer (kept even when the client left before it got
    it), attempts that failed after the provider accepted them, an attempt cut while running."""
    answered = marked_call()
    answered.response = ANSWER
    answered.answered = Hop(ANTHROPIC, "claude-sonnet-4-6")
    # "cancelled": the client left after the answer came (Meter.finish takes it from the call).
    amount, basis = _actual(answered, answered.response, None)
    assert basis == "usage"
    assert amount.cost_nanos == usage_amount("claude-sonnet-4-6", ANSWER, None).cost_nanos
    cut = marked_call()
    cut.attempt_open = True  # the deadline or the client's leaving cancelled it mid-call
    assert _actual(cut, None, None) == (cut.estimate, "estimate")
    failed = marked_call()
    failed.billed_attempts = 2  # e.g. two attempts whose streams broke before any text
    assert _actual(failed, None, None) == (Amount(20_000, 1, 2_000), "estimate")
    declined = marked_call()  # every attempt answered 529: nothing done, nothing charged
    assert _actual(declined, None, None) == (Amount(), "none")


def test_what_the_provider_cached_is_remembered_for_the_model_that_answered() -> None:
    meter = _meter()
    throttled = marked_call()  # its prefixes are digests for claude-sonnet-4-6
    throttled.answered = Hop(ANTHROPIC, "claude-haiku-4-5")  # the cheaper model answered
    meter._remember(throttled, ANSWER)
    chat, key = throttled.parsed.chat, throttled.cache_key
    assert meter.cache.cached_tokens(key, prefixes("claude-haiku-4-5", chat)) == 4_900  # read + written
    assert meter.cache.cached_tokens(key, prefixes("claude-sonnet-4-6", chat)) == 0
    other = _meter()
    local = marked_call()
    local.answered = Hop(OPENAI, "claude-sonnet-4-6")  # sent no breakpoints: nothing to remember
    other._remember(local, ANSWER)
    assert len(other.cache) == 0
