"""Prompt caching's prices (agentry_common.pricing) and the Messages API's usage and markers
(agentry_llm.anthropic_provider), the contract every component charges by."""

from __future__ import annotations

from decimal import Decimal

import pytest

from agentry_common import pricing
from agentry_llm.anthropic_provider import to_wire_block, to_wire_system, to_wire_tools, usage_of
from agentry_llm.types import CacheMark, TextBlock, ToolResultBlock, ToolSpec

pytestmark = pytest.mark.unit


def test_anthropic_cache_rates_follow_the_input_rate() -> None:
    # claude-sonnet-4-5 at $3 input: a 5-minute write $3.75, a 1-hour write $6, a read $0.30.
    m = 1_000_000
    assert pricing.cost("claude-sonnet-4-5", m, 0, cache_write=m) == Decimal("3.75")
    assert pricing.cost("claude-sonnet-4-5", m, 0, cache_write=m, cache_write_1h=m) == Decimal(6)
    assert pricing.cost("claude-sonnet-4-5", m, 0, cache_read=m) == Decimal("0.3")
    # Mixed: 100k uncached, 800k read, 100k written; 1k output.
    mixed = pricing.cost("claude-sonnet-4-5", m, 1000, cache_read=800_000, cache_write=100_000)
    assert mixed == Decimal("0.3") + Decimal("0.24") + Decimal("0.375") + Decimal("0.015")


def test_openai_reads_at_the_cached_input_rate_and_writes_at_the_input_rate() -> None:
    m = 1_000_000
    assert pricing.cost("gpt-4.1", m, 0, cache_read=m) == Decimal("0.5")
    assert pricing.cost("gpt-4.1", m, 0, cache_write=m) == Decimal(2)
    assert pricing.cost("gpt-5-2025-08-07", m, 0, cache_read=m) == Decimal("0.125")


def test_a_price_without_cache_rates_never_undercharges_a_cache_token() -> None:
    default = pricing.Price(Decimal(10), Decimal(20))
    m = 1_000_000
    assert pricing.cost("unlisted", m, 0, default, cache_read=m) == Decimal(10)
    assert pricing.cost("unlisted", m, 0, default, cache_write=m) == Decimal(20)
    assert pricing.cost("unlisted", m, 0) == Decimal(0)  # unpriced without a default, as before


def test_minimum_cacheable_length_per_model() -> None:
    assert pricing.cache_min_tokens("claude-haiku-4-5-20251001") == 4096
    assert pricing.cache_min_tokens("claude-sonnet-4-5") == 1024


def test_messages_api_usage_names_the_cached_parts_of_all_input() -> None:
    raw = {
        "input_tokens": 50,
        "output_tokens": 7,
        "cache_read_input_tokens": 3000,
        "cache_creation_input_tokens": 1200,
        "cache_creation": {"ephemeral_5m_input_tokens": 200, "ephemeral_1h_input_tokens": 1000},
    }
    usage = usage_of(raw)
    assert (usage.input_tokens, usage.cache_read_tokens, usage.cache_write_tokens) == (4250, 3000, 1200)
    assert usage.cache_write_1h_tokens == 1000 and usage.uncached_input_tokens == 50


def test_breakpoints_are_spelled_as_cache_control() -> None:
    marked = ToolResultBlock(tool_use_id="t1", content="x", cache=CacheMark())
    assert to_wire_block(marked)["cache_control"] == {"type": "ephemeral"}
    hour = TextBlock(text="s", cache=CacheMark(ttl="1h"))
    assert to_wire_system([hour]) == [
        {"type": "text", "text": "s", "cache_control": {"type": "ephemeral", "ttl": "1h"}}
    ]
    assert "cache_control" not in to_wire_block(TextBlock(text="plain"))
    tool = ToolSpec(name="t", description="d", input_schema={}, cache=CacheMark())
    assert to_wire_tools([tool])[0]["cache_control"] == {"type": "ephemeral"}
