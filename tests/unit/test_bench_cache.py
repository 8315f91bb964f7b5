"""The cache-cost benchmark's arithmetic and plumbing: the cache-ideal floor, the provider wrapper that
times the runtime's calls, and the table runner keeping other benchmarks' rows."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from agentry_common.pricing import cost
from agentry_llm import ChatRequest, ChatResponse, Message, TextBlock, TokenUsage, ToolSpec
from agentry_llm.base import TextCallback
from agentry_llm.caching import place_breakpoints
from bench import run_all
from bench.cache_run import MODEL, Call, Metered, floor
from bench.results import Row

pytestmark = pytest.mark.unit


def test_the_floor_writes_each_token_once_and_reads_it_on_every_later_turn() -> None:
    calls = [Call(input=n, read=0, write=0, write_1h=0, output=10, marks=0) for n in (2000, 5000, 9000)]
    expected = (
        cost(MODEL, 2000, 10, cache_write=2000)
        + cost(MODEL, 5000, 10, cache_read=2000, cache_write=3000)
        + cost(MODEL, 9000, 10, cache_read=5000)  # the last turn's new tokens are never read: input rate
    )
    assert floor(calls) == expected
    assert floor(calls) < sum((c.cost for c in calls), Decimal(0))  # the same calls, uncached


class Inner:
    """A provider that keeps the requests it got."""

    name, model, endpoint = "anthropic/m", "m", "default"

    def __init__(self) -> None:
        self.got: list[ChatRequest] = []

    async def complete(self, request: ChatRequest, on_text: TextCallback | None = None) -> ChatResponse:
        self.got.append(request)
        if on_text is not None:
            on_text("hi")
        message = Message(role="assistant", content=[TextBlock(text="hi")])
        return ChatResponse(
            message=message, stop_reason="end_turn", usage=TokenUsage(), provider="p", model="m"
        )

    async def aclose(self) -> None:
        return None


def test_the_wrapper_passes_the_loops_requests_unchanged_and_counts_the_marked_ones() -> None:
    tool = ToolSpec(name="shell", description="d", input_schema={"type": "object"})
    plain = ChatRequest(
        system="s", messages=[Message(role="user", content=[TextBlock(text="q")])], tools=[tool]
    )
    marked = place_breakpoints(plain)  # as the loop marks it with spec.promptCaching on
    inner = Inner()
    metered = Metered(inner)
    for request in (plain, marked, marked):
        asyncio.run(metered.complete(request))
    assert inner.got == [plain, marked, marked]
    assert metered.marked == 2 and len(metered.ttft) == 3


def test_keep_replaces_the_rows_of_the_benchmarks_run_and_keeps_the_others() -> None:
    old = [
        Row("gateway_vs_litellm", "p50 | pipes", "6 ms", "direct 2 ms", "3.00x", "<= LiteLLM's", True),
        Row("cache_cost", "old figure", "$1", "", "", "", None),
        Row("operator", "seconds", "9 s", "bare 8 s", "1.13x", "<= 1.25x", False),
    ]
    text = run_all.table(old, {"gateway_vs_litellm": (True, 1.0)})
    earlier, kept = run_all.kept_rows(text, ["cache_cost"])
    assert kept == [old[0], old[2]]
    new = Row("cache_cost", "new figure", "$2", "", "", "", None)
    merged = run_all.table([*kept, new], {"cache_cost": (True, 2.0)}, earlier)
    assert merged.index("p50 \\| pipes") < merged.index("new figure") < merged.index("| operator |")
    assert "old figure" not in merged and earlier[0] in merged and "Ran: `cache_cost` 2 s" in merged
    # The line naming this replacement goes when the same benchmark is replaced again, not otherwise.
    assert len(run_all.kept_rows(merged, ["cache_cost"])[0]) == 1
    assert len(run_all.kept_rows(merged, ["operator"])[0]) == 2
