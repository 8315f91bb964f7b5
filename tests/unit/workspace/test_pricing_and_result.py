"""The pricing table and the termination message (the kubelet keeps 4096 bytes)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from agentry_common import pricing
from agentry_common.models import Usage
from agentry_llm import TokenUsage
from agentry_workspace.outcome import (
    EXIT_CODES,
    RETRYABLE_EXIT_CODES,
    TERMINATION_LIMIT,
    Outcome,
    StopReason,
    termination_message,
)
from agentry_workspace.usage import UsageTracker

pytestmark = pytest.mark.unit


def test_cost_is_exact_decimal() -> None:
    # 1234 * 3 / 1e6 + 567 * 15 / 1e6 = 0.003702 + 0.008505
    assert pricing.cost("claude-sonnet-4-6", 1234, 567) == Decimal("0.012207")
    assert pricing.cost("gpt-4.1-mini", 1_000_000, 1_000_000) == Decimal("2.00")


def test_dated_snapshots_price_like_their_family_but_prefixes_do_not() -> None:
    assert pricing.price_of("claude-haiku-4-5-20251001") == pricing.PRICES["claude-haiku-4-5"]
    assert pricing.price_of("gpt-4o-2024-08-06") == pricing.PRICES["gpt-4o"]
    assert pricing.price_of("gpt-4.1-mini") != pricing.price_of("gpt-4.1")


def test_unknown_model_costs_zero_and_is_flagged() -> None:
    assert pricing.cost("llama-3.1-8b-instruct", 10_000, 10_000) == Decimal(0)
    assert not pricing.is_priced("llama-3.1-8b-instruct")
    tracker = UsageTracker()
    tracker.add("llama-3.1-8b-instruct", TokenUsage(input_tokens=5, output_tokens=5))
    assert tracker.event_usage()["costKnown"] is False
    assert tracker.event_usage()["unpricedModels"] == ["llama-3.1-8b-instruct"]


@pytest.mark.parametrize(
    ("amount", "wire"),
    [("0", "0"), ("0.0300", "0.03"), ("30", "30"), ("0.0000004", "0"), ("1.2345675", "1.234568")],
)
def test_usd_wire_form_matches_the_cr_pattern(amount: str, wire: str) -> None:
    assert pricing.usd_string(Decimal(amount)) == wire
    Usage.model_validate({"costUSD": wire})  # the shared model's pattern accepts it


def test_usage_survives_a_state_round_trip_exactly() -> None:
    tracker = UsageTracker()
    tracker.add("claude-sonnet-4-6", TokenUsage(input_tokens=333, output_tokens=77))
    tracker.retries = 2
    restored = UsageTracker.from_state(json.loads(json.dumps(tracker.to_state())))
    assert restored.cost == tracker.cost == Decimal("0.002154")
    assert restored.result_usage() == tracker.result_usage()
    assert restored.retries == 2


def test_exit_codes_are_the_documented_contract() -> None:
    assert {r.value: c for r, c in EXIT_CODES.items()} == {
        "end_turn": 0,
        "error": 1,
        "config_error": 2,
        "max_turns": 10,
        "max_tokens": 11,
        "max_cost": 12,
        "deadline": 13,
        "budget_exceeded": 14,
        "pid_limit": 15,
        "context_overflow": 16,
        "providers_failed": 20,
        "approval_required": 30,
        "resume_limit": 17,
        "workspace_full": 18,
        "interrupted": 75,
        "user_interrupt": 0,  # a person interrupted the run (steering): it succeeded
    }
    assert {1} == RETRYABLE_EXIT_CODES


USAGE = {"inputTokens": 1, "outputTokens": 2, "costUSD": "0.01", "model": "m", "turns": 1}


def test_small_result_is_complete_and_matches_the_shared_models() -> None:
    msg = json.loads(termination_message(Outcome(StopReason.END_TURN, "All good.", usage=USAGE)))
    assert msg["stopReason"] == "end_turn" and msg["summary"] == "All good."
    assert msg["truncated"] is False and "approval" not in msg
    Usage.model_validate(msg["usage"])


@pytest.mark.parametrize(
    "summary",
    [
        "x" * 100_000,
        "한국어 요약 " * 5000,  # multi-byte: cut on a character boundary
        '"\\\n\t' * 20_000,  # escaping doubles the size
        "\x00\x01" * 10_000,  # control characters escape to six bytes each
    ],
)
def test_huge_summary_is_truncated_to_the_kubelet_limit(summary: str) -> None:
    approval = {"id": "apr-1", "tool": "http", "arguments": "POST " + "y" * 5000, "reason": "r"}
    for outcome in (
        Outcome(StopReason.END_TURN, summary, usage=USAGE),
        Outcome(StopReason.APPROVAL_REQUIRED, summary, usage=USAGE, approval=approval),
    ):
        text = termination_message(outcome)
        assert len(text.encode("utf-8")) <= TERMINATION_LIMIT
        msg = json.loads(text)
        assert msg["truncated"] is True
        assert len(text.encode("utf-8")) > TERMINATION_LIMIT - 16  # the room is used, not wasted
        assert summary.startswith(msg["summary"])
        if outcome.approval:
            assert msg["approval"]["id"] == "apr-1"
