"""The loop's prompt caching: the breakpoints each turn's request carries (spec.promptCaching), and
usage priced as providers bill cache reads and writes, which budgets and the run's usage use."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from agentry_common import pricing
from agentry_common.models import Usage
from agentry_llm import ChatRequest, ChatResponse, TokenUsage
from agentry_workspace.events import RecordingSink
from agentry_workspace.outcome import Outcome, StopReason
from agentry_workspace.runner import Runner
from agentry_workspace.usage import UsageTracker

from .fakes import API_KEY, FakeProvider, make_config, text, tool

pytestmark = pytest.mark.unit

# claude-sonnet-4-6 at $3 / $15: 500 uncached (3), 8000 read (0.30), 1500 written (3.75), 100 out (15).
CACHED = TokenUsage(input_tokens=10_000, output_tokens=100, cache_read_tokens=8000, cache_write_tokens=1500)
CACHED_COST = Decimal("0.011025")
UNCACHED_COST = Decimal("0.0315")  # 10000 x 3 + 100 x 15


def marks(request: ChatRequest) -> list[str]:
    """Where the request's breakpoints are: "system", "tool:<name>", "message:<i>:<block>"."""
    found = [] if isinstance(request.system, str) else ["system" for b in request.system if b.cache]
    found += [f"tool:{t.name}" for t in request.tools if t.cache]
    for i, message in enumerate(request.messages):
        found += [f"message:{i}:{j}" for j, b in enumerate(message.content) if b.cache]
    return found


def ttls(request: ChatRequest) -> set[str]:
    blocks: list[Any] = [*([] if isinstance(request.system, str) else request.system), *request.tools]
    blocks += [b for m in request.messages for b in m.content]
    return {b.cache.ttl for b in blocks if b.cache}


def three_turns() -> list[ChatResponse]:
    return [
        tool("shell", {"command": "echo one"}, id="t1"),
        tool("shell", {"command": "echo two"}, id="t2"),
        text("done"),
    ]


async def run(cfg: Any, provider: FakeProvider) -> tuple[Runner, Outcome, RecordingSink]:
    sink = RecordingSink(correlation_id=cfg.correlation_id, execution=cfg.execution, secrets=[API_KEY])
    runner = Runner(cfg, sink, providers=[provider])
    return runner, await runner.run(), sink


async def test_each_turn_marks_the_stable_prefix_and_reads_what_the_previous_turn_wrote(
    tmp_path: Path,
) -> None:
    provider = FakeProvider(three_turns())
    runner, _, _ = await run(make_config(tmp_path), provider)
    first, second, third = provider.requests
    assert marks(first) == ["system", "message:0:0"]  # system (tools before it), the newest message
    # From the second turn: the previous turn's rolling breakpoint again (a read), and the newest.
    assert marks(second) == ["system", "message:0:0", "message:2:0"]
    assert marks(third) == ["system", "message:2:0", "message:4:0"]
    for before, after in ((first, second), (second, third)):
        newest = len(before.messages) - 1
        assert after.messages[newest].content[-1].cache is not None
        assert len(marks(after)) <= pricing.CACHE_MAX_BREAKPOINTS
    assert {ttl for r in provider.requests for ttl in ttls(r)} == {"5m"}
    # The system prompt is sent whole, and the run's own conversation keeps no marks.
    assert first.system_text().startswith("You are a test agent.")
    assert not any(b.cache for m in runner.messages for b in m.content)


async def test_the_agents_ttl_is_on_every_breakpoint(tmp_path: Path) -> None:
    provider = FakeProvider(three_turns())
    await run(make_config(tmp_path, {"promptCaching": {"ttl": "1h"}}), provider)
    assert all(ttls(r) == {"1h"} for r in provider.requests)


async def test_caching_off_sends_no_breakpoints(tmp_path: Path) -> None:
    provider = FakeProvider(three_turns())
    await run(make_config(tmp_path, {"promptCaching": {"enabled": False}}), provider)
    assert len(provider.requests) == 3
    assert all(marks(r) == [] and isinstance(r.system, str) for r in provider.requests)


def test_a_call_is_charged_at_the_cache_rates_and_the_uncached_price_is_kept() -> None:
    tracker = UsageTracker()
    assert tracker.add("claude-sonnet-4-6", CACHED) == CACHED_COST
    usage = tracker.result_usage()
    assert usage == {
        "inputTokens": 10_000,
        "outputTokens": 100,
        "cacheReadTokens": 8000,
        "cacheWriteTokens": 1500,
        "costUSD": "0.011025",
        "uncachedCostUSD": "0.0315",
        "model": "claude-sonnet-4-6",
        "turns": 1,
    }
    Usage.model_validate(usage)  # Execution.status.usage accepts it as it is
    by_model = tracker.event_usage()["byModel"]["claude-sonnet-4-6"]
    assert (by_model["cacheReadTokens"], by_model["costUSD"], by_model["calls"]) == (8000, "0.011025", 1)


def test_a_1h_write_costs_twice_the_input_rate() -> None:
    tracker = UsageTracker()
    one_hour = CACHED.model_copy(update={"cache_write_1h_tokens": 1500})
    # The 1500 written at 6 instead of 3.75: 1500 x 2.25 more.
    assert tracker.add("claude-sonnet-4-6", one_hour) == CACHED_COST + Decimal("0.003375")


def test_cache_usage_survives_a_pause_exactly() -> None:
    tracker = UsageTracker()
    tracker.add("claude-sonnet-4-6", CACHED)
    tracker.add("claude-sonnet-4-6", TokenUsage(input_tokens=333, output_tokens=77), turn=False)
    restored = UsageTracker.from_state(json.loads(json.dumps(tracker.to_state())))
    assert restored.result_usage() == tracker.result_usage()
    assert restored.total == tracker.total and restored.turns == 1  # a charged call need not be a turn


async def test_the_cost_budget_counts_cache_reads_at_their_rate(tmp_path: Path) -> None:
    """0.03 USD: every turn costs 0.011025 as billed, 0.0315 at the full input rate. The run stops
    after the third turn (0.033), not after the first."""
    turns = [tool("shell", {"command": f"echo {i}"}, id=f"t{i}") for i in range(5)]
    provider = FakeProvider([t.model_copy(update={"usage": CACHED}) for t in turns])
    _, outcome, sink = await run(make_config(tmp_path, {"budget": {"maxCostPerRunUSD": "0.03"}}), provider)
    assert outcome.stop_reason is StopReason.MAX_COST
    assert outcome.usage["turns"] == 3 and outcome.usage["costUSD"] == str(3 * CACHED_COST)
    assert outcome.usage["uncachedCostUSD"] == str(3 * UNCACHED_COST)
    last = sink.of("usage")[-1]
    assert (last["cacheReadTokens"], last["cacheWriteTokens"]) == (24_000, 4500)


def test_an_openai_cache_read_is_charged_at_its_cached_input_rate() -> None:
    """OpenAI caches without marks and reports only reads (prompt_tokens_details.cached_tokens)."""
    tracker = UsageTracker()
    # gpt-4.1: $2 input, $0.50 cached input: 2000 x 2 + 8000 x 0.5.
    assert tracker.add("gpt-4.1", TokenUsage(input_tokens=10_000, cache_read_tokens=8000)) == Decimal("0.008")
    assert tracker.result_usage()["uncachedCostUSD"] == "0.02"
