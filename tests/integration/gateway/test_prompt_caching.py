"""A multi-turn agent conversation with prompt caching through the real gateway on the Firestore
ledger (emulator), served by the scripted provider's caching (agentry_testing.scripted_cache):
breakpoints reach the provider, the usage it reports reaches the client, each call is charged
`pricing.cost` of that usage (later turns mostly at the cache-read rate), the reservation covers it
while knowing what is cached, and the Execution's counter and the metrics add up; and a fallback to
an OpenAI-protocol channel, which is sent no breakpoints and recorded so."""

from __future__ import annotations

import itertools
import json
from typing import Any, Literal

import httpx
import pytest
from google.cloud import firestore

from agentry_common import pricing
from agentry_common.pricing import usd_to_nanos
from agentry_common.records import Collection
from agentry_gateway.budgets import estimate_call
from agentry_gateway.prompt_cache import breakpoints, prefixes
from agentry_gateway.wire import anthropic as aw
from agentry_llm import ChatRequest, Message, TextBlock, ToolResultBlock, ToolSpec, ToolUseBlock
from agentry_llm.anthropic_provider import to_wire_messages, to_wire_system, to_wire_tools
from agentry_llm.caching import place_breakpoints
from agentry_localcluster import localhttp
from agentry_testing.scripted_llm import ScriptedLLM

from .harness import GatewayServer, config, run_token, settings

pytestmark = pytest.mark.integration

MODEL = "claude-sonnet-4-6"
TURNS = 6
SYSTEM = "You are a careful engineer. Read before you write; test what you change. " * 90  # ~1,700 tokens
TOOLS = [
    ToolSpec(name="shell", description="Run a command in the workspace.", input_schema={"type": "object"})
]


def body_of(messages: list[Message], stream: bool, ttl: Literal["5m", "1h"]) -> bytes:
    """The turn's request as a client on the Anthropic wire sends it, marked as the runtime marks it."""
    request = ChatRequest(system=SYSTEM, messages=messages, tools=TOOLS, max_tokens=200)
    chat = place_breakpoints(request, ttl)
    body = {
        "model": MODEL,
        "max_tokens": chat.max_tokens,
        "system": to_wire_system(chat.system),
        "tools": to_wire_tools(chat.tools),
        "messages": to_wire_messages(chat.messages),
        "stream": stream,
    }
    return json.dumps(body).encode()


def answer_usage(response: httpx.Response, stream: bool) -> dict[str, Any]:
    """The usage the gateway answered with (a stream's: its message_delta)."""
    if not stream:
        usage: dict[str, Any] = response.json()["usage"]
        return usage
    events = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]
    [delta] = [e for e in events if e["type"] == "message_delta"]
    return dict(delta["usage"])


def provider_cost(usage: dict[str, Any]) -> int:
    """What the provider charges for its reported usage (the Messages API's words), in nano-USD."""
    read, write = usage["cache_read_input_tokens"], usage["cache_creation_input_tokens"]
    write_1h = usage.get("cache_creation", {}).get("ephemeral_1h_input_tokens", 0)
    total = usage["input_tokens"] + read + write
    cost = pricing.cost(
        MODEL, total, usage["output_tokens"], cache_read=read, cache_write=write, cache_write_1h=write_1h
    )
    return usd_to_nanos(cost)


def records(db: firestore.Client) -> list[dict[str, Any]]:
    docs = [snap.to_dict() or {} for snap in db.collection(Collection.LLM_CALLS).stream()]
    return sorted(docs, key=lambda d: d["ts"])


@pytest.mark.parametrize("ttl", ["5m", "1h"])
def test_a_conversations_later_turns_are_charged_at_the_cache_read_rate(
    firestore_project: str, firestore_db: firestore.Client, llm: ScriptedLLM, ttl: Literal["5m", "1h"]
) -> None:
    llm.script([{"tool_use": {"name": "shell", "input": {"cmd": f"step {i}"}}} for i in range(TURNS)])
    messages = [Message(role="user", content=[TextBlock(text="Fix the failing test in the repository.")])]
    answered: list[dict[str, Any]] = []
    cold_estimates: list[int] = []
    cfg = config(llm, routes=[{"model": "*", "chain": [{"channel": "anthropic"}]}])
    with GatewayServer(settings(ledger="firestore", google_cloud_project=firestore_project), cfg) as gw:
        for turn in range(TURNS):
            stream = turn % 2 == 1  # both answer forms carry the cache usage
            body = body_of(messages, stream, ttl)
            chat = aw.parse(json.loads(body)).chat
            cold = estimate_call(MODEL, len(body), 200, breakpoints=breakpoints(prefixes(MODEL, chat)))
            cold_estimates.append(cold.cost_nanos)
            headers = {"x-api-key": run_token("ex-cache"), "content-type": "application/json"}
            response = localhttp.post(f"{gw.url}/v1/messages", content=body, headers=headers, timeout=30)
            assert response.status_code == 200, response.text
            answered.append(answer_usage(response, stream))
            gw.drain()  # settled and remembered before the next turn, as a run's tools take seconds
            tool_id = f"t{turn}"
            messages.append(
                Message(
                    role="assistant", content=[ToolUseBlock(id=tool_id, name="shell", input={"turn": turn})]
                )
            )
            output = f"line {turn}: " + "ok " * 700  # ~2 KB of tool output
            messages.append(
                Message(role="user", content=[ToolResultBlock(tool_use_id=tool_id, content=output)])
            )
        metrics = gw.gateway.metrics.registry
        read_metric = metrics.get_sample_value(
            "agentry_gateway_tokens_total",
            {"channel": "anthropic", "model": MODEL, "direction": "cache_read"},
        )
    provider = [r.usage for r in llm.requests]
    calls = records(firestore_db)
    counter = firestore_db.collection(Collection.BUDGET_COUNTERS).document(
        "execution:team-a%2Fex-cache%2Fuid-ex-cache"
    )
    total = (counter.get().to_dict() or {})["total"]

    # The breakpoints reached the provider: system, the previous turn's last message, the newest one.
    upstream = llm.requests[-1].body
    mark = {"type": "ephemeral"} | ({"ttl": "1h"} if ttl == "1h" else {})
    assert upstream["system"][-1]["cache_control"] == mark
    assert sum("cache_control" in b for m in upstream["messages"] for b in m["content"]) == 2
    # The client got the provider's usage; every call is charged what the provider charges for it.
    assert [{k: v for k, v in (u or {}).items() if k != "service_tier"} for u in provider] == answered
    assert len(calls) == TURNS
    for record, usage in zip(calls, provider, strict=True):
        assert usage is not None
        assert (
            record["charged"]["costNanos"] == provider_cost(usage) and record["charged"]["basis"] == "usage"
        )
        assert record["cacheReadTokens"] == usage["cache_read_input_tokens"]
        assert record["cacheWriteTokens"] == usage["cache_creation_input_tokens"]
        written_1h = record["cacheWriteTokens"] if ttl == "1h" else 0
        assert (
            record["cacheWrite1hTokens"] == usage["cache_creation"]["ephemeral_1h_input_tokens"] == written_1h
        )
        assert record["uncachedInputTokens"] == usage["input_tokens"]
        assert record["estimate"]["costNanos"] >= record["charged"]["costNanos"]  # never short
    # Turn 1 writes; every later turn reads the prefix the one before wrote.
    assert calls[0]["cacheReadTokens"] == 0 and calls[0]["cacheWriteTokens"] > 1_000
    for earlier, later in itertools.pairwise(calls):
        assert later["cacheReadTokens"] >= earlier["cacheReadTokens"] + earlier["cacheWriteTokens"] - 1
        assert later["cacheReadTokens"] > later["uncachedInputTokens"] + later["cacheWriteTokens"]
    uncached_cost = sum(usd_to_nanos(pricing.cost(MODEL, r["inputTokens"], r["outputTokens"])) for r in calls)
    charged = sum(r["charged"]["costNanos"] for r in calls)
    assert charged < uncached_cost * 0.6  # caching paid for itself within six turns
    # Reservations knew what was cached: below writing every marked prefix again, from turn 2 on.
    assert all(
        r["estimate"]["costNanos"] < cold for r, cold in zip(calls[1:], cold_estimates[1:], strict=True)
    )
    assert total[2] == charged and total[1] == TURNS
    assert read_metric == sum(r["cacheReadTokens"] for r in calls)


def test_a_fallback_to_an_openai_channel_drops_the_breakpoints_and_says_so(
    llm: ScriptedLLM, backup: ScriptedLLM
) -> None:
    llm.script([{"error": {"status": 529}}])
    backup.script([{"text": "from the fallback"}])
    chain = [{"channel": "anthropic"}, {"channel": "openai", "model": "gpt-4.1"}]
    cfg = config(llm, backup, routes=[{"model": "*", "chain": chain}])
    messages = [Message(role="user", content=[TextBlock(text="Fix the failing test.")])]
    with GatewayServer(settings(retry_attempts=1), cfg) as gw:
        headers = {"x-api-key": run_token(), "content-type": "application/json"}
        body = body_of(messages, False, "5m")
        response = localhttp.post(f"{gw.url}/v1/messages", content=body, headers=headers, timeout=30)
        gw.drain()
        record = gw.gateway.ledger.calls[-1]  # type: ignore[attr-defined]
    assert response.status_code == 200 and response.headers["x-agentry-dropped"] == "cache_control"
    # The Anthropic hop was sent the breakpoints; the OpenAI one the same conversation without them.
    assert llm.requests[0].body["system"][-1]["cache_control"] == {"type": "ephemeral"}
    assert "cache_control" not in json.dumps(backup.requests[0].body)
    assert backup.requests[0].body["messages"][0] == {"role": "system", "content": SYSTEM}
    assert (record["channel"], record["cacheMarkers"], record["cacheMarkersDropped"]) == ("openai", 2, True)
    assert "channel openai speaks the openai protocol" in record["cacheMarkersNote"]
