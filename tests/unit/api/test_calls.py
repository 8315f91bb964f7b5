"""The gateway's call records as the API shows them: views, totals, truncation, odd records."""

from __future__ import annotations

from typing import Any

import pytest

from agentry_api.services.calls import call_out, calls_out, read_record
from agentry_common.records import CallDecision, Charged, LLMCallRecord

pytestmark = pytest.mark.unit


def record(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": "c1",
        "ts": 1_700_000_000.25,
        "outcome": "ok",
        "protocol": "anthropic",
        "requestedModel": "claude-sonnet-4-6",
        "model": "gpt-4.1-mini",
        "channel": "openai",
        "fallbacks": 1,
        "fallbackPath": ["anthropic:claude-sonnet-4-6 -> openai:gpt-4.1-mini"],
        "retries": 2,
        "inputTokens": 10,
        "outputTokens": 3,
        "charged": {"tokens": 13, "messages": 1, "costUSD": "0.000009", "costNanos": 8800},
        "latencyMs": 41.5,
        "decision": {"action": "throttle", "zone": "throttle", "reason": "80 % used", "model": "x"},
    }
    doc.update(overrides)
    return doc


def test_a_record_becomes_its_public_view() -> None:
    out = call_out(record())
    assert out.time == "2023-11-14T22:13:20.250000Z"
    assert (out.requestedModel, out.model, out.channel) == ("claude-sonnet-4-6", "gpt-4.1-mini", "openai")
    assert out.fallbackPath == ["anthropic:claude-sonnet-4-6 -> openai:gpt-4.1-mini"]
    assert (out.zone, out.decision, out.decisionReason) == ("throttle", "throttle", "80 % used")
    assert out.costUSD == "0.000009" and out.latencyMs == 41.5 and out.retries == 2
    assert out.route is None
    routed = call_out(record(route={"model": "claude-opus-4-6", "tier": "strong", "reason": "score 7.50"}))
    assert routed.route == "score 7.50"


def test_a_calls_cache_reads_writes_and_dropped_breakpoints_are_shown() -> None:
    cached = call_out(record(inputTokens=1000, cacheReadTokens=800, cacheWriteTokens=150))
    assert (cached.inputTokens, cached.cacheReadTokens, cached.cacheWriteTokens) == (1000, 800, 150)
    assert cached.cacheNote is None
    note = "openai caches by itself"
    dropped = call_out(record(cacheMarkers=2, cacheMarkersDropped=True, cacheMarkersNote=note))
    assert dropped.cacheNote == note and dropped.cacheReadTokens == 0
    assert call_out(record(cacheMarkersDropped=True)).cacheNote == "cache breakpoints dropped"
    assert call_out(record()).cacheWriteTokens == 0  # a record from before caching


def test_odd_or_partial_records_never_fail() -> None:
    refused = call_out({"id": "r", "outcome": "refused", "model": None, "charged": None, "decision": "?"})
    assert refused.model is None and refused.costUSD == "0" and refused.zone is None
    odd = call_out(record(ts="yesterday", inputTokens="5", fallbackPath="a -> b", latencyMs=True))
    assert odd.time is None and odd.inputTokens == 0 and odd.fallbackPath == [] and odd.latencyMs is None


def test_totals_sum_nanos_and_truncation_is_reported() -> None:
    docs = [record(id=f"c{i}", charged={"costNanos": 500_000}) for i in range(3)]
    whole = calls_out("ex", docs)
    assert whole.totals.calls == 3 and whole.totals.tokens == 39 and whole.totals.costUSD == "0.0015"
    assert whole.totals.fallbacks == 3 and whole.totals.retries == 6 and not whole.truncated
    cut = calls_out("ex", docs, limit=2)
    assert cut.truncated and [c.id for c in cut.items] == ["c0", "c1"] and cut.totals.calls == 2
    sums = {"calls": 3, "inputTokens": 30, "outputTokens": 9, "costNanos": 1_500_000}
    sums |= {"fallbacks": 3, "retries": 6}
    exact = calls_out("ex", docs, limit=2, all_calls=sums)  # the store's sums over every record
    assert len(exact.items) == 2 and exact.truncated
    assert exact.totals == whole.totals
    empty = calls_out("ex", [])
    assert empty.items == [] and empty.totals.costUSD == "0" and not empty.truncated


def test_a_record_the_gateway_writes_reads_back_as_written() -> None:
    written = LLMCallRecord(
        id="g1",
        ts=1_700_000_000.5,
        outcome="ok",
        execution_uid="u-1",
        input_tokens=12,
        output_tokens=4,
        charged=Charged(cost_nanos=2_000_000),
        latency_ms=0.0,
        decision=CallDecision(action="allow", zone="normal"),
    )
    assert read_record(written.to_doc()) == LLMCallRecord.model_validate(written.to_doc())
    out = call_out(written.to_doc())
    assert (out.id, out.inputTokens, out.outputTokens, out.costUSD) == ("g1", 12, 4, "0.002")
    assert out.latencyMs == 0.0 and out.zone == "normal" and out.decision == "allow"
